/**
 * Admission control for apps that must not run unboundedly in parallel (the role of cheroot's
 * thread pool and request queue): at most `limit` requests run at once; the others wait in
 * arrival order for up to the queue timeout, then are refused with 503.
 *
 * @since 0.1.0
 */

/**
 * A request waiting for a slot.
 *
 * @since 0.1.0
 * @category models
 */
export interface Waiter {
  /** Runs the request (it now holds a slot). */
  readonly start: () => void
  /** Refuses the request: it waited too long. */
  readonly refuse: () => void
  /** When it started waiting (ms since the epoch). */
  readonly since: number
}

/**
 * @since 0.1.0
 * @category models
 */
export class Admission {
  readonly limit: number
  readonly queueTimeout: number
  private running = 0
  private readonly waiting: Array<Waiter> = []
  /** Index of the first waiter still queued (the array is compacted lazily). */
  private head = 0

  constructor(limit: number, queueTimeoutMillis: number) {
    this.limit = limit
    this.queueTimeout = queueTimeoutMillis
  }

  /** The admission of `maxConcurrentRequests`, or none when it is 0 (no limit). */
  static limit(maxConcurrentRequests: number, queueTimeoutMillis: number): Admission | undefined {
    return maxConcurrentRequests > 0 ? new Admission(maxConcurrentRequests, queueTimeoutMillis) : undefined
  }

  /** Takes a slot now, or queues the request. */
  enter(waiter: Waiter): void {
    if (this.running < this.limit) {
      this.running++
      waiter.start()
      return
    }
    this.waiting.push(waiter)
  }

  /** A running request finished: its slot goes to the longest waiting request. */
  leave(): void {
    this.running--
    while (this.head < this.waiting.length && this.running < this.limit) {
      const next = this.waiting[this.head++]
      this.compact()
      this.running++
      next.start()
    }
  }

  /** Removes a waiter whose client went away. */
  cancel(waiter: Waiter): void {
    const index = this.waiting.indexOf(waiter, this.head)
    if (index !== -1) this.waiting.splice(index, 1)
  }

  /** Refuses every request that has waited longer than the queue timeout. */
  expire(now: number): void {
    while (this.head < this.waiting.length && now - this.waiting[this.head].since >= this.queueTimeout) {
      const expired = this.waiting[this.head++]
      this.compact()
      expired.refuse()
    }
  }

  get queued(): number {
    return this.waiting.length - this.head
  }

  private compact(): void {
    if (this.head > 64 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head)
      this.head = 0
    }
  }
}
