/**
 * Conformance, apps and routing: `HttpRouter` and `HttpApi` programs, the mapping of failures to
 * statuses, status texts, redirects, tracing and what the app sees of its request, on
 * `NodeHttpServer.layerTest` (the reference) and on `Http1Server.layerTest` alike.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Option, Schema, Stream } from "effect"
import * as HttpBody from "effect/http/HttpBody"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientResponse from "effect/http/HttpClientResponse"
import * as HttpMiddleware from "effect/http/HttpMiddleware"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerRespondable from "effect/http/HttpServerRespondable"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { HttpApiClient } from "effect/http-api"
import * as HttpApiError from "effect/http-api/HttpApiError"
import * as Tracer from "effect/Tracer"
import { Api, ApiRoutes, UserNotFound } from "../../examples/api.ts"
import { rawExchange, request } from "../helpers/raw.ts"
import { on, portOf, serveRoutes, serverPort, servers } from "./servers.ts"

const Note = Schema.Struct({ id: Schema.Number, text: Schema.String })
const NoteId = Schema.Struct({ id: Schema.FiniteFromString })
const noteJson = HttpServerResponse.schemaJson(Note)
const noteById = Effect.flatMap(HttpRouter.schemaParams(NoteId), ({ id }) => noteJson({ id, text: `note ${id}` }))

/** Answers with the URL the app sees. */
const echoUrl = Effect.map(HttpServerRequest, (request) => HttpServerResponse.text(request.url))

/** A raw GET (Connection: close) and its one response, for what a fetch client cannot show. */
const rawGet = (path: string, ...headers: ReadonlyArray<string>) =>
  Effect.flatMap(serverPort, (port) =>
    Effect.map(
      rawExchange(port, request(`GET ${path} HTTP/1.1`, "Host: 127.0.0.1", "Connection: close", ...headers)),
      (result) => result.responses[0]
    )
  )

class Teapot extends Schema.Error<Teapot>("Teapot")({ _tag: Schema.tag("Teapot"), brand: Schema.String }) {
  [HttpServerRespondable.symbol]() {
    return HttpServerResponse.schemaJson(Teapot)(this, { status: 418 })
  }
}

class Unmapped extends Schema.TaggedError<Unmapped>()("Unmapped", {}) {}

