/**
 * What dispatch `primary` adds to the pool, over real worker processes and sockets, for one way
 * clients reach it (a `Front`): connections spread over the workers by their open connections
 * (not as the kernel's accept queue happens to give them out), a worker at workerConcurrency
 * gets none while another has room, and connections that find no room wait in a bounded queue,
 * then get 503. dispatch-http.test.ts and dispatch-scgi-nginx.test.ts run it.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { answersByPid, startLoad } from "../helpers/load.ts"
import { connect, type Front, get, leftovers, mostWorkers, startPool } from "../helpers/prefork.ts"
import { request } from "../helpers/raw.ts"
import { waitFor } from "../helpers/wait.ts"

const pidOf = (answer: { status: number; body: string } | { error: string }): string =>
  "body" in answer ? answer.body.split(" ")[0] : `error ${answer.error}`

export const dispatchSuite = (front: Front): void => {
  const protocol = front.protocol

  afterAll(async () => {
    expect(await leftovers()).toEqual([])
  })

  describe(`Prefork dispatch primary, ${front.name}`, () => {
    if (protocol === "http") {
      // The research note measured the shared socket giving one worker 34-49 of 51 keep-alive
      // connections; handed out by the primary, each worker gets its share.
      it.live(
        "spreads keep-alive connections evenly: 10 clients over 2 workers, 5 each",
        () =>
          Effect.scoped(
            Effect.gen(function* () {
              const { port } = yield* startPool({ protocol, workers: 2, dispatch: "primary" })
              const url = yield* front.url(port)
              const report = yield* Effect.promise(() => startLoad(url, { clients: 10, requests: 200 }).done)
              expect(report.failures).toEqual([])
              // every client stays on the worker its connection was handed to
              const workerOf = new Map<number, number>()
              for (const answer of report.answers) {
                expect(workerOf.get(answer.client) ?? answer.pid).toBe(answer.pid)
                workerOf.set(answer.client, answer.pid)
              }
              const clientsPerWorker = new Map<number, number>()
              for (const pid of workerOf.values()) clientsPerWorker.set(pid, (clientsPerWorker.get(pid) ?? 0) + 1)
              expect([...clientsPerWorker.values()]).toEqual([5, 5])
            })
          ),
        20_000
      )
    }

    it.live(
      "connections made one after another go round the workers",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const { port } = yield* startPool({ protocol, workers: 2, dispatch: "primary" })
            const url = yield* front.url(port)
            const report = yield* Effect.promise(
              () => startLoad(url, { clients: 1, requests: 40, connectionPerRequest: true }).done
            )
            expect(report.failures).toEqual([])
            const shares = [...answersByPid(report.answers).values()]
            expect(shares).toHaveLength(2)
            expect(Math.min(...shares)).toBeGreaterThanOrEqual(16)
          })
        ),
      20_000
    )

    // The spawn-on-demand test: with workerConcurrency 1, a worker waiting in /sleep has no
    // room, so the next connection goes to another worker, started for it if need be (with a
    // shared socket, the sleeping worker would accept it and queue it: pool-suite uses /block).
    it.live(
      "spawns on demand: three concurrent /sleep requests, three workers, back to one when idle",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const { pool, port } = yield* startPool({
              protocol,
              dispatch: "primary",
              minWorkers: 1,
              maxWorkers: 3,
              workerConcurrency: 1,
              idleWorkerTimeout: 0.5
            })
            const url = yield* front.url(port)
            const most = yield* mostWorkers(pool)
            const answers = yield* Effect.promise(() =>
              Promise.all([get(`${url}/sleep?ms=2000`), get(`${url}/sleep?ms=2000`), get(`${url}/sleep?ms=2000`)])
            )
            expect(answers.map((a) => ("status" in a ? a.status : a.error))).toEqual([200, 200, 200])
            expect(new Set(answers.map(pidOf)).size).toBe(3)
            const shrunk = yield* waitFor(
              Effect.map(pool.snapshot, (s) => s.workers.length === 1),
              5_000
            )
            expect(shrunk).toBe(true)
            expect(most()).toBe(3)
          })
        ),
      30_000
    )

    it.live(
      "a connection that finds no worker with room waits up to requestQueueTimeout, then gets 503; the next is served",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const { port } = yield* startPool({
              protocol,
              dispatch: "primary",
              workers: 1,
              workerConcurrency: 1,
              server: { requestQueueTimeout: 0.5 }
            })
            const url = yield* front.url(port)
            const busy = get(`${url}/sleep?ms=2500`)
            yield* Effect.sleep(300)
            const started = performance.now()
            const waited = yield* Effect.promise(() => get(`${url}/pid`))
            const after = performance.now() - started
            expect(waited).toEqual({ status: 503, body: "no worker is free to take the connection\n" })
            expect(after).toBeGreaterThanOrEqual(450)
            expect(after).toBeLessThan(1_500)
            expect(yield* Effect.promise(() => busy)).toMatchObject({ status: 200 })
            expect(yield* Effect.promise(() => get(`${url}/pid`))).toMatchObject({ status: 200 })
          })
        ),
      20_000
    )

    // Connections handed over faster than a worker acknowledges them queue in Node's channel,
    // and a Stop queued behind them must not overtake them (it was sent as a SIGTERM, and the
    // connection on its way was reset).
    it.live(
      "reloads twice under connection-per-request load: every worker replaced, no request failed",
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const { pool, port, pids } = yield* startPool({ protocol, workers: 2, dispatch: "primary" })
            const url = yield* front.url(port)
            const before = yield* pids
            const load = startLoad(url, { clients: 30, connectionPerRequest: true })
            for (let round = 0; round < 2; round++) {
              yield* Effect.sleep(700)
              yield* pool.reload
              const replaced = yield* waitFor(
                Effect.map(
                  pool.snapshot,
                  (s) => s.workers.length === 2 && s.workers.every((w) => w.state === "idle" || w.state === "busy")
                ),
                10_000
              )
              expect(replaced).toBe(true)
            }
            yield* Effect.sleep(300)
            const report = yield* Effect.promise(() => load.stop())
            expect(report.failures).toEqual([])
            expect(report.answers.length).toBeGreaterThan(100)
            expect((yield* pids).filter((pid) => before.includes(pid))).toEqual([])
          })
        ),
      30_000
    )

    if (protocol === "http") {
      it.live(
        "the queue holds at most backlog connections: one more is refused at once",
        () =>
          Effect.scoped(
            Effect.gen(function* () {
              const { pool, port } = yield* startPool({
                protocol,
                dispatch: "primary",
                workers: 1,
                workerConcurrency: 1,
                server: { backlog: 1, requestQueueTimeout: 5 }
              })
              const url = `http://127.0.0.1:${port}`
              const holder = get(`${url}/sleep?ms=1500`)
              const busy = yield* waitFor(
                Effect.map(pool.snapshot, (s) => s.workers[0]?.state === "busy"),
                2_000
              )
              expect(busy).toBe(true)
              const waiting = yield* connect(port)
              yield* Effect.sleep(100)
              const started = performance.now()
              const refused = yield* (yield* connect(port)).exchange(request("GET /pid HTTP/1.1", "Host: x"))
              expect(performance.now() - started).toBeLessThan(1_000)
              expect(refused).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/)
              expect(refused).toContain("\r\nconnection: close\r\n")
              // the request holding the worker, then the connection that waited, are served
              expect(yield* Effect.promise(() => holder)).toMatchObject({ status: 200 })
              const second = yield* waiting.exchange(request("GET /pid HTTP/1.1", "Host: x", "Connection: close"))
              expect(second).toMatch(/^HTTP\/1\.1 200 /)
            })
          ),
        20_000
      )
    }
  })
}
