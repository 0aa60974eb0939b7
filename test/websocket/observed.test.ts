/**
 * What the rest of the server sees of an upgrade: middleware observes the `101` in place of the
 * app's response (as on NodeHttpServer), also through a prefixed route or PathDispatcher,
 * HttpMiddleware.logger logs status 101, the access log line says 101 and the client; over SCGI, which cannot switch protocols, `request.upgrade` fails with a typed
 * `UpgradeUnavailable` the app can answer.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Layer, Logger, References } from "effect"
import * as HttpMiddleware from "effect/http/HttpMiddleware"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import type { HttpServerError } from "effect/http/HttpServerError"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { PathDispatcher, ScgiServer, UpgradeUnavailable } from "../../src/index.ts"
import { on, serverPort, servers } from "../conformance/servers.ts"
import { accessLines, accessLogFile } from "../helpers/accessLog.ts"
import { scgi } from "../helpers/scgi.ts"
import { serveLayer } from "../helpers/server.ts"
import { connectWs } from "../helpers/ws.ts"
import { echoApp, echoHandler, echoRoutes } from "./apps.ts"

for (const [name, layer] of servers) {
  describe(`${name}: middleware and upgrades`, () => {
    it.live("middleware sees status 101 once the WebSocket is done; HttpMiddleware.logger logs 101", () =>
      on(layer)(
        Effect.gen(function* () {
          const seen = yield* Deferred.make<number>()
          const logged = yield* Deferred.make<unknown>()
          const capture = Logger.make((options) => {
            const annotations = options.fiber.getRef(References.CurrentLogAnnotations)
            if (annotations["http.url"] === "/ws")
              Deferred.doneUnsafe(logged, Effect.succeed(annotations["http.status"]))
          })
          const recordStatus = HttpMiddleware.make((app) =>
            Effect.tap(app, (response) => Deferred.succeed(seen, response.status))
          )
          yield* Layer.build(
            HttpRouter.serve(echoRoutes, {
              disableListenLog: true,
              middleware: (app) => HttpMiddleware.logger(recordStatus(app))
            }).pipe(Layer.provide(Logger.layer([capture])))
          )
          const client = yield* connectWs(`ws://127.0.0.1:${yield* serverPort}/ws`)
          expect((yield* client.echo("x")).data.toString()).toBe("x")
          client.ws.close()
          expect(yield* Deferred.await(seen).pipe(Effect.timeout("2 seconds"))).toBe(101)
          expect(yield* Deferred.await(logged).pipe(Effect.timeout("2 seconds"))).toBe(101)
        })
      )
    )

    it.live("a WebSocket upgraded through a prefixed route: echoes, and middleware sees 101", () =>
      on(layer)(
        Effect.gen(function* () {
          const seen = yield* Deferred.make<number>()
          const routes = HttpRouter.use((router) => router.prefixed("/chat").add("GET", "/ws", echoHandler))
          yield* Layer.build(
            HttpRouter.serve(routes, {
              disableLogger: true,
              disableListenLog: true,
              middleware: HttpMiddleware.make((app) =>
                Effect.tap(app, (response) => Deferred.succeed(seen, response.status))
              )
            })
          )
          const client = yield* connectWs(`ws://127.0.0.1:${yield* serverPort}/chat/ws`)
          expect((yield* client.echo("prefixed")).data.toString()).toBe("prefixed")
          client.ws.close()
          expect(yield* Deferred.await(seen).pipe(Effect.timeout("2 seconds"))).toBe(101)
        })
      )
    )
  })
}

describe("Http1Server: upgrades through PathDispatcher", () => {
  it.live("an app mounted at /chat upgrades; middleware around the dispatcher sees 101", () =>
    Effect.gen(function* () {
      const seen = yield* Deferred.make<number>()
      const dispatcher = yield* PathDispatcher.make({ "/": echoApp, "/chat": echoApp })
      const recordStatus = HttpMiddleware.make((app) =>
        Effect.tap(app, (response) => Deferred.succeed(seen, response.status))
      )
      const { port } = yield* serveLayer(HttpServer.serve(dispatcher, recordStatus))
      const client = yield* connectWs(`ws://127.0.0.1:${port}/chat/ws`)
      expect((yield* client.echo("mounted")).data.toString()).toBe("mounted")
      client.ws.close()
      expect(yield* Deferred.await(seen).pipe(Effect.timeout("2 seconds"))).toBe(101)
    }).pipe(Effect.scoped)
  )
})

describe("Http1Server: the access log of an upgrade", () => {
  it.live("the line for an upgraded request says 101", () =>
    Effect.gen(function* () {
      const file = yield* accessLogFile
      const { port } = yield* serveLayer(HttpServer.serve(echoHandler), { accessLog: "common", accessLogFile: file })
      const client = yield* connectWs(`ws://127.0.0.1:${port}/chat`)
      yield* client.echo("x")
      client.ws.close()
      yield* client.closed()
      const logged = yield* accessLines(file, 1)
      expect(logged[0]).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "GET \/chat HTTP\/1\.1" 101 -$/)
    }).pipe(Effect.scoped)
  )
})

describe("ScgiServer: no upgrades", () => {
  it.live("request.upgrade fails with an HttpServerError whose cause is UpgradeUnavailable", () =>
    Effect.gen(function* () {
      const failed = yield* Deferred.make<HttpServerError>()
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        return yield* request.upgrade.pipe(
          Effect.as(HttpServerResponse.text("upgraded?")),
          Effect.tapError((error) => Deferred.succeed(failed, error)),
          Effect.catchTag("HttpServerError", (error) =>
            Effect.succeed(HttpServerResponse.text(error.reason.description ?? "", { status: 501 }))
          )
        )
      })
      const context = yield* Layer.build(
        HttpServer.serve(app).pipe(Layer.provideMerge(ScgiServer.layer({ host: "127.0.0.1", port: 0 })))
      )
      const address = Context.get(context, HttpServer.HttpServer).address
      if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
      // What nginx passes when told to forward the upgrade headers.
      const response = yield* scgi(
        { port: address.port },
        {
          REQUEST_METHOD: "GET",
          REQUEST_URI: "/ws",
          SERVER_PROTOCOL: "HTTP/1.1",
          HTTP_HOST: "example.com",
          HTTP_UPGRADE: "websocket",
          HTTP_CONNECTION: "upgrade",
          HTTP_SEC_WEBSOCKET_KEY: "dGhlIHNhbXBsZSBub25jZQ==",
          HTTP_SEC_WEBSOCKET_VERSION: "13"
        }
      )
      expect(response.status).toBe(501)
      expect(response.body.toString()).toMatch(/not possible over SCGI/)
      const error = yield* Deferred.await(failed).pipe(Effect.timeout("2 seconds"))
      expect(error.reason._tag).toBe("RequestParseError")
      const cause = error.reason.cause
      expect(cause).toBeInstanceOf(UpgradeUnavailable)
      expect((cause as UpgradeUnavailable).protocol).toBe("scgi")
      expect((cause as UpgradeUnavailable).message).toBe("connection upgrades are not possible over SCGI")
    }).pipe(Effect.scoped)
  )
})
