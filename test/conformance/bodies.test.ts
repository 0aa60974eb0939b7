/**
 * Conformance, request and response bodies: multipart (persisted and streamed, with its limits),
 * url-encoded forms, JSON, `MaxBodySize`, streaming both ways, empty bodies, HEAD and
 * `Expect: 100-continue`, on `NodeHttpServer.layerTest` (the reference) and
 * `Http1Server.layerTest` alike.
 */
import { describe, expect, it } from "@effect/vitest"
import { ByteSize, Deferred, Effect, FileSystem, Schema, Stream } from "effect"
import * as HttpBody from "effect/http/HttpBody"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import type * as HttpClientResponse from "effect/http/HttpClientResponse"
import * as HttpIncomingMessage from "effect/http/HttpIncomingMessage"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Multipart from "effect/http/Multipart"
import * as UrlParams from "effect/http/UrlParams"
import { halfOpenClient, parseResponses, rawExchange, request } from "../helpers/raw.ts"
import { waitUntil } from "../helpers/wait.ts"
import { on, serveRoutes, serverPort, servers } from "./servers.ts"

const encoder = new TextEncoder()

/** A form with one text file and one field, as browsers send them. */
const uploadForm = (file = "file body", field = "field value"): FormData => {
  const form = new FormData()
  form.append("upload", new Blob([file], { type: "text/plain" }), "notes.txt")
  form.append("comment", field)
  return form
}

const postForm = (path: string, form: FormData) => HttpClient.post(path, { body: HttpBody.formData(form) })

const statusOf = <E, R>(response: Effect.Effect<HttpClientResponse.HttpClientResponse, E, R>) =>
  Effect.map(response, (r) => r.status)

const textOf = <E, R>(response: Effect.Effect<HttpClientResponse.HttpClientResponse, E, R>) =>
  Effect.flatMap(response, (r) => r.text)

/**
 * A route that reads the multipart body and answers with the reason of the `MultipartError` it
 * got ("ok" without one), and the same read left to Effect's error mapping at /upload/status.
 */
const multipartRoutes = HttpRouter.addAll([
  HttpRouter.route(
    "POST",
    "/upload",
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.multipart).pipe(
      Effect.as(HttpServerResponse.text("ok")),
      Effect.catchTag("MultipartError", (error) => Effect.succeed(HttpServerResponse.text(error.reason._tag)))
    )
  ),
  HttpRouter.route(
    "POST",
    "/upload/status",
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.multipart).pipe(
      Effect.as(HttpServerResponse.text("ok"))
    )
  )
])

const withField = (form: FormData, name: string, value: string): FormData => {
  form.append(name, value)
  return form
}

/** Multipart limits: how a test sets one, a form within it and one beyond it, and the failure. */
const multipartLimits: ReadonlyArray<{
  readonly name: string
  readonly set: <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  readonly within: () => FormData
  readonly beyond: () => FormData
  readonly reason: Multipart.MultipartError["reason"]["_tag"]
}> = [
  {
    // Effect's parser counts a part's header lines too.
    name: "Multipart.MaxFileSize",
    set: Effect.provideService(Multipart.MaxFileSize, ByteSize.bytes(1000)),
    within: () => uploadForm("x".repeat(100)),
    beyond: () => uploadForm("x".repeat(5000)),
    reason: "FileTooLarge"
  },
  {
    name: "Multipart.MaxFieldSize",
    set: Effect.provideService(Multipart.MaxFieldSize, ByteSize.bytes(100)),
    within: () => uploadForm("", "y".repeat(50)),
    beyond: () => uploadForm("", "y".repeat(150)),
    reason: "FieldTooLarge"
  },
  {
    name: "Multipart.MaxParts",
    set: Effect.provideService(Multipart.MaxParts, 2),
    within: () => uploadForm(),
    beyond: () => withField(uploadForm(), "third", "part"),
    reason: "TooManyParts"
  },
  {
    name: "HttpIncomingMessage.MaxBodySize",
    set: Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(1000)),
    within: () => uploadForm("x".repeat(100)),
    beyond: () => uploadForm("x".repeat(5000)),
    reason: "BodyTooLarge"
  }
]

