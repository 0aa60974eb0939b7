/**
 * The nginx scenario: the same `GET /` load through a real nginx (one worker) in front of
 *
 *   (a) effect-appserver over SCGI (TCP; also over a unix socket),
 *   (b) a bare node:net SCGI server (bench/peers/scgi-net.ts): what any Node SCGI server can reach,
 *   (c) effect-appserver and bare node:http over HTTP with nginx's default proxying (HTTP/1.0, a
 *       connection per request, as SCGI has),
 *   (d) effect-appserver and bare node:http over HTTP with keep-alive upstream connections,
 *
 * interleaved over rounds like the main throughput phase. With --baseline, (a), (c) and (d) also run
 * with the baseline revision's effect-appserver (`<id>-base`). nginx keeps no SCGI connection alive:
 * its scgi module opens an upstream connection per request, as the protocol has the response end
 * with the connection. The keep-alive HTTP paths keep up to 32 idle upstream connections. nginx
 * comes from test/helpers/nginx.ts (a generated config in a temporary directory, nothing written
 * outside it).
 */
import { mkdtemp, rm } from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { type Nginx, nginxBinary, nginxVersion, startNginx, type Upstream } from "../test/helpers/nginx.ts"
import type { Config } from "./config.ts"
import { childPids, cpuSeconds, procAvailable } from "./cpu.ts"
import { fmtDuration, progress } from "./log.ts"
import { rotate } from "./phases.ts"
import { removeOnExit, terminate, track } from "./proc.ts"
import { errorCell, fmtMs, fmtRps, hasErrors, median, pass, ratioText, spreadCell, table } from "./report.ts"
import { type LoadTool, type RunResult, SCENARIOS, type Scenario } from "./scenarios.ts"
import {
  appserverArgs,
  type Checkout,
  freePort,
  HOST,
  REPO_ROOT,
  type StartedProcess,
  startProcess,
  verifyContract
} from "./servers.ts"

/** The paths through effect-appserver; with --baseline each also runs as `<id>-base`. */
type AppserverPathId = "scgi-tcp" | "scgi-unix" | "appserver-http-close" | "appserver-http"

export type NginxPathId =
  | AppserverPathId
  | `${AppserverPathId}-base`
  | "scgi-net"
  | "scgi-effect-limit"
  | "node-http-close"
  | "node-http"

export interface NginxPath {
  readonly id: NginxPathId
  /** Name used in tables. */
  readonly label: string
  /** Starts the backend; `socketDir` is a private directory for a unix socket. */
  readonly start: (socketDir: string, timeoutMs: number) => Promise<Backend>
}

interface Backend {
  readonly process: StartedProcess
  readonly upstream: Upstream
}

/** A backend: `node args...` started from `cwd`, called `label` in messages. */
interface Command {
  readonly label: string
  readonly args: ReadonlyArray<string>
  readonly cwd: string
}

const peer = (label: string, script: string): Command => ({ label, args: [script], cwd: REPO_ROOT })

const appserver = (checkout: Checkout, how: string, ...extra: ReadonlyArray<string>): Command => ({
  label: `${checkout.label} (${how})`,
  args: [...appserverArgs(checkout), ...extra],
  cwd: checkout.root
})

/** Starts `node args... --port P` and checks it reports `expected(P)`. */
const onFreePort = async (
  command: Command,
  expected: (port: number) => string,
  timeoutMs: number
): Promise<{ readonly process: StartedProcess; readonly port: number }> => {
  const port = await freePort()
  const args = [...command.args, "--host", HOST, "--port", String(port)]
  const started = await startProcess(command.label, args, timeoutMs, command.cwd)
  if (started.address !== expected(port)) {
    await terminate(started.child)
    throw new Error(`${command.label} reported ${started.address}, expected ${expected(port)}`)
  }
  return { process: started, port }
}

/** A path whose backend listens on a free TCP port: `node args... --host H --port P`. */
const onTcp = (
  id: NginxPathId,
  label: string,
  command: Command,
  upstream: { readonly protocol: "scgi" } | { readonly protocol: "http"; readonly keepalive: number }
): NginxPath => ({
  id,
  label,
  start: async (_, timeoutMs) => {
    const scheme = upstream.protocol === "scgi" ? "scgi" : "http"
    const { process, port } = await onFreePort(command, (p) => `${scheme}://${HOST}:${p}`, timeoutMs)
    return { process, upstream: { ...upstream, port } }
  }
})

