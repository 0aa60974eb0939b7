/**
 * One HTTP/1.1 request/response exchange: the request head as the application sees it, and the
 * HTTP/1.1 framing of the response (status line and fields, chunked or length-delimited bodies,
 * `Connection` and HTTP/1.0 keep-alive, `100 Continue`). What every protocol shares (the body,
 * completion, keep-alive decisions, one write per response) is the `Exchange` it extends.
 *
 * @since 0.1.0
 */
import type { WebSocketServer } from "@effect/platform-node/NodeWS"
import { Effect } from "effect"
import type * as Headers from "effect/http/Headers"
import type { HttpServerError } from "effect/http/HttpServerError"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import type * as Socket from "effect/socket/Socket"
import { Exchange, type ExchangeHost, Framing } from "../conn/Exchange.ts"
import type { ResponseInit } from "../gateway/ResponseTarget.ts"
import type { TlsInfo } from "../listen/Tls.ts"
import type { EncodedHead } from "../wire/fields.ts"
import { simpleResponse } from "../wire/simpleResponse.ts"
import { chunkHeader, continueResponse, encodeHead, lastChunk } from "./Encoder.ts"
import type { RequestHead } from "./Parser.ts"
import { upgrade, type WebSocketSettings } from "./Upgrade.ts"

/**
 * What the exchanges of one server share.
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpSettings {
  readonly maxBodySize: number
  /** The Server field's value; empty for none. */
  readonly serverName: string
  readonly scheme: "http" | "https"
  readonly webSocket: WebSocketSettings
  /** The server's `ws` server, made on first use. */
  readonly webSockets: () => WebSocketServer
}

/**
 * A chunk and its framing up to this size are copied into one buffer from Node's pool; larger
 * ones go out with writev.
 */
const coalesceLimit = Buffer.poolSize >>> 1

/**
 * @since 0.1.0
 * @category models
 */
export class HttpExchange extends Exchange {
  readonly head: RequestHead
  private readonly settings: HttpSettings
  private continueSent = false

  constructor(host: ExchangeHost, head: RequestHead, settings: HttpSettings) {
    super(host, settings.maxBodySize, head.keepAlive, head.contentLength)
    this.head = head
    this.settings = settings
  }

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
  get remotePort(): number | undefined {
    return this.host.remotePort
  }
  get protocol(): "http" | "https" {
    return this.settings.scheme
  }
  get tls(): TlsInfo | undefined {
    return this.host.tls
  }
  /** RFC 9112 §9.3, §9.6: "close", or HTTP/1.0 without keep-alive. */
  get finalRequest(): boolean {
    return !this.head.keepAlive
  }

  upgrade(request: HttpServerRequest, headers: Headers.Headers): Effect.Effect<Socket.Socket, HttpServerError> {
    // Checked when the effect runs, not when the app makes it: the checks read the exchange's
    // state then, and a refusal (426) is written then. An app may make the effect and run it
    // later, or never (its own response then goes out).
    return Effect.suspend(() =>
      upgrade(this, this.host, request, headers, this.settings.webSockets, this.settings.webSocket)
    )
  }

  override demand(): void {
    // RFC 9110 §10.1.1: 100 Continue goes out only once the application reads the body, and
    // never after a final response.
    if (this.head.expectContinue && !this.continueSent && !this.headSent && !this.host.closed) {
      this.continueSent = true
      this.host.write(continueResponse)
    }
    this.host.resumeBody()
  }

  /** RFC 9110 §10.1.1: a client expecting 100 Continue holds its body back until it gets one. */
  protected override holdsBackBody(): boolean {
    return this.head.expectContinue && !this.continueSent
  }

  protected encodeHead(init: ResponseInit, chunked: boolean, close: boolean): EncodedHead | string {
    // An HTTP/1.0 client that asked to persist is told it may (RFC 9112 §C.2.2).
    return encodeHead(init, chunked, close, !close && this.head.versionMinor === 0, this.settings.serverName)
  }

  protected simpleResponse(status: number, text: string, close: boolean): string {
    return simpleResponse(status, text, close, this.settings.serverName)
  }

  /** RFC 9112 §6.1-6.3: HTTP/1.1 chunks a body of unknown length; HTTP/1.0 closes after it. */
  protected override unknownLength(): Framing {
    return this.head.versionMinor === 1 ? Framing.Chunked : Framing.UntilClose
  }

  protected override writeChunk(chunk: Uint8Array): boolean {
    const header = chunkHeader(chunk.length)
    if (header.length + chunk.length + 2 >= coalesceLimit) return this.host.writeAll([header, chunk, "\r\n"])
    const out = Buffer.allocUnsafe(header.length + chunk.length + 2)
    out.write(header, 0, "latin1")
    out.set(chunk, header.length)
    out.write("\r\n", header.length + chunk.length, "latin1")
    return this.host.write(out)
  }

  protected override endChunks(): void {
    this.host.write(lastChunk)
  }
}
