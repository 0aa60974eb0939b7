/**
 * ProcessManager against real processes: start, readyWait, health, stop, wait; the failures
 * (spawn, early exit, never ready, restart limit); stopping processes that ignore SIGTERM and
 * their children; the manager as a Layer. Every process carries this file's token: `afterAll`
 * SIGKILLs any left and fails if there were some.
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Layer, Schedule, Scope, Sink, Stream } from "effect"
import * as ChildProcessSpawner from "effect/process/ChildProcessSpawner"
import * as TestClock from "effect/testing/TestClock"
import * as Manager from "../../src/manager/Manager.ts"
import * as Probe from "../../src/manager/Probe.ts"
import * as ProcessManager from "../../src/manager/ProcessManager.ts"
import {
  alive,
  binPath,
  eventually,
  fixture,
  freePort,
  killLeftovers,
  makeToken,
  removeTempDirs,
  root,
  socketPath,
  tokenEnv,
  tokenPids
} from "./support.ts"

const token = makeToken()

afterAll(() => {
  removeTempDirs()
  const left = killLeftovers(token)
  expect(left).toEqual([])
})

/** Runs a scoped test program with the Node spawner. */
const run = <A, E>(program: Effect.Effect<A, E, Scope.Scope | NodeServices.NodeServices>) =>
  program.pipe(Effect.scoped, Effect.provide(NodeServices.layer))

const pidOf = (manager: Manager.ManagerShape) =>
  Effect.flatMap(manager.pid, (pid) => (pid === undefined ? Effect.die("no pid") : Effect.succeed(pid)))

/**
 * A process handle with no process behind it (pid beyond Linux's pid_max), for spawners whose
 * exits a test decides: no output, no input.
 */
const fakeHandle = (
  n: number,
  life: Pick<Parameters<typeof ChildProcessSpawner.makeHandle>[0], "exitCode" | "isRunning" | "kill">
) =>
  ChildProcessSpawner.makeHandle({
    pid: ChildProcessSpawner.ProcessId(2 ** 22 + n),
    ...life,
    stdin: Sink.drain,
    stdout: Stream.empty,
    stderr: Stream.empty,
    all: Stream.empty,
    getInputFd: () => Sink.drain,
    getOutputFd: () => Stream.empty,
    unref: Effect.succeed(Effect.void)
  })

