/**
 * The `effect-appserver` command, on `effect/cli`: `serve <module>[:export]` with flags derived
 * from the options Schemas, plus `--help`, `--version`, `--completions SHELL` and `--log-level`.
 *
 * Exit codes: 0 when stopped by a signal (or after --help, --version, --completions), 1 for a
 * failure at run time (the module cannot be loaded, the address cannot be bound, a service is
 * missing), 2 for a command line that cannot be used, with a message naming the flag, 130 for a
 * second signal while stopping.
 *
 * @since 0.1.0
 */

import * as Fs from "node:fs"
import * as Path from "node:path"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Console, Context, Data, Effect, Exit, Layer, type Option, Schema, type SchemaAST } from "effect"
import { Argument, CliConfig, CliError, CliOutput, Command, Flag, GlobalFlag, TerminalCapabilities } from "effect/cli"
import { InvalidOptions } from "../errors.ts"
import {
  decodeOptions,
  Http1ServerOptions,
  IdentityFields,
  IdentityOptions,
  MetricsFields,
  MetricsOptions,
  PreforkFields,
  PreforkPoolOptions,
  ScgiServerOptions
} from "../options.ts"
import * as Prefork from "../prefork/Prefork.ts"
import { giveFile, resolveIdentity } from "../process/Identity.ts"
import * as SystemdNotify from "../process/SystemdNotify.ts"
import * as Logs from "../stats/Logs.ts"
import { LogFormat } from "../stats/Logs.ts"
import { type FlagValue, formatSize, givenOptions, isSizeField, type OptionFlag, optionFlags } from "./flags.ts"
import { metricsEndpoint } from "./metricsEndpoint.ts"
import { watchForChanges } from "./reload.ts"
import { AppLoadError, formatListening, parseModuleRef, serve, startupLine } from "./serve.ts"
import { packageVersion } from "./version.ts"

export { packageVersion } from "./version.ts"

/**
 * A command line that parses but cannot be used: flags that exclude each other or do not apply.
 *
 * @since 0.1.0
 * @category errors
 */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

const http1Defaults: Readonly<Record<string, unknown>> = Schema.decodeUnknownSync(Http1ServerOptions)({})
const scgiDefaults: Readonly<Record<string, unknown>> = Schema.decodeUnknownSync(ScgiServerOptions)({})

/** The options each protocol takes; the TLS file flags stand for HTTP's `tls`. */
const optionsOf = {
  http: new Set([...Object.keys(Http1ServerOptions.fields), "tlsCert", "tlsKey", "tlsCa"]),
  scgi: new Set(Object.keys(ScgiServerOptions.fields))
} as const

/** The defaults and the protocol an option applies to, for --help. */
const note = (key: string, ast: SchemaAST.AST): string => {
  const format = (value: unknown) =>
    typeof value === "number" && isSizeField(key, ast) ? formatSize(value) : JSON.stringify(value)
  const only = !optionsOf.scgi.has(key) ? "HTTP only" : !optionsOf.http.has(key) ? "SCGI only" : undefined
  const fallback = http1Defaults[key] ?? scgiDefaults[key]
  if (only !== undefined) return fallback === undefined ? `(${only})` : `(default ${format(fallback)}; ${only})`
  if (fallback === undefined) return ""
  const http = format(http1Defaults[key])
  const scgi = format(scgiDefaults[key])
  return http === scgi ? `(default ${http})` : `(default ${http}; ${scgi} with --protocol scgi)`
}

// One flag per option of either server, with HTTP's description where both have the option
// (SCGI's options first, then HTTP's own). `tls` is given as files and `environ`, a record, in code.
const schemaFlags = optionFlags(
  { ...ScgiServerOptions.fields, ...Http1ServerOptions.fields },
  { rename: { path: "socket" }, exclude: ["tls", "environ"], octal: ["socketMode"], note }
)

/** The command line's form of the nested `tls` option: PEM files, read once the flags are checked. */
const pemFlag = (key: string, name: string, description: string): OptionFlag => ({
  key,
  name,
  flag: Flag.File(name).pipe(Flag.withDescription(`${description} (HTTP only)`), Flag.optional)
})

