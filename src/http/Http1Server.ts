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
import type * as NodeTls from "node:tls"
import type { WebSocketServer } from "@effect/platform-node/NodeWS"
import { type Config, type Context, Effect, Layer } from "effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import type { HttpClient } from "effect/http/HttpClient"
import * as HttpServer from "effect/http/HttpServer"
import type * as Scope from "effect/Scope"
import { makeServer, type PlatformServices, withPlatform } from "../conn/ServerAssembly.ts"
import type { BindError, InvalidOptions } from "../errors.ts"
import { targetOf } from "../listen/Listener.ts"
import * as Tls from "../listen/Tls.ts"
import {
  decodeOptions,
  type Http1ServerConfig,
  Http1ServerOptions,
  type Http1ServerOptionsInput,
  millis,
  optionsFromConfig
} from "../options.ts"
import type { ServerStats, Stats } from "../stats/ServerStats.ts"
import { http1Protocol } from "./Http1Protocol.ts"
import { webSocketServer } from "./Upgrade.ts"

export { type Http1ServerConfig, Http1ServerOptions, type Http1ServerOptionsInput }

/**
 * The TLS handshake of each connection, in a fiber of its own with `handshakeTimeout`, so a slow
 * or failed handshake never holds up accepting (cheroot#748).
 */
const handshake =
  (config: Http1ServerConfig, tlsContext: NodeTls.SecureContext, tlsSettings: Tls.TlsSettings) =>
  (stats: ServerStats) =>
  (socket: Net.Socket): Effect.Effect<Net.Socket | undefined> =>
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

/**
 * Listens with the given options and provides `HttpServer` and `Stats`. Binding happens when the
 * Layer is built (bind failures are typed); connections are served once an app is served.
 *
 * Closing the scope is a graceful stop: accepting stops at once, idle connections close,
 * requests in progress (and those already received) have `shutdownTimeout` to finish, their
 * responses carrying `Connection: close`; then what remains is interrupted and every socket
 * closed. It runs whichever closes first, this scope or the one the app is served in.
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
    const webSocket = {
      maxMessageSize: config.websocketMaxMessageSize,
      pingInterval: millis(config.websocketPingInterval),
      compression: config.websocketCompression
    }
    let webSockets: WebSocketServer | undefined
    const protocol = http1Protocol(
      {
        maxRequestLineSize: config.maxRequestLineSize,
        maxHeaderSize: config.maxHeaderSize,
        maxHeaderCount: config.maxHeaderCount,
        maxBodySize: config.maxBodySize
      },
      {
        maxBodySize: config.maxBodySize,
        serverName: config.serverName,
        scheme: tlsSettings === undefined ? "http" : "https",
        webSocket,
        webSockets: () => (webSockets ??= webSocketServer(webSocket))
      }
    )
    return yield* makeServer({
      target,
      noDelay: config.noDelay,
      protocol,
      driver: {
        headersTimeout: millis(config.headersTimeout),
        requestTimeout: millis(config.requestTimeout),
        keepAliveTimeout: millis(config.keepAliveTimeout),
        sendTimeout: millis(config.sendTimeout),
        drainGrace: millis(config.drainGrace),
        maxDrainSize: config.maxDrainSize
      },
      maxConnections: config.maxConnections,
      shutdownTimeout: millis(config.shutdownTimeout),
      stopDelay: millis(config.stopDelay),
      healthPath: config.healthPath,
      maxConcurrentRequests: config.maxConcurrentRequests,
      requestQueueTimeout: millis(config.requestQueueTimeout),
      accessLog: config.accessLog,
      accessLogFile: config.accessLogFile,
      periods: [webSocket.pingInterval],
      prepare:
        tlsContext === undefined || tlsSettings === undefined ? undefined : handshake(config, tlsContext, tlsSettings)
    })
  })

/**
 * Provides `HttpServer` and `Stats` alone, for apps that need no platform services.
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
): Layer.Layer<HttpServer.HttpServer | Stats | PlatformServices, BindError | InvalidOptions> =>
  withPlatform(layerServer(options))

/**
 * `layer` with its options read from Effect `Config`, as `NodeHttpServer.layerConfig` takes them:
 * a Config for each option (or one for all), e.g.
 * `Http1Server.layerConfig({ port: Config.Port("PORT"), maxBodySize: Config.Int("MAX_BODY_SIZE") })`.
 * Each value is decoded with the option's own Schema: a value it refuses fails the Layer with a
 * `ConfigError` naming the variable and the option.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Wrap<Http1ServerOptionsInput>
): Layer.Layer<HttpServer.HttpServer | Stats | PlatformServices, BindError | InvalidOptions | Config.ConfigError> =>
  Layer.unwrap(Effect.map(optionsFromConfig(Http1ServerOptions, options), layer))

/**
 * A server on 127.0.0.1 with an ephemeral port plus an `HttpClient` aimed at it, for tests.
 *
 * @since 0.1.0
 * @category testing
 */
export const layerTest: Layer.Layer<
  HttpServer.HttpServer | Stats | PlatformServices | HttpClient,
  BindError | InvalidOptions
> = HttpServer.layerTestClient.pipe(
  Layer.provide(
    Layer.fresh(FetchHttpClient.layer).pipe(
      Layer.provide(Layer.succeed(FetchHttpClient.RequestInit)({ keepalive: false }))
    )
  ),
  Layer.provideMerge(layer({ host: "127.0.0.1", port: 0 }))
)
