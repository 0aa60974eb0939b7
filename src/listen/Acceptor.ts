/**
 * What every server does with its listening socket, whatever the protocol: accept connections
 * (holding early ones until an app is served), refuse those over `maxConnections`, keep the live
 * ones, check their deadlines on a schedule, and stop gracefully. The accept loop, the deadline
 * sweep and TLS handshakes are fibers in a `FiberSet` owned by the serving scope; a connection is
 * an event-driven object (socket events in, a fiber per request) that the graceful stop closes.
 *
 * @since 0.1.0
 */
import * as Net from "node:net"
import { Deferred, Effect, FiberSet, Schedule } from "effect"
import type * as Scope from "effect/Scope"
import type { ConnectionStateName, ServerStats } from "../stats/ServerStats.ts"
import type { Admission } from "../wire/Admission.ts"
import { ConnectionList, type Listed } from "./ConnectionList.ts"
import { ConnState, lingerMillis } from "./ConnState.ts"

/**
 * A protocol's connection as the acceptor drives it.
 *
 * @since 0.1.0
 * @category models
 */
export interface LiveConnection extends Listed {
  readonly socket: Net.Socket
  readonly state: ConnState
  /** When the connection next needs `timeout` (ms since the epoch), 0 for never. */
  readonly deadline: number
  /** The deadline has passed (`now` is the sweep's clock reading). */
  timeout(now: number): void
  /** Graceful stop: close when idle, else after the requests already received. */
  drainForShutdown(): void
  /** Interrupts what is running and closes the socket. */
  readonly stop: Effect.Effect<void>
  /** Starts serving the socket; the connection calls its `forget` once the socket has closed. */
  start(): void
}

/**
 * How a server's connections are accepted, limited, timed and stopped.
 *
 * @since 0.1.0
 * @category models
 */
export interface AcceptorOptions {
  readonly maxConnections: number
  /** Milliseconds requests in progress get when the server stops. */
  readonly shutdownTimeout: number
  /**
   * Milliseconds the server keeps serving as usual once its stop begins, before it stops
   * accepting and drains: load balancers that poll the health path see it fail meanwhile.
   */
  readonly stopDelay: number
  /** Called the moment the stop begins (before `stopDelay`). */
  readonly onStop?: (() => void) | undefined
  /** The timeouts in milliseconds (0 for none) whose deadlines the sweep checks. */
  readonly timeouts: ReadonlyArray<number>
  /** The answer (a 503) to a connection over maxConnections, which is then closed. */
  readonly refusal: string
  /**
   * Work before a socket becomes a connection (a TLS handshake), run as a fiber of the server;
   * undefined when the socket did not make it (and is closed). Sockets being prepared count as
   * open connections.
   */
  readonly prepare?: ((socket: Net.Socket) => Effect.Effect<Net.Socket | undefined>) | undefined
}

/**
 * What one served app brings to the acceptor.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServeOptions<C extends LiveConnection> {
  /** The request queue of maxConcurrentRequests, whose waiters the sweep expires. */
  readonly admission: Admission | undefined
  /** Makes a connection of an accepted socket; `forget` takes it out of the live set when it closes. */
  readonly connection: (socket: Net.Socket, forget: (connection: C) => void) => C
}

/**
 * How often deadlines are checked: a quarter of the shortest timeout, between 50 ms and 1 s, so a
 * timeout fires at most 25% late (and within a second for the usual multi-second ones).
 *
 * @since 0.1.0
 */
export const sweepInterval = (timeouts: ReadonlyArray<number>): number =>
  Math.min(1000, Math.max(50, Math.floor(Math.min(...timeouts.filter((t) => t > 0), 4000) / 4)))

/** The metrics' name of each state; a closed connection has left the list (counted as lingering if not). */
const stateNames: Readonly<Record<ConnState, ConnectionStateName>> = {
  [ConnState.New]: "new",
  [ConnState.Active]: "active",
  [ConnState.Idle]: "idle",
  [ConnState.Closing]: "closing",
  [ConnState.Upgraded]: "upgraded",
  [ConnState.Lingering]: "lingering",
  [ConnState.Closed]: "lingering"
}

