/**
 * WebSocket clients for tests: a real `ws` client (the package `@effect/platform-node/NodeWS`
 * re-exports) held in a scope, and a raw client that sends a handshake by hand and parses the
 * frames it gets back (RFC 6455 §5.2), independently of the server's code and of `ws`.
 */
import { createHash, randomBytes } from "node:crypto"
import * as Net from "node:net"
import { type ClientOptions, WebSocket } from "@effect/platform-node/NodeWS"
import { Effect } from "effect"
import type * as Scope from "effect/Scope"

/** A message as the client received it. */
export interface Message {
  readonly data: Buffer
  readonly binary: boolean
}

/** How the connection ended, as the client saw it. */
export interface Closed {
  readonly code: number
  readonly reason: string
  /** When the client saw the close (performance.now()). */
  readonly at: number
}

/** A `ws` client that records what it receives. */
export class WsClient {
  readonly ws: WebSocket
  private readonly inbox: Array<Message> = []
  private waiter: ((message: Message) => void) | undefined
  private ended: Closed | undefined
  private readonly onEnd: Array<(closed: Closed) => void> = []

  constructor(ws: WebSocket) {
    this.ws = ws
    ws.on("message", (data, binary) => {
      const message = { data: Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer), binary }
      const waiter = this.waiter
      if (waiter === undefined) return void this.inbox.push(message)
      this.waiter = undefined
      waiter(message)
    })
    ws.on("close", (code, reason) => {
      this.ended = { code, reason: reason.toString(), at: performance.now() }
      for (const wake of this.onEnd.splice(0)) wake(this.ended)
    })
  }

  /** The next message, failing after `timeoutMs`. */
  receive(timeoutMs = 2_000): Effect.Effect<Message, Error> {
    return Effect.callback<Message, Error>((resume) => {
      const queued = this.inbox.shift()
      if (queued !== undefined) return resume(Effect.succeed(queued))
      if (this.ended !== undefined) return resume(Effect.fail(new Error(`closed (${this.ended.code})`)))
      const timer = setTimeout(() => {
        this.waiter = undefined
        resume(Effect.fail(new Error(`no message within ${timeoutMs} ms`)))
      }, timeoutMs)
      this.waiter = (message) => {
        clearTimeout(timer)
        resume(Effect.succeed(message))
      }
      return Effect.sync(() => {
        clearTimeout(timer)
        this.waiter = undefined
      })
    })
  }

  /** Sends `data` and returns the next message as text. */
  echo(data: string | Buffer, timeoutMs?: number): Effect.Effect<Message, Error> {
    return Effect.suspend(() => {
      this.ws.send(data)
      return this.receive(timeoutMs)
    })
  }

  /** The close the client saw, failing if none came within `timeoutMs`. */
  closed(timeoutMs = 2_000): Effect.Effect<Closed, Error> {
    return Effect.callback<Closed, Error>((resume) => {
      if (this.ended !== undefined) return resume(Effect.succeed(this.ended))
      const timer = setTimeout(() => resume(Effect.fail(new Error(`not closed within ${timeoutMs} ms`))), timeoutMs)
      const wake = (closed: Closed) => {
        clearTimeout(timer)
        resume(Effect.succeed(closed))
      }
      this.onEnd.push(wake)
      return Effect.sync(() => {
        clearTimeout(timer)
        const index = this.onEnd.indexOf(wake)
        if (index !== -1) this.onEnd.splice(index, 1)
      })
    })
  }

  get isClosed(): boolean {
    return this.ended !== undefined
  }
}

export interface ConnectOptions extends ClientOptions {
  readonly protocols?: string | ReadonlyArray<string>
}

/**
 * Opens a `ws` client to `url`; fails with the handshake's error (`Unexpected server response:
 * 400`, an invalid subprotocol...) or after 5 s. Terminated when the scope closes.
 */
export const connectWs = (url: string, options: ConnectOptions = {}): Effect.Effect<WsClient, Error, Scope.Scope> => {
  const { protocols, ...clientOptions } = options
  return Effect.acquireRelease(
    Effect.callback<WsClient, Error>((resume) => {
      const ws = new WebSocket(url, protocols === undefined ? undefined : [...protocols], {
        handshakeTimeout: 5_000,
        ...clientOptions
      })
      const client = new WsClient(ws)
      const onError = (error: Error) => resume(Effect.fail(error))
      ws.once("error", onError)
      ws.once("open", () => {
        ws.off("error", onError)
        // Later errors (a reset) surface as the close; they must not be unhandled.
        ws.on("error", () => {})
        resume(Effect.succeed(client))
      })
      return Effect.sync(() => ws.terminate())
    }),
    (client) => Effect.sync(() => client.ws.terminate())
  )
}

// Raw handshakes and frames

/** RFC 6455 §1.3: the accept value for a key. */
export const acceptFor = (key: string): string =>
  createHash("sha1").update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64")

/** A WebSocket handshake request for `path`, with `extra` header lines (and a fresh key unless one is given). */
export const upgradeRequest = (path: string, ...extra: ReadonlyArray<string>): string => {
  const lines = [`GET ${path} HTTP/1.1`, "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade"]
  if (!extra.some((line) => /^sec-websocket-key:/i.test(line))) {
    lines.push(`Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}`)
  }
  if (!extra.some((line) => /^sec-websocket-version:/i.test(line))) lines.push("Sec-WebSocket-Version: 13")
  return `${[...lines, ...extra].join("\r\n")}\r\n\r\n`
}

