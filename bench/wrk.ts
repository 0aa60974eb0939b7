/**
 * Driving wrk (one thread, keep-alive connections, --latency) and parsing its text report.
 */
import * as Path from "node:path"
import { runCommand } from "./proc.ts"
import type { LoadTool, RunResult, Scenario } from "./scenarios.ts"

const script = (name: string): string => Path.join(import.meta.dirname, name)

/** wrk arguments for a scenario; POST bodies and pipelining need a Lua script. */
export const wrkArgs = (scenario: Scenario, baseUrl: string, seconds: number): Array<string> => {
  const args = ["-t1", `-c${scenario.connections}`, `-d${seconds}s`, "--latency"]
  const url = `${baseUrl}${scenario.path}`
  if (scenario.pipeline > 1) return [...args, "-s", script("pipeline.lua"), url, "--", String(scenario.pipeline)]
  if (scenario.body !== undefined) return [...args, "-s", script("post.lua"), url, "--", String(scenario.body.bytes)]
  return [...args, url]
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** "812.00us" / "3.21ms" / "1.02s" to milliseconds. */
export const toMs = (value: string, unit: string): number => {
  const factor = UNIT_MS[unit]
  if (factor === undefined) throw new Error(`unknown wrk latency unit "${unit}"`)
  return Number(value) * factor
}

const required = (output: string, pattern: RegExp, what: string): RegExpExecArray => {
  const match = pattern.exec(output)
  if (match === null) throw new Error(`could not find ${what} in wrk output:\n${output}`)
  return match
}

/** Parses wrk's report. Missing error lines mean zero errors: wrk prints them only when nonzero. */
export const parseWrk = (output: string): RunResult => {
  const rps = required(output, /^Requests\/sec:\s+([\d.]+)/m, "Requests/sec")
  // pipeline.lua prints a corrected figure because wrk's own is wrong with pipelining
  const p99 =
    /^corrected 99% latency: (\d+)(us)$/m.exec(output) ??
    required(output, /^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$/m, "the 99% latency line (--latency)")
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0)
  const [connect, read, write, timeout] = socket === null ? [0, 0, 0, 0] : socket.slice(1, 5).map(Number)
  const parts = [
    non2xx > 0 ? `non-2xx ${non2xx}` : "",
    connect > 0 ? `connect ${connect}` : "",
    read > 0 ? `read ${read}` : "",
    write > 0 ? `write ${write}` : "",
    timeout > 0 ? `timeout ${timeout}` : ""
  ]
  return {
    requestsPerSec: Number(rps[1]),
    p99Ms: toMs(p99[1], p99[2]),
    non2xx,
    socketErrors: connect + read + write + timeout,
    errorDetail: parts.filter((part) => part !== "").join(", ")
  }
}

export const wrk: LoadTool = {
  name: "wrk",
  // `wrk --version` prints its version line then the usage, and exits 1.
  version: async () => {
    const line = (await runCommand("wrk", ["--version"])).stdout.split("\n")[0]
    return `${line.replace(/\s*Copyright.*$/, "").trim()}, 1 thread (-t1)`
  },
  run: async (scenario, baseUrl, seconds) => {
    const result = await runCommand("wrk", wrkArgs(scenario, baseUrl, seconds))
    if (result.code !== 0) throw new Error(`wrk exited with code ${result.code}:\n${result.stderr}${result.stdout}`)
    return parseWrk(result.stdout)
  }
}
