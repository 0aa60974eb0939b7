/**
 * The prefork pool through the command line (`effect-appserver serve MODULE --workers 2`), as a
 * real child process that the tests signal as an operator or a supervisor would: SIGTERM (also to
 * the whole process group), SIGHUP, SIGKILL of the primary, and a module that cannot boot. Run for
 * one way clients reach it (a `Front`) by cli-http.test.ts and cli-scgi-nginx.test.ts.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterAll, afterEach, describe, expect, it } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import {
  type Cli,
  connectionRefused,
  type Exit,
  exitOf,
  killAll,
  listeningOn,
  root,
  spawnTracked
} from "../helpers/cli.ts"
import { type LoadReport, slowest, startLoad } from "../helpers/load.ts"
import { alive, appModule, bootTimes, childPids, type Front, get, kill, leftovers, track } from "../helpers/prefork.ts"
import { waitUntil } from "../helpers/wait.ts"

const bin = Path.join(root, "src/cli/bin.ts")
const bootFails = Path.join(root, "test/fixtures/prefork-boot-fails.ts")

interface Served {
  readonly run: Cli
  /** The primary's pid. */
  readonly pid: number
  /** The pool's own port. */
  readonly port: number
  /** Where clients send requests (nginx, for SCGI). */
  readonly url: string
  /** The primary's worker processes now. */
  readonly workers: () => Array<number>
  /** SIGTERM to the primary: how it exits (within 10 s). */
  readonly stop: () => Promise<Exit>
}

/**
 * Starts `serve` in a process group of its own (workers included). When the scope closes, a
 * primary still running gets SIGTERM, then the whole group SIGKILL.
 */
const serveWith = (
  dispatch: "shared" | "primary",
  front: Front,
  args: ReadonlyArray<string>,
  env: Record<string, string> = {}
): Effect.Effect<Served, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const run = spawnTracked(
      process.execPath,
      [
        bin,
        "serve",
        appModule,
        "--protocol",
        front.protocol,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--dispatch",
        dispatch,
        ...args
      ],
      { cwd: root, env, group: true }
    )
    const pid = run.child.pid ?? -1
    const stop = () => {
      kill(pid, "SIGTERM")
      return exitOf(run, 10_000)
    }
    // a test that leaves the primary running stops it as an operator would; SIGKILL to the whole
    // group if that fails, or after a test that failed
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => (run.child.exitCode === null && run.child.signalCode === null ? stop() : run.exited)).pipe(
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => kill(-pid, "SIGKILL")))
      )
    )
    const port = Number(
      yield* Effect.promise(() =>
        listeningOn(
          run,
          new RegExp(`^listening on ${front.protocol}://127\\.0\\.0\\.1:(\\d+) \\(\\d+ workers\\)$`, "m")
        )
      )
    )
    const workers = () => {
      const pids = childPids(pid)
      track(pids)
      return pids
    }
    workers()
    return { run, pid, port, url: yield* front.url(port), workers, stop }
  })

const ok = (answer: { status: number; body: string } | { error: string }) => "status" in answer && answer.status === 200

