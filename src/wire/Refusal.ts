/**
 * What every protocol's typed refusal has in common (`HttpProtocolError`, `ScgiProtocolError`): the
 * status that answers it and why. Code below the protocols (the connection driver, the gateway,
 * the access log) handles refusals through this shape, without knowing which protocol made them.
 *
 * @since 0.1.0
 */

/**
 * A request, or part of one, that the server refuses.
 *
 * @since 0.1.0
 * @category models
 */
export interface Refusal {
  readonly _tag: string
  /** The status that answers it (400, 408, 413, 414, 417, 431, 501, 505). */
  readonly status: number
  readonly reason: string
}
