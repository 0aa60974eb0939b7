/**
 * Connection upgrades (RFC 9110 §7.8, §15.2.2) as `NodeHttpServer` does them: `request.upgrade`
 * completes a WebSocket handshake (RFC 6455 §4.2) and gives the app Effect's `Socket` over the
 * connection; `request.upgradeWith(headers)` does the same for WebSocket and, for any other
 * protocol the client asked for, answers `101 Switching Protocols` with the app's headers and
 * gives the raw connection as a `Socket`.
 *
 * The request is checked when the app asks, so a request that cannot be upgraded is a typed
 * failure the app can still answer; the `101` goes out when the socket's reader is acquired,
 * after the request body has ended (what the app left unread is discarded). The connection then
 * leaves the driver (`ConnState.Upgraded`) but stays counted and is stopped with the server:
 * interrupting the app closes a WebSocket with 1001 (going away). WebSocket framing is the `ws`
 * package's, as in `NodeHttpServer`; a ping on the server's sweep drops peers that stop answering.
 *
 * @since 0.1.0
 */
import type { IncomingMessage } from "node:http"
import type * as Net from "node:net"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { type WebSocket, WebSocketServer } from "@effect/platform-node/NodeWS"
import { Cause, Effect, Exit } from "effect"
import type * as Headers from "effect/http/Headers"
import { HttpServerError, InternalError, RequestParseError } from "effect/http/HttpServerError"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as Socket from "effect/socket/Socket"
import type { ExchangeHost, Takeover } from "../conn/Exchange.ts"
import type { ResponseTarget } from "../gateway/ResponseTarget.ts"
import { isToken } from "../wire/chars.ts"
import { valueMax } from "../wire/fields.ts"
import type { RequestHead } from "./Parser.ts"
import { fromWs } from "./WebSocketSocket.ts"

/**
 * How a server's WebSockets are set up. Times in milliseconds, 0 for none.
 *
 * @since 0.1.0
 * @category models
 */
export interface WebSocketSettings {
  /** Largest message (or frame) accepted; a larger one closes the socket with 1009. */
  readonly maxMessageSize: number
  /** A ping this often; a peer that has not answered the previous one by then is dropped. */
  readonly pingInterval: number
  /** Offer permessage-deflate (RFC 7692) to clients that ask for it. */
  readonly compression: boolean
}

/**
 * The `ws` server that performs handshakes and framing for one HTTP server. It accepts no
 * connections of its own (`noServer`) and keeps no list of clients: the connection driver
 * tracks them.
 *
 * @since 0.1.0
 * @category constructors
 */
export const webSocketServer = (settings: WebSocketSettings): WebSocketServer =>
  new WebSocketServer({
    noServer: true,
    clientTracking: false,
    maxPayload: settings.maxMessageSize,
    perMessageDeflate: settings.compression,
    // The subprotocol was chosen when the app asked for the upgrade (see `upgrade`).
    // `request` is the HandshakeRequest passed to handleUpgrade below, not a Node request.
    handleProtocols: (_protocols, request) => (request as unknown as HandshakeRequest).chosenProtocol ?? false
  })

/**
 * What an upgrade needs of the exchange whose connection switches (an `HttpExchange`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Upgradable extends ResponseTarget {
  readonly head: RequestHead
  readonly upgraded: boolean
  /** Completes once the request body has ended; false when it was cut short. */
  readonly bodyFinished: Effect.Effect<boolean>
  /** The `101` went out: no response follows. */
  switched(): void
}

/** The part of a Node request that `ws` reads during a handshake, with the subprotocol we chose. */
interface HandshakeRequest {
  readonly method: string
  readonly url: string
  readonly headers: Readonly<Record<string, string>>
  readonly chosenProtocol: string | undefined
}

/** RFC 6455 §4.1: the key is 16 random bytes in base64. */
const keyPattern = /^[+/0-9A-Za-z]{22}==$/

/** Fields the transport sets on a `101` (RFC 9110 §7.6.1, §7.8) and a body cannot follow it. */
const reserved = new Set(["connection", "upgrade", "content-length", "transfer-encoding"])

/** The values of the request's fields named `name` (lowercase), as one comma-separated list. */
const fieldList = (raw: ReadonlyArray<string>, name: string): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() !== name) continue
    for (const member of raw[i + 1].split(",")) {
      const trimmed = member.trim()
      if (trimmed !== "") out.push(trimmed)
    }
  }
  return out
}

const fieldValue = (raw: ReadonlyArray<string>, name: string): string | undefined => {
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) return raw[i + 1]
  return undefined
}

