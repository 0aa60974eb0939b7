/**
 * The SCGI connection driver: it owns one socket from the front end, feeds the sans-I/O parser,
 * runs the application for the one request the connection carries, writes the close-delimited
 * response and closes.
 *
 * @since 0.1.0
 */
import type * as Net from "node:net"
import { Effect, type Exit, Fiber } from "effect"
import { BodyReader, type BodySource } from "../gateway/BodyReader.ts"
import type { ResponseInit, ResponseTarget } from "../gateway/ResponseTarget.ts"
import { bodyTimedOut, type ConnectionServer, peerGone, type RunExchange } from "../gateway/Runner.ts"
import { interruptGrace } from "../http/Connection.ts"
import type { TlsInfo } from "../listen/Tls.ts"
import type { Waiter } from "../wire/Admission.ts"
import { type Environ, type MappedRequest, mapRequest } from "./Environ.ts"
import { encodeScgiHead, simpleScgiResponse } from "./ScgiEncoder.ts"
import { type ScgiLimits, ScgiParser } from "./ScgiParser.ts"

/**
 * Connection settings. Timeouts are in milliseconds, 0 for none.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScgiConnectionConfig {
  readonly limits: ScgiLimits
  /** Variables every request gets, under its own (wsgitools' `config`). */
  readonly environ: Readonly<Record<string, string>>
  readonly headersTimeout: number
  readonly requestTimeout: number
}

/**
 * What the connections of one served app share.
 *
 * @since 0.1.0
 * @category models
 */
export type ScgiConnectionServer = ConnectionServer<ScgiConnectionConfig, ScgiExchange, ScgiConnection>

/** After our FIN, how long the front end gets to read the response and close its side. */
const lingerMillis = 2_000

const HEADERS = 1
const BODY = 2
/** After our FIN: the front end has until then to read the response and close its side. */
const LINGER = 3

/**
 * The one request of an SCGI connection and its response.
 *
 * @since 0.1.0
 * @category models
 */
export class ScgiExchange implements RunExchange, ResponseTarget, BodySource {
  readonly connection: ScgiConnection
  readonly method: string
  readonly url: string
  readonly rawHeaders: ReadonlyArray<string>
  readonly remoteAddress: string | undefined
  readonly protocol: "http" | "https"
  readonly protocolLabel: string
  readonly environ: Environ
  readonly body: BodyReader
  readonly receivedTick = performance.now()
  fiber: Fiber.Fiber<void, never> | undefined
  fiberDone = false
  admitted = false
  headSent = false
  status = 0
  bytesSent = 0
  aborted = false
  private remaining = -1
  private withoutBody = false

  constructor(connection: ScgiConnection, mapped: MappedRequest, maxBodySize: number) {
    this.connection = connection
    this.method = mapped.method
    this.url = mapped.url
    this.rawHeaders = mapped.rawHeaders
    this.remoteAddress = mapped.remoteAddress
    this.protocol = mapped.protocol
    this.protocolLabel = mapped.protocolLabel
    this.environ = mapped.environ
    this.body = new BodyReader(this, maxBodySize)
  }

  // RunExchange

  get receivedAt(): number {
    return performance.timeOrigin + this.receivedTick
  }
  get target(): string {
    return this.url
  }
  get authority(): undefined {
    return undefined
  }
  /** TLS ends at the front end; `environ.https` tells whether the client used it. */
  get tls(): TlsInfo | undefined {
    return undefined
  }
  get response(): ResponseTarget {
    return this
  }

  // BodySource

  demand(): void {
    this.connection.resumeBody()
  }

  // ResponseTarget

  get isHead(): boolean {
    return this.method === "HEAD"
  }
  get closed(): boolean {
    return this.aborted || this.connection.closed
  }

