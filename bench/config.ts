/**
 * Command-line flags and BENCH_* environment variables. A flag beats the variable, which beats
 * the --quick preset, which beats the default.
 */
import { parseArgs } from "node:util"
import type { ToolChoice } from "./loadTool.ts"
import { SERVER_SPECS, type ServerSpec } from "./servers.ts"

export interface Config {
  readonly quick: boolean
  readonly rounds: number
  /** Seconds per measured run. */
  readonly duration: number
  /** Seconds per warmup run (each scenario, each server, before the first round). */
  readonly warmup: number
  readonly servers: ReadonlyArray<ServerSpec>
  readonly tool: ToolChoice
  readonly throughput: boolean
  readonly memory: boolean
  /** The nginx scenario (nginx → SCGI / HTTP proxy → servers). */
  readonly nginx: boolean
  /** Only the nginx scenario was asked for: a missing nginx is then an error, not a skip. */
  readonly nginxOnly: boolean
  /** The WebSocket scenario (bench/websocket.ts). */
  readonly websocket: boolean
  /** Messages each WebSocket connection keeps in flight. */
  readonly wsInflight: number
  /** The prefork scenario (bench/prefork.ts): 1 and 2 workers vs a single process. */
  readonly prefork: boolean
  /** Only the prefork scenario was asked for: a missing wrk is then an error, not a skip. */
  readonly preforkOnly: boolean
  /** Its measured rounds and seconds per run (fewer and shorter than the main scenario's). */
  readonly preforkRounds: number
  readonly preforkDuration: number
  readonly memoryConnections: number
  readonly out: string
  readonly startTimeoutMs: number
  /** --baseline: a git revision whose effect-appserver runs next to this checkout's (bench/baseline.ts). */
  readonly baseline: string | undefined
}

export const USAGE = `Usage: npm run bench -- [options]    (or: node bench/run.ts [options])

  --quick              smoke run: 1 round of 2 s, 1 s warmup
  --rounds N           measured rounds                       (BENCH_ROUNDS, default 5)
  --duration S         seconds per run                       (BENCH_DURATION, default 5)
  --warmup S           seconds per warmup run, 0 to skip     (BENCH_WARMUP, default 2)
  --servers LIST       comma-separated subset of ${SERVER_SPECS.map((s) => s.id).join(",")}
                                                             (BENCH_SERVERS, default all)
  --tool T             auto | wrk | autocannon               (BENCH_TOOL, default auto)
  --mem-conns N        idle connections in the memory scenario (BENCH_MEM_CONNS, default 10000)
  --skip-memory        no memory scenario
  --memory-only        memory scenario only
  --skip-nginx         no nginx scenario (it is skipped anyway when nginx is not installed)
  --nginx-only         nginx scenario only: nginx in front of SCGI / HTTP appserver / node:http
  --skip-websocket     no WebSocket scenario
  --websocket-only     WebSocket scenario only: 64-byte echoes on 50 connections, appserver and
                       NodeHttpServer
  --ws-inflight N      messages in flight per WebSocket connection (BENCH_WS_INFLIGHT, default 1)
  --skip-prefork       no prefork scenario
  --prefork-only       prefork scenario only: 1 and 2 workers (both dispatch modes) vs a single
                       process, keep-alive, a connection per request and nginx → SCGI, then reloads
                       and recycling under load (about 5 minutes)
  --prefork-rounds N   its measured rounds                   (BENCH_PREFORK_ROUNDS, default 3)
  --prefork-duration S its seconds per run                   (BENCH_PREFORK_DURATION, default 4)
  --baseline REV       also run effect-appserver at git revision REV (checked out into a temporary
                       folder) in every phase, and compare it with this checkout (BENCH_BASELINE)
  --out PATH           Markdown report                       (BENCH_OUT, default bench/results.md)
  --start-timeout MS   wait for a server's ready line        (BENCH_START_TIMEOUT, default 20000)
`

const positiveInt = (name: string, raw: string, allowZero = false): number => {
  const value = Number(raw)
  if (!Number.isInteger(value) || value < (allowZero ? 0 : 1)) {
    throw new Error(`${name} must be a ${allowZero ? "non-negative" : "positive"} integer, got "${raw}"`)
  }
  return value
}

/** --name, then the BENCH_* variable, then fallback; validated as an integer. */
const intOption = (
  name: string,
  flag: string | undefined,
  env: string,
  fallback: number,
  allowZero = false
): number => {
  const raw = flag ?? process.env[env]
  if (raw === undefined || raw === "") return fallback
  return positiveInt(flag !== undefined ? `--${name}` : env, raw, allowZero)
}

