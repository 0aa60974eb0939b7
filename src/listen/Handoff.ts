/**
 * Connections that arrive already accepted, handed over by another process (a prefork primary
 * that dispatches connections to its workers), instead of being accepted from a listening
 * socket. A process that takes its connections this way provides `HandedConnections`; a server
 * built under it listens on nothing and serves what the source hands it, with the same acceptor
 * (limits, deadlines, graceful stop) as connections it accepted itself.
 *
 * @since 0.1.0
 */
import type * as Net from "node:net"
import { Context } from "effect"

/**
 * Where handed-over connections come from: `attach` starts delivering them to `accept` and
 * returns what stops it.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectionSource {
  /** Names the source in logs and metrics, where a listener names its address. */
  readonly label: string
  readonly attach: (accept: (socket: Net.Socket) => void) => () => void
}

/**
 * The connection source of this process, if it takes its connections from another; servers
 * listen on their configured address when it is undefined (the default).
 *
 * @since 0.1.0
 * @category services
 */
export const HandedConnections = Context.Reference<ConnectionSource | undefined>("effect-appserver/HandedConnections", {
  defaultValue: () => undefined
})
