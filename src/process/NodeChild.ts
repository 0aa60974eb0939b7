/**
 * A Node child process with an IPC channel and inherited descriptors (`child_process.fork`), the
 * way a prefork primary starts its workers: Effect's `ChildProcess` spawns commands with pipes,
 * but neither an IPC channel nor a descriptor of ours passed as one of the child's (the research
 * note's section 1). Its exit is an Effect; the last kilobytes of its stderr are kept for the
 * error that reports a failed boot, and forwarded to our stderr as they come.
 *
 * @since 0.1.0
 */
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import { Deferred, Effect } from "effect"
import { WorkerError } from "../errors.ts"
import type { ExitStatus } from "./Exit.ts"

/**
 * How a child process ended (`ExitStatus`, with Node's signal names).
 *
 * @since 0.1.0
 * @category models
 */
export interface ChildExit extends ExitStatus {
  readonly signal: NodeJS.Signals | null
}

/** How much of a child's stderr is kept for error reports. */
const tailBytes = 8 * 1024

/**
 * A forked Node process.
 *
 * @since 0.1.0
 * @category models
 */
export interface NodeChild {
  readonly pid: number
  /** Sends a message over IPC, in order after those before it; false once the channel is closed. */
  send(message: unknown): boolean
  /**
   * Sends a message with a connection, which leaves this process (closed here once the child
   * has it). False when the channel is closed: the socket is still ours. A send that fails
   * later (the child died at that moment) closes the connection, as it closes the connections
   * the child already had, and tells `lost` why.
   */
  sendSocket(message: unknown, socket: Net.Socket, lost: (error: Error) => void): boolean
  /** Completes with how the process ended. */
  readonly exited: Effect.Effect<ChildExit>
  /**
   * Completes once the process ended and its stderr was read to the end (which can come after
   * the exit), so `stderrTail` holds all it wrote; never, while a process it started keeps the
   * stderr pipe open: wait for it with a timeout.
   */
  readonly closed: Effect.Effect<void>
  /** How it ended, once it has. */
  readonly exit: ChildExit | undefined
  /** Signals the process (no-op once it has exited). */
  kill(signal: NodeJS.Signals): void
  /** The last lines it wrote to stderr. */
  stderrTail(): string
  /** Connections sent to it that may have reached it and were closed when it exited. */
  readonly lostSockets: number
}

/**
 * What `child_process` keeps of handles on their way to a child: the one sent and not yet
 * acknowledged (its native handle, closed on the acknowledgement) and those queued behind it.
 */
interface HandlesInTransit {
  _pendingMessage?: { readonly handle?: { close?: () => void } } | null
  _handleQueue?: Array<{ readonly handle?: unknown }> | null
}

/**
 * Closes the connections still on their way to a child that has exited. Node closes them when
 * the child acknowledges them, or when the channel disconnects; but a channel that closes while
 * an acknowledgement is awaited postpones its disconnect until that acknowledgement, which a dead
 * child never sends: the connections stayed open in this process, their clients waiting for an
 * answer that could not come (seen as 10 s timeouts behind nginx when a worker was SIGKILLed).
 * Those still queued never left this process, nothing has read them: they go to `unsent`.
 */
const closeHandlesInTransit = (
  child: ChildProcess.ChildProcess,
  unsent: (sockets: ReadonlyArray<Net.Socket>) => void
): number => {
  const transit = child as unknown as HandlesInTransit
  let closed = 0
  const pending = transit._pendingMessage
  if (pending?.handle?.close !== undefined) {
    pending.handle.close()
    transit._pendingMessage = null
    closed++
  }
  const queue = transit._handleQueue
  if (queue !== null && queue !== undefined) {
    transit._handleQueue = null
    const sockets: Array<Net.Socket> = []
    for (const entry of queue) if (entry.handle instanceof Net.Socket) sockets.push(entry.handle)
    if (sockets.length > 0) unsent(sockets)
  }
  return closed
}

