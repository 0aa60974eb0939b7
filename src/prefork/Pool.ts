/**
 * The prefork primary's pool of workers (the role of gunicorn's arbiter and wsgitools' forkpool):
 * it starts workers, keeps at least `minWorkers` of them, adds one (up to `maxWorkers`) while
 * every worker is busy and retires extras idle for `idleWorkerTimeout`, recycles workers
 * (`maxRequests` plus jitter, `maxWorkerAge`, a user Schedule) with the replacement ready first,
 * replaces workers that die (spaced by a backoff Schedule), kills and replaces workers that miss
 * their heartbeat for `workerTimeout`, halts with a `WorkerError` when workers keep failing to
 * boot, reloads (new workers ready before old ones drain) and scales on request, and stops
 * gracefully.
 *
 * Decisions run on a tick of the pool's own fiber, from what the workers report over IPC
 * (`Ready`, `Load`, `Retire`, `BootFailed`) and from their exits.
 *
 * @since 0.1.0
 */
import type * as Net from "node:net"
import { type Cause, Clock, Deferred, Duration, Effect, type Fiber, Option, type Pull, Schedule } from "effect"
import type * as LogLevel from "effect/LogLevel"
import { WorkerError } from "../errors.ts"
import { stablePeriodMillis } from "../process/Backoff.ts"
import { describeExitStatus } from "../process/Exit.ts"
import { forkNode, type NodeChild } from "../process/NodeChild.ts"
import type { LogFormat } from "../stats/Logs.ts"
import type { StatsSnapshot } from "../stats/ServerStats.ts"
import { decodeFromWorker, type FromWorker, type OldestRequest, type StartWorker } from "./Messages.ts"

/**
 * What a pool runs and how. Times are in milliseconds, 0 for none.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolSpec {
  /** The module workers serve, `path[:export]`. */
  readonly module: string
  readonly protocol: "http" | "scgi"
  /** The server's options for the workers, without where to listen. */
  readonly server: Readonly<Record<string, unknown>>
  /**
   * The listening descriptor the workers inherit (their descriptor 3) and accept from; undefined
   * when the primary accepts and hands connections over (`hand`).
   */
  readonly listenFd: number | undefined
  readonly minWorkers: number
  readonly maxWorkers: number
  readonly maxRequests: number
  readonly maxRequestsJitter: number
  readonly maxWorkerAge: number
  readonly workerConcurrency: number
  readonly workerBusyUtilization: number
  readonly workerTimeout: number
  readonly idleWorkerTimeout: number
  readonly bootTimeout: number
  /** The server's shutdownTimeout: how long workers get to finish when they stop. */
  readonly shutdownTimeout: number
  /** Spacing of respawns after unexpected exits. */
  readonly restartBackoff: Schedule.Schedule<unknown, unknown>
  /** A worker retires when this ends; it is stepped once per request the worker served. */
  readonly recycle: Schedule.Schedule<unknown, unknown> | undefined
  /** The worker program and the Node flags to run it with. */
  readonly workerEntry: string
  readonly execArgv: ReadonlyArray<string>
  /** How the workers log: the primary's format and level. */
  readonly logFormat: LogFormat
  readonly logLevel: LogLevel.LogLevel
  /** The user and group the workers run as; undefined: this process's. */
  readonly identity: { readonly uid: number; readonly gid: number } | undefined
}

/**
 * A worker's state.
 *
 * @since 0.1.0
 * @category models
 */
export type WorkerState = "starting" | "idle" | "busy" | "retiring"

/**
 * One worker, as the pool's snapshot shows it.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerSnapshot {
  readonly id: number
  readonly pid: number
  readonly state: WorkerState
  readonly served: number
  readonly inFlight: number
  /** Seconds since it was started. */
  readonly age: number
  /** Its server's statistics as it last reported them (within a second of its requests). */
  readonly stats: StatsSnapshot | undefined
}

/**
 * Why a worker exited, in categories for metrics: retired (recycled or reloaded), idle (an extra
 * worker retired), scaled (down), stopped (with the pool), died (unexpectedly), killed (missed
 * its heartbeat), boot (failed to boot).
 *
 * @since 0.1.0
 * @category models
 */
export type ExitKind = "retired" | "idle" | "scaled" | "stopped" | "died" | "killed" | "boot"

