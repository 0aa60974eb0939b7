/**
 * An `HttpRouter` app: routes with path parameters and a JSON body decoded with a Schema.
 *
 *   GET  /            200 text "Hello from the router"
 *   GET  /users/:id   200 JSON user, 404 when there is no such user, 400 when :id is not an integer
 *   POST /users       201 JSON user from a JSON body { "name": "..." }, 400 when the body is invalid
 *   anything else     404 (the router's answer when no route matches)
 *
 *   node examples/router.ts                      # serves on 127.0.0.1:8080 (PORT to change it)
 *   effect-appserver serve examples/router.ts    # the default export is the routes layer
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer, Schema } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Http1Server } from "#effect-appserver"

/** What the API returns. */
export const User = Schema.Struct({ id: Schema.Int, name: Schema.String })
export type User = typeof User.Type

/** What a client sends to create a user: a non-empty name. */
export const NewUser = Schema.Struct({ name: Schema.String.check(Schema.isNonEmpty()) })

// An in-memory store keeps the example short; a real app would use a database service.
const users = new Map<number, User>([[1, { id: 1, name: "Ada" }]])
let nextId = 2

// Path parameters arrive as strings: the Schema turns ":id" into an integer (or fails with a
// SchemaError, which the server answers with 400 Bad Request).
const UserParams = Schema.Struct({ id: Schema.NumberFromString.check(Schema.isInt()) })

const getUser = Effect.gen(function* () {
  const { id } = yield* HttpRouter.schemaPathParams(UserParams)
  const user = users.get(id)
  if (user === undefined) return HttpServerResponse.text(`no user ${id}`, { status: 404 })
  return yield* HttpServerResponse.json(user)
})

const createUser = Effect.gen(function* () {
  // Reads the body, parses it as JSON and decodes it: malformed JSON or a body that does not
  // match the Schema fails the handler, and the server answers 400.
  const { name } = yield* HttpServerRequest.schemaBodyJson(NewUser)
  const user: User = { id: nextId++, name }
  users.set(user.id, user)
  return yield* HttpServerResponse.json(user, { status: 201 })
})

/**
 * The routes, as a Layer that adds them to the `HttpRouter`. A request that no route matches (an
 * unknown path, or a method the path has no route for) gets an empty 404 from the router, and
 * HEAD is answered by the GET route without the body.
 */
const routes = Layer.mergeAll(
  HttpRouter.add("GET", "/", HttpServerResponse.text("Hello from the router")),
  HttpRouter.add("GET", "/users/:id", getUser),
  HttpRouter.add("POST", "/users", createUser)
)

export default routes

if (import.meta.main) {
  const port = Number(process.env.PORT ?? 8080)
  // `HttpRouter.serve` builds the router from the routes and serves it on the `HttpServer` that
  // `Http1Server.layer` provides; it also logs each request and the listening address.
  HttpRouter.serve(routes).pipe(
    Layer.provide(Http1Server.layer({ host: "127.0.0.1", port })),
    Layer.launch,
    NodeRuntime.runMain
  )
}