  send(init: ResponseInit, body: string | Uint8Array | undefined): string | undefined {
    if (this.closed) return undefined
    const encoded = encodeScgiHead(init)
    if (typeof encoded === "string") return encoded
    this.headSent = true
    this.status = init.status
    const head = Buffer.from(encoded.head, encoded.latin1 ? "latin1" : "utf8")
    if (body === undefined || body.length === 0) {
      this.connection.write(head)
    } else {
      const bytes = typeof body === "string" ? Buffer.from(body) : body
      this.bytesSent = bytes.length
      const out = Buffer.allocUnsafe(head.length + bytes.length)
      out.set(head, 0)
      out.set(bytes, head.length)
      this.connection.write(out)
    }
    this.connection.responseDone()
    return undefined
  }

  start(init: ResponseInit): string | undefined {
    if (this.closed) return undefined
    const encoded = encodeScgiHead(init)
    if (typeof encoded === "string") return encoded
    this.headSent = true
    this.status = init.status
    // RFC 9110 §6.4.1: no content in responses to HEAD, or with 204 and 304 (205 has none either).
    this.withoutBody = this.isHead || init.status === 204 || init.status === 205 || init.status === 304
    this.remaining = init.contentLength
    this.connection.write(Buffer.from(encoded.head, encoded.latin1 ? "latin1" : "utf8"))
    return undefined
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed || this.withoutBody || chunk.length === 0) return true
    this.bytesSent += chunk.length
    if (this.remaining >= 0) {
      this.remaining -= chunk.length
      // A body longer than its Content-Length: the front end would cut it; drop the connection.
      if (this.remaining < 0) {
        this.abort()
        return true
      }
    }
    return this.connection.write(chunk)
  }

  get drain(): Effect.Effect<void> {
    return this.connection.drain
  }

  end(): void {
    if (this.closed) return
    if (this.remaining > 0 && !this.withoutBody) {
      // A body shorter than its Content-Length would leave the front end waiting.
      this.abort()
      return
    }
    this.connection.responseDone()
  }

  abort(): void {
    if (this.aborted) return
    this.aborted = true
    this.connection.abort()
  }

  /** A response the server makes itself (408, 503). */
  sendSimple(status: number, text: string): void {
    if (this.closed || this.headSent) return
    this.headSent = true
    this.status = status
    this.bytesSent = Buffer.byteLength(text)
    this.connection.write(simpleScgiResponse(status, text))
    this.connection.responseDone()
  }
}

const connectionKey = Symbol("effect-appserver/ScgiConnection")

interface ConnectionSocket extends Net.Socket {
  [connectionKey]: ScgiConnection
}

function onSocketData(this: ConnectionSocket, chunk: Buffer): void {
  this[connectionKey].onData(chunk)
}
function onSocketClose(this: ConnectionSocket): void {
  this[connectionKey].onClose()
}
const ignore = (): void => {}

/**
 * @since 0.1.0
 * @category models
 */
export class ScgiConnection {
  readonly socket: Net.Socket
  readonly server: ScgiConnectionServer
  private readonly parser: ScgiParser
  listIndex = -1
  exchange: ScgiExchange | undefined
  private waiter: Waiter | undefined
  private readPaused = false
  private ending = false
  closed = false
  private responseComplete = false
  private processing = false
  private rerun = false
  /** When the current phase times out (ms since the epoch), 0 for none. */
  deadline = 0
  private deadlineKind = 0

  constructor(socket: Net.Socket, server: ScgiConnectionServer) {
    this.socket = socket
    this.server = server
    this.parser = new ScgiParser(server.config.limits)
  }

  /** Nothing of the request has arrived yet. */
  get idle(): boolean {
    return this.exchange === undefined && !this.parser.inHead && !this.closed
  }

  /** Starts serving: socket events drive the connection from here, until the socket closes. */
  start(): void {
    const socket = this.socket as ConnectionSocket
    socket[connectionKey] = this
    socket.on("data", onSocketData)
    socket.on("error", ignore)
    socket.on("close", onSocketClose)
    this.setDeadline(HEADERS, this.server.config.headersTimeout)
    socket.resume()
  }

  private setDeadline(kind: number, timeout: number): void {
    this.deadlineKind = timeout > 0 ? kind : 0
    this.deadline = timeout > 0 ? Date.now() + timeout : 0
  }

