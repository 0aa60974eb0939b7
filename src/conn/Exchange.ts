/**
 * One request/response exchange on a connection, whatever the protocol: the body the application
 * reads, the application's fiber and its completion, the response's progress (one write for a
 * head and a small body, the Content-Length guard) and whether the connection is kept after it.
 * A protocol extends it with its request (what the application sees of the head) and its framing
 * (how a head, a chunk and the end of a body go on the wire).
 *
 * The exchange alone writes its completion and keep-alive state; the connection asks it through
 * methods (`settle`, `bodyEnded`, `timedOut`, `peerGone`...).
 *
 * @since 0.1.0
 */
import type * as Net from "node:net"
import { Effect, type Exit, Fiber } from "effect"
import type * as Headers from "effect/http/Headers"
import { ClientAbort, type HttpServerError } from "effect/http/HttpServerError"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import type * as Socket from "effect/socket/Socket"
import { BodyTimeout } from "../errors.ts"
import { BodyReader, type BodySource } from "../gateway/BodyReader.ts"
import type { ResponseInit, ResponseTarget } from "../gateway/ResponseTarget.ts"
import type { RunExchange } from "../gateway/Runner.ts"
import type { TlsInfo } from "../listen/Tls.ts"
import type { EncodedHead } from "../wire/fields.ts"

/**
 * What keeps a connection that switched protocols alive: the sweep calls `tick` once `deadline`
 * has passed (a WebSocket's ping, and dropping a peer that did not answer the last one); the
 * server's stop calls `stop`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Takeover {
  /** When `tick` is next due (ms since the epoch), 0 for never. */
  readonly deadline: number
  tick(now: number): void
  /**
   * The server is stopping and the app has not ended the protocol (it runs uninterruptibly):
   * end it the protocol's way before the socket closes (a WebSocket's 1001, going away).
   */
  stop(): void
}

/**
 * What an exchange needs from its connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExchangeHost {
  /** The socket is closed: nothing more can be sent. */
  readonly closed: boolean
  /** The response now being written must close the connection (asked to, or stopping). */
  readonly closing: boolean
  /** Unread body bytes the connection will discard to keep the connection open. */
  readonly maxDrainSize: number
  /** The socket's peer address (the client's over HTTP, the front end's over SCGI). */
  readonly remoteAddress: string | undefined
  readonly remotePort: number | undefined
  /** The TLS session, on TLS connections. */
  readonly tls: TlsInfo | undefined
  write(data: string | Uint8Array): boolean
  /** Writes several pieces in one system call. */
  writeAll(parts: ReadonlyArray<string | Uint8Array>): boolean
  /** This exchange is the connection's last: it takes no further request. */
  lastExchange(): void
  /** Drops the connection abruptly (a response that cannot be completed). */
  abort(): void
  /** The application wants more of the body: resume reading. */
  resumeBody(): void
  /** Completes when the peer has taken what was written (or is gone). */
  readonly drain: Effect.Effect<void>
  /** The application's fiber has exited. */
  exchangeDone(exchange: Exchange, exit: Exit.Exit<void, never>): void
  /**
   * Hands the socket over to the protocol the connection switches to (after a `101`): the driver
   * stops reading and timing it, and gives the bytes received beyond the request. The connection
   * stays counted and is stopped with the server.
   */
  handOver(): { readonly socket: Net.Socket; readonly rest: Buffer }
  /** What keeps the switched connection alive, on the server's sweep. */
  watch(takeover: Takeover): void
}

/**
 * How a response body is delimited.
 *
 * @since 0.1.0
 * @category models
 */
export const Framing = {
  /** No body (HEAD, 204, 205, 304). */
  None: 0,
  /** Content-Length bytes. */
  Length: 1,
  /** HTTP/1.1 chunked transfer coding. */
  Chunked: 2,
  /** Until the connection closes (HTTP/1.0 without a length, every SCGI body without one). */
  UntilClose: 3
} as const

/**
 * @since 0.1.0
 * @category models
 */
export type Framing = (typeof Framing)[keyof typeof Framing]

/**
 * A head and body up to this size are copied into one buffer, which Node takes from its shared
 * pool; larger ones go out together with writev instead, as a fresh buffer costs more than the copy.
 */
