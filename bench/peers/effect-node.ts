/**
 * Reference peer: the same echo app (examples/echo.ts, its WebSocket echo at `GET /ws` included)
 * served by Effect's own NodeHttpServer, i.e. what a user of @effect/platform-node gets today. No request-logger middleware, so both
 * Effect servers do the same work per request.
 *
 * Usage: node bench/peers/effect-node.ts --host 127.0.0.1 --port 8080
 */

import * as Http from "node:http"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import app from "../../examples/echo.ts"
import { parseListenArgs } from "./listenArgs.ts"

const { host, port } = parseListenArgs()

/**
 * Prints the ready line only after `layer` is built: building the serve layer is what attaches the
 * request handler, so a client that connects as soon as it sees the line gets an answer.
 */
const withReadyLine = <A, E, R>(layer: Layer.Layer<A, E, R>) =>
  Layer.effectDiscard(
    HttpServer.addressFormattedWith((url) => Effect.sync(() => console.log(`listening on ${url}`)))
  ).pipe(Layer.provideMerge(layer))

HttpServer.serve(app).pipe(
  withReadyLine,
  // keepAliveTimeout: see bench/peers/node-http.ts, idle connections must survive the memory probe.
  Layer.provide(NodeHttpServer.layer(() => Http.createServer({ keepAliveTimeout: 120_000 }), { host, port })),
  Layer.launch,
  NodeRuntime.runMain
)