export interface Frame {
  readonly fin: boolean
  readonly opcode: number
  readonly payload: Buffer
}

/**
 * Parses the unmasked frames a server sends (RFC 6455 §5.2) from the start of `stream`; stops at
 * the first incomplete or malformed one, which is left in `trailing`.
 */
export const parseFrames = (stream: Buffer): { readonly frames: ReadonlyArray<Frame>; readonly trailing: Buffer } => {
  const frames: Array<Frame> = []
  let offset = 0
  while (stream.length - offset >= 2) {
    const first = stream[offset]
    const second = stream[offset + 1]
    const opcode = first & 0x0f
    let length = second & 0x7f
    let headerSize = 2
    if (length === 126) {
      if (stream.length - offset < 4) break
      length = stream.readUInt16BE(offset + 2)
      headerSize = 4
    } else if (length === 127) {
      if (stream.length - offset < 10) break
      length = Number(stream.readBigUInt64BE(offset + 2))
      headerSize = 10
    }
    const control = (opcode & 0x8) !== 0
    // Reserved bits, a masked server frame, an unknown opcode or a long control frame: not a frame.
    if ((first & 0x70) !== 0 || (second & 0x80) !== 0 || ![0, 1, 2, 8, 9, 10].includes(opcode)) break
    if (control && length > 125) break
    if (stream.length - offset < headerSize + length) break
    frames.push({
      fin: (first & 0x80) !== 0,
      opcode,
      payload: stream.subarray(offset + headerSize, offset + headerSize + length)
    })
    offset += headerSize + length
  }
  return { frames, trailing: stream.subarray(offset) }
}

/** A masked client frame (RFC 6455 §5.3), FIN set, payload up to 65535 bytes. */
export const clientFrame = (opcode: number, payload: Buffer | string): Buffer => {
  const bytes = typeof payload === "string" ? Buffer.from(payload) : payload
  const mask = randomBytes(4)
  const masked = Buffer.from(bytes)
  for (let i = 0; i < masked.length; i++) masked[i] ^= mask[i % 4]
  const head =
    bytes.length < 126
      ? Buffer.from([0x80 | opcode, 0x80 | bytes.length])
      : Buffer.from([0x80 | opcode, 0x80 | 126, bytes.length >> 8, bytes.length & 0xff])
  return Buffer.concat([head, mask, masked])
}

/** A masked close frame with `code`. */
export const closeFrame = (code: number): Buffer => {
  const payload = Buffer.alloc(2)
  payload.writeUInt16BE(code, 0)
  return clientFrame(8, payload)
}

export interface RawUpgrade {
  /** The response head, up to and including the empty line. */
  readonly head: string
  /** The frames received after the head. */
  readonly frames: ReadonlyArray<Frame>
  /** Bytes after the last whole frame: a stray HTTP response would show here. */
  readonly trailing: Buffer
}

/**
 * Sends a handshake for `path` and, once a `101` arrives, answers the server's close frame with one
 * of its own; resolves when the server closes the connection (or after `timeoutMs`, failing).
 */
export const rawWebSocket = (port: number, path: string, timeoutMs = 5_000): Effect.Effect<RawUpgrade, Error> =>
  Effect.callback<RawUpgrade, Error>((resume) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    let stream = Buffer.alloc(0)
    let head: string | undefined
    let closeAnswered = false
    const timer = setTimeout(() => {
      socket.destroy()
      resume(Effect.fail(new Error(`the WebSocket conversation did not end within ${timeoutMs} ms`)))
    }, timeoutMs)
    socket.on("connect", () => socket.write(upgradeRequest(path)))
    socket.on("data", (data) => {
      stream = Buffer.concat([stream, data])
      if (head === undefined) {
        const end = stream.indexOf("\r\n\r\n")
        if (end === -1) return
        head = stream.toString("latin1", 0, end + 4)
        stream = stream.subarray(end + 4)
      }
      if (!closeAnswered && head.startsWith("HTTP/1.1 101")) {
        const close = parseFrames(stream).frames.find((frame) => frame.opcode === 8)
        if (close !== undefined) {
          closeAnswered = true
          socket.write(closeFrame(close.payload.length >= 2 ? close.payload.readUInt16BE(0) : 1000))
        }
      }
    })
    socket.on("error", () => {})
    socket.on("close", () => {
      clearTimeout(timer)
      if (head === undefined) return resume(Effect.fail(new Error("closed before a response head")))
      const { frames, trailing } = parseFrames(stream)
      resume(Effect.succeed({ head, frames, trailing }))
    })
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

/** Sends a handshake for `path`, resets the connection (RST) 50 ms later, and completes 50 ms after that. */
export const resetAfterUpgradeRequest = (port: number, path: string): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const timers: Array<ReturnType<typeof setTimeout>> = []
    const socket = Net.connect({ host: "127.0.0.1", port }, () => {
      socket.write(upgradeRequest(path))
      timers.push(
        setTimeout(() => {
          socket.resetAndDestroy()
          timers.push(setTimeout(() => resume(Effect.void), 50))
        }, 50)
      )
    })
    socket.on("error", () => {})
    return Effect.sync(() => {
      for (const timer of timers) clearTimeout(timer)
      socket.destroy()
    })
  })
