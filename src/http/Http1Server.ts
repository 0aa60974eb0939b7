/**
 * The HTTP/1.1 server: Effect's `HttpServer` service on raw `node:net` sockets with this
 * package's own protocol code. Swap it in for `NodeHttpServer.layer` and `HttpServer.serve`,
 * `HttpRouter.serve` and `HttpApi` programs run unchanged.
 *
 * ```ts
 * import { Http1Server } from "effect-appserver"
 * HttpRouter.serve(routes).pipe(Layer.provide(Http1Server.layer({ port: 8080 })))
 * ```
 *
 * @since 0.1.0
 */

import * as Net from "node:net"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as NodeServices from "@effect/platform-node/NodeServices"
import { Context, Effect, FiberSet, Layer, Option } from "effect"
import type * as Etag from "effect/http/Etag"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import type { HttpClient } from "effect/http/HttpClient"
import type * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpServer from "effect/http/HttpServer"
import { causeResponseStripped } from "effect/http/HttpServerError"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import type { BindError, InvalidOptions } from "../errors.ts"
import * as Gateway from "../gateway/Gateway.ts"
import { ServerRequest } from "../gateway/ServerRequest.ts"
import { listenTcp } from "../listen/Listener.ts"
import { decodeOptions, type Http1ServerConfig, Http1ServerOptions, type Http1ServerOptionsInput } from "../options.ts"
import { type ConnectionConfig, Http1Connection, type RequestRunner } from "./Connection.ts"

export { type Http1ServerConfig, Http1ServerOptions, type Http1ServerOptionsInput }

const connectionConfig = (config: Http1ServerConfig): ConnectionConfig => ({
  limits: {
    maxRequestLineSize: config.maxRequestLineSize,
    maxHeaderSize: config.maxHeaderSize,
    maxHeaderCount: config.maxHeaderCount,
    maxBodySize: config.maxBodySize
  },
  maxDrainSize: config.maxDrainSize,
  serverName: config.serverName,
  protocol: "http"
})

const makeRunner = (
  handled: Effect.Effect<void, never, HttpServerRequest>,
  services: Context.Context<never>
): RequestRunner => {
  const log = (effect: Effect.Effect<void>) => {
    Effect.runForkWith(services)(effect)
  }
  return {
    makeRequest: (exchange) => new ServerRequest(exchange),
    run: (request) => Effect.runForkWith(Context.add(services, HttpServerRequest, request))(handled),
    completed: (exchange, exit) => {
      if (exit._tag !== "Failure") return
      // The cause carries the error response as a defect too; log only what went wrong.
      const [, cause] = causeResponseStripped(exit.cause)
      if (Option.isSome(cause) && Gateway.isServerFailure(cause.value, exchange.status, exchange.aborted)) {
        log(
          Effect.logError("request failed", cause.value).pipe(
            Effect.annotateLogs({
              "http.method": exchange.method,
              "http.url": exchange.url,
              "http.status": exchange.status
            })
          )
        )
      }
    },
    rejected: (error) => log(Effect.logDebug("request refused", error.status, error.reason))
  }
}

/**
 * Listens with the given options and provides `HttpServer`. Binding happens when the Layer is
 * built (bind failures are typed); connections are served once an app is served. Closing the
 * scope stops accepting and closes every connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function* (options: Http1ServerOptionsInput) {
  const config = yield* decodeOptions(Http1ServerOptions, options)
  // allowHalfOpen false: as in Node's and Go's servers, a client that sends FIN has gone away.
  // Node then ends our side after what was written, the socket closes, and a request in
  // progress is interrupted like on a disconnect.
  const server = Net.createServer({ noDelay: config.noDelay, pauseOnConnect: true, allowHalfOpen: false })
  let accept: ((socket: Net.Socket) => void) | undefined
  const waiting = new Set<Net.Socket>()
  server.on("connection", (socket: Net.Socket) => {
    if (accept !== undefined) return accept(socket)
    // Connections that arrive before an app is served wait (paused) for it.
    waiting.add(socket)
    socket.once("close", () => waiting.delete(socket))
  })
  const listener = yield* listenTcp(server, config)
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      for (const socket of waiting) socket.destroy()
    })
  )
  const connConfig = connectionConfig(config)

  return HttpServer.make({
    address: listener.address,
    serve: Effect.fnUntraced(function* (app, middleware) {
      const services = yield* Effect.context<never>()
      const runner = makeRunner(Gateway.toHandled(app, middleware), services)
      // Each connection runs as a fiber in this set. The live connections are also kept here so
      // that closing the serve scope stops them all (interrupting requests in progress, closing
      // sockets) before the set's own finalizer interrupts what remains.
      const connections = yield* FiberSet.make<void>()
      const live = new Set<Http1Connection>()
      yield* Effect.addFinalizer(() =>
        Effect.forEach(live, (conn) => conn.stop, { concurrency: "unbounded", discard: true })
      )
      const runFork = yield* FiberSet.runtime(connections)<never>()
      const forget = (conn: Http1Connection) => {
        live.delete(conn)
      }
      const onConnection = (socket: Net.Socket) => {
        const conn = new Http1Connection(socket, connConfig, runner, forget)
        live.add(conn)
        runFork(conn.lifetime)
      }
      // The accept loop: a fiber supervised by the serve scope that owns the listener's
      // connection handler while it runs.
      yield* FiberSet.run(
        connections,
        Effect.callback<never>(() => {
          accept = onConnection
          for (const socket of waiting) onConnection(socket)
          waiting.clear()
          return Effect.sync(() => {
            if (accept === onConnection) accept = undefined
          })
        })
      )
    })
  })
})

/**
 * Provides only `HttpServer`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServer = (
  options: Http1ServerOptionsInput = {}
): Layer.Layer<HttpServer.HttpServer, BindError | InvalidOptions> => Layer.effect(HttpServer.HttpServer)(make(options))

/**
 * Provides `HttpServer` plus what apps need from the platform: `HttpPlatform` (file responses),
 * `FileSystem`, `Path` and an `Etag` generator.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Http1ServerOptionsInput = {}
): Layer.Layer<
  HttpServer.HttpServer | NodeServices.NodeServices | HttpPlatform.HttpPlatform | Etag.Generator,
  BindError | InvalidOptions
> => Layer.mergeAll(layerServer(options), NodeHttpServer.layerHttpServices)

/**
 * A server on 127.0.0.1 with an ephemeral port plus an `HttpClient` aimed at it, for tests.
 *
 * @since 0.1.0
 * @category testing
 */
export const layerTest: Layer.Layer<
  HttpServer.HttpServer | NodeServices.NodeServices | HttpPlatform.HttpPlatform | Etag.Generator | HttpClient,
  BindError | InvalidOptions
> = HttpServer.layerTestClient.pipe(
  Layer.provide(
    Layer.fresh(FetchHttpClient.layer).pipe(
      Layer.provide(Layer.succeed(FetchHttpClient.RequestInit)({ keepalive: false }))
    )
  ),
  Layer.provideMerge(layer({ host: "127.0.0.1", port: 0 }))
)
