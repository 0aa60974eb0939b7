/**
 * Server statistics (the role of cheroot's `stats`): plain counters the connection code bumps on
 * the hot path, exposed as a snapshot and as Effect Metrics. The metrics are registered with hooks
 * that read the counters when metrics are read, so serving a request costs no metric update.
 *
 * @since 0.1.0
 */
import { Context, Effect, Metric, Schema } from "effect"
import type * as Scope from "effect/Scope"
import { readOnly, registerCounter, registerGauge } from "./MetricHooks.ts"

/**
 * Upper bounds (seconds) of the request duration histogram's buckets.
 *
 * @since 0.1.0
 */
export const durationBoundaries: ReadonlyArray<number> = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60
]

/**
 * The request methods counted apart (OpenTelemetry's `http.request.method` values); any other
 * is `_OTHER`, so a client cannot create series at will.
 *
 * @since 0.1.0
 */
export const knownMethods = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] as const

const otherMethod = knownMethods.length

const methodIndex = (method: string): number => {
  switch (method) {
    case "GET":
      return 0
    case "HEAD":
      return 1
    case "POST":
      return 2
    case "PUT":
      return 3
    case "DELETE":
      return 4
    case "CONNECT":
      return 5
    case "OPTIONS":
      return 6
    case "TRACE":
      return 7
    case "PATCH":
      return 8
    default:
      return otherMethod
  }
}

/**
 * Response status classes, `1xx` to `5xx`.
 *
 * @since 0.1.0
 */
export const statusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const

/**
 * Connection states as the metrics name them: `handshake` (TLS, before it is a connection),
 * `new` (nothing received yet), `active` (a request in progress), `idle` (keep-alive, between
 * requests), `closing` (finishing its last exchange), `upgraded` (a WebSocket), `lingering`
 * (closed on our side, reading what the peer still sends).
 *
 * @since 0.1.0
 */
export const connectionStates = ["handshake", "new", "active", "idle", "closing", "upgraded", "lingering"] as const

/**
 * @since 0.1.0
 * @category models
 */
export type ConnectionStateName = (typeof connectionStates)[number]

