/**
 * Running the application for each request, and what follows it: the request duration in the
 * stats, the access log line, and the log of a failure. Shared by the HTTP/1.1 and SCGI servers.
 *
 * @since 0.1.0
 */
import { Context, Effect, type Exit, type Fiber, Option } from "effect"
import { causeResponseStripped } from "effect/http/HttpServerError"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { type AccessLogFormat, type AccessLogSink, formatAccess } from "../stats/AccessLog.ts"
import type { Health } from "../stats/Health.ts"
import type { ServerStats } from "../stats/ServerStats.ts"
import * as Gateway from "./Gateway.ts"
import type { RequestSource } from "./ServerRequest.ts"
import { ServerRequest } from "./ServerRequest.ts"

/**
 * What the runner reads of a finished exchange.
 *
 * @since 0.1.0
 * @category models
 */
export interface RunExchange extends RequestSource {
  /** When the request was received (`performance.now()`), for its duration. */
  readonly receivedTick: number
  /** When the request was received, in ms since the epoch, for the access log. */
  readonly receivedAt: number
  /** The request target as received, for the access log. */
  readonly target: string
  /** The protocol and version as the access log names it, e.g. `HTTP/1.1`. */
  readonly protocolLabel: string
  readonly status: number
  /** Response body bytes sent. */
  readonly bytesSent: number
  /** The server aborted the response. */
  readonly aborted: boolean
  /** The connection is gone: the client left, or the response was aborted. */
  readonly closed: boolean
  readonly remotePort: number | undefined
  /** The client's address and port as the request started (set with an access log). */
  peer: { readonly address: string | undefined; readonly port: number | undefined } | undefined
}

/**
 * How a connection runs the application.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestRunner<X extends RunExchange> {
  /** Starts the application for a request; the fiber may already be done when this returns. */
  readonly run: (exchange: X) => Fiber.Fiber<void, never>
  /** An exchange ended: log failures, count it. */
  readonly completed: (exchange: X, exit: Exit.Exit<void, never>) => void
  /**
   * A request was refused by the protocol parser. `answered` is the refusal the server sent (the
   * peer's address and the body's length), which gets an access-log line as any response does.
   */
  readonly rejected: (
    error: { readonly status: number; readonly reason: string },
    answered?: {
      readonly remoteAddress: string | undefined
      readonly remotePort: number | undefined
      readonly bytes: number
    }
  ) => void
  /** Whether a request target is the health path, which the runner answers without the app. */
  readonly isHealthCheck: (url: string) => boolean
  /** Something about a connection worth an operator's attention (a send timeout), logged at Info. */
  readonly notice: (message: string, annotations: Readonly<Record<string, unknown>>) => void
}

/**
 * The health path's answer: 200 while serving, 503 once stopping, never cached (a probe must
 * see the change at once).
 */
const healthApp = (state: Health) =>
  Effect.sync(() =>
    state.draining
      ? HttpServerResponse.text("stopping\n", { status: 503, headers: { "cache-control": "no-store" } })
      : HttpServerResponse.text("ok\n", { status: 200, headers: { "cache-control": "no-store" } })
  )

const header = (exchange: RunExchange, name: string): string | undefined => {
  const raw = exchange.rawHeaders
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) return raw[i + 1]
  return undefined
}

/**
 * A runner for the app `handled` (from `Gateway.toHandled`) with the server's `services`;
 * `contextOf` adds per-request services beyond the request itself.
 *
 * @since 0.1.0
 */
export const makeRunner = <X extends RunExchange>(options: {
  readonly handled: Effect.Effect<void, never, HttpServerRequest>
  readonly services: Context.Context<never>
  readonly stats: ServerStats
  /** Where each request's access log line goes, in which format; undefined for none. */
  readonly accessLog: { readonly format: AccessLogFormat; readonly sink: AccessLogSink } | undefined
  readonly contextOf?:
    | ((exchange: X, context: Context.Context<HttpServerRequest>) => Context.Context<HttpServerRequest>)
    | undefined
  /** The health path, answered here without the app (nor its middleware). */
  readonly health?: { readonly path: string; readonly state: Health } | undefined
}): RequestRunner<X> => {
  const { accessLog, contextOf, handled, services, stats, health } = options
  const healthHandled = health === undefined ? undefined : Gateway.toHandled(healthApp(health.state))
  const isHealthCheck = (url: string): boolean => {
    if (health === undefined || !url.startsWith(health.path)) return false
    const rest = url.length - health.path.length
    return rest === 0 || url.charCodeAt(health.path.length) === 0x3f // "?"
  }
  const log = (effect: Effect.Effect<void>) => {
    Effect.runForkWith(services)(effect)
  }
  return {
    isHealthCheck,
    run: (exchange) => {
      // Now, while the socket is open: a client that leaves before its response is logged too.
      if (accessLog !== undefined) exchange.peer = { address: exchange.remoteAddress, port: exchange.remotePort }
      stats.inFlight++
      const context = Context.add(services, HttpServerRequest, new ServerRequest(exchange))
      const program = healthHandled !== undefined && isHealthCheck(exchange.url) ? healthHandled : handled
      return Effect.runForkWith(contextOf === undefined ? context : contextOf(exchange, context))(program)
    },
    completed: (exchange, exit) => {
      const seconds = (performance.now() - exchange.receivedTick) / 1000
      stats.inFlight--
      stats.duration(seconds, exchange.method, exchange.status)
      if (accessLog !== undefined) {
        accessLog.sink.write(
          formatAccess(accessLog.format, {
            remoteAddress: exchange.peer?.address ?? exchange.remoteAddress,
            remotePort: exchange.peer?.port ?? exchange.remotePort,
            time: exchange.receivedAt,
            method: exchange.method,
            target: exchange.target,
            protocol: exchange.protocolLabel,
            status: exchange.status,
            bytes: exchange.bytesSent,
            referer: header(exchange, "referer"),
            userAgent: header(exchange, "user-agent"),
            duration: seconds
          })
        )
      }
      if (exit._tag !== "Failure") return
      // The cause carries the error response as a defect too; log only what went wrong.
      const [, cause] = causeResponseStripped(exit.cause)
      if (
        Option.isSome(cause) &&
        Gateway.isServerFailure(cause.value, exchange.status, exchange.aborted, exchange.closed)
      ) {
        log(
          Effect.logError("request failed", cause.value).pipe(
            Effect.annotateLogs({
              "http.method": exchange.method,
              "http.url": exchange.url,
              "http.status": exchange.status
            })
          )
        )
      }
    },
    notice: (message, annotations) => log(Effect.annotateLogs(Effect.logInfo(message), annotations)),
    rejected: (error, answered) => {
      stats.protocolError(error.status)
      log(Effect.logDebug("request refused", error.status, error.reason))
      if (accessLog === undefined || answered === undefined) return
      // As nginx and Apache do, a refused request is logged too; its request line is "-": what
      // arrived is not a request the server understood.
      accessLog.sink.write(
        formatAccess(accessLog.format, {
          remoteAddress: answered.remoteAddress,
          remotePort: answered.remotePort,
          time: Date.now(),
          method: "",
          target: "",
          protocol: "",
          status: error.status,
          bytes: answered.bytes,
          referer: undefined,
          userAgent: undefined,
          duration: 0
        })
      )
    }
  }
}