for (const [name, layer, another] of servers) {
  const test = on(layer)

  describe(`${name}: HttpRouter apps`, () => {
    it.live("decodes path params with a Schema and answers with Schema-encoded JSON; bad params are a 400", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(HttpRouter.add("GET", "/notes/:id", noteById))
          const note = yield* HttpClient.get("/notes/7").pipe(Effect.flatMap(HttpClientResponse.schemaBodyJson(Note)))
          expect(note).toEqual({ id: 7, text: "note 7" })
          expect((yield* HttpClient.get("/notes/seven")).status).toBe(400)
        })
      )
    )

    it.live("schemaJson decodes a JSON body with the app's reviver; an unparsable body is a 400", () =>
      test(
        Effect.gen(function* () {
          const Body = Schema.Struct({ body: Schema.Struct({ word: Schema.String }) })
          yield* serveRoutes(
            HttpRouter.add(
              "POST",
              "/words",
              Effect.map(
                HttpRouter.schemaJson(Body, { reviver: (key, value) => (key === "word" ? "revived" : value) }),
                (decoded) => HttpServerResponse.jsonUnsafe(decoded.body)
              )
            )
          )
          const ok = yield* HttpClient.post("/words", { body: HttpBody.jsonUnsafe({ word: "sent" }) })
          expect(yield* ok.json).toEqual({ word: "revived" })
          const bad = yield* HttpClient.post("/words", { body: HttpBody.text("{not json", "application/json") })
          expect(bad.status).toBe(400)
        })
      )
    )

    it.live("a prefixed router strips its prefix from the url the app sees, query included", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(HttpRouter.use((router) => router.prefixed("/mounted").add("*", "*", echoUrl)))
          const seen = (path: string) => Effect.flatMap(HttpClient.get(path), (response) => response.text)
          expect(yield* seen("/mounted/a/b")).toBe("/a/b")
          expect(yield* seen("/mounted")).toBe("/")
          expect(yield* seen("/mounted/")).toBe("/")
          expect(yield* seen("/mounted?x=1")).toBe("/?x=1")
          expect((yield* HttpClient.get("/mountedx/a")).status).toBe(404)
        })
      )
    )

    it.live("prefixed routes take path params, and the prefix itself routes to its root", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.use(
              Effect.fnUntraced(function* (root) {
                const notes = root.prefixed("/notes")
                yield* notes.add("GET", "/:id", noteById)
                yield* notes.addAll([HttpRouter.route("GET", "/", HttpServerResponse.text("all notes"))])
              })
            )
          )
          const note = yield* HttpClient.get("/notes/3").pipe(Effect.flatMap(HttpClientResponse.schemaBodyJson(Note)))
          expect(note).toEqual({ id: 3, text: "note 3" })
          expect(yield* Effect.flatMap(HttpClient.get("/notes"), (response) => response.text)).toBe("all notes")
        })
      )
    )

    it.live("RouterConfig's maxParamLength turns a longer param into a 404", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(HttpRouter.add("GET", "/:code", HttpServerResponse.empty()))
          expect((yield* HttpClient.get("/abcd")).status).toBe(204)
          expect((yield* HttpClient.get("/abcde")).status).toBe(404)
        }).pipe(Effect.provide(Layer.succeed(HttpRouter.RouterConfig)({ maxParamLength: 4 })))
      )
    )

    it.live("maps failures: 404 for no route, 500 for a defect or an unmapped error, Respondables their own", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.addAll([
              HttpRouter.route("GET", "/defect", Effect.die("boom")),
              HttpRouter.route("GET", "/unmapped", Effect.fail(new Unmapped())),
              HttpRouter.route("GET", "/teapot", Effect.fail(new Teapot({ brand: "china" }))),
              HttpRouter.route("GET", "/bad", Effect.fail(new HttpApiError.BadRequest({})))
            ])
          )
          const status = (path: string) => Effect.map(HttpClient.get(path), (response) => response.status)
          expect(yield* status("/nowhere")).toBe(404)
          expect(yield* status("/defect")).toBe(500)
          expect(yield* status("/unmapped")).toBe(500)
          expect(yield* status("/bad")).toBe(400)
          const teapot = yield* HttpClient.get("/teapot")
          expect(teapot.status).toBe(418)
          expect(yield* HttpClientResponse.schemaBodyJson(Teapot)(teapot)).toEqual(new Teapot({ brand: "china" }))
        })
      )
    )

    it.live("sends the status text the app sets, an empty one included, and the standard one otherwise", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.addAll([
              HttpRouter.route("GET", "/custom", HttpServerResponse.empty({ status: 201, statusText: "Stored" })),
              HttpRouter.route("GET", "/blank", HttpServerResponse.empty({ status: 201, statusText: "" })),
              HttpRouter.route("GET", "/standard", HttpServerResponse.empty({ status: 201 }))
            ])
          )
          expect((yield* rawGet("/custom")).reason).toBe("Stored")
          expect((yield* rawGet("/blank")).reason).toBe("")
          expect((yield* rawGet("/standard")).reason).toBe("Created")
        })
      )
    )

    it.live("redirects with the status and Location the app gives", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.addAll([
              HttpRouter.route("GET", "/old", HttpServerResponse.redirect("/new")),
              HttpRouter.route("GET", "/moved", HttpServerResponse.redirect("/new", { status: 301 }))
            ])
          )
          const found = yield* rawGet("/old")
          expect([found.status, found.header("location")]).toEqual([302, "/new"])
          const moved = yield* rawGet("/moved")
          expect([moved.status, moved.header("location")]).toEqual([301, "/new"])
        })
      )
    )

    it.live("html bodies from a string, an Effect template and a Stream template", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.addAll([
              HttpRouter.route("GET", "/plain", HttpServerResponse.html("<p>plain</p>")),
              HttpRouter.route("GET", "/effect", HttpServerResponse.html`<p>${Effect.succeed("from effect")}</p>`),
              HttpRouter.route(
                "GET",
                "/stream",
                HttpServerResponse.htmlStream`<ul>${Stream.make("<li>", 42, "</li>")}</ul>`
              )
            ])
          )
          const page = (path: string) =>
            Effect.flatMap(HttpClient.get(path), (response) =>
              Effect.map(response.text, (text) => [response.headers["content-type"], text])
            )
          expect(yield* page("/plain")).toEqual(["text/html", "<p>plain</p>"])
          expect(yield* page("/effect")).toEqual(["text/html", "<p>from effect</p>"])
          expect(yield* page("/stream")).toEqual(["text/html", "<ul><li>42</li></ul>"])
        })
      )
    )

    it.live("continues the client's trace: the request span's parent is the client's span", () =>
      test(
        Effect.gen(function* () {
          const routes = HttpRouter.add(
            "GET",
            "/trace",
            Effect.map(Effect.currentSpan, (span) =>
              HttpServerResponse.jsonUnsafe({
                parent: Option.match(span.parent, { onNone: () => null, onSome: (parent) => parent.spanId })
              })
            )
          )
          // Effect traces requests only when the server is given a middleware (the logger, by
          // default): with the logger off, a pass-through one.
          yield* Layer.build(
            HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true, middleware: (app) => app })
          )
          const clientSpan = yield* Effect.makeSpan("client side")
          const tracer = Tracer.make({ span: () => clientSpan })
          const body = yield* HttpClient.get("/trace").pipe(
            Effect.flatMap((response) => response.json),
            Effect.provideService(Tracer.Tracer, tracer),
            Effect.withSpan("caller")
          )
          expect(body).toEqual({ parent: clientSpan.spanId })
        })
      )
    )

    it.live("an uninterruptible route completes although its fiber is interrupted", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.add(
              "GET",
              "/steady",
              Effect.gen(function* () {
                const fiber = Fiber.getCurrent()!
                setTimeout(() => fiber.interruptUnsafe(fiber.id), 5)
                yield* Effect.sleep(40)
                return HttpServerResponse.text("finished")
              }),
              { uninterruptible: true }
            )
          )
          const response = yield* HttpClient.get("/steady")
          expect([response.status, yield* response.text]).toEqual([200, "finished"])
        })
      )
    )

    it.live("HttpRouter.middleware can change the response; the server's middleware runs around sending it", () =>
      test(
        Effect.gen(function* () {
          const sent: Array<string> = []
          const tagged = HttpRouter.middleware((app) =>
            Effect.map(app, (response) => HttpServerResponse.setHeader(response, "x-tagged", "yes"))
          ).layer
          // It runs around the sending: a response that was sent succeeds, the router's 404 fails.
          const watch = HttpMiddleware.make((app) =>
            Effect.onExit(app, (exit) =>
              Effect.sync(() => sent.push(exit._tag === "Success" ? `sent ${exit.value.status}` : "failed"))
            )
          )
          const routes = HttpRouter.add("GET", "/tagged", HttpServerResponse.text("body")).pipe(Layer.provide(tagged))
          yield* Layer.build(
            HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true, middleware: watch })
          )
          const response = yield* HttpClient.get("/tagged")
          expect(response.headers["x-tagged"]).toBe("yes")
          expect((yield* HttpClient.get("/none")).status).toBe(404)
          expect(sent).toEqual(["sent 200", "failed"])
        })
      )
    )

    it.live("the app sees its method, url, originalUrl, headers, cookies and peer; repeated fields joined or not", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.add(
              "*",
              "/inspect",
              Effect.map(HttpServerRequest, (request) =>
                HttpServerResponse.jsonUnsafe({
                  method: request.method,
                  url: request.url,
                  originalUrl: request.originalUrl,
                  list: request.headers["x-list"],
                  agent: request.headers["user-agent"],
                  type: request.headers["content-type"],
                  host: request.headers.host,
                  cookie: request.headers.cookie,
                  cookies: request.cookies,
                  remote: Option.getOrNull(request.remoteAddress)
                })
              )
            )
          )
          const response = yield* rawGet(
            "/inspect?q=1&q=2",
            "X-List: a",
            "Cookie: one=1",
            "X-List: b",
            "Cookie: two=2; three=3",
            "User-Agent: first",
            "Content-Type: text/plain",
            "User-Agent: second",
            "Content-Type: text/html"
          )
          const seen = JSON.parse(response.body.toString())
          // NodeHttpServer.layerTest listens on "::", so it sees the IPv4-mapped form.
          expect(seen.remote).toMatch(/^(::ffff:)?127\.0\.0\.1$/)
          expect({ ...seen, remote: undefined }).toEqual({
            method: "GET",
            url: "/inspect?q=1&q=2",
            originalUrl: "http://127.0.0.1/inspect?q=1&q=2",
            // A list field's lines are joined; of a single-valued field the first line counts.
            list: "a, b",
            agent: "first",
            type: "text/plain",
            host: "127.0.0.1",
            cookie: "one=1; two=2; three=3",
            cookies: { one: "1", two: "2", three: "3" },
            remote: undefined
          })
        })
      )
    )
  })

  describe(`${name}: HttpApi`, () => {
    it.live("serves an HttpApi to its derived client: decoded params and payloads, typed errors, 201", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(ApiRoutes)
          const client = yield* HttpApiClient.make(Api)
          expect(yield* client.users.getUser({ params: { id: 1 } })).toEqual({ id: 1, name: "Ada" })
          const missing = yield* Effect.flip(client.users.getUser({ params: { id: 9 } }))
          expect(missing).toEqual(new UserNotFound({ id: 9 }))
          const created = yield* client.users.createUser({ payload: { name: "Grace" } })
          expect(created).toEqual({ id: 2, name: "Grace" })
          const raw = yield* HttpClient.post("/users", { body: HttpBody.jsonUnsafe({ name: "Edsger" }) })
          expect(raw.status).toBe(201)
          expect((yield* HttpClient.get("/users/abc")).status).toBe(400)
        })
      )
    )
  })

  describe(`${name}: serving`, () => {
    it.live("released before the app it serves, with the client's connection idle, the server stops at once", () =>
      Effect.gen(function* () {
        // Upstream's shape: the app is served in the test's scope, which outlives the server's.
        yield* Effect.gen(function* () {
          yield* serveRoutes(HttpRouter.add("GET", "/", HttpServerResponse.text("up")))
          expect(yield* Effect.flatMap(HttpClient.get("/"), (response) => response.text)).toBe("up")
        }).pipe(Effect.provide(layer), Effect.timeout("1 second"))
      }).pipe(Effect.scoped)
    )

    it.live("two servers in one program each serve their own routes", () =>
      Effect.gen(function* () {
        const serveOn = (path: "/first" | "/second") =>
          Effect.map(
            Layer.build(
              HttpRouter.serve(HttpRouter.add("GET", path, HttpServerResponse.text(path)), {
                disableLogger: true,
                disableListenLog: true
              }).pipe(Layer.provideMerge(another()))
            ),
            (context) => portOf(Context.get(context, HttpServer.HttpServer))
          )
        const first = yield* serveOn("/first")
        const second = yield* serveOn("/second")
        const status = (port: number, path: string) =>
          Effect.promise(() => fetch(`http://127.0.0.1:${port}${path}`).then((response) => response.status))
        expect([yield* status(first, "/first"), yield* status(first, "/second")]).toEqual([200, 404])
        expect([yield* status(second, "/first"), yield* status(second, "/second")]).toEqual([404, 200])
      }).pipe(Effect.scoped)
    )

    it.live("serves a bare app with HttpServer.serveEffect", () =>
      test(
        Effect.gen(function* () {
          yield* HttpServer.serveEffect()(echoUrl)
          expect(yield* Effect.flatMap(HttpClient.get("/any/path?x"), (response) => response.text)).toBe("/any/path?x")
        })
      )
    )
  })
}
