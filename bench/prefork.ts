/**
 * The prefork scenario: effect-appserver as a single process and as a pool of 1 and 2 workers in
 * both dispatch modes (`shared`: the workers accept from the listening socket; `primary`: the
 * primary accepts and hands each connection to a worker), under three loads:
 *
 *   - keep-alive: wrk `GET /` on 50 connections, as the main `hello` scenario;
 *   - a connection per request: the same with `Connection: close`;
 *   - via nginx over SCGI: wrk → nginx (bench/nginx.ts's setup) → the pool with `--protocol scgi`,
 *     a new upstream connection per request.
 *
 * Per run it reads from /proc the CPU of the primary and of each worker, and for keep-alive how
 * many connections each worker holds. Then the zero-failure checks: a keep-alive, a
 * connection-per-request and an nginx run on 2 workers per mode with a reload (SIGHUP) mid-run, and
 * the same on a pool recycling its workers (`--max-requests 2000 --max-requests-jitter 200`).
 * The report is bench/preforkReport.ts. Every pool runs in a process group of its own, killed
 * with its workers however the harness ends (bench/pool.ts).
 */
import { type Nginx, nginxBinary } from "../test/helpers/nginx.ts"
import type { Config } from "./config.ts"
import { childPids, cpuSeconds, procAvailable } from "./cpu.ts"
import { fmtDuration, progress } from "./log.ts"
import { startFrontNginx, stopFrontNginx } from "./nginx.ts"
import { rotate } from "./phases.ts"
import {
  type CpuSnapshot,
  connectionSplit,
  cpuDelta,
  cpuSnapshot,
  type Dispatch,
  type Pool,
  type PoolShape,
  poolAlive,
  startPool,
  stopPool,
  workerPids
} from "./pool.ts"
import { runCommand } from "./proc.ts"
import { hasErrors } from "./report.ts"
import type { LoadTool, RunResult } from "./scenarios.ts"
import { HOST, verifyContract } from "./servers.ts"
import { parseWrk } from "./wrk.ts"

export const POOL_SHAPES: ReadonlyArray<PoolShape> = [
  { id: "single", label: "single process", workers: 0, dispatch: undefined },
  { id: "shared-1", label: "1 worker, shared", workers: 1, dispatch: "shared" },
  { id: "shared-2", label: "2 workers, shared", workers: 2, dispatch: "shared" },
  { id: "primary-1", label: "1 worker, primary", workers: 1, dispatch: "primary" },
  { id: "primary-2", label: "2 workers, primary", workers: 2, dispatch: "primary" },
  {
    id: "limit-2",
    label: "2 workers, handoff limit",
    workers: 2,
    dispatch: "primary",
    handoffLimit: { loads: ["close"] }
  }
]

/** Whether `shape` is measured under `load`: effect-appserver under every load, the limit under its own. */
export const measuredUnder = (shape: PoolShape, load: LoadId): boolean =>
  shape.handoffLimit === undefined || shape.handoffLimit.loads.includes(load)

/** The pools of effect-appserver (the reload and recycling checks run on these). */
const appserverShapes = POOL_SHAPES.filter((shape) => shape.handoffLimit === undefined)

export type LoadId = "keep-alive" | "close" | "nginx"

export interface Load {
  readonly id: LoadId
  readonly title: string
  readonly protocol: "http" | "scgi"
  /** wrk sends `Connection: close`: a connection per request. */
  readonly close: boolean
}

/** wrk's connections (to the pool, or to nginx). */
export const CONNECTIONS = 50

export const LOADS: ReadonlyArray<Load> = [
  { id: "keep-alive", title: "keep-alive", protocol: "http", close: false },
  { id: "close", title: "connection per request", protocol: "http", close: true },
  { id: "nginx", title: "nginx → SCGI", protocol: "scgi", close: false }
]

/** The flags of the recycling check. */
export const RECYCLE_FLAGS = ["--max-requests", "2000", "--max-requests-jitter", "200"] as const

/** Seconds of each zero-failure check run, and when into it the reload's SIGHUP goes. */
export const CHECK_SECONDS = 6
export const RELOAD_AT_MS = 1000

/** Seconds to wait after a check run for a reload still under way to finish. */
const RELOAD_WAIT_MS = 10_000