  /** Called by the server's sweep once the deadline has passed. */
  timeout(): void {
    const kind = this.deadlineKind
    this.deadline = 0
    this.deadlineKind = 0
    if (kind === LINGER) {
      if (!this.closed) this.socket.destroy()
      return
    }
    if (this.closed || this.ending) return
    const stats = this.server.stats
    if (kind === HEADERS) {
      stats.timeouts.headers++
      // RFC 9110 §15.5.9: a request not received in time gets 408.
      if (this.parser.inHead) this.write(simpleScgiResponse(408, "request head not received in time\n"))
      this.end()
    } else if (kind === BODY) {
      stats.timeouts.request++
      const exchange = this.exchange
      if (exchange !== undefined) {
        bodyTimedOut(exchange, this.server.config.requestTimeout)
        // Answered: a request still waiting for a slot must not start the app once one frees.
        if (this.dropWaiter()) exchange.fiberDone = true
      }
      this.end()
    }
  }

  /** Takes a request waiting for a slot under maxConcurrentRequests out of the queue; false if none. */
  private dropWaiter(): boolean {
    if (this.waiter === undefined) return false
    this.server.admission?.cancel(this.waiter)
    this.waiter = undefined
    return true
  }

  onData(chunk: Buffer): void {
    if (this.ending) return
    this.parser.push(chunk)
    this.process()
  }

  onClose(): void {
    this.closed = true
    this.deadline = 0
    this.server.stats.connectionClosed(this.socket)
    this.dropWaiter()
    // The front end gave up on the request (its client went away): stop the work.
    if (this.exchange !== undefined) peerGone(this.exchange)
    this.server.forget(this)
  }

  write(data: string | Uint8Array): boolean {
    if (this.closed) return true
    return this.socket.write(data)
  }

