/**
 * Three apps on one server, each mounted at a path prefix by `PathDispatcher` (the role of
 * cheroot's `WSGIPathInfoDispatcher`):
 *
 *   GET /                   200 text from the home app, which takes what no other prefix takes
 *   GET /blog, /blog/...    200 text from the blog app, which sees its URL relative to /blog
 *                           (/blog/posts/1?draft becomes /posts/1?draft) and reads its prefix
 *   GET /api/v1/users/:id   200 JSON from an HttpRouter mounted at /api/v1, routed on /users/:id;
 *                           404 when there is no such user
 *   GET /api/v1/nowhere     404 (the router's answer when no route matches)
 *   GET /blogger            the home app: a prefix matches only at a segment boundary
 *
 *   node examples/dispatch.ts                      # serves on 127.0.0.1:8080 (PORT to change it)
 *   effect-appserver serve examples/dispatch.ts    # or let the command line serve the default export
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer, Scope } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Http1Server, PathDispatcher } from "#effect-appserver"

// The root app. Mounted at "/", it sees every URL unchanged.
const home = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  return HttpServerResponse.text(`home: ${request.url}`)
})

// An app that does not know where it is mounted: it reads its own URL (relative to the prefix)
// and builds links with the prefix, so it works unchanged at "/blog", at "/" or nested deeper.
const blog = Effect.gen(function* () {
  const request = yield* HttpServerRequest.HttpServerRequest
  const prefix = yield* PathDispatcher.mountPrefix
  return HttpServerResponse.text(`blog: ${request.url} (mounted at ${prefix}, first post at ${prefix}/posts/1)`)
})

const users = new Map([[1, { id: 1, name: "Ada" }]])

// An HttpRouter's routes are layers. Its paths are written relative to the mount point: the
// router matches them against the URL the dispatcher gives it.
const apiRoutes = Layer.mergeAll(
  HttpRouter.add("GET", "/", HttpServerResponse.text("api v1")),
  HttpRouter.add(
    "GET",
    "/users/:id",
    Effect.gen(function* () {
      const { id } = yield* HttpRouter.params
      const user = users.get(Number(id))
      if (user === undefined) return HttpServerResponse.empty({ status: 404 })
      return yield* HttpServerResponse.json(user)
    })
  )
)

/**
 * Builds the composed app. `HttpRouter.toHttpEffect` turns the routes into an app; it builds their
 * layers, whose resources live in the Scope. `PathDispatcher.make` fails with `InvalidMount` when a
 * prefix is not a valid mount point.
 */
export const makeApp = Effect.gen(function* () {
  const api = yield* HttpRouter.toHttpEffect(apiRoutes)
  return yield* PathDispatcher.make({ "/": home, "/blog": blog, "/api/v1": api })
})

// Built once, when the module loads, so that each request only dispatches. Both steps are
// synchronous, hence `Effect.runSync` (an invalid prefix would throw here, at startup). The
// router's Scope is never closed: it lives as long as the module, that is, the process. A program
// that owns its lifecycle can instead build the app inside its server layer:
// `Layer.unwrap(Effect.map(makeApp, (app) => HttpServer.serve(app)))`.
const app = Effect.runSync(makeApp.pipe(Scope.provide(Scope.makeUnsafe())))

export default app

if (import.meta.main) {
  const port = Number(process.env.PORT ?? 8080)
  HttpServer.serve(app).pipe(
    HttpServer.withLogAddress,
    Layer.provide(Http1Server.layer({ host: "127.0.0.1", port })),
    Layer.launch,
    NodeRuntime.runMain
  )
}
