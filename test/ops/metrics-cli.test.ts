/**
 * The metrics endpoint (issue 12, item 3), over real processes: `--metrics-port` serves the
 * Prometheus text at /metrics apart from the app; after a scripted mix of requests it shows
 * requests by method and status class (`http.server.request.duration`), requests received,
 * protocol errors, bytes both ways and connections by state; with workers, every worker's
 * figures reach the primary's endpoint, one series per worker, whose sums are the whole pool's.
 */
import * as Net from "node:net"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { type Cli, cli, killAll, listening, listeningOn } from "../helpers/cli.ts"

afterEach(() => {
  killAll()
})

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The metrics URL the server logged. */
const metricsUrl = async (run: Cli): Promise<string> => {
  for (let waited = 0; ; waited += 20) {
    const match = /metrics for Prometheus on (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(run.stderr())
    if (match !== null) return match[1]
    if (waited > 10_000) throw new Error(`no metrics endpoint logged: ${run.stderr()}`)
    await sleep(20)
  }
}

/** The samples of a metric: labels (as text) → value. */
const samples = (text: string, name: string): Map<string, number> => {
  const out = new Map<string, number>()
  for (const line of text.split("\n")) {
    const match = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match !== null && match[1] === name) out.set(match[2] ?? "", Number(match[3]))
  }
  return out
}

/** The sum of a metric's samples whose labels include every one of `labels`. */
const total = (text: string, name: string, ...labels: ReadonlyArray<string>): number =>
  [...samples(text, name)]
    .filter(([found]) => labels.every((label) => found.includes(label)))
    .reduce((sum, [, value]) => sum + value, 0)

const malformed = (url: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const { port } = new URL(url)
    const socket = Net.connect({ host: "127.0.0.1", port: Number(port) }, () =>
      socket.end("GET / HTTP/1.1\r\nHost x\r\n\r\n")
    )
    let data = ""
    socket.setEncoding("latin1").on("data", (chunk: string) => (data += chunk))
    socket.on("close", () => resolve(data))
    socket.on("error", reject)
  })

describe("--metrics-port", () => {
  it("a single process: requests by method and status class, protocol errors, bytes, connections", async () => {
    const run = cli("serve", "examples/echo.ts", "--port", "0", "--metrics-port", "0")
    const url = await listening(run)
    const metrics = await metricsUrl(run)
    for (let i = 0; i < 3; i++) expect((await fetch(`${url}/`)).status).toBe(200)
    for (let i = 0; i < 2; i++) {
      const response = await fetch(`${url}/echo`, { method: "POST", body: "12345", headers: { "content-type": "x/y" } })
      expect(await response.text()).toBe("12345")
    }
    expect((await fetch(`${url}/missing`)).status).toBe(404)
    expect(await malformed(url)).toMatch(/^HTTP\/1\.1 400 /)
    const scrape = await fetch(metrics)
    expect(scrape.status).toBe(200)
    expect(scrape.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8")
    const text = await scrape.text()
    const method = (m: string, c: string) => `http_request_method="${m}",http_response_status_class="${c}"`
    expect(total(text, "http_server_request_duration_count", method("GET", "2xx"))).toBe(3)
    expect(total(text, "http_server_request_duration_count", method("POST", "2xx"))).toBe(2)
    expect(total(text, "http_server_request_duration_count", method("GET", "4xx"))).toBe(1)
    expect(total(text, "appserver_requests_received")).toBe(6)
    expect(total(text, "appserver_protocol_errors", 'http_response_status_code="400"')).toBe(1)
    expect(total(text, "appserver_network_io", 'network_io_direction="receive"')).toBeGreaterThan(0)
    expect(total(text, "appserver_network_io", 'network_io_direction="transmit"')).toBeGreaterThan(0)
    expect(samples(text, "appserver_connections").size).toBe(7)
    // the endpoint's own scrapes are not counted as the app's requests
    const again = await (await fetch(metrics)).text()
    expect(total(again, "appserver_requests_received")).toBe(6)
    expect((await fetch(metrics.replace("/metrics", "/other"))).status).toBe(404)
  })

  it("a pool: every worker's figures reach the primary's endpoint", async () => {
    const run = cli("serve", "test/fixtures/prefork-app.ts", "--port", "0", "--workers", "2", "--metrics-port", "0")
    const url = await listeningOn(run, /^listening on (http:\/\/127\.0\.0\.1:\d+) \(2 workers\)$/m, 30_000)
    const metrics = await metricsUrl(run)
    const pids = new Set<string>()
    for (let i = 0; i < 20; i++) {
      const response = await fetch(`${url}/pid`, { headers: { connection: "close" } })
      pids.add((await response.text()).split(" ")[0])
    }
    expect(pids.size).toBe(2)
    // the workers report within a second of their requests
    let text = ""
    for (let waited = 0; waited < 5_000; waited += 200) {
      text = await (await fetch(metrics)).text()
      if (total(text, "http_server_request_duration_count", 'http_request_method="GET"') === 20) break
      await sleep(200)
    }
    const byWorker = samples(text, "appserver_requests_received")
    expect([...byWorker.keys()].map((labels) => /pid="(\d+)"/.exec(labels)?.[1]).sort()).toEqual([...pids].sort())
    expect(total(text, "http_server_request_duration_count", 'http_request_method="GET"', "2xx")).toBe(20)
    expect(total(text, "appserver_requests_received")).toBe(20)
    // and the pool's own
    expect(total(text, "appserver_workers", 'state="idle"')).toBe(2)
    expect(total(text, "appserver_worker_requests_total")).toBe(20)
  })
})
