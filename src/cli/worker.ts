/**
 * A prefork worker: the program a prefork primary forks. It waits for its `Start` message, loads
 * the module, serves it with the same server code as a single process (HTTP or SCGI) on the
 * listening socket it inherited, says when it is ready, and reports its load as a heartbeat. It
 * stops gracefully when the primary says so, when the primary goes away (its IPC channel closes,
 * or, as a backstop, its parent process changes), or on SIGTERM/SIGINT.
 *
 * It lives beside the command line, the top floor, because it is the one part of the pool that
 * loads app code: the primary (`src/prefork/`) never imports a server or the gateway.
 *
 * @since 0.1.0
 */
import * as Net from "node:net"
import * as PerfHooks from "node:perf_hooks"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import {
  Cause,
  Context,
  Data,
  Deferred,
  Effect,
  Exit,
  Layer,
  Option,
  References,
  Runtime,
  Schedule,
  type Scope
} from "effect"
import type * as HttpMiddleware from "effect/http/HttpMiddleware"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as Http1Server from "../http/Http1Server.ts"
import { type ConnectionSource, HandedConnections } from "../listen/Handoff.ts"
import type { FromWorker, OldestRequest, StartWorker } from "../prefork/Messages.ts"
import { decodeToWorker } from "../prefork/Messages.ts"
import * as ScgiServer from "../scgi/ScgiServer.ts"
import { reopenAccessLogs } from "../stats/AccessLog.ts"
import { Health, ServerHealth } from "../stats/Health.ts"
import * as Logs from "../stats/Logs.ts"
import { Stats, type StatsSnapshot } from "../stats/ServerStats.ts"
import { loadServed, MissingService, parseModuleRef, serveLayer } from "./serve.ts"

const send = (message: FromWorker): void => {
  // Without a channel the primary is gone; the disconnect handler stops the worker.
  if (process.connected) process.send?.(message)
}

/** The period over which event-loop utilisation is measured. */
const utilizationMillis = 1_000

/** At most one report of requests served per this long, between heartbeats. */
const servedReportMillis = 1_000

/** A request in progress, kept in an array with swap-remove (as ConnectionList, for the same GC reason). */
interface Running {
  readonly method: string
  readonly url: string
  readonly since: number
  index: number
}

/**
 * What the worker counts for its heartbeat: requests in progress (the oldest among them for the
 * log of a hung worker), requests served, and whether it is busy.
 */
class Load {
  private readonly running: Array<Running> = []
  served = 0
  private readonly concurrency: number
  private readonly requestLimit: number
  /** Connections handed over by the primary (dispatch `primary`): open now, and in all. */
  private connections = 0
  private received = 0
  private retireAsked = false
  private wasBusy = false
  private pending: ReturnType<typeof setTimeout> | undefined
  /** When a report last named a request that began on an idle worker (performance.now()). */
  private namedAt = Number.NEGATIVE_INFINITY
  private readonly nameSpacing: number

  /** The event loop was busy workerBusyUtilization of the last second. */
  private hot = false
  private wasHot = false
  /** The server's statistics, once it serves: they go with each report, for the pool's metrics. */
  stats: (() => StatsSnapshot) | undefined = undefined

  constructor(concurrency: number, requestLimit: number, heartbeat: number) {
    this.concurrency = concurrency
    this.requestLimit = requestLimit
    this.nameSpacing = heartbeat / 4
  }

  /**
   * Samples the event loop's utilisation every second (the share of the time it was running code
   * rather than waiting for I/O): over `threshold`, the worker counts as hot, and the pool grows
   * while every worker is busy or hot. A CPU-bound app with no workerConcurrency never runs
   * "too many" requests, but its event loop says it is saturated. Reported when it changes.
   */
  watchUtilization(threshold: number): () => void {
    if (threshold <= 0) return () => {}
    let last = PerfHooks.performance.eventLoopUtilization()
    const timer = setInterval(() => {
      const now = PerfHooks.performance.eventLoopUtilization()
      this.hot = PerfHooks.performance.eventLoopUtilization(now, last).utilization >= threshold
      last = now
      if (this.hot !== this.wasHot) {
        this.wasHot = this.hot
        this.report()
      }
    }, utilizationMillis)
    timer.unref()
    return () => clearInterval(timer)
  }

