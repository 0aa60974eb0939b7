/**
 * The `effect-appserver` command as a user runs it: a real child process on Node 24.
 */

import { execFileSync } from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Http1ServerOptions } from "../src/options.ts"
import { cli, connectionRefused, exitOf, killAll, listening, root, text } from "./helpers/cli.ts"

const cleanups: Array<() => Promise<void>> = []

afterEach(async () => {
  // whatever a test left behind: no child process outlives it
  killAll()
  for (const cleanup of cleanups.splice(0)) await cleanup()
})

describe("effect-appserver serve", () => {
  it("serves examples/echo.ts and stops with exit code 0 promptly on SIGTERM", async () => {
    const run = cli("serve", "examples/echo.ts", "--host", "127.0.0.1", "--port", "0")
    const url = await listening(run)
    expect(await text(`${url}/`)).toBe("Hello, World!")
    expect(await text(`${url}/bytes?n=3`)).toBe("aaa")
    const started = performance.now()
    run.child.kill("SIGTERM")
    const exit = await exitOf(run, 5_000)
    expect(performance.now() - started).toBeLessThan(5_000)
    expect(exit).toEqual({ code: 0, signal: null })
    expect(await connectionRefused(url)).toBe(true)
  })

  it("stops with exit code 0 on SIGINT too", async () => {
    const run = cli("serve", "examples/echo.ts", "--port", "0")
    const url = await listening(run)
    expect(await text(`${url}/`)).toBe("Hello, World!")
    run.child.kill("SIGINT")
    expect(await exitOf(run, 5_000)).toEqual({ code: 0, signal: null })
  })

  it("serves an HttpRouter layer default export (examples/router.ts)", async () => {
    const run = cli("serve", "examples/router.ts", "--port=0")
    const url = await listening(run)
    expect(await text(`${url}/`)).toBe("Hello from the router")
    const user = await fetch(`${url}/users/1`)
    expect(user.status).toBe(200)
    expect(await user.json()).toEqual({ id: 1, name: "Ada" })
    expect((await fetch(`${url}/nowhere`)).status).toBe(404)
    run.child.kill("SIGTERM")
    expect(await exitOf(run, 5_000)).toEqual({ code: 0, signal: null })
  })

  it("serves an HttpApi's routes default export (examples/api.ts)", async () => {
    const run = cli("serve", "examples/api.ts", "--port", "0")
    const url = await listening(run)
    const missing = await fetch(`${url}/users/7`)
    expect(missing.status).toBe(404)
    expect(await missing.json()).toEqual({ _tag: "UserNotFound", id: 7 })
    run.child.kill("SIGTERM")
    expect(await exitOf(run, 5_000)).toEqual({ code: 0, signal: null })
  })

  it("applies options: --max-body-size limits request bodies", async () => {
    const run = cli("serve", "examples/echo.ts", "--port", "0", "--max-body-size", "1k")
    const url = await listening(run)
    const post = (size: number) => fetch(`${url}/echo`, { method: "POST", body: "x".repeat(size) })
    expect((await post(1024)).status).toBe(200)
    expect((await post(1025)).status).toBe(413)
  })

  it.each([
    [["--port", "70000"], "--port"],
    [["--max-body-size", "abc"], "--max-body-size"],
    [["--port"], "--port"],
    [["--no-delay=maybe"], "--no-delay"],
    [["--no-delay", "maybe"], "--no-delay"],
    [["--access-log", "foo"], "--access-log"],
    [["--access-log"], "--access-log"],
    [["--socket-mode", "999"], "--socket-mode"],
    [["--headers-timeout", "-1"], "--headers-timeout"],
    [["--port", "1", "--port", "2"], "--port"]
  ])("exits 2 naming the flag for a bad value: %j", async (args, flag) => {
    const run = cli("serve", "examples/echo.ts", ...args)
    const exit = await exitOf(run)
    expect(exit.code).toBe(2)
    expect(run.stderr()).toContain(flag)
    expect(run.stdout()).not.toContain("listening on")
  })

  it("exits 2 naming an unknown flag", async () => {
    const run = cli("serve", "examples/echo.ts", "--colour", "blue")
    expect((await exitOf(run)).code).toBe(2)
    expect(run.stderr()).toContain("--colour")
  })

  it("exits 2 without a module or with an unknown command", async () => {
    const none = cli("serve")
    expect((await exitOf(none)).code).toBe(2)
    expect(none.stderr()).toContain("<module>")
    const unknown = cli("launch", "examples/echo.ts")
    expect((await exitOf(unknown)).code).toBe(2)
    expect(unknown.stderr()).toContain("launch")
  })

  it("exits 1 with 'address already in use' when the port is taken", async () => {
    const blocker = Net.createServer()
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve))
    cleanups.push(() => new Promise<void>((resolve) => blocker.close(() => resolve())))
    const address = blocker.address()
    if (address === null || typeof address === "string") throw new Error("expected a TCP address")
    const run = cli("serve", "examples/echo.ts", "--host", "127.0.0.1", "--port", String(address.port))
    expect((await exitOf(run)).code).toBe(1)
    expect(run.stderr()).toContain("address already in use")
    expect(run.stderr()).toContain(String(address.port))
  })

  it("exits 1 with a clear message when the default export is not an app", async () => {
    const dir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "effect-appserver-cli-"))
    cleanups.push(() => Fs.rm(dir, { recursive: true, force: true }))
    const module = Path.join(dir, "not-an-app.mjs")
    await Fs.writeFile(module, "export default { hello: 'world' }\n")
    const run = cli("serve", module, "--port", "0")
    expect((await exitOf(run)).code).toBe(1)
    expect(run.stderr()).toContain("not-an-app.mjs")
    expect(run.stderr()).toContain("neither an Effect HTTP app nor an HttpRouter layer")
    expect(run.stdout()).not.toContain("listening on")
  })

  it("exits 1 when the module cannot be loaded", async () => {
    const dir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "effect-appserver-cli-"))
    cleanups.push(() => Fs.rm(dir, { recursive: true, force: true }))
    const run = cli("serve", Path.join(dir, "missing.ts"), "--port", "0")
    expect((await exitOf(run)).code).toBe(1)
    expect(run.stderr()).toContain("cannot load")
    expect(run.stderr()).toContain("missing.ts")
  })

  it.each([[["--help"]], [["serve", "--help"]], [["help"]]])("%j prints usage listing the flags", async (args) => {
    const run = cli(...args)
    expect((await exitOf(run)).code).toBe(0)
    const usage = run.stdout()
    expect(usage).toContain("effect-appserver serve [flags] <module>")
    for (const flag of ["--host", "--port", "--max-body-size", "--max-header-size", "--no-delay", "--server-name"]) {
      expect(usage).toContain(flag)
    }
    // every option has its flag, under its own name or the one the command line gives it
    const renamed: Record<string, string> = { path: "--socket", tls: "--tls-cert" }
    for (const key of Object.keys(Http1ServerOptions.fields)) {
      expect(usage).toContain(renamed[key] ?? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} `)
    }
    for (const flag of ["--protocol", "--tls-key", "--tls-ca", "--version", "--completions"])
      expect(usage).toContain(flag)
  })

  it("--no-delay false is the flag's value, not a second module", async () => {
    const run = cli("serve", "examples/echo.ts", "--no-delay", "false", "--port", "0")
    expect(await text(`${await listening(run)}/`)).toBe("Hello, World!")
  })

  it.each([
    [["--socket", "/tmp/unused.sock", "--port", "8080"], "--socket and --port exclude each other"],
    [["--fd", "3", "--host", "::"], "--fd and --host exclude each other"],
    [["--systemd", "--port", "0"], "--systemd and --port exclude each other"]
  ])("%j exits 2 rather than ignore the TCP address", async (args, message) => {
    const run = cli("serve", "examples/echo.ts", ...args)
    expect((await exitOf(run)).code).toBe(2)
    expect(run.stderr()).toContain(message)
    expect(run.stdout()).not.toContain("listening on")
  })

  it("--version prints the package's version", async () => {
    const { version } = JSON.parse(await Fs.readFile(Path.join(root, "package.json"), "utf8")) as { version: string }
    for (const args of [["--version"], ["-v"], ["serve", "--version"]]) {
      const run = cli(...args)
      expect((await exitOf(run)).code, args.join(" ")).toBe(0)
      expect(run.stdout().trim()).toBe(`effect-appserver v${version}`)
    }
  })

  it("--completions bash prints a script that completes the subcommand, the flags and their values", async () => {
    const run = cli("--completions", "bash")
    expect((await exitOf(run)).code).toBe(0)
    const dir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "effect-appserver-cli-"))
    cleanups.push(() => Fs.rm(dir, { recursive: true, force: true }))
    const script = Path.join(dir, "completions.bash")
    await Fs.writeFile(script, run.stdout())
    // Completes as bash does on TAB: bash-completion's _init_completion reduced to what the script
    // reads, then the function the script registers for effect-appserver.
    const complete = (...words: ReadonlyArray<string>): string =>
      execFileSync(
        "bash",
        [
          "-c",
          `_init_completion() { words=("\${COMP_WORDS[@]}"); cword=$COMP_CWORD; cur="\${COMP_WORDS[COMP_CWORD]}"; prev="\${COMP_WORDS[COMP_CWORD-1]}"; }
source "$0"
complete -p effect-appserver >/dev/null || exit 3
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=()
_effect_appserver "$1" "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "\${COMPREPLY[@]}"`,
          script,
          "effect-appserver",
          ...words
        ],
        { encoding: "utf8" }
      )
    expect(complete("se")).toBe("serve\n")
    expect(complete("serve", "app.ts", "--max-b")).toBe("--max-body-size\n")
    expect(complete("serve", "app.ts", "--access-log", "")).toBe("off\ncommon\ncombined\njson\n")
    expect(complete("serve", "app.ts", "--protocol", "s")).toBe("scgi\n")
  })

  it.each([
    ["zsh", "#compdef effect-appserver"],
    ["fish", "complete -c effect-appserver"]
  ])("--completions %s prints a %s script", async (shell, marker) => {
    const run = cli("--completions", shell)
    expect((await exitOf(run)).code).toBe(0)
    expect(run.stdout()).toContain(marker)
    expect(run.stdout()).toContain("max-body-size")
  })

  it("serves a named export with MODULE:NAME", async () => {
    // examples/metrics.ts's default export is its routes; its export `metrics` is a plain app
    const run = cli("serve", "examples/metrics.ts:metrics", "--port", "0")
    const url = await listening(run)
    const response = await fetch(`${url}/anywhere`)
    expect(response.status).toBe(200)
    expect(response.headers.get("content-type")).toContain("version=0.0.4")
  })

  it.each([
    ["examples/api.ts:Nope", "no export named Nope"],
    ["examples/hello.ts:app", "no export named app"]
  ])("exits 1 naming an export %s that does not exist", async (module, message) => {
    const run = cli("serve", module, "--port", "0")
    expect((await exitOf(run)).code).toBe(1)
    expect(run.stderr()).toContain(message)
    expect(run.stdout()).not.toContain("listening on")
  })

  it.each([
    ["salutationMissing", "test/Salutation"],
    ["greeterMissingAtStartup", "test/Greeter"]
  ])("exits 1 at startup naming the service nothing provides (test/fixtures/greeter.ts:%s)", async (name, service) => {
    const run = cli("serve", `test/fixtures/greeter.ts:${name}`, "--port", "0")
    expect((await exitOf(run)).code).toBe(1)
    expect(run.stderr()).toContain(`the app needs the service ${service}, which nothing provides`)
    expect(run.stdout()).not.toContain("listening on")
  })

  it("serves routes whose service the module provides with HttpRouter.provideRequest", async () => {
    const run = cli("serve", "test/fixtures/greeter.ts", "--port", "0")
    expect(await text(`${await listening(run)}/`)).toBe("Hello, cli")
  })
})
