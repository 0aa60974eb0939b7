/**
 * The prefork scenario's section of the report (bench/prefork.ts): per load and pool the medians,
 * the CPU of the primary and of the workers, each worker's share; the zero-failure checks; and the
 * targets with PASS/MISS.
 */
import * as Os from "node:os"
import {
  CHECK_SECONDS,
  CONNECTIONS,
  checkEvent,
  checkExercised,
  type FailureCheck,
  LOADS,
  type LoadId,
  measuredUnder,
  POOL_SHAPES,
  type PoolCpu,
  type PreforkOutcome,
  type PreforkSample,
  RECYCLE_FLAGS,
  RELOAD_AT_MS
} from "./prefork.ts"
import { errorCell, fmtMs, fmtRps, hasErrors, median, pass, ratioText, spreadCell, table } from "./report.ts"

/** The primary's CPU per connection in `shared` mode counts as ~0 up to this. */
export const SHARED_PRIMARY_MAX_US = 1
/** In `primary` mode, the primary's CPU per connection is at most this fraction of a worker's per request. */
export const PRIMARY_FRACTION = 1 / 3
/** Keep-alive connections of the smaller worker / the larger's, in `primary` mode. */
export const BALANCE_MIN = 0.8

const runsOf = (samples: ReadonlyArray<PreforkSample>, shape: string, load: LoadId): Array<PreforkSample> =>
  samples.filter((sample) => sample.shape === shape && sample.load === load && sample.round >= 0)

const medianOf = (runs: ReadonlyArray<PreforkSample>, of: (cpu: PoolCpu) => number | undefined): number =>
  median(
    runs.flatMap((run) => {
      const value = of(run.cpu)
      return value === undefined || !Number.isFinite(value) ? [] : [value]
    })
  )

/**
 * The primary's CPU per connection beyond its background work: its CPU per second under this load
 * less its CPU per second without load, over the run, per connection. Negative when it spent less
 * per second under the load than idle.
 */
const aboveIdleUs = (run: PreforkSample): number =>
  run.cpu.primaryMsPerSecond === undefined || run.primaryIdleMsPerSecond === undefined
    ? Number.NaN
    : ((run.cpu.primaryMsPerSecond - run.primaryIdleMsPerSecond) * run.seconds * 1e3) / run.connections

const medianAboveIdle = (runs: ReadonlyArray<PreforkSample>): number =>
  median(runs.map(aboveIdleUs).filter(Number.isFinite))

const fmtUs = (us: number): string =>
  Number.isFinite(us) ? (Math.abs(us) < 0.005 ? "0.00" : Math.abs(us) < 10 ? us.toFixed(2) : us.toFixed(1)) : "-"

/** min / max of a split: 1 is even, 0 is one worker taking everything. */
const balance = (parts: ReadonlyArray<number>): number =>
  parts.length < 2 || Math.max(...parts) === 0 ? Number.NaN : Math.min(...parts) / Math.max(...parts)

const perRound = (runs: ReadonlyArray<PreforkSample>, cell: (run: PreforkSample) => string | undefined): string => {
  const cells = runs.flatMap((run) => {
    const text = cell(run)
    return text === undefined ? [] : [text]
  })
  return cells.length === 0 ? "-" : cells.join(" · ")
}

const shareCell = (run: PreforkSample): string | undefined =>
  run.cpu.workerShares.length < 2
    ? undefined
    : run.cpu.workerShares.map((share) => String(Math.round(share * 100))).join("/")

const splitCell = (run: PreforkSample): string | undefined => run.split?.join("/")

const sampleErrors = (runs: ReadonlyArray<PreforkSample>): string => {
  const cell = errorCell(runs)
  return runs.some((run) => run.workersChanged) ? `${cell} (a worker was replaced during a run)` : cell
}