const coalesceLimit = Buffer.poolSize >>> 1

/**
 * @since 0.1.0
 * @category models
 */
export abstract class Exchange implements RunExchange, ResponseTarget, BodySource {
  readonly host: ExchangeHost
  readonly body: BodyReader
  /** When the head was received (a monotonic reading, for durations). */
  readonly receivedTick = performance.now()
  /** The application's fiber, once it runs. */
  fiber: Fiber.Fiber<void, never> | undefined = undefined
  status = 0
  /** Response body bytes sent. */
  bytesSent = 0
  headSent = false
  responseEnded = false
  aborted = false
  /** The request holds a slot under maxConcurrentRequests. */
  admitted = false
  /** The request body's declared length, -1 when unknown. */
  private readonly declaredLength: number
  private done = false
  private bodyOver = false
  private discardMode = false
  private discardedBytes = 0
  private persistent: boolean
  private framing: Framing = Framing.None
  private remaining = 0
  private bodyWaiter: (() => void) | undefined = undefined
  private bodyCut = false
  /** The connection switched protocols for this exchange (a `101` went out). */
  upgraded = false
  /** The client's address and port as the request started, for its access log line. */
  peer: { readonly address: string | undefined; readonly port: number | undefined } | undefined = undefined

  constructor(host: ExchangeHost, maxBodySize: number, keepAlive: boolean, declaredLength: number) {
    this.host = host
    this.persistent = keepAlive
    this.declaredLength = declaredLength
    this.body = new BodyReader(this, maxBodySize)
  }

  // The request, as the protocol decoded it

  abstract readonly method: string
  abstract readonly url: string
  abstract readonly target: string
  abstract readonly protocolLabel: string
  abstract readonly rawHeaders: ReadonlyArray<string>
  abstract readonly authority: string | undefined
  abstract readonly remoteAddress: string | undefined
  abstract readonly remotePort: number | undefined
  abstract readonly protocol: "http" | "https"
  abstract readonly tls: TlsInfo | undefined
  /** The peer said this request is its last on the connection: it sends nothing after it. */
  abstract readonly finalRequest: boolean
  /** Switches the connection to another protocol, as the app asks (`request.upgrade`). */
  abstract upgrade(request: HttpServerRequest, headers: Headers.Headers): Effect.Effect<Socket.Socket, HttpServerError>

  // The response framing, as the protocol encodes it

  /**
   * Encodes a response head, or describes what makes it invalid. `chunked`: the body follows in
   * chunks; `close`: the head must say the connection closes after the response.
   */
  protected abstract encodeHead(init: ResponseInit, chunked: boolean, close: boolean): EncodedHead | string
  /** A whole response the server makes itself. */
  protected abstract simpleResponse(status: number, text: string, close: boolean): string
  /** How a body of unknown length is delimited. */
  protected unknownLength(): Framing {
    return Framing.UntilClose
  }
  /** Sends one chunk of a chunked body. */
  protected writeChunk(chunk: Uint8Array): boolean {
    return this.host.write(chunk)
  }
  /** Ends a chunked body. */
  protected endChunks(): void {}
  /** The client is holding back its body until told to send it (HTTP's 100 Continue). */
  protected holdsBackBody(): boolean {
    return false
  }

  /** When the head was received, in ms since the epoch. */
  get receivedAt(): number {
    return performance.timeOrigin + this.receivedTick
  }
  get response(): ResponseTarget {
    return this
  }

  // Completion: written here only

  /** The fiber has exited, or the request was refused before it ran. */
  get fiberDone(): boolean {
    return this.done
  }
  /** No more body bytes will be read for this request (received, failed or abandoned). */
  get bodyDone(): boolean {
    return this.bodyOver
  }
  /** The unread rest of the body is read only to be discarded, after the application finished. */
  get discarding(): boolean {
    return this.discardMode
  }
  /** Whether the connection stays open after this exchange. */
  get keepAlive(): boolean {
    return this.persistent
  }

  /** The application's fiber runs. */
  started(fiber: Fiber.Fiber<void, never>): void {
    this.fiber = fiber
  }

