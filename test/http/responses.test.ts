/**
 * Every HttpServerResponse body kind through the real server, and what the server adds or
 * refuses around them.
 */

import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Readable } from "node:stream"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger, Stream } from "effect"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Http1Server } from "../../src/index.ts"
import { rawExchange, request } from "../helpers/raw.ts"
import { serveApp, serveLayer } from "../helpers/server.ts"

const get = (path: string, ...headers: ReadonlyArray<string>) => request(`GET ${path} HTTP/1.1`, "Host: x", ...headers)

describe("response bodies", () => {
  it.live("a file response (Raw Node stream from HttpPlatform) with its length, and HEAD of it", () =>
    Effect.gen(function* () {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "appserver-"))
      const file = Path.join(dir, "data.txt")
      Fs.writeFileSync(file, "file contents\n".repeat(1000))
      yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true })))
      const { port } = yield* serveApp(HttpServerResponse.file(file))
      const result = yield* rawExchange(port, get("/") + request("HEAD / HTTP/1.1", "Host: x"), {
        responses: 2,
        headIndexes: [1]
      })
      expect(result.responses[0].header("content-length")).toBe("14000")
      expect(result.responses[0].header("content-type")).toBe("text/plain")
      expect(result.responses[0].body.toString()).toBe("file contents\n".repeat(1000))
      expect(result.responses[1].header("content-length")).toBe("14000")
      expect(result.responses[1].body.length).toBe(0)
    })
  )

  it.live("a Raw Node Readable without a length is chunked", () =>
    Effect.gen(function* () {
      const app = Effect.sync(() => HttpServerResponse.raw(Readable.from([Buffer.from("one "), Buffer.from("two")])))
      const { port } = yield* serveApp(app)
      const result = yield* rawExchange(port, get("/"), { responses: 1 })
      expect(result.responses[0].header("transfer-encoding")).toBe("chunked")
      expect(result.responses[0].body.toString()).toBe("one two")
    })
  )

  it.live("Raw bytes, Raw strings and a Raw web ReadableStream", () =>
    Effect.gen(function* () {
      const app = Effect.sync(() =>
        HttpServerResponse.raw(
          new ReadableStream<Uint8Array>({
            start(controller) {
              controller.enqueue(new TextEncoder().encode("web "))
              controller.enqueue(new TextEncoder().encode("stream"))
              controller.close()
            }
          })
        )
      )
      const web = yield* serveApp(app)
      const streamed = yield* rawExchange(web.port, get("/"), { responses: 1 })
      expect(streamed.responses[0].body.toString()).toBe("web stream")

      const bytes = yield* serveApp(Effect.succeed(HttpServerResponse.raw(new Uint8Array([104, 105]))))
      const raw = yield* rawExchange(bytes.port, get("/"), { responses: 1 })
      expect(raw.responses[0].header("content-length")).toBe("2")
      expect(raw.responses[0].body.toString()).toBe("hi")

      const text = yield* serveApp(Effect.succeed(HttpServerResponse.raw("héllo")))
      const textResult = yield* rawExchange(text.port, get("/"), { responses: 1 })
      expect(textResult.responses[0].header("content-length")).toBe("6")
      expect(textResult.responses[0].body.toString()).toBe("héllo")
    })
  )

  it.live("a FormData body is sent as multipart with its boundary", () =>
    Effect.gen(function* () {
      const app = Effect.sync(() => {
        const form = new FormData()
        form.append("field", "value")
        return HttpServerResponse.formData(form)
      })
      const { url } = yield* serveApp(app)
      const response = yield* Effect.promise(() => fetch(url))
      expect(response.headers.get("content-type")).toMatch(/^multipart\/form-data; boundary=/)
      const form = yield* Effect.promise(() => response.formData())
      expect(form.get("field")).toBe("value")
    })
  )

  it.live("a stream with a declared length is sent with Content-Length, not chunked", () =>
    Effect.gen(function* () {
      const app = Effect.succeed(
        HttpServerResponse.stream(Stream.make(new Uint8Array([1, 2]), new Uint8Array([3])), { contentLength: 3 })
      )
      const { port } = yield* serveApp(app)
      const result = yield* rawExchange(port, get("/") + get("/"), { responses: 2 })
      expect(result.responses[0].header("content-length")).toBe("3")
      expect(result.responses[0].header("transfer-encoding")).toBeUndefined()
      expect([...result.responses[1].body]).toEqual([1, 2, 3])
    })
  )

  it.live("a stream longer than its declared length is cut off and the connection dropped", () =>
    Effect.gen(function* () {
      const app = Effect.succeed(
        HttpServerResponse.stream(Stream.make(new Uint8Array([1, 2]), new Uint8Array([3, 4])), { contentLength: 3 })
      )
      const { port } = yield* serveApp(app)
      const result = yield* rawExchange(port, get("/") + get("/"))
      // RFC 9112 §6.3: extra bytes would be read as the next response; nothing after the head's length is sent
      expect(result.closed).toBe(true)
      expect(result.data.toString("latin1")).not.toContain("\u0004")
      expect(result.data.toString("latin1").match(/HTTP\/1\.1 200/g)).toHaveLength(1)
    })
  )

  it.live("a stream that fails after the head aborts the connection instead of ending the body", () =>
    Effect.gen(function* () {
      const app = Effect.succeed(
        HttpServerResponse.stream(
          Stream.make(new Uint8Array([1])).pipe(Stream.concat(Stream.fail(new Error("broken"))))
        )
      )
      const { port } = yield* serveApp(app)
      const result = yield* rawExchange(port, get("/"))
      expect(result.closed).toBe(true)
      // the last-chunk "0\r\n\r\n" is never sent, so the client cannot take the body as complete
      expect(result.data.toString("latin1")).not.toMatch(/\r\n0\r\n\r\n$/)
    })
  )

  it.live("sends every cookie as its own Set-Cookie line", () =>
    Effect.gen(function* () {
      const app = HttpServerResponse.text("ok").pipe(
        HttpServerResponse.setCookies([
          ["a", "1", {}],
          ["b", "2", { httpOnly: true }]
        ])
      )
      const { port } = yield* serveApp(app)
      const result = yield* rawExchange(port, get("/"), { responses: 1 })
      const cookies = result.responses[0].fields.filter(([name]) => name === "set-cookie").map(([, v]) => v)
      expect(cookies).toEqual(["a=1", "b=2; HttpOnly"])
    })
  )

  it.live("sends Latin-1 header values as single bytes and refuses characters beyond Latin-1", () =>
    Effect.gen(function* () {
      const latin = yield* serveApp(Effect.succeed(HttpServerResponse.text("ok", { headers: { "x-name": "café" } })))
      const ok = yield* rawExchange(latin.port, get("/"), { responses: 1 })
      expect(ok.responses[0].header("x-name")).toBe("café")
      const wide = yield* serveApp(Effect.succeed(HttpServerResponse.text("ok", { headers: { "x-name": "日本" } })))
      const refused = yield* rawExchange(wide.port, get("/"), { responses: 1 })
      expect(refused.responses[0].status).toBe(500)
    })
  )

  it.live("refuses invalid statuses and header names with 500", () =>
    Effect.gen(function* () {
      const status = yield* serveApp(Effect.succeed(HttpServerResponse.text("x", { status: 1000 })))
      expect((yield* rawExchange(status.port, get("/"), { responses: 1 })).responses[0].status).toBe(500)
      const interim = yield* serveApp(Effect.succeed(HttpServerResponse.empty({ status: 103 })))
      expect((yield* rawExchange(interim.port, get("/"), { responses: 1 })).responses[0].status).toBe(500)
      const name = yield* serveApp(Effect.succeed(HttpServerResponse.text("x", { headers: { "bad name": "v" } })))
      expect((yield* rawExchange(name.port, get("/"), { responses: 1 })).responses[0].status).toBe(500)
    })
  )

  it.live("lets the app set Date and Server, but not the framing headers", () =>
    Effect.gen(function* () {
      const app = Effect.succeed(
        HttpServerResponse.text("body", {
          headers: { date: "Thu, 01 Jan 1970 00:00:00 GMT", server: "mine", "transfer-encoding": "chunked" }
        })
      )
      const { port } = yield* serveApp(app, { serverName: "" })
      const result = yield* rawExchange(port, get("/") + get("/"), { responses: 2 })
      const first = result.responses[0]
      expect(first.header("date")).toBe("Thu, 01 Jan 1970 00:00:00 GMT")
      expect(first.header("server")).toBe("mine")
      expect(first.header("transfer-encoding")).toBeUndefined()
      expect(first.header("content-length")).toBe("4")
      expect(result.responses[1].body.toString()).toBe("body")
    })
  )

  it.live("logs app failures at error level, and not client errors", () =>
    Effect.gen(function* () {
      const logged: Array<string> = []
      const capture = Logger.make<unknown, void>((options) => {
        logged.push(`${options.logLevel}: ${String(options.message)}`)
      })
      const app = Effect.suspend(() => Effect.fail(new Error("database down")))
      const layer = HttpServer.serve(app).pipe(Layer.provide(Logger.layer([capture])))
      const { port } = yield* serveLayer(layer)
      const result = yield* rawExchange(port, `${get("/")}GET / HTTP/1.1\r\n\r\n`, { responses: 2 })
      expect(result.responses.map((r) => r.status)).toEqual([500, 400])
      yield* Effect.sleep("50 millis")
      const errors = logged.filter((line) => line.startsWith("Error"))
      expect(errors).toHaveLength(1)
      expect(errors[0]).toContain("request failed")
    })
  )
})

