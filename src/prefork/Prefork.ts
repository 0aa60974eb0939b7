/**
 * A prefork pool of worker processes serving one module with the HTTP/1.1 or the SCGI server:
 * how an Effect app uses every core of a machine and survives a crashing, leaking or hung app
 * (the role of wsgitools' forkpool and gunicorn's arbiter).
 *
 * ```ts
 * import { Prefork } from "effect-appserver"
 * Prefork.launch({ module: "./app.ts", server: { port: 8080 }, workers: 4 }).pipe(NodeRuntime.runMain)
 * ```
 *
 * The primary binds the listening socket, loads no app code and never runs the app: each worker
 * is a Node process that loads the module and serves it on the socket it inherits (dispatch
 * `shared`). Releasing the Layer stops the workers gracefully. SIGHUP reloads (new workers load
 * the module afresh and are ready before old ones drain), SIGTTIN/SIGTTOU add or remove a
 * worker; `PreforkPool` does the same from a program.
 *
 * @since 0.1.0
 */
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { Clock, Context, Deferred, Effect, FiberSet, Layer, References, Schedule } from "effect"
import type * as NetAddress from "effect/net/NetAddress"
import type * as Scope from "effect/Scope"
import { type BindError, InvalidOptions, type WorkerError } from "../errors.ts"
import { listenerLabel, targetOf } from "../listen/Listener.ts"
import {
  decodeOptions,
  Http1ServerOptions,
  type Http1ServerOptionsInput,
  millis,
  PreforkPoolOptions,
  type PreforkPoolOptionsInput,
  ScgiServerOptions,
  type ScgiServerOptionsInput
} from "../options.ts"
import { restartBackoff } from "../process/Backoff.ts"
import { resolveIdentity } from "../process/Identity.ts"
import type { LogFormat } from "../stats/Logs.ts"
import { simpleResponse, simpleScgiResponse } from "../wire/simpleResponse.ts"
import { acceptQueueOf } from "./AcceptQueue.ts"
import { Dispatcher } from "./Dispatcher.ts"
import { Pool, type PoolSnapshot } from "./Pool.ts"
import { registerPoolMetrics } from "./PoolMetrics.ts"
import { bindShared } from "./SharedSocket.ts"

export type { ExitKind, PoolSnapshot, WorkerExit, WorkerSnapshot, WorkerState } from "./Pool.ts"

/**
 * What a prefork pool serves and how.
 *
 * @since 0.1.0
 * @category models
 */
export type PreforkOptions = PreforkPoolOptionsInput & {
  /** The module the workers serve, `path[:export]` (its default export unless named). */
  readonly module: string
  /** Which server the workers run (default "http"), with its options, where to listen included. */
  readonly protocol?: "http" | "scgi" | undefined
  readonly server?: Http1ServerOptionsInput | ScgiServerOptionsInput | undefined
  /** Spacing of respawns after unexpected exits (default `restartBackoff`). */
  readonly restartBackoff?: Schedule.Schedule<unknown, unknown> | undefined
  /** A worker retires when this Schedule ends, stepped once per request it served. */
  readonly recycle?: Schedule.Schedule<unknown, unknown> | undefined
  /** Reload on SIGHUP and scale on SIGTTIN/SIGTTOU (default true). */
  readonly signals?: boolean | undefined
  /** Node flags for the workers (default: this process's). */
  readonly execArgv?: ReadonlyArray<string> | undefined
  /**
   * The user the workers run as (a name or uid), with its primary group unless `group` says;
   * the primary binds as it was started (root) and loads no app code. Needs root.
   */
  readonly user?: string | undefined
  readonly group?: string | undefined
  /**
   * How the workers write their own log to stderr (default "pretty"); they log at the level
   * this program's MinimumLogLevel has when the pool starts.
   */
  readonly logFormat?: LogFormat | undefined
}

/**
 * A running pool.
 *
 * @since 0.1.0
 * @category services
 */
export class PreforkPool extends Context.Service<
  PreforkPool,
  {
    /** Where clients connect. */
    readonly address: NetAddress.SocketAddress
    readonly snapshot: Effect.Effect<PoolSnapshot>
    /** Replaces every worker, new ones ready before old ones drain (SIGHUP). */
    readonly reload: Effect.Effect<void>
    /** One worker more (1) or less (-1) (SIGTTIN, SIGTTOU). */
    readonly scale: (delta: number) => Effect.Effect<void>
    /** Sends a signal to every worker. */
    readonly killWorkers: (signal: NodeJS.Signals) => Effect.Effect<void>
    /** Fails when the pool halts because workers keep failing to boot; never succeeds. */
    readonly halted: Effect.Effect<never, WorkerError>
  }
>()("effect-appserver/PreforkPool") {}

