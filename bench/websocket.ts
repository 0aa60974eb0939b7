/**
 * The WebSocket scenario: `GET /ws` of examples/echo.ts (an echo on Effect's Socket API) on
 * effect-appserver and on Effect's NodeHttpServer, both serving the same app, loaded by
 * bench/wsload.ts (a process of its own: wrk speaks no WebSocket) with 50 connections each echoing
 * 64-byte binary messages, one in flight per connection unless --ws-inflight says otherwise.
 * Interleaved over rounds like the other scenarios; the report gives messages per second, the
 * p99 round trip, the server's CPU per message and the ratio against NodeHttpServer. node:http has
 * no WebSocket server of its own and takes no part; with --baseline, the baseline's
 * effect-appserver does when its echo app has the route.
 */
import { createRequire } from "node:module"
import * as Path from "node:path"
import { WebSocket } from "@effect/platform-node/NodeWS"
import type { Config } from "./config.ts"
import { cpuSeconds, procAvailable } from "./cpu.ts"
import { fmtDuration, progress } from "./log.ts"
import { fmtCpu } from "./nginx.ts"
import { rotate, startVerified } from "./phases.ts"
import { runCommand, terminate } from "./proc.ts"
import { errorCell, fmtMs, fmtRps, hasErrors, median, pass, ratioText, spreadCell, table } from "./report.ts"
import type { RunResult } from "./scenarios.ts"
import { assertAlive, type RunningServer, type ServerId, type ServerSpec } from "./servers.ts"
import type { WsLoadResult } from "./wsload.ts"

/** The servers that serve `GET /ws`: both Effect servers (node:http has no WebSocket server). */
const WEBSOCKET_SERVERS: ReadonlyArray<ServerId> = ["appserver", "appserver-base", "effect-node"]

/** Seconds each load-generator process runs unmeasured first: it starts cold every run. */
const CLIENT_WARMUP = 1

/** Ours / NodeHttpServer's median messages per second must be at least this. */
const TARGET = 1.0

export interface WsScenario {
  readonly title: string
  readonly path: string
  readonly connections: number
  /** Bytes per message. */
  readonly size: number
  /** Messages in flight per connection. */
  readonly inflight: number
}

export const wsScenario = (inflight: number): WsScenario => ({
  title: `WebSocket echo, 64 B messages (50 conns, ${inflight} in flight each)`,
  path: "/ws",
  connections: 50,
  size: 64,
  inflight
})

export interface WsSample {
  readonly server: ServerId
  readonly round: number
  /** `requestsPerSec` is messages per second here. */
  readonly result: RunResult
  /** User + system CPU of the server process per message, undefined without /proc. */
  readonly cpuUs: number | undefined
}

export type WebSocketOutcome =
  | { readonly _tag: "Skipped"; readonly reason: string }
  | {
      readonly _tag: "Measured"
      readonly scenario: WsScenario
      readonly servers: ReadonlyArray<ServerSpec>
      readonly samples: ReadonlyArray<WsSample>
      /** Servers left out, with why (a baseline whose echo app has no `/ws`). */
      readonly excluded: ReadonlyArray<string>
    }

const wsUrl = (server: RunningServer, path: string): string => `${server.url.replace(/^http/, "ws")}${path}`

/** One message echoed on `/ws`, or an error saying what went wrong. */
const probe = (url: string): Promise<void> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { handshakeTimeout: 5_000 })
    const payload = Buffer.alloc(64, 0x61)
    const timer = setTimeout(() => fail(new Error("no echo within 5 s")), 5_000)
    const fail = (error: Error) => {
      clearTimeout(timer)
      ws.terminate()
      reject(error)
    }
    ws.on("error", fail)
    ws.on("open", () => ws.send(payload))
    ws.on("message", (data: Buffer) => {
      clearTimeout(timer)
      ws.close()
      if (payload.equals(data)) resolve()
      else reject(new Error(`the echo differs from the message: ${data.toString("hex").slice(0, 32)}`))
    })
  })

const wsload = Path.join(import.meta.dirname, "wsload.ts")

/** The version of the `ws` package the load generator and both servers use. */
const wsVersion = (): string => {
  try {
    return (createRequire(import.meta.url)("ws/package.json") as { readonly version: string }).version
  } catch {
    return "unknown"
  }
}

