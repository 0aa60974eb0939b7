/**
 * Starting a real server on an ephemeral port for a test.
 */
import { Context, Effect, Exit, type FileSystem, Layer, type Path, Scope } from "effect"
import type * as Etag from "effect/http/Etag"
import type * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpServer from "effect/http/HttpServer"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import type { HttpServerResponse } from "effect/http/HttpServerResponse"
import { Http1Server, Stats } from "../../src/index.ts"
import type { Http1ServerOptionsInput } from "../../src/options.ts"

export interface Running {
  readonly port: number
  readonly url: string
}

const running = (server: HttpServer.HttpServer["Service"]): Running => {
  const address = server.address
  if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
  return { port: address.port, url: `http://127.0.0.1:${address.port}` }
}

/** What apps may require: the request and the platform services `Http1Server.layer` provides. */
export type Provided =
  | HttpServerRequest
  | HttpPlatform.HttpPlatform
  | FileSystem.FileSystem
  | Path.Path
  | Etag.Generator

/** Serves `app` on 127.0.0.1 with an ephemeral port for the rest of the scope. */
export const serveApp = <E>(
  app: Effect.Effect<HttpServerResponse, E, Provided>,
  options: Http1ServerOptionsInput = {}
): Effect.Effect<Running, unknown, Scope.Scope> => serveLayer(HttpServer.serve(app), options)

/** Builds a layer that serves something (an app, an HttpRouter, an HttpApi) on an ephemeral port. */
export const serveLayer = <E>(
  layer: Layer.Layer<never, E, HttpServer.HttpServer | Exclude<Provided, HttpServerRequest>>,
  options: Http1ServerOptionsInput = {}
): Effect.Effect<Running, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      layer.pipe(Layer.provideMerge(Http1Server.layer({ host: "127.0.0.1", port: 0, ...options })))
    )
    return running(Context.get(context, HttpServer.HttpServer))
  })

/** Serves `app` on 127.0.0.1 with an ephemeral port, returning the port and the server's `Stats`. */
export const serveWithStats = <E>(
  app: Effect.Effect<HttpServerResponse, E, Provided>,
  options: Http1ServerOptionsInput = {}
): Effect.Effect<{ readonly port: number; readonly stats: Stats["Service"] }, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      HttpServer.serve(app).pipe(Layer.provideMerge(Http1Server.layer({ host: "127.0.0.1", port: 0, ...options })))
    )
    return { port: running(Context.get(context, HttpServer.HttpServer)).port, stats: Context.get(context, Stats) }
  })

/**
 * Serves `app` in a scope of its own that the test can close to stop the server (it is closed
 * with the test's scope too, should the test end first).
 */
export const serveScoped = <E>(
  app: Effect.Effect<HttpServerResponse, E, Provided>,
  options: Http1ServerOptionsInput = {}
): Effect.Effect<
  { readonly scope: Scope.Closeable; readonly port: number; readonly stats: Stats["Service"] },
  unknown,
  Scope.Scope
> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(
      HttpServer.serve(app).pipe(Layer.provideMerge(Http1Server.layer({ host: "127.0.0.1", port: 0, ...options }))),
      scope
    )
    return {
      scope,
      port: running(Context.get(context, HttpServer.HttpServer)).port,
      stats: Context.get(context, Stats)
    }
  })
