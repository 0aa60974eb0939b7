/**
 * What the gateway needs from a protocol to send a response: the protocol decides how a head and
 * a body are framed on the wire (HTTP/1.1 status line and chunking, SCGI `Status:` and
 * close-delimited bodies), the gateway decides what to send.
 *
 * @since 0.1.0
 */
import type { Effect } from "effect"

/**
 * A response head as the gateway hands it to a protocol.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResponseInit {
  readonly status: number
  readonly statusText: string | undefined
  /** Lowercase names to values, as in Effect's `Headers`. */
  readonly headers: Readonly<Record<string, string>>
  readonly setCookies: ReadonlyArray<string> | undefined
  /** The Content-Length to declare, or -1 when the length is unknown or must not be sent. */
  readonly contentLength: number
  /**
   * The response carries no content (RFC 9110 §6.4.1: a response to HEAD, 204, 205 and 304), as
   * Effect's `HttpServerResponse.omitsBody` decides: the one place the rule is written.
   */
  readonly withoutBody: boolean
}

/**
 * The sending side of one exchange.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResponseTarget {
  /** Whether the request method is HEAD, whose responses carry no body. */
  readonly isHead: boolean
  /** The peer is gone or the response was aborted: nothing more can be sent. */
  readonly closed: boolean
  /** Whether the head has been sent. */
  readonly headSent: boolean
  /** The connection switched protocols (a `101` went out): no response is sent. */
  readonly upgraded: boolean
  /**
   * Sends a whole response; `body` is omitted for responses without content. Returns a
   * description of what is invalid when the head cannot be encoded (nothing is sent then).
   */
  send(init: ResponseInit, body: string | Uint8Array | undefined): string | undefined
  /** Sends the head of a response whose body follows with `write`. */
  start(init: ResponseInit): string | undefined
  /** Sends body bytes. False when the peer is not keeping up: wait for `drain` before writing more. */
  write(chunk: Uint8Array): boolean
  /** Completes when the peer has caught up (or is gone). */
  readonly drain: Effect.Effect<void>
  /** Completes the body. */
  end(): void
  /** Abandons a started response: the peer must not mistake a partial body for a whole one. */
  abort(): void
}