const scgiTcp = (checkout: Checkout): NginxPath =>
  onTcp(
    `scgi-tcp${checkout.idSuffix}`,
    `nginx → SCGI (TCP) → ${checkout.label}`,
    appserver(checkout, "SCGI, TCP", "--protocol", "scgi"),
    { protocol: "scgi" }
  )

const scgiUnix = (checkout: Checkout): NginxPath => ({
  id: `scgi-unix${checkout.idSuffix}`,
  label: `nginx → SCGI (unix socket) → ${checkout.label}`,
  start: async (socketDir, timeoutMs) => {
    const path = Path.join(socketDir, `scgi${checkout.idSuffix}.sock`)
    const command = appserver(checkout, "SCGI, unix socket", "--protocol", "scgi", "--socket", path)
    const process = await startProcess(command.label, command.args, timeoutMs, command.cwd)
    if (process.address !== `unix:${path}`) {
      await terminate(process.child)
      throw new Error(`${command.label} reported ${process.address}, expected unix:${path}`)
    }
    return { process, upstream: { protocol: "scgi", path } }
  }
})

const httpClose = (checkout: Checkout): NginxPath =>
  onTcp(
    `appserver-http-close${checkout.idSuffix}`,
    `nginx → HTTP proxy (default: a connection per request) → ${checkout.label}`,
    appserver(checkout, "HTTP, no upstream keep-alive"),
    { protocol: "http", keepalive: 0 }
  )

// keep-alive timeout 120 s, as node:http's: idle upstream connections stay open between runs
const httpKeepAlive = (checkout: Checkout): NginxPath =>
  onTcp(
    `appserver-http${checkout.idSuffix}`,
    `nginx → HTTP proxy, keep-alive upstream → ${checkout.label}`,
    appserver(checkout, "HTTP", "--keep-alive-timeout", "120"),
    { protocol: "http", keepalive: 32 }
  )

/**
 * Every path in table order; a path through effect-appserver comes once per checkout (this one,
 * then the baseline's), so the two stand next to each other.
 */
export const nginxPaths = (checkouts: ReadonlyArray<Checkout>): Array<NginxPath> => [
  ...checkouts.map(scgiTcp),
  ...checkouts.map(scgiUnix),
  onTcp("scgi-net", "nginx → SCGI (TCP) → bare node:net SCGI", peer("node:net SCGI", "bench/peers/scgi-net.ts"), {
    protocol: "scgi"
  }),
  onTcp(
    "scgi-effect-limit",
    "nginx → SCGI (TCP) → SCGI Effect limit (bare node:net SCGI + a fiber per request)",
    { label: "SCGI Effect limit", args: ["bench/peers/scgi-net.ts", "--effect"], cwd: REPO_ROOT },
    { protocol: "scgi" }
  ),
  ...checkouts.map(httpClose),
  onTcp(
    "node-http-close",
    "nginx → HTTP proxy (default: a connection per request) → node:http",
    peer("node:http (no upstream keep-alive)", "bench/peers/node-http.ts"),
    { protocol: "http", keepalive: 0 }
  ),
  ...checkouts.map(httpKeepAlive),
  onTcp(
    "node-http",
    "nginx → HTTP proxy, keep-alive upstream → node:http",
    peer("node:http", "bench/peers/node-http.ts"),
    { protocol: "http", keepalive: 32 }
  )
]

/** The load: `GET /` on 50 client connections, as the main `hello` scenario. */
export const NGINX_SCENARIO: Scenario = { ...SCENARIOS[0], title: "GET / through nginx (50 conns)" }

/**
 * Ratios of median req/s: numerator / denominator, with an optional target. The target compares
 * like with like: nginx in front of node:http as nginx proxies by default, a connection per
 * request as SCGI has. Against keep-alive upstream connections no SCGI server can keep up, as the
 * bare node:net SCGI row shows: there nginx's own work per upstream connection is the limit.
 */