const mainTable = (samples: ReadonlyArray<PreforkSample>, loads: ReadonlyArray<LoadId>): string => {
  const rows = loads.flatMap((load) => {
    const single = median(runsOf(samples, "single", load).map((run) => run.result.requestsPerSec))
    const title = LOADS.find((l) => l.id === load)?.title ?? load
    return POOL_SHAPES.filter((shape) => measuredUnder(shape, load)).map((shape) => {
      const runs = runsOf(samples, shape.id, load)
      const rps = median(runs.map((run) => run.result.requestsPerSec))
      const idle = median(
        runs.flatMap((run) => (run.primaryIdleMsPerSecond === undefined ? [] : [run.primaryIdleMsPerSecond]))
      )
      return [
        title,
        shape.label,
        fmtRps(rps),
        shape.id === "single" ? "1.00x" : ratioText(rps / single, false),
        fmtMs(median(runs.map((run) => run.result.p99Ms))),
        fmtUs(medianOf(runs, (cpu) => cpu.treeUsPerRequest)),
        shape.workers === 0
          ? "-"
          : `${fmtUs(medianOf(runs, (cpu) => cpu.primaryUsPerConnection))} (${fmtUs(medianAboveIdle(runs))})`,
        shape.workers === 0 ? "-" : `${fmtUs(medianOf(runs, (cpu) => cpu.primaryMsPerSecond))} (${fmtUs(idle)})`,
        fmtUs(medianOf(runs, (cpu) => cpu.workerUsPerRequest)),
        perRound(runs, shareCell),
        perRound(runs, splitCell),
        spreadCell(runs),
        String(runs.length),
        sampleErrors(runs)
      ]
    })
  })
  return table(
    [
      "Load",
      "Server",
      "req/s (median)",
      "vs single",
      "p99 ms",
      "tree CPU µs/req",
      "primary CPU µs/conn (above idle)",
      "primary CPU ms/s: load (idle)",
      "workers CPU µs/req",
      "CPU share per worker % (each round)",
      "connections per worker (each round)",
      "req/s spread",
      "runs",
      "errors"
    ],
    rows
  )
}

const checkTitle = (check: FailureCheck): string =>
  check.kind === "reload"
    ? `reload (SIGHUP ${RELOAD_AT_MS / 1000} s into ${check.seconds} s)`
    : `recycling (${RECYCLE_FLAGS.join(" ")})`

const loadTitle = (load: LoadId): string => LOADS.find((l) => l.id === load)?.title ?? load

/** A fenced block of what the pool and nginx logged during a check, when they logged anything of note. */
const checkLogs = (check: FailureCheck): Array<string> => {
  const lines = [
    ...check.poolLog.map((line) => `pool: ${line}`),
    ...(check.nginxLog === undefined
      ? []
      : (check.nginxLog === "" ? ["(nothing)"] : check.nginxLog.split("\n")).map((line) => `nginx: ${line}`))
  ]
  if (lines.length === 0) return []
  const what = `${checkTitle(check)}, ${check.dispatch}, ${loadTitle(check.load)}`
  return [
    "",
    `Logged during ${what} (the pool's warnings and errors; nginx's error log after errors):`,
    "",
    "```",
    ...lines,
    "```"
  ]
}

const checksTable = (checks: ReadonlyArray<FailureCheck>): string =>
  table(
    ["Check (2 workers)", "dispatch", "load", "req/s", "requests", "errors", "workers", "zero failures"],
    checks.map((check) => [
      checkTitle(check),
      check.dispatch,
      loadTitle(check.load),
      fmtRps(check.result.requestsPerSec),
      check.requests.toLocaleString("en-US"),
      hasErrors(check.result) ? `**${check.result.errorDetail}**` : "none",
      checkEvent(check),
      hasErrors(check.result) ? "MISS" : checkExercised(check) ? "PASS" : "MISS (not exercised)"
    ])
  )

/** The loads that make a connection to the pool per request: there the primary's cost per connection shows. */
const PER_REQUEST_LOADS: ReadonlyArray<LoadId> = ["close", "nginx"]

