/**
 * The body buffer between a connection and the app, driven directly.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Effect, Fiber } from "effect"
import { BodyReader } from "../../src/gateway/BodyReader.ts"

/** Pulls until the body ends, returning the bytes in order. */
const readAll = (reader: BodyReader) =>
  Effect.gen(function* () {
    const parts: Array<string> = []
    for (;;) {
      const next = yield* Effect.result(reader.pull)
      if (next._tag === "Success") {
        for (const chunk of next.success) parts.push(Buffer.from(chunk).toString())
        continue
      }
      if (Cause.isDone(next.failure)) return parts.join("")
      return yield* Effect.fail(next.failure)
    }
  })

describe("BodyReader", () => {
  it.effect("keeps every chunk when the source delivers the rest of the body from inside demand", () =>
    Effect.gen(function* () {
      let reader: BodyReader | undefined
      let delivered = false
      // A source that, asked for more, hands over the last bytes and the end at once, as a
      // connection does when they are already in its buffer.
      reader = new BodyReader(
        {
          demand: () => {
            if (delivered || reader === undefined || reader.received === 0) return
            delivered = true
            reader.push(Buffer.from("-second"))
            reader.end()
          }
        },
        1024
      )
      const current = reader
      const body = yield* Effect.forkChild(readAll(current))
      yield* Effect.yieldNow
      current.push(Buffer.from("first"))
      expect(yield* Fiber.join(body)).toBe("first-second")
    })
  )

  it.effect("fails with MaxSizeExceeded beyond its limit", () =>
    Effect.gen(function* () {
      const reader = new BodyReader({ demand: () => {} }, 4)
      expect(reader.push(Buffer.from("12345"))).toBe(false)
      const failure = yield* Effect.flip(readAll(reader))
      expect(failure._tag).toBe("MaxSizeExceeded")
    })
  )
})