const RATIOS: ReadonlyArray<{
  readonly of: NginxPathId
  readonly versus: NginxPathId
  readonly title: string
  readonly atLeast?: number
}> = [
  {
    of: "scgi-tcp",
    versus: "node-http-close",
    title: "SCGI (TCP) → effect-appserver / HTTP proxy (default) → node:http",
    atLeast: 1.0
  },
  {
    of: "scgi-unix",
    versus: "node-http-close",
    title: "SCGI (unix socket) → effect-appserver / HTTP proxy (default) → node:http"
  },
  { of: "scgi-tcp", versus: "scgi-net", title: "SCGI (TCP): effect-appserver / bare node:net SCGI" },
  {
    of: "appserver-http-close",
    versus: "node-http-close",
    title: "HTTP proxy (default): effect-appserver / node:http"
  },
  { of: "appserver-http", versus: "node-http", title: "HTTP proxy, keep-alive upstream: effect-appserver / node:http" },
  {
    of: "scgi-tcp",
    versus: "node-http",
    title: "SCGI (TCP) → effect-appserver / HTTP proxy, keep-alive upstream → node:http"
  },
  {
    of: "scgi-net",
    versus: "node-http",
    title: "SCGI (TCP) → bare node:net SCGI / HTTP proxy, keep-alive upstream → node:http"
  }
]

/**
 * Ratios of the backend's median CPU µs per request (issue 13: effect-appserver's SCGI server within
 * 10% of the bare node:net SCGI server), and against the SCGI Effect limit, the least any server
 * running the app as an Effect spends.
 */
const CPU_RATIOS: ReadonlyArray<{
  readonly of: NginxPathId
  readonly versus: NginxPathId
  readonly title: string
  readonly atMost?: number
}> = [
  { of: "scgi-tcp", versus: "scgi-net", title: "SCGI (TCP): effect-appserver / bare node:net SCGI", atMost: 1.1 },
  { of: "scgi-tcp", versus: "scgi-effect-limit", title: "SCGI (TCP): effect-appserver / SCGI Effect limit" },
  { of: "scgi-effect-limit", versus: "scgi-net", title: "SCGI (TCP): SCGI Effect limit / bare node:net SCGI" }
]

/** CPU µs per request of the backend process and of nginx's worker. */
export interface CpuPerRequest {
  readonly backendUs: number
  readonly nginxUs: number
}

export interface NginxSample {
  readonly path: NginxPathId
  readonly round: number
  readonly result: RunResult
  /** Undefined without /proc. */
  readonly cpu: CpuPerRequest | undefined
}

export type NginxOutcome =
  | { readonly _tag: "Skipped"; readonly reason: string }
  | {
      readonly _tag: "Measured"
      readonly version: string
      /** What ran, in table order. */
      readonly paths: ReadonlyArray<NginxPath>
      readonly samples: ReadonlyArray<NginxSample>
    }

interface RunningPath {
  readonly path: NginxPath
  readonly backend: Backend
  readonly nginx: Nginx
}

const assertAlive = (running: RunningPath): void => {
  const { exitCode, signalCode } = running.backend.process.child
  if (exitCode !== null || signalCode !== null) {
    throw new Error(
      `the backend of "${running.path.label}" exited (${signalCode ?? exitCode}) during the benchmark` +
        `\n--- its output ---\n${running.backend.process.outputTail()}`
    )
  }
  if (!running.nginx.alive()) throw new Error(`nginx of "${running.path.label}" exited during the benchmark`)
}

const describeRun = (result: RunResult): string => {
  const line = `${Math.round(result.requestsPerSec).toLocaleString("en-US").padStart(9)} req/s  p99 ${result.p99Ms.toFixed(2)} ms`
  return result.errorDetail === "" ? line : `${line}  !! ERRORS: ${result.errorDetail}`
}

/** The processes whose CPU a run measures: the backend and nginx's one worker. */
const cpuPids = (running: RunningPath): { readonly backend: number; readonly nginx: number } | undefined => {
  const backend = running.backend.process.child.pid
  const [worker] = childPids(running.nginx.pid)
  return backend === undefined || worker === undefined ? undefined : { backend, nginx: worker }
}

const runOnce = async (
  tool: LoadTool,
  running: RunningPath,
  seconds: number,
  label: string,
  width: number
): Promise<{ readonly result: RunResult; readonly cpu: CpuPerRequest | undefined }> => {
  assertAlive(running)
  const pids = procAvailable() ? cpuPids(running) : undefined
  const before = pids && { backend: cpuSeconds(pids.backend), nginx: cpuSeconds(pids.nginx), at: performance.now() }
  const result = await tool.run(NGINX_SCENARIO, running.nginx.url, seconds)
  assertAlive(running)
  let cpu: CpuPerRequest | undefined
  if (pids !== undefined && before !== undefined) {
    const requests = (result.requestsPerSec * (performance.now() - before.at)) / 1000
    cpu = {
      backendUs: ((cpuSeconds(pids.backend) - before.backend) * 1e6) / requests,
      nginxUs: ((cpuSeconds(pids.nginx) - before.nginx) * 1e6) / requests
    }
  }
  const cpuText = cpu === undefined ? "" : `  CPU/req server ${fmtUs(cpu.backendUs)} nginx ${fmtUs(cpu.nginxUs)}`
  progress(`${label} nginx     ${running.path.id.padEnd(width)} ${describeRun(result)}${cpuText}`)
  return { result, cpu }
}