  get busy(): boolean {
    return this.concurrency > 0 && this.running.length >= this.concurrency
  }

  /**
   * A connection the primary handed over. The primary counts it as a request against
   * workerConcurrency until a report says it arrived: not reported at once, since its request
   * has not begun yet (the report would make room for another connection), but when the request
   * makes the worker busy, or within a second, with the open connections the primary balances on.
   */
  opened(socket: Net.Socket): void {
    this.connections++
    this.received++
    this.soon()
    socket.once("close", () => {
      this.connections--
      this.soon()
    })
  }

  begin(method: string, url: string): Running {
    const entry: Running = { method, url, since: performance.now(), index: this.running.length }
    this.running.push(entry)
    // A request that blocks the event loop (a CPU loop) stops the heartbeat before it could name
    // the request, and the primary's log of the kill said "no request in progress": a request
    // that begins on an idle worker is reported at once, at most once per quarter heartbeat, so
    // a busy worker sends few more messages than its heartbeat.
    if (entry.index === 0 && entry.since - this.namedAt >= this.nameSpacing) {
      this.namedAt = entry.since
      this.wasBusy = this.busy
      this.report()
    } else {
      this.changed()
    }
    return entry
  }

  end(entry: Running): void {
    const last = this.running.pop()
    if (last !== undefined && last !== entry) {
      this.running[entry.index] = last
      last.index = entry.index
    }
    this.served++
    this.changed()
    this.soon()
    if (this.requestLimit > 0 && this.served >= this.requestLimit && !this.retireAsked) {
      this.retireAsked = true
      send({ _tag: "Retire", served: this.served })
    }
  }

  private oldest(): OldestRequest | null {
    let oldest: Running | undefined
    for (const entry of this.running) if (oldest === undefined || entry.since < oldest.since) oldest = entry
    return oldest === undefined
      ? null
      : { method: oldest.method, url: oldest.url, age: (performance.now() - oldest.since) / 1000 }
  }

  /** Busy and idle are reported at once, so the primary can add a worker while all are busy. */
  private changed(): void {
    const busy = this.busy
    if (busy !== this.wasBusy) {
      this.wasBusy = busy
      this.report()
    }
  }

  /**
   * Requests served reach the primary within a second (its snapshot and metrics), not only with
   * the next heartbeat: one report per second at most, however many requests end.
   */
  private soon(): void {
    if (this.pending !== undefined) return
    this.pending = setTimeout(() => {
      this.pending = undefined
      this.report()
    }, servedReportMillis)
    this.pending.unref()
  }

  report(): void {
    send({
      _tag: "Load",
      inFlight: this.running.length,
      served: this.served,
      connections: this.connections,
      received: this.received,
      busy: this.busy,
      hot: this.hot,
      oldest: this.oldest(),
      ...(this.stats === undefined ? {} : { stats: this.stats() })
    })
  }

  readonly middleware: HttpMiddleware.HttpMiddleware = (app) =>
    Effect.flatMap(HttpServerRequest, (request) => {
      const entry = this.begin(request.method, request.url)
      return Effect.ensuring(
        app,
        Effect.sync(() => this.end(entry))
      )
    })
}

/** The `Start` message: the primary's answer to `Hello`. */
const started: Effect.Effect<StartWorker> = Effect.callback<StartWorker>((resume) => {
  const onMessage = (raw: unknown) => {
    const message = decodeToWorker(raw)
    if (Option.isSome(message) && message.value._tag === "Start") {
      process.off("message", onMessage)
      resume(Effect.succeed(message.value))
    }
  }
  process.on("message", onMessage)
  send({ _tag: "Hello" })
  return Effect.sync(() => {
    process.off("message", onMessage)
  })
})

