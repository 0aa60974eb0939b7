/**
 * Upgraded connections stay the server's: 1,000 concurrent WebSockets exchanging messages are
 * all counted in `Stats` while open and gone once closed, every app fiber ends, and an open
 * WebSocket counts against `maxConnections` (a connection beyond it gets 503) but holds no slot of
 * `maxConcurrentRequests` (the request it was is over once the 101 is out).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { rawExchange, request } from "../helpers/raw.ts"
import { serveScoped } from "../helpers/server.ts"
import { waitUntil } from "../helpers/wait.ts"
import { connectWs } from "../helpers/ws.ts"
import { allClosed, echoApp, echoHandler } from "./apps.ts"

describe("Http1Server: many WebSockets, stats and limits", () => {
  it.live(
    "1,000 concurrent WebSockets each exchange 10 messages; all counted while open, none after",
    () =>
      Effect.gen(function* () {
        let ended = 0
        const { port, stats } = yield* serveScoped(
          echoHandler.pipe(
            Effect.ensuring(
              Effect.sync(() => {
                ended++
              })
            )
          ),
          { backlog: 2048 }
        )
        const url = `ws://127.0.0.1:${port}/`
        const clients = yield* Effect.forEach(
          Array.from({ length: 1000 }, (_, i) => i),
          () => connectWs(url),
          { concurrency: 100 }
        )
        const open = yield* stats.snapshot
        expect(open.openConnections).toBe(1000)
        expect(open.idleConnections).toBe(0)
        expect(open.requests).toBe(1000)
        // Every socket sends its next message once the previous one came back, all at once.
        yield* Effect.forEach(
          clients,
          (client, i) =>
            Effect.gen(function* () {
              for (let j = 0; j < 10; j++) {
                const text = `${i}:${j}`
                const back = yield* client.echo(text, 5_000)
                expect(back.data.toString()).toBe(text)
              }
            }),
          { concurrency: "unbounded", discard: true }
        )
        for (const client of clients) client.ws.close(1000)
        yield* Effect.forEach(clients, (client) => client.closed(5_000), { discard: true })
        expect(yield* allClosed(stats, 5_000)).toBe(true)
        expect(yield* waitUntil(() => ended === 1000, 2_000)).toBe(true)
      }).pipe(Effect.scoped),
    20_000
  )

  it.live("an open WebSocket counts in Stats openConnections (not as idle)", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* serveScoped(echoHandler)
      const client = yield* connectWs(`ws://127.0.0.1:${port}/`)
      yield* client.echo("x")
      const snapshot = yield* stats.snapshot
      expect(snapshot.openConnections).toBe(1)
      expect(snapshot.idleConnections).toBe(0)
      client.ws.close()
      expect(yield* allClosed(stats)).toBe(true)
    }).pipe(Effect.scoped)
  )

  it.live("an open WebSocket holds no slot of maxConcurrentRequests: other requests are served", () =>
    Effect.gen(function* () {
      const { port } = yield* serveScoped(echoApp, { maxConcurrentRequests: 1, requestQueueTimeout: 0.5 })
      const client = yield* connectWs(`ws://127.0.0.1:${port}/ws`)
      expect((yield* client.echo("open")).data.toString()).toBe("open")
      const other = yield* rawExchange(port, request("GET / HTTP/1.1", "Host: x"), { responses: 1, timeoutMs: 2_000 })
      expect(other.responses[0]?.status).toBe(200)
      expect(other.responses[0]?.body.toString()).toBe("Hello, World!")
      const second = yield* connectWs(`ws://127.0.0.1:${port}/ws`)
      expect((yield* second.echo("second")).data.toString()).toBe("second")
    }).pipe(Effect.scoped)
  )

  it.live("with maxConnections: 1 and a WebSocket open, a new connection gets 503; once it closes, 200", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* serveScoped(echoHandler, { maxConnections: 1 })
      const client = yield* connectWs(`ws://127.0.0.1:${port}/`)
      const refused = yield* rawExchange(port, request("GET /plain HTTP/1.1", "Host: x"), { timeoutMs: 2_000 })
      expect(refused.responses[0]?.status).toBe(503)
      expect(refused.closed).toBe(true)
      // The WebSocket is unharmed.
      expect((yield* client.echo("still open")).data.toString()).toBe("still open")
      expect((yield* stats.snapshot).rejectedConnections).toBe(1)
      client.ws.close()
      yield* client.closed()
      expect(yield* allClosed(stats)).toBe(true)
      const another = yield* connectWs(`ws://127.0.0.1:${port}/`)
      expect((yield* another.echo("next")).data.toString()).toBe("next")
    }).pipe(Effect.scoped)
  )
})
