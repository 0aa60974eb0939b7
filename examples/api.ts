/**
 * A typed `HttpApi`: one definition gives the server's routing and decoding, its typed errors with
 * their HTTP statuses, and a derived client.
 *
 *   GET  /users/:id   200 User, or 404 UserNotFound (400 when :id is not an integer)
 *   POST /users       201 User from a JSON body { "name": "..." } (400 when it does not decode)
 *
 *   node examples/api.ts                      # serves on 127.0.0.1:8080 (PORT to change it)
 *   effect-appserver serve examples/api.ts    # the default export is the routes layer
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer, Schema } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import { HttpApi, HttpApiBuilder, HttpApiClient, HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "effect/http-api"
import { Http1Server } from "#effect-appserver"

// --- The definition: shared by the server and its clients -----------------------------------

export const User = Schema.Struct({ id: Schema.Int, name: Schema.String })
export type User = typeof User.Type

export const NewUser = Schema.Struct({ name: Schema.String.check(Schema.isNonEmpty()) })

/** A typed error: the server encodes it as JSON with status 404, the client decodes it back. */
export class UserNotFound extends Schema.TaggedError<UserNotFound>()(
  "UserNotFound",
  { id: Schema.Int },
  { httpApiStatus: 404 }
) {}

export const Api = HttpApi.make("UsersApi").add(
  HttpApiGroup.make("users").add(
    // Path parameters are strings on the wire; `Schema.Int` is decoded from them.
    HttpApiEndpoint.get("getUser", "/users/:id", {
      params: { id: Schema.Int },
      success: User,
      error: UserNotFound
    }),
    HttpApiEndpoint.post("createUser", "/users", {
      payload: NewUser,
      success: User.pipe(HttpApiSchema.status(201))
    })
  )
)

// --- The server: handlers for every endpoint, checked against the definition ----------------

const UsersLive = HttpApiBuilder.group(Api, "users", (handlers) =>
  Effect.gen(function* () {
    // State made when the layer is built, so every server (and every test) starts afresh.
    const users = new Map<number, User>([[1, { id: 1, name: "Ada" }]])
    let nextId = 2
    return handlers
      .handle("getUser", ({ params }) => {
        const user = users.get(params.id)
        return user === undefined ? Effect.fail(new UserNotFound({ id: params.id })) : Effect.succeed(user)
      })
      .handle("createUser", ({ payload }) =>
        Effect.sync(() => {
          const user: User = { id: nextId++, name: payload.name }
          users.set(user.id, user)
          return user
        })
      )
  })
)

/** The API's routes with their handlers, as a Layer for the `HttpRouter`. */
export const ApiRoutes = HttpApiBuilder.layer(Api).pipe(Layer.provide(UsersLive))

/**
 * The API served on whatever `HttpServer` is provided (it also needs the platform services that
 * `Http1Server.layer` includes); it logs each request and the listening address.
 */
export const ApiServer = HttpRouter.serve(ApiRoutes)

export default ApiRoutes

// --- The client: derived from the same definition --------------------------------------------

/**
 * A client whose methods mirror the endpoints: `client.users.getUser({ params: { id: 1 } })`
 * succeeds with a `User` or fails with `UserNotFound`. It needs an `HttpClient`
 * (e.g. `FetchHttpClient.layer`).
 */
export const makeClient = (baseUrl: string) => HttpApiClient.make(Api, { baseUrl })

if (import.meta.main) {
  const port = Number(process.env.PORT ?? 8080)
  ApiServer.pipe(Layer.provide(Http1Server.layer({ host: "127.0.0.1", port })), Layer.launch, NodeRuntime.runMain)
}
