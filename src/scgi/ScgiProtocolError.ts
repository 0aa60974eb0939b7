/**
 * The typed failure of the SCGI parser: a request the server refuses, with the status that
 * answers it.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

/**
 * A request that violates the SCGI protocol or a configured limit. The server answers
 * `Status: <status>` and closes the connection; other connections are unaffected.
 *
 * @since 0.1.0
 * @category errors
 */
export class ScgiProtocolError extends Data.TaggedError("ScgiProtocolError")<{
  /** 400 for a malformed request (including a header netstring over maxHeaderSize), 413 for a body over maxBodySize. */
  readonly status: 400 | 413
  readonly reason: string
}> {
  override get message(): string {
    return `${this.status}: ${this.reason}`
  }
}