export const cliSuite = (front: Front, dispatch: "shared" | "primary" = "shared"): void => {
  const serve = (front: Front, args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
    serveWith(dispatch, front, args, env)

  afterEach(() => {
    killAll()
  })

  afterAll(async () => {
    expect(await leftovers()).toEqual([])
  })

  describe(`effect-appserver serve --workers --dispatch ${dispatch}, ${front.name}`, () => {
    for (const target of ["the primary", "the process group"] as const) {
      it.live(
        `SIGTERM to ${target} with slow requests in flight: all complete, exit code 0, no worker left`,
        () =>
          Effect.scoped(
            Effect.gen(function* () {
              const { run, pid, port, url, workers } = yield* serve(front, ["--workers", "2"])
              const before = workers()
              expect(before).toHaveLength(2)
              const slow = Array.from({ length: 4 }, () => get(`${url}/sleep?ms=2000`))
              yield* Effect.sleep(500)
              process.kill(target === "the primary" ? pid : -pid, "SIGTERM")
              const answers = yield* Effect.promise(() => Promise.all(slow))
              expect(answers.filter((a) => !ok(a))).toEqual([])
              const exit = yield* Effect.promise(() => exitOf(run, 10_000))
              expect(exit).toEqual({ code: 0, signal: null })
              expect(before.filter(alive)).toEqual([])
              expect(yield* Effect.promise(() => connectionRefused(`http://127.0.0.1:${port}`))).toBe(true)
            })
          ),
        20_000
      )
    }

    it.live(
      "a second SIGTERM while workers finish slow requests stops at once: exit code 130, no worker left",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const { run, pid, url, workers } = yield* serve(front, ["--workers", "2"])
            const before = workers()
            expect(before).toHaveLength(2)
            const slow = Array.from({ length: 2 }, () => get(`${url}/sleep?ms=5000`))
            yield* Effect.sleep(500)
            process.kill(pid, "SIGTERM")
            yield* Effect.sleep(300)
            // the graceful stop is under way: a worker waits for its requests (an idle one is gone)
            expect(before.filter(alive).length).toBeGreaterThan(0)
            const secondAt = performance.now()
            process.kill(pid, "SIGTERM")
            const exit = yield* Effect.promise(() => exitOf(run, 2_000))
            expect(exit).toEqual({ code: 130, signal: null })
            const gone = yield* waitUntil(() => before.every((p) => !alive(p)), 1_000)
            expect(gone).toBe(true)
            expect(performance.now() - secondAt).toBeLessThan(1_500)
            // what the workers were doing is cut short
            const answers = yield* Effect.promise(() => Promise.all(slow))
            expect(answers.filter(ok)).toEqual([])
          })
        ),
      20_000
    )

    it.live(
      "SIGHUP under continuous load: every worker replaced, the new code served, no request failed",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "prefork-test-"))
            yield* Effect.addFinalizer(() => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true })))
            const versionFile = Path.join(dir, "version")
            Fs.writeFileSync(versionFile, "v1")
            const { run, pid, url, workers, stop } = yield* serve(front, ["--workers", "2"], {
              PREFORK_APP_VERSION_FILE: versionFile
            })
            const old = workers()
            expect(old).toHaveLength(2)
            const load = startLoad(url, { clients: 10, pauseMs: 5, appMs: 20, trace: true })
            yield* Effect.sleep(500)
            Fs.writeFileSync(versionFile, "v2")
            const hupAt = performance.now()
            process.kill(pid, "SIGHUP")
            const replaced = yield* waitUntil(() => {
              const now = workers()
              return now.length === 2 && now.every((p) => !old.includes(p)) && old.every((p) => !alive(p))
            }, 10_000)
            const replacedAt = performance.now()
            yield* Effect.sleep(300)
            const report: LoadReport = yield* Effect.promise(() => load.stop())
            console.log(
              `SIGHUP under load (${front.name}): replaced in ${(replacedAt - hupAt).toFixed(0)} ms, ${report.answers.length} answers, ${report.retried.length} unanswered and sent again, slowest ${slowest(report.answers).toFixed(0)} ms`
            )
            expect(replaced).toBe(true)
            // none failed; those sent again had never reached the app (see `trace` in load.ts)
            expect(report.failures).toEqual([])
            expect(report.retriedInApp).toEqual([])
            // answered before the SIGHUP: the old code; sent once the old workers were gone: the new
            const newer = workers()
            const sentAfter = report.answers.filter((a) => a.at - a.ms > replacedAt)
            expect(report.answers.filter((a) => a.at < hupAt && a.version !== "v1")).toEqual([])
            expect(sentAfter.filter((a) => a.version !== "v2" || !newer.includes(a.pid))).toEqual([])
            expect(sentAfter.length).toBeGreaterThan(0)
            // new workers were ready before the old ones stopped: no request waited for a boot
            expect(slowest(report.answers)).toBeLessThan(Math.min(...bootTimes(run.stdout())))
            expect(yield* Effect.promise(stop)).toEqual({ code: 0, signal: null })
            expect(newer.filter(alive)).toEqual([])
          })
        ),
      30_000
    )

    it.live(
      "the primary SIGKILLed: no worker survives a second, and the port is closed",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const { pid, port, workers } = yield* serve(front, ["--workers", "2"])
            const orphans = workers()
            expect(orphans).toHaveLength(2)
            process.kill(pid, "SIGKILL")
            const killedAt = performance.now()
            const gone = yield* waitUntil(() => orphans.every((p) => !alive(p)), 1_000)
            console.log(
              `primary SIGKILLed (${front.name}): workers gone in ${(performance.now() - killedAt).toFixed(0)} ms`
            )
            expect(gone).toBe(true)
            expect(yield* Effect.promise(() => connectionRefused(`http://127.0.0.1:${port}`))).toBe(true)
          })
        ),
      20_000
    )

    it.live(
      "the primary SIGKILLed with a request in flight: its worker answers it, then exits",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const { pid, url, workers } = yield* serve(front, ["--workers", "1"])
            const [orphan] = workers()
            const slow = get(`${url}/sleep?ms=1500`)
            yield* Effect.sleep(300)
            process.kill(pid, "SIGKILL")
            const answer = yield* Effect.promise(() => slow)
            expect(answer).toMatchObject({ status: 200, body: `${orphan} none` })
            const answeredAt = performance.now()
            expect(yield* waitUntil(() => !alive(orphan), 1_000)).toBe(true)
            console.log(
              `orphan with a request in flight (${front.name}): gone ${(performance.now() - answeredAt).toFixed(0)} ms after answering`
            )
          })
        ),
      20_000
    )

    it.live(
      "a module that cannot boot: exit code 1 with the worker's stderr, no worker left",
      () =>
        Effect.gen(function* () {
          const run = spawnTracked(
            process.execPath,
            [
              bin,
              "serve",
              bootFails,
              "--protocol",
              front.protocol,
              "--host",
              "127.0.0.1",
              "--port",
              "0",
              "--workers",
              "2"
            ],
            { cwd: root, group: true }
          )
          const exit = yield* Effect.promise(() => exitOf(run, 20_000))
          expect(exit).toEqual({ code: 1, signal: null })
          expect(run.stdout()).not.toMatch(/^listening on/m)
          const stderr = run.stderr()
          expect(stderr).toMatch(
            /^effect-appserver: worker \d+ \(pid \d+\): 3 workers in a row failed to boot; the last: .*the database is unreachable\n--- last stderr of worker \d+ \(pid \d+\) ---\n/m
          )
          expect(stderr.slice(stderr.indexOf("--- last stderr"))).toContain(
            "Error: prefork-boot-fails: the database is unreachable"
          )
          const pids = [...stderr.matchAll(/\(pid (\d+)\)/g)].map((match) => Number(match[1]))
          track(pids)
          expect(pids.filter(alive)).toEqual([])
        }),
      30_000
    )
  })
}
