/**
 * Restart policies as Schedules: how long to wait before starting again something that died.
 * A value each, so the policy is visible in one place, replaceable by the caller, and testable
 * with `TestClock`.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Schedule } from "effect"

/**
 * The default respawn delay after an unexpected exit: 100 ms, doubling, jittered ±20% (so
 * processes that died together do not restart together), at most 10 s. It never gives up: a
 * process that boots and then keeps dying is restarted, slowly. (A process that cannot boot at
 * all is another matter: the prefork pool halts after a few failed boots in a row.)
 *
 * @since 0.1.0
 */
export const restartBackoff: Schedule.Schedule<Duration.Duration, unknown> = Schedule.exponential("100 millis").pipe(
  Schedule.jittered,
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(10))))
)

/**
 * How long something must have run since its last start for a death to count as a new one: the
 * backoff starts again from its first delay (PM2 resets its backoff after 30 s up as well).
 *
 * @since 0.1.0
 */
export const stablePeriodMillis = 30_000
