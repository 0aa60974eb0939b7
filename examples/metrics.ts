/**
 * Server metrics for Prometheus: the server registers its statistics as Effect Metrics named
 * after OpenTelemetry's HTTP server conventions (`http.server.request.duration` by method and
 * status class, `http.server.active_requests`, and `appserver.*`: connections by state, bytes,
 * timeouts, protocol errors, the request queue), and Effect's Prometheus formatter serves them,
 * together with the app's own metrics.
 *
 *   GET /          200 text "Hello, World!"
 *   GET /metrics   200 the Prometheus text format, e.g.
 *                  appserver_requests_received{server="127.0.0.1:8080"} 3
 *                  http_server_request_duration_count{server="127.0.0.1:8080",http_request_method="GET",http_response_status_class="2xx"} 2
 *
 *   node examples/metrics.ts                      # serves on 127.0.0.1:8080 (PORT to change it)
 *   effect-appserver serve examples/metrics.ts    # the default export is the routes layer
 *
 * The command line can also serve them apart from the app, with every worker's figures when it
 * runs workers: `effect-appserver serve app.ts --workers 4 --metrics-port 9100`.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { PrometheusMetrics } from "effect/observability"
import { Http1Server } from "#effect-appserver"

/**
 * Every metric registered in the context, in the Prometheus exposition format. The server's own
 * are there as long as the server runs, read from its counters at the time of the scrape.
 */
export const metrics = Effect.map(PrometheusMetrics.format(), (body) =>
  HttpServerResponse.text(body, { contentType: "text/plain; version=0.0.4; charset=utf-8" })
)

/** The routes: an app at `/` and the metrics at `/metrics` for Prometheus to scrape. */
const routes = Layer.mergeAll(
  HttpRouter.add("GET", "/", HttpServerResponse.text("Hello, World!")),
  HttpRouter.add("GET", "/metrics", metrics)
)

export default routes

if (import.meta.main) {
  const port = Number(process.env.PORT ?? 8080)
  HttpRouter.serve(routes).pipe(
    Layer.provide(Http1Server.layer({ host: "127.0.0.1", port })),
    Layer.launch,
    NodeRuntime.runMain
  )
}
