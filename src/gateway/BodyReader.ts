/**
 * The request body between a connection and the application: a bounded buffer of received
 * chunks, pulled by the application's body stream, with backpressure back to the connection.
 *
 * @since 0.1.0
 */
import { Cause, Effect } from "effect"
import type * as Arr from "effect/Array"
import { type BodyTimeout, IncompleteBody, MaxSizeExceeded } from "../errors.ts"
import type { Refusal } from "../wire/Refusal.ts"

/**
 * Why a body could not be read in full: over a size limit, cut short by the peer, late, or
 * malformed (a protocol's refusal, such as a broken chunked encoding).
 *
 * @since 0.1.0
 * @category models
 */
export type BodyFailure = MaxSizeExceeded | IncompleteBody | BodyTimeout | Refusal

/**
 * What the reader asks of the connection that feeds it.
 *
 * @since 0.1.0
 * @category models
 */
export interface BodySource {
  /**
   * The application wants more bytes: resume reading the socket, and send `100 Continue` on the
   * first call when the client is waiting for it.
   */
  readonly demand: () => void
}

/**
 * Bytes buffered for the application beyond which the connection stops reading the socket.
 *
 * @since 0.1.0
 */
export const highWaterMark = 64 * 1024

type Pull = Effect.Effect<Arr.NonEmptyReadonlyArray<Uint8Array>, BodyFailure | Cause.Done>

/**
 * @since 0.1.0
 * @category models
 */
export class BodyReader {
  private chunks: Array<Uint8Array> = []
  private waiter: ((pull: Pull) => void) | undefined
  /** Bytes received and not yet taken by the application. */
  buffered = 0
  /** Bytes received in all. */
  received = 0
  /** Whether the application has asked for the body. */
  requested = false
  /** All bytes have been received. */
  complete = false
  failure: BodyFailure | undefined
  /** Every chunk pushed so far was pushed as `own`. */
  ownChunks = true
  readonly limit: number
  private readonly source: BodySource

  constructor(source: BodySource, limit: number) {
    this.source = source
    this.limit = limit
  }

  /** Whether the connection should stop reading until the application takes what is buffered. */
  get full(): boolean {
    return this.buffered >= highWaterMark
  }

  /** Whether everything that will ever arrive has been taken (or the body failed). */
  get finished(): boolean {
    return this.failure !== undefined || (this.complete && this.buffered === 0)
  }

  /**
   * Adds received bytes. Returns false when they take the body over its limit: the body fails
   * with `MaxSizeExceeded` and the connection must stop reading it. `own`: `bytes` spans the whole
   * of an ArrayBuffer that nothing else refers to, which the application may then be handed
   * as its body without a copy.
   */
  push(bytes: Uint8Array, own = false): boolean {
    if (this.failure !== undefined || this.complete) return false
    if (!own) this.ownChunks = false
    this.received += bytes.length
    if (this.received > this.limit) {
      this.fail(new MaxSizeExceeded({ limit: this.limit }))
      return false
    }
    this.chunks.push(bytes)
    this.buffered += bytes.length
    this.wake()
    return true
  }

  /** All bytes have arrived. */
  end(): void {
    if (this.failure !== undefined) return
    this.complete = true
    this.wake()
  }

  fail(failure: BodyFailure): void {
    if (this.failure !== undefined || this.complete) return
    this.failure = failure
    this.chunks = []
    this.buffered = 0
    this.wake()
  }

  /** The connection closed: a body still arriving is incomplete. */
  abort(): void {
    if (!this.complete) this.fail(new IncompleteBody({ received: this.received }))
  }

  /** Takes every buffered chunk when the whole body is already here (the common small-body case). */
  takeAllIfComplete(): Array<Uint8Array> | undefined {
    if (!this.complete || this.failure !== undefined) return undefined
    const chunks = this.chunks
    this.chunks = []
    this.buffered = 0
    return chunks
  }

  private wake(): void {
    const waiter = this.waiter
    if (waiter === undefined) return
    // Taken before polling: `poll` asks the source for more, which can push and wake again; that
    // nested wake must not hand the same waiter a second result (the chunks taken here would be
    // lost behind an end of body).
    this.waiter = undefined
    const next = this.poll()
    if (next === undefined) {
      this.waiter = waiter
      return
    }
    waiter(next)
  }

  private poll(): Pull | undefined {
    if (this.chunks.length > 0) {
      const chunks = this.chunks as unknown as Arr.NonEmptyReadonlyArray<Uint8Array>
      this.chunks = []
      this.buffered = 0
      if (!this.complete) this.source.demand()
      return Effect.succeed(chunks)
    }
    if (this.failure !== undefined) return Effect.fail(this.failure)
    if (this.complete) return Cause.done()
    return undefined
  }

  /** One pull of the body stream: the buffered chunks, or wait for some. */
  readonly pull: Pull = Effect.suspend(() => {
    if (!this.requested) this.requested = true
    const now = this.poll()
    if (now !== undefined) return now
    return Effect.callback<Arr.NonEmptyReadonlyArray<Uint8Array>, BodyFailure | Cause.Done>((resume) => {
      this.waiter = resume
      this.source.demand()
      return Effect.sync(() => {
        this.waiter = undefined
      })
    })
  })
}