/** The report header's line on the WebSocket load generator. */
export const wsLoadLine = (config: Config): string =>
  `WebSocket load generator: bench/wsload.ts on ws ${wsVersion()} (the servers' WebSocket framing too), ` +
  `${config.wsInflight} message(s) in flight per connection`

/** Runs the load generator against `server` for `seconds`. */
const load = async (scenario: WsScenario, server: RunningServer, seconds: number): Promise<WsLoadResult> => {
  const args = [
    wsload,
    "--url",
    wsUrl(server, scenario.path),
    "--connections",
    String(scenario.connections),
    "--size",
    String(scenario.size),
    "--inflight",
    String(scenario.inflight),
    "--duration",
    String(seconds),
    "--warmup",
    String(CLIENT_WARMUP)
  ]
  const result = await runCommand(process.execPath, args)
  if (result.code !== 0) throw new Error(`wsload exited with code ${result.code}:\n${result.stderr}${result.stdout}`)
  return JSON.parse(result.stdout.trim().split("\n").pop() ?? "") as WsLoadResult
}

const toRunResult = (load: WsLoadResult): RunResult => {
  const parts = [
    load.mismatches > 0 ? `wrong echo ${load.mismatches}` : "",
    load.connectErrors > 0 ? `connect ${load.connectErrors}` : "",
    load.closed > 0 ? `closed by server ${load.closed}` : ""
  ]
  return {
    requestsPerSec: load.messagesPerSec,
    p99Ms: load.p99Ms,
    non2xx: load.mismatches,
    socketErrors: load.connectErrors + load.closed,
    errorDetail: parts.filter((part) => part !== "").join(", ")
  }
}

const runOnce = async (
  scenario: WsScenario,
  server: RunningServer,
  seconds: number,
  label: string,
  width: number
): Promise<{ readonly result: RunResult; readonly cpuUs: number | undefined }> => {
  assertAlive(server)
  const before = procAvailable() ? cpuSeconds(server.pid) : undefined
  const measured = await load(scenario, server, seconds)
  assertAlive(server)
  // Over the whole load (the client's warmup too), per echo.
  const cpuUs =
    before === undefined || measured.echoed === 0
      ? undefined
      : ((cpuSeconds(server.pid) - before) * 1e6) / measured.echoed
  const result = toRunResult(measured)
  const line = `${Math.round(result.requestsPerSec).toLocaleString("en-US").padStart(9)} msg/s  p99 ${fmtMs(result.p99Ms)} ms`
  const cpu = cpuUs === undefined ? "" : `  CPU/msg ${fmtCpu(cpuUs)} µs`
  const errors = result.errorDetail === "" ? "" : `  !! ERRORS: ${result.errorDetail}`
  progress(`${label} websocket ${server.spec.label.padEnd(width)} ${line}${cpu}${errors}`)
  return { result, cpuUs }
}

/** Starts the servers that serve the route; a baseline without it is left out, any other is an error. */
const startServers = async (
  config: Config,
  scenario: WsScenario,
  excluded: Array<string>
): Promise<Array<RunningServer>> => {
  const servers: Array<RunningServer> = []
  try {
    for (const spec of config.servers.filter((spec) => WEBSOCKET_SERVERS.includes(spec.id))) {
      const server = await startVerified(spec, config)
      try {
        await probe(wsUrl(server, scenario.path))
        servers.push(server)
      } catch (error) {
        await terminate(server.child)
        const why = `${spec.label}: no WebSocket echo at ${scenario.path} (${error instanceof Error ? error.message : String(error)})`
        if (spec.id !== "appserver-base") throw new Error(why)
        progress(`  leaving out ${why}`)
        excluded.push(why)
      }
    }
    return servers
  } catch (error) {
    await Promise.all(servers.map((server) => terminate(server.child)))
    throw error
  }
}

