/**
 * sendTimeout over real sockets, both protocols (nginx's `send_timeout`): a peer that takes none
 * of a streamed response for that long is dropped, its request's fiber is interrupted and memory
 * stays bounded while it waits, others are served meanwhile; a peer that reads slowly but keeps
 * reading is never cut, and a large response on a closing connection is not cut by the linger.
 */
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Stream } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Scope from "effect/Scope"
import { ScgiServer, Stats } from "../../src/index.ts"
import type { ScgiServerOptionsInput } from "../../src/options.ts"
import { parseResponses, rawExchange, request } from "../helpers/raw.ts"
import { parseScgiResponse, scgi, scgiRequest } from "../helpers/scgi.ts"
import { serveWithStats } from "../helpers/server.ts"
import { waitFor, waitUntil } from "../helpers/wait.ts"

const MiB = 1024 * 1024

/** What the app saw: how many streams began and how many ended (completed or interrupted). */
interface Probe {
  started: number
  ended: number
}

/**
 * `/stream?chunks=N` streams N KiB without a length; `/bytes?n=N` answers N bytes with one; `/`
 * answers "Hello". Stream ends are counted in `probe`.
 */
const app = (probe: Probe) =>
  Effect.gen(function* () {
    const req = yield* HttpServerRequest
    const url = new URL(req.url, "http://x")
    if (url.pathname === "/stream") {
      const chunk = new Uint8Array(1024).fill(0x61)
      probe.started++
      return HttpServerResponse.stream(
        Stream.range(1, Number(url.searchParams.get("chunks"))).pipe(
          Stream.map(() => chunk),
          Stream.ensuring(
            Effect.sync(() => {
              probe.ended++
            })
          )
        )
      )
    }
    if (url.pathname === "/bytes") {
      return HttpServerResponse.uint8Array(new Uint8Array(Number(url.searchParams.get("n"))).fill(0x62))
    }
    return HttpServerResponse.text("Hello")
  })

/** A client connection that reads nothing until told to. */
interface Stalled {
  readonly socket: Net.Socket
  /** Bytes read once reading resumed. */
  received: number
  /** The connection ended (closed or reset), once reading resumed. */
  ended: boolean
}

const stalledClient = (
  address: { readonly port: number },
  payload: string | Buffer
): Effect.Effect<Stalled, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Stalled>((resume) => {
      const socket = Net.connect(address.port, "127.0.0.1")
      const client: Stalled = { socket, received: 0, ended: false }
      // No reading: the server's output backs up into its own buffers.
      socket.pause()
      socket.on("data", (chunk: Buffer) => {
        client.received += chunk.length
      })
      socket.on("error", () => {})
      socket.on("close", () => {
        client.ended = true
      })
      socket.once("connect", () => {
        socket.write(payload)
        resume(Effect.succeed(client))
      })
    }),
    (client) => Effect.sync(() => client.socket.destroy())
  )

/**
 * Reads everything the server sends: nothing for `waitMs`, then after each chunk it stops reading
 * for `pauseMs`. Completes with what arrived once the server closes, or fails after `timeoutMs`.
 */
const reader = (
  port: number,
  payload: string | Buffer,
  pace: { readonly waitMs: number; readonly pauseMs: number; readonly timeoutMs: number }
): Effect.Effect<{ readonly data: Buffer; readonly reset: boolean }, Error> =>
  Effect.callback((resume) => {
    const socket = Net.connect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    let reset = false
    const timers: Array<ReturnType<typeof setTimeout>> = []
    const stop = () => {
      for (const timer of timers) clearTimeout(timer)
      socket.destroy()
    }
    timers.push(
      setTimeout(() => {
        stop()
        resume(
          Effect.fail(new Error(`not complete after ${pace.timeoutMs} ms (${Buffer.concat(chunks).length} bytes)`))
        )
      }, pace.timeoutMs)
    )
    socket.pause()
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      if (pace.pauseMs > 0) {
        socket.pause()
        timers.push(setTimeout(() => socket.resume(), pace.pauseMs))
      }
    })
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ECONNRESET") reset = true
    })
    socket.on("close", () => {
      stop()
      resume(Effect.succeed({ data: Buffer.concat(chunks), reset }))
    })
    socket.once("connect", () => {
      socket.write(payload)
      timers.push(setTimeout(() => socket.resume(), pace.waitMs))
    })
    return Effect.sync(stop)
  })

