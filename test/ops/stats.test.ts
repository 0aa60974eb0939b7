/**
 * Server statistics (issue 3, item 7): the `Stats` service's snapshot after real traffic, the same
 * numbers as Effect Metrics (read with Metric.snapshot and Effect's Prometheus formatter, from the
 * test and from a request handler), and examples/metrics.ts serving them at /metrics.
 */

import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Metric, Scope } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { PrometheusMetrics } from "effect/observability"
import routes from "../../examples/metrics.ts"
import type { Http1ServerOptionsInput } from "../../src/options.ts"
import { registerSnapshotMetrics, ServerStats } from "../../src/stats/ServerStats.ts"
import { parseResponses, type RawResponse, rawExchange, request } from "../helpers/raw.ts"
import { type Provided, serveLayer, serveScoped } from "../helpers/server.ts"
import { waitFor } from "../helpers/wait.ts"

/** Serves `app` in a scope the test can close; `server` is the metrics' server attribute. */
const start = <E>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, Provided>,
  options: Http1ServerOptionsInput = {}
) => Effect.map(serveScoped(app, options), (running) => ({ ...running, server: `127.0.0.1:${running.port}` }))

/** A client connection the test drives by hand, closed with the test's scope. */
interface Client {
  readonly socket: Net.Socket
  readonly chunks: Array<Buffer>
  sent: number
  closed: boolean
}

const responsesOf = (client: Client): Array<RawResponse> => parseResponses(Buffer.concat(client.chunks))
const bytesReceived = (client: Client): number => client.chunks.reduce((n, chunk) => n + chunk.length, 0)

const connect = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<Client>((resume) => {
      const socket = Net.connect({ port, host: "127.0.0.1" })
      const client: Client = { socket, chunks: [], sent: 0, closed: false }
      socket.on("data", (chunk: Buffer) => client.chunks.push(chunk))
      socket.on("close", () => {
        client.closed = true
      })
      socket.on("error", () => {})
      socket.once("connect", () => resume(Effect.succeed(client)))
      return Effect.sync(() => socket.destroy())
    }),
    (client) => Effect.sync(() => client.socket.destroy())
  )

const send = (client: Client, data: string) => {
  client.sent += Buffer.byteLength(data)
  client.socket.write(data)
}

const get = (path: string, ...headers: ReadonlyArray<string>) => request(`GET ${path} HTTP/1.1`, "Host: x", ...headers)

/** The metrics of one server, by name (plus `{kind}`/`{status}` for the labelled ones). */
const serverMetrics = (server: string) =>
  Effect.map(Metric.snapshot, (snapshots) => {
    const out = new Map<string, Metric.Metric.Snapshot>()
    for (const snapshot of snapshots) {
      const attributes = snapshot.attributes ?? {}
      if (attributes.server !== server) continue
      const label =
        attributes.kind ??
        attributes["http.response.status_code"] ??
        attributes.state ??
        attributes["network.io.direction"] ??
        (attributes["http.request.method"] === undefined
          ? undefined
          : `${attributes["http.request.method"]} ${attributes["http.response.status_class"]}`)
      out.set(label === undefined ? snapshot.id : `${snapshot.id}{${label}}`, snapshot)
    }
    return out
  })

const numberOf = (snapshot: Metric.Metric.Snapshot | undefined): number | bigint | undefined => {
  switch (snapshot?.type) {
    case "Counter":
      return snapshot.state.count
    case "Gauge":
      return snapshot.state.value
    case "Histogram":
      return snapshot.state.count
    default:
      return undefined
  }
}

const hello = Effect.succeed(HttpServerResponse.text("Hello, World!"))

/**
 * Three requests on one keep-alive connection (left open and idle), a malformed request (400)
 * and one with an oversized header (431).
 */
