/**
 * The connection driver, one for every protocol: it owns one socket, feeds the protocol's
 * sans-I/O decoder, runs one exchange at a time in request order (admission, the app's fiber,
 * settling), moves body bytes to the application with backpressure, coalesces what handling one
 * batch of input produced into as few writes as possible, and enforces every deadline through
 * the acceptor's sweep: head, body, keep-alive idle, send (a peer that stops reading) and the
 * lingering close. Its state is one `ConnState`.
 *
 * @since 0.1.0
 */
import type * as Net from "node:net"
import * as NodeTls from "node:tls"
import { Effect, type Exit } from "effect"
import type { RequestRunner } from "../gateway/Runner.ts"
import type { LiveConnection } from "../listen/Acceptor.ts"
import { ConnState, lingerMillis } from "../listen/ConnState.ts"
import { inSharedBuffer, readIntoShared } from "../listen/SharedRead.ts"
import { type TlsInfo, tlsInfoOf } from "../listen/Tls.ts"
import type { ServerStats } from "../stats/ServerStats.ts"
import type { Admission, Waiter } from "../wire/Admission.ts"
import type { Refusal } from "../wire/Refusal.ts"
import { Exchange, type ExchangeHost, type Takeover } from "./Exchange.ts"
import type { Protocol, RequestDecoder } from "./Protocol.ts"
import { deferFlush } from "./WriteBatch.ts"

/**
 * The driver's timeouts in milliseconds, 0 for none.
 *
 * @since 0.1.0
 * @category models
 */
export interface DriverConfig {
  readonly headersTimeout: number
  readonly requestTimeout: number
  /** Idle time between requests; unused by protocols with one request per connection. */
  readonly keepAliveTimeout: number
  /** Time a peer may take none of the pending output before the connection is dropped. */
  readonly sendTimeout: number
  /** Unread body bytes discarded after a response to keep the connection open. */
  readonly maxDrainSize: number
  /** When the server stops, how long idle and new connections are kept for a racing request. */
  readonly drainGrace: number
}

/**
 * What the connections of one served app share.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionServer<H extends { readonly _tag: "Head" }, X extends Exchange> {
  readonly config: DriverConfig
  readonly protocol: Protocol<H, X>
  readonly runner: RequestRunner<X>
  readonly stats: ServerStats
  /** Present when maxConcurrentRequests limits the app. */
  readonly admission: Admission | undefined
  /** The server's graceful stop has begun. */
  readonly stopping: boolean
  /** A closed connection leaves the server's live set. */
  readonly forget: (connection: Connection<H, X>) => void
}

/** What a phase deadline is for. */
const Phase = { None: 0, Head: 1, Body: 2, Idle: 3, Linger: 4 } as const
type Phase = (typeof Phase)[keyof typeof Phase]

/** Output buffered before the connection stops taking new requests from a pipelining client. */
const writeHighWater = 256 * 1024

/**
 * How long a stop waits for an interrupted request to finish its interruption.
 *
 * @since 0.1.0
 */
export const interruptGrace = 1_000

const connectionKey = Symbol("effect-appserver/Connection")

/** What the socket's shared listeners call on the connection they find on it. */
interface SocketEvents {
  onData(chunk: Buffer): void
  onRead(view: Buffer): boolean
  onDrain(): void
  onClose(): void
}

interface ConnectionSocket extends Net.Socket {
  [connectionKey]: SocketEvents
}

/** libuv's count of bytes queued and not yet taken by the kernel, which a partial write lowers. */
interface WithWriteQueue {
  readonly _handle?: { readonly writeQueueSize?: number } | null
}

function onSocketData(this: ConnectionSocket, chunk: Buffer): void {
  this[connectionKey].onData(chunk)
}
function onSocketRead(this: Net.Socket, length: number, buffer: Buffer): boolean {
  return (this as ConnectionSocket)[connectionKey].onRead(buffer.subarray(0, length))
}
function onSocketDrain(this: ConnectionSocket): void {
  this[connectionKey].onDrain()
}
function onSocketClose(this: ConnectionSocket): void {
  this[connectionKey].onClose()
}
// 'close' always follows 'error'; the error itself needs no handling beyond closing.
const ignore = (): void => {}

const EMPTY_REST = Buffer.alloc(0)

/**
 * Body bytes out of the shared read buffer, in an ArrayBuffer of exactly their length that only
 * the body reader holds: a body that arrived in one read reaches the app without a second copy.
 */