/**
 * @since 0.1.0
 */
export const exitKinds: ReadonlyArray<ExitKind> = ["retired", "idle", "scaled", "stopped", "died", "killed", "boot"]

/**
 * A worker that has exited, with why.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerExit {
  readonly id: number
  readonly pid: number
  readonly kind: ExitKind
  /** "retired (maxRequests)", "died: signal SIGKILL", "killed: no heartbeat for 30 s", ... */
  readonly reason: string
  /** When, in ms since the epoch. */
  readonly at: number
}

/**
 * The pool at a point in time.
 *
 * @since 0.1.0
 * @category models
 */
export interface PoolSnapshot {
  readonly minWorkers: number
  readonly maxWorkers: number
  readonly workers: ReadonlyArray<WorkerSnapshot>
  /** Workers started in place of ones that died unexpectedly. */
  readonly restarts: number
  /** Requests served by all workers, those that have exited included. */
  readonly served: number
  /** Exits so far, by kind. */
  readonly exitCounts: Readonly<Record<ExitKind, number>>
  /** The most recent exits, newest last (at most 50). */
  readonly exits: ReadonlyArray<WorkerExit>
}

/** Failed boots in a row after which the pool halts rather than restart forever. */
const bootFailureLimit = 3
/** How long a worker that failed to boot has to exit and finish writing its stderr. */
const bootFailureGraceMillis = 2_000
/** After SIGABRT for a missed heartbeat, how long before SIGKILL. */
const abortGraceMillis = 1_000
/** Beyond the workers' shutdownTimeout, how long a stop waits before SIGKILL. */
const stopGraceMillis = 2_000
const keptExits = 50

class Worker {
  readonly id: number
  readonly child: NodeChild
  readonly startedAt: number
  readonly ready = Deferred.makeUnsafe<void, string>()
  state: WorkerState = "starting"
  readyAt = 0
  lastSeen: number
  served = 0
  inFlight = 0
  idleSince: number
  oldest: OldestRequest | null = null
  /** Why the pool stopped or retired it: its exit is expected. */
  stopReason: string | undefined
  stopKind: ExitKind = "stopped"
  stopSent = false
  /** Why the pool killed it. */
  killReason: string | undefined
  retireReason: string | undefined
  recycle: ((now: number, input: unknown) => Pull.Pull<unknown, unknown, unknown>) | undefined
  /** What to send when it says Hello. */
  start: StartWorker | undefined
  recycleServed = 0
  /** Dispatch `primary`: connections handed to it, and what its last report said. */
  handed = 0
  reportedConnections = 0
  reportedReceived = 0
  /** Its last report said it runs workerConcurrency requests. */
  full = false
  /** Its last report said its event loop was busy workerBusyUtilization of the last second. */
  hot = false
  /** Its server's statistics, from its last report. */
  stats: StatsSnapshot | undefined = undefined
  /** Its IPC channel is closed: it takes no more connections. */
  unreachable = false

  constructor(id: number, child: NodeChild, now: number) {
    this.id = id
    this.child = child
    this.startedAt = now
    this.lastSeen = now
    this.idleSince = now
  }

  get label(): string {
    return `worker ${this.id} (pid ${this.child.pid})`
  }

  /**
   * Its open connections as the primary can know them: what it last reported, plus those handed
   * over since that it had not yet received then.
   */
  get connections(): number {
    return this.reportedConnections + this.inTransit
  }

  /** Connections handed to it that it had not received at its last report. */
  get inTransit(): number {
    return this.handed - this.reportedReceived
  }
}

/**
 * @since 0.1.0
 * @category models
 */
