/**
 * Listening sockets: binding a `node:net` server with typed bind failures, and releasing it.
 *
 * @since 0.1.0
 */

import type * as Net from "node:net"
import { Effect, Result } from "effect"
import * as NetAddress from "effect/net/NetAddress"
import type * as Scope from "effect/Scope"
import { AddressInUse, BadAddress, type BindError, PermissionDenied } from "../errors.ts"

/**
 * Where and how to listen on TCP.
 *
 * @since 0.1.0
 * @category models
 */
export interface TcpListenOptions {
  readonly host: string
  readonly port: number
  readonly backlog: number
  readonly ipv6Only: boolean
}

/**
 * A bound listening socket.
 *
 * @since 0.1.0
 * @category models
 */
export interface Listener {
  readonly server: Net.Server
  readonly address: NetAddress.SocketAddress
}

/**
 * Formats a host and port for messages, with brackets around IPv6 literals.
 *
 * @since 0.1.0
 */
export const formatHostPort = (host: string, port: number): string =>
  host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`

/**
 * Maps a `listen` error to a typed bind failure.
 *
 * @since 0.1.0
 */
export const bindError = (error: NodeJS.ErrnoException, address: string): BindError => {
  switch (error.code) {
    case "EADDRINUSE":
      return new AddressInUse({ address })
    case "EACCES":
    case "EPERM":
      return new PermissionDenied({ address })
    default:
      return new BadAddress({ address, code: error.code ?? error.message })
  }
}

const socketAddress = (server: Net.Server, fallback: string): NetAddress.SocketAddress => {
  const bound = server.address()
  if (bound === null) return NetAddress.unixPathAddress(fallback)
  if (typeof bound === "string") return NetAddress.unixPathAddress(bound)
  const inet = NetAddress.inetAddressFromIpString(bound.address, bound.port)
  // Node reports numeric addresses of bound sockets, which always parse.
  return Result.getOrThrow(inet)
}

/**
 * Binds `server` to a TCP address. The listener is closed (no new connections) when the scope
 * closes; connections already accepted are the caller's to close.
 *
 * @since 0.1.0
 * @category constructors
 */
export const listenTcp = (
  server: Net.Server,
  options: TcpListenOptions
): Effect.Effect<Listener, BindError, Scope.Scope> => {
  const label = formatHostPort(options.host, options.port)
  return Effect.acquireRelease(
    Effect.callback<Listener, BindError>((resume) => {
      const onError = (error: NodeJS.ErrnoException) => resume(Effect.fail(bindError(error, label)))
      server.once("error", onError)
      server.listen(
        { host: options.host, port: options.port, backlog: options.backlog, ipv6Only: options.ipv6Only },
        () => {
          server.off("error", onError)
          resume(Effect.succeed({ server, address: socketAddress(server, label) }))
        }
      )
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        if (!server.listening) return resume(Effect.void)
        // close() waits for open connections; their owners close them concurrently.
        server.close(() => resume(Effect.void))
      })
  )
}
