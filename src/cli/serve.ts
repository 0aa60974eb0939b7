/**
 * `effect-appserver serve <module>[:export]`: loads a module whose default (or named) export is
 * an Effect HTTP app or an `HttpRouter` layer and serves it until SIGINT/SIGTERM.
 *
 * @since 0.1.0
 */

import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import { Console, Data, Effect, Layer } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as NetAddress from "effect/net/NetAddress"
import * as Http1Server from "../http/Http1Server.ts"
import type { Http1ServerOptionsInput, ScgiServerOptionsInput } from "../options.ts"
import * as ScgiServer from "../scgi/ScgiServer.ts"

/**
 * The module could not be loaded or does not export an app.
 *
 * @since 0.1.0
 * @category errors
 */
export class AppLoadError extends Data.TaggedError("AppLoadError")<{
  readonly module: string
  readonly reason: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `cannot load ${this.module}: ${this.reason}`
  }
}

type App = Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, HttpServerRequest>
type Routes = Layer.Layer<never, unknown, HttpRouter.HttpRouter>

/**
 * What a module's export can be.
 *
 * @since 0.1.0
 */
export type Served = { readonly _tag: "App"; readonly app: App } | { readonly _tag: "Routes"; readonly routes: Routes }

/**
 * Which module, and which of its exports, to serve.
 *
 * @since 0.1.0
 * @category models
 */
export interface ModuleRef {
  /** The module's path as given, without the export. */
  readonly path: string
  /** The export to serve: `default` unless `path:name` named another. */
  readonly exportName: string
}

const identifier = /^[\p{ID_Start}$_][\p{ID_Continue}$\u200c\u200d]*$/u

/**
 * Splits `app.ts:ApiLive` into the module and the export. A path may itself contain ':' (rare on
 * Unix), so only the last ':' splits, only when what follows is a JavaScript identifier, and only
 * when the whole argument is not an existing file: `dir:v2/app.ts` and a file named `app:v2`
 * stay paths.
 *
 * @since 0.1.0
 */
export const parseModuleRef = (argument: string): ModuleRef => {
  const colon = argument.lastIndexOf(":")
  const name = argument.slice(colon + 1)
  if (colon <= 0 || !identifier.test(name) || Fs.existsSync(argument)) return { path: argument, exportName: "default" }
  return { path: argument.slice(0, colon), exportName: name }
}

/**
 * Imports the module (a path, relative to the working directory) and classifies the export.
 *
 * @since 0.1.0
 */
export const loadServed = (ref: ModuleRef): Effect.Effect<Served, AppLoadError> =>
  Effect.tryPromise({
    try: () => import(pathToFileURL(Path.resolve(ref.path)).href) as Promise<Record<string, unknown>>,
    catch: (cause) =>
      new AppLoadError({ module: ref.path, reason: cause instanceof Error ? cause.message : String(cause), cause })
  }).pipe(
    Effect.flatMap((exports): Effect.Effect<Served, AppLoadError> => {
      const what = ref.exportName === "default" ? "its default export" : `its export ${ref.exportName}`
      if (!(ref.exportName in exports)) {
        const names = Object.keys(exports).filter((name) => name !== "default")
        const available = names.length === 0 ? "it has no named exports" : `its exports: ${names.join(", ")}`
        const reason =
          ref.exportName === "default"
            ? `it has no default export (serve a named one with ${ref.path}:NAME; ${available})`
            : `it has no export named ${ref.exportName} (${available})`
        return Effect.fail(new AppLoadError({ module: ref.path, reason }))
      }
      const value = exports[ref.exportName]
      // The export's requirements are types, which Node strips: these are the shapes we serve.
      if (Effect.isEffect(value)) {
        const app = Effect.flatMap(value as Effect.Effect<unknown, unknown, HttpServerRequest>, (response) =>
          HttpServerResponse.isHttpServerResponse(response)
            ? Effect.succeed(response)
            : Effect.die(new TypeError(`${ref.path}: the app produced ${typeof response}, not an HttpServerResponse`))
        )
        return Effect.succeed({ _tag: "App", app })
      }
      if (Layer.isLayer(value)) return Effect.succeed({ _tag: "Routes", routes: value as Routes })
      return Effect.fail(
        new AppLoadError({
          module: ref.path,
          reason: `${what} is neither an Effect HTTP app nor an HttpRouter layer`
        })
      )
    })
  )

/**
 * The URL a client reaches the server at.
 *
 * @since 0.1.0
 */
export const formatListening = (address: NetAddress.SocketAddress, scheme = "http"): string =>
  address._tag === "UnixPathAddress"
    ? `unix:${address.path}`
    : HttpServer.formatAddress(address).replace(/^http:/, `${scheme}:`)

const serveLayer = (served: Served): Layer.Layer<never, unknown, HttpServer.HttpServer> =>
  served._tag === "App"
    ? HttpServer.serve(served.app)
    : HttpRouter.serve(served.routes, { disableLogger: true, disableListenLog: true })

/**
 * Which server to run, with its options.
 *
 * @since 0.1.0
 */
export type ServeProtocol =
  | { readonly protocol: "http"; readonly options: Http1ServerOptionsInput }
  | { readonly protocol: "scgi"; readonly options: ScgiServerOptionsInput }

/**
 * Serves the module's app with the HTTP/1.1 or the SCGI server, printing `listening on URL` once
 * ready (`scgi://HOST:PORT` or `unix:PATH` for SCGI).
 *
 * @since 0.1.0
 */
export const serve = (module: string, how: ServeProtocol) =>
  Effect.gen(function* () {
    const ref = parseModuleRef(module)
    const served = yield* loadServed(ref)
    const scheme = how.protocol === "scgi" ? "scgi" : how.options.tls === undefined ? "http" : "https"
    const announce = Layer.effectDiscard(
      Effect.flatMap(HttpServer.HttpServer, (server) =>
        Console.log(`listening on ${formatListening(server.address, scheme)}`)
      )
    )
    const server = how.protocol === "scgi" ? ScgiServer.layer(how.options) : Http1Server.layer(how.options)
    yield* Layer.launch(announce.pipe(Layer.provideMerge(serveLayer(served)), Layer.provide(server)))
  })