const fmtUs = (us: number): string => (Number.isFinite(us) ? `${us.toFixed(1)} µs` : "n/a")

/** nginx of every path, killed synchronously if the harness exits without stopping them. */
const live = new Set<Nginx>()
let exitHookInstalled = false
const killLiveOnExit = (): void => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on("exit", () => {
    for (const nginx of live) nginx.kill()
  })
}

/**
 * nginx in front of `upstream` as every path of the scenario has it (also the prefork scenario's,
 * bench/prefork.ts): killed when the harness exits, its directory removed then too.
 */
export const startFrontNginx = async (upstream: Upstream): Promise<Nginx> => {
  killLiveOnExit()
  const nginx = await startNginx({
    upstream,
    // as in production: a master and one worker, the same for every path
    masterProcess: true,
    workerProcesses: 1,
    workerConnections: 4096,
    accessLog: false,
    // clients (wrk) keep their connections for the whole run
    serverDirectives: "keepalive_requests 1000000;",
    onSpawn: track
  })
  live.add(nginx)
  removeOnExit(nginx.dir)
  return nginx
}

/** Stops nginx from `startFrontNginx` and removes its directory. */
export const stopFrontNginx = async (nginx: Nginx): Promise<void> => {
  await nginx.stop()
  live.delete(nginx)
}

const startPath = async (path: NginxPath, socketDir: string, config: Config): Promise<RunningPath> => {
  progress(`starting ${path.label}`)
  const backend = await path.start(socketDir, config.startTimeoutMs)
  let nginx: Nginx | undefined
  try {
    nginx = await startFrontNginx(backend.upstream)
    await verifyContract({ url: nginx.url, spec: { label: path.label } })
    progress(`  ${path.label}: nginx at ${nginx.url} (pid ${nginx.pid}) → ${backend.process.address}`)
    return { path, backend, nginx }
  } catch (error) {
    if (nginx !== undefined) await stopFrontNginx(nginx)
    await terminate(backend.process.child)
    throw error
  }
}

const stopPath = async (running: RunningPath): Promise<void> => {
  await stopFrontNginx(running.nginx)
  await terminate(running.backend.process.child)
}

const estimateSeconds = (config: Config, paths: number): number =>
  paths * (config.rounds * (config.duration + 0.3) + (config.warmup > 0 ? config.warmup + 0.3 : 0))

/**
 * Every path up at once; each round runs every path in rotated order. The paths through
 * effect-appserver run once per checkout: this one, and the baseline's with --baseline.
 */
export const nginxPhase = async (
  config: Config,
  tool: LoadTool,
  checkouts: ReadonlyArray<Checkout>
): Promise<NginxOutcome> => {
  if (nginxBinary() === undefined) {
    return { _tag: "Skipped", reason: "nginx not found (PATH, /usr/sbin/nginx or NGINX_BIN): install nginx-light" }
  }
  const version = nginxVersion() ?? "nginx"
  killLiveOnExit()
  const socketDir = await mkdtemp(Path.join(Os.tmpdir(), "effect-appserver-bench-"))
  removeOnExit(socketDir)
  const paths = nginxPaths(checkouts)
  const running: Array<RunningPath> = []
  try {
    for (const path of paths) running.push(await startPath(path, socketDir, config))
    const estimate = fmtDuration(estimateSeconds(config, paths.length))
    progress(`nginx: ${config.rounds} round(s) x ${config.duration} s, about ${estimate}`)
    // progress lines name the path in a column this wide: 20, or the longest id (a baseline's)
    const width = Math.max(20, ...paths.map((path) => path.id.length))
    if (config.warmup > 0) {
      for (const path of running) await runOnce(tool, path, config.warmup, "warmup     ", width)
    }
    const samples: Array<NginxSample> = []
    for (let round = 0; round < config.rounds; round++) {
      for (const path of rotate(running, round)) {
        const label = `round ${round + 1}/${config.rounds}`
        const { result, cpu } = await runOnce(tool, path, config.duration, label, width)
        samples.push({ path: path.path.id, round, result, cpu })
      }
    }
    return { _tag: "Measured", version: version.replace(/^nginx version:\s*/, ""), paths, samples }
  } finally {
    await Promise.all(running.map(stopPath))
    await rm(socketDir, { recursive: true, force: true })
  }
}

