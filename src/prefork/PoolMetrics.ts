/**
 * The prefork pool's figures as Effect Metrics (names prefixed `appserver_`), read from the
 * pool when metrics are read: workers by state, requests served and in flight (all workers, and
 * each live worker with `worker` and `pid` attributes), restarts, and exits by kind. Each
 * worker's server statistics too (the same metrics as a single server's, `registerSnapshotMetrics`,
 * with `worker` and `pid` attributes), as the worker last reported them: the primary's registry
 * holds the whole pool's figures, which Prometheus text shows as one series per worker, summed
 * with the usual `sum by`.
 *
 * @since 0.1.0
 */
import { Effect, Exit, type Metric, Scope } from "effect"
import { registerCounter, registerGauge } from "../stats/MetricHooks.ts"
import { registerSnapshotMetrics, type StatsSnapshot } from "../stats/ServerStats.ts"
import { exitKinds, type PoolSnapshot, type WorkerState } from "./Pool.ts"

const prefix = "appserver_"

const states: ReadonlyArray<WorkerState> = ["starting", "idle", "busy", "retiring"]

/**
 * Registers the pool's metrics for the rest of the scope. Per-worker series follow the workers:
 * a worker's series is registered when `sync` first sees it and removed when it has gone.
 *
 * @since 0.1.0
 */
export const registerPoolMetrics = (
  snapshot: () => PoolSnapshot,
  server: string
): Effect.Effect<{ readonly sync: () => void }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Effect.context<never>()
    const at = { server }
    const registrations: Array<Metric.Registration> = []
    const gauge = (name: string, description: string, attributes: Record<string, string>, read: () => number) =>
      registerGauge(context, prefix + name, description, attributes, read)
    const counter = (name: string, description: string, attributes: Record<string, string>, read: () => number) =>
      registerCounter(context, prefix + name, description, attributes, read)
    for (const state of states) {
      registrations.push(
        gauge("workers", "Worker processes by state", { ...at, state }, () =>
          snapshot().workers.reduce((n, w) => (w.state === state ? n + 1 : n), 0)
        )
      )
    }
    registrations.push(
      counter("worker_restarts_total", "Workers started in place of ones that died", at, () => snapshot().restarts),
      counter("worker_requests_total", "Requests served by all workers", at, () => snapshot().served)
    )
    for (const kind of exitKinds) {
      registrations.push(
        counter("worker_exits_total", "Worker exits by kind", { ...at, kind }, () => snapshot().exitCounts[kind])
      )
    }
    // Per worker: registered as workers appear, removed when they have gone.
    const perWorker = new Map<number, ReadonlyArray<Metric.Registration>>()
    // Its server's metrics, once it has reported them: their registrations live in a scope of
    // their own, closed when it has gone.
    const serverMetrics = new Map<number, { readonly scope: Scope.Closeable; readonly sync: () => void }>()
    // Once removed (the scope closed), a late sync registers nothing again.
    let removed = false
    const sync = () => {
      if (removed) return
      const current = snapshot().workers
      const live = new Set(current.map((w) => w.id))
      for (const [id, regs] of perWorker) {
        if (live.has(id)) continue
        for (const reg of regs) reg.remove()
        perWorker.delete(id)
      }
      for (const [id, metrics] of serverMetrics) {
        if (live.has(id)) continue
        Effect.runSync(Scope.close(metrics.scope, Exit.void))
        serverMetrics.delete(id)
      }
      for (const w of current) {
        const known = serverMetrics.get(w.id)
        if (known !== undefined) known.sync()
        else if (w.stats !== undefined) {
          const scope = Scope.makeUnsafe()
          const latest = (): StatsSnapshot | undefined => snapshot().workers.find((x) => x.id === w.id)?.stats
          const first = w.stats
          const registered = Effect.runSyncWith(context)(
            Scope.provide(scope)(
              registerSnapshotMetrics(() => latest() ?? first, { ...at, worker: String(w.id), pid: String(w.pid) })
            )
          )
          serverMetrics.set(w.id, { scope, sync: registered.sync })
        }
        if (perWorker.has(w.id)) continue
        const attributes = { ...at, worker: String(w.id), pid: String(w.pid) }
        const find = () => snapshot().workers.find((x) => x.id === w.id)
        perWorker.set(w.id, [
          gauge("worker_served", "Requests a worker has served", attributes, () => find()?.served ?? 0),
          gauge("worker_in_flight", "Requests a worker is running", attributes, () => find()?.inFlight ?? 0),
          gauge("worker_age_seconds", "Seconds since a worker was started", attributes, () => find()?.age ?? 0)
        ])
      }
    }
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const reg of registrations) reg.remove()
        for (const regs of perWorker.values()) for (const reg of regs) reg.remove()
        removed = true
        for (const metrics of serverMetrics.values()) Effect.runSync(Scope.close(metrics.scope, Exit.void))
        serverMetrics.clear()
      })
    )
    return { sync }
  })
