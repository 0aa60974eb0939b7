/**
 * Memory scenario: RSS growth of a server holding many idle keep-alive connections.
 *
 * Each connection sends one `GET /` and reads the whole response, so the server has really
 * accepted it and taken it through a request (buffers, parser state, per-connection fibers...),
 * then stays open and idle while RSS is read from /proc.
 */
import { execFileSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import * as Net from "node:net"
import { setTimeout as sleep } from "node:timers/promises"
import type { RunningServer } from "./servers.ts"

export interface MemoryOptions {
  readonly connections: number
  /** Connections opened concurrently; the listen backlog is 511, so a burst of 10,000 SYNs would overflow it. */
  readonly batchSize: number
  /** Idle time before reading RSS again. */
  readonly idleMs: number
  readonly progress: (line: string) => void
}

export interface MemoryResult {
  readonly baselineKiB: number
  readonly loadedKiB: number
  readonly opened: number
  readonly failed: number
  /** Connections the server had closed by the time RSS was read: they no longer count. */
  readonly closedBeforeMeasure: number
  readonly firstError: string
}

// ---------------------------------------------------------------------------------------------
// RSS from /proc

/** Parent pid from /proc/<pid>/stat; the command name may contain spaces, so parse after ")". */
const parentOf = (pid: string): number | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1])
  } catch {
    return undefined // exited while we were scanning
  }
}

/** The pid and all its descendants, in case a server runs worker processes. */
const processTree = (root: number): Array<number> => {
  const children = new Map<number, Array<number>>()
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const parent = parentOf(entry)
    if (parent === undefined) continue
    children.set(parent, [...(children.get(parent) ?? []), Number(entry)])
  }
  const tree = [root]
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []))
  return tree
}

const vmRssKiB = (pid: number): number => {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? 0 : Number(match[1])
  } catch {
    return 0
  }
}

/** VmRSS summed over the server's process tree, in KiB. */
export const treeRssKiB = (pid: number): number => processTree(pid).reduce((sum, p) => sum + vmRssKiB(p), 0)

// ---------------------------------------------------------------------------------------------
// Preconditions

/** The soft fd limit this process (and so the servers it spawns) runs with. */
const fdLimit = (): number => {
  const out = execFileSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).trim()
  return out === "unlimited" ? Number.POSITIVE_INFINITY : Number(out)
}

/**
 * Fails before opening anything if the fd limit is too low: both this process and the server
 * need one fd per connection, plus some slack for everything else.
 */
export const checkLimits = (connections: number): Array<string> => {
  const needed = connections + 1024
  const limit = fdLimit()
  if (limit < needed) {
    throw new Error(
      `the open-file limit (ulimit -n) is ${limit}, the memory scenario needs at least ${needed} ` +
        `for ${connections} connections. Raise it in the shell first, e.g. \`ulimit -n 65536\`, ` +
        "or lower BENCH_MEM_CONNS."
    )
  }
  const warnings: Array<string> = []
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number)
    if (high - low + 1 < connections) {
      warnings.push(`ip_local_port_range ${low}-${high} has fewer ephemeral ports than ${connections} connections`)
    }
  } catch {
    // not Linux, or /proc/sys unreadable: nothing to check
  }
  return warnings
}

// ---------------------------------------------------------------------------------------------
// Connections

const REQUEST = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
const RESPONSE_TIMEOUT_MS = 15_000

/** True once `data` holds a complete response: headers plus Content-Length bytes or the last chunk. */
const responseComplete = (data: string): boolean => {
  const end = data.indexOf("\r\n\r\n")
  if (end === -1) return false
  const head = data.slice(0, end)
  const length = /^content-length:\s*(\d+)/im.exec(head)
  // latin1 decoding: one character per byte
  if (length !== null) return data.length - (end + 4) >= Number(length[1])
  return /^transfer-encoding:.*chunked/im.test(head) ? data.endsWith("0\r\n\r\n") : true
}

/** Opens one connection, sends one keep-alive request, resolves after a complete 200 response. */
const openIdleConnection = (port: number): Promise<Net.Socket> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    let data = ""
    const fail = (error: Error) => {
      socket.destroy()
      reject(error)
    }
    socket.setTimeout(RESPONSE_TIMEOUT_MS, () => fail(new Error("timed out waiting for the response")))
    socket.once("error", fail)
    socket.once("close", () => fail(new Error("closed before the response was complete")))
    socket.setEncoding("latin1")
    socket.on("data", (chunk: string) => {
      data += chunk
      if (!responseComplete(data)) return
      if (!data.startsWith("HTTP/1.1 200")) return fail(new Error(`unexpected response: ${data.split("\r\n")[0]}`))
      socket.setTimeout(0)
      socket.removeAllListeners("data").removeAllListeners("close").removeAllListeners("error")
      // Later errors (e.g. reset at teardown) must not crash the harness.
      socket.on("error", () => {})
      resolve(socket)
    })
    socket.write(REQUEST)
  })

/** A few throwaway requests so lazily initialised server code is loaded before the baseline. */
const warmUp = async (port: number): Promise<void> => {
  for (let i = 0; i < 5; i++) {
    const sockets = await Promise.all(Array.from({ length: 10 }, () => openIdleConnection(port)))
    for (const socket of sockets) socket.destroy()
  }
}

const openInBatches = async (port: number, options: MemoryOptions) => {
  const sockets: Array<Net.Socket> = []
  let failed = 0
  let firstError = ""
  for (let start = 0; start < options.connections; start += options.batchSize) {
    const size = Math.min(options.batchSize, options.connections - start)
    const results = await Promise.allSettled(Array.from({ length: size }, () => openIdleConnection(port)))
    for (const result of results) {
      if (result.status === "fulfilled") sockets.push(result.value)
      else {
        failed++
        if (firstError === "") firstError = String(result.reason)
      }
    }
    const done = start + size
    // about every 2,500 connections: enough to see it move without 20 lines per server
    if (done % 2500 < options.batchSize || done === options.connections) {
      options.progress(
        `  ${sockets.length}/${options.connections} connections open${failed > 0 ? `, ${failed} failed` : ""}`
      )
    }
  }
  return { sockets, failed, firstError }
}

const port = (server: RunningServer): number => Number(new URL(server.url).port)

/** Baseline RSS, open and hold `connections` idle keep-alive connections, RSS again, close them. */
export const measureIdleConnections = async (server: RunningServer, options: MemoryOptions): Promise<MemoryResult> => {
  await warmUp(port(server))
  // Without --expose-gc in the server we cannot force a collection; a pause lets the
  // allocation burst of startup and warmup settle.
  await sleep(1000)
  const baselineKiB = treeRssKiB(server.pid)
  const { sockets, failed, firstError } = await openInBatches(port(server), options)
  await sleep(options.idleMs)
  const loadedKiB = treeRssKiB(server.pid)
  // A socket the server closed (e.g. an idle timeout) is destroyed on our side after its FIN.
  const closedBeforeMeasure = sockets.filter((socket) => socket.destroyed).length
  for (const socket of sockets) socket.destroy()
  return { baselineKiB, loadedKiB, opened: sockets.length, failed, closedBeforeMeasure, firstError }
}
