/**
 * Timeouts over real sockets (issue 3, item 4): slowloris heads get 408 and close while ordinary
 * clients are still served, a silent connection is closed, idle keep-alive connections close
 * silently, a stalled request body gets 408, and a slow app is not mistaken for a slow head.
 */

import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Scope from "effect/Scope"
import { parseResponses, type RawResponse, rawExchange, request } from "../helpers/raw.ts"
import { serveWithStats } from "../helpers/server.ts"
import { waitFor, waitUntil } from "../helpers/wait.ts"

const hello = Effect.succeed(HttpServerResponse.text("Hello, World!"))

const start = serveWithStats

/** A client connection the test drives by hand. */
interface Client {
  readonly socket: Net.Socket
  readonly chunks: Array<Buffer>
  openedAt: number
  /** When the server closed its side (FIN or close), performance.now(). */
  endedAt: number | undefined
  /** The connection was reset rather than closed. */
  reset: boolean
}

const received = (client: Client): Buffer => Buffer.concat(client.chunks)
const responsesOf = (client: Client): Array<RawResponse> =>
  parseResponses(received(client), [], client.endedAt !== undefined)

const openSocket = (port: number): Effect.Effect<Client> =>
  Effect.callback<Client>((resume) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    const client: Client = { socket, chunks: [], openedAt: 0, endedAt: undefined, reset: false }
    const ended = () => {
      client.endedAt ??= performance.now()
    }
    socket.on("data", (chunk: Buffer) => client.chunks.push(chunk))
    socket.on("end", ended)
    socket.on("close", ended)
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ECONNRESET") client.reset = true
    })
    socket.once("connect", () => {
      client.openedAt = performance.now()
      resume(Effect.succeed(client))
    })
    return Effect.sync(() => socket.destroy())
  })

/** A connection destroyed when the scope closes. */
const connect = (port: number): Effect.Effect<Client, never, Scope.Scope> =>
  Effect.acquireRelease(openSocket(port), (client) => Effect.sync(() => client.socket.destroy()))

const get = (path: string) => request(`GET ${path} HTTP/1.1`, "Host: x")