/** All its servers up at once; every round runs each of them in rotated order. */
export const websocketPhase = async (config: Config): Promise<WebSocketOutcome> => {
  const scenario = wsScenario(config.wsInflight)
  if (!config.servers.some((spec) => WEBSOCKET_SERVERS.includes(spec.id))) {
    return { _tag: "Skipped", reason: "--servers names no server with a WebSocket route (appserver, effect-node)" }
  }
  const excluded: Array<string> = []
  const servers = await startServers(config, scenario, excluded)
  try {
    const perRun = config.duration + CLIENT_WARMUP + 0.5
    const estimate = servers.length * (config.rounds * perRun + (config.warmup > 0 ? config.warmup + 0.5 : 0))
    progress(`websocket: ${config.rounds} round(s) x ${config.duration} s, about ${fmtDuration(estimate)}`)
    const width = Math.max(16, ...servers.map((server) => server.spec.label.length))
    if (config.warmup > 0) {
      for (const server of servers) await runOnce(scenario, server, config.warmup, "warmup     ", width)
    }
    const samples: Array<WsSample> = []
    for (let round = 0; round < config.rounds; round++) {
      for (const server of rotate(servers, round)) {
        const label = `round ${round + 1}/${config.rounds}`
        const { result, cpuUs } = await runOnce(scenario, server, config.duration, label, width)
        samples.push({ server: server.spec.id, round, result, cpuUs })
      }
    }
    return { _tag: "Measured", scenario, servers: servers.map((server) => server.spec), samples, excluded }
  } finally {
    await Promise.all(servers.map((server) => terminate(server.child)))
  }
}

export const wsRunsOf = (samples: ReadonlyArray<WsSample>, server: ServerId): Array<WsSample> =>
  samples.filter((sample) => sample.server === server)

const medianMps = (samples: ReadonlyArray<WsSample>, server: ServerId): number =>
  median(wsRunsOf(samples, server).map((sample) => sample.result.requestsPerSec))

const medianCpuUs = (runs: ReadonlyArray<WsSample>): number =>
  median(runs.flatMap((sample) => (sample.cpuUs === undefined ? [] : [sample.cpuUs])))

/** The Markdown section of the report. */
export const renderWebSocketSection = (outcome: WebSocketOutcome): string => {
  if (outcome._tag === "Skipped") return `## WebSocket\n\nSkipped: ${outcome.reason}.`
  const { samples, scenario } = outcome
  const rows = outcome.servers.map((server) => {
    const runs = wsRunsOf(samples, server.id)
    return [
      server.label,
      fmtRps(median(runs.map((sample) => sample.result.requestsPerSec))),
      fmtMs(median(runs.map((sample) => sample.result.p99Ms))),
      fmtCpu(medianCpuUs(runs)),
      spreadCell(runs),
      String(runs.length),
      errorCell(runs)
    ]
  })
  const ratio = medianMps(samples, "appserver") / medianMps(samples, "effect-node")
  const tainted = samples.some(
    (sample) => (sample.server === "appserver" || sample.server === "effect-node") && hasErrors(sample.result)
  )
  return [
    `## ${scenario.title}`,
    "",
    `bench/wsload.ts (the \`ws\` client, a process of its own) opens ${scenario.connections} connections to ` +
      `\`GET ${scenario.path}\` of examples/echo.ts, an echo written on Effect's Socket API that both servers ` +
      `serve, then each connection keeps ${scenario.inflight} binary message(s) of ${scenario.size} bytes in ` +
      `flight (the next goes out as an echo comes back): ${CLIENT_WARMUP} s unmeasured (the load generator ` +
      "starts cold each run), then the run's duration; messages/s counts the echoes back in that time, p99 is " +
      "a message's round trip. Server CPU µs/msg: user + system CPU of the server process (from /proc) over " +
      "a run, per echo. node:http has no WebSocket server and takes no part." +
      (outcome.excluded.length === 0 ? "" : ` Left out: ${outcome.excluded.join("; ")}.`),
    "",
    table(
      ["Server", "messages/s (median)", "p99 ms (median)", "server CPU µs/msg", "msg/s spread", "runs", "errors"],
      rows
    ),
    "",
    table(
      ["Ratio (median messages/s)", "value", "target", "met"],
      [
        [
          "effect-appserver / NodeHttpServer",
          ratioText(ratio, tainted),
          `>= ${TARGET.toFixed(1)}x`,
          Number.isFinite(ratio) ? pass(ratio >= TARGET) : "not measured"
        ]
      ]
    )
  ].join("\n")
}
