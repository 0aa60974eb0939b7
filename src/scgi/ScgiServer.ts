/**
 * The SCGI server: Effect's `HttpServer` service over the SCGI protocol, so `HttpServer.serve`,
 * `HttpRouter.serve` and `HttpApi` programs run behind nginx, Apache or lighttpd unchanged.
 *
 * ```ts
 * import { ScgiServer } from "effect-appserver"
 * HttpRouter.serve(routes).pipe(Layer.provide(ScgiServer.layer({ path: "/run/app.sock" })))
 * ```
 *
 * nginx:
 *
 * ```nginx
 * location / {
 *   include scgi_params;
 *   scgi_pass unix:/run/app.sock;
 * }
 * ```
 *
 * @since 0.1.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as NodeServices from "@effect/platform-node/NodeServices"
import { Context, Effect, Layer } from "effect"
import type * as Etag from "effect/http/Etag"
import type * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpServer from "effect/http/HttpServer"
import type * as Scope from "effect/Scope"
import type { BindError, InvalidOptions } from "../errors.ts"
import * as Gateway from "../gateway/Gateway.ts"
import { makeRunner } from "../gateway/Runner.ts"
import { Acceptor, createServer } from "../listen/Acceptor.ts"
import { listen, listenerLabel, targetOf } from "../listen/Listener.ts"
import {
  decodeOptions,
  millis,
  type ScgiServerConfig,
  ScgiServerOptions,
  type ScgiServerOptionsInput
} from "../options.ts"
import { registerMetrics, ServerStats, Stats } from "../stats/ServerStats.ts"
import { Admission } from "../wire/Admission.ts"
import { ScgiEnviron } from "./Environ.ts"
import { ScgiConnection, type ScgiConnectionServer, type ScgiExchange } from "./ScgiConnection.ts"
import { simpleScgiResponse } from "./ScgiEncoder.ts"

export { type CgiVariables, type Environ, ScgiEnviron } from "./Environ.ts"
export { ScgiProtocolError } from "./ScgiProtocolError.ts"
export { type ScgiServerConfig, ScgiServerOptions, type ScgiServerOptionsInput }

/**
 * Listens with the given options and provides `HttpServer` and `Stats`. Binding happens when the
 * Layer is built (bind failures are typed); connections are served once an app is served.
 * Closing the scope is a graceful stop, as for the HTTP server.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: ScgiServerOptionsInput
): Effect.Effect<Context.Context<HttpServer.HttpServer | Stats>, BindError | InvalidOptions, Scope.Scope> =>
  Effect.gen(function* () {
    const config = yield* decodeOptions(ScgiServerOptions, options)
    const target = yield* targetOf(config)
    const stats = new ServerStats()
    const server = createServer(config.noDelay)
    const acceptor = new Acceptor<ScgiConnection>(server, stats)
    const listener = yield* listen(server, target)
    yield* Effect.addFinalizer(() => acceptor.closeWaiting)
    const address = listener.address
    yield* registerMetrics(stats, listenerLabel(target, address))
    const connectionConfig = {
      limits: { maxHeaderSize: config.maxHeaderSize, maxBodySize: config.maxBodySize },
      environ: config.environ,
      headersTimeout: millis(config.headersTimeout),
      requestTimeout: millis(config.requestTimeout)
    }

    const httpServer = HttpServer.make({
      address,
      serve: Effect.fnUntraced(function* (app, middleware) {
        const services = yield* Effect.context<never>()
        const admission = Admission.limit(config.maxConcurrentRequests, millis(config.requestQueueTimeout))
        const runner = makeRunner<ScgiExchange>({
          handled: Gateway.toHandled(app, middleware),
          services,
          stats,
          accessLog: config.accessLog,
          // The request's CGI environment, for apps that ask for it.
          contextOf: (exchange, context) => Context.add(context, ScgiEnviron, exchange.environ)
        })
        yield* acceptor.serve({
          maxConnections: config.maxConnections,
          shutdownTimeout: millis(config.shutdownTimeout),
          timeouts: [
            connectionConfig.headersTimeout,
            connectionConfig.requestTimeout,
            millis(config.requestQueueTimeout)
          ],
          refusal: () => simpleScgiResponse(503, "server at its connection limit\n"),
          admission,
          connection: (socket, forget) => {
            const connServer: ScgiConnectionServer = { config: connectionConfig, runner, stats, admission, forget }
            return new ScgiConnection(socket, connServer)
          }
        })
      })
    })
    return Context.make(HttpServer.HttpServer, httpServer).pipe(
      Context.add(Stats, Stats.of({ snapshot: Effect.sync(() => stats.snapshot()) }))
    )
  })

/**
 * Provides only `HttpServer` and `Stats`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServer = (
  options: ScgiServerOptionsInput = {}
): Layer.Layer<HttpServer.HttpServer | Stats, BindError | InvalidOptions> => Layer.effectContext(make(options))

/**
 * Provides `HttpServer` plus what apps need from the platform: `HttpPlatform` (file responses),
 * `FileSystem`, `Path` and an `Etag` generator.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: ScgiServerOptionsInput = {}
): Layer.Layer<
  HttpServer.HttpServer | Stats | NodeServices.NodeServices | HttpPlatform.HttpPlatform | Etag.Generator,
  BindError | InvalidOptions
> => Layer.mergeAll(layerServer(options), NodeHttpServer.layerHttpServices)
