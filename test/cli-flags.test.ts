/**
 * The command line's pieces in process: flags derived from the options Schema, `module:export`,
 * the package version. test/cli.test.ts runs the command itself.
 */
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { CliError, Command } from "effect/cli"
import { type FlagValue, formatSize, givenOptions, optionFlags, parseSize } from "../src/cli/flags.ts"
import { packageVersion } from "../src/cli/main.ts"
import { parseModuleRef } from "../src/cli/serve.ts"
import { Http1ServerOptions } from "../src/options.ts"
import { root } from "./helpers/cli.ts"

const flags = optionFlags(Http1ServerOptions.fields, {
  rename: { path: "socket" },
  exclude: ["tls"],
  octal: ["socketMode"]
})

/** Parses `argv` with the derived flags and gives the options that were given. */
const parse = (...argv: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    let given: Readonly<Record<string, FlagValue>> = {}
    const command = Command.make(
      "t",
      { options: Object.fromEntries(flags.map((f) => [f.key, f.flag])) },
      ({ options }) =>
        Effect.sync(() => {
          given = givenOptions(options)
        })
    )
    yield* Command.runWith(command, { version: "0", renderErrors: false })(argv)
    return given
  }).pipe(Effect.provide(NodeServices.layer))

describe("flags derived from the options Schema", () => {
  it("gives every option but the nested tls a flag, named in kebab case, path as --socket", () => {
    expect(flags.map((flag) => flag.name)).toEqual(
      Object.keys(Http1ServerOptions.fields)
        .filter((key) => key !== "tls")
        .map((key) => (key === "path" ? "socket" : key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)))
    )
  })

  it.effect("turns text into the option's values: sizes, octal modes, seconds, choices, booleans", () =>
    Effect.gen(function* () {
      const given = yield* parse(
        "--max-body-size=10m",
        "--max-header-size",
        "64KiB",
        "--socket-mode",
        "0660",
        "--headers-timeout",
        "0.5",
        "--access-log",
        "json",
        "--no-delay",
        "false",
        "--ipv6-only",
        "--port",
        "8080",
        "--host",
        "::1"
      )
      expect(given).toEqual({
        maxBodySize: 10 * 1024 * 1024,
        maxHeaderSize: 64 * 1024,
        socketMode: 0o660,
        headersTimeout: 0.5,
        accessLog: "json",
        noDelay: false,
        ipv6Only: true,
        port: 8080,
        host: "::1"
      })
      // flags not given are absent, so that the Schema supplies the defaults
      expect(yield* parse()).toEqual({})
    })
  )

  it.effect.each([
    [["--port", "80.5"], "port"],
    [["--max-body-size", "1.5m"], "max-body-size"],
    [["--max-connections", "10k"], "max-connections"],
    [["--socket-mode", "0o660"], "socket-mode"],
    [["--access-log", "verbose"], "access-log"],
    [["--systemd=perhaps"], "systemd"]
  ])("refuses %j naming the flag", ([args, name]) =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(parse(...args))
      expect(CliError.isCliError(error) && error._tag === "ShowHelp").toBe(true)
      if (CliError.isCliError(error) && error._tag === "ShowHelp") {
        expect(error.errors.map((e) => e.message).join("\n")).toContain(`--${name}`)
      }
    })
  )

  it("reads and shows sizes with binary suffixes", () => {
    expect([parseSize("65536"), parseSize("64k"), parseSize("10M"), parseSize("1gb"), parseSize("2KiB")]).toEqual(
      [65536, 65536, 10 * 1024 ** 2, 1024 ** 3, 2048].map(Option.some)
    )
    expect([parseSize("1.5k"), parseSize("-1"), parseSize("k"), parseSize("10t")]).toEqual(Array(4).fill(Option.none()))
    expect([formatSize(16384), formatSize(64 * 1024 ** 2), formatSize(1000), formatSize(0)]).toEqual([
      "16k",
      "64m",
      "1000",
      "0"
    ])
  })
})

describe("MODULE:NAME", () => {
  it("splits at the last ':' when an identifier follows", () => {
    expect(parseModuleRef("app.ts")).toEqual({ path: "app.ts", exportName: "default" })
    expect(parseModuleRef("app.ts:ApiLive")).toEqual({ path: "app.ts", exportName: "ApiLive" })
    expect(parseModuleRef("/srv/a:b/app.ts:$routes_2")).toEqual({ path: "/srv/a:b/app.ts", exportName: "$routes_2" })
  })

  it("leaves paths whose ':' is not followed by an identifier alone", () => {
    for (const path of ["/srv/v1:2/app.ts", "app.ts:", "app.ts:not-one", "app.ts:2x", ":app"]) {
      expect(parseModuleRef(path)).toEqual({ path, exportName: "default" })
    }
  })

  it("leaves an existing file whose name has a ':' alone", async () => {
    const dir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "effect-appserver-ref-"))
    try {
      const file = Path.join(dir, "app.ts:v2")
      await Fs.writeFile(file, "export default 1\n")
      expect(parseModuleRef(file)).toEqual({ path: file, exportName: "default" })
    } finally {
      await Fs.rm(dir, { recursive: true, force: true })
    }
  })
})

describe("packageVersion", () => {
  it("reads effect-appserver's package.json from src/cli/ and from a build's dist/cli/", async () => {
    const { version } = JSON.parse(await Fs.readFile(Path.join(root, "package.json"), "utf8")) as { version: string }
    expect(packageVersion()).toBe(version)
    expect(packageVersion(Path.join(root, "dist", "cli"))).toBe(version)
    // the package.json of another package on the way up is not ours
    expect(packageVersion(Path.join(root, "node_modules", "effect", "dist", "cli"))).toBe(version)
    expect(packageVersion("/")).toBe("unknown")
  })
})
