/**
 * Overload over real sockets (issue 3, item 5): maxConnections refuses with 503 and close,
 * maxConcurrentRequests bounds the app's concurrency, and requests that wait too long for a slot
 * (or whose client leaves while waiting) leave the queue.
 */

import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Scope from "effect/Scope"
import { parseResponses, type RawResponse, rawExchange, request } from "../helpers/raw.ts"
import { serveWithStats } from "../helpers/server.ts"
import { waitFor, waitUntil } from "../helpers/wait.ts"

const start = serveWithStats

/** A client connection the test drives by hand. */
interface Client {
  readonly socket: Net.Socket
  readonly chunks: Array<Buffer>
  /** When the server closed its side (FIN or close), performance.now(). */
  endedAt: number | undefined
  reset: boolean
}

const received = (client: Client): Buffer => Buffer.concat(client.chunks)
const responsesOf = (client: Client): Array<RawResponse> =>
  parseResponses(received(client), [], client.endedAt !== undefined)

/** A connection destroyed when the scope closes. */
const connect = (port: number): Effect.Effect<Client, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Client>((resume) => {
      const socket = Net.connect({ port, host: "127.0.0.1" })
      const client: Client = { socket, chunks: [], endedAt: undefined, reset: false }
      const ended = () => {
        client.endedAt ??= performance.now()
      }
      socket.on("data", (chunk: Buffer) => client.chunks.push(chunk))
      socket.on("end", ended)
      socket.on("close", ended)
      socket.on("error", (error: NodeJS.ErrnoException) => {
        if (error.code === "ECONNRESET") client.reset = true
      })
      socket.once("connect", () => resume(Effect.succeed(client)))
      return Effect.sync(() => socket.destroy())
    }),
    (client) => Effect.sync(() => client.socket.destroy())
  )

const get = (path: string) => request(`GET ${path} HTTP/1.1`, "Host: x")
const getAndClose = (path: string) => request(`GET ${path} HTTP/1.1`, "Host: x", "Connection: close")

/** An app that counts the requests running at once; `/hold?ms=N` takes N ms. */
const counting = () => {
  const state = { running: 0, max: 0, started: [] as Array<string> }
  const app = Effect.gen(function* () {
    const req = yield* HttpServerRequest
    const url = new URL(req.url, "http://x")
    state.started.push(url.searchParams.get("id") ?? url.pathname)
    state.running++
    state.max = Math.max(state.max, state.running)
    yield* Effect.sleep(Number(url.searchParams.get("ms") ?? "0"))
    return HttpServerResponse.text(`done ${url.searchParams.get("id") ?? ""}`)
  }).pipe(
    Effect.ensuring(
      Effect.sync(() => {
        state.running--
      })
    )
  )
  return { state, app }
}

describe("maxConnections", () => {
  it.live("the connection over the limit gets 503 and is closed; a freed place is served again", () =>
    Effect.gen(function* () {
      const limit = 5
      const { port, stats } = yield* start(Effect.succeed(HttpServerResponse.text("ok")), { maxConnections: limit })
      // limit keep-alive connections, each established by one completed request.
      const kept: Array<Client> = []
      for (let i = 0; i < limit; i++) {
        const client = yield* connect(port)
        client.socket.write(get("/"))
        expect(yield* waitUntil(() => responsesOf(client).length === 1, 4_000)).toBe(true)
        expect(responsesOf(client)[0].status).toBe(200)
        kept.push(client)
      }
      expect((yield* stats.snapshot).openConnections).toBe(limit)

      // One more: refused with 503 and Connection: close, then closed; no silent drop, no hang.
      const over = yield* connect(port)
      over.socket.write(get("/"))
      expect(yield* waitUntil(() => over.endedAt !== undefined, 5_000)).toBe(true)
      const refused = responsesOf(over)
      expect(refused.map((r) => `${r.version} ${r.status}`)).toEqual(["HTTP/1.1 503"])
      expect(refused[0].header("connection")).toBe("close")
      expect(over.reset).toBe(false)
      let snapshot = yield* stats.snapshot
      expect(snapshot.rejectedConnections).toBe(1)
      expect(snapshot.openConnections).toBe(limit)
      // The refused connection's request never reached the app.
      expect(snapshot.requests).toBe(limit)

      // The kept connections are unaffected.
      kept[1].socket.write(get("/"))
      expect(yield* waitUntil(() => responsesOf(kept[1]).length === 2, 4_000)).toBe(true)
      expect(responsesOf(kept[1])[1].status).toBe(200)

      // Closing one frees a place: a new connection is served normally.
      kept[0].socket.destroy()
      expect(
        yield* waitFor(
          Effect.map(stats.snapshot, (s) => s.openConnections === limit - 1),
          4_000
        )
      ).toBe(true)
      const fresh = yield* rawExchange(port, getAndClose("/"))
      expect(fresh.responses.map((r) => r.status)).toEqual([200])
      expect(fresh.responses[0].body.toString()).toBe("ok")
      snapshot = yield* stats.snapshot
      expect(snapshot.rejectedConnections).toBe(1)
      expect(snapshot.accepted).toBe(limit + 2)
    })
  )
})