describe("headers timeout", () => {
  it.live(
    "slowloris: hundreds of dribbled heads get 408 and close, while ordinary clients are served",
    () =>
      Effect.gen(function* () {
        const { port, stats } = yield* start(hello, { headersTimeout: 1 })
        const slowCount = 200
        const head = `GET /slow HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\nX-Padding: ${"p".repeat(2_000)}`
        const timers = new Set<ReturnType<typeof setInterval>>()
        const sent = new Array<number>(slowCount).fill(0)
        // The dribbling timers are cleared and the sockets destroyed however the test ends.
        const slow = yield* Effect.acquireRelease(
          Effect.forEach(
            Array.from({ length: slowCount }, (_, i) => i),
            (i) =>
              Effect.map(openSocket(port), (client) => {
                // One byte every 100-200 ms, never the end of the head.
                const timer = setInterval(
                  () => {
                    if (client.endedAt !== undefined || client.socket.destroyed) {
                      clearInterval(timer)
                      timers.delete(timer)
                      return
                    }
                    client.socket.write(head[sent[i]++ % head.length])
                  },
                  100 + (i % 5) * 25
                )
                timers.add(timer)
                client.socket.once("close", () => {
                  clearInterval(timer)
                  timers.delete(timer)
                })
                client.socket.write(head[sent[i]++])
                return client
              }),
            { concurrency: 50 }
          ),
          (clients) =>
            Effect.sync(() => {
              for (const timer of timers) clearInterval(timer)
              timers.clear()
              for (const client of clients) client.socket.destroy()
            })
        )
        const stillOpen = () => slow.filter((c) => c.endedAt === undefined).length

        // Ordinary clients, each on a new connection, while the slow ones dribble.
        const openDuringFirst = stillOpen()
        const durations: Array<number> = []
        for (let i = 0; i < 20; i++) {
          const before = performance.now()
          const result = yield* rawExchange(port, request("GET / HTTP/1.1", "Host: x", "Connection: close"), {
            responses: 1,
            timeoutMs: 5_000
          })
          durations.push(performance.now() - before)
          expect(result.responses.map((r) => r.status)).toEqual([200])
          expect(result.responses[0].body.toString()).toBe("Hello, World!")
        }
        // They ran while (most of) the slow connections were open, and each was served quickly.
        expect(openDuringFirst).toBeGreaterThan(slowCount / 2)
        for (const duration of durations) expect(duration).toBeLessThan(1_000)

        // Every slow connection is closed by the server about headersTimeout after it opened.
        const allClosed = yield* waitUntil(() => stillOpen() === 0, 8_000)
        expect(allClosed).toBe(true)
        for (const [i, client] of slow.entries()) {
          // It kept dribbling, and that did not extend its deadline.
          expect(sent[i]).toBeGreaterThan(3)
          const lifetime = (client.endedAt ?? Number.POSITIVE_INFINITY) - client.openedAt
          expect(lifetime).toBeGreaterThan(800)
          expect(lifetime).toBeLessThan(4_000)
          // It had sent part of a head: the server answered 408 and closed.
          const responses = responsesOf(client)
          expect(responses.map((r) => `${r.version} ${r.status}`)).toEqual(["HTTP/1.1 408"])
          expect(responses[0].header("connection")).toBe("close")
          expect(client.reset).toBe(false)
        }
        expect(timers.size).toBe(0)

        const snapshot = yield* stats.snapshot
        expect(snapshot.timeouts.headers).toBeGreaterThanOrEqual(slowCount)
        // None of the partial heads became a request; the ordinary ones did.
        expect(snapshot.requests).toBe(20)
        expect(snapshot.timeouts.request).toBe(0)
        expect(snapshot.timeouts.keepAlive).toBe(0)
      }),
    60_000
  )

  it.live("a connection that sends nothing is closed after headersTimeout, without a response", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* start(hello, { headersTimeout: 0.5 })
      const client = yield* connect(port)
      const closed = yield* waitUntil(() => client.endedAt !== undefined, 4_000)
      expect(closed).toBe(true)
      const lifetime = (client.endedAt ?? 0) - client.openedAt
      expect(lifetime).toBeGreaterThan(350)
      expect(lifetime).toBeLessThan(3_000)
      // No bytes received means no request to answer: the close is silent (as in Go and nginx).
      expect(received(client).length).toBe(0)
      expect(client.reset).toBe(false)
      const snapshot = yield* stats.snapshot
      expect(snapshot.timeouts.headers).toBe(1)
      expect(snapshot.requests).toBe(0)
    })
  )

  it.live("a head that arrives in time is served even when the app takes longer than headersTimeout", () =>
    Effect.gen(function* () {
      const app = Effect.gen(function* () {
        const req = yield* HttpServerRequest
        if (req.url === "/slow") yield* Effect.sleep(1_500)
        if (req.method === "POST") {
          const body = yield* req.text
          yield* Effect.sleep(1_500)
          return HttpServerResponse.text(`got ${body}`)
        }
        return HttpServerResponse.text("slept")
      })
      const { port, stats } = yield* start(app, { headersTimeout: 0.5, requestTimeout: 0.5 })
      const client = yield* connect(port)
      const before = performance.now()
      client.socket.write(get("/slow"))
      expect(yield* waitUntil(() => responsesOf(client).length === 1, 8_000)).toBe(true)
      expect(performance.now() - before).toBeGreaterThan(1_300)
      const [slept] = responsesOf(client)
      expect(slept.status).toBe(200)
      expect(slept.body.toString()).toBe("slept")
      expect(slept.header("connection")).toBeUndefined()
      // The body was all in: requestTimeout does not cover the app's time either.
      client.socket.write("POST /work HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
      expect(yield* waitUntil(() => responsesOf(client).length === 2, 8_000)).toBe(true)
      const worked = responsesOf(client)[1]
      expect(worked.status).toBe(200)
      expect(worked.body.toString()).toBe("got hello")
      expect(client.endedAt).toBeUndefined()
      const snapshot = yield* stats.snapshot
      expect(snapshot.timeouts).toEqual({ headers: 0, request: 0, keepAlive: 0, handshake: 0, send: 0 })
    })
  )
})

