/**
 * The demo and conformance app. Its default export is the app, so
 * `effect-appserver serve examples/echo.ts` serves it; `node examples/echo.ts` runs it directly.
 *
 *   GET  /                       200 text/plain "Hello, World!"
 *   POST /echo                   200, the request body with the request's Content-Type
 *   ANY  /inspect                200 JSON { method, url, headers: [[name, value], ...], body: base64 }
 *   GET  /stream?chunks=N&size=B N chunks of B bytes as a stream (no Content-Length)
 *   GET  /bytes?n=N              N bytes with Content-Length
 *   GET  /sleep?ms=N             waits N ms, then 200 "slept"
 *   GET  /fail                   the handler fails with a typed error: 500
 */
import { NodeRuntime } from "@effect/platform-node"
import { Data, Effect, Layer, Stream } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Http1Server, rawHeaders } from "effect-appserver"

class EchoFailure extends Data.TaggedError("EchoFailure")<{ readonly reason: string }> {
  override get message(): string {
    return this.reason
  }
}

const badRequest = (reason: string) => HttpServerResponse.text(reason, { status: 400 })

/** A non-negative integer query parameter no larger than `max`, or undefined. */
const intParam = (params: URLSearchParams, name: string, max: number): number | undefined => {
  const raw = params.get(name)
  if (raw === null || !/^\d{1,10}$/.test(raw)) return undefined
  const value = Number(raw)
  return value <= max ? value : undefined
}

const filler = (size: number): Uint8Array => new Uint8Array(size).fill(0x61)

const app = Effect.gen(function* () {
  const request = yield* HttpServerRequest
  const query = request.url.indexOf("?")
  const path = query === -1 ? request.url : request.url.slice(0, query)
  const params = new URLSearchParams(query === -1 ? "" : request.url.slice(query + 1))
  const method = request.method
  switch (path) {
    case "/":
      if (method !== "GET" && method !== "HEAD") break
      return HttpServerResponse.text("Hello, World!")
    case "/echo": {
      if (method !== "POST") break
      const body = yield* request.arrayBuffer
      return HttpServerResponse.uint8Array(new Uint8Array(body), {
        contentType: request.headers["content-type"] ?? "application/octet-stream"
      })
    }
    case "/inspect": {
      const body = yield* request.arrayBuffer
      return yield* HttpServerResponse.json({
        method,
        url: request.url,
        headers: rawHeaders(request),
        body: Buffer.from(body).toString("base64")
      })
    }
    case "/stream": {
      const chunks = intParam(params, "chunks", 1_000_000)
      const size = intParam(params, "size", 1024 * 1024)
      if (chunks === undefined || size === undefined) return badRequest("chunks and size must be integers")
      const chunk = filler(size)
      return HttpServerResponse.stream(Stream.range(1, chunks).pipe(Stream.map(() => chunk)), {
        contentType: "application/octet-stream"
      })
    }
    case "/bytes": {
      const n = intParam(params, "n", 1024 * 1024 * 1024)
      if (n === undefined) return badRequest("n must be an integer")
      return HttpServerResponse.uint8Array(filler(n), { contentType: "application/octet-stream" })
    }
    case "/sleep": {
      const ms = intParam(params, "ms", 3_600_000)
      if (ms === undefined) return badRequest("ms must be an integer")
      // interruptible, so a client that disconnects stops the wait
      yield* Effect.interruptible(Effect.sleep(ms))
      return HttpServerResponse.text("slept")
    }
    case "/fail":
      return yield* new EchoFailure({ reason: "the /fail route always fails" })
  }
  return HttpServerResponse.text("Not Found", { status: 404 })
})

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