export class Pool {
  private readonly spec: PoolSpec
  private readonly workers: Array<Worker> = []
  /** The pool is stopping (announceDraining): workers that become ready are told too. */
  private draining = false
  private readonly exits: Array<WorkerExit> = []
  private readonly exitCounts: Record<ExitKind, number> = {
    retired: 0,
    idle: 0,
    scaled: 0,
    stopped: 0,
    died: 0,
    killed: 0,
    boot: 0
  }
  /** Requests served by workers that have exited. */
  private servedByExited = 0
  private nextId = 0
  private restarts = 0
  private bootFailures = 0
  private minWorkers: number
  private maxWorkers: number
  /** No respawn before this time (the backoff after an unexpected exit). */
  private spawnAfter = 0
  private backoff: ((now: number) => Effect.Effect<number>) | undefined
  private lastCrash = 0
  private stopping = false
  /** Completes (failing) when the pool halts. */
  readonly halted = Deferred.makeUnsafe<never, WorkerError>()
  private readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>
  /** Dispatch `primary`: called when a worker may have room for waiting connections. */
  onCapacity: () => void = () => {}
  /**
   * Dispatch `primary`: takes back connections that were on their way to a worker that died
   * before they left this process (unread: another worker can serve them).
   */
  rehand: (sockets: ReadonlyArray<Net.Socket>) => void = (sockets) => {
    for (const socket of sockets) socket.destroy()
  }
  /**
   * Connections waiting for a worker (they make the pool grow): with dispatch `primary`, for one
   * with room; with a shared socket, in its accept queue.
   */
  queued: () => number = () => 0
  private handCursor = 0

  constructor(spec: PoolSpec, runFork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>) {
    this.spec = spec
    this.minWorkers = spec.minWorkers
    this.maxWorkers = Math.max(spec.maxWorkers, spec.minWorkers)
    this.runFork = runFork
  }

  snapshot(now: number): PoolSnapshot {
    return {
      minWorkers: this.minWorkers,
      maxWorkers: this.maxWorkers,
      workers: this.workers.map((w) => ({
        id: w.id,
        pid: w.child.pid,
        state: w.state,
        served: w.served,
        inFlight: w.inFlight,
        age: (now - w.startedAt) / 1000,
        stats: w.stats
      })),
      restarts: this.restarts,
      served: this.servedByExited + this.workers.reduce((sum, w) => sum + w.served, 0),
      exitCounts: { ...this.exitCounts },
      exits: [...this.exits]
    }
  }

  private get active(): Array<Worker> {
    return this.workers.filter((w) => w.state !== "retiring")
  }

  private get serving(): Array<Worker> {
    return this.workers.filter((w) => w.state === "idle" || w.state === "busy")
  }

  // Workers

  private spawn(now: number): Effect.Effect<void> {
    const self = this
    const id = ++this.nextId
    const spec = this.spec
    return Effect.gen(function* () {
      let worker: Worker | undefined
      // Messages that come before the worker is recorded wait for it.
      const early: Array<FromWorker> = []
      const child = yield* forkNode({
        name: `worker ${id}`,
        entry: spec.workerEntry,
        execArgv: spec.execArgv,
        fds: spec.listenFd === undefined ? [] : [spec.listenFd],
        identity: spec.identity,
        // Connections queued for it that never left: another worker takes them.
        onUnsentSockets: (sockets) => self.rehand(sockets),
        onMessage: (raw) => {
          const message = decodeFromWorker(raw)
          if (Option.isNone(message)) return
          if (worker === undefined) early.push(message.value)
          else self.onMessage(worker, message.value)
        }
      }).pipe(
        Effect.tapError((error) => Effect.logError(error.message)),
        Effect.option
      )
      if (Option.isNone(child)) {
        self.bootFailed(undefined, "could not be started", "")
        return
      }
      const started = new Worker(id, child.value, now)
      worker = started
      self.workers.push(started)
      const jitter = spec.maxRequestsJitter > 0 ? Math.floor(Math.random() * (spec.maxRequestsJitter + 1)) : 0
      const start: StartWorker = {
        _tag: "Start",
        id,
        module: spec.module,
        protocol: spec.protocol,
        server: spec.server,
        listen: spec.listenFd === undefined ? { _tag: "Handoff" } : { _tag: "Fd", fd: 3 },
        heartbeat: spec.workerTimeout > 0 ? Math.max(100, Math.floor(spec.workerTimeout / 4)) : 10_000,
        concurrency: spec.workerConcurrency,
        busyUtilization: spec.workerBusyUtilization,
        requestLimit: spec.maxRequests > 0 ? spec.maxRequests + jitter : 0,
        logFormat: spec.logFormat,
        logLevel: spec.logLevel
      }
      started.start = start
      if (spec.recycle !== undefined) started.recycle = yield* Schedule.toStep(spec.recycle)
      for (const message of early.splice(0)) self.onMessage(started, message)
      self.runFork(self.watch(started))
    })
  }