export const runsOf = (samples: ReadonlyArray<NginxSample>, path: NginxPathId): Array<NginxSample> =>
  samples.filter((s) => s.path === path)

const medianRps = (samples: ReadonlyArray<NginxSample>, path: NginxPathId): number =>
  median(runsOf(samples, path).map((s) => s.result.requestsPerSec))

/** Median CPU µs per request over the runs that measured it; NaN without /proc. */
export const medianCpu = (runs: ReadonlyArray<NginxSample>, of: (cpu: CpuPerRequest) => number): number =>
  median(runs.flatMap((s) => (s.cpu === undefined ? [] : [of(s.cpu)])))

export const fmtCpu = (us: number): string => (Number.isFinite(us) ? us.toFixed(1) : "n/a")

/** The Markdown section of the report. */
export const renderNginxSection = (outcome: NginxOutcome): string => {
  if (outcome._tag === "Skipped") return `## nginx in front\n\nSkipped: ${outcome.reason}.`
  const { samples } = outcome
  const rows = outcome.paths.map((path) => {
    const runs = runsOf(samples, path.id)
    return [
      path.label,
      fmtRps(median(runs.map((s) => s.result.requestsPerSec))),
      fmtMs(median(runs.map((s) => s.result.p99Ms))),
      fmtCpu(medianCpu(runs, (c) => c.backendUs)),
      fmtCpu(medianCpu(runs, (c) => c.nginxUs)),
      spreadCell(runs),
      String(runs.length),
      errorCell(runs)
    ]
  })
  const ratios = RATIOS.map((ratio) => {
    const value = medianRps(samples, ratio.of) / medianRps(samples, ratio.versus)
    const tainted = samples.some((s) => (s.path === ratio.of || s.path === ratio.versus) && hasErrors(s.result))
    const shown = ratioText(value, tainted)
    if (ratio.atLeast === undefined) return [ratio.title, shown, "-", ""]
    return [
      ratio.title,
      shown,
      `>= ${ratio.atLeast.toFixed(1)}x`,
      Number.isFinite(value) ? pass(value >= ratio.atLeast) : "not measured"
    ]
  })
  const cpuRatios = CPU_RATIOS.map((ratio) => {
    const value =
      medianCpu(runsOf(samples, ratio.of), (c) => c.backendUs) /
      medianCpu(runsOf(samples, ratio.versus), (c) => c.backendUs)
    const shown = Number.isFinite(value) ? `${value.toFixed(2)}x` : "n/a"
    if (ratio.atMost === undefined) return [ratio.title, shown, "-", ""]
    return [
      ratio.title,
      shown,
      `<= ${ratio.atMost.toFixed(2)}x`,
      Number.isFinite(value) ? pass(value <= ratio.atMost) : "not measured"
    ]
  })
  return [
    `## nginx in front (${outcome.version}, worker_processes 1)`,
    "",
    `wrk → nginx → backend, ${NGINX_SCENARIO.title}. nginx runs a master and one worker for every path, ` +
      "no access log. SCGI carries one request per connection, so nginx opens an upstream connection per " +
      "request; so does nginx's default HTTP proxying (HTTP/1.0). The keep-alive paths use " +
      '`proxy_http_version 1.1`, `Connection ""` and `keepalive 32` upstream connections. The bare node:net ' +
      "SCGI server (bench/peers/scgi-net.ts) does only what the echo contract needs: what any Node SCGI " +
      "server can reach here; the SCGI Effect limit (the same with `--effect`) also runs the echo app as " +
      "Effect's HTTP app per request, at the least that costs (bench/peers/effectFloor.ts). CPU µs/req: user + system CPU of the backend process and of nginx's worker " +
      "(from /proc) over a run, per request (medians over rounds).",
    "",
    table(
      [
        "Path",
        "req/s (median)",
        "p99 ms (median)",
        "server CPU µs/req",
        "nginx CPU µs/req",
        "req/s spread",
        "runs",
        "errors"
      ],
      rows
    ),
    "",
    table(["Ratio (median req/s)", "value", "target", "met"], ratios),
    "",
    table(["Ratio (median server CPU µs/req)", "value", "target", "met"], cpuRatios)
  ].join("\n")
}