describe("keep-alive timeout", () => {
  it.live("an idle keep-alive connection is closed silently after keepAliveTimeout", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* start(hello, { keepAliveTimeout: 0.5 })
      const client = yield* connect(port)
      client.socket.write(get("/"))
      expect(yield* waitUntil(() => responsesOf(client).length === 1, 4_000)).toBe(true)
      const answeredAt = performance.now()
      expect(responsesOf(client)[0].header("connection")).toBeUndefined()
      const lengthAfterResponse = received(client).length
      expect(yield* waitUntil(() => client.endedAt !== undefined, 4_000)).toBe(true)
      const idleFor = (client.endedAt ?? 0) - answeredAt
      expect(idleFor).toBeGreaterThan(350)
      expect(idleFor).toBeLessThan(2_500)
      // Silent: nothing more than the one response, and a FIN rather than a reset.
      expect(received(client).length).toBe(lengthAfterResponse)
      expect(responsesOf(client).map((r) => r.status)).toEqual([200])
      expect(client.reset).toBe(false)
      const snapshot = yield* stats.snapshot
      expect(snapshot.timeouts.keepAlive).toBe(1)
      expect(snapshot.timeouts.headers).toBe(0)
    })
  )

  it.live("a connection that keeps sending requests stays open: each request resets the idle timer", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* start(hello, { keepAliveTimeout: 0.5 })
      const client = yield* connect(port)
      const count = 8
      for (let i = 1; i <= count; i++) {
        client.socket.write(get(`/?n=${i}`))
        expect(yield* waitUntil(() => responsesOf(client).length === i, 4_000)).toBe(true)
        expect(client.endedAt).toBeUndefined()
        yield* Effect.sleep(200)
      }
      // Open for well over keepAliveTimeout in all.
      expect(performance.now() - client.openedAt).toBeGreaterThan(1_500)
      expect(responsesOf(client).map((r) => r.status)).toEqual(new Array(count).fill(200))
      expect((yield* stats.snapshot).timeouts.keepAlive).toBe(0)
      // Once it stops, it is closed as idle.
      expect(yield* waitUntil(() => client.endedAt !== undefined, 4_000)).toBe(true)
      expect((yield* stats.snapshot).timeouts.keepAlive).toBe(1)
    })
  )
})

describe("request (body) timeout", () => {
  it.live("a stalled body gets 408 and close, the app's fiber ends, and others are still served", () =>
    Effect.gen(function* () {
      let started = 0
      let ended = 0
      const app = Effect.gen(function* () {
        const req = yield* HttpServerRequest
        if (req.url !== "/echo") return HttpServerResponse.text("Hello, World!")
        started++
        const body = yield* req.arrayBuffer.pipe(
          Effect.ensuring(
            Effect.sync(() => {
              ended++
            })
          )
        )
        return HttpServerResponse.uint8Array(new Uint8Array(body))
      })
      const { port, stats } = yield* start(app, { requestTimeout: 0.5 })
      const client = yield* connect(port)
      client.socket.write(`POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n${"x".repeat(10)}`)
      expect(yield* waitUntil(() => client.endedAt !== undefined, 5_000)).toBe(true)
      const lifetime = (client.endedAt ?? 0) - client.openedAt
      expect(lifetime).toBeGreaterThan(350)
      expect(lifetime).toBeLessThan(4_000)
      const responses = responsesOf(client)
      expect(responses.map((r) => `${r.version} ${r.status}`)).toEqual(["HTTP/1.1 408"])
      expect(responses[0].header("connection")).toBe("close")
      // The app was reading the body: its fiber does not hang.
      expect(started).toBe(1)
      expect(yield* waitUntil(() => ended === 1, 3_000)).toBe(true)
      const snapshot = yield* stats.snapshot
      expect(snapshot.timeouts.request).toBe(1)
      expect(snapshot.timeouts.headers).toBe(0)
      // Still serving, and the stalled connection is gone.
      const other = yield* rawExchange(port, request("GET / HTTP/1.1", "Host: x", "Connection: close"))
      expect(other.responses.map((r) => r.status)).toEqual([200])
      const drained = waitFor(
        Effect.map(stats.snapshot, (s) => s.openConnections === 0),
        4_000
      )
      expect(yield* drained).toBe(true)
    })
  )

  it.live("a body that arrives in pieces within requestTimeout is served", () =>
    Effect.gen(function* () {
      const app = Effect.gen(function* () {
        const req = yield* HttpServerRequest
        return HttpServerResponse.text(yield* req.text)
      })
      const { port, stats } = yield* start(app, { requestTimeout: 1 })
      const head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n"
      const result = yield* rawExchange(port, [head, "hello", "world"], { delayMs: 100, responses: 1 })
      expect(result.responses.map((r) => r.status)).toEqual([200])
      expect(result.responses[0].body.toString()).toBe("helloworld")
      expect((yield* stats.snapshot).timeouts.request).toBe(0)
    })
  )
})