/** Refuses a connection over maxConnections: its answer and close, never a silent drop or a hang. */
const refuse = (socket: Net.Socket, answer: string): void => {
  socket.on("error", () => {})
  socket.resume()
  socket.end(answer)
  // Overload is rare enough for a timer per refused socket; live connections linger on the sweep.
  setTimeout(() => socket.destroy(), lingerMillis).unref()
}

/**
 * Takes over a listening `server`'s connections for `stats`: those that arrive before `serve`
 * wait, paused (the server must be created with `pauseOnConnect`).
 *
 * @since 0.1.0
 * @category models
 */
export class Acceptor<C extends LiveConnection> {
  private readonly server: Net.Server
  private readonly stats: ServerStats
  private readonly options: AcceptorOptions
  private accept: ((socket: Net.Socket) => void) | undefined
  private readonly waiting = new Set<Net.Socket>()
  private readonly live = new ConnectionList<C>()
  private preparing = 0
  private onEmpty: (() => void) | undefined
  private stopped: Deferred.Deferred<void> | undefined
  /** The graceful stop has begun: connections answer what they have received, then close. */
  stopping = false

  constructor(server: Net.Server, stats: ServerStats, options: AcceptorOptions) {
    this.server = server
    this.stats = stats
    this.options = options
    server.on("connection", (socket: Net.Socket) => {
      if (this.accept !== undefined) return this.accept(socket)
      if (this.stopping) return socket.destroy()
      this.waiting.add(socket)
      socket.once("close", () => this.waiting.delete(socket))
    })
    stats.live = () => {
      let bytesRead = 0
      let bytesWritten = 0
      const states = { handshake: this.preparing, new: 0, active: 0, idle: 0, closing: 0, upgraded: 0, lingering: 0 }
      this.live.forEach((conn) => {
        states[stateNames[conn.state]]++
        bytesRead += conn.socket.bytesRead
        bytesWritten += conn.socket.bytesWritten
      })
      return {
        open: this.live.size + this.preparing,
        idle: states.idle + states.new,
        states,
        bytesRead,
        bytesWritten
      }
    }
  }

  /** Closes connections still waiting for an app (when the server's scope closes). */
  get closeWaiting(): Effect.Effect<void> {
    return Effect.sync(() => {
      for (const socket of this.waiting) socket.destroy()
      this.waiting.clear()
    })
  }