/** Options that say where to listen: the primary binds, the workers inherit. */
const listenKeys = new Set([
  "host",
  "port",
  "backlog",
  "ipv6Only",
  "path",
  "socketMode",
  "socketOwner",
  "socketGroup",
  "fd",
  "systemd"
])

/** The worker program beside this module: `.ts` when running from the sources, `.js` when built. */
const workerEntry = (): string => {
  const here = fileURLToPath(import.meta.url)
  return Path.join(Path.dirname(here), "..", "cli", `worker${Path.extname(here)}`)
}

/** A worker's drainGrace unless the server options set one (seconds). */
const workerDrainGrace = 1

/** The answer to a connection that found no worker with room in time (dispatch `primary`). */
const refusal = (protocol: "http" | "scgi", config: object): string => {
  const text = "no worker is free to take the connection\n"
  if (protocol === "scgi") return simpleScgiResponse(503, text)
  return simpleResponse(503, text, true, "serverName" in config ? String(config.serverName) : "")
}

/** How often a shared socket's accept queue is read (dispatch `shared`, when the pool can grow). */
const acceptQueueCheckMillis = 250

/** How often the pool makes its decisions. */
const tickMillis = 100

/**
 * Starts the pool: binds, starts `minWorkers` workers and waits until they serve. Fails with
 * `InvalidOptions`, a bind failure, or `WorkerError` when the workers cannot boot.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: PreforkOptions
): Effect.Effect<PreforkPool["Service"], WorkerError | BindError | InvalidOptions, Scope.Scope> =>
  Effect.gen(function* () {
    const {
      module,
      protocol = "http",
      server = {},
      restartBackoff: backoff,
      recycle,
      signals,
      execArgv,
      user,
      group,
      logFormat = "pretty",
      ...poolInput
    } = options
    const logLevel = yield* References.MinimumLogLevel
    const identity = yield* resolveIdentity({ user, group })
    const pool = yield* decodeOptions(PreforkPoolOptions, poolInput)
    const serverConfig =
      protocol === "scgi"
        ? yield* decodeOptions(ScgiServerOptions, server)
        : yield* decodeOptions(Http1ServerOptions, server)
    const minWorkers = pool.minWorkers ?? pool.workers ?? 1
    const maxWorkers = pool.maxWorkers ?? pool.workers ?? minWorkers
    if (maxWorkers < minWorkers) {
      return yield* new InvalidOptions({ option: "maxWorkers", detail: `is below minWorkers (${minWorkers})` })
    }
    const target = yield* targetOf(serverConfig)
    const primary = pool.dispatch === "primary"
    const shared = primary ? undefined : yield* bindShared(target)
    const workerServer = {
      // A worker stops while others keep serving (recycling, reloads, scaling down): requests racing
      // its stop on idle and new connections are answered, not lost, unless the options say otherwise.
      drainGrace: workerDrainGrace,
      ...Object.fromEntries(Object.entries(server).filter(([key]) => !listenKeys.has(key))),
      // The primary waits out stopDelay before it tells the workers to stop (see below).
      stopDelay: 0
    }
    const fibers = yield* FiberSet.make<unknown, unknown>()
    const runFork = yield* FiberSet.runtime(fibers)<never>()
    const running = new Pool(
      {
        module,
        protocol,
        server: workerServer,
        listenFd: shared?.fd,
        minWorkers,
        maxWorkers,
        maxRequests: pool.maxRequests,
        maxRequestsJitter: pool.maxRequestsJitter,
        maxWorkerAge: millis(pool.maxWorkerAge),
        workerConcurrency: pool.workerConcurrency,
        workerBusyUtilization: pool.workerBusyUtilization,
        workerTimeout: millis(pool.workerTimeout),
        idleWorkerTimeout: millis(pool.idleWorkerTimeout),
        bootTimeout: millis(pool.bootTimeout),
        shutdownTimeout: millis(serverConfig.shutdownTimeout),
        restartBackoff: backoff ?? restartBackoff,
        recycle,
        workerEntry: workerEntry(),
        execArgv: execArgv ?? process.execArgv,
        identity,
        logFormat,
        logLevel
      },
      runFork
    )
    // A primary that exits without stopping its pool (process.exit: the command line's answer to
    // a second SIGINT/SIGTERM, "stop at once", also during the graceful stop) takes its workers
    // with it, rather than leave them finishing their requests as orphans for up to
    // shutdownTimeout. Released after the pool's stop (finalizers run in reverse).
    const killAll = () => running.killWorkers("SIGKILL")
    yield* Effect.acquireRelease(
      Effect.sync(() => process.on("exit", killAll)),
      () => Effect.sync(() => process.off("exit", killAll))
    )
    yield* Effect.addFinalizer(() => running.stop)
    yield* running.start()
    let address: NetAddress.SocketAddress
    if (shared !== undefined) {
      address = shared.address
      const acceptQueue = maxWorkers > minWorkers ? acceptQueueOf(shared.fd) : undefined
      if (acceptQueue !== undefined) {
        // Connections left in the accept queue at two checks in a row: every worker is too busy
        // to accept, and the pool grows (a queue seen once is a burst the workers are taking).
        let checksWithQueue = 0
        running.queued = () => (checksWithQueue >= 2 ? 1 : 0)
        yield* FiberSet.run(
          fibers,
          Effect.repeat(
            Effect.sync(() => {
              checksWithQueue = acceptQueue() > 0 ? checksWithQueue + 1 : 0
            }),
            Schedule.spaced(acceptQueueCheckMillis)
          )
        )
      }
    } else {
      // The primary accepts once the first workers serve (until then, connections wait in the
      // listen queue, as with a shared socket).
      const dispatcher = new Dispatcher({
        target,
        noDelay: serverConfig.noDelay,
        queueLimit: serverConfig.backlog,
        queueTimeout: millis(serverConfig.requestQueueTimeout),
        refusal: refusal(protocol, serverConfig),
        hand: (socket) => running.hand(socket)
      })
      running.onCapacity = () => dispatcher.drain()
      running.rehand = (sockets) => dispatcher.requeue(sockets)
      running.queued = () => dispatcher.waiting
      address = (yield* dispatcher.listen()).address
      // Runs before the workers are told to stop (finalizers run in reverse): nothing new is
      // handed to a worker that is finishing.
      yield* Effect.addFinalizer(() => dispatcher.stop)
      yield* FiberSet.run(
        fibers,
        Effect.repeat(
          Effect.sync(() => dispatcher.expire(Date.now())),
          Schedule.spaced(tickMillis)
        )
      )
    }
    const metrics = yield* registerPoolMetrics(() => running.snapshot(Date.now()), listenerLabel(target, address))
    yield* FiberSet.run(fibers, running.run(tickMillis))
    // Per-worker metrics follow the workers as they come and go.
    yield* FiberSet.run(fibers, Effect.repeat(Effect.sync(metrics.sync), Schedule.spaced(tickMillis)))
    if (signals !== false) {
      const handlers: ReadonlyArray<readonly [NodeJS.Signals, () => void]> = [
        ["SIGHUP", () => running.reload()],
        ["SIGTTIN", () => running.scale(1)],
        ["SIGTTOU", () => running.scale(-1)],
        // logrotate signals the primary: the workers write the access log, and reopen it (told
        // over IPC: a signal could reach a worker still starting, before it listens for it).
        ...(serverConfig.accessLogFile === undefined ? [] : [["SIGUSR1", () => running.reopenLogs()] as const])
      ]
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          for (const [signal, handler] of handlers) process.on(signal, handler)
        }),
        () =>
          Effect.sync(() => {
            for (const [signal, handler] of handlers) process.off(signal, handler)
          })
      )
    }
    // Registered last, so it runs first when the pool stops (before the signal handlers, the
    // metrics and the workers go): the workers' health paths answer 503,
    // and for stopDelay the pool serves on (the primary still accepting, with dispatch primary)
    // before the graceful stop.
    const stopDelay = millis(serverConfig.stopDelay)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        running.announceDraining()
        if (stopDelay === 0) return
        yield* Effect.logInfo(
          `stopping in ${stopDelay / 1000} s (stopDelay): serving meanwhile, the health check answers 503`
        )
        yield* Effect.sleep(stopDelay)
      })
    )
    return PreforkPool.of({
      address,
      snapshot: Effect.map(Clock.currentTimeMillis, (now) => running.snapshot(now)),
      reload: Effect.sync(() => running.reload()),
      scale: (delta) => Effect.sync(() => running.scale(delta)),
      killWorkers: (signal) => Effect.sync(() => running.killWorkers(signal)),
      halted: Deferred.await(running.halted)
    })
  })

/**
 * The pool as a Layer: acquiring it starts the workers (and fails if they cannot boot),
 * releasing it stops them gracefully.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: PreforkOptions): Layer.Layer<PreforkPool, WorkerError | BindError | InvalidOptions> =>
  Layer.effect(PreforkPool, make(options))

/**
 * Runs a pool until the program is interrupted (SIGINT/SIGTERM under `NodeRuntime.runMain`: a
 * graceful stop) or the pool halts (its `WorkerError`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const launch = (options: PreforkOptions): Effect.Effect<never, WorkerError | BindError | InvalidOptions> =>
  Effect.scoped(Effect.flatMap(make(options), (pool) => pool.halted))
