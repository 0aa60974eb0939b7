/**
 * Upgrades the app does not take: the request gets the app's ordinary response, and on this
 * server the connection carries on as HTTP/1.1 (or closes, when the request said so) without
 * waiting for a timeout. Also an upgrade request reset by its client (NodeHttpServer's test): the
 * process survives and serves the next request. The shared behaviours run on both servers.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { on, serveRoutes, serverPort, servers } from "../conformance/servers.ts"
import { rawExchange, request } from "../helpers/raw.ts"
import { serveLayer } from "../helpers/server.ts"
import { resetAfterUpgradeRequest, upgradeRequest } from "../helpers/ws.ts"

/** `/no-ws` declines every upgrade with 426; `/` answers "ok"; `/body` reads the body and answers its length. */
const declining = HttpRouter.addAll([
  HttpRouter.route("GET", "/no-ws", HttpServerResponse.text("upgrade refused", { status: 426 })),
  HttpRouter.route("GET", "/", HttpServerResponse.text("ok")),
  HttpRouter.route(
    "POST",
    "/body",
    Effect.flatMap(HttpServerRequest, (request) =>
      Effect.map(request.text, (body) => HttpServerResponse.text(`read ${body.length}`))
    )
  )
])

const getRoot = request("GET / HTTP/1.1", "Host: 127.0.0.1")

for (const [name, layer] of servers) {
  describe(`${name}: declined upgrades`, () => {
    it.live("a WebSocket upgrade the app does not take gets the app's response", () =>
      on(layer)(
        Effect.gen(function* () {
          yield* serveRoutes(declining)
          const result = yield* rawExchange(yield* serverPort, upgradeRequest("/no-ws"), { responses: 1 })
          expect(result.responses).toHaveLength(1)
          expect(result.responses[0].status).toBe(426)
          expect(result.responses[0].body.toString()).toBe("upgrade refused")
        })
      )
    )

    it.live("an upgrade request reset by its client 50 ms later does not crash the process", () =>
      on(layer)(
        Effect.gen(function* () {
          yield* serveRoutes(declining)
          const port = yield* serverPort
          const uncaught: Array<unknown> = []
          const onUncaught = (error: unknown) => uncaught.push(error)
          process.on("uncaughtException", onUncaught)
          yield* Effect.addFinalizer(() => Effect.sync(() => process.off("uncaughtException", onUncaught)))
          // To a route that does not exist (404) and to one that upgrades nothing.
          yield* resetAfterUpgradeRequest(port, "/missing")
          yield* resetAfterUpgradeRequest(port, "/no-ws")
          expect(uncaught).toEqual([])
          const after = yield* rawExchange(port, getRoot, { responses: 1 })
          expect(after.responses[0]?.status).toBe(200)
        })
      )
    )
  })
}

describe("Http1Server: the connection after a declined upgrade", () => {
  const serve = serveLayer(HttpRouter.serve(declining, { disableLogger: true, disableListenLog: true }))

  it.live("keep-alive continues: the same connection then serves GET / at once", () =>
    Effect.gen(function* () {
      const { port } = yield* serve
      const started = performance.now()
      const result = yield* rawExchange(port, [upgradeRequest("/no-ws"), getRoot], { responses: 2, delayMs: 200 })
      expect(result.responses.map((response) => response.status)).toEqual([426, 200])
      expect(result.responses[1].body.toString()).toBe("ok")
      expect(result.closed).toBe(false)
      // Well under keepAliveTimeout (5 s) and headersTimeout (30 s).
      expect(performance.now() - started).toBeLessThan(1_000)
    }).pipe(Effect.scoped)
  )

  it.live("a request pipelined behind the declined upgrade is answered", () =>
    Effect.gen(function* () {
      const { port } = yield* serve
      const result = yield* rawExchange(port, upgradeRequest("/no-ws") + getRoot, { responses: 2, timeoutMs: 2_000 })
      expect(result.responses.map((response) => response.status)).toEqual([426, 200])
    }).pipe(Effect.scoped)
  )

  it.live("with Connection: close the response says so and the connection closes at once", () =>
    Effect.gen(function* () {
      const { port } = yield* serve
      const started = performance.now()
      const bytes = upgradeRequest("/no-ws").replace("Connection: Upgrade", "Connection: Upgrade, close")
      const result = yield* rawExchange(port, bytes, { timeoutMs: 3_000 })
      expect(result.closed).toBe(true)
      expect(performance.now() - started).toBeLessThan(1_000)
      expect(result.responses).toHaveLength(1)
      expect(result.responses[0].status).toBe(426)
      expect(result.responses[0].header("connection")).toBe("close")
    }).pipe(Effect.scoped)
  )

  it.live("a declined non-WebSocket upgrade with a body: the body is read as HTTP, then the next request", () =>
    Effect.gen(function* () {
      const { port } = yield* serve
      const declined = request(
        "POST /body HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: echo/1",
        "Connection: Upgrade",
        "Content-Length: 5"
      )
      const result = yield* rawExchange(port, `${declined}hello${getRoot}`, { responses: 2, timeoutMs: 2_000 })
      expect(result.responses.map((response) => response.body.toString())).toEqual(["read 5", "ok"])
    }).pipe(Effect.scoped)
  )
})
