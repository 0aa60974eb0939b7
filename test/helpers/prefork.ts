/**
 * Running prefork pools in tests: a pool started through the library whose worker pids are
 * recorded as they appear (from its snapshot) and SIGKILLed, should any outlive the pool, when the
 * test's scope closes; the processes' liveness as /proc shows it; and the check a test file ends
 * with, that none of the workers it saw is still running.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { Effect, Logger, type Scope } from "effect"
import * as NetAddress from "effect/net/NetAddress"
import * as Prefork from "../../src/prefork/Prefork.ts"
import { root } from "./cli.ts"
import { nginx } from "./nginx.ts"

/** The prefork tests' app (test/fixtures/prefork-app.ts), as an absolute path. */
export const appModule = Path.join(root, "test/fixtures/prefork-app.ts")

/**
 * Whether a process runs: false once it is gone or a zombie (an exited child its parent, or PID 1
 * for orphans, has not reaped yet: `kill(pid, 0)` still succeeds for those).
 */
export const alive = (pid: number): boolean => {
  try {
    const stat = Fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    // "pid (comm) state ...": comm may hold spaces and parentheses, the state follows the last ')'
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    return false
  }
}

/** The running children of a process. */
export const childPids = (pid: number): Array<number> => {
  try {
    return execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" })
      .split("\n")
      .map((line) => Number(line.trim()))
      .filter((child) => child > 0 && alive(child))
  } catch {
    // ps exits 1 when there is none
    return []
  }
}

/** A GET that resolves with the status and body, or the error's code (it never rejects). */
export const get = (url: string): Promise<{ status: number; body: string } | { error: string }> =>
  fetch(url).then(
    async (response) => ({ status: response.status, body: await response.text() }),
    (error: unknown) => ({ error: String((error as { cause?: { code?: string } }).cause?.code ?? error) })
  )

export const kill = (pid: number, signal: NodeJS.Signals): void => {
  try {
    process.kill(pid, signal)
  } catch {
    // already gone
  }
}

/** Every worker pid a test file's pools ran, for `leftovers`. */
const seen = new Set<number>()

/** Records pids whose processes a test file started, for `leftovers`. */
export const track = (pids: Iterable<number>): void => {
  for (const pid of pids) seen.add(pid)
}

/**
 * The tracked processes still running a moment (up to a second, for signals already sent to be
 * delivered) after a file's tests, each then SIGKILLed: a file's `afterAll` expects none.
 */
export const leftovers = async (): Promise<Array<number>> => {
  const until = performance.now() + 1_000
  while ([...seen].some(alive) && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 20))
  const left = [...seen].filter(alive)
  for (const pid of left) kill(pid, "SIGKILL")
  seen.clear()
  return left
}

export interface TestPool {
  readonly pool: Prefork.PreforkPool["Service"]
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  readonly port: number
  /** The pids of the workers, serving or not, now. */
  readonly pids: Effect.Effect<Array<number>>
  /** What the pool logged, one string per entry. */
  readonly logs: Array<string>
}

/**
 * `Prefork.make` serving the prefork app on 127.0.0.1 (an ephemeral port unless given), without
 * signal handlers (the test process's signals are vitest's), with the pool's log captured. Every
 * worker pid is recorded while the scope lasts; those alive after the pool stopped are SIGKILLed.
 */
export const startPool = (options: Partial<Prefork.PreforkOptions>): Effect.Effect<TestPool, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const pids = new Set<number>()
    // added before the pool's own finalizer, so it runs after the pool stopped
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const pid of pids) if (alive(pid)) kill(pid, "SIGKILL")
      })
    )
    const logs: Array<string> = []
    const capture = Logger.make<unknown, void>(({ message }) => {
      logs.push((Array.isArray(message) ? message : [message]).map(String).join(" "))
    })
    const pool = yield* Prefork.make({
      module: appModule,
      signals: false,
      ...options,
      server: { host: "127.0.0.1", port: 0, ...options.server }
    }).pipe(Effect.provide(Logger.layer([capture])))
    const record = Effect.map(pool.snapshot, (snapshot) => {
      const now = snapshot.workers.map((w) => w.pid)
      for (const pid of now) pids.add(pid)
      track(now)
      return now
    })
    yield* record
    yield* Effect.forkScoped(Effect.forever(Effect.andThen(Effect.sleep(25), record)))
    const address = pool.address
    if (!NetAddress.isInetAddress(address)) return yield* Effect.die(new Error("expected a TCP address"))
    return { pool, url: `http://127.0.0.1:${address.port}`, port: address.port, pids: record, logs }
  })

/** The most workers a pool has had at once from now on (its snapshot every 20 ms, while the scope lasts). */
export const mostWorkers = (pool: Prefork.PreforkPool["Service"]): Effect.Effect<() => number, never, Scope.Scope> =>
  Effect.gen(function* () {
    let most = 0
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.andThen(
          Effect.map(pool.snapshot, (s) => {
            most = Math.max(most, s.workers.length)
          }),
          Effect.sleep(20)
        )
      )
    )
    return () => most
  })

/**
 * How clients reach a pool: directly over HTTP, or through nginx to a pool speaking SCGI ("the
 * same suite over SCGI with nginx in front").
 */
export interface Front {
  readonly name: string
  readonly protocol: "http" | "scgi"
  /** Where clients send requests for a pool listening on `port` (nginx lasts as long as the scope). */
  readonly url: (port: number) => Effect.Effect<string, unknown, Scope.Scope>
}

export const directHttp: Front = {
  name: "HTTP",
  protocol: "http",
  url: (port) => Effect.succeed(`http://127.0.0.1:${port}`)
}

export const scgiBehindNginx: Front = {
  name: "SCGI behind nginx",
  protocol: "scgi",
  url: (port) => Effect.map(nginx({ upstream: { protocol: "scgi", port } }), (front) => front.url)
}

/**
 * How long workers took to boot, from the pool's log lines (`worker 3 (pid N) ready in 812 ms`).
 * While a replacement is ready before the worker it replaces stops, no request waits for a boot:
 * the slowest answer stays below the fastest boot.
 */
export const bootTimes = (log: string): Array<number> =>
  [...log.matchAll(/\) ready in (\d+) ms/g)].map((match) => Number(match[1]))

export interface RawClient {
  /** Sends `bytes` and gives back all that comes until the server closes (at most 5 s). */
  readonly exchange: (bytes: string | Buffer) => Effect.Effect<string>
}

/**
 * A connection opened now, for a request sent later (destroyed when the scope closes). Data that
 * comes before the request, and a close of the server's, are kept: the exchange then gives back
 * only that.
 */
export const connect = (port: number): Effect.Effect<RawClient, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Net.Socket>((resume) => {
      const socket = Net.connect({ port, host: "127.0.0.1" })
      socket.once("connect", () => resume(Effect.succeed(socket)))
    }),
    (socket) => Effect.sync(() => socket.destroy())
  ).pipe(
    Effect.map((socket) => {
      const chunks: Array<Buffer> = []
      const closed = new Promise<void>((resolve) => {
        socket.on("data", (chunk: Buffer) => chunks.push(chunk))
        socket.on("close", () => resolve())
        // a reset or a write to a closed connection: what came is what there is
        socket.on("error", () => {})
      })
      return {
        exchange: (bytes) =>
          Effect.promise(() => {
            if (!socket.destroyed) socket.write(bytes)
            return Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 5_000))])
          }).pipe(Effect.map(() => Buffer.concat(chunks).toString("latin1")))
      }
    })
  )
