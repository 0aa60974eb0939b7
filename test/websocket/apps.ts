/**
 * The WebSocket apps the tests serve, written against Effect's `Socket` API only, so the same
 * handler runs on `NodeHttpServer` and on `Http1Server`.
 */
import { Effect } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Socket from "effect/socket/Socket"

/**
 * Echoes every message back as it came (text as text, binary as binary) until the reader fails:
 * the peer closed (a `SocketCloseError` with its code) or went away.
 */
export const echoSocket = (socket: Socket.Socket): Effect.Effect<never, Socket.SocketError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const { pull } = yield* socket.reader
      const writer = yield* socket.writer
      return yield* Effect.forever(Effect.flatMap(pull, writer.writeAll))
    })
  )

/** Upgrades and echoes; the peer's close ends the handler with an empty response (never sent). */
export const echoHandler = Effect.gen(function* () {
  const request = yield* HttpServerRequest
  const socket = yield* request.upgrade
  yield* Effect.catchTag(echoSocket(socket), "SocketError", () => Effect.void)
  return HttpServerResponse.empty()
})

/** `GET /ws` upgrades and echoes; `GET /` answers "ok". */
export const echoRoutes = HttpRouter.addAll([
  HttpRouter.route("GET", "/ws", echoHandler),
  HttpRouter.route("GET", "/", HttpServerResponse.text("ok"))
])

/** The `SocketCloseError` code of a socket failure, or undefined for another failure. */
export const closeCodeOf = (error: Socket.SocketError): number | undefined =>
  error.reason._tag === "SocketCloseError" ? error.reason.code : undefined

/** A plain app (for `HttpServer.serve`): `/ws` upgrades and echoes, anything else answers "ok". */
export const echoApp = Effect.flatMap(HttpServerRequest, (request) =>
  request.url === "/ws" ? echoHandler : Effect.succeed(HttpServerResponse.text("ok"))
)
