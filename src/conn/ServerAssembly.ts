/**
 * Assembling a server, once for every protocol: bind the listener (typed bind failures), count
 * its statistics and register them as Metrics, and provide Effect's `HttpServer`, whose `serve`
 * runs an app on every accepted connection through the protocol's driver. Releasing the server
 * is its graceful stop, whichever scope `serve` ran in.
 *
 * @since 0.1.0
 */
import type * as Net from "node:net"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import type * as NodeServices from "@effect/platform-node/NodeServices"
import { Context, Effect, Layer } from "effect"
import type * as Etag from "effect/http/Etag"
import type * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpServer from "effect/http/HttpServer"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import type * as Scope from "effect/Scope"
import { type BindError, InvalidOptions } from "../errors.ts"
import * as Gateway from "../gateway/Gateway.ts"
import { makeRunner } from "../gateway/Runner.ts"
import { Acceptor, createServer } from "../listen/Acceptor.ts"
import { HandedConnections } from "../listen/Handoff.ts"
import { type ListenTarget, listen, listenerLabel } from "../listen/Listener.ts"
import { type AccessLogFormat, AccessLogSink } from "../stats/AccessLog.ts"
import { Health, ServerHealth } from "../stats/Health.ts"
import { registerMetrics, ServerStats, Stats } from "../stats/ServerStats.ts"
import { Admission } from "../wire/Admission.ts"
import { Connection, type ConnectionServer, type DriverConfig } from "./Connection.ts"
import type { Exchange } from "./Exchange.ts"
import type { Protocol } from "./Protocol.ts"

/**
 * What a protocol's server brings to the assembly. Times are in milliseconds, 0 for none.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerSpec<H extends { readonly _tag: "Head" }, X extends Exchange> {
  readonly target: ListenTarget
  readonly noDelay: boolean
  readonly protocol: Protocol<H, X>
  readonly driver: DriverConfig
  readonly maxConnections: number
  readonly shutdownTimeout: number
  readonly stopDelay: number
  /** The path the server answers itself with its health (200, 503 once stopping). */
  readonly healthPath: string | undefined
  readonly maxConcurrentRequests: number
  readonly requestQueueTimeout: number
  readonly accessLog: AccessLogFormat | "off"
  /** Append access log lines to this file (reopened on SIGUSR1) instead of standard output. */
  readonly accessLogFile: string | undefined
  /** Other periods (ms) the sweep serves, such as WebSocket pings. */
  readonly periods?: ReadonlyArray<number> | undefined
  /** Work before a socket is served (a TLS handshake), given the server's statistics. */
  readonly prepare?: ((stats: ServerStats) => (socket: Net.Socket) => Effect.Effect<Net.Socket | undefined>) | undefined
  /** Per-request services beyond the request itself (SCGI's environment). */
  readonly contextOf?:
    | ((exchange: X, context: Context.Context<HttpServerRequest>) => Context.Context<HttpServerRequest>)
    | undefined
}

/**
 * The access log's sink for the server's lifetime: standard output, or the file, reopened on
 * SIGUSR1 (logrotate's `postrotate`, as for nginx). Closing writes what is queued: a line for a
 * request answered just before the stop is not lost.
 */
const accessLogSink = (spec: {
  readonly accessLogFile: string | undefined
}): Effect.Effect<AccessLogSink, InvalidOptions, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Effect.context<never>()
    const path = spec.accessLogFile
    const onError = (error: Error) =>
      Effect.runForkWith(context)(Effect.logError(`access log ${path ?? "(stdout)"}: ${error.message}`))
    const sink = yield* Effect.acquireRelease(
      Effect.try({
        try: () => new AccessLogSink(path, onError),
        catch: (error) =>
          new InvalidOptions({
            option: "accessLogFile",
            detail: `cannot open ${path}: ${error instanceof Error ? error.message : String(error)}`
          })
      }),
      (sink) => Effect.sync(() => sink.close())
    )
    if (path !== undefined) {
      const reopen = () => sink.reopen()
      yield* Effect.acquireRelease(
        Effect.sync(() => process.on("SIGUSR1", reopen)),
        () => Effect.sync(() => process.off("SIGUSR1", reopen))
      )
    }
    return sink
  })

