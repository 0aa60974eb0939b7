/**
 * Server statistics (the role of cheroot's `stats`): plain counters the connection code bumps on
 * the hot path, exposed as a snapshot and as Effect Metrics. The metrics are registered with hooks
 * that read the counters when metrics are read, so serving a request costs no metric update.
 *
 * @since 0.1.0
 */
import { Context, Effect, Metric } from "effect"
import type * as Scope from "effect/Scope"

/**
 * Upper bounds (seconds) of the request duration histogram's buckets.
 *
 * @since 0.1.0
 */
export const durationBoundaries: ReadonlyArray<number> = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
]

/**
 * A point-in-time copy of a server's statistics.
 *
 * @since 0.1.0
 * @category models
 */
export interface StatsSnapshot {
  /** Connections accepted (including those refused with 503 over maxConnections). */
  readonly accepted: number
  readonly openConnections: number
  /** Open connections waiting for a next request. */
  readonly idleConnections: number
  /** Requests whose head was received and that went to the app (or to the queue for it). */
  readonly requests: number
  readonly bytesRead: number
  readonly bytesWritten: number
  /** Connections answered 503 because of maxConnections. */
  readonly rejectedConnections: number
  /** Requests answered 503 because they waited longer than requestQueueTimeout. */
  readonly rejectedRequests: number
  /** Timeouts by kind: headers, request (body), keepAlive (idle), handshake (TLS), send (a peer not reading). */
  readonly timeouts: Readonly<Record<TimeoutKind, number>>
  /** Requests refused by the parser, by status. */
  readonly protocolErrors: Readonly<Record<string, number>>
  /** Request durations in seconds, from head received to response done. */
  readonly duration: {
    readonly count: number
    readonly sum: number
    readonly min: number
    readonly max: number
    /** `[upper bound, count of durations up to it]`, cumulative, as in Effect's histogram. */
    readonly buckets: ReadonlyArray<readonly [number, number]>
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export type TimeoutKind = "headers" | "request" | "keepAlive" | "handshake" | "send"

/**
 * What the stats need from the live connections when a snapshot is taken.
 *
 * @since 0.1.0
 * @category models
 */
export interface LiveConnections {
  readonly open: number
  readonly idle: number
  /** Bytes read and written by the connections still open. */
  readonly bytesRead: number
  readonly bytesWritten: number
}

/**
 * The mutable counters of one server.
 *
 * @since 0.1.0
 * @category models
 */
export class ServerStats {
  accepted = 0
  requests = 0
  rejectedConnections = 0
  rejectedRequests = 0
  /** Bytes of connections that have closed. */
  closedBytesRead = 0
  closedBytesWritten = 0

  /** A connection closed: its byte counts move from the live ones to the totals. */
  connectionClosed(socket: { readonly bytesRead: number; readonly bytesWritten: number }): void {
    this.closedBytesRead += socket.bytesRead
    this.closedBytesWritten += socket.bytesWritten
  }
  readonly timeouts: Record<TimeoutKind, number> = { headers: 0, request: 0, keepAlive: 0, handshake: 0, send: 0 }
  readonly protocolErrors: Record<string, number> = {}
  private readonly bucketCounts = new Array<number>(durationBoundaries.length + 1).fill(0)
  private durationCount = 0
  private durationSum = 0
  private durationMin = Number.POSITIVE_INFINITY
  private durationMax = 0
  /** Reads the live connections; set by the server that owns these stats. */
  live: () => LiveConnections = () => ({ open: 0, idle: 0, bytesRead: 0, bytesWritten: 0 })

  protocolError(status: number): void {
    this.protocolErrors[status] = (this.protocolErrors[status] ?? 0) + 1
  }

  /** Records one request's duration in seconds. */
  duration(seconds: number): void {
    let i = 0
    while (i < durationBoundaries.length && seconds > durationBoundaries[i]) i++
    this.bucketCounts[i]++
    this.durationCount++
    this.durationSum += seconds
    if (seconds < this.durationMin) this.durationMin = seconds
    if (seconds > this.durationMax) this.durationMax = seconds
  }

  private histogram(): StatsSnapshot["duration"] {
    let cumulative = 0
    const buckets = durationBoundaries.map((bound, i): readonly [number, number] => {
      cumulative += this.bucketCounts[i]
      return [bound, cumulative]
    })
    return {
      count: this.durationCount,
      sum: this.durationSum,
      min: this.durationCount === 0 ? 0 : this.durationMin,
      max: this.durationMax,
      buckets
    }
  }

  snapshot(): StatsSnapshot {
    const live = this.live()
    return {
      accepted: this.accepted,
      openConnections: live.open,
      idleConnections: live.idle,
      requests: this.requests,
      bytesRead: this.closedBytesRead + live.bytesRead,
      bytesWritten: this.closedBytesWritten + live.bytesWritten,
      rejectedConnections: this.rejectedConnections,
      rejectedRequests: this.rejectedRequests,
      timeouts: { ...this.timeouts },
      protocolErrors: { ...this.protocolErrors },
      duration: this.histogram()
    }
  }
}

/**
 * The statistics of the server in context.
 *
 * @since 0.1.0
 * @category services
 */
export class Stats extends Context.Service<
  Stats,
  {
    readonly snapshot: Effect.Effect<StatsSnapshot>
  }
>()("effect-appserver/Stats") {}

const prefix = "appserver_"

const readOnly = <S>(get: () => S): Metric.Metric.Hooks<never, S> => ({
  get,
  update: () => {},
  modify: () => {}
})

/**
 * Registers the statistics as Effect Metrics (names prefixed `appserver_`, attribute `server`
 * = the listening address) for the rest of the scope.
 *
 * @since 0.1.0
 */
export const registerMetrics = (stats: ServerStats, server: string): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Effect.context<never>()
    const at = { server }
    const live = () => stats.live()
    const registrations: Array<Metric.Registration> = []
    const counter = (name: string, description: string, attributes: Record<string, string>, read: () => number) => {
      const metric = Metric.counter(prefix + name, { description, incremental: true, attributes })
      registrations.push(
        Metric.registerUnsafe(
          metric,
          context,
          readOnly(() => ({ count: read(), incremental: true }))
        )
      )
    }
    const gauge = (name: string, description: string, read: () => number) => {
      const metric = Metric.gauge(prefix + name, { description, attributes: at })
      registrations.push(
        Metric.registerUnsafe(
          metric,
          context,
          readOnly(() => ({ value: read() }))
        )
      )
    }
    counter("connections_accepted_total", "Connections accepted", at, () => stats.accepted)
    gauge("connections_open", "Open connections", () => live().open)
    gauge("connections_idle", "Open connections waiting for a request", () => live().idle)
    counter("requests_total", "Requests received", at, () => stats.requests)
    counter("bytes_read_total", "Bytes read from clients", at, () => stats.snapshot().bytesRead)
    counter("bytes_written_total", "Bytes written to clients", at, () => stats.snapshot().bytesWritten)
    counter("connections_rejected_total", "Connections refused (maxConnections)", at, () => stats.rejectedConnections)
    counter("requests_rejected_total", "Requests refused (request queue timeout)", at, () => stats.rejectedRequests)
    for (const kind of ["headers", "request", "keepAlive", "handshake", "send"] as const) {
      counter("timeouts_total", "Timeouts by kind", { ...at, kind }, () => stats.timeouts[kind])
    }
    for (const status of ["400", "408", "413", "414", "417", "431", "501", "505"]) {
      counter(
        "protocol_errors_total",
        "Requests refused by the parser, by status",
        { ...at, status },
        () => stats.protocolErrors[status] ?? 0
      )
    }
    const histogram = Metric.histogram(`${prefix}request_duration_seconds`, {
      description: "Request duration, head received to response done",
      boundaries: durationBoundaries,
      attributes: at
    })
    registrations.push(
      Metric.registerUnsafe(
        histogram,
        context,
        readOnly(() => {
          const d = stats.snapshot().duration
          return {
            buckets: d.buckets.map(([bound, count]): [number, number] => [bound, count]),
            count: d.count,
            min: d.min,
            max: d.max,
            sum: d.sum
          }
        })
      )
    )
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const registration of registrations) registration.remove()
      })
    )
  })
