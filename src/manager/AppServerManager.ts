/**
 * A manager for this project's own server in a subprocess, through its command line
 * (`effect-appserver serve MODULE ...`): HTTP or SCGI, on TCP or a unix socket, with or without
 * worker processes. Ready when it answers a request.
 *
 * The command is this package's own `bin` (`cli/bin.js`, or `cli/bin.ts` when running from the
 * sources) on the Node that runs us, found next to this module: no PATH lookup, and the server
 * runs the same version of the package as its manager. `command` overrides it.
 *
 * @since 0.1.0
 */
import { fileURLToPath } from "node:url"
import { type Context, type Duration, Effect, type Layer, type Scope } from "effect"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import { InvalidOptions, type WorkerError } from "../errors.ts"
import { endpointFreeCheck } from "./Address.ts"
import { clientHost, type Endpoint } from "./Endpoint.ts"
import * as Manager from "./Manager.ts"
import * as Probe from "./Probe.ts"
import * as ProcessManager from "./ProcessManager.ts"

/**
 * What to serve and how.
 *
 * @since 0.1.0
 * @category models
 */
export interface AppServerManagerOptions
  // Passed on to the process manager as they are (see ProcessManagerOptions).
  extends Pick<ProcessManager.ProcessManagerOptions, "readySchedule" | "restart" | "echo"> {
  /** The name in errors (default "effect-appserver MODULE"). */
  readonly name?: string | undefined
  /** The module to serve, relative to `cwd`: MODULE or MODULE:EXPORT (as for `serve`). */
  readonly module: string
  readonly protocol?: "http" | "scgi" | undefined
  /** The interface to bind (default 127.0.0.1). */
  readonly host?: string | undefined
  /**
   * The TCP port. Required unless `socket` is given: readiness is checked at the port, so 0 (an
   * ephemeral port) cannot be waited for.
   */
  readonly port?: number | undefined
  /** Listen on this unix socket path instead of TCP. */
  readonly socket?: string | undefined
  /** Worker processes (`--workers`); a single process when absent. */
  readonly workers?: number | undefined
  /** More flags of `serve`, e.g. `["--max-body-size", "10m"]`. */
  readonly flags?: ReadonlyArray<string> | undefined
  /** How to run `effect-appserver` (default: this package's bin on this Node). */
  readonly command?: { readonly command: string; readonly args: ReadonlyArray<string> } | undefined
  readonly cwd?: string | undefined
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /**
   * The readiness and health check (default: a GET of "/" over the protocol answered with any
   * status: the server, and with workers a worker, answers requests; a bare connect would pass
   * as soon as the prefork primary has bound, before any worker serves).
   */
  readonly probe?: Probe.Probe | undefined
  /** Fail with AddressInUse before starting when something already listens there (default true). */
  readonly checkAddressFree?: boolean | undefined
  /** Seconds the server gets after SIGTERM for its graceful stop (default 35: its own 30 s shutdown timeout, and some). */
  readonly stopGrace?: Duration.Input | undefined
  /** The default timeout of `start` and `readyWait` (default 30 s: workers load the app first). */
  readonly startTimeout?: Duration.Input | undefined
}

/** This package's command, next to this module in the sources and in dist/ alike. */
const ownCommand = (): { readonly command: string; readonly args: ReadonlyArray<string> } => {
  const extension = import.meta.url.endsWith(".ts") ? "ts" : "js"
  // fileURLToPath, not `URL.pathname`: an install path with spaces is percent-encoded there.
  return { command: process.execPath, args: [fileURLToPath(new URL(`../cli/bin.${extension}`, import.meta.url))] }
}

/**
 * Where the server will listen, for the probe and the address check; undefined without a port
 * (or with port 0) and without a socket.
 *
 * @since 0.1.0
 * @category addresses
 */
export const endpointOf = (options: AppServerManagerOptions): Endpoint | undefined => {
  if (options.socket !== undefined) return { path: options.socket }
  if (options.port === undefined || options.port === 0) return undefined
  return { host: clientHost(options.host ?? "127.0.0.1"), port: options.port }
}

/** The options of the ProcessManager that runs the server. */
const processOptions = (options: AppServerManagerOptions, endpoint: Endpoint): ProcessManager.ProcessManagerOptions => {
  const protocol = options.protocol ?? "http"
  const command = options.command ?? ownCommand()
  const args = [
    ...command.args,
    "serve",
    options.module,
    "--protocol",
    protocol,
    ...(options.socket !== undefined
      ? ["--socket", options.socket]
      : ["--host", options.host ?? "127.0.0.1", "--port", String(options.port)]),
    ...(options.workers !== undefined ? ["--workers", String(options.workers)] : []),
    ...(options.flags ?? [])
  ]
  const answers = (_status: number) => true
  const probe =
    options.probe ??
    (protocol === "scgi" ? Probe.scgi(endpoint, { expect: answers }) : Probe.http(endpoint, { expect: answers }))
  return {
    name: options.name ?? `effect-appserver ${options.module}`,
    command: command.command,
    args,
    cwd: options.cwd,
    env: options.env,
    probe,
    stopGrace: options.stopGrace ?? "35 seconds",
    startTimeout: options.startTimeout ?? "30 seconds",
    readySchedule: options.readySchedule,
    restart: options.restart,
    echo: options.echo,
    beforeStart: options.checkAddressFree === false ? undefined : endpointFreeCheck(endpoint)
  }
}

/**
 * Makes a manager for the server, not started. Closing the scope stops it. Fails with
 * `InvalidOptions` without a port (or with port 0) and without a socket: readiness is checked
 * at the address, so it must be known.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: AppServerManagerOptions
): Effect.Effect<Manager.ManagerShape, InvalidOptions, ChildProcessSpawner | Scope.Scope> =>
  Effect.suspend(() => {
    const endpoint = endpointOf(options)
    return endpoint === undefined
      ? Effect.fail(
          new InvalidOptions({
            option: "port",
            detail: "a port other than 0, or a socket, is needed: readiness is checked at the address"
          })
        )
      : ProcessManager.make(processOptions(options, endpoint))
  })

/**
 * The server as a Layer providing `Manager.Manager`: started and answering once acquired,
 * stopped (gracefully) on release.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: AppServerManagerOptions,
  startOptions?: Manager.StartOptions
): Layer.Layer<Manager.Manager, WorkerError | InvalidOptions, ChildProcessSpawner> =>
  Manager.layer(make(options), startOptions)

/**
 * `layer` under a key of one's own, for a stack of several managers.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerAs = <I>(
  key: Context.Key<I, Manager.ManagerShape>,
  options: AppServerManagerOptions,
  startOptions?: Manager.StartOptions
): Layer.Layer<I, WorkerError | InvalidOptions, ChildProcessSpawner> =>
  Manager.layerAs(key, make(options), startOptions)
