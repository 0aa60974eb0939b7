/**
 * The smallest program: one response for every request.
 *
 *   node examples/hello.ts                      # serves on 127.0.0.1:8080 (PORT to change it)
 *   effect-appserver serve examples/hello.ts    # or let the command line serve the default export
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Http1Server } from "#effect-appserver"

// An HTTP app is an Effect that produces a response. This one needs nothing from the request, so
// it is a constant; apps that do read it `yield* HttpServerRequest`.
const app = Effect.succeed(HttpServerResponse.text("Hello, World!"))

export default app

if (import.meta.main) {
  const port = Number(process.env.PORT ?? 8080)
  // `HttpServer.serve(app)` is a Layer that needs an `HttpServer`; `Http1Server.layer` provides one
  // (binding the socket when the layer is built). `Layer.launch` keeps it running until
  // `NodeRuntime.runMain` interrupts it on Ctrl-C, which closes the listener and connections.
  HttpServer.serve(app).pipe(
    HttpServer.withLogAddress,
    Layer.provide(Http1Server.layer({ host: "127.0.0.1", port })),
    Layer.launch,
    NodeRuntime.runMain
  )
}
