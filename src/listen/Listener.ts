/**
 * Listening sockets: TCP, unix sockets and inherited descriptors (an explicit fd or systemd
 * socket activation), bound with typed failures and released with the scope.
 *
 * @since 0.1.0
 */

import * as Fs from "node:fs"
import * as Net from "node:net"
import { Effect, Result } from "effect"
import * as NetAddress from "effect/net/NetAddress"
import type * as Scope from "effect/Scope"
import { AddressInUse, BadAddress, type BindError, InvalidOptions, PermissionDenied } from "../errors.ts"
import { lookupGroup, lookupUser } from "../process/Identity.ts"
import type { ConnectionSource } from "./Handoff.ts"

/**
 * Where to listen.
 *
 * @since 0.1.0
 * @category models
 */
export type ListenTarget =
  | {
      readonly _tag: "Tcp"
      readonly host: string
      readonly port: number
      readonly backlog: number
      readonly ipv6Only: boolean
    }
  | {
      readonly _tag: "Unix"
      readonly path: string
      readonly backlog: number
      readonly mode: number | undefined
      /** uid and gid to give the socket file; undefined leaves it as created. */
      readonly owner: number | undefined
      readonly group: number | undefined
    }
  | { readonly _tag: "Fd"; readonly fd: number; readonly label: string }
  /** No socket of its own: connections handed over by another process (see `Handoff`). */
  | { readonly _tag: "Handed"; readonly source: ConnectionSource }

/**
 * The listening options every server shares.
 *
 * @since 0.1.0
 * @category models
 */