/**
 * Requests of one method and status class that completed with a response: their count and
 * durations (seconds), the buckets cumulative over `durationBoundaries` (the last is +Inf).
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestsOfKind {
  readonly method: string
  readonly statusClass: string
  readonly count: number
  readonly sum: number
  readonly buckets: ReadonlyArray<number>
}

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
  /** Requests the app is running now. */
  readonly inFlight: number
  /** Requests waiting for a slot under maxConcurrentRequests. */
  readonly queued: number
  /** Open connections by state. */
  readonly connections: Readonly<Record<ConnectionStateName, number>>
  /** Requests answered, by method and status class (only those that occurred). */
  readonly requestsByKind: ReadonlyArray<RequestsOfKind>
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
  readonly states: Readonly<Record<ConnectionStateName, number>>
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
  /** Requests the app is running. */
  inFlight = 0
  /** Reads the live connections; set by the server that owns these stats. */
  live: () => LiveConnections = () => ({
    open: 0,
    idle: 0,
    states: { handshake: 0, new: 0, active: 0, idle: 0, closing: 0, upgraded: 0, lingering: 0 },
    bytesRead: 0,
    bytesWritten: 0
  })
  /** Reads the request queue's length; set by the server. */
  queued: () => number = () => 0
  /** Called when a method and status class is first seen (its metric series is registered). */
  onNewKind: (() => void) | undefined = undefined
  /** Per method and status class: counts, sums, and the (non-cumulative) bucket counts. */
  private readonly kindCounts = new Float64Array((otherMethod + 1) * statusClasses.length)
  private readonly kindSums = new Float64Array((otherMethod + 1) * statusClasses.length)
  private readonly kindBuckets = new Float64Array(
    (otherMethod + 1) * statusClasses.length * (durationBoundaries.length + 1)
  )

  protocolError(status: number): void {
    this.protocolErrors[status] = (this.protocolErrors[status] ?? 0) + 1
  }

  /** Records one request's duration in seconds, with its method and status (0: no response). */
  duration(seconds: number, method = "", status = 0): void {
    let i = 0
    while (i < durationBoundaries.length && seconds > durationBoundaries[i]) i++
    if (status >= 100 && status < 600) {
      const kind = methodIndex(method) * statusClasses.length + Math.floor(status / 100) - 1
      if (this.kindCounts[kind]++ === 0) this.onNewKind?.()
      this.kindSums[kind] += seconds
      this.kindBuckets[kind * (durationBoundaries.length + 1) + i]++
    }
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

  private requestsByKind(): Array<RequestsOfKind> {
    const out: Array<RequestsOfKind> = []
    const width = durationBoundaries.length + 1
    for (let kind = 0; kind < this.kindCounts.length; kind++) {
      if (this.kindCounts[kind] === 0) continue
      const method = Math.floor(kind / statusClasses.length)
      let cumulative = 0
      const buckets: Array<number> = []
      for (let i = 0; i < width; i++) {
        cumulative += this.kindBuckets[kind * width + i]
        buckets.push(cumulative)
      }
      out.push({
        method: method === otherMethod ? "_OTHER" : knownMethods[method],
        statusClass: statusClasses[kind % statusClasses.length],
        count: this.kindCounts[kind],
        sum: this.kindSums[kind],
        buckets
      })
    }
    return out
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
      inFlight: this.inFlight,
      queued: this.queued(),
      connections: live.states,
      requestsByKind: this.requestsByKind(),
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

/**
 * Reads once per synchronous run: a scrape reads every metric of a server from the same numbers,
 * and whatever happens after it (in a later task) is read afresh. (A cache by time would serve a
 * snapshot taken before a request that came within the same millisecond.)
 */
const cachedUntilMicrotask = (read: () => StatsSnapshot): (() => StatsSnapshot) => {
  let last: StatsSnapshot | undefined
  const forget = () => {
    last = undefined
  }
  return () => {
    if (last === undefined) {
      last = read()
      queueMicrotask(forget)
    }
    return last
  }
}

const timeoutKinds: ReadonlyArray<TimeoutKind> = ["headers", "request", "keepAlive", "handshake", "send"]
const protocolErrorStatuses = ["400", "408", "413", "414", "417", "431", "501", "505"]

/**
 * Registers a server's statistics, read from `read` whenever metrics are read, as Effect Metrics
 * named after OpenTelemetry's HTTP server conventions (units as the `unit` attribute, which
 * Effect's OTLP exporter sends and its Prometheus formatter leaves out), with `attributes` on
 * every series, for the rest of the scope:
 *
 * - `http.server.request.duration` (histogram, s): requests answered, by `http.request.method`
 *   and `http.response.status_class` (`2xx`...); a series appears with its first request;
 * - `http.server.active_requests`: requests the app is running;
 * - `appserver.request.queue.size`: requests waiting for a slot (maxConcurrentRequests);
 * - `appserver.requests.received`, `appserver.requests.rejected` (queue timeout);
 * - `appserver.connections` by `state`; `appserver.connections.accepted`, `.rejected`;
 * - `appserver.network.io` (By) by `network.io.direction` (receive, transmit);
 * - `appserver.timeouts` by `kind`; `appserver.protocol_errors` by `http.response.status_code`.
 *
 * `sync` registers the series of method and status class pairs that appeared since.
 *
 * @since 0.1.0
 */
export const registerSnapshotMetrics = (
  read: () => StatsSnapshot,
  attributes: Readonly<Record<string, string>>
): Effect.Effect<{ readonly sync: () => void }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Effect.context<never>()
    const snapshot = cachedUntilMicrotask(read)
    const registrations: Array<Metric.Registration> = []
    const counter = (name: string, description: string, extra: Record<string, string>, get: () => number) => {
      registrations.push(registerCounter(context, name, description, { ...attributes, ...extra }, get))
    }
    const gauge = (name: string, description: string, extra: Record<string, string>, get: () => number) => {
      registrations.push(registerGauge(context, name, description, { ...attributes, ...extra }, get))
    }
    gauge(
      "http.server.active_requests",
      "Requests the app is running",
      { unit: "{request}" },
      () => snapshot().inFlight
    )
    gauge(
      "appserver.request.queue.size",
      "Requests waiting for a slot under maxConcurrentRequests",
      { unit: "{request}" },
      () => snapshot().queued
    )
    counter(
      "appserver.requests.received",
      "Requests whose head was received",
      { unit: "{request}" },
      () => snapshot().requests
    )
    counter(
      "appserver.requests.rejected",
      "Requests answered 503 after waiting longer than requestQueueTimeout",
      { unit: "{request}" },
      () => snapshot().rejectedRequests
    )
    for (const state of connectionStates) {
      gauge(
        "appserver.connections",
        "Open connections by state",
        { state, unit: "{connection}" },
        () => snapshot().connections[state]
      )
    }
    counter(
      "appserver.connections.accepted",
      "Connections accepted",
      { unit: "{connection}" },
      () => snapshot().accepted
    )
    counter(
      "appserver.connections.rejected",
      "Connections answered 503 over maxConnections",
      { unit: "{connection}" },
      () => snapshot().rejectedConnections
    )
    counter(
      "appserver.network.io",
      "Bytes received from and sent to clients",
      { "network.io.direction": "receive", unit: "By" },
      () => snapshot().bytesRead
    )
    counter(
      "appserver.network.io",
      "Bytes received from and sent to clients",
      { "network.io.direction": "transmit", unit: "By" },
      () => snapshot().bytesWritten
    )
    for (const kind of timeoutKinds) {
      counter("appserver.timeouts", "Timeouts by kind", { kind }, () => snapshot().timeouts[kind])
    }
    for (const status of protocolErrorStatuses) {
      counter(
        "appserver.protocol_errors",
        "Requests refused by the parser, by the status they were answered",
        { "http.response.status_code": status },
        () => snapshot().protocolErrors[status] ?? 0
      )
    }
    const kinds = new Set<string>()
    const sync = () => {
      for (const kind of snapshot().requestsByKind) {
        const key = `${kind.method} ${kind.statusClass}`
        if (kinds.has(key)) continue
        kinds.add(key)
        const { method, statusClass } = kind
        const histogram = Metric.histogram("http.server.request.duration", {
          description: "Duration of requests answered, head received to response done",
          boundaries: durationBoundaries,
          attributes: {
            ...attributes,
            "http.request.method": method,
            "http.response.status_class": statusClass,
            unit: "s"
          }
        })
        registrations.push(
          Metric.registerUnsafe(
            histogram,
            context,
            readOnly(() => {
              const found = snapshot().requestsByKind.find((k) => k.method === method && k.statusClass === statusClass)
              const buckets = found?.buckets ?? []
              return {
                buckets: durationBoundaries.map((bound, i): [number, number] => [bound, buckets[i] ?? 0]),
                count: found?.count ?? 0,
                // per kind, only the whole histogram's extremes are known
                min: snapshot().duration.min,
                max: snapshot().duration.max,
                sum: found?.sum ?? 0
              }
            })
          )
        )
      }
    }
    sync()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const registration of registrations) registration.remove()
      })
    )
    return { sync }
  })

