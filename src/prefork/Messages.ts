/**
 * What a prefork primary and its workers say to each other over the IPC channel of `fork()`:
 * JSON messages, checked with Schemas on arrival (a worker runs the user's code, so its messages
 * are not trusted to have the right shape).
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { LogFormat } from "../stats/Logs.ts"
import { StatsSnapshotSchema } from "../stats/ServerStats.ts"

/**
 * Where a worker takes its connections from.
 *
 * @since 0.1.0
 * @category models
 */
export const WorkerListen = Schema.Union([
  /** Listen on the shared socket inherited as this descriptor. */
  Schema.TaggedStruct("Fd", { fd: Schema.Number }),
  /** Take the connections the primary sends (dispatch `primary`). */
  Schema.TaggedStruct("Handoff", {})
])

/**
 * The first message to a worker: what to serve and how.
 *
 * @since 0.1.0
 * @category models
 */
export const StartWorker = Schema.TaggedStruct("Start", {
  /** The worker's number in the pool (for logs and metrics). */
  id: Schema.Number,
  /** The module to serve, `path[:export]`, relative to the working directory. */
  module: Schema.String,
  protocol: Schema.Literals(["http", "scgi"]),
  /** The server's options, without where to listen (`listen` says). */
  server: Schema.Record(Schema.String, Schema.Unknown),
  listen: WorkerListen,
  /** Milliseconds between heartbeats. */
  heartbeat: Schema.Number,
  /** Requests at which the worker counts as busy; 0 for never. */
  concurrency: Schema.Number,
  /** Event-loop utilisation over the last second at which it counts as busy; 0 for never. */
  busyUtilization: Schema.Number,
  /** Requests after which the worker asks to retire; 0 for never. */
  requestLimit: Schema.Number,
  /** How the worker writes its own log (to stderr, which the primary passes on). */
  logFormat: LogFormat,
  /** The least severe level it logs (Effect's LogLevel). */
  logLevel: Schema.Literals(["All", "Fatal", "Error", "Warn", "Info", "Debug", "Trace", "None"])
})

/**
 * @since 0.1.0
 * @category models
 */
export type StartWorker = typeof StartWorker.Type

/**
 * What the primary tells a worker.
 *
 * @since 0.1.0
 * @category models
 */
export const ToWorker = Schema.Union([
  StartWorker,
  /** Stop gracefully: stop accepting, finish what is in progress (up to shutdownTimeout), exit. */
  Schema.TaggedStruct("Stop", {}),
  /** The pool is stopping (its stopDelay, then Stop): the health path answers 503 from now on. */
  Schema.TaggedStruct("Draining", {}),
  /** Reopen the access log file by its path (logrotate renamed it). */
  Schema.TaggedStruct("ReopenLogs", {}),
  /** A connection handed over (dispatch `primary`); the socket travels with the message. */
  Schema.TaggedStruct("Connection", {})
])

/**
 * @since 0.1.0
 * @category models
 */
export type ToWorker = typeof ToWorker.Type

/**
 * The request a worker has been running longest, for the log of a worker killed for missing its
 * heartbeat.
 *
 * @since 0.1.0
 * @category models
 */
export const OldestRequest = Schema.Struct({
  method: Schema.String,
  url: Schema.String,
  /** Seconds it has been running. */
  age: Schema.Number
})

/**
 * @since 0.1.0
 * @category models
 */
export type OldestRequest = typeof OldestRequest.Type

/**
 * A worker's load: sent as its heartbeat, and at once when it becomes busy or idle.
 *
 * @since 0.1.0
 * @category models
 */
export const Load = Schema.TaggedStruct("Load", {
  inFlight: Schema.Number,
  served: Schema.Number,
  /** Open connections (dispatch `primary` balances on them). */
  connections: Schema.Number,
  /** Connections handed over to it so far (dispatch `primary`: the primary counts those in transit). */
  received: Schema.Number,
  /** Running workerConcurrency requests. */
  busy: Schema.Boolean,
  /** Its event loop was busy workerBusyUtilization of the last second. */
  hot: Schema.Boolean,
  oldest: Schema.NullOr(OldestRequest),
  /** Its server's statistics, for the pool's metrics (absent before it serves). */
  stats: Schema.optionalKey(StatsSnapshotSchema)
})

/**
 * @since 0.1.0
 * @category models
 */
export type Load = typeof Load.Type

/**
 * What a worker tells the primary.
 *
 * @since 0.1.0
 * @category models
 */
export const FromWorker = Schema.Union([
  /**
   * Listening for its `Start`: sent first, so the `Start` cannot arrive before the worker listens
   * for it (a message nobody listens for is dropped).
   */
  Schema.TaggedStruct("Hello", {}),
  /** Serving: the module loaded and the server listens. */
  Schema.TaggedStruct("Ready", {}),
  Load,
  /** It reached its request limit: the primary starts its replacement, then stops it. */
  Schema.TaggedStruct("Retire", { served: Schema.Number }),
  /** It could not start (the module does not load, a service is missing): why. */
  Schema.TaggedStruct("BootFailed", { reason: Schema.String })
])

/**
 * @since 0.1.0
 * @category models
 */
export type FromWorker = typeof FromWorker.Type

/**
 * @since 0.1.0
 */
export const decodeFromWorker = Schema.decodeUnknownOption(FromWorker)

/**
 * @since 0.1.0
 */
export const decodeToWorker = Schema.decodeUnknownOption(ToWorker)