  /**
   * The graceful stop, run once whichever scope closes first (the server's, or the one `serve`
   * ran in; later calls wait for the first): accepting stops at once, idle connections close, and
   * connections with requests have `shutdownTimeout` to finish them before what remains is
   * stopped. So releasing a server Layer never waits for clients to drop idle keep-alive
   * connections, whatever the order its scopes close in.
   */
  get shutdown(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.stopped !== undefined) return Deferred.await(this.stopped)
      const done = Deferred.makeUnsafe<void>()
      this.stopped = done
      return Effect.ensuring(this.stop, Deferred.succeed(done, undefined))
    })
  }

  private get stop(): Effect.Effect<void> {
    const self = this
    const { shutdownTimeout, stopDelay } = this.options
    return Effect.gen(function* () {
      self.options.onStop?.()
      if (stopDelay > 0 && !self.stopping) {
        yield* Effect.logInfo(
          `stopping in ${stopDelay / 1000} s (stopDelay): serving meanwhile, the health check answers 503`
        )
        yield* Effect.sleep(stopDelay)
      }
      self.stopping = true
      self.accept = undefined
      self.server.close()
      let busy = 0
      self.live.forEach((conn) => {
        if (conn.state !== ConnState.Idle && conn.state !== ConnState.New) busy++
        conn.drainForShutdown()
      })
      if (busy > 0) {
        yield* Effect.logInfo(
          `stopping: ${busy} of ${self.live.size} connections have a request in progress; ` +
            `waiting up to ${shutdownTimeout / 1000} s (shutdownTimeout) for them`
        )
      }
      const drained = Effect.callback<void>((resume) => {
        if (self.live.size === 0) return resume(Effect.void)
        self.onEmpty = () => resume(Effect.void)
      })
      const finished = yield* Effect.timeoutOption(drained, shutdownTimeout)
      self.onEmpty = undefined
      if (finished._tag === "None" && self.live.size > 0) {
        yield* Effect.logWarning(
          `shutdownTimeout (${shutdownTimeout / 1000} s) reached: closing ${self.live.size} connections, interrupting their requests`
        )
      }
      yield* Effect.forEach(self.live.toArray(), (conn) => conn.stop, { concurrency: "unbounded", discard: true })
    })
  }

  /**
   * Serves connections for the rest of the scope; closing the scope is the graceful stop
   * (`shutdown`).
   */
  serve(serving: ServeOptions<C>): Effect.Effect<void, never, Scope.Scope> {
    const { live, options, stats } = this
    const self = this
    return Effect.gen(function* () {
      const forget = (conn: C) => {
        live.delete(conn)
        if (live.size === 0) self.onEmpty?.()
      }
      // The server's fibers (accept loop, sweep, handshakes); closing the scope runs the graceful
      // stop below first, then the set's finalizer interrupts whatever fiber remains.
      const fibers = yield* FiberSet.make<void>()
      const runFork = yield* FiberSet.runtime(fibers)<never>()
      yield* Effect.addFinalizer(() => self.shutdown)

      const overLimit = () => options.maxConnections > 0 && live.size + self.preparing >= options.maxConnections
      const serveSocket = (socket: Net.Socket): void => {
        // A handshake that completes after the stop began finds no server to serve it.
        if (self.stopping) return void socket.destroy()
        if (overLimit()) {
          stats.rejectedConnections++
          refuse(socket, options.refusal)
          return
        }
        const conn = serving.connection(socket, forget)
        live.add(conn)
        conn.start()
      }
      const prepare = options.prepare
      const prepared = (socket: Net.Socket, prepare: (socket: Net.Socket) => Effect.Effect<Net.Socket | undefined>) =>
        Effect.suspend(() => {
          self.preparing++
          return prepare(socket)
        }).pipe(
          Effect.ensuring(
            Effect.sync(() => {
              self.preparing--
            })
          ),
          Effect.flatMap((ready) => (ready === undefined ? Effect.void : Effect.sync(() => serveSocket(ready))))
        )
      const onConnection = (socket: Net.Socket) => {
        stats.accepted++
        if (prepare !== undefined) {
          // Over the limit, a socket is refused at once rather than after the work of preparing it.
          if (overLimit()) {
            stats.rejectedConnections++
            refuse(socket, options.refusal)
            return
          }
          runFork(prepared(socket, prepare))
          return
        }
        serveSocket(socket)
      }
      // Deadlines are checked by one sweep over the live connections on a fixed schedule,
      // rather than a timer per connection.
      const sweep = Effect.sync(() => {
        const now = Date.now()
        live.forEach((conn) => {
          if (conn.deadline !== 0 && now >= conn.deadline) conn.timeout(now)
        })
        serving.admission?.expire(now)
      })
      yield* FiberSet.run(fibers, Effect.repeat(sweep, Schedule.spaced(sweepInterval(options.timeouts))))
      // The accept loop: a fiber supervised by the scope that owns the listener's connection
      // handler while it runs.
      yield* FiberSet.run(
        fibers,
        Effect.callback<never>(() => {
          self.accept = onConnection
          for (const socket of self.waiting) onConnection(socket)
          self.waiting.clear()
          return Effect.sync(() => {
            if (self.accept === onConnection) self.accept = undefined
          })
        })
      )
    })
  }
}

/**
 * A listening socket server for the acceptor: connections arrive paused, and a client that sends
 * FIN has gone away (as in Node's and Go's servers: Node ends our side after what was written,
 * the socket closes, and a request in progress is interrupted like on a disconnect).
 *
 * @since 0.1.0
 */
export const createServer = (noDelay: boolean): Net.Server =>
  Net.createServer({ noDelay, pauseOnConnect: true, allowHalfOpen: false })