  /** The fiber has exited (or the request never runs): true the first time only. */
  settle(): boolean {
    if (this.done) return false
    this.done = true
    return true
  }

  /** No more of the body is read: it is complete, or (`close`) abandoned and the connection closes. */
  bodyEnded(close: boolean): void {
    this.bodyOver = true
    if (close) {
      this.persistent = false
      this.bodyCut = true
    }
    const waiter = this.bodyWaiter
    if (waiter !== undefined) {
      this.bodyWaiter = undefined
      waiter()
    }
  }

  /**
   * Completes once no more of the body will be read, discarding what the application left
   * unread (up to the connection's drain limit): true when the body ended where the next bytes
   * begin, false when it was cut short (over a limit, malformed, late), so the input is not at a
   * boundary another protocol could start from.
   */
  get bodyFinished(): Effect.Effect<boolean> {
    return Effect.callback<boolean>((resume) => {
      if (this.bodyOver) return resume(Effect.succeed(!this.bodyCut))
      this.bodyWaiter = () => resume(Effect.succeed(!this.bodyCut))
      this.discardMode = true
      this.host.resumeBody()
      return Effect.sync(() => {
        this.bodyWaiter = undefined
      })
    })
  }

  /**
   * The connection switched protocols: the `101` went out in place of a response, which no
   * other response may follow; the access log records 101.
   */
  switched(): void {
    this.upgraded = true
    this.headSent = true
    this.responseEnded = true
    this.status = 101
    this.persistent = false
  }

  /** The application is done with a body it did not read: read and discard the rest. */
  startDiscarding(): void {
    this.discardMode = true
  }

  /** Counts discarded body bytes; false once they exceed what is worth reading to keep the connection. */
  discard(bytes: number): boolean {
    this.discardedBytes += bytes
    return this.discardedBytes <= this.host.maxDrainSize
  }

  /**
   * The peer went away: the app's fiber is interrupted as Effect's `ClientAbort` (499), as
   * NodeHttpServer does, then a body still arriving fails with `IncompleteBody`. In that order: a
   * read waiting for the body ends in the interruption rather than in an error the app might
   * handle and carry on after; an app running uninterruptibly gets the failed read instead of
   * waiting forever.
   */
  peerGone(): void {
    if (!this.done) this.fiber?.interruptUnsafe(undefined, ClientAbort.annotation)
    this.body.abort()
  }

  /**
   * The body did not arrive within `timeoutMillis`: a 408 unless a response has begun, then the
   * body fails with `BodyTimeout` and the app's fiber is interrupted. The 408 goes out before the
   * body fails: failing it can resume the app at once, whose error response (400 for a body read
   * error) would otherwise win.
   */
  timedOut(timeoutMillis: number): void {
    this.bodyEnded(true)
    if (!this.headSent) this.sendSimple(408, "request body not received in time\n")
    this.body.fail(new BodyTimeout({ timeout: timeoutMillis / 1000 }))
    if (!this.done) this.fiber?.interruptUnsafe()
  }

  /** Interrupts the application's fiber, waiting for it to finish. */
  get interrupt(): Effect.Effect<void> {
    const fiber = this.fiber
    return fiber === undefined || this.done ? Effect.void : Effect.asVoid(Fiber.interrupt(fiber))
  }

  // BodySource

  demand(): void {
    this.host.resumeBody()
  }

  // ResponseTarget

  get isHead(): boolean {
    return this.method === "HEAD"
  }

  get closed(): boolean {
    return this.aborted || this.host.closed
  }

  /**
   * Decided when the head is written, while the close can still be said (RFC 9112 §9.6). The
   * connection closes after this response when the client or server asked, when the client is
   * holding back a body it will not be asked for (RFC 9110 §10.1.1), or when more unread body is
   * declared than the server will discard.
   */
  private closesAfter(streaming: boolean): boolean {
    if (!this.persistent || this.host.closing) return true
    if (this.bodyOver) return false
    if (this.holdsBackBody()) return true
    const length = this.declaredLength
    return !streaming && length >= 0 && length - this.body.received > this.host.maxDrainSize
  }

