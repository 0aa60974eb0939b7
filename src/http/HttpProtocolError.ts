/**
 * The typed failure of the HTTP/1.1 parser: a request the server refuses, with the status that
 * answers it.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

/**
 * Statuses a protocol error maps to.
 *
 * @since 0.1.0
 * @category models
 */
export type ProtocolStatus = 400 | 408 | 413 | 414 | 417 | 431 | 501 | 505

/**
 * A request that violates HTTP/1.1 or a configured limit. The connection answers `status` with
 * `Connection: close` and closes; other connections are unaffected.
 *
 * @since 0.1.0
 * @category errors
 */
export class HttpProtocolError extends Data.TaggedError("HttpProtocolError")<{
  readonly status: ProtocolStatus
  readonly reason: string
}> {
  override get message(): string {
    return `${this.status}: ${this.reason}`
  }
}