/** Reads the whole body as text, answering with the reason of a failure to read it. */
const readText = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.text).pipe(
  Effect.map((text) => HttpServerResponse.text(`read ${text.length}`)),
  Effect.catchTag("HttpServerError", (error) =>
    Effect.succeed(
      HttpServerResponse.text(error.reason._tag === "RequestParseError" ? String(error.reason.reason) : "other")
    )
  )
)

for (const [name, layer] of servers) {
  const test = on(layer)

  describe(`${name}: multipart`, () => {
    it.live("persists a file part under its file name with its type; fields are strings", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.add(
              "POST",
              "/upload",
              Effect.gen(function* () {
                const request = yield* HttpServerRequest.HttpServerRequest
                const parts = yield* request.multipart
                const files = parts.upload as ReadonlyArray<Multipart.PersistedFile>
                const fs = yield* FileSystem.FileSystem
                return HttpServerResponse.jsonUnsafe({
                  files: files.map((file) => ({ key: file.key, name: file.name, type: file.contentType })),
                  pathEnd: files[0].path.endsWith("/notes.txt"),
                  content: yield* fs.readFileString(files[0].path),
                  comment: parts.comment
                })
              })
            )
          )
          const response = yield* postForm("/upload", uploadForm())
          expect(yield* response.json).toEqual({
            files: [{ key: "upload", name: "notes.txt", type: "text/plain" }],
            pathEnd: true,
            content: "file body",
            comment: "field value"
          })
        })
      )
    )

    it.live("schemaBodyForm decodes persisted files and fields with a Schema", () =>
      test(
        Effect.gen(function* () {
          const Form = Schema.Struct({ upload: Multipart.FilesSchema, comment: Schema.String })
          yield* serveRoutes(
            HttpRouter.add(
              "POST",
              "/form",
              Effect.map(HttpServerRequest.schemaBodyForm(Form), (form) =>
                HttpServerResponse.text(`${form.upload.length} file, ${form.comment}`)
              )
            )
          )
          expect(yield* textOf(postForm("/form", uploadForm()))).toBe("1 file, field value")
        })
      )
    )

    it.live("multipartStream yields the parts in order, a file's content as a stream", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.add(
              "POST",
              "/parts",
              Effect.gen(function* () {
                const request = yield* HttpServerRequest.HttpServerRequest
                const parts = yield* request.multipartStream.pipe(
                  Stream.mapEffect((part) =>
                    part._tag === "Field"
                      ? Effect.succeed(`field ${part.key}=${part.value}`)
                      : Effect.map(
                          Stream.mkString(Stream.decodeText(part.content)),
                          (content) => `file ${part.key} ${part.name} ${part.contentType}: ${content}`
                        )
                  ),
                  Stream.runCollect
                )
                return HttpServerResponse.jsonUnsafe(parts)
              })
            )
          )
          const response = yield* postForm("/parts", withField(uploadForm("x".repeat(100_000)), "last", "field"))
          expect(yield* response.json).toEqual([
            `file upload notes.txt text/plain: ${"x".repeat(100_000)}`,
            "field comment=field value",
            "field last=field"
          ])
        })
      )
    )

    for (const limit of multipartLimits) {
      it.live(`${limit.name}: a form beyond it fails with ${limit.reason}, a 413`, () =>
        test(
          Effect.gen(function* () {
            yield* serveRoutes(multipartRoutes).pipe(limit.set)
            expect(yield* textOf(postForm("/upload", limit.within()))).toBe("ok")
            expect(yield* textOf(postForm("/upload", limit.beyond()))).toBe(limit.reason)
            expect(yield* statusOf(postForm("/upload/status", limit.beyond()))).toBe(413)
          })
        )
      )
    }

    it.live("a multipart body without its boundary fails to parse: a 400", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(multipartRoutes)
          const broken = HttpClientRequest.post("/upload/status").pipe(
            HttpClientRequest.bodyText("--x\r\nnot a part", "multipart/form-data")
          )
          expect(yield* statusOf(HttpClient.execute(broken))).toBe(400)
        })
      )
    )
  })

  describe(`${name}: forms and JSON`, () => {
    it.live("urlParamsBody: repeated keys, '+' and percent escapes, and a leading '?' kept as data", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.add(
              "POST",
              "/form",
              Effect.map(
                Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.urlParamsBody),
                (params) => HttpServerResponse.jsonUnsafe(params.params)
              )
            )
          )
          const form = (body: string) =>
            HttpClient.execute(
              HttpClientRequest.post("/form").pipe(
                HttpClientRequest.bodyText(body, "application/x-www-form-urlencoded")
              )
            ).pipe(Effect.flatMap((response) => response.json))
          expect(yield* form("a=1&b=two+words&a=%C3%A9")).toEqual([
            ["a", "1"],
            ["b", "two words"],
            ["a", "é"]
          ])
          expect(yield* form("?q=1")).toEqual([["?q", "1"]])
        })
      )
    )

    it.live("schemaBodyUrlParams decodes a form; a request without one is a SchemaError", () =>
      test(
        Effect.gen(function* () {
          const Form = Schema.Struct({ id: Schema.FiniteFromString, title: Schema.String })
          const decode = Effect.map(HttpServerRequest.schemaBodyUrlParams(Form), (form) =>
            HttpServerResponse.jsonUnsafe(form)
          )
          yield* serveRoutes(
            HttpRouter.addAll([
              HttpRouter.route("POST", "/todo", decode),
              HttpRouter.route(
                "GET",
                "/todo",
                decode.pipe(
                  Effect.catchTag("SchemaError", () =>
                    Effect.succeed(HttpServerResponse.text("no form", { status: 422 }))
                  )
                )
              )
            ])
          )
          const todo = yield* HttpClientRequest.post("/todo").pipe(
            HttpClientRequest.bodyUrlParams({ id: "4", title: "write tests" }),
            HttpClient.execute,
            Effect.flatMap((response) => response.json)
          )
          expect(todo).toEqual({ id: 4, title: "write tests" })
          expect(yield* statusOf(HttpClient.get("/todo"))).toBe(422)
        })
      )
    )

    it.live("schemaBodyFormJson reads JSON from a form field (with a reviver), a file part or a url-encoded form", () =>
      test(
        Effect.gen(function* () {
          const Payload = Schema.Struct({ word: Schema.String })
          yield* serveRoutes(
            HttpRouter.addAll([
              HttpRouter.route(
                "POST",
                "/revived",
                Effect.map(
                  HttpServerRequest.schemaBodyFormJson(Payload, {
                    reviver: (key, value) => (key === "word" ? value.toUpperCase() : value)
                  })("json"),
                  (payload) => HttpServerResponse.text(payload.word)
                )
              ),
              HttpRouter.route(
                "POST",
                "/plain",
                Effect.map(HttpServerRequest.schemaBodyFormJson(Payload)("json"), (payload) =>
                  HttpServerResponse.text(payload.word)
                )
              )
            ])
          )
          const json = JSON.stringify({ word: "hello" })
          const fieldForm = new FormData()
          fieldForm.append("json", json)
          expect(yield* textOf(postForm("/revived", fieldForm))).toBe("HELLO")
          const fileForm = new FormData()
          fileForm.append("json", new Blob([json], { type: "application/json" }), "payload.json")
          expect(yield* textOf(postForm("/plain", fileForm))).toBe("hello")
          const encoded = HttpClient.post("/plain", { body: HttpBody.urlParams(UrlParams.fromInput({ json })) })
          expect(yield* textOf(encoded)).toBe("hello")
        })
      )
    )

    it.live("an empty JSON body reads as null", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.add(
              "POST",
              "/json",
              Effect.map(
                Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.json),
                (json) => HttpServerResponse.text(String(json))
              )
            )
          )
          expect(yield* textOf(HttpClient.post("/json"))).toBe("null")
        })
      )
    )

    it.live("HttpIncomingMessage.MaxBodySize: a larger body fails with BodyTooLarge, a 413; a body at it is read", () =>
      test(
        Effect.gen(function* () {
          const limited = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
            Effect.provideService(effect, HttpIncomingMessage.MaxBodySize, ByteSize.bytes(10))
          yield* serveRoutes(
            HttpRouter.addAll([
              HttpRouter.route("POST", "/text", limited(readText)),
              HttpRouter.route(
                "POST",
                "/json",
                limited(
                  Effect.as(
                    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => request.json),
                    HttpServerResponse.empty()
                  )
                )
              )
            ])
          )
          const post = (path: string, body: string) => HttpClient.post(path, { body: HttpBody.text(body) })
          expect(yield* textOf(post("/text", "0123456789"))).toBe("read 10")
          expect(yield* textOf(post("/text", "0123456789a"))).toBe("BodyTooLarge")
          expect(yield* statusOf(post("/json", JSON.stringify({ long: "enough to exceed" })))).toBe(413)
        })
      )
    )
  })

  describe(`${name}: streaming`, () => {
    it.live("request.stream delivers an upload as it arrives: an echo answers each piece before the next is sent", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.add(
              "POST",
              "/echo",
              Effect.map(HttpServerRequest.HttpServerRequest, (request) => HttpServerResponse.stream(request.stream))
            )
          )
          const port = yield* serverPort
          const client = yield* halfOpenClient(
            { port },
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nfirst\r\n"
          )
          const received = () => Buffer.concat(client.chunks).toString("latin1")
          expect(yield* waitUntil(() => received().includes("first"), 2_000)).toBe(true)
          client.socket.write("6\r\nsecond\r\n0\r\n\r\n")
          expect(yield* waitUntil(() => client.ended, 2_000)).toBe(true)
          const [response] = parseResponses(Buffer.concat(client.chunks), [], true)
          expect(response.body.toString()).toBe("firstsecond")
        })
      )
    )

    it.live("a streamed response is sent as it is produced, not when the stream ends", () =>
      test(
        Effect.gen(function* () {
          const release = yield* Deferred.make<void>()
          const body = Stream.concat(
            Stream.make("head of the stream "),
            Stream.fromEffect(Effect.as(Deferred.await(release), "and its tail"))
          ).pipe(Stream.encodeText)
          yield* serveRoutes(HttpRouter.add("GET", "/live", HttpServerResponse.stream(body)))
          const port = yield* serverPort
          const client = yield* halfOpenClient({ port }, request("GET /live HTTP/1.1", "Host: x", "Connection: close"))
          const received = () => Buffer.concat(client.chunks).toString("latin1")
          expect(yield* waitUntil(() => received().includes("head of the stream"), 2_000)).toBe(true)
          expect(received()).not.toContain("and its tail")
          yield* Deferred.succeed(release, undefined)
          expect(yield* waitUntil(() => client.ended, 2_000)).toBe(true)
          const [response] = parseResponses(Buffer.concat(client.chunks), [], true)
          expect(response.header("transfer-encoding")).toBe("chunked")
          expect(response.body.toString()).toBe("head of the stream and its tail")
        })
      )
    )

    it.live("a streamed upload is read whole by request.stream", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.add(
              "POST",
              "/count",
              Effect.gen(function* () {
                const request = yield* HttpServerRequest.HttpServerRequest
                const sizes = yield* Stream.runFold(
                  request.stream,
                  () => 0,
                  (total, chunk) => total + chunk.length
                )
                return HttpServerResponse.text(String(sizes))
              })
            )
          )
          const pieces = Stream.range(1, 50).pipe(Stream.map(() => encoder.encode("z".repeat(10_000))))
          const response = yield* HttpClient.post("/count", {
            body: HttpBody.stream(pieces, "application/octet-stream")
          })
          expect(yield* response.text).toBe("500000")
        })
      )
    )

    it.live("a stream that fails after the head leaves the client with a broken body, not a whole one", () =>
      test(
        Effect.gen(function* () {
          const failing = Stream.concat(Stream.make(encoder.encode("partial")), Stream.fail("producer broke"))
          yield* serveRoutes(HttpRouter.add("GET", "/broken", HttpServerResponse.stream(failing)))
          // NodeHttpServer destroys the socket before the head and first chunk leave it; this
          // server sends them, then aborts the connection: either way no complete response.
          const read = yield* Effect.exit(Effect.flatMap(HttpClient.get("/broken"), (response) => response.text))
          expect(read._tag).toBe("Failure")
        })
      )
    )
  })

  describe(`${name}: empty bodies, HEAD and 100-continue`, () => {
    it.live("empty responses: 204 without framing headers, other statuses with an empty body", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.addAll([
              HttpRouter.route("GET", "/none", HttpServerResponse.empty()),
              HttpRouter.route("GET", "/ok", HttpServerResponse.empty({ status: 200 })),
              HttpRouter.route("GET", "/text", HttpServerResponse.text(""))
            ])
          )
          const port = yield* serverPort
          const result = yield* rawExchange(
            port,
            ["/none", "/ok", "/text"].map((path) => request(`GET ${path} HTTP/1.1`, "Host: x")),
            { responses: 3 }
          )
          // RFC 9110 §8.6, RFC 9112 §6.1: a 204 has neither Content-Length nor Transfer-Encoding.
          // An empty 200 is framed either way (NodeHttpServer sends an empty chunked body for
          // `empty`, this server Content-Length: 0).
          const framing = (r: (typeof result.responses)[number]) =>
            r.header("content-length") ?? r.header("transfer-encoding")
          expect(result.responses.map((r) => [r.status, r.body.length])).toEqual([
            [204, 0],
            [200, 0],
            [200, 0]
          ])
          expect(framing(result.responses[0])).toBeUndefined()
          expect(result.responses[2].header("content-length")).toBe("0")
        })
      )
    )

    it.live("HEAD gets a GET route's status and headers, Content-Length included, and no body", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.addAll([
              HttpRouter.route("GET", "/text", HttpServerResponse.text("twelve bytes")),
              HttpRouter.route("GET", "/stream", HttpServerResponse.stream(Stream.make(encoder.encode("streamed"))))
            ])
          )
          const port = yield* serverPort
          const result = yield* rawExchange(
            port,
            [
              request("HEAD /text HTTP/1.1", "Host: x"),
              request("HEAD /stream HTTP/1.1", "Host: x"),
              "GET /text HTTP/1.1\r\nHost: x\r\n\r\n"
            ],
            { responses: 3, headIndexes: [0, 1] }
          )
          const [text, stream, after] = result.responses
          expect([text.status, text.header("content-length"), text.header("content-type")]).toEqual([
            200,
            "12",
            "text/plain"
          ])
          expect(stream.status).toBe(200)
          // Nothing of the HEAD bodies was sent: the next response on the connection parses whole.
          expect(after.body.toString()).toBe("twelve bytes")
        })
      )
    )

    it.live("Expect: 100-continue gets 100 Continue once the app reads the body, and none when it does not", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.addAll([
              HttpRouter.route("POST", "/read", readText),
              HttpRouter.route("POST", "/ignore", HttpServerResponse.text("not read", { status: 403 }))
            ])
          )
          const port = yield* serverPort
          const head = (path: string) =>
            request(
              `POST ${path} HTTP/1.1`,
              "Host: x",
              "Expect: 100-continue",
              "Content-Length: 5",
              "Connection: close"
            )
          const reader = yield* halfOpenClient({ port }, head("/read"))
          const received = () => Buffer.concat(reader.chunks).toString("latin1")
          expect(yield* waitUntil(() => received().startsWith("HTTP/1.1 100 Continue\r\n\r\n"), 2_000)).toBe(true)
          reader.socket.write("hello")
          expect(yield* waitUntil(() => reader.ended, 2_000)).toBe(true)
          expect(parseResponses(Buffer.concat(reader.chunks), [], true)[0].body.toString()).toBe("read 5")

          const ignorer = yield* halfOpenClient({ port }, head("/ignore"))
          expect(yield* waitUntil(() => ignorer.chunks.length > 0, 2_000)).toBe(true)
          const answer = Buffer.concat(ignorer.chunks).toString("latin1")
          expect(answer).toMatch(/^HTTP\/1\.1 403 /)
          expect(answer).not.toContain("100 Continue")
        })
      )
    )
  })
}
