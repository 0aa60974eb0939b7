/**
 * One request/response exchange on an HTTP/1.1 connection: the request as the application sees
 * it (`RequestSource`), the body it reads (`BodySource`), and the HTTP/1.1 framing of its
 * response (`ResponseTarget`).
 *
 * @since 0.1.0
 */
import { Effect, type Exit, Fiber } from "effect"
import { BodyReader, type BodySource } from "../gateway/BodyReader.ts"
import type { ResponseInit, ResponseTarget } from "../gateway/ResponseTarget.ts"
import type { RunExchange } from "../gateway/Runner.ts"
import type { TlsInfo } from "../listen/Tls.ts"
import { chunkHeader, continueResponse, encodeHead, lastChunk, simpleResponse } from "./Encoder.ts"
import type { RequestHead } from "./Parser.ts"

/**
 * What an exchange needs from its connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExchangeHost {
  readonly protocol: "http" | "https"
  readonly remoteAddress: string | undefined
  readonly tls: TlsInfo | undefined
  readonly serverName: string
  /** Unread body bytes the connection will discard to keep the connection open. */
  readonly maxDrainSize: number
  /** The connection is shutting down or will close after this exchange. */
  readonly closing: boolean
  readonly closed: boolean
  write(data: string | Uint8Array): boolean
  /** Writes several pieces in one system call. */
  writeAll(parts: ReadonlyArray<string | Uint8Array>): boolean
  markClosing(): void
  /** Drop the connection abruptly (a response that cannot be completed). */
  abort(): void
  /** Resume reading: the application wants more of the body. */
  resumeBody(): void
  readonly drain: Effect.Effect<void>
  exchangeDone(exchange: Exchange, exit: Exit.Exit<void, never>): void
}

const NONE = 0
const LENGTH = 1
const CHUNKED = 2
const UNTIL_CLOSE = 3

/**
 * A head and body up to this size are copied into one buffer, which Node takes from its shared
 * pool; larger ones go out together with writev instead, as a fresh buffer costs more than the copy.
 */
const coalesceLimit = Buffer.poolSize >>> 1

/**
 * @since 0.1.0
 * @category models
 */
export class Exchange implements RunExchange, ResponseTarget, BodySource {
  readonly host: ExchangeHost
  readonly head: RequestHead
  readonly body: BodyReader
  /** No more body bytes will be read for this request (received, failed or abandoned). */
  bodyDone = false
  /** The body is read only to be discarded, after the application finished. */
  discarding = false
  discarded = 0
  fiber: Fiber.Fiber<void, never> | undefined
  fiberDone = false
  headSent = false
  responseEnded = false
  aborted = false
  status = 0
  /** Response body bytes sent. */
  bytesSent = 0
  /** The request holds a slot under maxConcurrentRequests. */
  admitted = false
  /** When the head was received (a monotonic reading, for durations). */
  readonly receivedTick = performance.now()
  /** Whether the connection stays open after this exchange. */
  keepAlive: boolean
  private continueSent = false
  private framing = NONE
  private remaining = 0

  constructor(host: ExchangeHost, head: RequestHead, maxBodySize: number) {
    this.host = host
    this.head = head
    this.keepAlive = head.keepAlive
    this.body = new BodyReader(this, maxBodySize)
  }

  /** When the head was received, in ms since the epoch. */
  get receivedAt(): number {
    return performance.timeOrigin + this.receivedTick
  }

  // RequestSource

  get method(): string {
    return this.head.method
  }
  get url(): string {
    return this.head.url
  }
  get target(): string {
    return this.head.target
  }
  get protocolLabel(): string {
    return this.head.versionMinor === 1 ? "HTTP/1.1" : "HTTP/1.0"
  }
  get rawHeaders(): ReadonlyArray<string> {
    return this.head.rawHeaders
  }
  get authority(): string | undefined {
    return this.head.authority
  }
  get remoteAddress(): string | undefined {
    return this.host.remoteAddress
  }
  get protocol(): "http" | "https" {
    return this.host.protocol
  }
  get tls(): TlsInfo | undefined {
    return this.host.tls
  }
  get response(): ResponseTarget {
    return this
  }

  // BodySource

  demand(): void {
    // RFC 9110 §10.1.1: 100 Continue goes out only once the application reads the body, and
    // never after a final response.
    if (this.head.expectContinue && !this.continueSent && !this.headSent && !this.host.closed) {
      this.continueSent = true
      this.host.write(continueResponse)
    }
    this.host.resumeBody()
  }

  // ResponseTarget

  get isHead(): boolean {
    return this.head.method === "HEAD"
  }

  get closed(): boolean {
    return this.aborted || this.host.closed
  }