/**
 * Forks `entry` (a module path) on this Node with `execArgv`. The child gets our stdout,
 * `fds` as its descriptors 3, 4, ..., and the IPC channel after them; `onMessage` receives what
 * it sends. Fails with `WorkerError` (SpawnFailed) when the process cannot be started.
 *
 * @since 0.1.0
 * @category constructors
 */
export const forkNode = (options: {
  readonly name: string
  readonly entry: string
  readonly execArgv: ReadonlyArray<string>
  readonly fds: ReadonlyArray<number>
  /** Run the child as this user and group (no supplementary groups); needs root. */
  readonly identity?: { readonly uid: number; readonly gid: number } | undefined
  readonly onMessage: (message: unknown) => void
  /** Connections sent with `sendSocket` that never left this process when it exited (default: closed). */
  readonly onUnsentSockets?: ((sockets: ReadonlyArray<Net.Socket>) => void) | undefined
}): Effect.Effect<NodeChild, WorkerError> =>
  Effect.callback<NodeChild, WorkerError>((resume) => {
    let child: ChildProcess.ChildProcess
    try {
      child = ChildProcess.fork(options.entry, [], {
        execArgv: [...options.execArgv],
        stdio: ["ignore", "inherit", "pipe", ...options.fds, "ipc"],
        serialization: "json",
        ...(options.identity === undefined ? {} : { uid: options.identity.uid, gid: options.identity.gid })
      })
    } catch (cause) {
      return resume(
        Effect.fail(
          new WorkerError({ name: options.name, reason: "SpawnFailed", detail: String(cause), stderr: "", cause })
        )
      )
    }
    let tail = ""
    child.stderr?.on("data", (chunk: Buffer) => {
      process.stderr.write(chunk)
      tail = (tail + chunk.toString("utf8")).slice(-tailBytes)
    })
    const exited = Deferred.makeUnsafe<ChildExit>()
    const closed = Deferred.makeUnsafe<void>()
    let exit: ChildExit | undefined
    child.on("message", options.onMessage)
    // 'error' on a child: it could not be spawned or signalled, or a message could not be sent;
    // the first ends the start below, the others end in 'exit' or a closed channel.
    child.on("error", (error) => {
      if (child.pid === undefined) {
        resume(
          Effect.fail(
            new WorkerError({
              name: options.name,
              reason: "SpawnFailed",
              detail: error.message,
              stderr: tail,
              cause: error
            })
          )
        )
      }
    })
    let lostSockets = 0
    child.once("exit", (code, signal) => {
      // First, so that connections given back go to another child, not this one.
      exit = { code, signal }
      lostSockets = closeHandlesInTransit(
        child,
        options.onUnsentSockets ??
          ((sockets) => {
            for (const socket of sockets) socket.destroy()
          })
      )
      Deferred.doneUnsafe(exited, Effect.succeed(exit))
    })
    child.once("close", () => Deferred.doneUnsafe(closed, Effect.void))
    child.once("spawn", () => {
      const pid = child.pid ?? -1
      resume(
        Effect.succeed({
          pid,
          send: (message) => {
            if (!child.connected) return false
            // Node's own answer is false while messages wait behind a handle not yet acknowledged
            // (they go out in order): that is not a failure. Taken for one, a Stop queued behind
            // handed-over connections became a SIGTERM that overtook them, and the connection on
            // its way was reset.
            child.send(message as ChildProcess.Serializable)
            return true
          },
          sendSocket: (message, socket, lost) => {
            if (!child.connected) return false
            child.send(message as ChildProcess.Serializable, socket, { keepOpen: false }, (error) => {
              if (error !== null) lost(error)
            })
            return true
          },
          exited: Deferred.await(exited),
          closed: Deferred.await(closed),
          get exit() {
            return exit
          },
          kill: (signal) => {
            if (exit === undefined) child.kill(signal)
          },
          stderrTail: () => tail,
          get lostSockets() {
            return lostSockets
          }
        })
      )
    })
  })
