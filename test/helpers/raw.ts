/**
 * A raw TCP client for black-box tests: sends exact bytes and parses the responses it gets back,
 * independently of the server's own code.
 */

import * as Net from "node:net"
import { Effect } from "effect"
import type * as Scope from "effect/Scope"

export interface RawResponse {
  readonly version: string
  readonly status: number
  readonly reason: string
  /** Field lines as received. */
  readonly fields: ReadonlyArray<readonly [string, string]>
  readonly body: Buffer
  /** The first value of a header (case-insensitive). */
  header(name: string): string | undefined
}

export interface RawResult {
  readonly responses: ReadonlyArray<RawResponse>
  /** Whether the server closed the connection. */
  readonly closed: boolean
  /** Everything received. */
  readonly data: Buffer
  /** Number of separate reads that delivered the data. */
  readonly reads: number
}

export interface RawOptions {
  /** Stop once this many complete responses arrived (default: read until the server closes). */
  readonly responses?: number
  /** Give up waiting after this long (default 5 s); the result says whether the server closed. */
  readonly timeoutMs?: number
  /** Indexes of responses that answer HEAD requests (no body). */
  readonly headIndexes?: ReadonlyArray<number>
  /** Pause between the pieces of `send`. */
  readonly delayMs?: number
  /** Half-close after sending. */
  readonly end?: boolean
}

class Incomplete extends Error {}

/** Parses complete responses from `data`; stops at the first incomplete one. */
export const parseResponses = (
  data: Buffer,
  headIndexes: ReadonlyArray<number> = [],
  closed = false
): Array<RawResponse> => {
  const out: Array<RawResponse> = []
  let pos = 0
  try {
    while (pos < data.length) {
      const headEnd = data.indexOf("\r\n\r\n", pos)
      if (headEnd === -1) break
      const lines = data.toString("latin1", pos, headEnd).split("\r\n")
      const statusLine = /^(HTTP\/\d\.\d) (\d{3}) ?(.*)$/.exec(lines[0])
      if (statusLine === null) throw new Error(`bad status line: ${JSON.stringify(lines[0])}`)
      const status = Number(statusLine[2])
      const fields = lines.slice(1).map((line): readonly [string, string] => {
        const colon = line.indexOf(":")
        return [line.slice(0, colon), line.slice(colon + 1).trim()]
      })
      const header = (name: string) => fields.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1]
      let p = headEnd + 4
      let body: Buffer
      const noBody = headIndexes.includes(out.length) || status === 204 || status === 304 || status < 200
      if (status === 100) {
        pos = p
        continue
      }
      if (noBody) {
        body = Buffer.alloc(0)
      } else if (header("transfer-encoding")?.toLowerCase() === "chunked") {
        const parts: Array<Buffer> = []
        for (;;) {
          const lineEnd = data.indexOf("\r\n", p)
          if (lineEnd === -1) throw new Incomplete()
          const size = Number.parseInt(data.toString("latin1", p, lineEnd), 16)
          p = lineEnd + 2
          if (size === 0) {
            const trailerEnd = data.indexOf("\r\n", p)
            if (trailerEnd === -1) throw new Incomplete()
            p = trailerEnd + 2
            break
          }
          if (p + size + 2 > data.length) throw new Incomplete()
          parts.push(data.subarray(p, p + size))
          p += size + 2
        }
        body = Buffer.concat(parts)
      } else if (header("content-length") !== undefined) {
        const length = Number(header("content-length"))
        if (p + length > data.length) throw new Incomplete()
        body = data.subarray(p, p + length)
        p += length
      } else {
        if (!closed) throw new Incomplete()
        body = data.subarray(p)
        p = data.length
      }
      out.push({ version: statusLine[1], status, reason: statusLine[3], fields, body, header })
      pos = p
    }
  } catch (error) {
    if (!(error instanceof Incomplete)) throw error
  }
  return out
}

/** Connects, sends `send` (pieces with optional pauses), and collects responses. */
export const rawExchange = (
  port: number,
  send: string | Buffer | ReadonlyArray<string | Buffer>,
  options: RawOptions = {}
): Effect.Effect<RawResult> =>
  Effect.callback<RawResult>((resume) => {
    const pieces = typeof send === "string" || Buffer.isBuffer(send) ? [send] : send
    const received: Array<Buffer> = []
    let reads = 0
    let closed = false
    let finished = false
    const socket = Net.connect({ port, host: "127.0.0.1" })
    const result = (): RawResult => {
      const data = Buffer.concat(received)
      return { responses: parseResponses(data, options.headIndexes, closed), closed, data, reads }
    }
    const finish = () => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      const r = result()
      socket.destroy()
      resume(Effect.succeed(r))
    }
    const timer = setTimeout(finish, options.timeoutMs ?? 5_000)
    socket.on("data", (chunk) => {
      received.push(chunk)
      reads++
      if (options.responses !== undefined && result().responses.length >= options.responses) finish()
    })
    socket.on("error", () => {})
    socket.on("close", () => {
      closed = true
      finish()
    })
    const writeFrom = (i: number): void => {
      if (socket.destroyed) return
      if (i === pieces.length) {
        if (options.end) socket.end()
        return
      }
      socket.write(pieces[i])
      if (options.delayMs === undefined) writeFrom(i + 1)
      else setTimeout(() => writeFrom(i + 1), options.delayMs)
    }
    socket.on("connect", () => writeFrom(0))
    return Effect.sync(() => {
      finished = true
      clearTimeout(timer)
      socket.destroy()
    })
  })

/** A request head with CRLF line ends from lines. */
export const request = (...lines: ReadonlyArray<string>): string => `${lines.join("\r\n")}\r\n\r\n`

/** A client connection that keeps its own side open after the server's FIN. */
export interface HalfOpenClient {
  readonly socket: Net.Socket
  readonly chunks: Array<Buffer>
  /** The server's FIN arrived. */
  ended: boolean
  error: Error | undefined
}

/**
 * Connects (TCP on 127.0.0.1, or a unix socket), sends `bytes` and keeps its side open after the
 * server's FIN, as a client that has not closed yet does; destroyed when the scope closes.
 */
export const halfOpenClient = (
  address: { readonly port: number } | { readonly path: string },
  bytes: Buffer | string
): Effect.Effect<HalfOpenClient, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<HalfOpenClient>((resume) => {
      const socket =
        "port" in address
          ? Net.connect({ port: address.port, host: "127.0.0.1", allowHalfOpen: true })
          : Net.connect({ path: address.path, allowHalfOpen: true })
      const client: HalfOpenClient = { socket, chunks: [], ended: false, error: undefined }
      socket.on("data", (chunk: Buffer) => client.chunks.push(chunk))
      socket.on("end", () => {
        client.ended = true
      })
      socket.on("error", (error) => {
        client.error = error
      })
      socket.once("connect", () => {
        socket.write(bytes)
        resume(Effect.succeed(client))
      })
      return Effect.sync(() => socket.destroy())
    }),
    (client) => Effect.sync(() => client.socket.destroy())
  )
