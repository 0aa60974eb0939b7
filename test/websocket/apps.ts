/**
 * The WebSocket apps the tests serve, written against Effect's `Socket` API only (the echo of
 * examples/echo.ts), so the same handler runs on `NodeHttpServer` and on `Http1Server`.
 */
import { Effect } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { echoUpgrade } from "../../examples/echo.ts"
import type { Stats } from "../../src/index.ts"
import { waitFor } from "../helpers/wait.ts"

export { default as echoApp, echoSocket, echoUpgrade } from "../../examples/echo.ts"

/** Upgrades whatever the request asks for and echoes until the peer closes. */
export const echoHandler = Effect.flatMap(HttpServerRequest, (request) => echoUpgrade(request))

/** `GET /ws` upgrades and echoes; `GET /` answers "ok". */
export const echoRoutes = HttpRouter.addAll([
  HttpRouter.route("GET", "/ws", echoHandler),
  HttpRouter.route("GET", "/", HttpServerResponse.text("ok"))
])

/** Whether the server's open connections fall to 0 within `timeoutMs`. */
export const allClosed = (stats: Stats["Service"], timeoutMs = 2_000): Effect.Effect<boolean> =>
  waitFor(
    Effect.map(stats.snapshot, (snapshot) => snapshot.openConnections === 0),
    timeoutMs
  )