  /** Follows a worker from its start to its exit. */
  private watch(worker: Worker): Effect.Effect<void> {
    const self = this
    const spec = this.spec
    return Effect.gen(function* () {
      const timeout = `not ready within ${spec.bootTimeout / 1000} s`
      const boot = yield* Effect.raceFirst(
        Effect.map(Effect.exit(Deferred.await(worker.ready)), (exit) =>
          exit._tag === "Success" ? undefined : Option.getOrElse(exitFailure(exit.cause), () => "failed to boot")
        ),
        Effect.raceFirst(
          Effect.map(worker.child.exited, (exit) => `exited while starting (${describeExitStatus(exit)})`),
          Effect.as(Effect.sleep(spec.bootTimeout), timeout)
        )
      )
      if (boot !== undefined) {
        worker.stopReason = "failed to boot"
        // A worker that says it cannot boot (or exited) writes why to stderr as it exits, and the
        // WorkerError carries that text: let it exit and its stderr be read to the end, rather
        // than kill it as the BootFailed message arrives (the text was lost). A worker that is not
        // ready in time is killed at once.
        if (boot !== timeout) yield* Effect.timeoutOption(worker.child.closed, bootFailureGraceMillis)
        worker.child.kill("SIGKILL")
        yield* worker.child.exited
        self.remove(worker, "boot", `failed to boot: ${boot}`, yield* Clock.currentTimeMillis)
        self.bootFailed(worker, boot, worker.child.stderrTail())
        return
      }
      const now = yield* Clock.currentTimeMillis
      self.bootFailures = 0
      worker.readyAt = now
      worker.lastSeen = now
      worker.idleSince = now
      if (worker.state === "starting") worker.state = "idle"
      yield* Effect.logInfo(`${worker.label} ready in ${now - worker.startedAt} ms`)
      self.onCapacity()
      const exit = yield* worker.child.exited
      const at = yield* Clock.currentTimeMillis
      if (worker.stopReason !== undefined) {
        self.remove(worker, worker.stopKind, worker.stopReason, at)
        yield* Effect.logInfo(`${worker.label} exited (${worker.stopReason}): ${describeExitStatus(exit)}`)
        return
      }
      const reason =
        worker.killReason === undefined ? `died: ${describeExitStatus(exit)}` : `killed: ${worker.killReason}`
      self.remove(worker, worker.killReason === undefined ? "died" : "killed", reason, at)
      self.restarts++
      yield* self.crashed(at)
      const lost = worker.child.lostSockets
      const closed = lost === 0 ? "" : ` (${lost} connection${lost === 1 ? "" : "s"} on the way to it closed)`
      yield* Effect.logWarning(`${worker.label} ${reason}${closed}; starting another`)
    })
  }

  private remove(worker: Worker, kind: ExitKind, reason: string, now: number): void {
    const index = this.workers.indexOf(worker)
    if (index !== -1) this.workers.splice(index, 1)
    this.servedByExited += worker.served
    this.exitCounts[kind]++
    this.exits.push({ id: worker.id, pid: worker.child.pid, kind, reason, at: now })
    if (this.exits.length > keptExits) this.exits.shift()
  }

  /** An unexpected exit: the next start waits for the backoff; a long stable run resets it. */
  private crashed(now: number): Effect.Effect<void> {
    const self = this
    return Effect.gen(function* () {
      if (self.backoff === undefined || now - self.lastCrash > stablePeriodMillis) {
        const step = yield* Schedule.toStep(self.spec.restartBackoff)
        self.backoff = (at) =>
          Effect.match(step(at, undefined), {
            // A schedule that gives up leaves no delay: boot failures still halt the pool.
            onFailure: () => 0,
            onSuccess: ([, delay]) => Duration.toMillis(delay)
          })
      }
      self.lastCrash = now
      self.spawnAfter = now + (yield* self.backoff(now))
    })
  }