export interface ListenOptions {
  readonly host: string
  readonly port: number
  readonly backlog: number
  readonly ipv6Only: boolean
  readonly path?: string | undefined
  readonly socketMode?: number | undefined
  readonly socketOwner?: string | undefined
  readonly socketGroup?: string | undefined
  readonly fd?: number | undefined
  readonly systemd: boolean
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

/** SD_LISTEN_FDS_START: systemd passes its sockets from descriptor 3 on. */
const firstActivatedFd = 3

/**
 * Reads systemd socket activation (sd_listen_fds(3)): LISTEN_PID must name this process and
 * LISTEN_FDS count at least one socket, the first of which is served. The variables are removed
 * so that child processes do not take the sockets for theirs.
 *
 * @since 0.1.0
 */
export const systemdFd = (
  env: NodeJS.ProcessEnv = process.env,
  pid: number = process.pid
): Result.Result<number, InvalidOptions> => {
  const listenPid = env.LISTEN_PID
  const listenFds = env.LISTEN_FDS
  const invalid = (detail: string) => Result.fail(new InvalidOptions({ option: "systemd", detail }))
  if (listenPid === undefined || listenFds === undefined) {
    return invalid("no socket was passed (LISTEN_PID and LISTEN_FDS are not set)")
  }
  if (!/^\d+$/.test(listenPid) || Number(listenPid) !== pid) {
    return invalid(`the sockets were passed to process ${listenPid}, not to this one (${pid})`)
  }
  if (!/^\d+$/.test(listenFds) || Number(listenFds) < 1) {
    return invalid(`LISTEN_FDS must count at least one socket, got ${JSON.stringify(listenFds)}`)
  }
  delete env.LISTEN_PID
  delete env.LISTEN_FDS
  delete env.LISTEN_FDNAMES
  return Result.succeed(firstActivatedFd)
}

/**
 * Chooses the listening target from the options: at most one of `path`, `fd` and `systemd`,
 * else TCP on `host` and `port`.
 *
 * @since 0.1.0
 */
export const targetOf = (options: ListenOptions): Effect.Effect<ListenTarget, InvalidOptions> => {
  const chosen = [options.path !== undefined, options.fd !== undefined, options.systemd].filter(Boolean).length
  if (chosen > 1) {
    return Effect.fail(new InvalidOptions({ option: "path", detail: "path, fd and systemd exclude each other" }))
  }
  for (const option of ["socketMode", "socketOwner", "socketGroup"] as const) {
    if (options[option] !== undefined && options.path === undefined) {
      return Effect.fail(new InvalidOptions({ option, detail: "needs a unix socket path" }))
    }
  }
  if (options.path !== undefined) {
    const { path, backlog, socketMode, socketOwner, socketGroup } = options
    return Effect.gen(function* () {
      const owner = socketOwner === undefined ? undefined : yield* lookupUser("socketOwner", socketOwner)
      const group = socketGroup === undefined ? undefined : yield* lookupGroup("socketGroup", socketGroup)
      return { _tag: "Unix", path, backlog, mode: socketMode, owner: owner?.uid, group } as const
    })
  }
  if (options.fd !== undefined) return Effect.succeed({ _tag: "Fd", fd: options.fd, label: `fd ${options.fd}` })
  if (options.systemd) {
    return Effect.map(Effect.fromResult(systemdFd()), (fd) => ({ _tag: "Fd", fd, label: `systemd socket (fd ${fd})` }))
  }
  return Effect.succeed({
    _tag: "Tcp",
    host: options.host,
    port: options.port,
    backlog: options.backlog,
    ipv6Only: options.ipv6Only
  })
}

/**
 * A human-readable form of the target, for messages.
 *
 * @since 0.1.0
 */
export const describeTarget = (target: ListenTarget): string => {
  switch (target._tag) {
    case "Tcp":
      return formatHostPort(target.host, target.port)
    case "Unix":
      return target.path
    case "Fd":
      return target.label
    case "Handed":
      return target.source.label
  }
}

/**
 * The listening address as the metrics name it: the target, with the port an ephemeral one got.
 *
 * @since 0.1.0
 */
export const listenerLabel = (target: ListenTarget, address: NetAddress.SocketAddress): string =>
  address._tag === "UnixPathAddress"
    ? describeTarget(target)
    : describeTarget(target).replace(/:0$/, `:${address.port}`)

const socketAddress = (server: Net.Server, fallback: string): NetAddress.SocketAddress => {
  const bound = server.address()
  if (bound === null) return NetAddress.unixPathAddress(fallback)
  if (typeof bound === "string") return NetAddress.unixPathAddress(bound)
  const inet = NetAddress.inetAddressFromIpString(bound.address, bound.port)
  // Node reports numeric addresses of bound sockets, which always parse.
  return Result.getOrThrow(inet)
}

/** Whether something accepts connections on the unix socket at `path`. */
const isLive = (path: string): Promise<boolean> =>
  new Promise((resolve) => {
    const probe = Net.connect(path)
    probe.once("connect", () => {
      probe.destroy()
      resolve(true)
    })
    probe.once("error", () => resolve(false))
  })

/**
 * Makes room for a unix socket at `path`: a socket file nobody listens on any more (left by a
 * crash) is removed; a live one is `AddressInUse`; anything that is not a socket is left alone
 * and refused.
 *
 * @since 0.1.0
 */
export const clearStaleSocket = (path: string): Effect.Effect<void, BindError> =>
  Effect.gen(function* () {
    const stat = yield* Effect.sync(() => Fs.lstatSync(path, { throwIfNoEntry: false }))
    if (stat === undefined) return
    if (!stat.isSocket()) return yield* new BadAddress({ address: path, code: "ENOTSOCK" })
    if (yield* Effect.promise(() => isLive(path))) return yield* new AddressInUse({ address: path })
    yield* Effect.try({
      try: () => Fs.unlinkSync(path),
      catch: (error) => bindError(error as NodeJS.ErrnoException, path)
    })
  })

const bind = (server: Net.Server, target: ListenTarget, label: string): Effect.Effect<void, BindError> =>
  Effect.callback<void, BindError>((resume) => {
    const onError = (error: NodeJS.ErrnoException) => resume(Effect.fail(bindError(error, label)))
    server.once("error", onError)
    const listening = () => {
      server.off("error", onError)
      resume(Effect.void)
    }
    switch (target._tag) {
      case "Tcp":
        server.listen(
          { host: target.host, port: target.port, backlog: target.backlog, ipv6Only: target.ipv6Only },
          listening
        )
        break
      case "Unix":
        server.listen({ path: target.path, backlog: target.backlog }, listening)
        break
      case "Fd":
        server.listen({ fd: target.fd }, listening)
        break
    }
  })

/**
 * Binds `server` to `target`. The listener closes (no new connections; a unix socket file is
 * removed) when the scope closes; connections already accepted are the caller's to close.
 *
 * @since 0.1.0
 * @category constructors
 */
export const listen = (server: Net.Server, target: ListenTarget): Effect.Effect<Listener, BindError, Scope.Scope> => {
  const label = describeTarget(target)
  if (target._tag === "Handed") {
    // The socket belongs to whoever hands connections over: nothing to bind or to close.
    return Effect.acquireRelease(
      Effect.sync(() => target.source.attach((socket) => server.emit("connection", socket))),
      (detach) => Effect.sync(detach)
    ).pipe(Effect.as({ server, address: NetAddress.unixPathAddress(label) }))
  }
  return Effect.acquireRelease(
    Effect.gen(function* () {
      if (target._tag === "Unix") yield* clearStaleSocket(target.path)
      yield* bind(server, target, label)
      if (target._tag === "Unix") {
        yield* socketFileAccess(target).pipe(Effect.onError(() => Effect.sync(() => server.close())))
      }
      return { server, address: socketAddress(server, label) }
    }),
    ({ server }) => close(server)
  )
}

/**
 * Gives a bound unix socket's file its owner, group and mode, before the first connection is
 * accepted: a client they shut out never gets in.
 *
 * @since 0.1.0
 */
export const socketFileAccess = (target: {
  readonly path: string
  readonly mode: number | undefined
  readonly owner: number | undefined
  readonly group: number | undefined
}): Effect.Effect<void, BindError> =>
  Effect.try({
    try: () => {
      const { path, mode, owner, group } = target
      if (owner !== undefined || group !== undefined) Fs.chownSync(path, owner ?? -1, group ?? -1)
      if (mode !== undefined) Fs.chmodSync(path, mode)
    },
    catch: (error) => bindError(error as NodeJS.ErrnoException, target.path)
  })

/**
 * Stops accepting. Completes once every connection is gone, which their owners see to.
 *
 * @since 0.1.0
 */
export const close = (server: Net.Server): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (!server.listening) return resume(Effect.void)
    server.close(() => resume(Effect.void))
  })
