/**
 * Benchmark harness: `npm run bench` (= node bench/run.ts). See bench/config.ts for options.
 *
 * Starts effect-appserver, Effect's NodeHttpServer and a bare node:http server on the same echo
 * app, drives each with wrk in interleaved rounds, then the WebSocket echo of both Effect servers
 * (bench/websocket.ts, with bench/wsload.ts), the same HTTP load through nginx (bench/nginx.ts:
 * SCGI and HTTP proxy paths), effect-appserver's prefork pool against a single process
 * (bench/prefork.ts), measures idle-connection memory, and prints a Markdown report (also
 * written to bench/results.md). Progress goes to stderr. With --baseline REV, effect-appserver at
 * that revision (bench/baseline.ts) runs in every phase next to this checkout's, and the report
 * compares the two (bench/compare.ts).
 */
import { writeFile } from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { type Baseline, checkOutBaseline, withBaseline } from "./baseline.ts"
import { renderComparison } from "./compare.ts"
import { type Config, parseConfig, USAGE } from "./config.ts"
import { chooseLoadTool } from "./loadTool.ts"
import { progress } from "./log.ts"
import { type NginxOutcome, nginxPhase, renderNginxSection } from "./nginx.ts"
import { memoryPhase, memoryPreflight, throughputPhase } from "./phases.ts"
import { type PreforkOutcome, preforkPhase } from "./prefork.ts"
import { renderPreforkSection } from "./preforkReport.ts"
import { beginShutdown, killAllSync, removeTempDirsSync, terminateAll } from "./proc.ts"
import { renderReport } from "./report.ts"
import { SCENARIOS } from "./scenarios.ts"
import { type Checkout, THIS_CHECKOUT } from "./servers.ts"
import { renderWebSocketSection, type WebSocketOutcome, websocketPhase, wsLoadLine } from "./websocket.ts"

const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 }

/** Whatever way the harness ends, its servers and load generators end with it. */
const installCleanup = (): void => {
  for (const [signal, code] of Object.entries(SIGNAL_EXIT)) {
    process.once(signal, () => {
      beginShutdown()
      process.stderr.write(`\n${signal}: stopping servers\n`)
      void terminateAll().finally(() => process.exit(code))
    })
  }
  // exit handlers run synchronously only: SIGKILL anything still alive, then remove the
  // temporary folders (the baseline's checkout, nginx's sockets)
  process.on("exit", () => {
    killAllSync()
    removeTempDirsSync()
  })
}

/** Taken when the run starts: the load average then says how busy the shared machine was. */
const startedAt = new Date()
const loadAtStart = Os.loadavg()[0]

const quickMark = (config: Config): string => (config.quick ? " (--quick smoke run: not representative)" : "")

/** Whether any scenario other than the prefork one runs (they share the rounds and servers lines). */
const othersRun = (config: Config): boolean => config.throughput || config.websocket || config.nginx || config.memory

const header = (config: Config, toolVersion: string, baseline: Baseline | undefined): Array<string> => [
  `date: ${startedAt.toISOString()}`,
  `node: ${process.version} (harness and servers), ${Os.cpus().length} CPUs (${Os.cpus()[0]?.model ?? "unknown"})`,
  `1-minute load average: ${loadAtStart.toFixed(2)} at start, ${Os.loadavg()[0].toFixed(2)} at end (wrk and one busy server account for about 2)`,
  `load generator: ${toolVersion}`,
  ...(config.websocket ? [wsLoadLine(config)] : []),
  ...(othersRun(config)
    ? [
        `rounds: ${config.rounds}, duration: ${config.duration} s per run, warmup: ${config.warmup} s per scenario and server${quickMark(config)}`,
        `servers: ${config.servers.map((s) => s.label).join(", ")}; run order rotated each round`
      ]
    : []),
  ...(config.prefork
    ? [
        `prefork scenario: ${config.preforkRounds} round(s) x ${config.preforkDuration} s per run, ` +
          `${Math.min(config.warmup, 1)} s warmup, effect-appserver (this checkout) only${quickMark(config)}`
      ]
    : []),
  ...(baseline === undefined
    ? []
    : [
        `baseline: ${baseline.rev} = ${baseline.sha} ("${baseline.subject}"), from \`git archive\` in a temporary ` +
          "folder with this checkout's node_modules"
      ])
]