describe("maxConcurrentRequests", () => {
  it.live("at most maxConcurrentRequests run at once; the others wait for a slot and are served", () =>
    Effect.gen(function* () {
      const { state, app } = counting()
      const { port, stats } = yield* start(app, { maxConcurrentRequests: 2, requestQueueTimeout: 5 })
      const before = performance.now()
      const results = yield* Effect.forEach(
        Array.from({ length: 8 }, (_, i) => i),
        (i) => rawExchange(port, getAndClose(`/hold?ms=300&id=${i}`), { responses: 1, timeoutMs: 10_000 }),
        { concurrency: "unbounded" }
      )
      const elapsed = performance.now() - before
      expect(results.map((r) => r.responses.map((x) => x.status))).toEqual(new Array(8).fill([200]))
      expect(results.map((r) => r.responses[0].body.toString()).sort()).toEqual(
        Array.from({ length: 8 }, (_, i) => `done ${i}`).sort()
      )
      expect(state.started.length).toBe(8)
      expect(state.max).toBe(2)
      // Four rounds of 300 ms: they cannot all have run at once.
      expect(elapsed).toBeGreaterThan(1_100)
      const snapshot = yield* stats.snapshot
      expect(snapshot.requests).toBe(8)
      expect(snapshot.rejectedRequests).toBe(0)
    })
  )

  it.live("a request that waits longer than requestQueueTimeout gets 503; the one holding the slot completes", () =>
    Effect.gen(function* () {
      const { state, app } = counting()
      const { port, stats } = yield* start(app, { maxConcurrentRequests: 1, requestQueueTimeout: 0.3 })
      const holder = yield* Effect.forkChild(
        rawExchange(port, getAndClose("/hold?ms=2000&id=holder"), { responses: 1, timeoutMs: 10_000 })
      )
      expect(yield* waitUntil(() => state.running === 1, 4_000)).toBe(true)

      const before = performance.now()
      const waiter = yield* rawExchange(port, getAndClose("/hold?id=waiter"), { responses: 1, timeoutMs: 5_000 })
      const waited = performance.now() - before
      expect(waiter.responses.map((r) => `${r.version} ${r.status}`)).toEqual(["HTTP/1.1 503"])
      // Refused after about the queue timeout, well before the slot would have been free.
      expect(waited).toBeGreaterThan(200)
      expect(waited).toBeLessThan(1_900)
      // It never reached the app.
      expect(state.started).toEqual(["holder"])
      expect((yield* stats.snapshot).rejectedRequests).toBe(1)

      const held = yield* Fiber.join(holder)
      expect(held.responses.map((r) => r.status)).toEqual([200])
      expect(held.responses[0].body.toString()).toBe("done holder")
      // The slot is free again.
      const after = yield* rawExchange(port, getAndClose("/hold?id=after"), { responses: 1, timeoutMs: 5_000 })
      expect(after.responses.map((r) => r.status)).toEqual([200])
      const snapshot = yield* stats.snapshot
      expect(snapshot.rejectedRequests).toBe(1)
      expect(state.max).toBe(1)
    })
  )

  it.live("a queued request whose body times out gets 408 and never runs, even once a slot frees", () =>
    Effect.gen(function* () {
      const { state, app } = counting()
      const { port } = yield* start(app, { maxConcurrentRequests: 1, requestQueueTimeout: 10, requestTimeout: 0.3 })
      const holder = yield* Effect.forkChild(
        rawExchange(port, getAndClose("/hold?ms=1500&id=holder"), { responses: 1, timeoutMs: 10_000 })
      )
      expect(yield* waitUntil(() => state.running === 1, 4_000)).toBe(true)
      // 2 of 10 body bytes, then nothing; the client reads the answer but keeps its side open
      const received: Array<Buffer> = []
      let answered = false
      const stalled = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const socket = Net.connect({ port, host: "127.0.0.1", allowHalfOpen: true })
          socket.on("data", (chunk: Buffer) => received.push(chunk))
          socket.on("end", () => {
            answered = true
          })
          socket.on("error", () => {})
          socket.write(`${request("POST /hold?id=stalled HTTP/1.1", "Host: x", "Content-Length: 10")}ab`)
          return socket
        }),
        (socket) => Effect.sync(() => socket.destroy())
      )
      expect(yield* waitUntil(() => answered, 5_000)).toBe(true)
      expect(parseResponses(Buffer.concat(received)).map((r) => r.status)).toEqual([408])
      expect((yield* Fiber.join(holder)).responses.map((r) => r.status)).toEqual([200])
      const after = yield* rawExchange(port, getAndClose("/hold?id=after"), { responses: 1, timeoutMs: 5_000 })
      expect(after.responses.map((r) => r.status)).toEqual([200])
      stalled.destroy()
      expect(state.started).toEqual(["holder", "after"])
    })
  )

  it.live("a queued request whose client disconnects leaves the queue: the next waiter gets the slot", () =>
    Effect.gen(function* () {
      const { state, app } = counting()
      const { port, stats } = yield* start(app, { maxConcurrentRequests: 1, requestQueueTimeout: 5 })
      const holder = yield* Effect.forkChild(
        rawExchange(port, getAndClose("/hold?ms=800&id=holder"), { responses: 1, timeoutMs: 10_000 })
      )
      expect(yield* waitUntil(() => state.running === 1, 4_000)).toBe(true)

      // A second request queues behind it, then its client goes away.
      const gone = yield* connect(port)
      gone.socket.write(get("/hold?ms=800&id=gone"))
      expect(
        yield* waitFor(
          Effect.map(stats.snapshot, (s) => s.requests === 2),
          4_000
        )
      ).toBe(true)
      gone.socket.destroy()
      expect(
        yield* waitFor(
          Effect.map(stats.snapshot, (s) => s.openConnections === 1),
          4_000
        )
      ).toBe(true)

      // A third queues; when the holder finishes, it gets the slot, not the departed one.
      const next = yield* rawExchange(port, getAndClose("/hold?id=next"), { responses: 1, timeoutMs: 8_000 })
      expect(next.responses.map((r) => r.status)).toEqual([200])
      expect(next.responses[0].body.toString()).toBe("done next")
      const held = yield* Fiber.join(holder)
      expect(held.responses.map((r) => r.status)).toEqual([200])
      expect(state.started).toEqual(["holder", "next"])
      expect(state.running).toBe(0)
      expect((yield* stats.snapshot).rejectedRequests).toBe(0)
      // No slot leaked: a further request runs at once.
      const after = yield* rawExchange(port, getAndClose("/hold?id=after"), { responses: 1, timeoutMs: 5_000 })
      expect(after.responses.map((r) => r.status)).toEqual([200])
    })
  )
})
