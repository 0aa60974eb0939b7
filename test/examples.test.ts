/**
 * The example apps (hello, router, api) served by the real server over real sockets.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as HttpRouter from "effect/http/HttpRouter"
import { HttpApiClient } from "effect/http-api"
import { Api, ApiRoutes, makeClient, UserNotFound } from "../examples/api.ts"
import hello from "../examples/hello.ts"
import routes, { User } from "../examples/router.ts"
import { rawExchange, request } from "./helpers/raw.ts"
import { serveApp, serveLayer } from "./helpers/server.ts"

const get = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, type: response.headers.get("content-type"), body: await response.text() }
  })

const postJson = (url: string, body: string) =>
  get(url, { method: "POST", body, headers: { "content-type": "application/json" } })

// Served like the examples serve themselves, without the request log.
const quiet = { disableLogger: true, disableListenLog: true } as const
const serveRouter = serveLayer(HttpRouter.serve(routes, quiet))
// HttpApi routes need the platform services too. `Http1Server.layer` includes the same
// `layerHttpServices` (built once, memoized); providing it here makes the layer's type ask for
// nothing but the `HttpServer`, as `serveLayer` wants.
const serveApi = serveLayer(HttpRouter.serve(ApiRoutes, quiet).pipe(Layer.provide(NodeHttpServer.layerHttpServices)))

describe("examples/hello.ts", () => {
  it.live("answers every request with Hello, World!", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApp(hello)
      for (const path of ["/", "/anything?x=1"]) {
        const response = yield* get(`${url}${path}`)
        expect(response).toEqual({ status: 200, type: "text/plain", body: "Hello, World!" })
      }
    })
  )
})

describe("examples/router.ts", () => {
  it.live("serves GET / as text", () =>
    Effect.gen(function* () {
      const { url } = yield* serveRouter
      expect(yield* get(`${url}/`)).toEqual({ status: 200, type: "text/plain", body: "Hello from the router" })
    })
  )

  it.live("decodes the :id path parameter", () =>
    Effect.gen(function* () {
      const { url } = yield* serveRouter
      const found = yield* get(`${url}/users/1`)
      expect(found.status).toBe(200)
      expect(found.type).toBe("application/json")
      expect(JSON.parse(found.body)).toEqual({ id: 1, name: "Ada" })
      expect((yield* get(`${url}/users/999`)).status).toBe(404)
      // not an integer: the path Schema fails and the server answers 400
      expect((yield* get(`${url}/users/abc`)).status).toBe(400)
      expect((yield* get(`${url}/users/1.5`)).status).toBe(400)
    })
  )

  it.live("creates a user from a valid JSON body, then serves it", () =>
    Effect.gen(function* () {
      const { url } = yield* serveRouter
      const created = yield* postJson(`${url}/users`, JSON.stringify({ name: "Grace" }))
      expect(created.status).toBe(201)
      const user = Schema.decodeUnknownSync(User)(JSON.parse(created.body))
      expect(user.name).toBe("Grace")
      expect(JSON.parse((yield* get(`${url}/users/${user.id}`)).body)).toEqual(user)
    })
  )

  it.live("answers 400 to a body that is not JSON or does not match the Schema", () =>
    Effect.gen(function* () {
      const { url } = yield* serveRouter
      for (const body of ['{"name":""}', '{"name":42}', "{}", '{"name":', "not json"]) {
        const response = yield* postJson(`${url}/users`, body)
        expect({ body, status: response.status }).toEqual({ body, status: 400 })
      }
    })
  )

  it.live("answers 404 to unknown paths and to methods a path has no route for", () =>
    Effect.gen(function* () {
      const { url } = yield* serveRouter
      expect(yield* get(`${url}/nowhere`)).toEqual({ status: 404, type: null, body: "" })
      expect((yield* get(`${url}/users/1`, { method: "DELETE" })).status).toBe(404)
      expect((yield* get(`${url}/`, { method: "PUT" })).status).toBe(404)
      expect((yield* get(`${url}/users`)).status).toBe(404)
    })
  )

  it.live("answers HEAD with the GET route's headers and no body", () =>
    Effect.gen(function* () {
      const { port } = yield* serveRouter
      const result = yield* rawExchange(port, request("HEAD / HTTP/1.1", "Host: x"), {
        responses: 1,
        headIndexes: [0]
      })
      expect(result.responses[0].status).toBe(200)
      expect(result.responses[0].header("content-length")).toBe(String("Hello from the router".length))
      expect(result.responses[0].body.length).toBe(0)
    })
  )
})

describe("examples/api.ts through its derived HttpApiClient", () => {
  it.live("gets and creates users", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApi
      const client = yield* HttpApiClient.make(Api, { baseUrl: url })
      expect(yield* client.users.getUser({ params: { id: 1 } })).toEqual({ id: 1, name: "Ada" })
      const created = yield* client.users.createUser({ payload: { name: "Grace" } })
      expect(created).toEqual({ id: 2, name: "Grace" })
      expect(yield* client.users.getUser({ params: { id: 2 } })).toEqual(created)
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.live("delivers UserNotFound as the typed error, sent with status 404", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApi
      const client = yield* makeClient(url)
      const error = yield* Effect.flip(client.users.getUser({ params: { id: 404 } }))
      expect(error._tag).toBe("UserNotFound")
      expect(error).toBeInstanceOf(UserNotFound)
      expect(error).toMatchObject({ id: 404 })
      // on the wire: the status from the error's annotation and the encoded error
      const raw = yield* get(`${url}/users/404`)
      expect(raw.status).toBe(404)
      expect(JSON.parse(raw.body)).toEqual({ _tag: "UserNotFound", id: 404 })
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )

  it.live("answers 400 to a request that does not match the endpoint's schemas", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApi
      for (const body of ['{"name":""}', '{"name":1}', "{}", "not json"]) {
        const response = yield* postJson(`${url}/users`, body)
        expect({ body, status: response.status }).toEqual({ body, status: 400 })
      }
      expect((yield* get(`${url}/users/abc`)).status).toBe(400)
      // nothing was created by the refused requests
      expect((yield* get(`${url}/users/2`)).status).toBe(404)
    })
  )

  it.live("refuses to send a payload that violates the schema on the client side", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApi
      const client = yield* makeClient(url)
      const error = yield* Effect.flip(client.users.createUser({ payload: { name: "" } }))
      expect(error._tag).toBe("SchemaError")
    }).pipe(Effect.provide(FetchHttpClient.layer))
  )
})
