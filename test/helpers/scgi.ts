/**
 * A small SCGI client for tests: it encodes requests as the SCGI protocol describes them and
 * parses the close-delimited CGI-style responses, independently of the server's code.
 */
import * as Net from "node:net"
import { Effect } from "effect"

/** The header netstring of `variables` (names and values in order; CONTENT_LENGTH is not added). */
export const netstring = (variables: ReadonlyArray<readonly [string, string]>): Buffer => {
  const block = Buffer.concat(variables.map(([name, value]) => Buffer.from(`${name}\0${value}\0`, "latin1")))
  return Buffer.concat([Buffer.from(`${block.length}:`), block, Buffer.from(",")])
}

/** A well-formed request: CONTENT_LENGTH first, SCGI 1, then the given variables. */
export const scgiRequest = (
  variables: Readonly<Record<string, string>>,
  body: Buffer | string = Buffer.alloc(0)
): Buffer => {
  const bytes = typeof body === "string" ? Buffer.from(body) : body
  return Buffer.concat([
    netstring([["CONTENT_LENGTH", String(bytes.length)], ["SCGI", "1"], ...Object.entries(variables)]),
    bytes
  ])
}

export interface ScgiResponse {
  readonly status: number
  readonly reason: string
  readonly fields: ReadonlyArray<readonly [string, string]>
  readonly body: Buffer
  header(name: string): string | undefined
  /** Everything received. */
  readonly raw: Buffer
}

/** Parses a whole CGI-style response (RFC 3875 §6): header fields with `Status:`, empty line, body. */
export const parseScgiResponse = (raw: Buffer): ScgiResponse => {
  const end = raw.indexOf("\r\n\r\n")
  if (end === -1) throw new Error(`no complete response head in ${JSON.stringify(raw.toString("latin1"))}`)
  const fields = raw
    .toString("latin1", 0, end)
    .split("\r\n")
    .map((line): readonly [string, string] => {
      const colon = line.indexOf(":")
      return [line.slice(0, colon), line.slice(colon + 1).trim()]
    })
  const header = (name: string) => fields.find(([n]) => n.toLowerCase() === name.toLowerCase())?.[1]
  const status = /^(\d{3}) ?(.*)$/.exec(header("status") ?? "")
  if (status === null) throw new Error(`no Status field in ${JSON.stringify(raw.toString("latin1", 0, end))}`)
  return { status: Number(status[1]), reason: status[2], fields, body: raw.subarray(end + 4), header, raw }
}

export type ScgiAddress = { readonly port: number } | { readonly path: string }

export interface ExchangeOptions {
  /** Pause between the pieces of `send`. */
  readonly delayMs?: number
  /** Give up after this long (default 5 s). */
  readonly timeoutMs?: number
}

/**
 * Sends the pieces of `send` and reads until the server closes. Fails when the server does not
 * close within the timeout; `reset` tells whether the connection ended with a reset.
 */
export const scgiExchange = (
  address: ScgiAddress,
  send: ReadonlyArray<Buffer | string> | Buffer | string,
  options: ExchangeOptions = {}
): Effect.Effect<{ readonly data: Buffer; readonly reset: boolean }, Error> =>
  Effect.callback((resume) => {
    const socket = "port" in address ? Net.connect(address.port, "127.0.0.1") : Net.connect(address.path)
    const received: Array<Buffer> = []
    let reset = false
    let done = false
    const timers: Array<ReturnType<typeof setTimeout>> = []
    const finish = (result: Effect.Effect<{ readonly data: Buffer; readonly reset: boolean }, Error>) => {
      if (done) return
      done = true
      for (const timer of timers) clearTimeout(timer)
      socket.destroy()
      resume(result)
    }
    socket.on("data", (chunk) => received.push(chunk))
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "ECONNRESET" || error.code === "EPIPE") reset = true
      else finish(Effect.fail(error))
    })
    socket.on("close", () => finish(Effect.succeed({ data: Buffer.concat(received), reset })))
    timers.push(
      setTimeout(
        () => finish(Effect.fail(new Error(`server did not close within ${options.timeoutMs ?? 5000} ms`))),
        options.timeoutMs ?? 5000
      )
    )
    const pieces = Array.isArray(send) ? send : [send]
    // Each piece is written a delay after the one before: timers of different lengths all set at
    // once would not keep their order on a loaded event loop (Node runs overdue timers by list).
    const writeFrom = (index: number): void => {
      if (done || socket.destroyed || index === pieces.length) return
      socket.write(pieces[index])
      if (options.delayMs === undefined) writeFrom(index + 1)
      else timers.push(setTimeout(() => writeFrom(index + 1), options.delayMs))
    }
    socket.on("connect", () => writeFrom(0))
    return Effect.sync(() => finish(Effect.fail(new Error("interrupted"))))
  })

/** One request and its parsed response. */
export const scgi = (
  address: ScgiAddress,
  variables: Readonly<Record<string, string>>,
  body?: Buffer | string
): Effect.Effect<ScgiResponse, Error> =>
  Effect.map(scgiExchange(address, scgiRequest(variables, body)), ({ data }) => parseScgiResponse(data))
