/**
 * The WebSocket load generator (wrk speaks no WebSocket): `connections` clients (the `ws` package)
 * each echo `size`-byte binary messages against the server's `/ws`, keeping `inflight` messages in
 * flight per connection (a client sends the next one as each echo comes back), for `duration`
 * seconds. It runs as a process of its own, so it does not share a server's event loop, and prints
 * one JSON line (`WsLoadResult`) on stdout.
 *
 * All connections open, then run `warmup` seconds unmeasured (the client is a fresh process each
 * run, and cold at first) before the clock starts; only echoes that come back within the measured
 * time count. An echo that differs from what was sent, a connection that fails to open and one the
 * server closes during the run are errors.
 *
 * Usage: node bench/wsload.ts --url ws://127.0.0.1:PORT/ws [--connections 50] [--size 64]
 *        [--inflight 1] [--duration 5] [--warmup 1]
 */
import { parseArgs } from "node:util"
import { WebSocket } from "@effect/platform-node/NodeWS"

export interface WsLoadResult {
  readonly messagesPerSec: number
  /** 99th percentile of a message's round trip, in ms. */
  readonly p99Ms: number
  readonly messages: number
  /** Echoes received in all, the client's warmup included. */
  readonly echoed: number
  readonly seconds: number
  /** Connections that failed to open. */
  readonly connectErrors: number
  /** Connections the server closed during the run. */
  readonly closed: number
  /** Echoes that were not the message sent. */
  readonly mismatches: number
}

interface Options {
  readonly url: string
  readonly connections: number
  readonly size: number
  readonly inflight: number
  readonly duration: number
  /** Seconds of load before the measured time. */
  readonly warmup: number
}

const positive = (name: string, raw: string): number => {
  const value = Number(raw)
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number, got "${raw}"`)
  return value
}

const parseOptions = (): Options => {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      connections: { type: "string", default: "50" },
      size: { type: "string", default: "64" },
      inflight: { type: "string", default: "1" },
      duration: { type: "string", default: "5" },
      warmup: { type: "string", default: "1" }
    }
  })
  if (values.url === undefined) throw new Error("--url ws://HOST:PORT/PATH is required")
  return {
    url: values.url,
    connections: Math.floor(positive("connections", values.connections)),
    size: Math.floor(positive("size", values.size)),
    inflight: Math.floor(positive("inflight", values.inflight)),
    duration: positive("duration", values.duration),
    warmup: values.warmup === "0" ? 0 : positive("warmup", values.warmup)
  }
}

/** Opens a connection, or undefined when it fails (counted as a connect error). */
const open = (url: string): Promise<WebSocket | undefined> =>
  new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: 5_000 })
    ws.once("open", () => resolve(ws))
    ws.once("error", () => resolve(undefined))
  })

const percentile = (values: Array<number>, p: number): number => {
  if (values.length === 0) return Number.NaN
  values.sort((a, b) => a - b)
  return values[Math.min(values.length - 1, Math.floor((p / 100) * values.length))]
}

const Phase = { Warming: 0, Measuring: 1, Done: 2 } as const
type Phase = (typeof Phase)[keyof typeof Phase]

const run = async (options: Options): Promise<WsLoadResult> => {
  const opened = await Promise.all(Array.from({ length: options.connections }, () => open(options.url)))
  const sockets = opened.filter((ws): ws is WebSocket => ws !== undefined)
  const latencies: Array<number> = []
  let phase: Phase = Phase.Warming
  let messages = 0
  let echoed = 0
  let closed = 0
  let mismatches = 0
  sockets.forEach((ws, index) => {
    // Each connection has its own payload, so an echo sent to the wrong client is a mismatch.
    const payload = Buffer.alloc(options.size, index % 256)
    const sentAt: Array<number> = []
    const send = () => {
      sentAt.push(performance.now())
      ws.send(payload)
    }
    ws.on("message", (data: Buffer) => {
      const now = performance.now()
      const started = sentAt.shift() ?? now
      if (!payload.equals(data)) mismatches++
      echoed++
      if (phase === Phase.Done) return
      if (phase === Phase.Measuring) {
        messages++
        latencies.push(now - started)
      }
      send()
    })
    ws.on("close", () => {
      if (phase !== Phase.Done) closed++
    })
    ws.on("error", () => {})
    for (let i = 0; i < options.inflight; i++) send()
  })
  // The client is a fresh process: its first second runs cold, so it is not measured.
  await sleep(options.warmup * 1000)
  const started = performance.now()
  phase = Phase.Measuring
  await sleep(options.duration * 1000)
  phase = Phase.Done
  const seconds = (performance.now() - started) / 1000
  for (const ws of sockets) ws.terminate()
  return {
    messagesPerSec: messages / seconds,
    p99Ms: percentile(latencies, 99),
    messages,
    echoed,
    seconds,
    connectErrors: options.connections - sockets.length,
    closed,
    mismatches
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

if (import.meta.main) {
  run(parseOptions()).then(
    (result) => {
      process.stdout.write(`${JSON.stringify(result)}\n`)
      process.exit(0)
    },
    (error: unknown) => {
      process.stderr.write(`wsload: ${error instanceof Error ? error.message : String(error)}\n`)
      process.exit(1)
    }
  )
}
