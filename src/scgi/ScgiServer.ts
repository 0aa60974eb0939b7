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
import { type Config, Context, Effect, Layer } from "effect"
import type * as HttpServer from "effect/http/HttpServer"
import type * as Scope from "effect/Scope"
import { makeServer, type PlatformServices, withPlatform } from "../conn/ServerAssembly.ts"
import type { BindError, InvalidOptions } from "../errors.ts"
import { targetOf } from "../listen/Listener.ts"
import {
  decodeOptions,
  millis,
  optionsFromConfig,
  type ScgiServerConfig,
  ScgiServerOptions,
  type ScgiServerOptionsInput
} from "../options.ts"
import type { Stats } from "../stats/ServerStats.ts"
import { ScgiEnviron } from "./Environ.ts"
import { scgiProtocol } from "./ScgiProtocol.ts"

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
    return yield* makeServer({
      target,
      noDelay: config.noDelay,
      protocol: scgiProtocol({ maxHeaderSize: config.maxHeaderSize, maxBodySize: config.maxBodySize }, config.environ),
      driver: {
        headersTimeout: millis(config.headersTimeout),
        requestTimeout: millis(config.requestTimeout),
        // One request per connection: never idle between requests, never a body left to discard.
        keepAliveTimeout: 0,
        sendTimeout: millis(config.sendTimeout),
        drainGrace: millis(config.drainGrace),
        maxDrainSize: 0
      },
      maxConnections: config.maxConnections,
      shutdownTimeout: millis(config.shutdownTimeout),
      stopDelay: millis(config.stopDelay),
      healthPath: config.healthPath,
      maxConcurrentRequests: config.maxConcurrentRequests,
      requestQueueTimeout: millis(config.requestQueueTimeout),
      accessLog: config.accessLog,
      accessLogFile: config.accessLogFile,
      // The request's CGI environment, for apps that ask for it.
      contextOf: (exchange, context) => Context.add(context, ScgiEnviron, exchange.environ)
    })
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
): Layer.Layer<HttpServer.HttpServer | Stats | PlatformServices, BindError | InvalidOptions> =>
  withPlatform(layerServer(options))

/**
 * `layer` with its options read from Effect `Config`, as `NodeHttpServer.layerConfig` takes them:
 * a Config for each option (or one for all), e.g.
 * `ScgiServer.layerConfig({ port: Config.Port("PORT"), maxBodySize: Config.Int("MAX_BODY_SIZE") })`.
 * Each value is decoded with the option's own Schema: a value it refuses fails the Layer with a
 * `ConfigError` naming the variable and the option.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Wrap<ScgiServerOptionsInput>
): Layer.Layer<HttpServer.HttpServer | Stats | PlatformServices, BindError | InvalidOptions | Config.ConfigError> =>
  Layer.unwrap(Effect.map(optionsFromConfig(ScgiServerOptions, options), layer))
