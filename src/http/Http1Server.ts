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
import type * as NodeTls from "node:tls"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as NodeServices from "@effect/platform-node/NodeServices"
import { Context, Effect, FiberSet, Layer, Schedule } from "effect"
import type * as Etag from "effect/http/Etag"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import type { HttpClient } from "effect/http/HttpClient"
import type * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpServer from "effect/http/HttpServer"
import type * as Scope from "effect/Scope"
import type { BindError, InvalidOptions } from "../errors.ts"
import * as Gateway from "../gateway/Gateway.ts"
import { makeRunner } from "../gateway/Runner.ts"
import { describeTarget, listen, targetOf } from "../listen/Listener.ts"
import * as Tls from "../listen/Tls.ts"
import { decodeOptions, type Http1ServerConfig, Http1ServerOptions, type Http1ServerOptionsInput } from "../options.ts"
import { registerMetrics, ServerStats, Stats } from "../stats/ServerStats.ts"
import { Admission } from "./Admission.ts"
import { type ConnectionConfig, type ConnectionServer, Http1Connection } from "./Connection.ts"
import { simpleResponse } from "./Encoder.ts"
import type { Exchange } from "./Exchange.ts"

export { type Http1ServerConfig, Http1ServerOptions, type Http1ServerOptionsInput }

const millis = (seconds: number) => Math.round(seconds * 1000)

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
 * How often deadlines are checked: a quarter of the shortest timeout, between 50 ms and 1 s, so a
 * timeout fires at most 25% late (and within a second for the usual multi-second ones).
 */
const sweepInterval = (config: Http1ServerConfig): number => {
  const timeouts = [config.headersTimeout, config.requestTimeout, config.keepAliveTimeout, config.requestQueueTimeout]
    .filter((t) => t > 0)
    .map(millis)
  return Math.min(1000, Math.max(50, Math.floor(Math.min(...timeouts, 4000) / 4)))
}

/** Refuses a connection over maxConnections: 503 and close, never a silent drop or a hang. */
const refuse = (socket: Net.Socket, serverName: string): void => {
  socket.on("error", () => {})
  socket.resume()
  socket.end(simpleResponse(503, "server at its connection limit\n", true, serverName))
  setTimeout(() => socket.destroy(), 2_000).unref()
}

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
    const live = new Set<Http1Connection>()
    let handshaking = 0
    stats.live = () => {
      let idle = 0
      let bytesRead = 0
      let bytesWritten = 0
      for (const conn of live) {
        if (conn.idle) idle++
        bytesRead += conn.socket.bytesRead
        bytesWritten += conn.socket.bytesWritten
      }
      return { open: live.size + handshaking, idle, bytesRead, bytesWritten }
    }

    const server = Net.createServer({
      noDelay: config.noDelay,
      pauseOnConnect: true,
      // As in Node's and Go's servers, a client that sends FIN has gone away: Node then ends
      // our side after what was written, the socket closes, and a request in progress is
      // interrupted like on a disconnect.
      allowHalfOpen: false
    })
    let accept: ((socket: Net.Socket) => void) | undefined
    const waiting = new Set<Net.Socket>()
    server.on("connection", (socket: Net.Socket) => {
      if (accept !== undefined) return accept(socket)
      // Connections that arrive before an app is served wait (paused) for it.
      waiting.add(socket)
      socket.once("close", () => waiting.delete(socket))
    })
    const listener = yield* listen(server, target)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const socket of waiting) socket.destroy()
      })
    )
    yield* registerMetrics(stats, describeTarget(target).replace(/:0$/, `:${portOf(listener.address)}`))

    const httpServer = HttpServer.make({
      address: listener.address,
      serve: Effect.fnUntraced(function* (app, middleware) {
        const services = yield* Effect.context<never>()
        const runner = makeRunner<Exchange>({
          handled: Gateway.toHandled(app, middleware),
          services,
          stats,
          accessLog: config.accessLog
        })
        let onEmpty: (() => void) | undefined
        const connServer: ConnectionServer = {
          config: connConfig,
          runner,
          stats,
          admission:
            config.maxConcurrentRequests > 0
              ? new Admission(config.maxConcurrentRequests, millis(config.requestQueueTimeout))
              : undefined,
          forget: (conn) => {
            live.delete(conn)
            if (live.size === 0) onEmpty?.()
          }
        }
        // Each connection runs as a fiber in this set; closing the serve scope runs the graceful
        // stop below first, then the set's finalizer interrupts whatever fiber remains.
        const connections = yield* FiberSet.make<void>()
        const runFork = yield* FiberSet.runtime(connections)<never>()
        yield* Effect.addFinalizer(() =>
          Effect.gen(function* () {
            accept = undefined
            server.close()
            for (const conn of live) conn.drainForShutdown()
            const drained = Effect.callback<void>((resume) => {
              if (live.size === 0) return resume(Effect.void)
              onEmpty = () => resume(Effect.void)
            })
            yield* Effect.timeoutOption(drained, millis(config.shutdownTimeout))
            yield* Effect.forEach(live, (conn) => conn.stop, { concurrency: "unbounded", discard: true })
          })
        )

        const serveSocket = (socket: Net.Socket | NodeTls.TLSSocket): Effect.Effect<void> => {
          const conn = new Http1Connection(socket, connServer)
          live.add(conn)
          return conn.lifetime
        }
        const overLimit = () => config.maxConnections > 0 && live.size + handshaking >= config.maxConnections
        const secured = (socket: Net.Socket, context: NodeTls.SecureContext, settings: Tls.TlsSettings) =>
          Effect.suspend(() => {
            handshaking++
            return Tls.handshake(socket, context, settings)
          }).pipe(
            config.handshakeTimeout > 0
              ? Effect.timeoutOrElse({
                  duration: millis(config.handshakeTimeout),
                  orElse: () => {
                    stats.timeouts.handshake++
                    return Effect.fail(new Tls.HandshakeFailed({ reason: "closed" }))
                  }
                })
              : (effect) => effect,
            Effect.ensuring(
              Effect.sync(() => {
                handshaking--
              })
            ),
            Effect.flatMap((secure) => {
              if (!overLimit()) return serveSocket(secure)
              stats.rejectedConnections++
              return Effect.sync(() => refuse(secure, config.serverName))
            }),
            Effect.catchTag("HandshakeFailed", (error) => Effect.logDebug("TLS handshake failed", error.reason))
          )
        const onConnection = (socket: Net.Socket) => {
          stats.accepted++
          if (tlsContext !== undefined && tlsSettings !== undefined) {
            runFork(secured(socket, tlsContext, tlsSettings))
            return
          }
          if (overLimit()) {
            stats.rejectedConnections++
            refuse(socket, config.serverName)
            return
          }
          runFork(serveSocket(socket))
        }
        // Deadlines (timeouts, the request queue) are checked by one sweep over the live
        // connections on a fixed schedule, rather than a timer per connection.
        const sweep = Effect.sync(() => {
          const now = Date.now()
          for (const conn of live) if (conn.deadline !== 0 && now >= conn.deadline) conn.timeout()
          connServer.admission?.expire(now)
        })
        yield* FiberSet.run(connections, Effect.repeat(sweep, Schedule.spaced(sweepInterval(config))))
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
    return Context.make(HttpServer.HttpServer, httpServer).pipe(
      Context.add(Stats, Stats.of({ snapshot: Effect.sync(() => stats.snapshot()) }))
    )
  })

const portOf = (address: HttpServer.HttpServer["Service"]["address"]): number =>
  address._tag === "UnixPathAddress" ? 0 : address.port

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