const traffic = (port: number) =>
  Effect.gen(function* () {
    const keepAlive = yield* connect(port)
    for (let i = 1; i <= 3; i++) {
      send(keepAlive, get(`/${i}`))
      expect(
        yield* waitFor(
          Effect.sync(() => responsesOf(keepAlive).length === i),
          5_000
        )
      ).toBe(true)
    }
    expect(responsesOf(keepAlive).map((r) => r.status)).toEqual([200, 200, 200])
    const malformed = "GET / HTTP/1.1\r\nHost x\r\n\r\n"
    const bad = yield* rawExchange(port, malformed)
    expect(bad.responses.map((r) => r.status)).toEqual([400])
    const tooLong = get("/", `X-Long: ${"a".repeat(2_000)}`)
    const long = yield* rawExchange(port, tooLong)
    expect(long.responses.map((r) => r.status)).toEqual([431])
    return {
      keepAlive,
      sent: keepAlive.sent + Buffer.byteLength(malformed) + Buffer.byteLength(tooLong),
      received: bytesReceived(keepAlive) + bad.data.length + long.data.length
    }
  })

describe("Stats", () => {
  it.live("the snapshot counts connections, requests, protocol errors, bytes and durations", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* start(hello, { maxHeaderSize: 1024, keepAliveTimeout: 60 })
      const before = yield* stats.snapshot
      expect(before.accepted).toBe(0)
      expect(before.requests).toBe(0)
      expect(before.openConnections).toBe(0)

      const { sent, received } = yield* traffic(port)
      // the refused connections have closed; the keep-alive one stays, waiting for a request
      expect(
        yield* waitFor(
          Effect.map(stats.snapshot, (s) => s.openConnections === 1),
          5_000
        )
      ).toBe(true)
      const snapshot = yield* stats.snapshot
      expect(snapshot.accepted).toBe(3)
      // the refused requests never reached the app
      expect(snapshot.requests).toBe(3)
      expect(snapshot.protocolErrors).toEqual({ "400": 1, "431": 1 })
      expect(snapshot.openConnections).toBe(1)
      expect(snapshot.idleConnections).toBe(1)
      expect(snapshot.rejectedConnections).toBe(0)
      expect(snapshot.rejectedRequests).toBe(0)
      expect(snapshot.timeouts).toEqual({ headers: 0, request: 0, keepAlive: 0, handshake: 0, send: 0 })
      // every byte the clients sent was read, every byte they received was written
      expect(snapshot.bytesRead).toBe(sent)
      expect(snapshot.bytesWritten).toBe(received)
      expect(snapshot.duration.count).toBe(3)
      expect(snapshot.duration.sum).toBeGreaterThan(0)
      expect(snapshot.duration.min).toBeLessThanOrEqual(snapshot.duration.max)
      expect(snapshot.duration.buckets.at(-1)?.[1]).toBe(3)
    })
  )

  it.live("open and idle counts follow the connections: a request in progress is open, not idle", () =>
    Effect.gen(function* () {
      let release: (() => void) | undefined
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        if (request.url === "/hold") {
          yield* Effect.callback<void>((resume) => {
            release = () => resume(Effect.void)
          })
        }
        return HttpServerResponse.text("ok")
      })
      const { port, stats } = yield* start(app, { keepAliveTimeout: 60 })
      const idle = yield* connect(port)
      send(idle, get("/"))
      const busy = yield* connect(port)
      send(busy, get("/hold"))
      const partial = yield* connect(port)
      send(partial, "GET / HTTP/1.1\r\nHost:")
      const counts = Effect.map(stats.snapshot, (s) => [s.openConnections, s.idleConnections, s.requests])
      // only the connection between requests is idle: not the one mid-request or mid-head
      const expected = (c: ReadonlyArray<number>) => c[0] === 3 && c[1] === 1 && c[2] === 2
      expect(yield* waitFor(Effect.map(counts, expected), 5_000)).toBe(true)
      expect(release).toBeDefined()
      release?.()
      expect(
        yield* waitFor(
          Effect.sync(() => responsesOf(busy).length === 1),
          5_000
        )
      ).toBe(true)
      expect(
        yield* waitFor(
          Effect.map(counts, (c) => c[1] === 2),
          5_000
        )
      ).toBe(true)
      idle.socket.destroy()
      busy.socket.destroy()
      partial.socket.destroy()
      expect(
        yield* waitFor(
          Effect.map(counts, (c) => c[0] === 0),
          5_000
        )
      ).toBe(true)
      expect((yield* stats.snapshot).duration.count).toBe(2)
    })
  )
})