/** The prefork pool's flags: any of them runs the module in worker processes. */
const poolFlags = optionFlags(PreforkFields, {
  note: (key) => {
    const fallback = (Schema.decodeUnknownSync(PreforkPoolOptions)({}) as Record<string, unknown>)[key]
    return fallback === undefined ? "" : `(default ${JSON.stringify(fallback)})`
  }
})
const poolKeys = new Set(poolFlags.map((flag) => flag.key))

/** Who the app runs as: for a single process and for a pool's workers alike. */
const identityFlags = optionFlags(IdentityFields)
const identityKeys = new Set(identityFlags.map((flag) => flag.key))

/** Where the metrics endpoint listens: for a single process and for a pool's primary alike. */
const metricsFlags = optionFlags(MetricsFields, { note: (key) => (key === "metricsHost" ? "(default 127.0.0.1)" : "") })
const metricsKeys = new Set(metricsFlags.map((flag) => flag.key))

const flags: ReadonlyArray<OptionFlag> = [
  ...schemaFlags,
  ...poolFlags,
  ...identityFlags,
  ...metricsFlags,
  pemFlag("tlsCert", "tls-cert", "PEM certificate (chain) file; with --tls-key, serve HTTPS."),
  pemFlag("tlsKey", "tls-key", "PEM private key file."),
  pemFlag("tlsCa", "tls-ca", "PEM CA file: ask clients for a certificate and verify it against these CAs.")
]

const flagNames: ReadonlyMap<string, string> = new Map(flags.map((flag) => [flag.key, flag.name]))

/** The flag that sets an option, for messages: `maxBodySize` → `--max-body-size`. */
const flagOf = (option: string): string => {
  const key = option.split(".")[0]
  if (key === "tls") return "--tls-cert/--tls-key"
  return `--${flagNames.get(key) ?? key}`
}

type Given = Readonly<Record<string, FlagValue>>

/** Refuses flags that do not apply to the protocol (to SCGI: keep-alive, TLS, HTTP's own limits). */
const checkProtocol = (protocol: keyof typeof optionsOf, given: Given): Effect.Effect<void, UsageError> => {
  const key = Object.keys(given).find((key) => !optionsOf[protocol].has(key))
  return key === undefined
    ? Effect.void
    : Effect.fail(new UsageError({ message: `${flagOf(key)} does not apply to --protocol ${protocol}` }))
}

// A unix socket, an inherited descriptor and systemd's socket each replace TCP's host and port;
// given together, one of them would be ignored without a word.
const listenTargets = ["path", "fd", "systemd"] as const
const tcpOnly = ["host", "port", "ipv6Only"] as const

const checkTarget = (given: Given): Effect.Effect<void, UsageError> => {
  const isGiven = (key: string) => given[key] !== undefined && given[key] !== false
  const targets = listenTargets.filter(isGiven)
  const conflicts = targets.length > 1 ? targets.slice(1) : tcpOnly.filter(isGiven)
  if (targets.length === 0 || conflicts.length === 0) return Effect.void
  return Effect.fail(
    new UsageError({ message: `${flagOf(targets[0])} and ${flagOf(conflicts[0])} exclude each other` })
  )
}

const readPem = (key: string, path: string): Effect.Effect<string, UsageError> =>
  Effect.try({
    try: () => Fs.readFileSync(path, "utf8"),
    catch: (error) =>
      new UsageError({
        message: `${flagOf(key)}: cannot read ${path}: ${error instanceof Error ? error.message : String(error)}`
      })
  })

/** Turns the TLS file flags into the `tls` option. */
const withTls = (given: Given): Effect.Effect<Record<string, unknown>, UsageError> =>
  Effect.gen(function* () {
    const { tlsCert, tlsKey, tlsCa, ...rest } = given
    if (tlsCert === undefined && tlsKey === undefined && tlsCa === undefined) return rest
    if (typeof tlsCert !== "string" || typeof tlsKey !== "string") {
      return yield* new UsageError({ message: "--tls-cert and --tls-key go together" })
    }
    const ca = typeof tlsCa === "string" ? { ca: yield* readPem("tlsCa", tlsCa), requestCert: true } : {}
    return { ...rest, tls: { cert: yield* readPem("tlsCert", tlsCert), key: yield* readPem("tlsKey", tlsKey), ...ca } }
  })

