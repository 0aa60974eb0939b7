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

import type * as Net from "node:net"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as NodeServices from "@effect/platform-node/NodeServices"
import { Context, Effect, Layer } from "effect"
import type * as Etag from "effect/http/Etag"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import type { HttpClient } from "effect/http/HttpClient"
import type * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpServer from "effect/http/HttpServer"
import type * as Scope from "effect/Scope"
import type { BindError, InvalidOptions } from "../errors.ts"
import * as Gateway from "../gateway/Gateway.ts"
import { makeRunner } from "../gateway/Runner.ts"
import { Acceptor, createServer } from "../listen/Acceptor.ts"
import { listen, listenerLabel, targetOf } from "../listen/Listener.ts"
import * as Tls from "../listen/Tls.ts"
import {
  decodeOptions,
  type Http1ServerConfig,
  Http1ServerOptions,
  type Http1ServerOptionsInput,
  millis
} from "../options.ts"
import { registerMetrics, ServerStats, Stats } from "../stats/ServerStats.ts"
import { Admission } from "../wire/Admission.ts"
import { type ConnectionConfig, Http1Connection } from "./Connection.ts"
import { simpleResponse } from "./Encoder.ts"
import type { Exchange } from "./Exchange.ts"

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
  protocol: config.tls === undefined ? "http" : "https",
  headersTimeout: millis(config.headersTimeout),
  requestTimeout: millis(config.requestTimeout),
  keepAliveTimeout: millis(config.keepAliveTimeout)
})

/**
 * Listens with the given options and provides `HttpServer` and `Stats`. Binding happens when the
 * Layer is built (bind failures are typed); connections are served once an app is served.
 *
 * Closing the scope is a graceful stop: accepting stops at once, idle connections close,
 * requests in progress (and those already received) have `shutdownTimeout` to finish, their
 * responses carrying `Connection: close`; then what remains is interrupted and every socket closed.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Http1ServerOptionsInput
): Effect.Effect<Context.Context<HttpServer.HttpServer | Stats>, BindError | InvalidOptions, Scope.Scope> =>
  Effect.gen(function* () {
    const config = yield* decodeOptions(Http1ServerOptions, options)
    const target = yield* targetOf(config)
    const tlsSettings = config.tls
    const tlsContext = tlsSettings === undefined ? undefined : yield* Tls.secureContext(tlsSettings)
    const connConfig = connectionConfig(config)
    const stats = new ServerStats()
    const server = createServer(config.noDelay)
    const acceptor = new Acceptor<Http1Connection>(server, stats)
    const listener = yield* listen(server, target)
    yield* Effect.addFinalizer(() => acceptor.closeWaiting)
    yield* registerMetrics(stats, listenerLabel(target, listener.address))

    // The TLS handshake runs in the connection's fiber with its own timeout, so a slow or failed
    // handshake never holds up accepting (cheroot#748).
    const secure =
      tlsContext === undefined || tlsSettings === undefined
        ? undefined
        : (socket: Net.Socket): Effect.Effect<Net.Socket | undefined> =>
            Tls.handshake(socket, tlsContext, tlsSettings).pipe(
              config.handshakeTimeout > 0
                ? Effect.timeoutOrElse({
                    duration: millis(config.handshakeTimeout),
                    orElse: () => {
                      stats.timeouts.handshake++
                      return Effect.fail(new Tls.HandshakeFailed({ reason: "closed" }))
                    }
                  })
                : (effect) => effect,
              Effect.catchTag("HandshakeFailed", (error) =>
                Effect.as(Effect.logDebug("TLS handshake failed", error.reason), undefined)
              )
            )

    const httpServer = HttpServer.make({
      address: listener.address,
      serve: Effect.fnUntraced(function* (app, middleware) {
        const services = yield* Effect.context<never>()
        const admission = Admission.limit(config.maxConcurrentRequests, millis(config.requestQueueTimeout))
        const runner = makeRunner<Exchange>({
          handled: Gateway.toHandled(app, middleware),
          services,
          stats,
          accessLog: config.accessLog
        })
        yield* acceptor.serve({
          maxConnections: config.maxConnections,
          shutdownTimeout: millis(config.shutdownTimeout),
          timeouts: [
            connConfig.headersTimeout,
            connConfig.requestTimeout,
            connConfig.keepAliveTimeout,
            millis(config.requestQueueTimeout)
          ],
          refusal: () => simpleResponse(503, "server at its connection limit\n", true, config.serverName),
          admission,
          prepare: secure,
          connection: (socket, forget) =>
            new Http1Connection(socket, { config: connConfig, runner, stats, admission, forget })
        })
      })
    })
    return Context.make(HttpServer.HttpServer, httpServer).pipe(
      Context.add(Stats, Stats.of({ snapshot: Effect.sync(() => stats.snapshot()) }))
    )
  })

/**
 * Provides only `HttpServer`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServer = (
  options: Http1ServerOptionsInput = {}
): Layer.Layer<HttpServer.HttpServer | Stats, BindError | InvalidOptions> => Layer.effectContext(make(options))

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
  HttpServer.HttpServer | Stats | NodeServices.NodeServices | HttpPlatform.HttpPlatform | Etag.Generator,
  BindError | InvalidOptions
> => Layer.mergeAll(layerServer(options), NodeHttpServer.layerHttpServices)

/**
 * A server on 127.0.0.1 with an ephemeral port plus an `HttpClient` aimed at it, for tests.
 *
 * @since 0.1.0
 * @category testing
 */
export const layerTest: Layer.Layer<
  HttpServer.HttpServer | Stats | NodeServices.NodeServices | HttpPlatform.HttpPlatform | Etag.Generator | HttpClient,
  BindError | InvalidOptions
> = HttpServer.layerTestClient.pipe(
  Layer.provide(
    Layer.fresh(FetchHttpClient.layer).pipe(
      Layer.provide(Layer.succeed(FetchHttpClient.RequestInit)({ keepalive: false }))
    )
  ),
  Layer.provideMerge(layer({ host: "127.0.0.1", port: 0 }))
)