describe("Effect Metrics", () => {
  it.effect("a read after another task sees the numbers of then, however soon (no snapshot kept across events)", () =>
    Effect.gen(function* () {
      const stats = new ServerStats()
      yield* registerSnapshotMetrics(() => stats.snapshot(), { server: "cache-test" })
      const received = Effect.map(serverMetrics("cache-test"), (m) => numberOf(m.get("appserver.requests.received")))
      expect(yield* received).toBe(0)
      stats.requests++
      // the next read comes in a later task, usually within the same millisecond
      yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
      expect(yield* received).toBe(1)
    })
  )

  it.live("Metric.snapshot reads the server's numbers, labelled with its address, until it stops", () =>
    Effect.gen(function* () {
      const { port, server, scope } = yield* start(hello, { maxHeaderSize: 1024, keepAliveTimeout: 60 })
      const { sent, received } = yield* traffic(port)
      expect(
        yield* waitFor(
          // the refused connections linger until their clients close: then only the keep-alive one is open
          Effect.map(
            serverMetrics(server),
            (m) =>
              numberOf(m.get("appserver.connections{idle}")) === 1 &&
              numberOf(m.get("appserver.connections{lingering}")) === 0
          ),
          5_000
        )
      ).toBe(true)
      const metrics = yield* serverMetrics(server)
      const values = Object.fromEntries([...metrics].map(([name, snapshot]) => [name, numberOf(snapshot)]))
      expect(values).toEqual({
        "http.server.active_requests": 0,
        "appserver.request.queue.size": 0,
        "appserver.requests.received": 3,
        "appserver.requests.rejected": 0,
        "appserver.connections{handshake}": 0,
        "appserver.connections{new}": 0,
        "appserver.connections{active}": 0,
        "appserver.connections{idle}": 1,
        "appserver.connections{closing}": 0,
        "appserver.connections{upgraded}": 0,
        "appserver.connections{lingering}": 0,
        "appserver.connections.accepted": 3,
        "appserver.connections.rejected": 0,
        "appserver.network.io{receive}": sent,
        "appserver.network.io{transmit}": received,
        "appserver.timeouts{headers}": 0,
        "appserver.timeouts{request}": 0,
        "appserver.timeouts{keepAlive}": 0,
        "appserver.timeouts{handshake}": 0,
        "appserver.timeouts{send}": 0,
        "appserver.protocol_errors{400}": 1,
        "appserver.protocol_errors{408}": 0,
        "appserver.protocol_errors{413}": 0,
        "appserver.protocol_errors{414}": 0,
        "appserver.protocol_errors{417}": 0,
        "appserver.protocol_errors{431}": 1,
        "appserver.protocol_errors{501}": 0,
        "appserver.protocol_errors{505}": 0,
        // the refused requests were answered by the parser: not requests the server ran
        "http.server.request.duration{GET 2xx}": 3
      })
      expect(metrics.get("appserver.requests.received")?.type).toBe("Counter")
      expect(metrics.get("appserver.connections{idle}")?.type).toBe("Gauge")
      const duration = metrics.get("http.server.request.duration{GET 2xx}")
      if (duration?.type !== "Histogram") throw new Error("expected a histogram")
      expect(duration.state.buckets.at(-1)).toEqual([60, 3])
      expect(duration.attributes).toMatchObject({ unit: "s" })
      expect(duration.state.sum).toBeGreaterThan(0)

      // the counters are read when the metrics are read: no stale values
      const more = yield* rawExchange(port, get("/", "Connection: close"))
      expect(more.responses.map((r) => r.status)).toEqual([200])
      expect(numberOf((yield* serverMetrics(server)).get("appserver.requests.received"))).toBe(4)
      expect(numberOf((yield* serverMetrics(server)).get("http.server.request.duration{GET 2xx}"))).toBe(4)

      // once the server has stopped, its metrics are gone
      yield* Scope.close(scope, Exit.void)
      expect((yield* serverMetrics(server)).size).toBe(0)
    })
  )

  it.live("Effect's Prometheus formatter renders them, also from within a request handler", () =>
    Effect.gen(function* () {
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        if (request.url !== "/metrics") return HttpServerResponse.text("ok")
        return HttpServerResponse.text(yield* PrometheusMetrics.format())
      })
      const { port, server } = yield* start(app, { maxHeaderSize: 1024 })
      yield* traffic(port)
      const text = yield* PrometheusMetrics.format()
      const label = `server="${server}"`
      expect(text).toContain("# TYPE appserver_requests_received counter\n")
      expect(text).toContain(`\nappserver_requests_received{${label}} 3\n`)
      expect(text).toContain(`\nappserver_connections_accepted{${label}} 3\n`)
      expect(text).toContain(`\nappserver_protocol_errors{${label},http_response_status_code="400"} 1\n`)
      expect(text).toContain(`\nappserver_protocol_errors{${label},http_response_status_code="431"} 1\n`)
      expect(text).toContain("# TYPE http_server_request_duration histogram\n")
      const kind = `${label},http_request_method="GET",http_response_status_class="2xx"`
      expect(text).toContain(`\nhttp_server_request_duration_count{${kind}} 3\n`)
      expect(text).toContain(`\nhttp_server_request_duration_bucket{${kind},le="+Inf"} 3\n`)

      // the app sees the same registry as whoever built the server
      const scraped = yield* rawExchange(port, get("/metrics", "Connection: close"))
      expect(scraped.responses[0].status).toBe(200)
      // the scrape itself is the fourth request
      expect(scraped.responses[0].body.toString()).toContain(`\nappserver_requests_received{${label}} 4\n`)
    })
  )

  it.live("a MetricRegistry provided to the server holds its metrics", () =>
    Effect.gen(function* () {
      const registry: Metric.MetricRegistry = new Map()
      const { port, server } = yield* start(hello).pipe(Effect.provideService(Metric.MetricRegistry, registry))
      const result = yield* rawExchange(port, get("/", "Connection: close"))
      expect(result.responses.map((r) => r.status)).toEqual([200])
      const inRegistry = yield* serverMetrics(server).pipe(Effect.provideService(Metric.MetricRegistry, registry))
      expect(numberOf(inRegistry.get("appserver.requests.received"))).toBe(1)
      // and not in the default registry
      expect((yield* serverMetrics(server)).size).toBe(0)
    })
  )
})

describe("examples/metrics.ts", () => {
  it.live("serves / and the Prometheus text at /metrics", () =>
    Effect.gen(function* () {
      const { port } = yield* serveLayer(HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true }))
      const home = yield* rawExchange(port, get("/", "Connection: close"))
      expect(home.responses[0].body.toString()).toBe("Hello, World!")
      const scraped = yield* rawExchange(port, get("/metrics", "Connection: close"))
      const response = scraped.responses[0]
      expect(response.status).toBe(200)
      expect(response.header("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
      const body = response.body.toString()
      // counted when its head arrived: the scrape is the second request
      expect(body).toContain(`\nappserver_requests_received{server="127.0.0.1:${port}"} 2\n`)
      expect(body).toContain(`appserver_connections{server="127.0.0.1:${port}",state="active"} 1\n`)
    })
  )
})