/** What `serve` does with its parsed command line. */
const serveWith = Effect.fnUntraced(function* (
  module: string,
  protocol: "http" | "scgi",
  logFormat: LogFormat,
  reload: boolean,
  options: Readonly<Record<string, Option.Option<FlagValue>>>
) {
  const all = givenOptions(options)
  const given = Object.fromEntries(
    Object.entries(all).filter(([key]) => !poolKeys.has(key) && !identityKeys.has(key) && !metricsKeys.has(key))
  )
  const pool = Object.fromEntries(Object.entries(all).filter(([key]) => poolKeys.has(key)))
  const as = yield* decodeOptions(
    IdentityOptions,
    Object.fromEntries(Object.entries(all).filter(([key]) => identityKeys.has(key)))
  )
  yield* checkTarget(given)
  yield* checkProtocol(protocol, given)
  const metrics = yield* decodeOptions(
    MetricsOptions,
    Object.fromEntries(Object.entries(all).filter(([key]) => metricsKeys.has(key)))
  )
  const withMetrics = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    metrics.metricsPort === undefined
      ? effect
      : Effect.scoped(Effect.andThen(metricsEndpoint(metrics.metricsHost, metrics.metricsPort), effect))
  // Refused before anything is bound when this process may not become that user.
  const identity = yield* resolveIdentity(as)
  // An access log file opened before the drop (or by workers started as the user) must be theirs.
  const accessLogFile = given.accessLogFile
  if (identity !== undefined && typeof accessLogFile === "string") {
    yield* giveFile("accessLogFile", accessLogFile, identity)
  }
  // Under a `Type=notify` unit: taken from the environment, so no worker or child inherits it.
  const notifier = SystemdNotify.fromEnvironment()
  SystemdNotify.unsetEnvironment()
  if (Object.keys(pool).length > 0 || reload) {
    yield* decodeOptions(PreforkPoolOptions, pool)
    const server =
      protocol === "scgi"
        ? yield* decodeOptions(ScgiServerOptions, given).pipe(Effect.as(given))
        : yield* Effect.tap(withTls(given), (withPem) => decodeOptions(Http1ServerOptions, withPem))
    return yield* withMetrics(preforked(module, protocol, server, { ...pool, ...as, logFormat }, notifier, reload))
  }
  // The server decodes its options too; decoding them here reports a value the Schema refuses
  // before the module is loaded.
  if (protocol === "scgi") {
    const decoded = yield* decodeOptions(ScgiServerOptions, given)
    return yield* withMetrics(serve(module, { protocol: "scgi", options: decoded }, identity, notifier))
  }
  const decoded = yield* decodeOptions(Http1ServerOptions, yield* withTls(given))
  return yield* withMetrics(serve(module, { protocol: "http", options: decoded }, identity, notifier))
})