/** CPU of the pool over a run, from /proc. */
export interface PoolCpu {
  /** Primary and workers, per request. */
  readonly treeUsPerRequest: number
  /** The primary's CPU per connection made to the pool; undefined for the single process. */
  readonly primaryUsPerConnection: number | undefined
  /** The primary's CPU per second of the run, ms; undefined for the single process. */
  readonly primaryMsPerSecond: number | undefined
  /** All workers' CPU per request (the single process's own). */
  readonly workerUsPerRequest: number
  /** Each worker's fraction of the workers' CPU, in pid order. */
  readonly workerShares: ReadonlyArray<number>
  /** nginx's worker per request, for the nginx load. */
  readonly nginxUsPerRequest: number | undefined
}

export interface PreforkSample {
  readonly shape: string
  readonly load: LoadId
  readonly round: number
  readonly result: RunResult
  readonly requests: number
  /** Connections made to the pool: 50 with keep-alive, one per request otherwise. */
  readonly connections: number
  /** Wall-clock seconds of the run. */
  readonly seconds: number
  readonly cpu: PoolCpu
  /** Keep-alive: established connections each worker held 70% into the run (pid order). */
  readonly split: ReadonlyArray<number> | undefined
  /** A worker was replaced during the run (its CPU then counts only for the ones there throughout). */
  readonly workersChanged: boolean
  /**
   * The primary's CPU per second while its pool had no load (over the other pools' runs of the
   * same stage), ms; undefined for the single process.
   */
  readonly primaryIdleMsPerSecond: number | undefined
}

export interface FailureCheck {
  readonly kind: "reload" | "recycle"
  readonly dispatch: Dispatch
  readonly load: LoadId
  readonly seconds: number
  readonly result: RunResult
  readonly requests: number
  readonly workers: number
  /** Distinct worker pids seen during the run (polled every 100 ms). */
  readonly workersSeen: number
  /** Reload: ms from SIGHUP until only new workers were left; undefined if not within the wait. */
  readonly reloadDoneMs: number | undefined
  /** With errors behind nginx: what nginx's error log says about them. */
  readonly nginxLog: string | undefined
  /** The pool's warnings and errors logged during the check (the last ones, at most 10). */
  readonly poolLog: ReadonlyArray<string>
}

export type PreforkOutcome =
  | { readonly _tag: "Skipped"; readonly reason: string }
  | {
      readonly _tag: "Measured"
      readonly rounds: number
      readonly seconds: number
      readonly loads: ReadonlyArray<Load>
      readonly samples: ReadonlyArray<PreforkSample>
      readonly checks: ReadonlyArray<FailureCheck>
      /** Why a load was left out (nginx missing). */
      readonly notes: ReadonlyArray<string>
    }

