/**
 * A manager for any command: its arguments, environment and working directory, a health probe,
 * how to stop it, and optionally how to restart it when it dies.
 *
 * Spawning, process-group signalling and the SIGKILL escalation are Effect's `ChildProcess` on
 * the platform's `ChildProcessSpawner` (`NodeServices.layer`): the process gets its own process
 * group, so the stop signal and the SIGKILL reach the processes it started too, and nothing is
 * left behind when the manager's scope closes.
 *
 * @since 0.1.0
 */
import {
  type Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Fiber,
  Latch,
  type Layer,
  type PlatformError,
  Schedule,
  Scope,
  Semaphore,
  Stream
} from "effect"
import * as ChildProcess from "effect/process/ChildProcess"
import type { ChildProcessHandle, ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import { WorkerError } from "../errors.ts"
import { stablePeriodMillis } from "../process/Backoff.ts"
import { describeExitStatus, type ExitStatus } from "../process/Exit.ts"
import * as Manager from "./Manager.ts"
import type { OutputSource, Probe, ProbeFailed, ProcessOutput } from "./Probe.ts"
import { readyWait } from "./ReadyWait.ts"

/**
 * What to run and how to manage it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessManagerOptions {
  /** The name in errors and logs (default: the command). */
  readonly name?: string | undefined
  readonly command: string
  readonly args?: ReadonlyArray<string> | undefined
  /** Variables to set (undefined removes one); added to ours unless `extendEnv: false`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  readonly extendEnv?: boolean | undefined
  readonly cwd?: string | undefined
  /** How to tell it is ready and healthy. */
  readonly probe: Probe
  /** The signal `stop` sends to the process group first (default SIGTERM). */
  readonly stopSignal?: ChildProcess.Signal | undefined
  /** How long after the stop signal the group gets SIGKILL (default 5 s). */
  readonly stopGrace?: Duration.Input | undefined
  /** The default timeout of `start` and `readyWait` (default 10 s). */
  readonly startTimeout?: Duration.Input | undefined
  /** Spacing of readiness checks (default `ReadyWait.defaultSchedule`). */
  readonly readySchedule?: Schedule.Schedule<unknown, ProbeFailed> | undefined
  /** Check readiness also whenever the process writes a line (default true). */
  readonly checkOnOutput?: boolean | undefined
  /**
   * Restart the process when it exits without being stopped, after the delays of this schedule
   * (its input is the exit status). When it gives up, `wait` fails with RestartLimit. A process
   * that ran for `Backoff.stablePeriodMillis` (30 s) or longer before it exited starts the
   * schedule afresh: its first delay, and its whole count of restarts again. A `start` while a
   * restart is pending starts the process at once in place of that restart. Default: no
   * restarts.
   */
  readonly restart?: Schedule.Schedule<unknown, ExitStatus> | undefined
  /** Copy the process's output lines to our stdout and stderr (default false). */
  readonly echo?: boolean | undefined
  /**
   * Runs before each `start` spawns (not before restarts), e.g. `addressFreeCheck`, so that a
   * stale server already listening is reported instead of being mistaken for this one.
   */
  readonly beforeStart?: Effect.Effect<void, WorkerError> | undefined
}

/** The Clock's time in milliseconds. */
const currentTimeMillis: Effect.Effect<number> = Effect.clockWith((clock) => clock.currentTimeMillis)

/** How many lines of stderr are kept for errors. */
const tailLines = 40

/** One run of the process, from spawn to reaping. */
interface Run {
  readonly handle: ChildProcessHandle
  /** Owns the process (its release kills the process group) and the fibers reading its output. */
  readonly scope: Scope.Closeable
  /** When it was spawned (Clock milliseconds). */
  readonly startedAt: number
  readonly exited: Deferred.Deferred<ExitStatus>
  readonly check: Effect.Effect<void, ProbeFailed>
  readonly nudge: Latch.Latch
  readonly stderrTail: () => string
}

/**
 * The signal of an exit by signal. Effect's handle fails `exitCode` with a PlatformError whose
 * cause names the signal ("...receipt of signal: 'SIGKILL'"): the only place the spawner exposes it.
 */
const signalOf = (error: PlatformError.PlatformError): string => {
  const text = "cause" in error.reason ? String(error.reason.cause) : error.message
  return /signal: '?(SIG[A-Z0-9]+)/.exec(text)?.[1] ?? "unknown signal"
}