  private bootFailed(worker: Worker | undefined, reason: string, stderr: string): void {
    this.bootFailures++
    const name = worker === undefined ? `worker ${this.nextId}` : worker.label
    this.runFork(Effect.logError(`${name} failed to boot: ${reason}`))
    if (this.bootFailures >= bootFailureLimit && !this.stopping) {
      // Workers retiring for a reload still serve the code that booted: a reload whose module
      // no longer loads is called off, and they stay, rather than the server going down.
      const reloading = this.workers.filter((w) => w.retireReason === "reload" && !w.stopSent)
      if (reloading.length > 0) {
        for (const w of reloading) {
          w.retireReason = undefined
          w.state = w.inFlight > 0 ? "busy" : "idle"
        }
        this.bootFailures = 0
        this.runFork(
          Effect.logError(
            `reload called off: ${bootFailureLimit} new workers in a row failed to boot (the last: ${reason}); the old workers keep serving`
          )
        )
        return
      }
      // As gunicorn halts on boot errors, rather than restart forever; unlike it, saying why.
      Deferred.doneUnsafe(
        this.halted,
        Effect.fail(
          new WorkerError({
            name,
            reason: "BootFailed",
            detail: `${this.bootFailures} workers in a row failed to boot; the last: ${reason}`,
            stderr
          })
        )
      )
      return
    }
    this.runFork(Effect.flatMap(Clock.currentTimeMillis, (now) => this.crashed(now)))
  }

  private onMessage(worker: Worker, message: FromWorker): void {
    const now = Date.now()
    worker.lastSeen = now
    switch (message._tag) {
      case "Hello":
        if (worker.start !== undefined) worker.child.send(worker.start)
        return
      case "Ready":
        Deferred.doneUnsafe(worker.ready, Effect.void)
        if (this.draining) worker.child.send({ _tag: "Draining" })
        return
      case "BootFailed":
        Deferred.doneUnsafe(worker.ready, Effect.fail(message.reason))
        return
      case "Retire":
        this.retire(worker, "maxRequests")
        return
      case "Load": {
        const served = message.served
        const newly = served - worker.recycleServed
        worker.served = served
        worker.inFlight = message.inFlight
        worker.oldest = message.oldest
        worker.reportedConnections = message.connections
        worker.reportedReceived = message.received
        worker.full = message.busy
        worker.hot = message.hot
        if (message.stats !== undefined) worker.stats = message.stats
        if (worker.state === "idle" || worker.state === "busy") {
          const next: WorkerState = message.busy || message.hot ? "busy" : "idle"
          if (next === "idle" && worker.state === "busy") worker.idleSince = now
          if (message.inFlight > 0) worker.idleSince = now
          worker.state = next
        }
        if (newly > 0 && worker.recycle !== undefined) {
          worker.recycleServed = served
          this.runFork(this.stepRecycle(worker, newly, now))
        }
        this.onCapacity()
        return
      }
    }
  }

  /** Steps the user's recycling Schedule once per newly served request; its end retires the worker. */
  private stepRecycle(worker: Worker, times: number, now: number): Effect.Effect<void> {
    const step = worker.recycle
    if (step === undefined) return Effect.void
    const self = this
    return Effect.gen(function* () {
      for (let i = 0; i < times; i++) {
        const result = yield* Effect.exit(step(now, worker.served))
        if (result._tag === "Failure") {
          worker.recycle = undefined
          self.retire(worker, "recycle schedule")
          return
        }
      }
    })
  }

  /** Retires a worker: a replacement starts (if needed to keep minWorkers) and is ready first. */
  private retire(worker: Worker, why: string): void {
    if (worker.state === "retiring" || worker.stopReason !== undefined) return
    worker.state = "retiring"
    worker.retireReason = why
  }

  /** Asks a worker to stop gracefully; its exit is expected. */
  private stopWorker(worker: Worker, kind: ExitKind, why: string): void {
    if (worker.stopReason === undefined) {
      worker.stopReason = why
      worker.stopKind = kind
    }
    if (worker.stopSent) return
    worker.stopSent = true
    worker.state = "retiring"
    if (!worker.child.send({ _tag: "Stop" })) worker.child.kill("SIGTERM")
  }

  private kill(worker: Worker, why: string, now: number): void {
    if (worker.killReason !== undefined) return
    worker.killReason = why
    const oldest = worker.oldest
    // Silent since its last report, the worker's event loop has not turned since: the request it
    // was running then is running still, for that much longer.
    const doing =
      oldest === null
        ? "with no request in progress at its last report"
        : `running ${oldest.method} ${oldest.url} for at least ${(oldest.age + (now - worker.lastSeen) / 1000).toFixed(1)} s`
    this.runFork(Effect.logError(`${worker.label} killed: ${why}, ${doing}`))
    // SIGABRT first, as gunicorn does, then SIGKILL for a process that ignores it.
    worker.child.kill("SIGABRT")
    this.runFork(
      Effect.delay(
        Effect.sync(() => worker.child.kill("SIGKILL")),
        abortGraceMillis
      )
    )
  }