/** The lines of the request's fields named `name` (lowercase) joined into one (RFC 9110 §5.3), or undefined. */
const fieldLines = (raw: ReadonlyArray<string>, name: string): string | undefined => {
  let joined: string | undefined
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].toLowerCase() === name) joined = joined === undefined ? raw[i + 1] : `${joined}, ${raw[i + 1]}`
  }
  return joined
}

/** The fields a handshake reads, as `ws` expects them on a Node request (lowercase, one value each). */
const handshakeHeaders = (raw: ReadonlyArray<string>, offered: ReadonlyArray<string>): Record<string, string> => {
  const headers: Record<string, string> = { upgrade: "websocket" }
  for (const name of ["sec-websocket-key", "sec-websocket-version", "origin"]) {
    const value = fieldValue(raw, name)
    if (value !== undefined) headers[name] = value
  }
  // RFC 6455 §9.1: the extension offers may come in several lines, which make one list.
  const extensions = fieldLines(raw, "sec-websocket-extensions")
  if (extensions !== undefined) headers["sec-websocket-extensions"] = extensions
  if (offered.length > 0) headers["sec-websocket-protocol"] = offered.join(", ")
  return headers
}

const refused = (request: HttpServerRequest, description: string): HttpServerError =>
  new HttpServerError({ reason: new RequestParseError({ request, description }) })

const invalid = (request: HttpServerRequest, description: string): HttpServerError =>
  new HttpServerError({ reason: new InternalError({ request, description }) })

const openError = (message: string): Socket.SocketError =>
  new Socket.SocketError({ reason: new Socket.SocketOpenError({ kind: "Unknown", cause: new Error(message) }) })

/** RFC 6455 §7.4.1: 1000 when the app ended normally, 1001 when it was interrupted, else 1011. */
const closeCode = (exit: Exit.Exit<unknown, unknown>): number =>
  Exit.isSuccess(exit) ? 1000 : Cause.hasInterruptsOnly(exit.cause) ? 1001 : 1011

/**
 * Pings a WebSocket on the server's sweep (every `interval` ms, 0 for never) and drops it when the
 * previous ping went unanswered; closes it with 1001 when the server stops.
 */
class Heartbeat implements Takeover {
  deadline: number
  private readonly ws: WebSocket
  private readonly interval: number
  private waiting = false

  constructor(ws: WebSocket, interval: number) {
    this.ws = ws
    this.interval = interval
    this.deadline = interval > 0 ? Date.now() + interval : 0
    ws.on("pong", () => {
      this.waiting = false
    })
  }

  stop(): void {
    // RFC 6455 §7.4.1: 1001, the server is going away (a no-op once a close has begun).
    this.ws.close(1001)
  }

  tick(now: number): void {
    if (this.waiting) {
      // RFC 6455 §5.5.2-3: a peer that does not answer a ping is gone; no close handshake with it.
      this.ws.terminate()
      this.deadline = 0
      return
    }
    this.waiting = true
    this.ws.ping()
    this.deadline = now + this.interval
  }
}

/**
 * Waits for the request body to end, then takes the socket from the driver, or fails when the
 * connection is gone or the body was cut short (its rest would be read as the new protocol).
 */
const takeSocket = (
  exchange: Upgradable,
  host: ExchangeHost
): Effect.Effect<{ readonly socket: Net.Socket; readonly rest: Buffer }, Socket.SocketError> =>
  Effect.flatMap(exchange.bodyFinished, (clean) => {
    if (exchange.upgraded) return Effect.fail(openError("the connection is already upgraded"))
    if (exchange.closed) return Effect.fail(openError("the connection closed before the upgrade"))
    if (!clean) return Effect.fail(openError("the request body did not end cleanly before the upgrade"))
    if (exchange.headSent) return Effect.fail(openError("a response was sent instead of the upgrade"))
    return Effect.succeed(host.handOver())
  })

/**
 * Upgrades the exchange's connection for `request`, with the app's `headers` for the `101`.
 *
 * @since 0.1.0
 */
