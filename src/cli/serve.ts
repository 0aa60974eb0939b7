/**
 * `effect-appserver serve <module>[:export]`: loads a module whose default (or named) export is
 * an Effect HTTP app or an `HttpRouter` layer and serves it until SIGINT/SIGTERM.
 *
 * @since 0.1.0
 */

import * as Fs from "node:fs"
import * as Path from "node:path"
import { pathToFileURL } from "node:url"
import type * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Console, Data, Effect, Layer } from "effect"
import type * as Etag from "effect/http/Etag"
import type * as HttpMiddleware from "effect/http/HttpMiddleware"
import type * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as NetAddress from "effect/net/NetAddress"
import type * as Scope from "effect/Scope"
import * as Http1Server from "../http/Http1Server.ts"
import type { Http1ServerOptionsInput, ScgiServerOptionsInput } from "../options.ts"
import { dropPrivileges, type Identity } from "../process/Identity.ts"
import * as SystemdNotify from "../process/SystemdNotify.ts"
import * as ScgiServer from "../scgi/ScgiServer.ts"
import type { Stats } from "../stats/ServerStats.ts"
import { packageVersion } from "./version.ts"

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

/**
 * The app asked for a service while it was being built (its routes, its `HttpApi` groups, a
 * layer it provides to its requests), and nothing provides that service.
 *
 * @since 0.1.0
 * @category errors
 */
export class MissingService extends Data.TaggedError("MissingService")<{
  readonly module: string
  /** The service's key, e.g. `app/UserRepo`. */
  readonly service: string
}> {
  override get message(): string {
    return (
      `${this.module}: the app needs the service ${this.service}, which nothing provides; ` +
      "provide it in the module (Layer.provide for what its layers build with, " +
      "HttpRouter.provideRequest for what its handlers use)"
    )
  }
}

/**
 * What the servers provide to an app besides the request: `Http1Server.layer` and
 * `ScgiServer.layer` give the same.
 *
 * @since 0.1.0
 * @category models
 */
export type ServerServices =
  | HttpServer.HttpServer
  | Stats
  | NodeServices.NodeServices
  | HttpPlatform.HttpPlatform
  | Etag.Generator

/**
 * An app `effect-appserver serve` can run: it needs nothing but the request and what the server
 * provides. Node strips types, so the command cannot see what a module's app requires; a module
 * can have TypeScript check it instead, naming any service left over:
 *
 * ```ts
 * export default app satisfies ServableApp
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type ServableApp = Effect.Effect<
  HttpServerResponse.HttpServerResponse,
  unknown,
  HttpServerRequest | Scope.Scope | ServerServices
>

/**
 * An `HttpRouter` layer `effect-appserver serve` can run: its routes need nothing but the request
 * and what the server provides (`HttpRouter.provideRequest(layer)` provides the rest).
 *
 * ```ts
 * export default routes satisfies ServableRoutes
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type ServableRoutes = Layer.Layer<
  never,
  unknown,
  | HttpRouter.HttpRouter
  | ServerServices
  | HttpRouter.Request<"Requires" | "GlobalRequires", HttpRouter.Provided | ServerServices>
  | HttpRouter.Request<"Error" | "GlobalError", unknown>
>

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

/**
 * The key of the service a defect says is missing. Effect has no typed error for it: looking up
 * a service that is not in the context throws `Error("Service not found: KEY")` (Context.ts),
 * which becomes a defect, so its message is all there is to recognise.
 *
 * @since 0.1.0
 */
export const missingServiceOf = <E>(cause: Cause.Cause<E>): string | undefined => {
  for (const reason of cause.reasons) {
    if (Cause.isDieReason(reason) && reason.defect instanceof Error) {
      const match = /^Service not found: (.+)$/.exec(reason.defect.message)
      if (match !== null) return match[1]
    }
  }
  return undefined
}

/**
 * Serves the app. Building the layer builds the app: an `HttpRouter` layer adds its routes then,
 * and whatever a layer looks up while it builds is looked up at startup. A service missing then
 * is a `MissingService` naming it, before the server reports that it is listening.
 */
export const serveLayer = (
  served: Served,
  module: string,
  middleware?: HttpMiddleware.HttpMiddleware
): Layer.Layer<never, unknown, HttpServer.HttpServer> =>
  (served._tag === "App"
    ? middleware === undefined
      ? HttpServer.serve(served.app)
      : HttpServer.serve(served.app, middleware)
    : HttpRouter.serve(served.routes, {
        disableLogger: true,
        disableListenLog: true,
        ...(middleware === undefined ? {} : { middleware })
      })
  ).pipe(
    Layer.catchCause((cause) => {
      const service = missingServiceOf(cause)
      return Layer.effectDiscard(
        service === undefined ? Effect.failCause(cause) : Effect.fail(new MissingService({ module, service }))
      )
    })
  )

/**
 * The log line a server starts with: what serves what, where, how.
 *
 * @since 0.1.0
 */
export const startupLine = (module: string, protocol: "http" | "scgi", url: string, processes: string): string =>
  `effect-appserver ${packageVersion()} (pid ${process.pid}, Node ${process.version}): serving ${module} over ${protocol} on ${url}, ${processes}`

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
 * ready (`scgi://HOST:PORT` or `unix:PATH` for SCGI). The server binds before the module is
 * loaded: with an `identity`, the process becomes that user in between, so the app never runs
 * with the rights that binding needed (connections that come meanwhile wait, unread).
 *
 * @since 0.1.0
 */
export const serve = (
  module: string,
  how: ServeProtocol,
  identity?: Identity | undefined,
  notifier?: SystemdNotify.Notifier | undefined
) =>
  Effect.gen(function* () {
    const ref = parseModuleRef(module)
    const app = Layer.unwrap(
      Effect.gen(function* () {
        if (identity !== undefined) yield* dropPrivileges(identity)
        return serveLayer(yield* loadServed(ref), ref.path)
      })
    )
    const scheme = how.protocol === "scgi" ? "scgi" : how.options.tls === undefined ? "http" : "https"
    const announce = Layer.effectDiscard(
      Effect.flatMap(HttpServer.HttpServer, (server) => {
        const url = formatListening(server.address, scheme)
        return Effect.andThen(
          Effect.logInfo(startupLine(module, how.protocol, url, "a single process")),
          Effect.andThen(
            Console.log(`listening on ${url}`),
            notifier === undefined ? Effect.void : SystemdNotify.serving(notifier, `serving on ${url}`)
          )
        )
      })
    )
    const server = how.protocol === "scgi" ? ScgiServer.layer(how.options) : Http1Server.layer(how.options)
    yield* Layer.launch(announce.pipe(Layer.provideMerge(app), Layer.provide(server)))
  })
