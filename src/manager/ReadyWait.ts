/**
 * Waiting until a started process is ready: its health check polled on a Schedule, raced
 * against the process's exit (a process that dies while starting fails at once, with what it
 * wrote on stderr, instead of being polled until the timeout as wait-on does), bounded by a
 * timeout after which the process is killed.
 *
 * @since 0.1.0
 */
import { Duration, Effect, type Latch, Option, Schedule } from "effect"
import { WorkerError } from "../errors.ts"
import { describeExitStatus, type ExitStatus } from "../process/Exit.ts"
import type { ProbeFailed } from "./Probe.ts"

/**
 * How a process ended (shared with the prefork pool: `process/Exit.ts`).
 *
 * @since 0.1.0
 * @category models
 */
export type { ExitStatus }

/**
 * The default readiness polling: 5 ms, each wait a tenth longer than the last, at most 100 ms
 * apart. Each wait stays near a tenth of the time spent so far, so readiness is seen about 5% of
 * the startup time late on average (measured: median 12 ms, p95 27 ms for servers listening
 * 60-360 ms after spawn); the cap is reached after about 1 s and 32 checks, from then on ten
 * checks a second (servermgr polls every 500 ms). Doubling instead would reach the cap within
 * 300 ms and see a typical server 50 ms late. `readyWait`'s timeout bounds it.
 *
 * @since 0.1.0
 * @category schedules
 */
export const defaultSchedule: Schedule.Schedule<Duration.Duration> = Schedule.exponential("5 millis", 1.1).pipe(
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.millis(100))))
)

/**
 * What `readyWait` needs of a running process.
 *
 * @since 0.1.0
 * @category models
 */
export interface ReadyWaitOptions {
  /** The manager's name, for the error. */
  readonly name: string
  /** The health check. */
  readonly check: Effect.Effect<void, ProbeFailed>
  /** Completes when the process exits. */
  readonly exited: Effect.Effect<ExitStatus>
  /** The tail of its stderr, read when failing. */
  readonly stderrTail: () => string
  /** Stops the process when it is not ready in time or the schedule gives up. */
  readonly kill: Effect.Effect<void>
  readonly timeout: Duration.Input
  /** Spacing of the checks (default `defaultSchedule`); giving up fails with NotReady. */
  readonly schedule?: Schedule.Schedule<unknown, ProbeFailed> | undefined
  /**
   * Opened when the process writes output: an extra check right then, since servers tend to
   * log when they start listening. This is what makes readiness seen within a few ms of a
   * logged listen, whatever the schedule's current spacing.
   */
  readonly nudge?: Latch.Latch | undefined
}

/**
 * Polls `check` until it succeeds. Fails with `WorkerError`: `ExitedEarly` (with the stderr tail)
 * as soon as the process exits, `NotReady` (after killing the process) when `timeout` passes or
 * the schedule gives up, with the last probe failure as the cause.
 *
 * @since 0.1.0
 * @category waiting
 */
export const readyWait = (options: ReadyWaitOptions): Effect.Effect<void, WorkerError> =>
  Effect.suspend(() => {
    let last: ProbeFailed | undefined
    const check = options.check.pipe(Effect.tapError((failure) => Effect.sync(() => void (last = failure))))
    const notReady = (detail: string) =>
      new WorkerError({
        name: options.name,
        reason: "NotReady",
        detail: last === undefined ? detail : `${detail}; last check: ${last.message}`,
        stderr: options.stderrTail(),
        cause: last
      })
    // Succeeds with false when the schedule gives up. The kill happens outside the race below:
    // killing makes the process exit, and `died` would then win the race (and interrupt the
    // kill half way).
    const polled: Effect.Effect<boolean> = check.pipe(
      Effect.retry(options.schedule ?? defaultSchedule),
      Effect.as(true),
      Effect.catch(() => Effect.succeed(false))
    )
    // Checks on output: never fails, completes on the first healthy check.
    const nudge = options.nudge
    const nudged: Effect.Effect<void> =
      nudge === undefined
        ? Effect.never
        : Effect.gen(function* () {
            while (true) {
              yield* nudge.await
              yield* nudge.close
              const healthy = yield* Effect.isSuccess(check)
              if (healthy) return
            }
          })
    const died = options.exited.pipe(
      Effect.flatMap((status) =>
        Effect.fail(
          new WorkerError({
            name: options.name,
            reason: "ExitedEarly",
            detail: `exited while starting (${describeExitStatus(status)})`,
            stderr: options.stderrTail()
          })
        )
      )
    )
    const timeoutMillis = Duration.toMillis(Duration.fromInputUnsafe(options.timeout))
    return Effect.raceFirst(Effect.raceFirst(polled, Effect.as(nudged, true)), died).pipe(
      Effect.timeoutOption(options.timeout),
      Effect.flatMap((outcome) =>
        Option.isSome(outcome) && outcome.value
          ? Effect.void
          : options.kill.pipe(
              Effect.andThen(
                Effect.fail(
                  notReady(
                    Option.isSome(outcome)
                      ? "not ready: its readiness schedule gave up"
                      : `not ready within ${timeoutMillis} ms`
                  )
                )
              )
            )
      )
    )
  })