/**
 * Listens and provides `HttpServer` and `Stats`. Binding happens now (bind failures are typed);
 * connections are served once an app is served.
 *
 * Closing the scope is a graceful stop: accepting stops at once, idle connections close,
 * requests in progress (and those already received) have `shutdownTimeout` to finish; then what
 * remains is interrupted and every socket closed. The same stop runs when the scope `serve` was
 * called in closes, whichever closes first: a server Layer released before the program that
 * serves on it (`Effect.provide(layer)` around `HttpServer.serve`) does not wait for clients to
 * drop their idle connections.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeServer = <H extends { readonly _tag: "Head" }, X extends Exchange>(
  spec: ServerSpec<H, X>
): Effect.Effect<Context.Context<HttpServer.HttpServer | Stats>, BindError | InvalidOptions, Scope.Scope> =>
  Effect.gen(function* () {
    if (spec.accessLogFile !== undefined && spec.accessLog === "off") {
      return yield* new InvalidOptions({
        option: "accessLogFile",
        detail: "has no lines to write: set accessLog to common, combined or json"
      })
    }
    const stats = new ServerStats()
    const server = createServer(spec.noDelay)
    const { driver } = spec
    // A prefork worker reports the pool's health; a server of its own, its own stop.
    const given = yield* ServerHealth
    const health = given ?? new Health()
    const acceptor = new Acceptor<Connection<H, X>>(server, stats, {
      maxConnections: spec.maxConnections,
      shutdownTimeout: spec.shutdownTimeout,
      stopDelay: spec.stopDelay,
      onStop:
        given === undefined
          ? () => {
              health.draining = true
            }
          : undefined,
      timeouts: [
        driver.headersTimeout,
        driver.requestTimeout,
        driver.keepAliveTimeout,
        driver.sendTimeout,
        spec.requestQueueTimeout,
        ...(spec.periods ?? [])
      ],
      refusal: spec.protocol.simpleResponse(503, "server at its connection limit\n", true),
      prepare: spec.prepare?.(stats)
    })
    // A process whose connections are handed over (a worker under a dispatching prefork primary)
    // serves those instead of listening where the options say.
    const source = yield* HandedConnections
    const target: ListenTarget = source === undefined ? spec.target : { _tag: "Handed", source }
    const listener = yield* listen(server, target)
    yield* Effect.addFinalizer(() => acceptor.closeWaiting)
    yield* registerMetrics(stats, listenerLabel(target, listener.address))
    const accessLog =
      spec.accessLog === "off" ? undefined : { format: spec.accessLog, sink: yield* accessLogSink(spec) }
    // Runs before the listener's own release (finalizers run in reverse), so that closing the
    // listener never waits for connections nobody is closing.
    yield* Effect.addFinalizer(() => acceptor.shutdown)

    const httpServer = HttpServer.make({
      address: listener.address,
      serve: Effect.fnUntraced(function* (app, middleware) {
        const services = yield* Effect.context<never>()
        const admission = Admission.limit(spec.maxConcurrentRequests, spec.requestQueueTimeout)
        stats.queued = admission === undefined ? () => 0 : () => admission.queued
        const runner = makeRunner<X>({
          handled: Gateway.toHandled(app, middleware),
          services,
          stats,
          accessLog,
          contextOf: spec.contextOf,
          health: spec.healthPath === undefined ? undefined : { path: spec.healthPath, state: health }
        })
        // One record for all the connections of this app (the acceptor's `forget` is the same
        // function for each of them).
        let shared: ConnectionServer<H, X> | undefined
        yield* acceptor.serve({
          admission,
          connection: (socket, forget) => {
            shared ??= {
              config: driver,
              protocol: spec.protocol,
              runner,
              stats,
              admission,
              forget,
              get stopping() {
                return acceptor.stopping
              }
            }
            return new Connection(socket, shared)
          }
        })
      })
    })
    return Context.make(HttpServer.HttpServer, httpServer).pipe(
      Context.add(Stats, Stats.of({ snapshot: Effect.sync(() => stats.snapshot()) }))
    )
  })

/**
 * What apps need from the platform beyond `HttpServer`: `HttpPlatform` (file responses),
 * `FileSystem`, `Path` and an `Etag` generator, as `NodeHttpServer.layer` provides them.
 *
 * @since 0.1.0
 * @category models
 */
export type PlatformServices = NodeServices.NodeServices | HttpPlatform.HttpPlatform | Etag.Generator

/**
 * A server Layer with the platform services added.
 *
 * @since 0.1.0
 * @category layers
 */
export const withPlatform = <E>(
  server: Layer.Layer<HttpServer.HttpServer | Stats, E>
): Layer.Layer<HttpServer.HttpServer | Stats | PlatformServices, E> =>
  Layer.mergeAll(server, NodeHttpServer.layerHttpServices)
