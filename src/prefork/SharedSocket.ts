/**
 * The listening socket a prefork primary shares with its workers (dispatch `shared`): bound by
 * the primary but never accepted from there. Each worker inherits the descriptor and listens on
 * it, so the kernel hands connections to whichever worker accepts first and the primary spends
 * nothing per connection; while no worker is up (all restarting), connections wait in the
 * listen queue instead of being refused, because the primary keeps the socket open.
 *
 * TCP sockets are bound with `net.BoundSocket` (Node >= 24.19). Unix sockets, and TCP on older
 * Node, are bound the way `node:cluster` binds the sockets its primary shares
 * (`net._createServerHandle`: bind without listen), the one way Node offers to do it.
 * Inherited descriptors (`fd`, systemd) are passed on as they are.
 *
 * @since 0.1.0
 */
import * as Dns from "node:dns/promises"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Util from "node:util"
import { Effect } from "effect"
import * as NetAddress from "effect/net/NetAddress"
import type * as Scope from "effect/Scope"
import { BadAddress, type BindError } from "../errors.ts"
import { bindError, clearStaleSocket, describeTarget, type ListenTarget, socketFileAccess } from "../listen/Listener.ts"

/**
 * A bound socket the workers inherit.
 *
 * @since 0.1.0
 * @category models
 */
export interface SharedSocket {
  /** The descriptor to pass to each worker. */
  readonly fd: number
  /** Where clients connect, with the port an ephemeral bind got. */
  readonly address: NetAddress.SocketAddress
}

/** A native server handle as `net._createServerHandle` returns it. */
interface ServerHandle {
  readonly fd: number
  close(): void
}

interface CreatesServerHandles {
  readonly _createServerHandle?: (
    address: string,
    port: number,
    addressType: number,
    fd: undefined,
    flags: number
  ) => ServerHandle | number
}

/** libuv's UV_TCP_IPV6ONLY bind flag. */
const ipv6OnlyFlag = 1

const bindFailure = (errno: number, address: string): BindError =>
  bindError(Object.assign(new Error("bind failed"), { code: Util.getSystemErrorName(errno) }), address)

/** Binds without listening, as node:cluster's primary does; undefined where Node lacks it. */
const createServerHandle = (
  address: string,
  port: number,
  addressType: number,
  flags: number,
  label: string
): Effect.Effect<ServerHandle, BindError> =>
  Effect.suspend(() => {
    const create = (Net as unknown as CreatesServerHandles)._createServerHandle
    if (create === undefined) {
      return Effect.fail(new BadAddress({ address: label, code: "this Node cannot bind a socket to share" }))
    }
    const handle = create(address, port, addressType, undefined, flags)
    return typeof handle === "number" ? Effect.fail(bindFailure(handle, label)) : Effect.succeed(handle)
  })

/** A numeric address for `host` (BoundSocket does no name resolution). */
const numericHost = (host: string, label: string): Effect.Effect<{ address: string; family: 4 | 6 }, BindError> => {
  const family = Net.isIP(host)
  if (family === 4 || family === 6) return Effect.succeed({ address: host, family })
  return Effect.tryPromise({
    try: () => Dns.lookup(host),
    catch: () => new BadAddress({ address: label, code: "ENOTFOUND" })
  }).pipe(Effect.map(({ address, family }) => ({ address, family: family === 6 ? (6 as const) : (4 as const) })))
}

const inet = (address: string, port: number): NetAddress.SocketAddress => {
  const parsed = NetAddress.inetAddressFromIpString(address, port)
  return parsed._tag === "Success" ? parsed.success : NetAddress.unixPathAddress(`${address}:${port}`)
}

/**
 * Binds `target` for workers to share, for the rest of the scope (a unix socket's file is removed
 * when it closes).
 *
 * @since 0.1.0
 * @category constructors
 */
export const bindShared = (target: ListenTarget): Effect.Effect<SharedSocket, BindError, Scope.Scope> => {
  const label = describeTarget(target)
  switch (target._tag) {
    case "Handed":
      // A primary binds; only a worker is handed its connections.
      return Effect.fail(new BadAddress({ address: label, code: "a handed-over connection source cannot be shared" }))
    case "Fd":
      // Already bound (and listening) by whoever passed it: the workers listen on it as well.
      return Effect.succeed({ fd: target.fd, address: NetAddress.unixPathAddress(label) })
    case "Unix":
      return Effect.acquireRelease(
        Effect.gen(function* () {
          yield* clearStaleSocket(target.path)
          const handle = yield* createServerHandle(target.path, -1, -1, 0, label)
          yield* socketFileAccess(target).pipe(Effect.onError(() => Effect.sync(() => handle.close())))
          return { handle, shared: { fd: handle.fd, address: NetAddress.unixPathAddress(target.path) } }
        }),
        ({ handle }) =>
          Effect.sync(() => {
            handle.close()
            Fs.rmSync(target.path, { force: true })
          })
      ).pipe(Effect.map(({ shared }) => shared))
    case "Tcp":
      return Effect.gen(function* () {
        const { address, family } = yield* numericHost(target.host, label)
        if (Net.BoundSocket !== undefined) {
          const bound = yield* Effect.acquireRelease(
            Effect.try({
              try: () => new Net.BoundSocket({ host: address, port: target.port, ipv6Only: target.ipv6Only }),
              catch: (error) => bindError(error as NodeJS.ErrnoException, label)
            }),
            (bound) => Effect.sync(() => bound.close())
          )
          const bind = bound.address()
          return { fd: bound.fd(), address: inet(bind.address, bind.port) }
        }
        const handle = yield* Effect.acquireRelease(
          createServerHandle(address, target.port, family, target.ipv6Only ? ipv6OnlyFlag : 0, label),
          (handle) => Effect.sync(() => handle.close())
        )
        const bound = { address: "", port: 0 }
        const err = (handle as unknown as { getsockname(out: object): number }).getsockname(bound)
        if (err !== 0) return yield* Effect.fail(bindFailure(err, label))
        return { fd: handle.fd, address: inet(bound.address, bound.port) }
      })
  }
}