/**
 * Dispatch `primary`: the connections the primary hands over, each with a `Connection` message,
 * for the server to serve as if it had accepted them. It listens for as long as the worker runs
 * (a listener left on the channel would keep the process from exiting), so no handle arrives
 * unheard; one that arrives when nothing serves any more is closed.
 */
const handedConnections = (load: Load): Effect.Effect<ConnectionSource, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let accept: ((socket: Net.Socket) => void) | undefined
      const onMessage = (raw: unknown, handle: unknown) => {
        if (!(handle instanceof Net.Socket)) return
        const message = decodeToWorker(raw)
        if (Option.isNone(message) || message.value._tag !== "Connection" || accept === undefined) {
          // Nothing serves here (the server has stopped): the client sees the close at once.
          handle.destroy()
          return
        }
        load.opened(handle)
        accept(handle)
      }
      process.on("message", onMessage)
      const source: ConnectionSource = {
        label: "connections from the prefork primary",
        attach: (serve) => {
          accept = serve
          return () => {
            accept = undefined
          }
        }
      }
      return { source, release: () => process.off("message", onMessage) }
    }),
    ({ release }) => Effect.sync(release)
  ).pipe(Effect.map(({ source }) => source))

/** How often the worker checks that its parent is still the primary, behind the IPC channel's close. */
const parentCheckMillis = 1_000

/**
 * Completes when the worker must stop: the primary said so, its IPC channel closed (the primary
 * exited, also when it was SIGKILLed), its parent changed (a backstop), or SIGTERM/SIGINT. It
 * listens from the worker's first moment, so a request to stop that comes while the module is
 * still loading is not lost.
 */
const stopRequests: Effect.Effect<Deferred.Deferred<string>, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => {
    const stop = Deferred.makeUnsafe<string>()
    const parent = process.ppid
    const done = (why: string) => Deferred.doneUnsafe(stop, Effect.succeed(why))
    const onMessage = (raw: unknown) => {
      const message = decodeToWorker(raw)
      if (Option.isSome(message) && message.value._tag === "Stop") done("asked to stop")
    }
    const onDisconnect = () => done("the primary went away")
    const onSignal = (signal: NodeJS.Signals) => done(signal)
    const timer = setInterval(() => {
      if (process.ppid !== parent) done("the primary went away")
    }, parentCheckMillis)
    timer.unref()
    process.on("message", onMessage)
    process.once("disconnect", onDisconnect)
    process.once("SIGTERM", onSignal)
    process.once("SIGINT", onSignal)
    if (!process.connected) done("the primary went away")
    const release = () => {
      clearInterval(timer)
      process.off("message", onMessage)
      process.off("disconnect", onDisconnect)
      process.off("SIGTERM", onSignal)
      process.off("SIGINT", onSignal)
    }
    return { stop, release }
  }),
  ({ release }) => Effect.sync(release)
).pipe(Effect.map(({ stop }) => stop))

/** The pool's health: draining once the primary says `Draining`; and its word to reopen the access log. */
const poolHealth: Effect.Effect<Health, never, Scope.Scope> = Effect.acquireRelease(
  Effect.sync(() => {
    const health = new Health()
    const onMessage = (raw: unknown) => {
      const message = decodeToWorker(raw)
      if (Option.isNone(message)) return
      if (message.value._tag === "Draining") health.draining = true
      else if (message.value._tag === "ReopenLogs") reopenAccessLogs()
    }
    process.on("message", onMessage)
    return { health, release: () => process.off("message", onMessage) }
  }),
  ({ release }) => Effect.sync(release)
).pipe(Effect.map(({ health }) => health))