describe("failure logs", () => {
  it.live("a client that leaves mid-body is not logged as a server failure", () =>
    Effect.gen(function* () {
      const logged: Array<string> = []
      const capture = Logger.make<unknown, void>((options) => {
        logged.push(`${options.logLevel}: ${String(options.message)}`)
      })
      let failed = false
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        return yield* request.text.pipe(
          Effect.tapError(() =>
            Effect.sync(() => {
              failed = true
            })
          ),
          Effect.map((text) => HttpServerResponse.text(text))
        )
      })
      const layer = HttpServer.serve(app).pipe(Layer.provide(Logger.layer([capture])))
      const { port } = yield* serveLayer(layer)
      // 10 of 100 declared body bytes, then the client goes away
      yield* rawExchange(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789", {
        timeoutMs: 200
      })
      for (let i = 0; i < 40 && !failed; i++) yield* Effect.sleep("25 millis")
      expect(failed).toBe(true)
      yield* Effect.sleep("50 millis")
      expect(logged.filter((line) => line.startsWith("Error"))).toEqual([])
    })
  )
})

describe("Http1Server.layerTest", () => {
  it.live("provides an HttpClient aimed at the server", () =>
    Effect.gen(function* () {
      yield* HttpServer.serveEffect(Effect.succeed(HttpServerResponse.text("from layerTest")))
      const client = yield* HttpClient.HttpClient
      const response = yield* client.get("/")
      expect(response.status).toBe(200)
      expect(yield* response.text).toBe("from layerTest")
    }).pipe(Effect.provide(Http1Server.layerTest))
  )
})
