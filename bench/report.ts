/**
 * Turning runs into Markdown: medians per scenario and server, ratios against the targets, the
 * memory scenario, and any run with errors called out rather than averaged away.
 */
import type { MemoryResult } from "./memory.ts"
import type { RunResult, Scenario, ScenarioId } from "./scenarios.ts"
import type { ServerId, ServerSpec } from "./servers.ts"

/** A server's CPU per request over one run (from /proc: utime and stime, 10 ms ticks). */
export interface ServerCpu {
  readonly userUs: number
  readonly systemUs: number
}

export interface Sample {
  readonly scenario: ScenarioId
  readonly server: ServerId
  readonly round: number
  readonly result: RunResult
  /** Undefined where /proc is not available. */
  readonly cpu?: ServerCpu | undefined
}

export interface MemorySample {
  readonly server: ServerSpec
  readonly result: MemoryResult
}

interface Target {
  readonly scenario: ScenarioId
  readonly versus: ServerId
  readonly atLeast: number
}

/** Throughput targets for effect-appserver, as ratios of req/s (against the limit: issue 13's). */
const TARGETS: ReadonlyArray<Target> = [
  { scenario: "hello", versus: "effect-node", atLeast: 1.6 },
  { scenario: "hello", versus: "node-http", atLeast: 1.3 },
  { scenario: "pipelined", versus: "effect-node", atLeast: 4 },
  { scenario: "post", versus: "effect-node", atLeast: 2 },
  { scenario: "hello", versus: "limit", atLeast: 0.85 },
  { scenario: "pipelined", versus: "limit", atLeast: 0.45 },
  { scenario: "post", versus: "limit", atLeast: 0.8 }
]

/** RSS growth target for effect-appserver with 10,000 idle connections. */
const MEMORY_TARGET_MIB_PER_10K = 40

export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export const fmtRps = (value: number): string =>
  Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "n/a"
export const fmtMs = (value: number): string => (Number.isFinite(value) ? value.toFixed(2) : "n/a")
export const fmtMiB = (kib: number): string => (kib / 1024).toFixed(1)
export const pass = (ok: boolean): string => (ok ? "PASS" : "MISS")

export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string =>
  [header, header.map(() => "---"), ...rows].map((row) => `| ${row.join(" | ")} |`).join("\n")

export const samplesOf = (samples: ReadonlyArray<Sample>, scenario: ScenarioId, server: ServerId) =>
  samples.filter((sample) => sample.scenario === scenario && sample.server === server)

const medianRps = (samples: ReadonlyArray<Sample>, scenario: ScenarioId, server: ServerId): number =>
  median(samplesOf(samples, scenario, server).map((sample) => sample.result.requestsPerSec))

/** The runs of one server (or nginx path) in one scenario. */
export type ServerSamples = ReadonlyArray<{ readonly result: RunResult }>

export const hasErrors = (result: RunResult): boolean => result.non2xx > 0 || result.socketErrors > 0

/** "2/5 runs: non-2xx 12; timeout 3" or "none". */
export const errorCell = (runs: ServerSamples): string => {
  const bad = runs.filter((sample) => hasErrors(sample.result))
  if (bad.length === 0) return "none"
  return `**${bad.length}/${runs.length} runs: ${bad.map((sample) => sample.result.errorDetail).join("; ")}**`
}

/**
 * (max - min) / median of the req/s samples, a fraction: how much to trust the median on a noisy
 * machine. Undefined for fewer than two runs.
 */
export const spread = (runs: ServerSamples): number | undefined => {
  const values = runs.map((sample) => sample.result.requestsPerSec)
  if (values.length < 2) return undefined
  return (Math.max(...values) - Math.min(...values)) / median(values)
}

export const fmtPercent = (fraction: number): string => `${(fraction * 100).toFixed(0)}%`

export const spreadCell = (runs: ServerSamples): string => {
  const value = spread(runs)
  return value === undefined ? "-" : fmtPercent(value)
}

/** A ratio of medians, flagged when runs with errors went into it: a server answering errors fast can look good. */
export const ratioText = (ratio: number, tainted: boolean): string =>
  Number.isFinite(ratio) ? `${ratio.toFixed(2)}x${tainted ? " **(runs with errors)**" : ""}` : "n/a"