/**
 * Makes a manager for a command, not started. Closing the scope stops the process.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: ProcessManagerOptions
): Effect.Effect<Manager.ManagerShape, never, ChildProcessSpawner | Scope.Scope> =>
  Effect.gen(function* () {
    const name = options.name ?? options.command
    // Runs live in a scope of their own under the manager's, made before the stop finalizer
    // below is added: finalizers run in reverse, so the graceful stop comes first and closing
    // this scope (which SIGKILLs whatever a failed stop left) after it.
    const runsScope = yield* Scope.fork(yield* Effect.scope)
    const spawner = yield* Effect.context<ChildProcessSpawner>()
    const startTimeout = options.startTimeout ?? "10 seconds"
    const stopSignal = options.stopSignal ?? "SIGTERM"
    const stopGrace = options.stopGrace ?? "5 seconds"
    const lock = yield* Semaphore.make(1)

    let current: Run | undefined
    let supervisor: Fiber.Fiber<void> | undefined
    /** Completed when the latest start's process has exited for good. */
    let final: Deferred.Deferred<ExitStatus, WorkerError> | undefined
    let stopping = false

    const workerError = (reason: WorkerError["reason"], detail: string, stderr: string, cause?: unknown) =>
      new WorkerError(cause === undefined ? { name, reason, detail, stderr } : { name, reason, detail, stderr, cause })

    const spawn: Effect.Effect<Run, WorkerError> = Effect.gen(function* () {
      const scope = yield* Scope.fork(runsScope)
      const command = ChildProcess.make(options.command, options.args ?? [], {
        cwd: options.cwd,
        env: options.env,
        extendEnv: options.extendEnv ?? true,
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
        // What the spawner's release does when the scope closes with the process still there.
        killSignal: stopSignal,
        forceKillAfter: stopGrace
      })
      const handle = yield* command.pipe(
        Scope.provide(scope),
        Effect.provideContext(spawner),
        Effect.catch((error) =>
          Scope.close(scope, Exit.void).pipe(
            Effect.andThen(Effect.fail(workerError("SpawnFailed", `cannot start: ${error.message}`, "", error)))
          )
        )
      )
      const listeners = new Set<(line: string, source: OutputSource) => void>()
      const output: ProcessOutput = {
        onLine: (listener) =>
          Effect.acquireRelease(
            Effect.sync(() => listeners.add(listener)),
            () => Effect.sync(() => listeners.delete(listener))
          ).pipe(Effect.asVoid)
      }
      const check = yield* options.probe.prepare(output).pipe(Scope.provide(scope))
      const nudge = Latch.makeUnsafe(false)
      const checkOnOutput = options.checkOnOutput ?? true
      const stderrLines: Array<string> = []
      const stderrDone = Deferred.makeUnsafe<void>()
      // Both pipes are always read: a pipe nobody reads fills up and blocks the process.
      const drain = (stream: Stream.Stream<Uint8Array, PlatformError.PlatformError>, source: OutputSource) =>
        stream.pipe(
          Stream.decodeText(),
          Stream.splitLines,
          Stream.runForEach((line) =>
            Effect.sync(() => {
              if (source === "stderr") {
                stderrLines.push(line)
                if (stderrLines.length > tailLines) stderrLines.shift()
              }
              for (const listener of listeners) listener(line, source)
              if (options.echo === true) process[source].write(`${line}\n`)
              if (checkOnOutput) nudge.openUnsafe()
            })
          ),
          Effect.catch((error) => Effect.logWarning(`${name}: reading its ${source} failed`, error))
        )
      // The readers and the exit watcher live in the manager's scope, not the run's: closing
      // the run's scope is how a run is stopped, and they must see the end of it.
      yield* drain(handle.stdout, "stdout").pipe(Effect.forkIn(runsScope))
      yield* drain(handle.stderr, "stderr").pipe(
        Effect.ensuring(Deferred.done(stderrDone, Exit.void)),
        Effect.forkIn(runsScope)
      )
      const exited = Deferred.makeUnsafe<ExitStatus>()
      yield* handle.exitCode.pipe(
        Effect.map((code): ExitStatus => ({ code, signal: null })),
        Effect.catch((error) => Effect.succeed<ExitStatus>({ code: null, signal: signalOf(error) })),
        // The last words on stderr can arrive after the exit; a process it started may keep the
        // pipe open for good, hence the bound.
        Effect.tap(() => Deferred.await(stderrDone).pipe(Effect.timeoutOption("200 millis"))),
        Effect.flatMap((status) => Deferred.succeed(exited, status)),
        Effect.forkIn(runsScope)
      )
      const startedAt = yield* currentTimeMillis
      return { handle, scope, startedAt, exited, check, nudge, stderrTail: () => stderrLines.join("\n") }
    })

    /** After the exit: kills what is left of the process group and releases the run. */
    const reap = (run: Run) => Scope.close(run.scope, Exit.void)

    /** Waits for the run's exit; then, with a restart policy, respawns on its schedule. */
    const supervise = (first: Run, done: Deferred.Deferred<ExitStatus, WorkerError>): Effect.Effect<void> => {
      const once = (run: Run) => Deferred.await(run.exited).pipe(Effect.tap(() => (stopping ? Effect.void : reap(run))))
      const restart = options.restart
      if (restart === undefined) {
        return once(first).pipe(
          Effect.flatMap((status) => Deferred.succeed(done, status)),
          Effect.asVoid
        )
      }
      /** A fresh start of the schedule: the delay before the next restart, undefined once it gives up. */
      const freshStep = Schedule.toStep(restart).pipe(
        Effect.map(
          (step) =>
            (now: number, status: ExitStatus): Effect.Effect<Duration.Duration | undefined> =>
              Effect.match(step(now, status), {
                onFailure: () => undefined,
                onSuccess: ([, delay]) => delay
              })
        )
      )
      return Effect.gen(function* () {
        let run = first
        let step: ((now: number, status: ExitStatus) => Effect.Effect<Duration.Duration | undefined>) | undefined
        while (true) {
          const status = yield* once(run)
          const now = yield* currentTimeMillis
          // A run that stayed up for the stable period died of something new: back to the
          // schedule's first delay (as the prefork pool does with its workers).
          if (step === undefined || now - run.startedAt >= stablePeriodMillis) step = yield* freshStep
          const delay = yield* step(now, status)
          if (delay === undefined) {
            return yield* Deferred.fail(
              done,
              workerError("RestartLimit", "kept exiting; its restart policy gave up", run.stderrTail())
            )
          }
          yield* Effect.sleep(delay)
          // Uninterruptible, so a stop that interrupts this fiber cannot come between the spawn
          // and the assignment: a process `stopNow` does not know of would be left running
          // until the manager's scope closes.
          run = yield* Effect.uninterruptible(
            spawn.pipe(Effect.tap((fresh) => Effect.sync(() => void (current = fresh))))
          )
        }
      }).pipe(
        Effect.catch((error) => Deferred.fail(done, error)),
        Effect.asVoid
      )
    }

    /** How long `stopNow` waits for the exit of a process it reaped before giving up on it. */
    const exitSeenWithin = "2 seconds"

    // Uninterruptible: once it has taken the run, the run is reaped and `final` completed, or a
    // `wait` would never return (readyWait's kill once ran inside a race that interrupted it).
    const stopNow: Effect.Effect<void> = Effect.uninterruptible(
      Effect.gen(function* () {
        stopping = true
        const fiber = supervisor
        supervisor = undefined
        if (fiber !== undefined) yield* Fiber.interrupt(fiber)
        const run = current
        current = undefined
        if (run === undefined) return
        // Closing the run's scope is the stop: the spawner's release signals the process group
        // with the stop signal, SIGKILLs it after the grace period, and returns once the group
        // is gone (bounded: see NodeChildProcessSpawner's module doc). Calling `handle.kill`
        // first would run that sequence twice, since the release does it again.
        yield* reap(run)
        // Exited by now; the bound covers an exit event that would never come.
        const status = yield* Deferred.await(run.exited).pipe(Effect.timeoutOption(exitSeenWithin))
        if (final === undefined) return
        if (status._tag === "Some") yield* Deferred.succeed(final, status.value)
        else {
          yield* Deferred.fail(
            final,
            workerError(
              "ExitUnknown",
              `stopped, but its exit was not seen within ${Duration.format(Duration.fromInputUnsafe(exitSeenWithin))}`,
              run.stderrTail()
            )
          )
        }
      })
    )

    const readyWaitOn = (run: Run, timeout: Duration.Input) =>
      readyWait({
        name,
        check: run.check,
        exited: Deferred.await(run.exited),
        stderrTail: run.stderrTail,
        kill: lock.withPermit(stopNow),
        timeout,
        schedule: options.readySchedule,
        nudge: run.nudge
      })

    const notStarted = () => workerError("NotStarted", "not started", "")

    /**
     * Ends the supervision of a run that has exited (its restart may be pending): after this,
     * either a run is alive again (spawned by the supervisor meanwhile, now supervised afresh)
     * or the last run is reaped and the last start's `final` has its status.
     */
    const endSupervision = Effect.gen(function* () {
      const fiber = supervisor
      supervisor = undefined
      if (fiber !== undefined) yield* Fiber.interrupt(fiber)
      const run = current
      if (run === undefined || final === undefined) return
      if (!Deferred.isDoneUnsafe(run.exited)) {
        supervisor = yield* supervise(run, final).pipe(Effect.forkIn(runsScope))
        return
      }
      yield* reap(run)
      yield* Deferred.succeed(final, yield* Deferred.await(run.exited))
    })

    const start = (startOptions: Manager.StartOptions = {}): Effect.Effect<void, WorkerError> =>
      Effect.gen(function* () {
        const run = yield* lock.withPermit(
          Effect.gen(function* () {
            if (current !== undefined && !Deferred.isDoneUnsafe(current.exited)) return current
            // A restart may be pending: this start replaces it, or the supervisor's respawn
            // after its backoff would run a second process beside this one.
            yield* Effect.uninterruptible(endSupervision)
            if (current !== undefined && !Deferred.isDoneUnsafe(current.exited)) return current
            stopping = false
            if (options.beforeStart !== undefined) yield* options.beforeStart
            // Uninterruptible from the spawn until the run is recorded and supervised, so an
            // interrupted start cannot leave a process that `stop` does not know of.
            return yield* Effect.uninterruptible(
              Effect.gen(function* () {
                const fresh = yield* spawn
                current = fresh
                const done = Deferred.makeUnsafe<ExitStatus, WorkerError>()
                final = done
                supervisor = yield* supervise(fresh, done).pipe(Effect.forkIn(runsScope))
                return fresh
              })
            )
          })
        )
        if (startOptions.wait === false) return
        yield* readyWaitOn(run, startOptions.timeout ?? startTimeout).pipe(
          // A process that is not ready is not left running (nor restarting).
          Effect.tapError(() => lock.withPermit(stopNow))
        )
      })

    const stop = (stopOptions: Manager.StopOptions = {}): Effect.Effect<void> =>
      stopOptions.wait === false
        ? lock.withPermit(stopNow).pipe(Effect.forkIn(runsScope), Effect.asVoid)
        : lock.withPermit(stopNow)

    const health: Effect.Effect<void, WorkerError> = Effect.suspend(() => {
      const run = current
      if (run === undefined) return Effect.fail(notStarted())
      return Deferred.poll(run.exited).pipe(
        Effect.flatMap((exited) =>
          exited._tag === "Some"
            ? exited.value.pipe(
                Effect.flatMap((status) =>
                  Effect.fail(workerError("ExitedEarly", `exited (${describeExitStatus(status)})`, run.stderrTail()))
                )
              )
            : run.check.pipe(
                Effect.mapError((failure) =>
                  workerError("Unhealthy", `health check failed: ${failure.message}`, run.stderrTail(), failure)
                )
              )
        )
      )
    })

    const wait: Effect.Effect<ExitStatus, WorkerError> = Effect.suspend(() =>
      final === undefined ? Effect.fail(notStarted()) : Deferred.await(final)
    )

    const readyWaitPublic = (timeout?: Duration.Input): Effect.Effect<void, WorkerError> =>
      Effect.suspend(() =>
        current === undefined ? Effect.fail(notStarted()) : readyWaitOn(current, timeout ?? startTimeout)
      )

    yield* Effect.addFinalizer(() => lock.withPermit(stopNow))

    return {
      name,
      start,
      stop,
      wait,
      health,
      readyWait: readyWaitPublic,
      // Undefined once the process exited: its pid may already be another process's.
      pid: Effect.sync(() =>
        current === undefined || Deferred.isDoneUnsafe(current.exited) ? undefined : Number(current.handle.pid)
      )
    }
  })

/**
 * The manager as a Layer providing `Manager.Manager`: acquiring starts the command and waits
 * until its probe passes, releasing stops it.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: ProcessManagerOptions,
  startOptions?: Manager.StartOptions
): Layer.Layer<Manager.Manager, WorkerError, ChildProcessSpawner> => Manager.layer(make(options), startOptions)

/**
 * `layer` under a key of one's own, for a stack of several managers.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerAs = <I>(
  key: Context.Key<I, Manager.ManagerShape>,
  options: ProcessManagerOptions,
  startOptions?: Manager.StartOptions
): Layer.Layer<I, WorkerError, ChildProcessSpawner> => Manager.layerAs(key, make(options), startOptions)