const targetRows = (samples: ReadonlyArray<PreforkSample>, loads: ReadonlyArray<LoadId>): Array<Array<string>> => {
  const rows: Array<Array<string>> = []
  for (const shape of POOL_SHAPES.filter((s) => s.workers > 0 && s.handoffLimit === undefined)) {
    for (const load of loads) {
      const runs = runsOf(samples, shape.id, load)
      const primary = medianOf(runs, (cpu) => cpu.primaryUsPerConnection)
      const name = `${shape.label}, ${loadTitle(load)}: primary CPU per connection`
      if (!PER_REQUEST_LOADS.includes(load)) {
        const perSecond = medianOf(runs, (cpu) => cpu.primaryMsPerSecond)
        const idle = median(
          runs.flatMap((run) => (run.primaryIdleMsPerSecond === undefined ? [] : [run.primaryIdleMsPerSecond]))
        )
        rows.push([
          name,
          `${fmtUs(primary)} µs = ${fmtUs(perSecond)} ms/s under load (${fmtUs(idle)} without) over ${CONNECTIONS} connections`,
          "none: the primary's background work, not a per-connection cost",
          "-"
        ])
      } else if (shape.dispatch === "shared") {
        const above = medianAboveIdle(runs)
        rows.push([
          `${name}, above its CPU without load`,
          `${fmtUs(above)} µs (with its background work: ${fmtUs(primary)} µs)`,
          `<= ${SHARED_PRIMARY_MAX_US} µs (~0)`,
          Number.isFinite(above) ? pass(above <= SHARED_PRIMARY_MAX_US) : "not measured"
        ])
      } else {
        const worker = medianOf(runs, (cpu) => cpu.workerUsPerRequest)
        const ratio = primary / worker
        rows.push([
          `${name} / workers' CPU per request`,
          `${fmtUs(primary)} / ${fmtUs(worker)} µs = ${Number.isFinite(ratio) ? ratio.toFixed(2) : "-"}`,
          `<= ${PRIMARY_FRACTION.toFixed(2)}`,
          Number.isFinite(ratio) ? pass(ratio <= PRIMARY_FRACTION) : "not measured"
        ])
        const limitShape = POOL_SHAPES.find(
          (s) => s.handoffLimit !== undefined && s.workers === shape.workers && measuredUnder(s, load)
        )
        if (limitShape === undefined) continue
        const limitRuns = runsOf(samples, limitShape.id, load)
        const limitPrimary = medianOf(limitRuns, (cpu) => cpu.primaryUsPerConnection)
        const limitWorker = medianOf(limitRuns, (cpu) => cpu.workerUsPerRequest)
        rows.push([
          `${limitShape.label}, ${loadTitle(load)}: the same for Node's bare handle passing (reference)`,
          `${fmtUs(limitPrimary)} / ${fmtUs(limitWorker)} µs = ${Number.isFinite(limitPrimary / limitWorker) ? (limitPrimary / limitWorker).toFixed(2) : "-"}`,
          "none: the floor of the mechanism on this machine",
          "-"
        ])
        const overLimit = primary / limitPrimary
        rows.push([
          `${name} / the handoff limit's`,
          `${fmtUs(primary)} / ${fmtUs(limitPrimary)} µs = ${Number.isFinite(overLimit) ? overLimit.toFixed(2) : "-"}`,
          "none: how close to the floor (slower workers acknowledge handles later, and a primary woken for fewer connections at a time pays more per connection)",
          "-"
        ])
      }
    }
  }
  for (const shape of ["shared-2", "primary-2"]) {
    const balances = runsOf(samples, shape, "keep-alive")
      .map((run) => balance(run.split ?? []))
      .filter(Number.isFinite)
    const value = median(balances)
    const measured = Number.isFinite(value)
      ? `${value.toFixed(2)} (worst round ${Math.min(...balances).toFixed(2)})`
      : "-"
    const name = `2 workers, ${shape === "shared-2" ? "shared" : "primary"}, keep-alive: connections of the smaller worker / the larger's (median over rounds)`
    if (shape === "shared-2") rows.push([name, measured, "none: the kernel decides which worker accepts", "-"])
    else
      rows.push([
        name,
        measured,
        `>= ${BALANCE_MIN}`,
        Number.isFinite(value) ? pass(value >= BALANCE_MIN) : "not measured"
      ])
  }
  return rows
}

const cpusNote = (): string => {
  const cpus = Os.cpus().length
  return cpus <= 2
    ? `**This machine has ${cpus} cores, and wrk (one thread) keeps one of them busy (nginx another process ` +
        "on the nginx load): 2 workers have no second free core, so scaling cannot show here and `vs single` " +
        "is not a scaling figure. Read the CPU per request and the balance instead.**"
    : `This machine has ${cpus} cores; wrk (one thread) keeps one busy, and nginx's worker another on the nginx load.`
}

