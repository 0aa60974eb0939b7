/**
 * Dispatch `primary`: the primary accepts every connection and hands it to a worker over IPC
 * (the socket's descriptor travels with a `Connection` message), as node:cluster's round-robin
 * mode and nascheme's SCGI server do. The pool chooses the worker (the least loaded with room);
 * when none has room the connection waits here, paused and unread, in a queue bounded by the
 * listener's `backlog`, for at most `queueTimeout`; beyond either it gets the protocol's 503 and
 * is closed. What this buys over the shared socket: the kernel no longer decides which worker
 * takes a connection, so a few long-lived keep-alive clients (nginx's upstream keepalive) spread
 * evenly, and a busy worker never gets a connection while another has room. What it costs: the
 * primary's CPU for every connection (accept, then the send), measured by `npm run bench`.
 *
 * @since 0.1.0
 */
import type * as Net from "node:net"
import { Effect } from "effect"
import type * as Scope from "effect/Scope"
import type { BindError } from "../errors.ts"
import { createServer } from "../listen/Acceptor.ts"
import { type Listener, type ListenTarget, listen } from "../listen/Listener.ts"

/**
 * How the primary dispatches. Times in milliseconds.
 *
 * @since 0.1.0
 * @category models
 */
export interface DispatchSpec {
  readonly target: ListenTarget
  readonly noDelay: boolean
  /** Connections that may wait for a worker with room; more are refused at once. */
  readonly queueLimit: number
  /** How long a connection may wait for a worker with room before it is refused. */
  readonly queueTimeout: number
  /** The protocol's 503 response, sent to a connection that is refused. */
  readonly refusal: string
  /**
   * Hands `socket` to the worker that should take it; false when no worker has room (the
   * socket is still ours).
   */
  readonly hand: (socket: Net.Socket) => boolean
}

interface Waiting {
  readonly socket: Net.Socket
  readonly since: number
}

/** How long a refused connection may take to read its 503 before it is closed. */
const refusalLingerMillis = 2_000

/**
 * @since 0.1.0
 * @category models
 */
export class Dispatcher {
  private readonly spec: DispatchSpec
  private readonly queue: Array<Waiting> = []
  private readonly watched = new WeakSet<Net.Socket>()
  private closed = false
  /** Connections handed to workers. */
  dispatched = 0
  /** Connections refused with a 503: the queue was full, or they waited too long. */
  refused = 0

  private readonly server: Net.Server

  constructor(spec: DispatchSpec) {
    this.spec = spec
    this.server = createServer(spec.noDelay)
  }

  /** Connections waiting for a worker with room. */
  get waiting(): number {
    return this.queue.length
  }

  /**
   * Listens (as a single server would on the same options) for the rest of the scope; `stop`
   * ends accepting sooner.
   */
  listen(): Effect.Effect<Listener, BindError, Scope.Scope> {
    this.server.on("connection", (socket: Net.Socket) => this.arrived(socket))
    return listen(this.server, this.spec.target)
  }

  private arrived(socket: Net.Socket): void {
    if (this.closed) {
      socket.destroy()
      return
    }
    // Connections wait in order: one may not overtake those queued before it.
    if (this.queue.length === 0 && this.spec.hand(socket)) {
      this.dispatched++
      return
    }
    if (this.queue.length >= this.spec.queueLimit) {
      this.refuse(socket)
      return
    }
    this.watch(socket)
    this.queue.push({ socket, since: Date.now() })
  }

  /** A client that gives up while its connection waits leaves the queue (its error is that close). */
  private watch(socket: Net.Socket): void {
    if (this.watched.has(socket)) return
    this.watched.add(socket)
    socket.on("error", () => socket.destroy())
    socket.once("close", () => {
      const index = this.queue.findIndex((waiting) => waiting.socket === socket)
      if (index !== -1) this.queue.splice(index, 1)
    })
  }

  /**
   * Takes back connections that never reached the worker they were sent to (it died): they go
   * to the front of the queue, having waited longest, and to workers with room.
   */
  requeue(sockets: ReadonlyArray<Net.Socket>): void {
    const now = Date.now()
    for (const socket of [...sockets].reverse()) {
      if (this.closed) {
        this.refuse(socket)
      } else {
        this.watch(socket)
        this.queue.unshift({ socket, since: now })
      }
    }
    this.drain()
  }

  /** Hands waiting connections to workers while one has room (a worker became ready or freed room). */
  drain(): void {
    while (this.queue.length > 0) {
      const next = this.queue[0]
      if (next.socket.destroyed) {
        this.queue.shift()
        continue
      }
      if (!this.spec.hand(next.socket)) return
      this.queue.shift()
      this.dispatched++
    }
  }

  /** Refuses connections that have waited longer than the queue timeout. */
  expire(now: number): void {
    while (this.queue.length > 0 && now - this.queue[0].since >= this.spec.queueTimeout) {
      const { socket } = this.queue.shift() as Waiting
      this.refuse(socket)
    }
  }

  private refuse(socket: Net.Socket): void {
    this.refused++
    if (socket.destroyed) return
    this.watch(socket)
    // The request was never read: the 503 goes out, what the client sent is read and dropped so
    // the close does not reset the connection before the client has the response (RFC 9112 §9.6).
    socket.end(this.spec.refusal, "latin1")
    socket.resume()
    setTimeout(() => socket.destroy(), refusalLingerMillis).unref()
  }

  /**
   * Stops accepting and dispatching (the start of a graceful stop, before the workers are told
   * to finish): connections still waiting are refused. The listener's own release would wait
   * until the workers have closed every connection they were handed (Node tracks them for the
   * server), which only happens once they stop: closing it here does not wait.
   */
  get stop(): Effect.Effect<void> {
    return Effect.sync(() => {
      if (this.closed) return
      this.closed = true
      this.server.close()
      for (const { socket } of this.queue.splice(0)) this.refuse(socket)
    })
  }
}