const NOTES = [
  "Medians over rounds; `req/s spread` is (max - min) / median over the rounds, a noise indicator.",
  "Pipelined: the load generator counts every pipelined request, so req/s there is responses per second. " +
    "Its p99 is wrk's latency of a whole batch of 16, with wrk's pipelining percentile bug worked around (bench/pipeline.lua).",
  "Errors are the load generator's non-2xx (status >= 400) and socket errors; a run with errors is listed, not hidden.",
  "Memory: VmRSS of the server process tree from /proc, fresh server, baseline after a few requests and 1 s; " +
    "then each connection sends one keep-alive GET /, reads the response and idles 2 s. " +
    "All servers run with a 120 s keep-alive timeout so idle connections are not closed during the probe. " +
    "No GC can be forced in the servers, so the growth includes garbage from those requests not yet collected."
]

const main = async (): Promise<number> => {
  const options = parseConfig(process.argv.slice(2), Path.join(import.meta.dirname, "results.md"))
  if (options === undefined) {
    process.stdout.write(USAGE)
    return 0
  }
  const baseline = options.baseline === undefined ? undefined : await checkOutBaseline(options.baseline)
  if (baseline !== undefined)
    progress(`baseline ${baseline.rev} (${baseline.sha}) checked out in ${baseline.checkout.root}`)
  const config: Config =
    baseline === undefined ? options : { ...options, servers: withBaseline(options.servers, baseline) }
  const checkouts: ReadonlyArray<Checkout> =
    baseline === undefined ? [THIS_CHECKOUT] : [THIS_CHECKOUT, baseline.checkout]
  const warnings = memoryPreflight(config)
  for (const warning of warnings) progress(`warning: ${warning}`)
  const tool = await chooseLoadTool(config.tool)
  if (tool.note !== undefined) progress(tool.note)
  const toolVersion = await tool.version()
  progress(`load generator: ${toolVersion}`)
  const samples = config.throughput ? await throughputPhase(config, tool) : []
  const websocket: WebSocketOutcome | undefined = config.websocket ? await websocketPhase(config) : undefined
  if (websocket?._tag === "Skipped") progress(`WebSocket scenario skipped: ${websocket.reason}`)
  const nginx: NginxOutcome | undefined = config.nginx ? await nginxPhase(config, tool, checkouts) : undefined
  if (nginx?._tag === "Skipped") {
    if (config.nginxOnly) throw new Error(`--nginx-only: ${nginx.reason}`)
    progress(`nginx scenario skipped: ${nginx.reason}`)
  }
  const prefork: PreforkOutcome | undefined = config.prefork ? await preforkPhase(config, tool) : undefined
  if (prefork?._tag === "Skipped") {
    if (config.preforkOnly) throw new Error(`--prefork-only: ${prefork.reason}`)
    progress(`prefork scenario skipped: ${prefork.reason}`)
  }
  const memory = config.memory ? await memoryPhase(config) : []
  const comparison =
    baseline === undefined
      ? []
      : [
          renderComparison({
            baseline,
            samples,
            scenarios: SCENARIOS,
            memory,
            memoryConnections: config.memoryConnections,
            nginx,
            websocket
          })
        ]
  const report = renderReport({
    header: header(config, toolVersion, baseline),
    samples,
    scenarios: SCENARIOS,
    servers: config.servers,
    memory,
    memoryConnections: config.memoryConnections,
    sections: [
      ...(websocket === undefined ? [] : [renderWebSocketSection(websocket)]),
      ...(nginx === undefined ? [] : [renderNginxSection(nginx)]),
      ...(prefork === undefined ? [] : [renderPreforkSection(prefork)]),
      ...comparison
    ],
    notes: [...(tool.note === undefined ? [] : [tool.note]), ...NOTES, ...warnings]
  })
  process.stdout.write(`\n${report}`)
  await writeFile(config.out, report)
  progress(`report written to ${config.out}`)
  return 0
}

installCleanup()
const code = await main().catch((error: unknown) => {
  process.stderr.write(`\nbench failed: ${error instanceof Error ? error.message : String(error)}\n`)
  return 1
})
await terminateAll()
// fetch's keep-alive sockets could hold the event loop open; nothing is left to wait for
process.exit(code)
