/**
 * The state of one connection, in the spirit of Go's `http.ConnState`: one explicit value that the
 * connection driver moves along and that the graceful stop, the deadline sweep and the statistics
 * read, instead of a set of flags whose combinations mean the same thing.
 *
 * ```
 * New ──bytes──▶ Active ◀──bytes── Idle
 *                  │  └──response, nothing further received──▶ Idle
 *                  ├──last response (close, error, stop)──▶ Closing ──▶ Lingering ──▶ Closed
 *                  └──101 Switching Protocols──▶ Upgraded ──▶ Closed
 * ```
 *
 * Any state goes to `Closed` when the socket closes (the peer left, a reset, the server stopped).
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 * @category models
 */
export const ConnState = {
  /** Accepted; nothing received yet. The first request head must arrive within headersTimeout. */
  New: 0,
  /** A request is arriving, running or being answered. */
  Active: 1,
  /** Between requests with nothing of the next one received (keep-alive). */
  Idle: 2,
  /** Takes no further request: the exchange in progress finishes, then the connection closes. */
  Closing: 3,
  /**
   * Switched to another protocol after a `101` (a WebSocket, or what the app asked for): the
   * socket belongs to the app's upgraded `Socket`. Still counted (stats, maxConnections) and
   * stopped with the server (Go's `StateHijacked`, except that the server keeps track of it).
   */
  Upgraded: 4,
  /**
   * Our side is closed (FIN queued after the last response); what the peer still sends is read
   * and discarded until it closes too or the linger time passes, so unread input cannot turn the
   * close into a reset that destroys the response in flight (RFC 9112 §9.6).
   */
  Lingering: 5,
  /** The socket is closed or being destroyed. */
  Closed: 6
} as const

/**
 * @since 0.1.0
 * @category models
 */
export type ConnState = (typeof ConnState)[keyof typeof ConnState]

/**
 * After our FIN, how long the peer gets to read the response and close its side before the socket
 * is destroyed. Counted from when the last byte has left: a slow reader is governed by sendTimeout.
 *
 * @since 0.1.0
 */
export const lingerMillis = 2_000
