/**
 * The `effect-appserver` command.
 *
 * @since 0.1.0
 */

import * as Fs from "node:fs"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Result, Schema } from "effect"
import { Http1ServerOptions, ScgiServerOptions } from "../options.ts"
import { type Flag, flagName, flagsOf, parseArgs } from "./args.ts"
import { serve } from "./serve.ts"

/** Flags that the command line has in place of the nested `tls` option: PEM files to read. */
const tlsFlags: ReadonlyArray<Flag> = [
  {
    name: "tls-cert",
    key: "tlsCert",
    kind: "string",
    choices: [],
    description: "PEM certificate (chain) file; with --tls-key, serve HTTPS."
  },
  { name: "tls-key", key: "tlsKey", kind: "string", choices: [], description: "PEM private key file." },
  {
    name: "tls-ca",
    key: "tlsCa",
    kind: "string",
    choices: [],
    description: "PEM CA file: ask clients for a certificate and verify it against these CAs."
  }
]

const protocolFlag: Flag = {
  name: "protocol",
  key: "protocol",
  kind: "string",
  choices: ["http", "scgi"],
  description: "Speak HTTP/1.1 to clients, or SCGI to a front end such as nginx (default port 4000)."
}

const overrides = {
  rename: { path: "socket" },
  exclude: ["tls", "environ"],
  implicit: { accessLog: "combined" },
  octal: ["socketMode"]
}
const httpFlags = flagsOf(Http1ServerOptions.fields, overrides)
const flags: ReadonlyArray<Flag> = [protocolFlag, ...httpFlags, ...tlsFlags]
const defaults: Record<string, unknown> = { protocol: "http", ...Schema.decodeUnknownSync(Http1ServerOptions)({}) }
/** The options SCGI takes: the rest of the flags are HTTP's only. */
const scgiKeys = new Set(flagsOf(ScgiServerOptions.fields, overrides).map((flag) => flag.key))

/** Refuses flags that do not apply to SCGI (keep-alive, TLS and HTTP's own limits), naming them. */
const scgiOptions = (options: Readonly<Record<string, string | number | boolean>>): Record<string, unknown> => {
  for (const key of Object.keys(options)) {
    if (!scgiKeys.has(key)) {
      const flag = flags.find((f) => f.key === key)?.name ?? flagName(key)
      fail(`--${flag} does not apply to --protocol scgi`, 2)
    }
  }
  return options
}

const readPem = (flag: string, path: string): string => {
  try {
    return Fs.readFileSync(path, "utf8")
  } catch (error) {
    return fail(`--${flag}: cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`, 2)
  }
}

/** Turns the TLS file flags into the `tls` option. */
const withTls = (options: Readonly<Record<string, string | number | boolean>>): Record<string, unknown> => {
  const { tlsCert, tlsKey, tlsCa, ...rest } = options
  if (tlsCert === undefined && tlsKey === undefined && tlsCa === undefined) return rest
  if (typeof tlsCert !== "string" || typeof tlsKey !== "string") {
    return fail("--tls-cert and --tls-key go together", 2)
  }
  return {
    ...rest,
    tls: {
      cert: readPem("tls-cert", tlsCert),
      key: readPem("tls-key", tlsKey),
      ...(typeof tlsCa === "string" ? { ca: readPem("tls-ca", tlsCa), requestCert: true } : {})
    }
  }
}

/**
 * The usage text, generated from the options Schema.
 *
 * @since 0.1.0
 */
export const usage = (): string => {
  const lines = flags.map((flag) => {
    const value =
      flag.kind === "boolean"
        ? ""
        : flag.choices.length > 0
          ? ` ${flag.choices.join("|")}`
          : flag.kind === "number"
            ? " N"
            : " TEXT"
    const fallback = defaults[flag.key] === undefined ? "" : ` (default: ${JSON.stringify(defaults[flag.key])})`
    return `  --${flag.name}${value}\n      ${flag.description}${fallback}`
  })
  return [
    "usage: effect-appserver serve <module> [options]",
    "",
    "Serves the default export of <module>: an Effect HTTP app",
    "(Effect<HttpServerResponse, E, HttpServerRequest>) or an HttpRouter layer.",
    "Prints `listening on URL` when ready; stops gracefully on SIGINT/SIGTERM.",
    "With --protocol scgi the port defaults to 4000, --max-header-size bounds the SCGI",
    "header netstring (default 64k), and the keep-alive, TLS and HTTP-limit flags do not apply.",
    "",
    "options (sizes accept k, m and g suffixes: 64k, 10m; timeouts are seconds):",
    ...lines,
    "  -h, --help",
    "      Show this help."
  ].join("\n")
}

const fail = (message: string, code: number): never => {
  process.stderr.write(`effect-appserver: ${message}\n`)
  process.exit(code)
}

/** Exit codes: 0 stopped by a signal or done, 1 runtime failure (bind, load), 2 usage. */
const exitCode = (error: unknown): number =>
  typeof error === "object" && error !== null && "_tag" in error && error._tag === "InvalidOptions" ? 2 : 1

const describe = (error: unknown): string => {
  if (typeof error === "object" && error !== null && "_tag" in error && error._tag === "InvalidOptions") {
    const option = "option" in error && typeof error.option === "string" ? error.option : ""
    const detail = "detail" in error && typeof error.detail === "string" ? error.detail : String(error)
    const flag = option === "path" ? "socket" : option.startsWith("tls") ? "tls-cert/--tls-key" : flagName(option)
    return option === "" ? `invalid options: ${detail}` : `invalid value for --${flag}: ${detail}`
  }
  return error instanceof Error ? error.message : String(error)
}

/**
 * Runs the command line.
 *
 * @since 0.1.0
 */
export const main = (argv: ReadonlyArray<string>): void => {
  const [command, ...rest] = argv
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(`${usage()}\n`)
    if (command === undefined) process.exit(2)
    return
  }
  if (command !== "serve") fail(`unknown command ${JSON.stringify(command)} (try --help)`, 2)
  const parsed = parseArgs(rest, flags)
  if (Result.isFailure(parsed)) {
    fail(parsed.failure.message, 2)
    return
  }
  if (parsed.success.help) {
    process.stdout.write(`${usage()}\n`)
    return
  }
  const [module, ...extra] = parsed.success.positional
  if (module === undefined || extra.length > 0) {
    fail("serve takes exactly one <module> (try --help)", 2)
    return
  }

  // A second SIGINT/SIGTERM while stopping exits at once.
  let signals = 0
  const onSignal = () => {
    if (++signals > 1) process.exit(130)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)

  const { protocol, ...options } = parsed.success.options
  const program = (
    protocol === "scgi"
      ? serve(module, { protocol: "scgi", options: scgiOptions(options) })
      : serve(module, { protocol: "http", options: withTls(options) })
  ).pipe(
    Effect.catchCause((cause) => {
      const failure = Cause.findErrorOption(cause)
      if (failure._tag === "Some") return Effect.sync(() => fail(describe(failure.value), exitCode(failure.value)))
      return Effect.failCause(cause)
    })
  )
  NodeRuntime.runMain(program, {
    disableErrorReporting: false,
    // Stopped by a signal is a clean exit for a server.
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 1)
  })
}