const rss = (): number => process.memoryUsage().rss

/** Milliseconds from `since` until the server counted a send timeout (polled every 20 ms). */
const cutTime = (stats: Stats["Service"], since: number): Effect.Effect<number> =>
  Effect.gen(function* () {
    const counted = yield* waitFor(
      Effect.map(stats.snapshot, (s) => s.timeouts.send === 1),
      8_000
    )
    expect(counted).toBe(true)
    return performance.now() - since
  })

/** The stalled client, reading at last, gets far less than the whole stream before the connection ends. */
const expectCut = (client: Stalled): Effect.Effect<void> =>
  Effect.gen(function* () {
    client.socket.resume()
    expect(yield* waitUntil(() => client.ended, 8_000)).toBe(true)
    expect(client.received).toBeLessThan(40 * MiB)
  })

/** Serves `app(probe)` over SCGI on an ephemeral port for the rest of the scope. */
const serveScgiWithStats = (probe: Probe, options: ScgiServerOptionsInput) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      HttpServer.serve(app(probe)).pipe(
        Layer.provideMerge(ScgiServer.layerServer({ host: "127.0.0.1", port: 0, ...options }))
      )
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
    return { port: address.port, stats: Context.get(context, Stats) }
  })

describe("sendTimeout (HTTP)", () => {
  it.live(
    "a client that reads none of a 100 MB stream is cut after sendTimeout; the app's fiber ends, memory stays bounded, others are served",
    () =>
      Effect.gen(function* () {
        const probe: Probe = { started: 0, ended: 0 }
        const { port, stats } = yield* serveWithStats(app(probe), { sendTimeout: 1 })
        const before = rss()
        const sentAt = performance.now()
        const stalled = yield* stalledClient({ port }, request("GET /stream?chunks=100000 HTTP/1.1", "Host: x"))
        expect(yield* waitUntil(() => probe.started === 1, 4_000)).toBe(true)
        // Served meanwhile.
        const other = yield* rawExchange(port, request("GET / HTTP/1.1", "Host: x", "Connection: close"))
        expect(other.responses.map((r) => r.status)).toEqual([200])
        const cutAfter = yield* cutTime(stats, sentAt)
        expect(cutAfter).toBeGreaterThan(900)
        expect(cutAfter).toBeLessThan(5_000)
        // The stream was interrupted rather than run to its end (100,000 chunks).
        expect(yield* waitUntil(() => probe.ended === 1, 4_000)).toBe(true)
        // What waited for the client stayed in bounded buffers, nowhere near the 100 MB produced.
        expect(rss() - before).toBeLessThan(48 * MiB)
        expect((yield* stats.snapshot).openConnections).toBe(0)
        // Reading now, the client finds the connection reset after what the kernels held.
        yield* expectCut(stalled)
      })
  )

  it.live("a client that reads slowly but keeps reading gets the whole response and is never cut", () =>
    Effect.gen(function* () {
      const probe: Probe = { started: 0, ended: 0 }
      const { port, stats } = yield* serveWithStats(app(probe), { sendTimeout: 1 })
      // 4 MiB read 64 KiB at a time with 40 ms pauses: about 2.6 s, well over sendTimeout.
      const started = performance.now()
      const { data, reset } = yield* reader(
        port,
        request("GET /stream?chunks=4096 HTTP/1.1", "Host: x", "Connection: close"),
        { waitMs: 0, pauseMs: 40, timeoutMs: 20_000 }
      )
      expect(performance.now() - started).toBeGreaterThan(1_500)
      expect(reset).toBe(false)
      const [response] = parseResponses(data, [], true)
      expect(response.status).toBe(200)
      expect(response.body.length).toBe(4096 * 1024)
      expect((yield* stats.snapshot).timeouts.send).toBe(0)
    })
  )

  it.live("one large write that the client takes steadily is not cut: a partly sent write counts as progress", () =>
    Effect.gen(function* () {
      const probe: Probe = { started: 0, ended: 0 }
      // 1.5 s: in a test, client and server share one event loop, which a loaded machine can stall
      // for a good part of a second, during which neither side makes progress.
      const { port, stats } = yield* serveWithStats(app(probe), { sendTimeout: 1.5 })
      // One 24 MiB write: the socket's buffer empties (and 'drain' fires) only at its end, long
      // after sendTimeout; meanwhile the kernel takes it piece by piece.
      const n = 24 * MiB
      const started = performance.now()
      const { data, reset } = yield* reader(
        port,
        request(`GET /bytes?n=${n} HTTP/1.1`, "Host: x", "Connection: close"),
        { waitMs: 0, pauseMs: 8, timeoutMs: 30_000 }
      )
      expect(performance.now() - started).toBeGreaterThan(2_000)
      expect(reset).toBe(false)
      const [response] = parseResponses(data, [], true)
      expect(response.body.length).toBe(n)
      expect((yield* stats.snapshot).timeouts.send).toBe(0)
    })
  )

  it.live("a large response on a closing connection is not cut by the linger after our FIN", () =>
    Effect.gen(function* () {
      const probe: Probe = { started: 0, ended: 0 }
      const { port, stats } = yield* serveWithStats(app(probe), { sendTimeout: 5 })
      // More than the kernels' buffers hold, to a client that starts reading only after the 2 s
      // linger: the rest must still be in the server's buffer then, and still be sent.
      const n = 32 * MiB
      const { data, reset } = yield* reader(
        port,
        request(`GET /bytes?n=${n} HTTP/1.1`, "Host: x", "Connection: close"),
        { waitMs: 3_500, pauseMs: 0, timeoutMs: 20_000 }
      )
      expect(reset).toBe(false)
      const [response] = parseResponses(data, [], true)
      expect(response.status).toBe(200)
      expect(response.header("connection")).toBe("close")
      expect(response.body.length).toBe(n)
      expect((yield* stats.snapshot).timeouts.send).toBe(0)
    })
  )
})