const serveCommand = Command.make(
  "serve",
  {
    module: Argument.File("module").pipe(
      Argument.withDescription(
        "The module to serve, relative to the working directory: its default export, or with " +
          "MODULE:NAME its export NAME (split at the last ':' when NAME is an identifier and " +
          "MODULE:NAME is not itself a file)."
      )
    ),
    protocol: Flag.Literals("protocol", ["http", "scgi"]).pipe(
      Flag.withDescription("Speak HTTP/1.1 to clients, or SCGI to a front end such as nginx. (default http)"),
      Flag.withDefault("http")
    ),
    logFormat: Flag.Literals("log-format", LogFormat.literals).pipe(
      Flag.withDescription(
        "How the server's own log is written to standard error (the access log goes to standard output or --access-log-file): pretty, one JSON object per line, or logfmt. Its level: --log-level. (default pretty)"
      ),
      Flag.withDefault("pretty")
    ),
    reload: Flag.Boolean("reload").pipe(
      Flag.withDescription(
        "Development: watch the module's directory and reload the app when a file in it changes (a rolling reload: new workers load the changed code before old ones drain). Without --workers, it runs one worker. Never for production."
      ),
      Flag.withDefault(false)
    ),
    options: Object.fromEntries(flags.map((flag) => [flag.key, flag.flag]))
  },
  ({ module, protocol, logFormat, reload, options }) =>
    serveWith(module, protocol, logFormat, reload, options).pipe(Effect.provide(Logs.layer(logFormat)))
).pipe(
  Command.withDescription(
    "Serves an Effect HTTP app (Effect<HttpServerResponse, E, HttpServerRequest>) or an HttpRouter " +
      "layer exported by a module. Prints `listening on URL` once ready; stops gracefully on " +
      "SIGINT/SIGTERM. Sizes take k, m and g suffixes (64k, 10m); timeouts are seconds."
  ),
  Command.withShortDescription("Serve an Effect HTTP app from a module"),
  Command.withExamples([
    { command: "effect-appserver serve app.ts --port 8080", description: "Serve app.ts's default export" },
    { command: "effect-appserver serve app.ts:ApiLive --max-body-size 10m", description: "Serve a named export" },
    {
      command:
        "effect-appserver serve app.ts --protocol scgi --socket /run/app/scgi.sock --socket-mode 660 --socket-group www-data --user app",
      description: "Serve SCGI to nginx on a unix socket, the app running as the user app"
    }
  ])
)

/**
 * Serves the module in a prefork pool, printing `listening on URL` once the first workers serve.
 * The primary loads no app code: it only checks that the module's file exists (a typo is one
 * clear error rather than three failed boots); a module that does not load fails each worker's
 * boot, and the pool halts with what the last one wrote to stderr.
 */
const preforked = (
  module: string,
  protocol: "http" | "scgi",
  server: Readonly<Record<string, unknown>>,
  pool: Readonly<Record<string, unknown>> & { readonly logFormat: LogFormat },
  notifier: SystemdNotify.Notifier | undefined,
  reload: boolean
) =>
  Effect.gen(function* () {
    const ref = parseModuleRef(module)
    if (!Fs.existsSync(ref.path)) {
      return yield* new AppLoadError({ module: ref.path, reason: "no such file" })
    }
    const scheme = protocol === "scgi" ? "scgi" : server.tls === undefined ? "http" : "https"
    return yield* Effect.scoped(
      Effect.gen(function* () {
        const running = yield* Prefork.make({ ...pool, module, protocol, server })
        const workers = (yield* running.snapshot).workers.length
        const url = formatListening(running.address, scheme)
        yield* Effect.logInfo(
          startupLine(module, protocol, url, `${workers} workers, dispatch ${String(pool.dispatch ?? "shared")}`)
        )
        yield* Console.log(`listening on ${url} (${workers} workers)`)
        if (notifier !== undefined) yield* SystemdNotify.serving(notifier, `serving on ${url} with ${workers} workers`)
        if (reload) {
          const dir = Path.dirname(Path.resolve(ref.path))
          yield* watchForChanges(dir, (changed) =>
            Effect.andThen(
              Effect.logInfo(`--reload: ${changed.join(", ")} changed in ${dir}: reloading the workers`),
              running.reload
            )
          )
          yield* Effect.logInfo(`--reload: watching ${dir} (development only)`)
        }
        return yield* running.halted
      })
    )
  })

const command = Command.make("effect-appserver").pipe(
  Command.withDescription("Application servers for Effect HTTP apps: HTTP/1.1 and SCGI."),
  Command.withSubcommands([serveCommand])
)

/** Which of the command line's words is a flag's name, for messages about stray values. */
const flagBefore = (argv: ReadonlyArray<string>, value: string): OptionFlag | undefined => {
  const index = argv.indexOf(value)
  const previous = index > 0 ? argv[index - 1] : ""
  return flags.find((flag) => previous === `--${flag.name}`)
}