const throughputTable = (
  samples: ReadonlyArray<Sample>,
  scenarios: ReadonlyArray<Scenario>,
  servers: ReadonlyArray<ServerSpec>
): string => {
  const rows = scenarios.flatMap((scenario) =>
    servers.map((server) => {
      const runs = samplesOf(samples, scenario.id, server.id)
      return [
        scenario.title,
        server.label,
        fmtRps(median(runs.map((sample) => sample.result.requestsPerSec))),
        fmtMs(median(runs.map((sample) => sample.result.p99Ms))),
        spreadCell(runs),
        String(runs.length),
        errorCell(runs)
      ]
    })
  )
  return table(["Scenario", "Server", "req/s (median)", "p99 ms (median)", "req/s spread", "runs", "errors"], rows)
}

const ratioCell = (samples: ReadonlyArray<Sample>, scenario: ScenarioId, versus: ServerId): Array<string> => {
  const ratio = medianRps(samples, scenario, "appserver") / medianRps(samples, scenario, versus)
  const target = TARGETS.find((t) => t.scenario === scenario && t.versus === versus)
  const tainted = [...samplesOf(samples, scenario, "appserver"), ...samplesOf(samples, scenario, versus)].some(
    (sample) => hasErrors(sample.result)
  )
  const shown = ratioText(ratio, tainted)
  if (target === undefined) return [shown, "-", ""]
  return [shown, `>= ${target.atLeast}x`, Number.isFinite(ratio) ? pass(ratio >= target.atLeast) : "not measured"]
}

/** A ratio without a target, `a / b` of median req/s. */
const ratioOf = (samples: ReadonlyArray<Sample>, scenario: ScenarioId, a: ServerId, b: ServerId): string => {
  const ratio = medianRps(samples, scenario, a) / medianRps(samples, scenario, b)
  const tainted = [...samplesOf(samples, scenario, a), ...samplesOf(samples, scenario, b)].some((sample) =>
    hasErrors(sample.result)
  )
  return ratioText(ratio, tainted)
}

const ratioTable = (samples: ReadonlyArray<Sample>, scenarios: ReadonlyArray<Scenario>): string =>
  table(
    [
      "Scenario",
      "appserver / NodeHttpServer",
      "target",
      "met",
      "appserver / node:http",
      "target",
      "met",
      "appserver / limit",
      "target",
      "met",
      "appserver / Effect limit",
      "Effect limit / limit"
    ],
    scenarios.map((scenario) => [
      scenario.title,
      ...ratioCell(samples, scenario.id, "effect-node"),
      ...ratioCell(samples, scenario.id, "node-http"),
      ...ratioCell(samples, scenario.id, "limit"),
      ratioOf(samples, scenario.id, "appserver", "effect-limit"),
      ratioOf(samples, scenario.id, "effect-limit", "limit")
    ])
  )

/** The median over the runs that measured CPU of `of` their CPU per request. */
export const medianCpuOf = (runs: ReadonlyArray<Sample>, of: (cpu: ServerCpu) => number): number =>
  median(runs.flatMap((sample) => (sample.cpu === undefined ? [] : [of(sample.cpu)])))

export const total = (cpu: ServerCpu): number => cpu.userUs + cpu.systemUs

export const fmtUs = (us: number): string => (Number.isFinite(us) ? us.toFixed(2) : "n/a")

/** "user + system = total" of the runs' medians. */
export const cpuText = (runs: ReadonlyArray<Sample>): string =>
  `${fmtUs(medianCpuOf(runs, (cpu) => cpu.userUs))} + ${fmtUs(medianCpuOf(runs, (cpu) => cpu.systemUs))} = ${fmtUs(medianCpuOf(runs, total))}`

/** "a / b" of median total CPU per request, lower is cheaper. */
export const cpuRatio = (samples: ReadonlyArray<Sample>, scenario: ScenarioId, a: ServerId, b: ServerId): string => {
  const ratio =
    medianCpuOf(samplesOf(samples, scenario, a), total) / medianCpuOf(samplesOf(samples, scenario, b), total)
  return Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : "n/a"
}

/**
 * Server CPU per request, user and system apart: less noisy than req/s on a shared machine (a
 * neighbour's load slows a run, it hardly changes what a request costs), and it tells the work of
 * the server's own code (user) from the kernel's (system: the socket calls, waking the peer).
 */
