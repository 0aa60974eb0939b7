/**
 * A local stack as one Layer graph: the echo app (examples/echo.ts) under the SCGI server with two
 * worker processes, on a unix socket (`AppServerManager`), and nginx in front of it on loopback
 * (`NginxManager`). Acquiring the graph starts the app server and waits until it answers, then
 * writes nginx's configuration, checks it with `nginx -t`, starts nginx and waits for it; Ctrl-C
 * releases it in reverse: nginx first, then the app server (gracefully), no process left.
 *
 *   npm run stack                  # nginx on 127.0.0.1:8080 (PORT to change it)
 *   curl http://127.0.0.1:8080/    # Hello, World! from a worker, through nginx and SCGI
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Console, Effect, Layer } from "effect"
import { AppServerManager, NginxConfig, NginxManager } from "#effect-appserver"

const root = Path.join(import.meta.dirname, "..")
const port = Number(process.env.PORT ?? 8080)

/** A private directory for the app server's socket, removed when the stack stops. */
const socketDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-appserver-stack-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

const stack = Layer.unwrap(
  Effect.map(socketDir, (dir) => {
    const socket = Path.join(dir, "app.sock")
    const app = AppServerManager.layer({
      module: "examples/echo.ts",
      protocol: "scgi",
      socket,
      workers: 2,
      cwd: root
    })
    const nginx = NginxManager.layer({
      config: {
        listen: { host: "127.0.0.1", port },
        // Unbuffered, so streamed responses (/stream, server-sent events) arrive as they are written.
        mappings: [NginxConfig.scgi("/", [{ path: socket }], { buffering: false })]
      }
    })
    // nginx is built after the app server it fronts, and released before it.
    return nginx.pipe(Layer.provideMerge(app))
  })
).pipe(Layer.provide(NodeServices.layer))

const program = Effect.gen(function* () {
  const nginx = yield* NginxManager.NginxManager
  yield* Console.log(`serving ${yield* nginx.url} (nginx → SCGI → 2 workers); Ctrl-C stops it`)
  return yield* Effect.never
}).pipe(Effect.provide(stack), Effect.scoped)

if (import.meta.main) NodeRuntime.runMain(program)