describe("sendTimeout (SCGI)", () => {
  it.live("a front end that reads none of a streamed response is cut after sendTimeout; others are served", () =>
    Effect.gen(function* () {
      const probe: Probe = { started: 0, ended: 0 }
      const { port, stats } = yield* serveScgiWithStats(probe, { sendTimeout: 1 })
      const sentAt = performance.now()
      const stalled = yield* stalledClient(
        { port },
        scgiRequest({ REQUEST_METHOD: "GET", REQUEST_URI: "/stream?chunks=100000" })
      )
      expect(yield* waitUntil(() => probe.started === 1, 4_000)).toBe(true)
      const other = yield* scgi({ port }, { REQUEST_METHOD: "GET", REQUEST_URI: "/" })
      expect(other.status).toBe(200)
      const cutAfter = yield* cutTime(stats, sentAt)
      expect(cutAfter).toBeGreaterThan(900)
      expect(cutAfter).toBeLessThan(5_000)
      expect(yield* waitUntil(() => probe.ended === 1, 4_000)).toBe(true)
      expect((yield* stats.snapshot).openConnections).toBe(0)
      yield* expectCut(stalled)
    })
  )

  it.live("a large response arrives whole to a front end that starts reading after the linger", () =>
    Effect.gen(function* () {
      const probe: Probe = { started: 0, ended: 0 }
      const { port, stats } = yield* serveScgiWithStats(probe, { sendTimeout: 5 })
      const n = 32 * MiB
      const { data, reset } = yield* reader(
        port,
        scgiRequest({ REQUEST_METHOD: "GET", REQUEST_URI: `/bytes?n=${n}` }),
        {
          waitMs: 3_500,
          pauseMs: 0,
          timeoutMs: 20_000
        }
      )
      expect(reset).toBe(false)
      const response = parseScgiResponse(data)
      expect(response.status).toBe(200)
      expect(response.body.length).toBe(n)
      expect((yield* stats.snapshot).timeouts.send).toBe(0)
    })
  )
})
