/**
 * The echo app (examples/echo.ts) behind nginx over SCGI: nginx speaks HTTP to clients and SCGI
 * to this process, which serves the app with `ScgiServer.layer`.
 *
 *   node examples/scgi-nginx.ts                              # SCGI on 127.0.0.1:4000
 *   PORT=4001 node examples/scgi-nginx.ts                    # another port
 *   SCGI_SOCKET=/run/app/scgi.sock node examples/scgi-nginx.ts   # a unix socket instead
 *
 * The same from the command line, with any app module:
 *
 *   npx effect-appserver serve examples/echo.ts --protocol scgi --port 4000
 *   npx effect-appserver serve examples/echo.ts --protocol scgi --socket /run/app/scgi.sock
 *
 * nginx, e.g. in /etc/nginx/sites-enabled/app (scgi_params ships with nginx; it passes the method,
 * REQUEST_URI, CONTENT_TYPE, REMOTE_ADDR and so on; request headers go as HTTP_* variables):
 *
 * ```nginx
 * server {
 *   listen 80;
 *   client_max_body_size 64m;
 *   location / {
 *     include scgi_params;
 *     scgi_pass 127.0.0.1:4000;
 *   }
 * }
 * ```
 *
 * With a unix socket: `scgi_pass unix:/run/app/scgi.sock;` (nginx's worker user needs write access
 * to the socket: see the `socketMode` option, `--socket-mode` on the command line).
 *
 * SCGI carries one request per connection, so nginx opens an upstream connection per request;
 * a unix socket makes that cheapest.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Effect, Layer } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import * as NetAddress from "effect/net/NetAddress"
import { ScgiServer } from "#effect-appserver"
import echo from "./echo.ts"

/** Where to listen: SCGI_SOCKET (a unix socket path), else PORT on 127.0.0.1 (default 4000). */
export const optionsFromEnv = (env: NodeJS.ProcessEnv = process.env): ScgiServer.ScgiServerOptionsInput =>
  env.SCGI_SOCKET !== undefined && env.SCGI_SOCKET !== ""
    ? { path: env.SCGI_SOCKET }
    : { host: "127.0.0.1", port: Number(env.PORT ?? 4000) }

/** Logs where nginx's scgi_pass should point. */
const logAddress = Effect.gen(function* () {
  const { address } = yield* HttpServer.HttpServer
  yield* Effect.log(
    address._tag === "UnixPathAddress"
      ? `SCGI listening on unix:${address.path}`
      : `SCGI listening on ${NetAddress.formatUrlUnsafe(address, "scgi")}`
  )
})

/**
 * The echo app served over SCGI with the given options (port 0 picks a free port). The layer
 * also provides the `HttpServer`, whose address says where it listens.
 */
export const layer = (options: ScgiServer.ScgiServerOptionsInput) =>
  Layer.mergeAll(HttpServer.serve(echo), Layer.effectDiscard(logAddress)).pipe(
    Layer.provideMerge(ScgiServer.layer(options))
  )

if (import.meta.main) {
  // Runs until Ctrl-C (or SIGTERM), which stops gracefully: requests in progress finish first.
  layer(optionsFromEnv()).pipe(Layer.launch, NodeRuntime.runMain)
}