describe("ProcessManager", () => {
  it.live(
    "starts the project's own server, sees it ready and healthy, stops it and reaps it",
    () =>
      run(
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const manager = yield* ProcessManager.make({
            name: "echo server",
            command: process.execPath,
            args: [binPath, "serve", "examples/echo.ts", "--host", "127.0.0.1", "--port", String(port)],
            cwd: root,
            env: tokenEnv(token),
            probe: Probe.http({ host: "127.0.0.1", port }, { path: "/" }),
            startTimeout: "20 seconds"
          })
          expect((yield* Effect.flip(manager.health)).reason).toBe("NotStarted")
          yield* manager.start()
          const pid = yield* pidOf(manager)
          expect(alive(pid)).toBe(true)
          yield* manager.health
          // Already running: start again is a no-op that only checks readiness.
          yield* manager.start()
          expect(yield* manager.pid).toBe(pid)
          yield* manager.stop()
          expect(alive(pid)).toBe(false)
          const status = yield* manager.wait
          // SIGTERM: the server stops gracefully and exits by itself, or dies of the signal.
          expect(status.code === 0 || status.code === 143 || status.signal === "SIGTERM").toBe(true)
          expect(yield* manager.pid).toBe(undefined)
          expect(tokenPids(token)).toEqual([])
        })
      ),
    30_000
  )

  it.live(
    "a process that never listens fails NotReady after the timeout, and is gone",
    () =>
      run(
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const manager = yield* ProcessManager.make({
            name: "silent",
            ...fixture(token, []),
            probe: Probe.tcp("127.0.0.1", port)
          })
          const started = performance.now()
          const error = yield* Effect.flip(manager.start({ timeout: "500 millis" }))
          const took = performance.now() - started
          expect(error.reason).toBe("NotReady")
          expect(error.name).toBe("silent")
          expect(error.message).toContain("not ready within 500 ms")
          expect(error.message).toContain(`connect 127.0.0.1:${port}`)
          expect(took).toBeGreaterThanOrEqual(450)
          expect(took).toBeLessThan(3_000)
          expect(tokenPids(token)).toEqual([])
        })
      ),
    15_000
  )

  it.live(
    "a process that exits at once fails ExitedEarly with its stderr, without waiting for the timeout",
    () =>
      run(
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const manager = yield* ProcessManager.make({
            name: "doomed",
            ...fixture(token, ["--fail", "cannot open the database"]),
            probe: Probe.tcp("127.0.0.1", port)
          })
          const started = performance.now()
          const error = yield* Effect.flip(manager.start({ timeout: "10 seconds" }))
          expect(performance.now() - started).toBeLessThan(5_000)
          expect(error.reason).toBe("ExitedEarly")
          expect(error.detail).toContain("exit code 3")
          expect(error.stderr).toContain("cannot open the database")
          expect(error.message).toContain("cannot open the database")
          expect((yield* manager.wait).code).toBe(3)
        })
      ),
    15_000
  )

  it.live(
    "a command that cannot be spawned fails SpawnFailed",
    () =>
      run(
        Effect.gen(function* () {
          const manager = yield* ProcessManager.make({
            command: "/nonexistent/program",
            probe: Probe.tcp("127.0.0.1", 1)
          })
          const error = yield* Effect.flip(manager.start())
          expect(error.reason).toBe("SpawnFailed")
          expect(error.name).toBe("/nonexistent/program")
          expect((yield* Effect.flip(manager.wait)).reason).toBe("NotStarted")
        })
      ),
    10_000
  )

  it.live(
    "a process that ignores SIGTERM is SIGKILLed after the grace period",
    () =>
      run(
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const manager = yield* ProcessManager.make({
            name: "stubborn",
            ...fixture(token, ["--port", String(port), "--ignore-term"]),
            probe: Probe.tcp("127.0.0.1", port),
            stopGrace: "400 millis"
          })
          yield* manager.start()
          const pid = yield* pidOf(manager)
          const started = performance.now()
          yield* manager.stop()
          const took = performance.now() - started
          expect(took).toBeGreaterThanOrEqual(380)
          expect(took).toBeLessThan(3_000)
          expect(alive(pid)).toBe(false)
          expect(yield* manager.wait).toEqual({ code: null, signal: "SIGKILL" })
        })
      ),
    15_000
  )

  it.live(
    "a child of the process that ignores SIGTERM is not left behind",
    () =>
      run(
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const manager = yield* ProcessManager.make({
            name: "parent",
            ...fixture(token, ["--port", String(port), "--child-ignores-term", "--log"]),
            probe: Probe.all([Probe.tcp("127.0.0.1", port), Probe.logLine(/^child \d+$/)]),
            stopGrace: "300 millis"
          })
          yield* manager.start()
          const pids = tokenPids(token)
          expect(pids.length).toBe(2)
          yield* manager.stop()
          expect(pids.filter(alive)).toEqual([])
        })
      ),
    15_000
  )

  it.live(
    "stop({ wait: false }) returns at once; wait then reports the exit",
    () =>
      run(
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const manager = yield* ProcessManager.make({
            name: "quick",
            ...fixture(token, ["--port", String(port)]),
            probe: Probe.tcp("127.0.0.1", port)
          })
          yield* manager.start()
          yield* manager.stop({ wait: false })
          const status = yield* manager.wait.pipe(Effect.timeout("5 seconds"))
          expect(status).toEqual({ code: null, signal: "SIGTERM" })
        })
      ),
    15_000
  )

  it.live(
    "health fails Unhealthy when the probe fails, ExitedEarly when the process died",
    () =>
      run(
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const path = socketPath("health")
          const manager = yield* ProcessManager.make({
            name: "flaky",
            ...fixture(token, ["--unix", path, "--delay", "300", "--exit-after", "900"]),
            probe: Probe.any([Probe.unix(path), Probe.tcp("127.0.0.1", port)])
          })
          yield* manager.start({ wait: false })
          const unhealthy = yield* Effect.flip(manager.health)
          expect(unhealthy.reason).toBe("Unhealthy")
          expect(unhealthy.message).toContain(`connect unix:${path}`)
          yield* manager.readyWait("5 seconds")
          yield* manager.health
          const exited = yield* manager.wait.pipe(Effect.timeout("5 seconds"))
          expect(exited.code).toBe(4)
          // A dead process has no pid: the number may already be another process's.
          expect(yield* manager.pid).toBe(undefined)
          const error = yield* Effect.flip(manager.health)
          expect(error.reason).toBe("ExitedEarly")
          expect(error.stderr).toContain("dying")
        })
      ),
    15_000
  )

  it.live(
    "the restart policy restarts a process that keeps dying, then gives up with RestartLimit",
    () =>
      run(
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const pids = new Set<number>()
          const manager = yield* ProcessManager.make({
            name: "crashy",
            ...fixture(token, ["--port", String(port), "--exit-after", "600"]),
            probe: Probe.tcp("127.0.0.1", port),
            restart: Schedule.spaced("50 millis").pipe(Schedule.upTo({ times: 2 }))
          })
          yield* manager.start()
          pids.add(yield* pidOf(manager))
          const error = yield* Effect.flip(manager.wait).pipe(
            Effect.raceFirst(
              Effect.forever(
                Effect.flatMap(manager.pid, (pid) =>
                  Effect.sync(() => (pid === undefined ? undefined : pids.add(pid)))
                ).pipe(Effect.andThen(Effect.sleep("10 millis")))
              )
            ),
            Effect.timeout("10 seconds")
          )
          expect(error.reason).toBe("RestartLimit")
          expect(error.stderr).toContain("dying")
          // The first run and two restarts.
          expect(pids.size).toBe(3)
          expect(yield* Effect.promise(() => eventually(() => tokenPids(token).length === 0, 3_000))).toBe(true)
        })
      ),
    20_000
  )

  it.live(
    "start while a restart is pending replaces that restart: one process, one supervisor",
    () =>
      run(
        Effect.gen(function* () {
          const manager = yield* ProcessManager.make({
            name: "pending",
            ...fixture(token, []),
            probe: Probe.make("always", Effect.void),
            restart: Schedule.spaced("1 second")
          })
          yield* manager.start()
          const first = yield* pidOf(manager)
          // An unexpected death: the restart waits a second.
          process.kill(first, "SIGKILL")
          expect(yield* Effect.promise(() => eventually(() => !alive(first), 2_000))).toBe(true)
          expect(yield* Effect.promise(() => eventually(() => tokenPids(token).length === 0, 2_000))).toBe(true)
          yield* Effect.sleep("200 millis")
          expect(yield* manager.pid).toBe(undefined)
          yield* manager.start()
          const second = yield* pidOf(manager)
          expect(second).not.toBe(first)
          // Past the old backoff: the old supervisor, had it survived, would have spawned another.
          yield* Effect.sleep("1500 millis")
          expect(tokenPids(token)).toEqual([second])
          expect(yield* manager.pid).toBe(second)
          // The supervisor of the new process still restarts it, after its backoff.
          process.kill(second, "SIGKILL")
          const restarted = () => {
            // One reading: `second` may still show alive in the first moments after the SIGKILL.
            const pids = tokenPids(token)
            return pids.length === 1 && pids[0] !== second
          }
          expect(yield* Effect.promise(() => eventually(restarted, 3_000))).toBe(true)
          const third = yield* pidOf(manager)
          expect(third).not.toBe(second)
          yield* Effect.sleep("300 millis")
          expect(tokenPids(token)).toEqual([third])
          yield* manager.stop()
          expect(tokenPids(token)).toEqual([])
          expect((yield* manager.wait).signal).toBe("SIGTERM")
        })
      ),
    20_000
  )

  it.live(
    "a readiness schedule that gives up fails NotReady (not ExitedEarly), the process is gone and wait returns",
    () =>
      run(
        Effect.gen(function* () {
          const port = yield* Effect.promise(freePort)
          const manager = yield* ProcessManager.make({
            name: "impatient",
            ...fixture(token, []),
            probe: Probe.tcp("127.0.0.1", port),
            readySchedule: Schedule.spaced("20 millis").pipe(Schedule.upTo({ times: 3 })),
            checkOnOutput: false
          })
          const started = performance.now()
          const error = yield* Effect.flip(manager.start({ timeout: "10 seconds" }))
          expect(performance.now() - started).toBeLessThan(5_000)
          expect(error.reason).toBe("NotReady")
          expect(error.detail).toContain("gave up")
          expect(error.detail).toContain(`connect 127.0.0.1:${port}`)
          const status = yield* manager.wait.pipe(Effect.timeout("5 seconds"))
          expect(status).toEqual({ code: null, signal: "SIGTERM" })
          expect(tokenPids(token)).toEqual([])
        })
      ),
    15_000
  )

  it.effect("the restart schedule starts afresh after a run that stayed up for the stable period", () =>
    Effect.gen(function* () {
      // A spawner of fake processes whose exits the test decides.
      const exits: Array<Deferred.Deferred<ChildProcessSpawner.ExitCode>> = []
      const fake = ChildProcessSpawner.make(() =>
        Effect.sync(() => {
          const exit = Deferred.makeUnsafe<ChildProcessSpawner.ExitCode>()
          exits.push(exit)
          return fakeHandle(exits.length, {
            exitCode: Deferred.await(exit),
            isRunning: Effect.map(Deferred.isDone(exit), (done) => !done),
            kill: () => Deferred.succeed(exit, ChildProcessSpawner.ExitCode(143)).pipe(Effect.asVoid)
          })
        })
      )
      const manager = yield* ProcessManager.make({
        name: "fake",
        command: "fake",
        probe: Probe.make("always", Effect.void),
        // One restart, then it gives up.
        restart: Schedule.spaced("1 second").pipe(Schedule.upTo({ times: 1 }))
      }).pipe(Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, fake))
      const exitNow = (index: number) => Deferred.succeed(exits[index], ChildProcessSpawner.ExitCode(1))
      yield* manager.start()
      yield* exitNow(0)
      yield* TestClock.adjust("1 second")
      expect(exits.length).toBe(2)
      // Up for the stable period (30 s), then dead: a new death, the schedule's one restart again.
      yield* TestClock.adjust("30 seconds")
      yield* exitNow(1)
      yield* TestClock.adjust("1 second")
      expect(exits.length).toBe(3)
      // Dead again at once: the restart is used up.
      yield* exitNow(2)
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(manager.wait)
      expect(error.reason).toBe("RestartLimit")
      expect(exits.length).toBe(3)
    }).pipe(Effect.scoped)
  )

  it.live(
    "wait fails ExitUnknown, instead of hanging, when a stop never sees the exit",
    () =>
      Effect.gen(function* () {
        // A spawner whose process never reports an exit: what a lost exit event would look like.
        const never = ChildProcessSpawner.make(() =>
          Effect.succeed(
            fakeHandle(1, { exitCode: Effect.never, isRunning: Effect.succeed(true), kill: () => Effect.void })
          )
        )
        const manager = yield* ProcessManager.make({
          name: "lost",
          command: "lost",
          probe: Probe.make("always", Effect.void)
        }).pipe(Effect.provideService(ChildProcessSpawner.ChildProcessSpawner, never))
        yield* manager.start()
        const started = performance.now()
        yield* manager.stop()
        expect(performance.now() - started).toBeLessThan(4_000)
        const error = yield* Effect.flip(manager.wait.pipe(Effect.timeout("1 second")))
        expect(error._tag === "WorkerError" && error.reason).toBe("ExitUnknown")
      }).pipe(Effect.scoped),
    10_000
  )

  it.live(
    "as a Layer: acquiring starts and waits until ready, releasing stops; two managers under their own keys",
    () =>
      Effect.gen(function* () {
        const first = yield* Effect.promise(freePort)
        const second = yield* Effect.promise(freePort)
        class Backend extends Context.Service<Backend, Manager.ManagerShape>()("test/Backend") {}
        const backend = Manager.layerAs(
          Backend,
          ProcessManager.make({
            name: "backend",
            ...fixture(token, ["--port", String(first), "--scgi"]),
            probe: Probe.scgi({ host: "127.0.0.1", port: first })
          })
        )
        const front = Manager.layer(
          ProcessManager.make({
            name: "front",
            ...fixture(token, ["--port", String(second), "--log"]),
            probe: Probe.all([Probe.http({ host: "127.0.0.1", port: second }), Probe.logLine(/^listening$/)])
          })
        )
        const pids = yield* Effect.gen(function* () {
          const a = yield* Backend
          const b = yield* Manager.Manager
          yield* a.health
          yield* b.health
          return [yield* pidOf(a), yield* pidOf(b)]
        }).pipe(Effect.provide(Layer.mergeAll(backend, front).pipe(Layer.provide(NodeServices.layer))))
        expect(pids.filter(alive)).toEqual([])
        expect(tokenPids(token)).toEqual([])
      }),
    20_000
  )

  it.live(
    "closing the manager's scope stops a running process",
    () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const scope = yield* Scope.make()
        const manager = yield* ProcessManager.make({
          ...fixture(token, ["--port", String(port), "--ignore-term"]),
          probe: Probe.tcp("127.0.0.1", port),
          stopGrace: "200 millis"
        }).pipe(Scope.provide(scope), Effect.provide(NodeServices.layer))
        yield* manager.start()
        const pid = yield* pidOf(manager)
        yield* Scope.close(scope, Exit.void)
        expect(alive(pid)).toBe(false)
      }),
    15_000
  )
})