/** effect/cli's messages, with the flag named where effect/cli names none. */
const describeCliError = (argv: ReadonlyArray<string>, error: CliError.CliError): string => {
  switch (error._tag) {
    case "MissingArgument":
      return `missing <${error.argument}> (try --help)`
    case "UnexpectedArgument": {
      // `--no-delay maybe`: a boolean flag takes a value only as true/false (or yes/no, on/off,
      // 1/0), so the word after it became a positional argument; name the flag instead.
      const stray = error.arguments[0]
      const flag = flagBefore(argv, stray)
      return flag === undefined
        ? `${error.message} (serve takes one <module>; try --help)`
        : `--${flag.name}: expected true or false, got ${JSON.stringify(stray)}`
    }
    default:
      return error.message
  }
}

const fail = (message: string): Effect.Effect<void> => Console.error(`effect-appserver: ${message}`)

/**
 * Help on stdout; a command line that cannot be parsed on stderr, one line per error, without
 * effect/cli's default of printing the whole help first (30 flags bury the one message).
 */
const presenter = (argv: ReadonlyArray<string>): CliOutput.Presenter => ({
  present: (event) =>
    Effect.gen(function* () {
      const context = yield* Effect.context<never>()
      const formatter =
        Context.getOrUndefined(context, CliOutput.Formatter) ??
        CliOutput.defaultFormatter({ colors: Context.get(context, TerminalCapabilities.TerminalCapabilities).canColor })
      switch (event._tag) {
        case "Help":
          return yield* Console.log(formatter.formatHelpDoc(event.helpDoc))
        case "Version":
          return yield* Console.log(formatter.formatVersion(event.name, event.version))
        case "InvalidInvocation":
          return yield* Effect.forEach(event.errors, (error) => fail(describeCliError(argv, error)), { discard: true })
      }
    })
})

/** Reports a failure and gives the exit code: 2 for the command line, 1 for the rest. */
const report = (error: unknown): Effect.Effect<number> => {
  if (CliError.isCliError(error)) {
    // Parse errors were presented already; ShowHelp without errors is a bare `effect-appserver`.
    return error._tag === "ShowHelp" ? Effect.succeed(2) : Effect.as(fail(error.message), 2)
  }
  if (error instanceof InvalidOptions) {
    const message =
      error.option === ""
        ? `invalid options: ${error.detail}`
        : `invalid value for ${flagOf(error.option)}: ${error.detail}`
    return Effect.as(fail(message), 2)
  }
  if (error instanceof UsageError) return Effect.as(fail(error.message), 2)
  return Effect.as(fail(error instanceof Error ? error.message : String(error)), 1)
}

/**
 * While `serve` is the only command, the program's help is its help: `effect-appserver --help`
 * and `effect-appserver help` show every flag, as `effect-appserver serve --help` does.
 */
const helpAliases = (argv: ReadonlyArray<string>): ReadonlyArray<string> =>
  argv.length === 1 && ["help", "--help", "-h"].includes(argv[0]) ? ["serve", "--help"] : argv

// An interactive wizard does not fit a server, configured from scripts and unit files.
const builtIns = GlobalFlag.BuiltIns.filter((flag) => flag !== GlobalFlag.Wizard)

/**
 * Runs the command line.
 *
 * @since 0.1.0
 */
export const main = (argv: ReadonlyArray<string>): void => {
  // A second SIGINT/SIGTERM while stopping exits at once.
  let signals = 0
  const onSignal = () => {
    if (++signals > 1) process.exit(130)
  }
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)

  const program = Command.runWith(command, { version: packageVersion() })(helpAliases(argv)).pipe(
    Effect.as(0),
    Effect.catch(report),
    Effect.provide(
      Layer.mergeAll(NodeServices.layer, CliConfig.layer({ builtIns }), CliOutput.layerPresenter(presenter(argv)))
    )
  )
  NodeRuntime.runMain(program, {
    disableErrorReporting: false,
    // Stopped by a signal is a clean exit for a server.
    teardown: (exit, onExit) =>
      onExit(
        Exit.isSuccess(exit)
          ? typeof exit.value === "number"
            ? exit.value
            : 0
          : Cause.hasInterruptsOnly(exit.cause)
            ? 0
            : 1
      )
  })
}