  private headSending(status: number, close: boolean): void {
    this.headSent = true
    this.status = status
    if (close) {
      this.persistent = false
      this.host.lastExchange()
    }
  }

  private writeHead(encoded: EncodedHead): void {
    this.host.write(encoded.latin1 ? Buffer.from(encoded.head, "latin1") : encoded.head)
  }

  send(init: ResponseInit, body: string | Uint8Array | undefined): string | undefined {
    if (this.closed) return undefined
    const close = this.closesAfter(false)
    const encoded = this.encodeHead(init, false, close)
    if (typeof encoded === "string") return encoded
    this.headSending(init.status, close)
    const host = this.host
    if (body === undefined || body.length === 0) {
      this.writeHead(encoded)
    } else {
      this.bytesSent = init.contentLength >= 0 ? init.contentLength : body.length
      if (typeof body === "string" && !encoded.latin1) {
        // One string, one write: the socket encodes it once.
        host.write(encoded.head + body)
      } else {
        const bytes = typeof body === "string" ? Buffer.from(body) : body
        const headLength = encoded.head.length
        if (headLength + bytes.length < coalesceLimit) {
          const out = Buffer.allocUnsafe(headLength + bytes.length)
          out.write(encoded.head, 0, "latin1")
          out.set(bytes, headLength)
          host.write(out)
        } else {
          host.writeAll([Buffer.from(encoded.head, "latin1"), bytes])
        }
      }
    }
    this.finishResponse()
    return undefined
  }

  start(init: ResponseInit): string | undefined {
    if (this.closed) return undefined
    // RFC 9112 §6.1-6.3: a known length is declared; otherwise the protocol delimits the body
    // (HTTP/1.1 chunks it, HTTP/1.0 and SCGI close the connection after it).
    const framing = init.withoutBody ? Framing.None : init.contentLength >= 0 ? Framing.Length : this.unknownLength()
    const close = this.closesAfter(true) || framing === Framing.UntilClose
    const encoded = this.encodeHead(init, framing === Framing.Chunked, close)
    if (typeof encoded === "string") return encoded
    this.headSending(init.status, close)
    this.framing = framing
    this.remaining = init.contentLength
    this.writeHead(encoded)
    return undefined
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed || chunk.length === 0) return true
    switch (this.framing) {
      case Framing.Chunked:
        this.bytesSent += chunk.length
        return this.writeChunk(chunk)
      case Framing.Length:
        this.bytesSent += chunk.length
        this.remaining -= chunk.length
        // RFC 9112 §6.3: a body longer than its Content-Length would be read as the next
        // response (or cut by the front end); the connection is dropped instead.
        if (this.remaining < 0) {
          this.abort()
          return true
        }
        return this.host.write(chunk)
      case Framing.UntilClose:
        this.bytesSent += chunk.length
        return this.host.write(chunk)
      default:
        return true
    }
  }

  get drain(): Effect.Effect<void> {
    return this.host.drain
  }

  end(): void {
    if (this.closed || this.responseEnded) return
    if (this.framing === Framing.Chunked) {
      this.endChunks()
    } else if (this.framing === Framing.Length && this.remaining > 0) {
      // A body shorter than its Content-Length would leave the peer waiting.
      this.abort()
      return
    }
    this.finishResponse()
  }

  /**
   * A response the server makes itself (408, 503, a 500 for an app that gave none), with the usual
   * close decision; `close` forces the connection to close after it.
   */
  sendSimple(status: number, text: string, close = false): void {
    if (this.closed || this.headSent) return
    if (close) this.persistent = false
    const closes = this.closesAfter(false)
    this.headSending(status, closes)
    this.bytesSent = Buffer.byteLength(text)
    this.host.write(this.simpleResponse(status, text, closes))
    this.finishResponse()
  }

  abort(): void {
    if (this.aborted) return
    this.aborted = true
    this.persistent = false
    this.host.abort()
  }

  private finishResponse(): void {
    this.responseEnded = true
    if (this.framing === Framing.UntilClose) this.persistent = false
  }

  /** The application's fiber has exited. */
  onExit(exit: Exit.Exit<void, never>): void {
    this.host.exchangeDone(this, exit)
  }
}
