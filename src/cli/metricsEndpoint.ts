/**
 * `--metrics-port`: an endpoint of its own for Prometheus, `GET /metrics` in the text format,
 * with every metric of this process's registry: the server's (with workers, every worker's, as
 * they reported them to the primary, and the pool's own) and the app's. It listens apart from
 * the app (another port, by default on 127.0.0.1), so the figures are not public by accident and
 * a scrape reaches the primary, which holds the whole pool's, rather than one worker.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Metric } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { PrometheusMetrics } from "effect/observability"
import type * as Scope from "effect/Scope"
import type { BindError, InvalidOptions } from "../errors.ts"
import * as Http1Server from "../http/Http1Server.ts"
import { formatListening } from "./serve.ts"

const app = Effect.flatMap(HttpServerRequest, (request) =>
  request.url === "/metrics" || request.url.startsWith("/metrics?")
    ? Effect.map(PrometheusMetrics.format(), (body) =>
        HttpServerResponse.text(body, { contentType: "text/plain; version=0.0.4; charset=utf-8" })
      )
    : Effect.succeed(HttpServerResponse.text("Not Found: the metrics are at /metrics\n", { status: 404 }))
)

/**
 * Serves the metrics for the rest of the scope. The endpoint's own server keeps its statistics in
 * a registry apart: what it reports is the app's servers, not its scrapes.
 *
 * @since 0.1.0
 */
export const metricsEndpoint = (
  host: string,
  port: number
): Effect.Effect<void, BindError | InvalidOptions, Scope.Scope> =>
  Effect.gen(function* () {
    const server = Http1Server.layerServer({ host, port }).pipe(
      Layer.provide(Layer.succeed(Metric.MetricRegistry, new Map()))
    )
    const context = yield* Layer.build(HttpServer.serve(app).pipe(Layer.provideMerge(server)))
    const address = formatListening(Context.get(context, HttpServer.HttpServer).address)
    yield* Effect.logInfo(`metrics for Prometheus on ${address}/metrics`)
  })
