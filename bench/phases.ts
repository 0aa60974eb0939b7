/**
 * The two phases of a run: interleaved throughput rounds with all servers up, then the memory
 * scenario with each server started fresh on its own.
 */
import type { Config } from "./config.ts"
import { cpuTimes, procAvailable } from "./cpu.ts"
import { fmtDuration, progress } from "./log.ts"
import { checkLimits, measureIdleConnections } from "./memory.ts"
import { terminate } from "./proc.ts"
import type { MemorySample, Sample, ServerCpu } from "./report.ts"
import { type LoadTool, type RunResult, SCENARIOS, type Scenario } from "./scenarios.ts"
import { assertAlive, REPO_ROOT, type RunningServer, type ServerSpec, startServer, verifyContract } from "./servers.ts"

/** Starts a server and checks it serves the echo contract before any number is taken from it. */
export const startVerified = async (spec: ServerSpec, config: Config): Promise<RunningServer> => {
  progress(`starting ${spec.label}: node ${spec.args.join(" ")}${spec.cwd === REPO_ROOT ? "" : ` (in ${spec.cwd})`}`)
  const server = await startServer(spec, config.startTimeoutMs)
  try {
    await verifyContract(server)
  } catch (error) {
    await terminate(server.child)
    throw error
  }
  progress(`  ${spec.label} ready at ${server.url} (pid ${server.pid})`)
  return server
}

/**
 * Round r starts with server r mod n: each server takes each position in turn, so slow drift of the
 * machine (thermal, neighbours) does not always favour the same one.
 */
export const rotate = <A>(items: ReadonlyArray<A>, round: number): Array<A> => {
  const shift = round % items.length
  return [...items.slice(shift), ...items.slice(0, shift)]
}

const describeRun = (result: RunResult): string => {
  const line = `${Math.round(result.requestsPerSec).toLocaleString("en-US").padStart(9)} req/s  p99 ${result.p99Ms.toFixed(2)} ms`
  return result.errorDetail === "" ? line : `${line}  !! ERRORS: ${result.errorDetail}`
}

const runOnce = async (
  tool: LoadTool,
  scenario: Scenario,
  server: RunningServer,
  seconds: number,
  label: string,
  width: number
): Promise<{ readonly result: RunResult; readonly cpu: ServerCpu | undefined }> => {
  assertAlive(server)
  const measured = procAvailable()
  const before = measured ? cpuTimes(server.pid) : undefined
  const result = await tool.run(scenario, server.url, seconds)
  const after = measured ? cpuTimes(server.pid) : undefined
  assertAlive(server)
  // The server's CPU over the run per request the load generator counted (its req/s over its
  // duration); the few ms of connecting and closing around the run are idle for the server.
  const requests = result.requestsPerSec * seconds
  const cpu =
    before === undefined || after === undefined || requests === 0
      ? undefined
      : {
          userUs: ((after.user - before.user) * 1e6) / requests,
          systemUs: ((after.system - before.system) * 1e6) / requests
        }
  const cpuText = cpu === undefined ? "" : `  CPU ${(cpu.userUs + cpu.systemUs).toFixed(1)} µs/req`
  progress(`${label} ${scenario.id.padEnd(9)} ${server.spec.label.padEnd(width)} ${describeRun(result)}${cpuText}`)
  return { result, cpu }
}

const warmUp = async (
  config: Config,
  tool: LoadTool,
  servers: ReadonlyArray<RunningServer>,
  width: number
): Promise<void> => {
  if (config.warmup === 0) return
  for (const server of servers) {
    for (const scenario of SCENARIOS) await runOnce(tool, scenario, server, config.warmup, "warmup     ", width)
  }
}

/** Progress lines name the server in a column this wide: 16, or the longest label (the baseline's). */
const labelWidth = (servers: ReadonlyArray<RunningServer>): number =>
  Math.max(16, ...servers.map((server) => server.spec.label.length))

const estimateSeconds = (config: Config): number => {
  const runs = config.servers.length * SCENARIOS.length
  // ~0.3 s per run for process start-up and connection teardown
  return runs * (config.rounds * (config.duration + 0.3) + (config.warmup > 0 ? config.warmup + 0.3 : 0))
}

/** All servers up at once, every round runs every scenario on every server in rotated order. */
export const throughputPhase = async (config: Config, tool: LoadTool): Promise<Array<Sample>> => {
  const servers: Array<RunningServer> = []
  try {
    for (const spec of config.servers) servers.push(await startVerified(spec, config))
    progress(
      `throughput: ${config.rounds} round(s) x ${config.duration} s, about ${fmtDuration(estimateSeconds(config))}`
    )
    const width = labelWidth(servers)
    await warmUp(config, tool, servers, width)
    const samples: Array<Sample> = []
    for (let round = 0; round < config.rounds; round++) {
      const label = `round ${round + 1}/${config.rounds}`
      for (const scenario of SCENARIOS) {
        for (const server of rotate(servers, round)) {
          const { result, cpu } = await runOnce(tool, scenario, server, config.duration, label, width)
          samples.push({ scenario: scenario.id, server: server.spec.id, round, result, cpu })
        }
      }
    }
    return samples
  } finally {
    await Promise.all(servers.map((server) => terminate(server.child)))
  }
}

/** One server at a time, freshly started, so neither earlier load nor the other servers skew its RSS. */
export const memoryPhase = async (config: Config): Promise<Array<MemorySample>> => {
  const samples: Array<MemorySample> = []
  for (const spec of config.servers) {
    const server = await startVerified(spec, config)
    try {
      progress(`memory: ${spec.label}, ${config.memoryConnections} idle keep-alive connections`)
      const result = await measureIdleConnections(server, {
        connections: config.memoryConnections,
        batchSize: 500,
        idleMs: 2000,
        progress
      })
      assertAlive(server)
      const growth = (result.loadedKiB - result.baselineKiB) / 1024
      progress(
        `  ${spec.label}: RSS ${(result.baselineKiB / 1024).toFixed(1)} -> ${(result.loadedKiB / 1024).toFixed(1)} MiB (+${growth.toFixed(1)} MiB)`
      )
      if (result.failed > 0) progress(`  !! ${result.failed} connections failed, first: ${result.firstError}`)
      if (result.closedBeforeMeasure > 0)
        progress(`  !! the server closed ${result.closedBeforeMeasure} idle connections early`)
      samples.push({ server: spec, result })
    } finally {
      await terminate(server.child)
    }
  }
  return samples
}

/** Fails fast, before minutes of throughput runs, if the memory scenario cannot run. */
export const memoryPreflight = (config: Config): Array<string> =>
  config.memory ? checkLimits(config.memoryConnections) : []
