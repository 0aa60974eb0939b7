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
 *   GET  /ws                     a WebSocket that echoes every message (text as text, binary as binary)
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Data, Effect, Layer, Stream } from "effect"
import type * as Headers from "effect/http/Headers"
import type { HttpBodyError } from "effect/http/HttpBody"
import * as HttpServer from "effect/http/HttpServer"
import type { HttpServerError } from "effect/http/HttpServerError"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Socket from "effect/socket/Socket"
import { Http1Server, rawHeaders } from "#effect-appserver"

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

// Responses are immutable values: the constant one is built once.
const hello = HttpServerResponse.text("Hello, World!")
const notFound = HttpServerResponse.text("Not Found", { status: 404 })

/**
 * Echoes every message of an upgraded socket back as it came (text as text, binary as binary)
 * until the reader fails: the peer closed (a `SocketCloseError` with its code) or went away.
 */
export const echoSocket = (socket: Socket.Socket): Effect.Effect<never, Socket.SocketError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { pull } = yield* socket.reader
      const writer = yield* socket.writer
      return yield* Effect.forever(Effect.flatMap(pull, writer.writeAll))
    })
  )

/**
 * Upgrades the request (a WebSocket, or the protocol its Upgrade field names, with `headers` on
 * the `101`) and echoes until the peer closes; the response is never sent.
 */
export const echoUpgrade = (
  request: HttpServerRequest,
  headers?: Headers.Input
): Effect.Effect<HttpServerResponse.HttpServerResponse, HttpServerError> =>
  Effect.flatMap(request.upgradeWith({ headers }), (socket) =>
    Effect.as(
      Effect.catchTag(echoSocket(socket), "SocketError", () => Effect.void),
      HttpServerResponse.empty()
    )
  )

const route = (
  request: HttpServerRequest
): Effect.Effect<HttpServerResponse.HttpServerResponse, EchoFailure | HttpServerError | HttpBodyError> => {
  const url = request.url
  const query = url.indexOf("?")
  const path = query === -1 ? url : url.slice(0, query)
  const params = () => new URLSearchParams(query === -1 ? "" : url.slice(query + 1))
  const method = request.method
  switch (path) {
    case "/":
      return method === "GET" || method === "HEAD" ? Effect.succeed(hello) : Effect.succeed(notFound)
    case "/echo":
      if (method !== "POST") return Effect.succeed(notFound)
      return Effect.map(request.arrayBuffer, (body) =>
        HttpServerResponse.uint8Array(new Uint8Array(body), {
          contentType: request.headers["content-type"] ?? "application/octet-stream"
        })
      )
    case "/inspect":
      return Effect.flatMap(request.arrayBuffer, (body) =>
        HttpServerResponse.json({
          method,
          url,
          headers: rawHeaders(request),
          body: Buffer.from(body).toString("base64")
        })
      )
    case "/stream": {
      if (method !== "GET" && method !== "HEAD") return Effect.succeed(notFound)
      const chunks = intParam(params(), "chunks", 1_000_000)
      const size = intParam(params(), "size", 1024 * 1024)
      if (chunks === undefined || size === undefined)
        return Effect.succeed(badRequest("chunks and size must be integers"))
      const chunk = filler(size)
      return Effect.succeed(
        HttpServerResponse.stream(Stream.range(1, chunks).pipe(Stream.map(() => chunk)), {
          contentType: "application/octet-stream"
        })
      )
    }
    case "/bytes": {
      if (method !== "GET" && method !== "HEAD") return Effect.succeed(notFound)
      const n = intParam(params(), "n", 1024 * 1024 * 1024)
      if (n === undefined) return Effect.succeed(badRequest("n must be an integer"))
      return Effect.succeed(HttpServerResponse.uint8Array(filler(n), { contentType: "application/octet-stream" }))
    }
    case "/sleep": {
      if (method !== "GET" && method !== "HEAD") return Effect.succeed(notFound)
      const ms = intParam(params(), "ms", 3_600_000)
      if (ms === undefined) return Effect.succeed(badRequest("ms must be an integer"))
      // interruptible, so a client that disconnects stops the wait
      return Effect.as(Effect.interruptible(Effect.sleep(ms)), HttpServerResponse.text("slept"))
    }
    case "/fail":
      return Effect.fail(new EchoFailure({ reason: "the /fail route always fails" }))
    case "/ws":
      return method === "GET" ? echoUpgrade(request) : Effect.succeed(notFound)
  }
  return Effect.succeed(notFound)
}

const app = Effect.flatMap(HttpServerRequest, route)

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