/**
 * Signals meant for the primary (reload, scale, reopening the access log) that reach a worker too
 * (a terminal's process group, `kill -- -PGID`): ignored here, the primary tells its workers over
 * IPC. Without a listener, SIGUSR1 would start Node's inspector.
 */
const primarySignals: ReadonlyArray<NodeJS.Signals> = ["SIGHUP", "SIGTTIN", "SIGTTOU", "SIGUSR1", "SIGUSR2"]

const describeFailure = (cause: Cause.Cause<unknown>): string => {
  const error = Cause.squash(cause)
  if (error instanceof MissingService) return error.message
  return error instanceof Error ? error.message : String(error)
}

/** A failed boot, already reported on stderr: runMain does not log it again (the exit code is 3). */
class BootFailed extends Data.TaggedError("BootFailed") {
  override readonly [Runtime.errorReported] = false
}

const serveWorker = Effect.gen(function* () {
  const stop = yield* stopRequests
  const start = yield* started
  return yield* serveStarted(start, stop).pipe(
    Effect.annotateLogs({ worker: start.id, pid: process.pid }),
    Effect.provideService(References.MinimumLogLevel, start.logLevel),
    Effect.provide(Logs.layer(start.logFormat))
  )
})

/** Serves as `start` says until `stop` completes. */
const serveStarted = (start: StartWorker, stop: Deferred.Deferred<string>) =>
  Effect.gen(function* () {
    const load = new Load(start.concurrency, start.requestLimit, start.heartbeat)
    const listen = start.listen._tag === "Fd" ? { fd: start.listen.fd } : {}
    const concurrency = start.concurrency > 0 ? { maxConcurrentRequests: start.concurrency } : {}
    const handed = start.listen._tag === "Handoff" ? yield* handedConnections(load) : undefined
    // The health path reports the pool's stop, which the primary announces: not this worker's own
    // (a worker retiring while the pool serves on is not the host going away).
    const health = yield* poolHealth
    const booted = yield* Effect.exit(
      Effect.gen(function* () {
        const ref = parseModuleRef(start.module)
        const served = yield* loadServed(ref)
        const server =
          start.protocol === "scgi"
            ? ScgiServer.layer({ ...start.server, ...listen, ...concurrency })
            : Http1Server.layer({ ...start.server, ...listen, ...concurrency })
        const context = yield* Layer.build(
          serveLayer(served, ref.path, load.middleware).pipe(Layer.provideMerge(server))
        )
        const stats = Context.get(context, Stats)
        load.stats = () => Effect.runSync(stats.snapshot)
      }).pipe(Effect.provideService(HandedConnections, handed), Effect.provideService(ServerHealth, health))
    )
    if (Exit.isFailure(booted)) {
      const reason = describeFailure(booted.cause)
      send({ _tag: "BootFailed", reason })
      // Why goes to stderr (as all the worker's logs), which the primary keeps for the WorkerError
      // it halts with.
      yield* Effect.logError(booted.cause)
      return yield* new BootFailed()
    }
    send({ _tag: "Ready" })
    yield* Effect.acquireRelease(
      Effect.sync(() => load.watchUtilization(start.busyUtilization)),
      (stop) => Effect.sync(stop)
    )
    yield* Effect.forkScoped(
      Effect.repeat(
        Effect.sync(() => load.report()),
        Schedule.spaced(start.heartbeat)
      )
    )
    const why = yield* Deferred.await(stop)
    yield* Effect.logDebug(`worker ${start.id} (pid ${process.pid}) stopping: ${why}`)
  })

/**
 * Runs the worker.
 *
 * @since 0.1.0
 */
export const runWorker = (): void => {
  for (const signal of primarySignals) process.on(signal, () => {})
  NodeRuntime.runMain(Effect.scoped(serveWorker), {
    disableErrorReporting: false,
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause) ? 0 : 3)
  })
}

if (import.meta.main) runWorker()
