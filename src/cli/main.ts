/**
 * The `effect-appserver` command.
 *
 * @since 0.1.0
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Result, Schema } from "effect"
import { Http1ServerOptions } from "../options.ts"
import { flagName, flagsOf, parseArgs } from "./args.ts"
import { serve } from "./serve.ts"

const flags = flagsOf(Http1ServerOptions.fields)
const defaults: Record<string, unknown> = Schema.decodeUnknownSync(Http1ServerOptions)({})

/**
 * The usage text, generated from the options Schema.
 *
 * @since 0.1.0
 */
export const usage = (): string => {
  const lines = flags.map((flag) => {
    const value = flag.kind === "boolean" ? "" : flag.kind === "number" ? " N" : " TEXT"
    return `  --${flag.name}${value}\n      ${flag.description} (default: ${JSON.stringify(defaults[flag.key])})`
  })
  return [
    "usage: effect-appserver serve <module> [options]",
    "",
    "Serves the default export of <module>: an Effect HTTP app",
    "(Effect<HttpServerResponse, E, HttpServerRequest>) or an HttpRouter layer.",
    "Prints `listening on URL` when ready; stops gracefully on SIGINT/SIGTERM.",
    "",
    "options (sizes accept k, m and g suffixes: 64k, 10m):",
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
    return option === "" ? `invalid options: ${detail}` : `invalid value for --${flagName(option)}: ${detail}`
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

  const program = serve(module, parsed.success.options).pipe(
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