const ownCopy = (bytes: Buffer): Buffer => {
  const copy = Buffer.allocUnsafeSlow(bytes.length)
  copy.set(bytes)
  return copy
}

const isRefusal = (failure: object): failure is Refusal => "status" in failure

/**
 * @since 0.1.0
 * @category models
 */
export class Connection<H extends { readonly _tag: "Head" }, X extends Exchange>
  implements LiveConnection, ExchangeHost
{
  readonly socket: Net.Socket
  readonly server: ConnectionServer<H, X>
  listIndex = -1
  state: ConnState = ConnState.New
  /** When the sweep next needs this connection: the earlier of the phase and send deadlines. */
  deadline = 0
  /** Created when bytes arrive, dropped while the connection is idle (it is the bulk of an idle connection). */
  private decoder: RequestDecoder<H> | undefined
  private current: X | undefined
  /** The current exchange while it waits for a slot under maxConcurrentRequests. */
  private waiter: Waiter | undefined
  /**
   * Output of the input being processed, written together at the end of the event loop's turn
   * (WriteBatch.ts) with the other connections' output; earlier when the connection must.
   */
  private batch: Array<string | Uint8Array> | undefined
  private batchBytes = 0
  /** The batch waits for the end of the turn. */
  private flushQueued = false
  /** `process` is running: a nested call only asks for another pass. */
  private processing = false
  private rerun = false
  /** A pipelining peer is not reading its responses: no further request is taken until it does. */
  private outputBlocked = false
  private drainListening = false
  private drainWaiters: Array<() => void> | undefined
  private phase: Phase = Phase.None
  private phaseDeadline = 0
  /** Set while output waits for a peer that is not taking it; 0 when none waits. */
  private sendDeadline = 0
  private sendMarkLength = 0
  private sendMarkQueue = 0
  /** What keeps the connection alive once it has switched protocols. */
  private takeover: Takeover | undefined
  /**
   * The peer's address, kept once the connection has switched protocols: its request completes
   * (and is logged) when the socket has closed, and a closed socket has no address.
   */
  private peerAddress: string | undefined

  constructor(socket: Net.Socket, server: ConnectionServer<H, X>) {
    this.socket = socket
    this.server = server
  }

  get closed(): boolean {
    return this.state === ConnState.Closed
  }

  /** The TLS session's details, read when a request asks. */
  get tls(): TlsInfo | undefined {
    return this.socket instanceof NodeTls.TLSSocket ? tlsInfoOf(this.socket) : undefined
  }

  /** Read when a request asks, so idle connections do not hold Node's peer-name record. */
  get remoteAddress(): string | undefined {
    return this.peerAddress ?? this.socket.remoteAddress
  }

  get remotePort(): number | undefined {
    return this.socket.remotePort
  }

  get maxDrainSize(): number {
    return this.server.config.maxDrainSize
  }

  /**
   * Whether the response now being written must close the connection: this is its last exchange,
   * or the server is stopping and no further request head has already arrived whole (part of one
   * is not waited for, so the response says the connection closes).
   */
  get closing(): boolean {
    if (this.state !== ConnState.Active) return true
    if (!this.server.stopping) return false
    const exchange = this.current
    return !((exchange === undefined || exchange.bodyDone) && this.decoder !== undefined && this.decoder.hasWholeHead)
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
    // Reads go into the process's shared buffer where Node allows it (not TLS): no allocation and
    // no stream machinery per read.
    if (!readIntoShared(socket, onSocketRead)) socket.on("data", onSocketData)
    socket.on("error", ignore)
    socket.on("close", onSocketClose)
    // Go's ReadHeaderTimeout: the first request head must arrive in time too.
    this.setPhase(Phase.Head, this.server.config.headersTimeout)
    socket.resume()
  }

  // Deadlines

  private setPhase(phase: Phase, timeout: number): void {
    this.phase = timeout > 0 ? phase : Phase.None
    this.phaseDeadline = timeout > 0 ? Date.now() + timeout : 0
    this.updateDeadline()
  }

  private clearPhase(): void {
    this.phase = Phase.None
    this.phaseDeadline = 0
    this.updateDeadline()
  }

  private updateDeadline(): void {
    const a = this.phaseDeadline
    const b = this.sendDeadline
    this.deadline = a === 0 ? b : b === 0 ? a : Math.min(a, b)
  }

  // Switching protocols

  handOver(): { readonly socket: Net.Socket; readonly rest: Buffer } {
    const socket = this.socket
    this.peerAddress = socket.remoteAddress
    this.flush()
    // Paused, so that what arrives (or `rest`, unshifted) waits for the new protocol's reader.
    socket.pause()
    socket.off("data", onSocketData)
    if (this.drainListening) {
      this.drainListening = false
      socket.off("drain", onSocketDrain)
    }
    // The switch can happen during the read that brought these bytes, still in the shared
    // buffer, and the new protocol may keep them (half a WebSocket frame): those are copied.
    const taken = this.decoder?.rest() ?? EMPTY_REST
    const rest = inSharedBuffer(taken) ? Buffer.from(taken) : taken
    this.decoder = undefined
    this.outputBlocked = false
    // A switched connection is no longer a request in progress: it gives back its slot under
    // maxConcurrentRequests (it stays counted under maxConnections), or a few long-lived
    // WebSockets would hold every slot and starve ordinary requests.
    const exchange = this.current
    if (exchange?.admitted === true) {
      exchange.admitted = false
      this.server.admission?.leave()
    }
    this.state = ConnState.Upgraded
    this.phase = Phase.None
    this.phaseDeadline = 0
    this.sendDeadline = 0
    this.updateDeadline()
    return { socket, rest }
  }

  watch(takeover: Takeover): void {
    if (this.state !== ConnState.Upgraded) return
    this.takeover = takeover
    this.deadline = takeover.deadline
  }

  private get writeQueue(): number {
    return (this.socket as WithWriteQueue)._handle?.writeQueueSize ?? 0
  }

  /**
   * Output is waiting for the peer: from now, the peer must take some of it within sendTimeout
   * (nginx's `send_timeout`: the time between two successful writes, not for the whole response).
   */
  private armSend(now: number): void {
    const timeout = this.server.config.sendTimeout
    if (timeout === 0) return
    this.sendDeadline = now + timeout
    this.sendMarkLength = this.socket.writableLength
    this.sendMarkQueue = this.writeQueue
    this.updateDeadline()
  }

  /** Backpressure: the socket's buffer is over its high-water mark. */
  private backpressured(): void {
    this.listenForDrain()
    if (this.sendDeadline === 0) this.armSend(Date.now())
  }

  /**
   * Called by the server's sweep once the deadline has passed. A head that is late gets 408
   * (RFC 9110 §15.5.9) and the connection closes (slowloris); an idle connection closes silently;
   * a body that is late fails the app's body stream, gets 408 if no response has begun, and the
   * connection closes; a peer that took none of the pending output within sendTimeout is dropped.
   */
  timeout(now: number): void {
    const state = this.state
    if (state === ConnState.Closed) return
    if (state === ConnState.Upgraded) {
      const takeover = this.takeover
      if (takeover === undefined) return
      takeover.tick(now)
      this.deadline = takeover.deadline
      return
    }
    if (this.sendDeadline !== 0 && now >= this.sendDeadline) {
      // Progress is any byte taken: the Writable's length falls as writes complete, libuv's
      // queue as a partial write goes out.
      if (this.socket.writableLength < this.sendMarkLength || this.writeQueue < this.sendMarkQueue) {
        this.armSend(now)
      } else {
        this.sendTimedOut()
        return
      }
    }
    if (this.phaseDeadline !== 0 && now >= this.phaseDeadline) {
      const phase = this.phase
      this.clearPhase()
      this.phaseTimeout(phase, now)
    }
  }

  private phaseTimeout(phase: Phase, now: number): void {
    const stats = this.server.stats
    switch (phase) {
      case Phase.Head: {
        if (this.state >= ConnState.Upgraded) return
        // The end of a stop's grace for a new connection is no timeout of the client's.
        if (!(this.server.stopping && this.decoder === undefined)) stats.timeouts.headers++
        if (this.current === undefined && this.decoder !== undefined && !this.decoder.idle) {
          this.write(this.server.protocol.simpleResponse(408, "request head not received in time\n", true))
        }
        this.end()
        return
      }
      case Phase.Idle:
        if (this.state >= ConnState.Upgraded) return
        if (!this.server.stopping) stats.timeouts.keepAlive++
        this.closeIdle()
        return
      case Phase.Body: {
        if (this.state >= ConnState.Upgraded) return
        stats.timeouts.request++
        this.lastExchange()
        const exchange = this.current
        if (exchange !== undefined) {
          exchange.timedOut(this.server.config.requestTimeout)
          // Answered: a request still waiting for a slot must not start the app once one frees.
          if (this.dropWaiter()) exchange.settle()
        }
        this.end()
        return
      }
      case Phase.Linger:
        if (this.socket.writableLength > 0) {
          // The linger counts once the last byte has left; until then the send deadline governs.
          this.setPhase(Phase.Linger, lingerMillis)
          if (this.sendDeadline === 0) this.armSend(now)
          return
        }
        this.destroy()
        return
    }
  }

  private sendTimedOut(): void {
    this.server.stats.timeouts.send++
    this.server.runner.notice("send timeout: the peer took none of the response; closing the connection", {
      "client.address": this.socket.remoteAddress,
      "timeout.seconds": this.server.config.sendTimeout / 1000
    })
    // A reset rather than a FIN: a FIN would queue behind the output the peer is not reading and
    // hold the socket and its buffers in the kernel (FIN_WAIT1) for minutes; a reset releases them
    // at once (nginx's reset_timedout_connection). Closing interrupts the request's fiber
    // (onClose), which stops producing the response.
    this.abort()
  }

  /** Takes a request waiting for a slot under maxConcurrentRequests out of the queue; false if none. */
  private dropWaiter(): boolean {
    if (this.waiter === undefined) return false
    this.server.admission?.cancel(this.waiter)
    this.waiter = undefined
    return true
  }

  // Socket events

  /**
   * A read in the shared buffer, valid only until this returns: the decoder copies what it has
   * not consumed, and body bytes handed to the application are copied (`pump`).
   */
  onRead(view: Buffer): boolean {
    if (this.state === ConnState.Upgraded) {
      // The new protocol reads the socket's stream, as it would without the shared buffer; a
      // full stream stops reading until it is read.
      return this.socket.push(Buffer.from(view))
    }
    try {
      this.onData(view)
    } finally {
      this.decoder?.detach()
    }
    return true
  }

  onData(chunk: Buffer): void {
    const state = this.state
    // Lingering: what the peer still sends is discarded.
    if (state >= ConnState.Upgraded) return
    if (state === ConnState.Idle) {
      this.state = ConnState.Active
      this.setPhase(Phase.Head, this.server.config.headersTimeout)
    } else if (state === ConnState.New) {
      this.state = ConnState.Active
    }
    ;(this.decoder ??= this.server.protocol.decoder()).push(chunk)
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
    if (this.sendDeadline !== 0) {
      this.sendDeadline = 0
      this.updateDeadline()
    }
    const waiters = this.drainWaiters
    if (waiters !== undefined) {
      this.drainWaiters = undefined
      for (const wake of waiters) wake()
    }
    if (this.outputBlocked) {
      this.outputBlocked = false
      if (this.state !== ConnState.Closed) this.socket.resume()
      this.process()
    }
  }

  onClose(): void {
    // A switched protocol that closed after our side ended (a WebSocket's closing handshake, RFC
    // 6455 §7.1.1) ended in order: the app reads that end, with the peer's close code, from its
    // socket, as on NodeHttpServer. Only a peer that vanished interrupts the app.
    const orderly = this.state === ConnState.Upgraded && this.socket.writableEnded
    this.state = ConnState.Closed
    this.takeover = undefined
    this.phase = Phase.None
    this.phaseDeadline = 0
    this.sendDeadline = 0
    this.deadline = 0
    this.server.stats.connectionClosed(this.socket)
    this.dropWaiter()
    // The peer went away: stop the work of its request.
    if (!orderly) this.current?.peerGone()
    this.onDrain()
    this.server.forget(this)
  }

  // ExchangeHost

  write(data: string | Uint8Array): boolean {
    if (this.state === ConnState.Closed) return true
    const batch = this.batch
    if (batch !== undefined) {
      batch.push(data)
      return this.batched(data.length)
    }
    if (this.socket.write(data)) return true
    this.backpressured()
    return false
  }

  /** Output is batched while input is processed; a large batch goes out early, with backpressure. */
  private batched(length: number): boolean {
    this.batchBytes += length
    if (this.batchBytes < writeHighWater) return true
    this.flush()
    this.batch = []
    // More may come before the turn ends (a streaming app outside `process`): it waits with the rest.
    this.queueFlush()
    if (!this.socket.writableNeedDrain) return true
    this.backpressured()
    return false
  }

  writeAll(parts: ReadonlyArray<string | Uint8Array>): boolean {
    if (this.state === ConnState.Closed) return true
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
    if (!ok) this.backpressured()
    return ok
  }

  lastExchange(): void {
    if (this.state < ConnState.Closing) this.state = ConnState.Closing
  }

  abort(): void {
    if (this.state === ConnState.Closed) return
    this.flush()
    this.state = ConnState.Closed
    // A reset, not a FIN: for a close-delimited body a FIN would mark the partial body complete.
    this.socket.resetAndDestroy()
  }

  resumeBody(): void {
    if (!this.outputBlocked && this.state !== ConnState.Closed && this.socket.isPaused()) this.socket.resume()
    this.process()
  }

  get drain(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      this.flush()
      if (this.state === ConnState.Closed || !this.socket.writableNeedDrain) return resume(Effect.void)
      const wake = () => resume(Effect.void)
      this.backpressured()
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

  // Stopping

  /**
   * The server is stopping (graceful stop): an idle connection closes now; one with a request in
   * progress or already received answers it, the last response saying the connection closes.
   */
  drainForShutdown(): void {
    const state = this.state
    if (state !== ConnState.New && state !== ConnState.Idle) {
      this.process()
      return
    }
    const grace = this.server.config.drainGrace
    if (grace === 0) {
      this.closeIdle()
      return
    }
    // A request may be on its way (a client reusing its kept-alive connection, a front end that
    // has just connected): it is answered with Connection: close rather than closed under, which
    // would lose it. Go's Shutdown gives new connections 5 s the same way.
    const until = Date.now() + grace
    if (this.phaseDeadline === 0 || until < this.phaseDeadline) {
      this.setPhase(state === ConnState.Idle ? Phase.Idle : Phase.Head, grace)
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
      const exchange = this.current
      if (this.state === ConnState.Upgraded && exchange !== undefined) {
        // The app's fiber owns the switched protocol: interrupting it closes the protocol its
        // way (a WebSocket sends 1001, going away), then the socket goes once that is written.
        // An app that cannot be interrupted (Effect's `HttpServer.serve` runs apps so unless
        // they opt in) has the protocol closed the same way for it, rather than a bare FIN.
        return Effect.timeoutOption(exchange.interrupt, interruptGrace).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              if (this.state === ConnState.Closed) return
              this.takeover?.stop()
              this.socket.destroySoon()
            })
          ),
          Effect.asVoid
        )
      }
      this.destroy()
      return exchange === undefined
        ? Effect.void
        : Effect.asVoid(Effect.timeoutOption(exchange.interrupt, interruptGrace))
    })
  }

  private destroy(): void {
    if (this.state === ConnState.Closed) return
    this.flush()
    this.state = ConnState.Closed
    this.socket.destroy()
  }

  /** Closes a connection with nothing in flight: FIN once written data is out. */
  private closeIdle(): void {
    if (this.state >= ConnState.Upgraded) return
    this.state = ConnState.Lingering
    this.setPhase(Phase.Linger, lingerMillis)
    this.socket.destroySoon()
  }

  // Processing

  /**
   * Runs `step`, never reentrantly: handing body bytes to a waiting application can call back
   * into `resumeBody` (BodyReader's poll → demand), and a nested step would end the body (End
   * resumes the waiter with Done) before the outer one has delivered the chunks it just took,
   * losing them. A nested call only asks for another pass.
   */
  private process(): void {
    if (this.processing) {
      this.rerun = true
      return
    }
    this.processing = true
    // Output still waiting from earlier in this turn stays first.
    this.batch ??= []
    try {
      do {
        this.rerun = false
        this.step()
      } while (this.rerun && this.state !== ConnState.Closed)
    } finally {
      this.processing = false
      if (this.batch !== undefined && this.batch.length > 0) this.queueFlush()
      else if (!this.flushQueued) this.batch = undefined
      if (this.current === undefined && this.decoder?.idle) this.decoder = undefined
    }
  }

  /** Writes the batch at the end of this turn of the event loop, with the other connections' output. */
  private queueFlush(): void {
    if (this.flushQueued) return
    this.flushQueued = true
    deferFlush(this)
  }

  /** The end of the turn (WriteBatch.ts). */
  flushDeferred(): void {
    if (this.flushQueued) this.flush()
  }

  private flush(): void {
    const batch = this.batch
    this.batch = undefined
    this.batchBytes = 0
    this.flushQueued = false
    if (batch === undefined || batch.length === 0 || this.state === ConnState.Closed) return
    const socket = this.socket
    if (batch.length === 1) {
      if (!socket.write(batch[0])) this.backpressured()
      return
    }
    // Adjacent strings (heads with text bodies: pipelined responses) are joined, so a batch is
    // one encode and one system call rather than a writev of many small pieces.
    socket.cork()
    let text = ""
    let ok = true
    for (const part of batch) {
      if (typeof part === "string") {
        text += part
        continue
      }
      if (text !== "") {
        socket.write(text)
        text = ""
      }
      ok = socket.write(part)
    }
    if (text !== "") ok = socket.write(text)
    socket.uncork()
    if (!ok) this.backpressured()
  }

  private step(): void {
    const config = this.server.config
    for (;;) {
      if (this.state >= ConnState.Upgraded || this.outputBlocked) return
      const exchange = this.current
      if (exchange !== undefined) {
        if (!exchange.bodyDone) {
          if (exchange.fiberDone) {
            // The rest of an unread body is discarded only if the connection is kept.
            if (!exchange.keepAlive || this.state === ConnState.Closing) exchange.bodyEnded(true)
            else exchange.startDiscarding()
          }
          if (!exchange.bodyDone && !this.pump(exchange)) return
        }
        if (!exchange.fiberDone) return
        this.current = undefined
        if (!exchange.keepAlive || this.state === ConnState.Closing) {
          if (!this.closeAtOnce(exchange)) this.end()
          return
        }
        if (this.decoder !== undefined && this.decoder.buffered > 0) {
          this.setPhase(Phase.Head, config.headersTimeout)
        } else if (this.server.stopping) {
          this.end()
          return
        } else {
          this.state = ConnState.Idle
          this.setPhase(Phase.Idle, config.keepAliveTimeout)
        }
        if (this.socket.writableLength > writeHighWater) {
          // A pipelining peer that does not read its responses gets no more of them, and its
          // further requests wait in the kernel rather than in our buffers.
          this.flush()
          if (this.socket.writableNeedDrain) {
            this.outputBlocked = true
            this.socket.pause()
            this.backpressured()
            return
          }
        }
        continue
      }
      if (this.state === ConnState.Closing) {
        this.end()
        return
      }
      const decoder = this.decoder
      if (decoder === undefined) return
      const event = decoder.next()
      switch (event._tag) {
        case "Head":
          this.begin(event as H)
          continue
        case "NeedData":
          // Stopping: a request not fully received by now is not waited for.
          if (this.server.stopping) this.end()
          return
        case "Data":
        case "End":
          // Data and End only follow a head, which is consumed by its exchange.
          return
        default:
          this.reject(event as Refusal)
          return
      }
    }
  }

  private begin(head: H): void {
    const server = this.server
    const made = server.protocol.exchange(this, head)
    if (!(made instanceof Exchange)) {
      this.reject(made)
      return
    }
    const exchange = made
    this.current = exchange
    server.stats.requests++
    this.clearPhase()
    this.pump(exchange)
    const failure = exchange.body.failure
    if (failure !== undefined && isRefusal(failure)) {
      // The body's framing is already known to be broken: refuse before the app runs.
      this.current = undefined
      this.reject(failure)
      return
    }
    if (!exchange.bodyDone) this.setPhase(Phase.Body, server.config.requestTimeout)
    const admission = server.admission
    // A health check is answered by the server itself: it never waits for a slot of the app's.
    if (admission === undefined || server.runner.isHealthCheck(exchange.url)) {
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
        server.stats.rejectedRequests++
        exchange.sendSimple(503, "too many requests in progress\n")
        exchange.settle()
        this.process()
      }
    }
    this.waiter = waiter
    admission.enter(waiter)
  }

  /** Runs the app for the exchange; it may complete before this returns. */
  private run(exchange: X): void {
    const fiber = this.server.runner.run(exchange)
    exchange.started(fiber)
    const exit = fiber.pollUnsafe()
    if (exit !== undefined) {
      this.settle(exchange, exit)
    } else {
      fiber.addObserver((exit) => exchange.onExit(exit))
    }
  }

  private settle(exchange: Exchange, exit: Exit.Exit<void, never>): void {
    if (!exchange.settle()) return
    this.server.runner.completed(exchange as X, exit)
    if (exchange.admitted) this.server.admission?.leave()
    if (this.state === ConnState.Closed) return
    if (!exchange.headSent) {
      // The application's fiber ended without a response (it cannot normally: toHandled always
      // answers); the peer must not be left waiting.
      exchange.sendSimple(500, "Internal Server Error\n", true)
    } else if (!exchange.responseEnded && !exchange.aborted) {
      // A response begun and never finished must not look whole.
      exchange.abort()
    }
  }

  /**
   * Moves body events from the decoder to the exchange. True once the body is done; false when
   * more input is needed or the application must first take what is buffered.
   */
  private pump(exchange: X): boolean {
    const reader = exchange.body
    const decoder = this.decoder
    if (decoder === undefined) return false
    for (;;) {
      if (!exchange.discarding && reader.full) {
        if (!this.socket.isPaused()) this.socket.pause()
        return false
      }
      const event = decoder.next()
      switch (event._tag) {
        case "Data": {
          const bytes = (event as { readonly bytes: Buffer }).bytes
          if (exchange.discarding) {
            // An unread body is discarded to keep the connection, up to a bound.
            if (!exchange.discard(bytes.length)) return this.bodyDone(exchange, true)
          } else if (!(inSharedBuffer(bytes) ? reader.push(ownCopy(bytes), true) : reader.push(bytes))) {
            // Over the body limit: the application sees MaxSizeExceeded; the rest is not read.
            return this.bodyDone(exchange, true)
          }
          continue
        }
        case "End":
          reader.end()
          return this.bodyDone(exchange, false)
        case "NeedData":
          if (!reader.full && !this.outputBlocked && this.socket.isPaused()) this.socket.resume()
          return false
        case "Head":
          return false
        default: {
          const refusal = event as Refusal
          reader.fail(refusal)
          // Before the app runs the refusal is answered (begin); after, it is only counted.
          if (exchange.fiber !== undefined || this.waiter !== undefined) this.server.runner.rejected(refusal)
          return this.bodyDone(exchange, true)
        }
      }
    }
  }

  private bodyDone(exchange: X, close: boolean): true {
    exchange.bodyEnded(close)
    if (close) this.lastExchange()
    if (this.phase === Phase.Body) this.clearPhase()
    return true
  }

  /** Answers a request the decoder or the protocol refused, then closes. */
  private reject(error: Refusal): void {
    const body = `${error.reason}\n`
    const protocol = this.server.protocol
    this.server.runner.rejected(error, {
      // Over SCGI the client's address is in variables that were not understood.
      remoteAddress: protocol.peerIsClient ? this.socket.remoteAddress : undefined,
      remotePort: protocol.peerIsClient ? this.socket.remotePort : undefined,
      bytes: Buffer.byteLength(body)
    })
    this.write(protocol.simpleResponse(error.status, body, true))
    this.end()
  }

  /**
   * Closes without lingering when the peer said this request was its last ("close", HTTP/1.0
   * without keep-alive, every SCGI request): such a peer sends nothing more (RFC 9112 §9.6, §9.3),
   * so once its request has been read in full, nothing beyond it has arrived and the response is
   * all in the kernel, a close cannot reset unread input and the FIN follows the response. False
   * when any of that does not hold, for the lingering close.
   */
  private closeAtOnce(exchange: X): boolean {
    if (!exchange.finalRequest || exchange.aborted || this.socket.isPaused() || this.decoder?.idle !== true) {
      return false
    }
    this.flush()
    if (this.socket.writableLength > 0) return false
    this.destroy()
    return true
  }

  /**
   * Closes after the responses written so far: FIN now, then keep reading (and discarding) until
   * the peer closes or the linger time passes, so unread request bytes do not turn the close
   * into a reset that could destroy the response in flight (RFC 9112 §9.6).
   */
  private end(): void {
    if (this.state >= ConnState.Upgraded) return
    this.state = ConnState.Lingering
    this.flush()
    const socket = this.socket
    socket.end()
    if (socket.isPaused()) socket.resume()
    this.setPhase(Phase.Linger, lingerMillis)
  }
}
