/**
 * The HTTP/1.1 connection driver: it owns one socket, feeds the sans-I/O parser, runs one
 * exchange at a time in request order, and writes responses, coalescing everything produced while
 * handling one batch of input into as few writes as possible.
 *
 * @since 0.1.0
 */

import type * as Net from "node:net"
import * as NodeTls from "node:tls"
import { Effect, type Exit } from "effect"
import { bodyTimedOut, peerGone, type ConnectionServer as Shared } from "../gateway/Runner.ts"
import { type TlsInfo, tlsInfoOf } from "../listen/Tls.ts"
import type { Waiter } from "../wire/Admission.ts"
import type { Refusal } from "../wire/Refusal.ts"
import { simpleResponse } from "./Encoder.ts"
import { Exchange, type ExchangeHost } from "./Exchange.ts"
import { type ParserLimits, type RequestHead, RequestParser } from "./Parser.ts"

/**
 * Connection settings. Timeouts are in milliseconds, 0 for none.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionConfig {
  readonly limits: ParserLimits
  readonly maxDrainSize: number
  readonly serverName: string
  readonly protocol: "http" | "https"
  readonly headersTimeout: number
  readonly requestTimeout: number
  readonly keepAliveTimeout: number
}

/**
 * What the connections of one served app share.
 *
 * @since 0.1.0
 * @category models
 */
export type ConnectionServer = Shared<ConnectionConfig, Exchange, Http1Connection>

// What a connection's deadline is for.
const NO_DEADLINE = 0
const HEADERS = 1
const BODY = 2
const IDLE = 3

/** Output buffered before the connection stops taking new requests from a pipelining client. */
const writeHighWater = 256 * 1024
/**
 * How long a stop waits for an interrupted request to finish its interruption.
 *
 * @since 0.1.0
 */
export const interruptGrace = 1_000
/** After our FIN, how long a client gets to read the response and close its side. */
const lingerMillis = 2_000

const connectionKey = Symbol("effect-appserver/Http1Connection")

interface ConnectionSocket extends Net.Socket {
  [connectionKey]: Http1Connection
}

function onSocketData(this: ConnectionSocket, chunk: Buffer): void {
  this[connectionKey].onData(chunk)
}
function onSocketDrain(this: ConnectionSocket): void {
  this[connectionKey].onDrain()
}
function onSocketClose(this: ConnectionSocket): void {
  this[connectionKey].onClose()
}
const ignore = (): void => {}

/**
 * @since 0.1.0
 * @category models
 */
export class Http1Connection implements ExchangeHost {
  readonly socket: Net.Socket
  readonly server: ConnectionServer
  readonly config: ConnectionConfig
  /** Created when bytes arrive, dropped while the connection is idle (it is the bulk of an idle connection). */
  private parser: RequestParser | undefined
  listIndex = -1
  private current: Exchange | undefined
  /** The current exchange while it waits for a slot under maxConcurrentRequests. */
  private waiter: Waiter | undefined
  private batch: Array<string | Uint8Array> | undefined
  private batchBytes = 0
  private processing = false
  private rerun = false
  private readPaused = false
  private waitingForDrain = false
  private drainWaiters: Array<() => void> | undefined
  private drainListening = false
  /** No further request is taken: the connection closes after the current exchange. */
  private closeAfterCurrent = false
  /** The server is stopping: requests already received are answered, then the connection closes. */
  private draining = false
  closed = false
  private ending = false
  /** When the current phase times out (ms since the epoch), and which phase that is. */
  deadline = 0
  private deadlineKind = NO_DEADLINE

  constructor(socket: Net.Socket, server: ConnectionServer) {
    this.socket = socket
    this.server = server
    this.config = server.config
  }

  /** The TLS session's details, read when a request asks. */
  get tls(): TlsInfo | undefined {
    return this.socket instanceof NodeTls.TLSSocket ? tlsInfoOf(this.socket) : undefined
  }