export const upgrade = (
  exchange: Upgradable,
  host: ExchangeHost,
  request: HttpServerRequest,
  headers: Headers.Headers,
  webSockets: () => WebSocketServer,
  settings: WebSocketSettings
): Effect.Effect<Socket.Socket, HttpServerError> => {
  const head = exchange.head
  const raw = head.rawHeaders
  // RFC 9110 §7.8: Upgrade is ignored in HTTP/1.0 requests; it takes `Connection: upgrade`.
  const protocols = fieldList(raw, "upgrade")
  const connection = fieldList(raw, "connection").map((option) => option.toLowerCase())
  if (head.versionMinor !== 1 || protocols.length === 0 || !connection.includes("upgrade")) {
    return Effect.fail(refused(request, "the request does not ask for a connection upgrade"))
  }
  if (exchange.upgraded) return Effect.fail(refused(request, "the connection is already upgraded"))
  if (exchange.headSent || exchange.closed) return Effect.fail(refused(request, "the response has already begun"))
  const names = Object.keys(headers)
  if (protocols.some((protocol) => protocol.toLowerCase() === "websocket")) {
    // RFC 6455 §4.2.1: a GET with a 16-byte key and version 13.
    if (head.method !== "GET") return Effect.fail(refused(request, "a WebSocket handshake is a GET request"))
    const key = fieldValue(raw, "sec-websocket-key")
    if (key === undefined || !keyPattern.test(key)) {
      return Effect.fail(refused(request, "missing or invalid Sec-WebSocket-Key"))
    }
    if (fieldValue(raw, "sec-websocket-version")?.trim() !== "13") {
      // RFC 6455 §4.2.2: 426 with the version this server speaks.
      const text = "WebSocket version 13 is required\n"
      exchange.send(
        {
          status: 426,
          statusText: undefined,
          headers: { "content-type": "text/plain; charset=utf-8", "sec-websocket-version": "13" },
          setCookies: undefined,
          contentLength: text.length,
          withoutBody: false
        },
        text
      )
      return Effect.fail(refused(request, "unsupported Sec-WebSocket-Version: version 13 is required"))
    }
    const offered = fieldList(raw, "sec-websocket-protocol")
    // Effect's contract: a WebSocket `101` takes no custom headers. The one this server allows
    // is the subprotocol, chosen by the app among those the client offered (RFC 6455 §4.2.2);
    // without it the first offered is chosen, as `ws` does.
    const unsupported = names.filter((name) => name !== "sec-websocket-protocol")
    if (unsupported.length > 0) {
      return Effect.fail(
        invalid(request, `WebSocket upgrades do not support custom response headers: ${unsupported.join(", ")}`)
      )
    }
    const wanted = headers["sec-websocket-protocol"]
    if (wanted !== undefined && !offered.includes(wanted)) {
      return Effect.fail(invalid(request, `the client did not offer the subprotocol ${JSON.stringify(wanted)}`))
    }
    const handshake: HandshakeRequest = {
      method: head.method,
      url: head.url,
      headers: handshakeHeaders(raw, offered),
      chosenProtocol: wanted ?? offered[0]
    }
    const open = Effect.flatMap(takeSocket(exchange, host), ({ socket, rest }) =>
      Effect.callback<WebSocket, Socket.SocketError>((resume) => {
        if (socket.destroyed) return resume(Effect.fail(openError("the connection closed before the upgrade")))
        // ws answers a handshake it refuses itself and never calls back; the close says so.
        const onClose = () => resume(Effect.fail(openError("the connection closed during the upgrade")))
        socket.once("close", onClose)
        // The handshake reads only these fields of a Node request.
        const request = handshake as unknown as IncomingMessage
        webSockets().handleUpgrade(request, socket, rest, (ws) => {
          socket.off("close", onClose)
          exchange.switched()
          host.watch(new Heartbeat(ws, settings.pingInterval))
          resume(Effect.succeed(ws))
        })
        // Paused by the hand-over: now `ws` reads it.
        socket.resume()
        return Effect.sync(() => socket.off("close", onClose))
      })
    )
    return Effect.succeed(
      fromWs(Effect.acquireRelease(open, (ws, exit) => Effect.sync(() => ws.close(closeCode(exit)))))
    )
  }
  for (const name of names) {
    if (reserved.has(name)) return Effect.fail(invalid(request, `upgrade responses cannot set the ${name} header`))
    if (!isToken(name) || valueMax(headers[name]) === -1) {
      return Effect.fail(invalid(request, `invalid upgrade response header: ${name}`))
    }
  }
  // RFC 9110 §15.2.2: the 101 names the protocol switched to: the first the client listed.
  const protocol = protocols[0]
  const open = Effect.map(takeSocket(exchange, host), ({ socket, rest }) => {
    let response = `HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${protocol}\r\n`
    for (const name of names) response += `${name}: ${headers[name]}\r\n`
    socket.write(`${response}\r\n`, "latin1")
    exchange.switched()
    // What the client sent after its request is the new protocol's first bytes.
    if (rest.length > 0) socket.unshift(rest)
    return socket
  })
  return NodeSocket.fromDuplex(
    Effect.acquireRelease(open, (socket) =>
      Effect.sync(() => {
        if (!socket.destroyed) socket.destroySoon()
      })
    )
  )
}
