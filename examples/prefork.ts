/**
 * A prefork pool as a program: two to four worker processes serve `examples/echo.ts` on one port.
 * The primary loads no app code; each worker loads the module and serves it with the HTTP/1.1
 * server on the socket it inherits. DISPATCH=primary makes the primary accept and hand each
 * connection to the worker with the fewest (for a few long-lived keep-alive clients).
 *
 *   node examples/prefork.ts       # 127.0.0.1:8080 (PORT to change it); Ctrl-C stops it gracefully
 *   kill -HUP <pid>                # reload: new workers ready before the old ones drain
 *   kill -TTIN <pid>, -TTOU <pid>  # one worker more, one less
 *
 * The command line does the same: `effect-appserver serve examples/echo.ts --min-workers 2 --max-workers 4`.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Console, Effect } from "effect"
import { Prefork } from "#effect-appserver"

const program = Effect.scoped(
  Effect.gen(function* () {
    const pool = yield* Prefork.make({
      module: "examples/echo.ts",
      server: { host: "127.0.0.1", port: Number(process.env.PORT ?? 8080) },
      minWorkers: 2,
      maxWorkers: 4,
      dispatch: process.env.DISPATCH === "primary" ? "primary" : "shared",
      // Each worker retires after 10,000 to 10,500 requests; its replacement is ready first.
      maxRequests: 10_000,
      maxRequestsJitter: 500
    })
    const { workers } = yield* pool.snapshot
    yield* Console.log(
      `primary ${process.pid}: ${workers.length} workers serving ${pool.address._tag === "UnixPathAddress" ? pool.address.path : `127.0.0.1:${pool.address.port}`}`
    )
    // Runs until Ctrl-C (a graceful stop of every worker) or until workers keep failing to boot.
    return yield* pool.halted
  })
)

if (import.meta.main) NodeRuntime.runMain(program)
