/**
 * What a protocol plugs into the connection driver (the role of hyper's `Http1Transaction` and
 * cheroot's `RequestHandlerClass`): its sans-I/O request decoder, how a decoded head becomes an
 * exchange (the request the application sees and the framing of its response), and the responses
 * the server makes itself. Everything else — the socket, deadlines, admission, running the app,
 * the body pump, refusals, the lingering close and stopping — is the driver's, written once.
 *
 * @since 0.1.0
 */
import type { Refusal } from "../wire/Refusal.ts"
import type { Exchange, ExchangeHost } from "./Exchange.ts"

/**
 * Body bytes: a view into the decoder's input, never copied.
 *
 * @since 0.1.0
 * @category models
 */
export interface DecodedData {
  readonly _tag: "Data"
  readonly bytes: Buffer
}

/**
 * What a decoder yields: a request head (the protocol's own type), body bytes, the end of a
 * request, a request for more input, or a refusal (which repeats forever: the connection closes).
 *
 * @since 0.1.0
 * @category models
 */
export type DecodeEvent<H extends { readonly _tag: "Head" }> =
  | H
  | DecodedData
  | { readonly _tag: "End" }
  | { readonly _tag: "NeedData" }
  | Refusal

/**
 * A protocol's incremental request decoder for one connection: bytes in (split anywhere), events
 * out, no I/O.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestDecoder<H extends { readonly _tag: "Head" }> {
  /** Adds received bytes; the decoder may keep a reference to `chunk`. */
  push(chunk: Buffer): void
  next(): DecodeEvent<H>
  /**
   * Copies the input not yet consumed into memory of the decoder's own, for when the chunks
   * pushed are about to be reused (a shared read buffer).
   */
  detach(): void
  /** Between requests with nothing of a next one received. */
  readonly idle: boolean
  /** The input holds a whole next request head (a stopping server still answers it). */
  readonly hasWholeHead: boolean
  /** Bytes received and not yet returned as events. */
  readonly buffered: number
  /**
   * Takes the bytes received beyond the requests decoded so far, for the protocol a connection
   * switches to after a `101`; the decoder is not used again.
   */
  rest(): Buffer
}

/**
 * A protocol, as the connection driver uses it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Protocol<H extends { readonly _tag: "Head" }, X extends Exchange> {
  /** A decoder for a new connection. */
  readonly decoder: () => RequestDecoder<H>
  /**
   * The exchange for a decoded head, or a refusal when the head cannot be served (SCGI variables
   * that do not map to a request). The exchange's keep-alive decision starts from the request.
   */
  readonly exchange: (host: ExchangeHost, head: H) => X | Refusal
  /**
   * A whole response the server makes itself (a refusal, a timeout, an overload): status, a
   * plain-text body, and whether it must say that the connection closes after it.
   */
  readonly simpleResponse: (status: number, text: string, close: boolean) => string
  /**
   * Whether the peer is the client itself (HTTP) rather than a front end speaking for it (SCGI),
   * so that the socket's remote address is the client's, for the access log of refusals.
   */
  readonly peerIsClient: boolean
}
