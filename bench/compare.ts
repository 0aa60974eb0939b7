/**
 * The report section of --baseline: this checkout's effect-appserver against the baseline
 * revision's, both measured in the same run, scenario by scenario, with the spreads that say
 * whether a ratio is a change or noise.
 */
import type { Baseline } from "./baseline.ts"
import type { MemoryResult } from "./memory.ts"
import { fmtCpu, medianCpu, type NginxOutcome, type NginxSample, runsOf } from "./nginx.ts"
import {
  cpuRatio,
  cpuText,
  fmtMiB,
  fmtPercent,
  fmtRps,
  growthKiB,
  hasErrors,
  kibPerConnection,
  type MemorySample,
  median,
  ratioText,
  type Sample,
  type ServerSamples,
  samplesOf,
  spread,
  spreadCell,
  table
} from "./report.ts"
import type { Scenario } from "./scenarios.ts"
import { type WebSocketOutcome, wsRunsOf } from "./websocket.ts"

export interface ComparisonInput {
  readonly baseline: Baseline
  readonly samples: ReadonlyArray<Sample>
  readonly scenarios: ReadonlyArray<Scenario>
  readonly memory: ReadonlyArray<MemorySample>
  readonly memoryConnections: number
  readonly nginx: NginxOutcome | undefined
  readonly websocket: WebSocketOutcome | undefined
}

const medianRps = (runs: ServerSamples): number => median(runs.map((sample) => sample.result.requestsPerSec))

/**
 * Whether this / base moved further from 1 than the rounds of either side spread: a ratio within
 * the spread is noise, not a change.
 */
const verdict = (ratio: number, mine: ServerSamples, base: ServerSamples): string => {
  const band = [spread(mine), spread(base)]
  if (!Number.isFinite(ratio)) return "n/a"
  if (band[0] === undefined || band[1] === undefined) return "one round: no spread to judge by"
  const widest = Math.max(band[0], band[1])
  const change = ratio - 1
  if (Math.abs(change) <= widest) return "within noise"
  return `**${change > 0 ? "faster" : "slower"} by ${fmtPercent(Math.abs(change))}** (spread ${fmtPercent(widest)})`
}

/** Median req/s of both, this / base, both spreads, and the verdict. */
const rpsCells = (mine: ServerSamples, base: ServerSamples): Array<string> => {
  const ratio = medianRps(mine) / medianRps(base)
  const tainted = [...mine, ...base].some((sample) => hasErrors(sample.result))
  return [
    fmtRps(medianRps(mine)),
    fmtRps(medianRps(base)),
    ratioText(ratio, tainted),
    spreadCell(mine),
    spreadCell(base),
    verdict(ratio, mine, base)
  ]
}

const rpsHeader = (short: string): Array<string> => [
  "this req/s",
  `${short} req/s`,
  "this / base",
  "this spread",
  `${short} spread`,
  "verdict"
]

const throughputTable = (input: ComparisonInput, short: string): string =>
  table(
    [
      "Scenario",
      ...rpsHeader(short),
      "this CPU µs/req (user + system = total)",
      `${short} CPU µs/req (user + system = total)`,
      "CPU this / base"
    ],
    input.scenarios.map((scenario) => {
      const mine = samplesOf(input.samples, scenario.id, "appserver")
      const base = samplesOf(input.samples, scenario.id, "appserver-base")
      return [
        scenario.title,
        ...rpsCells(mine, base),
        cpuText(mine),
        cpuText(base),
        cpuRatio(input.samples, scenario.id, "appserver", "appserver-base")
      ]
    })
  )