/**
 * Registers a server's statistics as Effect Metrics (see `registerSnapshotMetrics`), with the
 * attribute `server` = its listening address, for the rest of the scope.
 *
 * @since 0.1.0
 */
export const registerMetrics = (stats: ServerStats, server: string): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { sync } = yield* registerSnapshotMetrics(() => stats.snapshot(), { server })
    // A method and status class seen for the first time gets its series at once.
    stats.onNewKind = sync
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        stats.onNewKind = undefined
      })
    )
  })

const count = Schema.Number
const perKind = <Keys extends ReadonlyArray<string>>(keys: Keys) =>
  Schema.Struct(Object.fromEntries(keys.map((key) => [key, count])) as { readonly [K in Keys[number]]: typeof count })

/**
 * A `StatsSnapshot` as JSON carries it (a prefork worker's figures, sent to the primary, which
 * checks them on arrival).
 *
 * @since 0.1.0
 */
export const StatsSnapshotSchema: Schema.Codec<StatsSnapshot> = Schema.Struct({
  accepted: count,
  openConnections: count,
  idleConnections: count,
  requests: count,
  bytesRead: count,
  bytesWritten: count,
  rejectedConnections: count,
  rejectedRequests: count,
  timeouts: perKind(timeoutKinds),
  protocolErrors: Schema.Record(Schema.String, count),
  inFlight: count,
  queued: count,
  connections: perKind(connectionStates),
  requestsByKind: Schema.Array(
    Schema.Struct({
      method: Schema.String,
      statusClass: Schema.String,
      count,
      sum: count,
      buckets: Schema.Array(count)
    })
  ),
  duration: Schema.Struct({
    count,
    sum: count,
    min: count,
    max: count,
    buckets: Schema.Array(Schema.Tuple([count, count]))
  })
})
