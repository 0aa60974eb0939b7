/**
 * The end-of-turn write batch (src/conn/WriteBatch.ts): connections that handled input in one turn
 * of the event loop write after it, each once, in the order they finished; none is lost, also when
 * a flush queues more output.
 */
import { describe, expect, it } from "vitest"
import { deferFlush } from "../../src/conn/WriteBatch.ts"

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

describe("WriteBatch", () => {
  it("flushes every queued connection once, after the current turn, in the order they were queued", async () => {
    const flushed: Array<string> = []
    const connection = (name: string) => ({ flushDeferred: () => flushed.push(name) })
    const a = connection("a")
    const b = connection("b")
    deferFlush(a)
    deferFlush(b)
    expect(flushed).toEqual([])
    await Promise.resolve()
    // not in the microtasks of this turn either: after its I/O callbacks
    expect(flushed).toEqual([])
    await nextTurn()
    expect(flushed).toEqual(["a", "b"])
    await nextTurn()
    expect(flushed).toEqual(["a", "b"])
  })

  it("flushes output queued while the batch is written on the next turn, not never", async () => {
    const flushed: Array<string> = []
    const late = { flushDeferred: () => flushed.push("late") }
    deferFlush({
      flushDeferred: () => {
        flushed.push("first")
        deferFlush(late)
      }
    })
    await nextTurn()
    expect(flushed).toEqual(["first"])
    await nextTurn()
    expect(flushed).toEqual(["first", "late"])
  })
})