  /**
   * Decided when the head is written, while `Connection: close` can still be said (RFC 9112 §9.6).
   * The connection closes after this response when the client or server asked, when the client
   * is holding back a body for a 100 Continue it will not get (RFC 9110 §10.1.1), or when more
   * unread body is declared than the server will discard.
   */
  private closesAfter(streaming: boolean): boolean {
    if (!this.keepAlive || this.host.closing) return true
    if (this.bodyDone) return false
    if (this.head.expectContinue && !this.continueSent) return true
    const length = this.head.contentLength
    return !streaming && length >= 0 && length - this.body.received > this.host.maxDrainSize
  }

  private encode(init: ResponseInit, chunked: boolean, close: boolean) {
    return encodeHead(init, chunked, close, !close && this.head.versionMinor === 0, this.host.serverName)
  }

  private sendHead(status: number, close: boolean): void {
    this.headSent = true
    this.status = status
    if (close) {
      this.keepAlive = false
      this.host.markClosing()
    }
  }

  send(init: ResponseInit, body: string | Uint8Array | undefined): string | undefined {
    if (this.closed) return undefined
    const close = this.closesAfter(false)
    const encoded = this.encode(init, false, close)
    if (typeof encoded === "string") return encoded
    this.sendHead(init.status, close)
    const host = this.host
    if (body !== undefined) this.bytesSent = init.contentLength >= 0 ? init.contentLength : body.length
    if (body === undefined || body.length === 0) {
      host.write(encoded.latin1 ? Buffer.from(encoded.head, "latin1") : encoded.head)
    } else if (typeof body === "string" && !encoded.latin1) {
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
    this.finishResponse()
    return undefined
  }

  start(init: ResponseInit): string | undefined {
    if (this.closed) return undefined
    const withoutBody = this.isHead || init.status === 204 || init.status === 205 || init.status === 304
    let framing = NONE
    if (!withoutBody) {
      // RFC 9112 §6.1-6.3: a known length is declared; otherwise HTTP/1.1 chunks the body and
      // HTTP/1.0 delimits it by closing the connection.
      framing = init.contentLength >= 0 ? LENGTH : this.head.versionMinor === 1 ? CHUNKED : UNTIL_CLOSE
    }
    const close = this.closesAfter(true) || framing === UNTIL_CLOSE
    const encoded = this.encode(init, framing === CHUNKED, close)
    if (typeof encoded === "string") return encoded
    this.sendHead(init.status, close)
    this.framing = framing
    this.remaining = init.contentLength
    this.host.write(encoded.latin1 ? Buffer.from(encoded.head, "latin1") : encoded.head)
    return undefined
  }

  write(chunk: Uint8Array): boolean {
    if (this.closed || chunk.length === 0) return true
    this.bytesSent += chunk.length
    switch (this.framing) {
      case CHUNKED: {
        const header = chunkHeader(chunk.length)
        if (header.length + chunk.length + 2 >= coalesceLimit) return this.host.writeAll([header, chunk, "\r\n"])
        const out = Buffer.allocUnsafe(header.length + chunk.length + 2)
        out.write(header, 0, "latin1")
        out.set(chunk, header.length)
        out.write("\r\n", header.length + chunk.length, "latin1")
        return this.host.write(out)
      }
      case LENGTH:
        this.remaining -= chunk.length
        // RFC 9112 §6.3: a body longer than its Content-Length would be read as the next
        // response; the connection is dropped instead.
        if (this.remaining < 0) {
          this.abort()
          return true
        }
        return this.host.write(chunk)
      case UNTIL_CLOSE:
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
    if (this.framing === CHUNKED) {
      this.host.write(lastChunk)
    } else if (this.framing === LENGTH && this.remaining > 0) {
      // A body shorter than its Content-Length would leave the client waiting.
      this.abort()
      return
    }
    this.finishResponse()
  }

  /** A response the server makes itself (408, 503), with the usual close decision. */
  sendSimple(status: number, text: string): void {
    if (this.closed || this.headSent) return
    const close = this.closesAfter(false)
    this.sendHead(status, close)
    this.bytesSent = Buffer.byteLength(text)
    this.host.write(simpleResponse(status, text, close, this.host.serverName))
    this.finishResponse()
  }

  abort(): void {
    if (this.aborted) return
    this.aborted = true
    this.keepAlive = false
    this.host.abort()
  }

  private finishResponse(): void {
    this.responseEnded = true
    if (this.framing === UNTIL_CLOSE) this.keepAlive = false
  }

  /** The application's fiber has exited. */
  onExit(exit: Exit.Exit<void, never>): void {
    this.host.exchangeDone(this, exit)
  }

  /** Interrupts the application's fiber, waiting for it to finish. */
  get interrupt(): Effect.Effect<void> {
    const fiber = this.fiber
    return fiber === undefined || this.fiberDone ? Effect.void : Effect.asVoid(Fiber.interrupt(fiber))
  }
}