/** A pool and the URL wrk loads: the pool's own, or nginx's in front of it. */
interface Target {
  readonly pool: Pool
  readonly nginx: Nginx | undefined
  readonly url: string
  /** The primary's CPU (s) over the other pools' measured runs, and their seconds (see `rounds`). */
  readonly idle: { cpu: number; seconds: number }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const stopTarget = async (target: Target): Promise<void> => {
  if (target.nginx !== undefined) await stopFrontNginx(target.nginx)
  await stopPool(target.pool)
}

const startTarget = async (
  shape: PoolShape,
  protocol: "http" | "scgi",
  extra: ReadonlyArray<string>,
  config: Config
): Promise<Target> => {
  const flags = extra.length === 0 ? "" : ` ${extra.join(" ")}`
  progress(`starting ${shape.label} (${protocol}${flags})`)
  const pool = await startPool(shape, protocol, extra, config.startTimeoutMs)
  let nginx: Nginx | undefined
  try {
    if (protocol === "scgi") nginx = await startFrontNginx({ protocol: "scgi", port: pool.port })
    const target: Target = {
      pool,
      nginx,
      url: nginx?.url ?? `http://${HOST}:${pool.port}`,
      idle: { cpu: 0, seconds: 0 }
    }
    await verifyContract({ url: target.url, spec: { label: shape.label } })
    const workers = workerPids(pool)
    progress(
      `  ${shape.label}: ${pool.process.address} (pid ${pool.pid}${workers.length === 0 ? "" : `, workers ${workers.join(", ")}`})` +
        (nginx === undefined ? "" : ` behind nginx at ${nginx.url} (pid ${nginx.pid})`)
    )
    return target
  } catch (error) {
    if (nginx !== undefined) await stopFrontNginx(nginx)
    await stopPool(pool)
    throw error
  }
}

/** Starts every target, runs `body` with them, and stops them all whatever happens. */
const withTargets = async <A>(
  starts: ReadonlyArray<() => Promise<Target>>,
  body: (targets: ReadonlyArray<Target>) => Promise<A>
): Promise<A> => {
  const targets: Array<Target> = []
  try {
    for (const start of starts) targets.push(await start())
    return await body(targets)
  } finally {
    await Promise.all(targets.map(stopTarget))
  }
}

const assertAlive = (target: Target, workers: boolean): void => {
  const { pool, nginx } = target
  if (!poolAlive(pool)) {
    const { exitCode, signalCode } = pool.process.child
    throw new Error(
      `${pool.shape.label} (pid ${pool.pid}) exited (${signalCode ?? exitCode}) during the benchmark` +
        `\n--- its output ---\n${pool.process.outputTail()}`
    )
  }
  if (workers && workerPids(pool).length !== pool.shape.workers) {
    throw new Error(`${pool.shape.label}: ${workerPids(pool).length} workers, expected ${pool.shape.workers}`)
  }
  if (nginx !== undefined && !nginx.alive()) throw new Error(`nginx in front of ${pool.shape.label} exited`)
}

/** wrk `GET /` on 50 connections (with `Connection: close` for `close`); also its request count. */
const wrkRun = async (
  url: string,
  seconds: number,
  close: boolean
): Promise<{ readonly result: RunResult; readonly requests: number }> => {
  const args = [
    "-t1",
    `-c${CONNECTIONS}`,
    `-d${seconds}s`,
    "--latency",
    ...(close ? ["-H", "Connection: close"] : []),
    `${url}/`
  ]
  const output = await runCommand("wrk", args)
  if (output.code !== 0) throw new Error(`wrk exited with code ${output.code}:\n${output.stderr}${output.stdout}`)
  const requests = /(\d+) requests in/.exec(output.stdout)
  if (requests === null) throw new Error(`no request count in wrk's output:\n${output.stdout}`)
  return { result: parseWrk(output.stdout), requests: Number(requests[1]) }
}

/**
 * wrk, with `at` actions at given ms into the run (awaited before this resolves) and an `every`
 * action polled while it runs.
 */
const wrkWith = async (
  url: string,
  seconds: number,
  close: boolean,
  at: ReadonlyArray<readonly [number, () => Promise<void> | void]>,
  every?: readonly [number, () => void]
): Promise<{ readonly result: RunResult; readonly requests: number }> => {
  const pending: Array<Promise<void>> = []
  const timers = at.map(([ms, action]) => setTimeout(() => pending.push(Promise.resolve().then(action)), ms))
  const poll = every === undefined ? undefined : setInterval(every[1], every[0])
  try {
    const outcome = await wrkRun(url, seconds, close)
    await Promise.all(pending)
    return outcome
  } finally {
    for (const timer of timers) clearTimeout(timer)
    if (poll !== undefined) clearInterval(poll)
  }
}

const nginxWorker = (nginx: Nginx | undefined): number | undefined =>
  nginx === undefined ? undefined : childPids(nginx.pid)[0]

/** The primary's CPU per second without load so far, ms; undefined for the single process. */
const idleMsPerSecond = (target: Target): number | undefined =>
  target.pool.shape.workers === 0 || target.idle.seconds === 0
    ? undefined
    : (target.idle.cpu * 1e3) / target.idle.seconds

/**
 * Runs `run` on one target while reading the other primaries' CPU: their pools have no load
 * meanwhile, so over a stage this gives each primary's background work per second (timers,
 * the workers' reports), which a keep-alive run's 50 connections cannot dilute.
 */
const whileOthersIdle = async <A>(
  target: Target,
  targets: ReadonlyArray<Target>,
  run: () => Promise<A>
): Promise<A> => {
  const others = targets.filter((other) => other !== target && other.pool.shape.workers > 0)
  const before = others.map((other) => cpuSnapshot(other.pool).primary)
  const start = performance.now()
  const result = await run()
  const seconds = (performance.now() - start) / 1000
  others.forEach((other, i) => {
    const cpu = cpuSnapshot(other.pool).primary - before[i]
    if (!Number.isFinite(cpu)) return
    other.idle.cpu += cpu
    other.idle.seconds += seconds
  })
  return result
}

const poolCpu = (
  target: Target,
  before: CpuSnapshot,
  after: CpuSnapshot,
  run: { readonly requests: number; readonly connections: number; readonly seconds: number },
  nginxSeconds: number | undefined
): PoolCpu => {
  const { requests, connections } = run
  const delta = cpuDelta(before, after)
  const workers = delta.workers.reduce((sum, worker) => sum + worker.seconds, 0)
  const single = target.pool.shape.workers === 0
  return {
    treeUsPerRequest: ((delta.primary + workers) * 1e6) / requests,
    primaryUsPerConnection: single ? undefined : (delta.primary * 1e6) / connections,
    primaryMsPerSecond: single ? undefined : (delta.primary * 1e3) / run.seconds,
    workerUsPerRequest: ((single ? delta.primary : workers) * 1e6) / requests,
    workerShares: single ? [1] : delta.workers.map((worker) => worker.seconds / workers),
    nginxUsPerRequest: nginxSeconds === undefined ? undefined : (nginxSeconds * 1e6) / requests
  }
}

const fmtUs = (us: number | undefined): string =>
  us === undefined || !Number.isFinite(us) ? "-" : us < 10 ? us.toFixed(2) : us.toFixed(1)

const fmtShares = (shares: ReadonlyArray<number>): string => shares.map((share) => Math.round(share * 100)).join("/")

const describe = (result: RunResult): string => {
  const line = `${Math.round(result.requestsPerSec).toLocaleString("en-US").padStart(9)} req/s  p99 ${result.p99Ms.toFixed(2)} ms`
  return result.errorDetail === "" ? line : `${line}  !! ERRORS: ${result.errorDetail}`
}

const LABEL_WIDTH = Math.max(...POOL_SHAPES.map((shape) => shape.label.length))
const LOAD_WIDTH = Math.max(...LOADS.map((load) => load.id.length))

/** One measured run of `load` on `target`. */
const measure = async (
  target: Target,
  load: Load,
  seconds: number,
  round: number,
  label: string
): Promise<PreforkSample> => {
  assertAlive(target, true)
  const nginxPid = nginxWorker(target.nginx)
  const nginxBefore = nginxPid === undefined ? undefined : cpuSeconds(nginxPid)
  const workersBefore = workerPids(target.pool).join(",")
  let split: ReadonlyArray<number> | undefined
  let primaryHeld = 0
  const sampleSplit = async (): Promise<void> => {
    const found = await connectionSplit(target.pool)
    split = found.workers.map((worker) => worker.connections)
    primaryHeld = found.primary
  }
  const before = cpuSnapshot(target.pool)
  const start = performance.now()
  const { result, requests } = await wrkWith(
    target.url,
    seconds,
    load.close,
    load.id === "keep-alive" && target.pool.shape.workers > 0 ? [[seconds * 700, sampleSplit]] : []
  )
  const after = cpuSnapshot(target.pool)
  const wall = (performance.now() - start) / 1000
  const nginxSeconds =
    nginxPid === undefined || nginxBefore === undefined ? undefined : cpuSeconds(nginxPid) - nginxBefore
  assertAlive(target, true)
  const connections = load.id === "keep-alive" ? CONNECTIONS : requests
  const cpu = poolCpu(target, before, after, { requests, connections, seconds: wall }, nginxSeconds)
  const workersChanged = workerPids(target.pool).join(",") !== workersBefore
  const parts = [
    `CPU µs: tree ${fmtUs(cpu.treeUsPerRequest)}/req`,
    cpu.primaryUsPerConnection === undefined
      ? ""
      : `primary ${fmtUs(cpu.primaryUsPerConnection)}/conn (${fmtUs(cpu.primaryMsPerSecond)} ms/s)`,
    `workers ${fmtUs(cpu.workerUsPerRequest)}/req`,
    cpu.nginxUsPerRequest === undefined ? "" : `nginx ${fmtUs(cpu.nginxUsPerRequest)}/req`,
    cpu.workerShares.length > 1 ? `CPU share ${fmtShares(cpu.workerShares)}` : "",
    split === undefined ? "" : `conns ${split.join("/")}${primaryHeld > 0 ? ` (primary holds ${primaryHeld})` : ""}`,
    workersChanged ? "!! workers replaced during the run" : ""
  ]
  progress(
    `${label} ${load.id.padEnd(LOAD_WIDTH)} ${target.pool.shape.label.padEnd(LABEL_WIDTH)} ${describe(result)}  ` +
      parts.filter((part) => part !== "").join(", ")
  )
  return {
    shape: target.pool.shape.id,
    load: load.id,
    round,
    result,
    requests,
    connections,
    cpu,
    seconds: wall,
    split,
    workersChanged,
    // set after the stage's rounds, from the other pools' runs
    primaryIdleMsPerSecond: undefined
  }
}

/**
 * A zero-failure check: a run of `load` on a 2-worker pool, with a reload (SIGHUP) `RELOAD_AT_MS`
 * into it, or on a pool started with the recycling flags; the worker pids are polled throughout.
 */
const check = async (kind: "reload" | "recycle", target: Target, load: Load): Promise<FailureCheck> => {
  // a recycling pool may be between a worker and its replacement
  assertAlive(target, kind === "reload")
  const logBefore = target.nginx === undefined ? 0 : (await target.nginx.errorLog()).length
  const { pool } = target
  const poolLogBefore = new Set(pool.process.outputTail().split("\n"))
  const original = workerPids(pool)
  const seen = new Set(original)
  let reloadAt: number | undefined
  let reloadDoneMs: number | undefined
  const poll = (): void => {
    if (!poolAlive(pool)) return
    const now = workerPids(pool)
    for (const pid of now) seen.add(pid)
    if (reloadAt !== undefined && reloadDoneMs === undefined) {
      if (now.length === pool.shape.workers && now.every((pid) => !original.includes(pid)))
        reloadDoneMs = performance.now() - reloadAt
    }
  }
  const hup = (): void => {
    reloadAt = performance.now()
    process.kill(pool.pid, "SIGHUP")
  }
  const { result, requests } = await wrkWith(
    target.url,
    CHECK_SECONDS,
    load.close,
    kind === "reload" ? [[RELOAD_AT_MS, hup]] : [],
    [100, poll]
  )
  // a reload still under way finishes without load; how long it took is reported
  for (let waited = 0; kind === "reload" && reloadDoneMs === undefined && waited < RELOAD_WAIT_MS; waited += 100) {
    await sleep(100)
    poll()
  }
  assertAlive(target, false)
  const nginxLog =
    target.nginx === undefined || !hasErrors(result)
      ? undefined
      : (await target.nginx.errorLog()).slice(logBefore).trim()
  const poolLog = pool.process
    .outputTail()
    .split("\n")
    .filter((line) => !poolLogBefore.has(line) && /\b(WARN|ERROR|FATAL)\b/.test(line))
    .slice(-10)
  const outcome: FailureCheck = {
    kind,
    dispatch: pool.shape.dispatch ?? "shared",
    load: load.id,
    seconds: CHECK_SECONDS,
    result,
    requests,
    workers: pool.shape.workers,
    workersSeen: seen.size,
    reloadDoneMs,
    nginxLog,
    poolLog
  }
  progress(
    `${kind.padEnd(11)} ${load.id.padEnd(LOAD_WIDTH)} ${pool.shape.label.padEnd(LABEL_WIDTH)} ${describe(result)}  ${checkEvent(outcome)}`
  )
  for (const line of poolLog) progress(`  pool: ${line}`)
  if (nginxLog !== undefined) progress(`  nginx's error log meanwhile:\n${nginxLog === "" ? "(nothing)" : nginxLog}`)
  return outcome
}

/** What happened to the workers during a check, in words. */
export const checkEvent = (check: FailureCheck): string => {
  if (check.kind === "recycle") return `${check.workersSeen - check.workers} workers replaced by recycling`
  if (check.reloadDoneMs === undefined) return `reload not done ${RELOAD_WAIT_MS / 1000} s after the run`
  const doneAt = (RELOAD_AT_MS + check.reloadDoneMs) / 1000
  const when = doneAt <= check.seconds ? "" : ", after the load ended"
  return `reload done ${(check.reloadDoneMs / 1000).toFixed(1)} s after SIGHUP${when} (${check.workersSeen} workers seen)`
}

/** Whether the check saw what it was to check: a reload done under load, a recycled worker. */
export const checkExercised = (check: FailureCheck): boolean =>
  check.kind === "recycle"
    ? check.workersSeen > check.workers
    : check.reloadDoneMs !== undefined && RELOAD_AT_MS + check.reloadDoneMs <= check.seconds * 1000

/** Interleaved rounds of `loads` over `targets`, each run preceded by a warmup of each. */
const rounds = async (
  config: Config,
  targets: ReadonlyArray<Target>,
  loads: ReadonlyArray<Load>
): Promise<Array<PreforkSample>> => {
  const warmup = Math.min(config.warmup, 1)
  if (warmup > 0) {
    for (const load of loads) {
      for (const target of targets) {
        if (measuredUnder(target.pool.shape, load.id)) await measure(target, load, warmup, -1, "warmup     ")
      }
    }
  }
  const samples: Array<PreforkSample> = []
  for (let round = 0; round < config.preforkRounds; round++) {
    const label = `round ${round + 1}/${config.preforkRounds}`
    for (const load of loads) {
      for (const target of rotate(targets, round)) {
        if (!measuredUnder(target.pool.shape, load.id)) continue
        const run = () => measure(target, load, config.preforkDuration, round, label)
        samples.push(await whileOthersIdle(target, targets, run))
      }
    }
  }
  const pools = targets.filter((target) => target.pool.shape.workers > 0)
  progress(
    "primary CPU while its pool had no load (the other pools' runs): " +
      pools.map((target) => `${target.pool.shape.label} ${fmtUs(idleMsPerSecond(target))} ms/s`).join(", ")
  )
  return samples.map((sample) => {
    const target = targets.find((t) => t.pool.shape.id === sample.shape)
    return { ...sample, primaryIdleMsPerSecond: target === undefined ? undefined : idleMsPerSecond(target) }
  })
}

const twoWorkers = (targets: ReadonlyArray<Target>): Array<Target> =>
  targets.filter((target) => target.pool.shape.workers === 2 && target.pool.shape.handoffLimit === undefined)

const estimateSeconds = (config: Config, loads: number): number => {
  const perRun = config.preforkDuration + 0.3
  const warmup = Math.min(config.warmup, 1)
  const runs = loads * appserverShapes.length + (loads > 1 ? POOL_SHAPES.length - appserverShapes.length : 0)
  const measured = runs * (config.preforkRounds * perRun + (warmup > 0 ? warmup + 0.3 : 0))
  const checks = loads * 4 * (CHECK_SECONDS + 0.5)
  const stages = loads > 2 ? 2 : 1
  // about 1.5 s to start each pool
  return measured + checks + (POOL_SHAPES.length * stages + 4) * 1.5
}

export const preforkPhase = async (config: Config, tool: LoadTool): Promise<PreforkOutcome> => {
  if (tool.name !== "wrk")
    return {
      _tag: "Skipped",
      reason: "it needs wrk (it runs wrk itself: Connection: close, request counts), not autocannon"
    }
  if (!procAvailable())
    return { _tag: "Skipped", reason: "it reads CPU times and sockets from /proc, which this system lacks" }
  const notes: Array<string> = []
  if (nginxBinary() === undefined) {
    notes.push("the nginx → SCGI load was left out: nginx not found (PATH, /usr/sbin/nginx or NGINX_BIN)")
    progress(`prefork: ${notes[0]}`)
  }
  const loads = LOADS.filter((load) => load.protocol === "http" || notes.length === 0)
  const http = loads.filter((load) => load.protocol === "http")
  const scgi = loads.filter((load) => load.protocol === "scgi")
  progress(
    `prefork: ${config.preforkRounds} round(s) x ${config.preforkDuration} s, then ${loads.length * 4} checks of ` +
      `${CHECK_SECONDS} s, about ${fmtDuration(estimateSeconds(config, loads.length))}`
  )
  const samples: Array<PreforkSample> = []
  const checks: Array<FailureCheck> = []
  for (const [protocol, ofProtocol] of [
    ["http", http],
    ["scgi", scgi]
  ] as const) {
    if (ofProtocol.length === 0) continue
    const shapes = POOL_SHAPES.filter((shape) => ofProtocol.some((load) => measuredUnder(shape, load.id)))
    const starts = shapes.map((shape) => () => startTarget(shape, protocol, [], config))
    await withTargets(starts, async (targets) => {
      samples.push(...(await rounds(config, targets, ofProtocol)))
      for (const target of twoWorkers(targets)) {
        for (const load of ofProtocol) checks.push(await check("reload", target, load))
      }
    })
  }
  for (const shape of appserverShapes.filter((shape) => shape.workers === 2)) {
    for (const [protocol, ofProtocol] of [
      ["http", http],
      ["scgi", scgi]
    ] as const) {
      if (ofProtocol.length === 0) continue
      await withTargets([() => startTarget(shape, protocol, RECYCLE_FLAGS, config)], async ([target]) => {
        for (const load of ofProtocol) checks.push(await check("recycle", target, load))
      })
    }
  }
  return {
    _tag: "Measured",
    rounds: config.preforkRounds,
    seconds: config.preforkDuration,
    loads,
    samples,
    checks,
    notes
  }
}