/** The Markdown section of the report. */
export const renderPreforkSection = (outcome: PreforkOutcome): string => {
  const heading = "## Prefork pool: 1 and 2 workers vs a single process"
  if (outcome._tag === "Skipped") return `${heading}\n\nSkipped: ${outcome.reason}.`
  const loads = outcome.loads.map((load) => load.id)
  const all = [...outcome.checks.map((check) => check.result), ...outcome.samples.map((sample) => sample.result)]
  const failing = all.filter(hasErrors).length
  return [
    heading,
    "",
    "`effect-appserver serve examples/echo.ts` as a single process and with `--workers 1|2 --dispatch " +
      `shared|primary\`, under wrk \`GET /\` on ${CONNECTIONS} connections: keep-alive; a connection per request ` +
      "(`Connection: close`); and through nginx (one worker, as in the nginx section) over SCGI to the pool " +
      `(\`--protocol scgi\`), a new upstream connection per request. ${outcome.rounds} round(s) x ` +
      `${outcome.seconds} s per run (fewer and shorter than the main scenario's), the servers rotating each ` +
      "round; medians over rounds. CPU from /proc (user + system, per thread to the ns from schedstat): " +
      "**tree** = primary + workers per request; **primary µs/conn** = the primary's CPU over the run / the " +
      `connections made to the pool (${CONNECTIONS} per keep-alive run, one per request otherwise), and in ` +
      "parentheses the same above its CPU without load (negative: it spent less per second under the load " +
      "than idle); **primary ms/s** = the primary's CPU per second of the run, and in parentheses per second " +
      "without load (over the other pools' runs of the same protocol, when its pool had none): its background " +
      `work, which a keep-alive run's ${CONNECTIONS} connections cannot dilute, so the targets on the primary's ` +
      "cost per connection apply to the loads with a connection per request; **workers µs/req** = all workers' CPU / requests (the single " +
      "process: its own). Balance, two measures: **CPU share** is each worker's fraction of the workers' CPU per run, a " +
      "proxy for its share of requests (from /proc, as the other figures, rather than from the pool's " +
      "metrics endpoint); **connections per worker** is exact: the established connections each worker holds 70% " +
      "into a keep-alive run (`ss`, or /proc/net/tcp without it, matched with each worker's /proc/PID/fd). " +
      "**handoff limit**: bench/peers/limit.ts, a primary that hands each connection round-robin to bare " +
      "node:net responders with Node's IPC handle passing (the mechanism of `--dispatch primary`) and " +
      "does nothing else: the least a primary that hands connections over can spend in Node.",
    "",
    cpusNote(),
    ...outcome.notes.map((note) => `\nNote: ${note}.`),
    "",
    mainTable(outcome.samples, loads),
    "",
    `Zero-failure checks, ${CHECK_SECONDS} s of each load on a 2-worker pool per dispatch mode: a rolling ` +
      `reload (SIGHUP to the primary ${RELOAD_AT_MS / 1000} s in; new workers ready, then the old ones drain), ` +
      `and a pool started with \`${RECYCLE_FLAGS.join(" ")}\` (workers retire and are replaced all through ` +
      "the run). Errors are wrk's non-2xx and socket errors; `workers` says what happened (worker pids polled " +
      "every 100 ms), and a check in which no worker was replaced under load does not pass.",
    "",
    checksTable(outcome.checks),
    ...outcome.checks.flatMap(checkLogs),
    "",
    table(
      ["Target (prefork)", "measured", "target", "met"],
      [
        ...targetRows(outcome.samples, loads),
        [
          "zero failed requests during reloads and recycling (every load, both modes)",
          `${outcome.checks.filter((check) => hasErrors(check.result)).length} of ${outcome.checks.length} checks with errors`,
          "0",
          pass(
            outcome.checks.length > 0 &&
              outcome.checks.every((check) => !hasErrors(check.result) && checkExercised(check))
          )
        ]
      ]
    ),
    ...(failing > 0 ? ["", `**WARNING: ${failing} prefork runs had errors, see the errors columns.**`] : [])
  ].join("\n")
}
