/**
 * Polling for a condition in tests that watch a server from outside.
 */
import { Effect } from "effect"

/** Polls `done` every 10 ms; false if it did not hold within `timeoutMs`. */
export const waitFor = (done: Effect.Effect<boolean>, timeoutMs: number): Effect.Effect<boolean> =>
  Effect.gen(function* () {
    const until = performance.now() + timeoutMs
    while (!(yield* done)) {
      if (performance.now() > until) return false
      yield* Effect.sleep(10)
    }
    return true
  })

/** `waitFor` of a plain condition. */
export const waitUntil = (done: () => boolean, timeoutMs: number): Effect.Effect<boolean> =>
  waitFor(Effect.sync(done), timeoutMs)