  /**
   * One round of decisions. Exported for tests that drive the pool step by step.
   */
  manage(now: number): Effect.Effect<void> {
    if (this.stopping || Deferred.isDoneUnsafe(this.halted)) return Effect.void
    const spec = this.spec
    // Hung workers: no heartbeat (a spinning or blocked event loop) for workerTimeout.
    if (spec.workerTimeout > 0) {
      for (const w of this.workers) {
        if (w.state !== "starting" && w.killReason === undefined && now - w.lastSeen > spec.workerTimeout) {
          this.kill(w, `no heartbeat for ${((now - w.lastSeen) / 1000).toFixed(1)} s`, now)
        }
      }
    }
    // Old workers retire.
    if (spec.maxWorkerAge > 0) {
      for (const w of this.serving) if (now - w.readyAt > spec.maxWorkerAge) this.retire(w, "maxWorkerAge")
    }
    // Retiring workers stop, oldest first, while more than minWorkers would still take connections
    // (the replacement is ready first). A retiring worker not yet stopped takes connections too,
    // so it counts: counting only the idle and busy ones, a pool whose replacements each reached
    // maxRequests before the next was ready never had minWorkers of those at once, and kept every
    // retiring worker (two more processes per boot with maxRequests 1 behind nginx, for as long
    // as the load lasted).
    const serving = this.serving
    let accepting = this.workers.filter(
      (w) => w.state !== "starting" && !w.stopSent && w.killReason === undefined
    ).length
    for (const w of this.workers) {
      if (accepting <= this.minWorkers) break
      if (w.state === "retiring" && !w.stopSent) {
        this.stopWorker(w, "retired", `retired (${w.retireReason ?? "asked"})`)
        accepting--
      }
    }
    const active = this.active
    // Extra workers idle for idleWorkerTimeout retire, down to minWorkers, one per round; but not
    // the one idle worker while every other is busy: the rule below would start another at once
    // (a spare that retired and came back every idleWorkerTimeout plus a boot, while the others
    // were busy).
    if (active.length > this.minWorkers) {
      const idle = active.find((w) => w.state === "idle" && now - w.idleSince > spec.idleWorkerTimeout)
      if (idle !== undefined && serving.some((w) => w !== idle && w.state === "idle")) {
        this.stopWorker(idle, "idle", "idle")
      }
    }
    const starting = active.filter((w) => w.state === "starting").length
    if (now < this.spawnAfter) return Effect.void
    // At least minWorkers: start the missing ones at once (a reload replaces all together).
    const missing = this.minWorkers - this.active.length
    if (missing > 0) return Effect.forEach(Array.from({ length: missing }), () => this.spawn(now), { discard: true })
    // All busy (requests at workerConcurrency, or a saturated event loop), or connections
    // waiting: one more, up to maxWorkers, one at a time.
    if (
      starting === 0 &&
      active.length < this.maxWorkers &&
      serving.length > 0 &&
      (serving.every((w) => w.state === "busy") || this.queued() > 0)
    ) {
      return this.spawn(now)
    }
    return Effect.void
  }

  /**
   * Dispatch `primary`: hands `socket` to the worker with the fewest connections among those
   * with room, preferring workers that are not retiring, then those whose event loop is not
   * saturated (hot); false when none has room. Room: below
   * workerConcurrency in requests, a connection on its way counting as one (its request is about
   * to start); without a limit, always. Idle keep-alive connections take no room, so a client
   * that keeps one open does not hold a worker. A worker told to stop, or killed, takes nothing
   * more.
   */
  hand(socket: Net.Socket): boolean {
    const limit = this.spec.workerConcurrency
    const workers = this.workers
    for (;;) {
      let best: Worker | undefined
      // Ties go round: the search starts one worker further each time, so connections that each
      // close before the next arrives (SCGI behind nginx) do not all go to the first worker.
      const from = this.handCursor++
      for (let i = 0; i < workers.length; i++) {
        const w = workers[(from + i) % workers.length]
        if (w.state === "starting" || w.stopSent || w.killReason !== undefined || w.unreachable) continue
        if (w.child.exit !== undefined) continue
        if (limit > 0 && (w.full || w.inFlight + w.inTransit >= limit)) continue
        if (
          best === undefined ||
          preference(w) < preference(best) ||
          (preference(w) === preference(best) && w.connections < best.connections)
        ) {
          best = w
        }
      }
      if (best === undefined) return false
      const chosen = best
      if (chosen.child.sendSocket({ _tag: "Connection" }, socket, (error) => this.lost(chosen, error))) {
        chosen.handed++
        return true
      }
      chosen.unreachable = true
    }
  }

