/**
 * The pool's two sizing signals beyond workerConcurrency, over real worker processes and sockets:
 * a worker whose event loop is saturated (event-loop utilisation over workerBusyUtilization)
 * counts as busy, and with a shared socket, connections left in its accept queue (no worker
 * accepting) make the pool grow; and the parsing of the kernel's table the second one reads.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { queueIn } from "../../src/prefork/AcceptQueue.ts"
import { get, leftovers, startPool } from "../helpers/prefork.ts"
import { waitFor } from "../helpers/wait.ts"

afterAll(async () => {
  expect(await leftovers()).toEqual([])
})

/** Clients sending `path` back to back until `until` (performance.now()). */
const hammer = (url: string, clients: number, until: number): Promise<unknown> =>
  Promise.all(
    Array.from({ length: clients }, async () => {
      while (performance.now() < until) await get(url)
    })
  )

describe("Prefork sizing: event-loop utilisation", () => {
  for (const threshold of [0.5, 0] as const) {
    it.live(
      threshold > 0
        ? "a worker whose event loop is saturated counts as busy: the pool grows to maxWorkers"
        : "with workerBusyUtilization 0 the same load leaves the pool at minWorkers",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const { pool, url } = yield* startPool({
              minWorkers: 1,
              maxWorkers: 2,
              workerBusyUtilization: threshold
            })
            // each request spins the CPU 20 ms: the one worker's event loop is busy all the time
            const load = hammer(`${url}/spin?ms=20`, 4, performance.now() + 3_500)
            const grew = yield* waitFor(
              Effect.map(pool.snapshot, (s) => s.workers.length === 2),
              3_000
            )
            yield* Effect.promise(() => load)
            expect(grew).toBe(threshold > 0)
          })
        ),
      20_000
    )
  }
})

describe("Prefork sizing: the shared socket's accept queue", () => {
  it.live(
    "a connection left in the accept queue while the only worker is blocked starts another worker, which answers it",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const { pool, url, pids } = yield* startPool({
            minWorkers: 1,
            maxWorkers: 2,
            workerBusyUtilization: 0,
            idleWorkerTimeout: 60
          })
          const [first] = yield* pids
          // not busy by any report: no workerConcurrency, and a blocked event loop reports nothing
          const blocked = get(`${url}/block?ms=5000`)
          yield* Effect.sleep(300)
          const started = performance.now()
          const answer = yield* Effect.promise(() => get(`${url}/pid`))
          const waited = performance.now() - started
          expect(answer).toMatchObject({ status: 200 })
          if ("body" in answer) expect(Number(answer.body.split(" ")[0])).not.toBe(first)
          // two checks of the queue (250 ms apart) and a boot, well before the block ends
          expect(waited).toBeLessThan(4_000)
          expect((yield* pool.snapshot).workers).toHaveLength(2)
          expect(yield* Effect.promise(() => blocked)).toMatchObject({ status: 200 })
        })
      ),
    20_000
  )

  it("reads a listening socket's queue length from /proc/net/tcp by its inode", () => {
    const table = [
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
      "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 424242 1 0000000000000000 100 0 0 10 0",
      "   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 424243 1 0000000000000000 20 4 30 10 -1",
      "   2: 0100007F:2000 00000000:0000 0A 00000000:0000001A 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0"
    ].join("\n")
    expect(queueIn(table, "424242")).toBe(3)
    expect(queueIn(table, "77")).toBe(26)
    // an established connection is not a listening socket
    expect(queueIn(table, "424243")).toBeUndefined()
    expect(queueIn(table, "1")).toBeUndefined()
  })
})
