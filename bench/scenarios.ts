/**
 * What each throughput scenario sends, independent of the load generator that sends it.
 */

export type ScenarioId = "hello" | "pipelined" | "post"

export interface Scenario {
  readonly id: ScenarioId
  readonly title: string
  readonly method: "GET" | "POST"
  readonly path: string
  /** Concurrent keep-alive connections. */
  readonly connections: number
  /** Requests written back to back per connection before reading the responses; 1 = no pipelining. */
  readonly pipeline: number
  readonly body?: { readonly bytes: number; readonly contentType: string }
}

export const SCENARIOS: ReadonlyArray<Scenario> = [
  { id: "hello", title: "GET / (50 conns)", method: "GET", path: "/", connections: 50, pipeline: 1 },
  // 32 x 16 = 512 requests in flight: enough to keep every server busy without turning the
  // p99 into a pure queueing figure.
  { id: "pipelined", title: "GET / pipelined x16 (32 conns)", method: "GET", path: "/", connections: 32, pipeline: 16 },
  {
    id: "post",
    title: "POST /echo 4 KiB (50 conns)",
    method: "POST",
    path: "/echo",
    connections: 50,
    pipeline: 1,
    body: { bytes: 4096, contentType: "application/octet-stream" }
  }
]

/** Outcome of one load-generator run against one server. */
export interface RunResult {
  readonly requestsPerSec: number
  readonly p99Ms: number
  /** Responses with a status >= 400, as the load generator counts them. */
  readonly non2xx: number
  /** Connect/read/write errors and timeouts. */
  readonly socketErrors: number
  /** Human-readable breakdown of the errors; empty when there were none. */
  readonly errorDetail: string
}

export interface LoadTool {
  readonly name: string
  /** Printed once at start, e.g. why these numbers differ from wrk's. */
  readonly note?: string
  /** One line identifying the tool and its version, for the report header. */
  readonly version: () => Promise<string>
  readonly run: (scenario: Scenario, baseUrl: string, seconds: number) => Promise<RunResult>
}