  private lost(worker: Worker, error: Error): void {
    this.runFork(Effect.logWarning(`a connection handed to ${worker.label} was lost: ${error.message}`))
  }

  /** Starts the pool: minWorkers workers, ready; fails with the WorkerError if they cannot boot. */
  start(): Effect.Effect<void, WorkerError> {
    const self = this
    return Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      yield* self.manage(now)
      const ready = Effect.gen(function* () {
        while (self.serving.length < self.minWorkers) {
          yield* Effect.sleep(20)
          yield* self.manage(yield* Clock.currentTimeMillis)
        }
      })
      yield* Effect.raceFirst(ready, Deferred.await(self.halted))
    })
  }

  /** Runs the pool's decisions until the scope closes. */
  run(tickMillis: number): Effect.Effect<never> {
    const self = this
    return Effect.forever(
      Effect.gen(function* () {
        yield* Effect.sleep(tickMillis)
        yield* self.manage(yield* Clock.currentTimeMillis)
      })
    )
  }

  /** Replaces every worker: new ones load the module afresh and are ready before old ones stop. */
  reload(): void {
    for (const w of [...this.workers]) if (w.state !== "starting") this.retire(w, "reload")
  }

  /** One worker more (delta 1) or less (-1), never fewer than one. */
  scale(delta: number): void {
    this.minWorkers = Math.max(1, this.minWorkers + delta)
    this.maxWorkers = Math.max(this.maxWorkers, this.minWorkers)
    if (delta < 0) {
      const extra = this.active.length - this.minWorkers
      const victims = [...this.active].sort((a, b) => (a.state === "idle" ? -1 : 0) - (b.state === "idle" ? -1 : 0))
      for (const w of victims.slice(0, Math.max(0, extra))) this.stopWorker(w, "scaled", "scaled down")
    }
  }

  /** Sends a signal to every worker. */
  killWorkers(signal: NodeJS.Signals): void {
    for (const w of this.workers) w.child.kill(signal)
  }

  /** The pool is stopping: every worker's health path answers 503 from now on (also those still starting). */
  announceDraining(): void {
    this.draining = true
    for (const w of this.workers) w.child.send({ _tag: "Draining" })
  }

  /** Every worker reopens its access log file (SIGUSR1 to the primary, after logrotate). */
  reopenLogs(): void {
    for (const w of this.workers) w.child.send({ _tag: "ReopenLogs" })
  }

  /**
   * Stops every worker gracefully: they stop accepting and finish what they have (up to their
   * shutdownTimeout), then whatever is left is killed.
   */
  get stop(): Effect.Effect<void> {
    const self = this
    return Effect.gen(function* () {
      self.stopping = true
      for (const w of self.workers) self.stopWorker(w, "stopped", "pool stopped")
      const all = Effect.forEach([...self.workers], (w) => w.child.exited, { concurrency: "unbounded", discard: true })
      const done = yield* Effect.timeoutOption(all, self.spec.shutdownTimeout + stopGraceMillis)
      if (Option.isNone(done)) {
        for (const w of self.workers) w.child.kill("SIGKILL")
        yield* Effect.timeoutOption(all, 1_000)
      }
    })
  }
}

const exitFailure = <E>(cause: Cause.Cause<E>): Option.Option<string> => {
  for (const reason of cause.reasons) if (reason._tag === "Fail") return Option.some(String(reason.error))
  return Option.none()
}

/** Which workers take a handed connection first: lower first (serving, then not hot). */
const preference = (worker: Worker): number => (worker.state === "retiring" ? 2 : 0) + (worker.hot ? 1 : 0)