const cpuTable = (
  samples: ReadonlyArray<Sample>,
  scenarios: ReadonlyArray<Scenario>,
  servers: ReadonlyArray<ServerSpec>
): string | undefined => {
  if (!samples.some((sample) => sample.cpu !== undefined)) return undefined
  const has = (id: ServerId) => servers.some((server) => server.id === id)
  const ratios: Array<readonly [string, ServerId, ServerId]> = [
    ["appserver / Effect limit", "appserver", "effect-limit"],
    ["appserver / limit", "appserver", "limit"],
    ["Effect limit / limit", "effect-limit", "limit"]
  ]
  const shown = ratios.filter(([, a, b]) => has(a) && has(b))
  return table(
    ["Scenario", ...servers.map((server) => `${server.label} user + system`), ...shown.map(([title]) => title)],
    scenarios.map((scenario) => [
      scenario.title,
      ...servers.map((server) => cpuText(samplesOf(samples, scenario.id, server.id))),
      ...shown.map(([, a, b]) => cpuRatio(samples, scenario.id, a, b))
    ])
  )
}

const memoryTargetMiB = (connections: number): number => (MEMORY_TARGET_MIB_PER_10K * connections) / 10_000

export const growthKiB = (result: MemoryResult): number => result.loadedKiB - result.baselineKiB

export const kibPerConnection = (result: MemoryResult): string =>
  result.opened > 0 ? `${(growthKiB(result) / result.opened).toFixed(2)}` : "n/a"

const memoryRow = (sample: MemorySample, connections: number): Array<string> => {
  const { result, server } = sample
  const growth = growthKiB(result)
  const held = result.opened - result.closedBeforeMeasure
  const trouble = result.failed > 0 || result.closedBeforeMeasure > 0
  const connCell = `${held}/${connections}${trouble ? ` **(${result.failed} failed, ${result.closedBeforeMeasure} closed by server)**` : ""}`
  const limit = memoryTargetMiB(connections)
  const target = server.id === "appserver" ? `<= ${limit} MiB ${pass(growth / 1024 <= limit && !trouble)}` : "-"
  return [
    server.label,
    fmtMiB(result.baselineKiB),
    fmtMiB(result.loadedKiB),
    fmtMiB(growth),
    kibPerConnection(result),
    connCell,
    target
  ]
}

export const memoryTable = (memory: ReadonlyArray<MemorySample>, connections: number): string =>
  table(
    ["Server", "baseline RSS MiB", "RSS with idle conns MiB", "growth MiB", "KiB / conn", "conns held", "target"],
    memory.map((sample) => memoryRow(sample, connections))
  )

export interface ReportInput {
  readonly header: ReadonlyArray<string>
  readonly samples: ReadonlyArray<Sample>
  readonly scenarios: ReadonlyArray<Scenario>
  readonly servers: ReadonlyArray<ServerSpec>
  readonly memory: ReadonlyArray<MemorySample>
  readonly memoryConnections: number
  /** Further Markdown sections (the nginx scenario), each starting with its `##` heading. */
  readonly sections?: ReadonlyArray<string>
  readonly notes: ReadonlyArray<string>
}

/** The whole Markdown report; sections without data are left out. */
export const renderReport = (input: ReportInput): string => {
  const parts = ["# effect-appserver benchmark", "", ...input.header.map((line) => `- ${line}`)]
  if (input.samples.length > 0) {
    parts.push("", "## Throughput", "", throughputTable(input.samples, input.scenarios, input.servers))
    const failing = input.samples.filter((sample) => hasErrors(sample.result)).length
    if (failing > 0)
      parts.push("", `**WARNING: ${failing} of ${input.samples.length} runs had errors, see the errors column.**`)
    parts.push("", "## Ratios (median req/s)", "", ratioTable(input.samples, input.scenarios))
    const cpu = cpuTable(input.samples, input.scenarios, input.servers)
    if (cpu !== undefined) {
      parts.push(
        "",
        "## Server CPU per request (µs, medians)",
        "",
        "From /proc over each run: user (the server's own code, Node and V8) + system (the kernel: " +
          "socket calls, waking the peer) = total; ratios of the totals, lower is cheaper. A server that " +
          "wrk cannot keep busy (the limit) idles between requests, which costs nothing here.",
        "",
        cpu
      )
    }
  }
  if (input.memory.length > 0) {
    parts.push("", `## Memory: ${input.memoryConnections.toLocaleString("en-US")} idle keep-alive connections`, "")
    parts.push(memoryTable(input.memory, input.memoryConnections))
  }
  for (const section of input.sections ?? []) parts.push("", section)
  if (input.notes.length > 0) parts.push("", "## Notes", "", ...input.notes.map((note) => `- ${note}`))
  return `${parts.join("\n")}\n`
}