  get drain(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.closed || !this.socket.writableNeedDrain) return resume(Effect.void)
      const wake = () => resume(Effect.void)
      this.socket.once("drain", wake)
      this.socket.once("close", wake)
      return Effect.sync(() => {
        this.socket.off("drain", wake)
        this.socket.off("close", wake)
      })
    })
  }

  resumeBody(): void {
    if (this.readPaused) {
      this.readPaused = false
      this.socket.resume()
    }
    this.process()
  }

  /** The response is complete; the connection closes once the application's fiber is done. */
  responseDone(): void {
    this.responseComplete = true
    if (this.exchange === undefined || this.exchange.fiberDone) this.end()
  }

  abort(): void {
    if (this.closed) return
    this.closed = true
    // A reset, not a FIN: with a close-delimited body a FIN would mark the partial body complete.
    this.socket.resetAndDestroy()
  }

  /** Graceful stop: a connection whose request has not fully arrived closes now. */
  drainForShutdown(): void {
    if (this.exchange === undefined) this.end()
  }

  /** Closes the socket and interrupts the request in progress (waiting up to `interruptGrace`). */
  get stop(): Effect.Effect<void> {
    return Effect.suspend(() => {
      const exchange = this.exchange
      const fiber = exchange?.fiberDone === false ? exchange.fiber : undefined
      if (!this.closed) {
        this.closed = true
        this.socket.destroy()
      }
      return fiber === undefined
        ? Effect.void
        : Effect.asVoid(Effect.timeoutOption(Fiber.interrupt(fiber), interruptGrace))
    })
  }

  /**
   * Runs `step`, never reentrantly: handing body bytes to a waiting application can call back
   * into `resumeBody` (BodyReader's poll → demand), and a nested step would end the body (End
   * resumes the waiter with Done) before the outer one has delivered the chunks it just took,
   * losing them. A nested call only asks for another pass, as the HTTP connection does.
   */
  private process(): void {
    if (this.processing) {
      this.rerun = true
      return
    }
    this.processing = true
    try {
      do {
        this.rerun = false
        this.step()
      } while (this.rerun)
    } finally {
      this.processing = false
    }
  }

  private step(): void {
    if (this.closed || this.ending) return
    const exchange = this.exchange
    if (exchange === undefined) {
      const event = this.parser.next()
      switch (event._tag) {
        case "Head": {
          const mapped = mapRequest(event.variables, this.server.config.environ)
          if (typeof mapped === "string") {
            this.reject(400, mapped)
            return
          }
          this.begin(new ScgiExchange(this, mapped, this.server.config.limits.maxBodySize))
          return
        }
        case "ScgiProtocolError":
          this.reject(event.status, event.reason)
          return
        default:
          return
      }
    }
    this.pump(exchange)
  }

  private begin(exchange: ScgiExchange): void {
    this.exchange = exchange
    this.server.stats.requests++
    this.deadline = 0
    this.deadlineKind = 0
    this.pump(exchange)
    if (!exchange.body.complete) this.setDeadline(BODY, this.server.config.requestTimeout)
    const admission = this.server.admission
    if (admission === undefined) {
      this.run(exchange)
      return
    }
    const waiter: Waiter = {
      since: Date.now(),
      start: () => {
        this.waiter = undefined
        exchange.admitted = true
        this.run(exchange)
      },
      refuse: () => {
        this.waiter = undefined
        this.server.stats.rejectedRequests++
        exchange.fiberDone = true
        exchange.sendSimple(503, "too many requests in progress\n")
      }
    }
    this.waiter = waiter
    admission.enter(waiter)
  }

  private run(exchange: ScgiExchange): void {
    const fiber = this.server.runner.run(exchange)
    exchange.fiber = fiber
    const exit = fiber.pollUnsafe()
    if (exit !== undefined) this.settle(exchange, exit)
    else fiber.addObserver((exit) => this.settle(exchange, exit))
  }

  private settle(exchange: ScgiExchange, exit: Exit.Exit<void, never>): void {
    if (exchange.fiberDone) return
    exchange.fiberDone = true
    this.server.runner.completed(exchange, exit)
    if (exchange.admitted) this.server.admission?.leave()
    if (!exchange.headSent && !this.closed) {
      // The fiber ended without a response (toHandled always answers); never leave the front end waiting.
      this.write(simpleScgiResponse(500, "Internal Server Error\n"))
      this.responseComplete = true
    }
    if (this.responseComplete) this.end()
    else if (!this.closed) this.abort()
  }

  /** Moves body bytes from the parser to the application, pausing the socket when it lags. */
  private pump(exchange: ScgiExchange): void {
    const reader = exchange.body
    for (;;) {
      if (reader.complete || reader.failure !== undefined) return
      if (reader.full) {
        if (!this.readPaused) {
          this.readPaused = true
          this.socket.pause()
        }
        return
      }
      const event = this.parser.next()
      switch (event._tag) {
        case "Data":
          reader.push(event.bytes)
          continue
        case "End":
          reader.end()
          if (this.deadlineKind === BODY) {
            this.deadline = 0
            this.deadlineKind = 0
          }
          return
        default:
          return
      }
    }
  }

  private reject(status: 400 | 413, reason: string): void {
    const body = `${reason}\n`
    // The client's address is in the variables the front end sent, which were not understood.
    this.server.runner.rejected({ status, reason }, { remoteAddress: undefined, bytes: Buffer.byteLength(body) })
    this.write(simpleScgiResponse(status, body))
    this.end()
  }

  /**
   * Closes after what was written. A close while request bytes are unread makes the kernel send a
   * reset, which can destroy the response before the front end reads it (RFC 9112 §9.6 describes
   * this for HTTP). So when the whole request has been read, nothing beyond it has arrived (a
   * front end sends nothing more) and the response is all in the kernel, the socket closes at
   * once: the FIN follows the response. Otherwise FIN now, then keep reading (and discarding)
   * until the front end closes or the linger time passes.
   */
  private end(): void {
    if (this.ending || this.closed) return
    this.ending = true
    this.deadline = 0
    const socket = this.socket
    if (this.parser.done && !this.parser.bytesBeyondRequest && socket.writableLength === 0) {
      socket.destroy()
      return
    }
    socket.end()
    if (this.readPaused) socket.resume()
    // The server's deadline sweep ends the linger: no timer per connection.
    this.setDeadline(LINGER, lingerMillis)
  }
}