const parseServers = (raw: string | undefined): ReadonlyArray<ServerSpec> => {
  if (raw === undefined || raw === "") return SERVER_SPECS
  return raw.split(",").map((id) => {
    const spec = SERVER_SPECS.find((s) => s.id === id.trim())
    if (spec === undefined)
      throw new Error(`unknown server "${id}"; known: ${SERVER_SPECS.map((s) => s.id).join(", ")}`)
    return spec
  })
}

const parseTool = (raw: string | undefined): ToolChoice => {
  const value = raw === undefined || raw === "" ? "auto" : raw
  if (value === "auto" || value === "wrk" || value === "autocannon") return value
  throw new Error(`--tool must be auto, wrk or autocannon, got "${value}"`)
}

/** Parsed configuration, or undefined when --help was asked for. */
export const parseConfig = (argv: ReadonlyArray<string>, defaultOut: string): Config | undefined => {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      help: { type: "boolean", short: "h" },
      quick: { type: "boolean" },
      rounds: { type: "string" },
      duration: { type: "string" },
      warmup: { type: "string" },
      servers: { type: "string" },
      tool: { type: "string" },
      "mem-conns": { type: "string" },
      "skip-memory": { type: "boolean" },
      "memory-only": { type: "boolean" },
      "skip-nginx": { type: "boolean" },
      "nginx-only": { type: "boolean" },
      "skip-websocket": { type: "boolean" },
      "websocket-only": { type: "boolean" },
      "ws-inflight": { type: "string" },
      "skip-prefork": { type: "boolean" },
      "prefork-only": { type: "boolean" },
      "prefork-rounds": { type: "string" },
      "prefork-duration": { type: "string" },
      baseline: { type: "string" },
      out: { type: "string" },
      "start-timeout": { type: "string" }
    }
  })
  if (values.help === true) return undefined
  const quick = values.quick === true
  const only = (["memory-only", "nginx-only", "websocket-only", "prefork-only"] as const).filter(
    (flag) => values[flag] === true
  )
  if (only.length > 1) throw new Error(`--${only[0]} and --${only[1]} exclude each other`)
  if (values["skip-memory"] === true && values["memory-only"] === true) {
    throw new Error("--skip-memory and --memory-only exclude each other")
  }
  if (values["skip-nginx"] === true && values["nginx-only"] === true) {
    throw new Error("--skip-nginx and --nginx-only exclude each other")
  }
  if (values["skip-websocket"] === true && values["websocket-only"] === true) {
    throw new Error("--skip-websocket and --websocket-only exclude each other")
  }
  if (values["skip-prefork"] === true && values["prefork-only"] === true) {
    throw new Error("--skip-prefork and --prefork-only exclude each other")
  }
  const nginxOnly = values["nginx-only"] === true
  const otherOnly = only.length > 0
  const servers = parseServers(values.servers ?? process.env.BENCH_SERVERS)
  const baselineRaw = values.baseline ?? process.env.BENCH_BASELINE
  const baseline = baselineRaw === undefined || baselineRaw === "" ? undefined : baselineRaw
  if (baseline !== undefined && !servers.some((spec) => spec.id === "appserver")) {
    throw new Error("--baseline compares with this checkout's effect-appserver: --servers must include appserver")
  }
  return {
    quick,
    rounds: intOption("rounds", values.rounds, "BENCH_ROUNDS", quick ? 1 : 5),
    duration: intOption("duration", values.duration, "BENCH_DURATION", quick ? 2 : 5),
    warmup: intOption("warmup", values.warmup, "BENCH_WARMUP", quick ? 1 : 2, true),
    servers,
    tool: parseTool(values.tool ?? process.env.BENCH_TOOL),
    throughput: !otherOnly,
    memory: values["skip-memory"] !== true && (!otherOnly || values["memory-only"] === true),
    nginx: values["skip-nginx"] !== true && (!otherOnly || nginxOnly),
    nginxOnly,
    websocket: values["skip-websocket"] !== true && (!otherOnly || values["websocket-only"] === true),
    wsInflight: intOption("ws-inflight", values["ws-inflight"], "BENCH_WS_INFLIGHT", 1),
    prefork: values["skip-prefork"] !== true && (!otherOnly || values["prefork-only"] === true),
    preforkOnly: values["prefork-only"] === true,
    preforkRounds: intOption("prefork-rounds", values["prefork-rounds"], "BENCH_PREFORK_ROUNDS", quick ? 1 : 3),
    preforkDuration: intOption("prefork-duration", values["prefork-duration"], "BENCH_PREFORK_DURATION", quick ? 2 : 4),
    memoryConnections: intOption("mem-conns", values["mem-conns"], "BENCH_MEM_CONNS", 10_000),
    out: values.out ?? process.env.BENCH_OUT ?? defaultOut,
    startTimeoutMs: intOption("start-timeout", values["start-timeout"], "BENCH_START_TIMEOUT", 20_000),
    baseline
  }
}