/** The nginx paths through effect-appserver, each next to its `-base` twin. */
const nginxTable = (outcome: NginxOutcome & { readonly _tag: "Measured" }, short: string): string => {
  const pairs = outcome.paths.filter((path) => outcome.paths.some((other) => other.id === `${path.id}-base`))
  const serverCpu = (runs: ReadonlyArray<NginxSample>) => medianCpu(runs, (cpu) => cpu.backendUs)
  return table(
    ["Path", ...rpsHeader(short), "this server CPU µs/req", `${short} server CPU µs/req`, "CPU this / base"],
    pairs.map((path) => {
      const mine = runsOf(outcome.samples, path.id)
      const base = runsOf(outcome.samples, `${path.id}-base` as typeof path.id)
      const cpuRatio = serverCpu(mine) / serverCpu(base)
      return [
        path.label,
        ...rpsCells(mine, base),
        fmtCpu(serverCpu(mine)),
        fmtCpu(serverCpu(base)),
        Number.isFinite(cpuRatio) ? `${cpuRatio.toFixed(2)}x` : "n/a"
      ]
    })
  )
}

/** Idle connections failed or closed early: the growth then stands for fewer connections. */
const memoryTrouble = (result: MemoryResult): boolean => result.failed > 0 || result.closedBeforeMeasure > 0

const memoryTable = (mine: MemoryResult, base: MemoryResult, short: string): string =>
  table(
    ["Memory", "this growth MiB", `${short} growth MiB`, "this / base", "this KiB / conn", `${short} KiB / conn`],
    [
      [
        "RSS growth with idle keep-alive connections",
        fmtMiB(growthKiB(mine)),
        fmtMiB(growthKiB(base)),
        ratioText(growthKiB(mine) / growthKiB(base), memoryTrouble(mine) || memoryTrouble(base)),
        kibPerConnection(mine),
        kibPerConnection(base)
      ]
    ]
  )

/** `## This checkout vs REV`, with whichever phases ran. */
export const renderComparison = (input: ComparisonInput): string => {
  const { baseline } = input
  const short = baseline.shortSha
  const parts = [
    `## This checkout vs ${baseline.rev}`,
    "",
    `effect-appserver from this checkout ("this") against \`${baseline.checkout.label}\` ` +
      `(${baseline.rev} = ${baseline.sha}, "${baseline.subject}"), both started the same way and measured in ` +
      "this run, in the same interleaved rounds. this / base above 1.00x: this checkout serves more requests " +
      "per second, or uses more memory or CPU per request. The spreads are (max - min) / median over the rounds " +
      "of each side: **a ratio within the spread is noise, not a change**, and the verdict says which, " +
      "against the wider of the two spreads. With one round there is no spread and the ratios say little."
  ]
  if (input.samples.length > 0) parts.push("", throughputTable(input, short))
  const websocket = input.websocket
  if (websocket?._tag === "Measured" && wsRunsOf(websocket.samples, "appserver-base").length > 0) {
    parts.push(
      "",
      `${websocket.scenario.title}: messages per second in place of requests.`,
      "",
      table(
        ["Scenario", ...rpsHeader(short)],
        [
          [
            websocket.scenario.title,
            ...rpsCells(wsRunsOf(websocket.samples, "appserver"), wsRunsOf(websocket.samples, "appserver-base"))
          ]
        ]
      )
    )
  }
  const mine = input.memory.find((sample) => sample.server.id === "appserver")
  const base = input.memory.find((sample) => sample.server.id === "appserver-base")
  if (mine !== undefined && base !== undefined) {
    parts.push(
      "",
      `${input.memoryConnections.toLocaleString("en-US")} idle keep-alive connections, one fresh probe per ` +
        "server: there is no spread to judge by, and the growth includes garbage not yet collected, so only a " +
        "clear difference is a change.",
      "",
      memoryTable(mine.result, base.result, short)
    )
  }
  if (input.nginx?._tag === "Measured") {
    parts.push(
      "",
      "Through nginx (GET /, 50 conns); server CPU µs/req is that of the effect-appserver process (from /proc), " +
        "lower is cheaper.",
      "",
      nginxTable(input.nginx, short)
    )
  }
  return parts.join("\n")
}