  /** Read when a request asks, so idle connections do not hold Node's peer-name record. */
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress
  }

  get protocol(): "http" | "https" {
    return this.config.protocol
  }
  get serverName(): string {
    return this.config.serverName
  }

  /**
   * Whether the response now being written must close the connection: the connection was asked
   * to close, or the server is stopping and no further request head has already arrived whole
   * (part of one is not waited for, so the response says the connection closes).
   */
  get closing(): boolean {
    return this.closeAfterCurrent || (this.draining && !this.hasFurtherInput())
  }

  /** Bytes beyond the current request's body are waiting in the parser. */
  private hasFurtherInput(): boolean {
    const exchange = this.current
    return (exchange === undefined || exchange.bodyDone) && this.parser !== undefined && this.parser.hasWholeHead
  }

  /** Waiting for a next request with nothing of it received. */
  get idle(): boolean {
    return this.current === undefined && (this.parser === undefined || this.parser.idle) && !this.closed
  }
  get maxDrainSize(): number {
    return this.config.maxDrainSize
  }

  /**
   * Starts serving: socket events drive the connection from here, until the socket closes.
   * Stopping it is `stop`, which the server runs for every live connection.
   */
  start(): void {
    const socket = this.socket as ConnectionSocket
    // Listeners are shared functions that find the connection on the socket: an idle
    // keep-alive connection then costs no closures of its own.
    socket[connectionKey] = this
    socket.on("data", onSocketData)
    // 'close' always follows 'error'; the error itself needs no handling beyond closing.
    socket.on("error", ignore)
    socket.on("close", onSocketClose)
    // Go's ReadHeaderTimeout: the first request head must arrive in time too.
    this.setDeadline(HEADERS, this.config.headersTimeout)
    socket.resume()
  }

  private setDeadline(kind: number, timeout: number): void {
    this.deadlineKind = timeout > 0 ? kind : NO_DEADLINE
    this.deadline = timeout > 0 ? Date.now() + timeout : 0
  }

  private clearDeadline(): void {
    this.deadlineKind = NO_DEADLINE
    this.deadline = 0
  }

  /**
   * Called by the server's sweep once the deadline has passed. A head that is late gets 408
   * (RFC 9110 §15.5.9) and the connection closes (slowloris); an idle connection closes silently;
   * a body that is late fails the app's body stream, gets 408 if no response has begun, and the
   * connection closes.
   */
  timeout(): void {
    const kind = this.deadlineKind
    this.clearDeadline()
    if (this.closed || this.ending) return
    const stats = this.server.stats
    switch (kind) {
      case HEADERS: {
        stats.timeouts.headers++
        const started = this.parser !== undefined && !this.parser.idle
        if (started && this.current === undefined) {
          this.write(simpleResponse(408, "request head not received in time\n", true, this.config.serverName))
        }
        this.end()
        return
      }
      case IDLE:
        stats.timeouts.keepAlive++
        this.closeIdle()
        return
      case BODY: {
        stats.timeouts.request++
        const exchange = this.current
        this.closeAfterCurrent = true
        if (exchange !== undefined) {
          exchange.bodyDone = true
          bodyTimedOut(exchange, this.config.requestTimeout)
          // Answered: a request still waiting for a slot must not start the app once one frees.
          if (this.dropWaiter()) exchange.fiberDone = true
        }
        this.end()
        return
      }
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
    if (this.ending) return // lingering close: discard what the client still sends
    if (this.deadlineKind === IDLE) this.setDeadline(HEADERS, this.config.headersTimeout)
    ;(this.parser ??= new RequestParser(this.config.limits)).push(chunk)
    this.process()
  }

  /** Asks for one 'drain' event (listening only when needed keeps idle connections small). */
  private listenForDrain(): void {
    if (this.drainListening) return
    this.drainListening = true
    this.socket.once("drain", onSocketDrain)
  }

  onDrain(): void {
    this.drainListening = false
    const waiters = this.drainWaiters
    if (waiters !== undefined) {
      this.drainWaiters = undefined
      for (const wake of waiters) wake()
    }
    if (this.waitingForDrain) {
      this.waitingForDrain = false
      this.process()
    }
  }

  onClose(): void {
    this.closed = true
    this.clearDeadline()
    this.server.stats.connectionClosed(this.socket)
    this.dropWaiter()
    // The client went away: stop the work of its request.
    if (this.current !== undefined) peerGone(this.current)
    this.onDrain()
    this.server.forget(this)
  }

  // ExchangeHost

  write(data: string | Uint8Array): boolean {
    if (this.closed) return true
    const batch = this.batch
    if (batch !== undefined) {
      batch.push(data)
      return this.batched(data.length)
    }
    return this.socket.write(data)
  }

  /** Output is batched while input is processed; a large batch goes out early, with backpressure. */
  private batched(length: number): boolean {
    this.batchBytes += length
    if (this.batchBytes < writeHighWater) return true
    this.flush()
    this.batch = []
    return !this.socket.writableNeedDrain
  }

  writeAll(parts: ReadonlyArray<string | Uint8Array>): boolean {
    if (this.closed) return true
    const batch = this.batch
    if (batch !== undefined) {
      let length = 0
      for (const part of parts) {
        batch.push(part)
        length += part.length
      }
      return this.batched(length)
    }
    const socket = this.socket
    socket.cork()
    let ok = true
    for (const part of parts) ok = socket.write(part)
    socket.uncork()
    return ok
  }

  markClosing(): void {
    this.closeAfterCurrent = true
  }

  /**
   * The server is stopping (graceful stop): an idle connection closes now; one with a request in
   * progress or already received answers it, with `Connection: close` on the last response.
   */
  drainForShutdown(): void {
    this.draining = true
    if (this.idle) this.closeIdle()
    else this.process()
  }

  /** Closes a connection with nothing in flight: FIN once written data is out, no lingering. */
  private closeIdle(): void {
    if (this.ending || this.closed) return
    this.ending = true
    this.clearDeadline()
    this.socket.destroySoon()
  }

  abort(): void {
    if (this.closed) return
    this.flush()
    this.closed = true
    // A reset, not a FIN: for a close-delimited body a FIN would mark the partial body complete.
    this.socket.resetAndDestroy()
  }

  resumeBody(): void {
    if (this.readPaused && !this.waitingForDrain) {
      this.readPaused = false
      this.socket.resume()
    }
    this.process()
  }

  get drain(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      this.flush()
      if (this.closed || !this.socket.writableNeedDrain) return resume(Effect.void)
      const wake = () => resume(Effect.void)
      this.listenForDrain()
      this.drainWaiters ??= []
      this.drainWaiters.push(wake)
      return Effect.sync(() => {
        this.drainWaiters = this.drainWaiters?.filter((w) => w !== wake)
      })
    })
  }

  exchangeDone(exchange: Exchange, exit: Exit.Exit<void, never>): void {
    this.settle(exchange, exit)
    this.process()
  }

  private settle(exchange: Exchange, exit: Exit.Exit<void, never>): void {
    exchange.fiberDone = true
    this.server.runner.completed(exchange, exit)
    if (exchange.admitted) this.server.admission?.leave()
    if (!exchange.headSent && !this.closed) {
      // The application's fiber ended without a response (it cannot normally: toHandled always
      // answers); the client must not be left waiting.
      this.write(simpleResponse(500, "Internal Server Error\n", true, this.config.serverName))
      exchange.keepAlive = false
    }
  }

  /**
   * Closes the socket and interrupts the exchange in progress, waiting for the interruption up to
   * `interruptGrace`: an app that runs uninterruptibly (Effect's `HttpServer.serve` apps are,
   * unless they opt in; `HttpRouter` routes are not) is abandoned rather than waited for, so a
   * stop never hangs (as Go's `Shutdown` returns at its deadline).
   */
  get stop(): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.closeAfterCurrent = true
      const exchange = this.current
      this.destroy()
      return exchange === undefined
        ? Effect.void
        : Effect.asVoid(Effect.timeoutOption(exchange.interrupt, interruptGrace))
    })
  }

  destroy(): void {
    if (this.closed) return
    this.flush()
    this.closed = true
    this.socket.destroy()
  }

  // Processing

  private process(): void {
    if (this.processing) {
      this.rerun = true
      return
    }
    this.processing = true
    this.batch = []
    try {
      do {
        this.rerun = false
        this.step()
      } while (this.rerun && !this.closed)
    } finally {
      this.processing = false
      this.flush()
      if (this.current === undefined && this.parser?.idle) this.parser = undefined
    }
  }

  private flush(): void {
    const batch = this.batch
    this.batch = undefined
    this.batchBytes = 0
    if (batch === undefined || batch.length === 0 || this.closed) return
    const socket = this.socket
    if (batch.length === 1) {
      socket.write(batch[0])
      return
    }
    // Adjacent strings (heads with text bodies: pipelined responses) are joined, so a batch is
    // one encode and one system call rather than a writev of many small pieces.
    socket.cork()
    let text = ""
    for (const part of batch) {
      if (typeof part === "string") {
        text += part
        continue
      }
      if (text !== "") {
        socket.write(text)
        text = ""
      }
      socket.write(part)
    }
    if (text !== "") socket.write(text)
    socket.uncork()
  }

  private step(): void {
    for (;;) {
      if (this.closed || this.ending || this.waitingForDrain) return
      const exchange = this.current
      if (exchange !== undefined) {
        if (!exchange.bodyDone) {
          if (exchange.fiberDone) {
            // The rest of an unread body is discarded only if the connection is kept.
            if (!exchange.keepAlive || this.closeAfterCurrent) exchange.bodyDone = true
            else exchange.discarding = true
          }
          if (!exchange.bodyDone && !this.pump(exchange)) return
        }
        if (!exchange.fiberDone) return
        this.current = undefined
        if (!exchange.keepAlive || this.closeAfterCurrent) {
          if (!this.closeAtOnce(exchange)) this.end()
          return
        }
        if (this.parser !== undefined && this.parser.buffered > 0) {
          this.setDeadline(HEADERS, this.config.headersTimeout)
        } else if (this.draining) {
          this.end()
          return
        } else {
          this.setDeadline(IDLE, this.config.keepAliveTimeout)
        }
        if (this.socket.writableLength > writeHighWater) {
          // A pipelining client that does not read its responses gets no more of them.
          this.waitingForDrain = true
          this.flush()
          if (this.socket.writableNeedDrain) {
            this.listenForDrain()
            return
          }
          this.waitingForDrain = false
        }
        continue
      }
      if (this.closeAfterCurrent) {
        this.end()
        return
      }
      const parser = this.parser
      if (parser === undefined) return
      const event = parser.next()
      switch (event._tag) {
        case "Head":
          this.begin(event)
          continue
        case "NeedData":
          // Stopping: a request not fully received by now is not waited for.
          if (this.draining) this.end()
          return
        case "HttpProtocolError":
          this.reject(event)
          return
        default:
          // Data and End only follow a head, which is consumed by its exchange.
          return
      }
    }
  }

  private begin(head: RequestHead): void {
    const exchange = new Exchange(this, head, this.config.limits.maxBodySize)
    this.current = exchange
    this.server.stats.requests++
    this.clearDeadline()
    this.pump(exchange)
    const failure = exchange.body.failure
    if (failure?._tag === "HttpProtocolError") {
      // The body's framing is already known to be broken: refuse before the app runs.
      this.current = undefined
      this.reject(failure)
      return
    }
    if (!exchange.bodyDone) this.setDeadline(BODY, this.config.requestTimeout)
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
        // Started from another connection's completion: carry on with this one.
        if (!this.processing) this.process()
      },
      refuse: () => {
        this.waiter = undefined
        this.server.stats.rejectedRequests++
        exchange.sendSimple(503, "too many requests in progress\n")
        exchange.fiberDone = true
        this.process()
      }
    }
    this.waiter = waiter
    admission.enter(waiter)
  }

  /** Runs the app for the exchange; it may complete before this returns. */
  private run(exchange: Exchange): void {
    const runner = this.server.runner
    const fiber = runner.run(exchange)
    exchange.fiber = fiber
    const exit = fiber.pollUnsafe()
    if (exit !== undefined) {
      this.settle(exchange, exit)
    } else {
      fiber.addObserver((exit) => exchange.onExit(exit))
    }
  }

  /**
   * Moves body events from the parser to the exchange. True once the body is done; false when
   * more input is needed or the application must first take what is buffered.
   */
  private pump(exchange: Exchange): boolean {
    const reader = exchange.body
    const parser = this.parser
    if (parser === undefined) return false
    for (;;) {
      if (!exchange.discarding && reader.full) {
        this.pauseReading()
        return false
      }
      const event = parser.next()
      switch (event._tag) {
        case "Data":
          if (exchange.discarding) {
            exchange.discarded += event.bytes.length
            // An unread body is discarded to keep the connection, up to a bound.
            if (exchange.discarded > this.config.maxDrainSize) return this.bodyDone(exchange, true)
          } else if (!reader.push(event.bytes)) {
            // Over the body limit: the application sees MaxSizeExceeded; the rest is not read.
            exchange.keepAlive = false
            return this.bodyDone(exchange, true)
          }
          continue
        case "End":
          reader.end()
          return this.bodyDone(exchange, false)
        case "HttpProtocolError":
          reader.fail(event)
          exchange.keepAlive = false
          this.server.runner.rejected(event)
          return this.bodyDone(exchange, true)
        case "NeedData":
          if (this.readPaused && !reader.full) {
            this.readPaused = false
            this.socket.resume()
          }
          return false
        default:
          return false
      }
    }
  }

  private bodyDone(exchange: Exchange, close: boolean): true {
    exchange.bodyDone = true
    if (close) this.closeAfterCurrent = true
    if (this.deadlineKind === BODY) this.clearDeadline()
    return true
  }

  private pauseReading(): void {
    if (!this.readPaused) {
      this.readPaused = true
      this.socket.pause()
    }
  }

  /** Answers a request the parser refused, then closes. */
  private reject(error: Refusal): void {
    const body = `${error.reason}\n`
    this.server.runner.rejected(error, { remoteAddress: this.socket.remoteAddress, bytes: Buffer.byteLength(body) })
    this.write(simpleResponse(error.status, body, true, this.config.serverName))
    this.end()
  }

  /**
   * Closes without lingering when the client's request ended the connection ("close", or HTTP/1.0
   * without keep-alive): such a client sends nothing more (RFC 9112 §9.6, §9.3), so once its
   * request has been read in full, nothing beyond it has arrived and the response is all in the
   * kernel, a close cannot reset unread input and the FIN follows the response. False when any
   * of that does not hold, for the lingering close.
   */
  private closeAtOnce(exchange: Exchange): boolean {
    if (exchange.head.keepAlive || exchange.aborted || this.readPaused || this.parser?.idle !== true) return false
    this.flush()
    if (this.socket.writableLength > 0) return false
    this.ending = true
    this.clearDeadline()
    this.socket.destroy()
    return true
  }

  /**
   * Closes after the responses written so far: FIN now, then keep reading (and discarding) until
   * the client closes or the linger time passes, so unread request bytes do not turn the close
   * into a reset that could destroy the response in flight.
   */
  private end(): void {
    if (this.ending || this.closed) return
    this.ending = true
    this.clearDeadline()
    this.flush()
    const socket = this.socket
    socket.end()
    if (this.readPaused) socket.resume()
    const timer = setTimeout(() => socket.destroy(), lingerMillis)
    timer.unref()
    socket.once("close", () => clearTimeout(timer))
  }
}
