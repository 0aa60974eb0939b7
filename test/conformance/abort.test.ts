/**
 * Conformance, clients that go away: the request's fiber is interrupted as a `ClientAbort`, a
 * streamed response stops, a body read does not hang, and a server whose handler was waiting on
 * another service stops promptly. On `NodeHttpServer.layerTest` (the reference) and
 * `Http1Server.layerTest` alike.
 */
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Layer, Scope, Stream } from "effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import { ClientAbort } from "effect/http/HttpServerError"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { halfOpenClient, request } from "../helpers/raw.ts"
import { waitUntil } from "../helpers/wait.ts"
import { on, portOf, serveRoutes, serverPort, servers } from "./servers.ts"

/** How the app's effect ended, in words a test can compare. */
const ending = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "succeeded"
  const abort = exit.cause.reasons.some(
    (reason) => reason._tag === "Interrupt" && reason.annotations.has(ClientAbort.key)
  )
  if (abort) return "interrupted by ClientAbort"
  return Cause.hasInterruptsOnly(exit.cause) ? "interrupted" : "failed"
}

/** A TCP server on loopback that accepts connections and never answers; closed with the scope. */
const silentUpstream = Effect.acquireRelease(
  Effect.callback<{ readonly port: number; readonly accepted: () => boolean; readonly close: () => void }>((resume) => {
    const sockets = new Set<Net.Socket>()
    const server = Net.createServer((socket) => {
      sockets.add(socket)
      socket.on("error", () => {})
      socket.on("close", () => sockets.delete(socket))
    })
    let accepted = false
    server.on("connection", () => {
      accepted = true
    })
    const close = () => {
      for (const socket of sockets) socket.destroy()
      server.close()
    }
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ port: (server.address() as Net.AddressInfo).port, accepted: () => accepted, close }))
    )
  }),
  (upstream) => Effect.sync(upstream.close)
)

for (const [name, layer] of servers) {
  const test = on(layer)

  describe(`${name}: clients that go away`, () => {
    it.live("a client that disconnects interrupts the request's fiber as a ClientAbort", () =>
      test(
        Effect.gen(function* () {
          const started = yield* Deferred.make<void>()
          const ended = yield* Deferred.make<string>()
          yield* serveRoutes(
            HttpRouter.add(
              "GET",
              "/wait",
              Effect.andThen(Deferred.succeed(started, undefined), Effect.never).pipe(
                Effect.onExit((exit) => Deferred.succeed(ended, ending(exit)))
              )
            )
          )
          const client = yield* halfOpenClient({ port: yield* serverPort }, request("GET /wait HTTP/1.1", "Host: x"))
          yield* Deferred.await(started).pipe(Effect.timeout("2 seconds"))
          client.socket.destroy()
          expect(yield* Deferred.await(ended).pipe(Effect.timeout("2 seconds"))).toBe("interrupted by ClientAbort")
        })
      )
    )

    it.live("a client that leaves during a streamed response stops the stream", () =>
      test(
        Effect.gen(function* () {
          const stopped = yield* Deferred.make<void>()
          const endless = Stream.fromEffectRepeat(Effect.as(Effect.sleep(5), new TextEncoder().encode("tick\n"))).pipe(
            Stream.ensuring(Deferred.succeed(stopped, undefined))
          )
          yield* serveRoutes(HttpRouter.add("GET", "/ticks", HttpServerResponse.stream(endless)))
          const client = yield* halfOpenClient({ port: yield* serverPort }, request("GET /ticks HTTP/1.1", "Host: x"))
          expect(yield* waitUntil(() => Buffer.concat(client.chunks).includes("tick"), 2_000)).toBe(true)
          client.socket.destroy()
          yield* Deferred.await(stopped).pipe(Effect.timeout("2 seconds"))
        })
      )
    )

    it.live("a client that leaves in the middle of its body interrupts the app's read as a ClientAbort", () =>
      test(
        Effect.gen(function* () {
          const reading = yield* Deferred.make<void>()
          const ended = yield* Deferred.make<string>()
          yield* serveRoutes(
            HttpRouter.add(
              "POST",
              "/upload",
              Effect.gen(function* () {
                const request = yield* HttpServerRequest.HttpServerRequest
                yield* Deferred.succeed(reading, undefined)
                yield* request.text
                return HttpServerResponse.empty()
              }).pipe(Effect.onExit((exit) => Deferred.succeed(ended, ending(exit))))
            )
          )
          const client = yield* halfOpenClient(
            { port: yield* serverPort },
            `${request("POST /upload HTTP/1.1", "Host: x", "Content-Length: 100")}only ten b`
          )
          yield* Deferred.await(reading).pipe(Effect.timeout("2 seconds"))
          client.socket.destroy()
          expect(yield* Deferred.await(ended).pipe(Effect.timeout("2 seconds"))).toBe("interrupted by ClientAbort")
        })
      )
    )

    it.live("after a client aborts a handler that awaits another server, the server stops promptly", () =>
      Effect.gen(function* () {
        const upstream = yield* silentUpstream
        const routes = HttpRouter.add(
          "GET",
          "/",
          Effect.gen(function* () {
            const request = yield* HttpServerRequest.HttpServerRequest
            if (request.method !== "HEAD") return HttpServerResponse.text("ok")
            yield* HttpClient.head(`http://127.0.0.1:${upstream.port}/`).pipe(Effect.provide(FetchHttpClient.layer))
            return HttpServerResponse.empty()
          })
        )
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(
          HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true }).pipe(Layer.provideMerge(layer)),
          scope
        )
        const port = portOf(Context.get(context, HttpServer.HttpServer))
        const client = yield* halfOpenClient({ port }, request("HEAD / HTTP/1.1", "Host: x"))
        expect(yield* waitUntil(upstream.accepted, 2_000)).toBe(true)
        client.socket.destroy()
        const stopped = yield* Scope.close(scope, Exit.void).pipe(Effect.timeoutOption("2 seconds"))
        expect(stopped._tag).toBe("Some")
      }).pipe(Effect.scoped)
    )
  })
}
