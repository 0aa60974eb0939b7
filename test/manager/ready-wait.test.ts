/**
 * readyWait's policy under TestClock: polling on the schedule, failing at once on exit,
 * killing and failing NotReady on timeout or when the schedule gives up, and the extra check
 * on output.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Latch, Schedule } from "effect"
import * as TestClock from "effect/testing/TestClock"
import { ProbeFailed } from "../../src/manager/Probe.ts"
import { type ExitStatus, readyWait } from "../../src/manager/ReadyWait.ts"

/** A check that passes from the `passFrom`-th attempt on, counting attempts. */
const counted = (passFrom: number) => {
  let attempts = 0
  const check = Effect.suspend(() => {
    attempts++
    return attempts >= passFrom ? Effect.void : Effect.fail(new ProbeFailed({ probe: "fake", detail: "refused" }))
  })
  return { check, attempts: () => attempts }
}

describe("readyWait", () => {
  it.effect("polls on the schedule until the check passes", () =>
    Effect.gen(function* () {
      const probe = counted(4)
      const exited = yield* Deferred.make<ExitStatus>()
      let killed = false
      const fiber = yield* readyWait({
        name: "fake",
        check: probe.check,
        exited: Deferred.await(exited),
        stderrTail: () => "",
        kill: Effect.sync(() => void (killed = true)),
        timeout: "10 seconds",
        schedule: Schedule.spaced("100 millis")
      }).pipe(Effect.forkChild)
      yield* TestClock.adjust("250 millis")
      expect(probe.attempts()).toBe(3)
      expect(fiber.pollUnsafe()).toBe(undefined)
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(fiber)
      expect(probe.attempts()).toBe(4)
      expect(killed).toBe(false)
    })
  )

  it.effect("fails ExitedEarly at once when the process exits, with its stderr", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      const fiber = yield* readyWait({
        name: "fake",
        check: counted(1_000).check,
        exited: Deferred.await(exited),
        stderrTail: () => "boom",
        kill: Effect.void,
        timeout: "10 seconds"
      }).pipe(Effect.flip, Effect.forkChild)
      yield* TestClock.adjust("30 millis")
      yield* Deferred.succeed(exited, { code: 2, signal: null })
      const error = yield* Fiber.join(fiber)
      expect(error.reason).toBe("ExitedEarly")
      expect(error.detail).toContain("exit code 2")
      expect(error.stderr).toBe("boom")
    })
  )

  it.effect("kills the process and fails NotReady after the timeout, naming the last failure", () =>
    Effect.gen(function* () {
      let killed = false
      const fiber = yield* readyWait({
        name: "fake",
        check: counted(1_000).check,
        exited: Effect.never,
        stderrTail: () => "",
        kill: Effect.sync(() => void (killed = true)),
        timeout: "2 seconds"
      }).pipe(Effect.flip, Effect.forkChild)
      yield* TestClock.adjust("1999 millis")
      expect(killed).toBe(false)
      yield* TestClock.adjust("2 millis")
      const error = yield* Fiber.join(fiber)
      expect(killed).toBe(true)
      expect(error.reason).toBe("NotReady")
      expect(error.detail).toContain("not ready within 2000 ms; last check: fake: refused")
    })
  )

  it.effect("a schedule that gives up fails NotReady before the timeout", () =>
    Effect.gen(function* () {
      let killed = false
      const probe = counted(1_000)
      const fiber = yield* readyWait({
        name: "fake",
        check: probe.check,
        exited: Effect.never,
        stderrTail: () => "",
        kill: Effect.sync(() => void (killed = true)),
        timeout: "1 minute",
        schedule: Schedule.spaced("10 millis").pipe(Schedule.upTo({ times: 3 }))
      }).pipe(Effect.flip, Effect.forkChild)
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(fiber)
      expect(probe.attempts()).toBe(4)
      expect(killed).toBe(true)
      expect(error.detail).toContain("gave up")
    })
  )

  it.effect("a schedule that gives up kills, and fails NotReady even when the kill makes the process exit", () =>
    Effect.gen(function* () {
      const exited = yield* Deferred.make<ExitStatus>()
      let killed = false
      const fiber = yield* readyWait({
        name: "fake",
        check: counted(1_000).check,
        exited: Deferred.await(exited),
        stderrTail: () => "",
        // As a real kill does: the process exits, and the kill returns after that.
        kill: Deferred.succeed(exited, { code: null, signal: "SIGTERM" }).pipe(
          Effect.andThen(Effect.sleep("10 millis")),
          Effect.andThen(Effect.sync(() => void (killed = true)))
        ),
        timeout: "1 minute",
        schedule: Schedule.spaced("10 millis").pipe(Schedule.upTo({ times: 3 }))
      }).pipe(Effect.flip, Effect.forkChild)
      yield* TestClock.adjust("1 second")
      const error = yield* Fiber.join(fiber)
      expect(error.reason).toBe("NotReady")
      expect(error.detail).toContain("gave up")
      // The kill ran to its end: it was not interrupted by the exit it caused.
      expect(killed).toBe(true)
    })
  )

  it.effect("output nudges an extra check without waiting for the schedule", () =>
    Effect.gen(function* () {
      const probe = counted(2)
      const nudge = yield* Latch.make(false)
      const fiber = yield* readyWait({
        name: "fake",
        check: probe.check,
        exited: Effect.never,
        stderrTail: () => "",
        kill: Effect.void,
        timeout: "10 seconds",
        schedule: Schedule.spaced("1 second"),
        nudge
      }).pipe(Effect.forkChild)
      yield* TestClock.adjust("1 millis")
      expect(probe.attempts()).toBe(1)
      yield* nudge.open
      yield* Fiber.join(fiber)
      expect(probe.attempts()).toBe(2)
    })
  )
})
