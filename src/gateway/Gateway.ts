/**
 * The gateway between Effect's HTTP app and a protocol (the role of cheroot's `Gateway`): it runs
 * the app through `HttpEffect.toHandled` (per-request scope, middleware, error-to-status mapping)
 * and turns each `HttpServerResponse` body kind into sends on a `ResponseTarget`. HTTP/1.1 and
 * SCGI share it and differ only in their `ResponseTarget`.
 *
 * @since 0.1.0
 */

import { Readable } from "node:stream"
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Cause, Effect, Stream } from "effect"
import * as Cookies from "effect/http/Cookies"
import * as HttpEffect from "effect/http/HttpEffect"
import type * as Middleware from "effect/http/HttpMiddleware"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import { empty, type HttpServerResponse, omitsBody } from "effect/http/HttpServerResponse"
import type * as Scope from "effect/Scope"
import type { ResponseInit, ResponseTarget } from "./ResponseTarget.ts"
import { ServerRequest } from "./ServerRequest.ts"

/**
 * A response the gateway could not send as the application built it.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidResponse extends Error {
  override readonly name = "InvalidResponse"
}

/**
 * The application with the gateway's response writer attached: run it with the request in its
 * context.
 *
 * @since 0.1.0
 */
export const toHandled = <E, R>(
  app: Effect.Effect<HttpServerResponse, E, R>,
  middleware?: Middleware.HttpMiddleware
): Effect.Effect<void, never, Exclude<R, Scope.Scope> | HttpServerRequest> =>
  HttpEffect.toHandled(app, handleResponse, middleware)

const fallback: ResponseInit = {
  status: 500,
  statusText: undefined,
  headers: { "content-type": "text/plain; charset=utf-8" },
  setCookies: undefined,
  contentLength: 21,
  withoutBody: false
}

/** The head cannot be sent as built: answer 500 instead, and fail so the defect is logged. */
const invalid = (target: ResponseTarget, description: string): Effect.Effect<never> => {
  if (!target.headSent && !target.closed) {
    target.send(
      target.isHead ? { ...fallback, withoutBody: true } : fallback,
      target.isHead ? undefined : "Internal Server Error"
    )
  }
  return Effect.die(new InvalidResponse(description))
}

const sent = (target: ResponseTarget, result: string | undefined): Effect.Effect<void> =>
  result === undefined ? Effect.void : invalid(target, result)

/**
 * RFC 9110 §8.6 and §15: the Content-Length to declare. Never for 204; always 0 for 205, whose
 * framing would otherwise run to the end of the connection (RFC 9112 §6.3); for 304 only the
 * application's own value, which describes the selected representation.
 */
const declaredLength = (status: number, length: number, headers: Readonly<Record<string, string>>): number => {
  if (status === 204) return -1
  if (status === 205) return 0
  if (status === 304) return headerLength(headers)
  return length
}

const headerLength = (headers: Readonly<Record<string, string>>): number => {
  const value = headers["content-length"]
  return value !== undefined && /^\d{1,15}$/.test(value) ? Number(value) : -1
}

const init = (
  target: ResponseTarget,
  response: HttpServerResponse,
  headers: Readonly<Record<string, string>>,
  length: number
): ResponseInit => {
  let setCookies: Array<string> | undefined
  if (!Cookies.isEmpty(response.cookies)) {
    setCookies = Cookies.toSetCookieHeaders(response.cookies)
    // A set-cookie header the app set goes after the response's cookies, as NodeHttpServer sends
    // it: of two cookies with one name, the later line wins (RFC 6265 §5.3).
    const header = headers["set-cookie"]
    if (header !== undefined) {
      setCookies.push(header)
      const { "set-cookie": _, ...others } = headers
      headers = others
    }
  }
  return {
    status: response.status,
    statusText: response.statusText,
    headers,
    setCookies,
    contentLength: declaredLength(response.status, length, headers),
    withoutBody: omitsBody(response, target.isHead)
  }
}

/** Writes chunks in order, waiting for the peer to catch up whenever it falls behind. */
const writeChunks = (target: ResponseTarget, chunks: ReadonlyArray<Uint8Array>, from: number): Effect.Effect<void> => {
  for (let i = from; i < chunks.length; i++) {
    if (!target.write(chunks[i])) {
      return i + 1 < chunks.length ? Effect.andThen(target.drain, writeChunks(target, chunks, i + 1)) : target.drain
    }
  }
  return Effect.void
}

const writeStream = <E>(
  target: ResponseTarget,
  response: HttpServerResponse,
  headers: Readonly<Record<string, string>>,
  length: number,
  stream: Stream.Stream<Uint8Array, E>
): Effect.Effect<void, E> => {
  const head = init(target, response, headers, length)
  const error = target.start(head)
  if (error !== undefined) return invalid(target, error)
  if (head.withoutBody) {
    target.end()
    return Effect.void
  }
  return stream.pipe(
    Stream.runForEachArray((chunks) => writeChunks(target, chunks, 0)),
    // A client that goes away interrupts the request, also while its response is streaming.
    Effect.interruptible,
    Effect.onExit((exit) =>
      Effect.sync(() => {
        if (exit._tag === "Success") target.end()
        else target.abort()
      })
    )
  )
}

const destroyRaw = (body: unknown): void => {
  if (body instanceof Readable) body.destroy()
}

const writeRaw = (
  target: ResponseTarget,
  response: HttpServerResponse,
  raw: unknown,
  contentLength: number | undefined
): Effect.Effect<void, unknown> => {
  const headers = response.headers
  if (typeof raw === "string" || raw instanceof Uint8Array) {
    const head = init(target, response, headers, typeof raw === "string" ? Buffer.byteLength(raw) : raw.length)
    return sent(target, target.send(head, head.withoutBody ? undefined : raw))
  }
  const length = contentLength ?? headerLength(headers)
  if (raw instanceof Readable) {
    if (omitsBody(response, target.isHead)) raw.destroy()
    return writeStream(target, response, headers, length, NodeStream.fromReadable({ evaluate: () => raw }))
  }
  if (raw instanceof ReadableStream) {
    const web: ReadableStream<Uint8Array> = raw
    return writeStream(
      target,
      response,
      headers,
      length,
      Stream.fromReadableStream({ evaluate: () => web, onError: (cause) => cause })
    )
  }
  return invalid(target, `unsupported raw response body: ${typeof raw}`)
}

/** Reported to middleware in place of the response of a request whose connection was upgraded. */
const switchedProtocols = empty({ status: 101 })

/**
 * Sends `response` for `request`: the `handleResponse` of `HttpEffect.toHandled`. For an upgraded
 * connection nothing is sent, and middleware sees the `101` instead of the app's response.
 *
 * @since 0.1.0
 */
export const handleResponse = (
  request: HttpServerRequest,
  response: HttpServerResponse
): Effect.Effect<unknown, unknown> => {
  if (!(request instanceof ServerRequest)) {
    return Effect.die(new InvalidResponse("request was not received by an effect-appserver server"))
  }
  const target = request.source.response
  const body = response.body
  if (target.upgraded) {
    if (body._tag === "Raw") destroyRaw(body.body)
    return Effect.succeed(switchedProtocols)
  }
  if (target.closed || target.headSent) {
    if (body._tag === "Raw") destroyRaw(body.body)
    return Effect.void
  }
  switch (body._tag) {
    case "Empty":
      return sent(target, target.send(init(target, response, response.headers, 0), undefined))
    case "Uint8Array": {
      const head = init(target, response, response.headers, body.contentLength)
      return sent(target, target.send(head, head.withoutBody ? undefined : (body.text ?? body.body)))
    }
    case "Stream":
      return writeStream(
        target,
        response,
        response.headers,
        body.contentLength ?? headerLength(response.headers),
        body.stream
      )
    case "Raw":
      return writeRaw(target, response, body.body, body.contentLength)
    case "FormData": {
      // The web Response encodes the multipart body and its boundary.
      const encoded = new Response(body.formData)
      const headers = {
        ...response.headers,
        "content-type": encoded.headers.get("content-type") ?? "multipart/form-data"
      }
      const web = encoded.body
      if (web === null) return sent(target, target.send(init(target, response, headers, 0), undefined))
      return writeStream(
        target,
        response,
        headers,
        -1,
        Stream.fromReadableStream({ evaluate: () => web, onError: (cause) => cause })
      )
    }
  }
}

/**
 * Whether a failed exchange is worth an error log: failures that produced a 5xx, aborted a
 * response, or produced none while the client was still there; not client errors (4xx) or client
 * disconnects (a body cut short by a client that went away fails the app, but is not a fault).
 *
 * @since 0.1.0
 */
export const isServerFailure = (
  cause: Cause.Cause<unknown>,
  status: number,
  aborted: boolean,
  /** The connection is gone (the client left, or the response was aborted). */
  closed: boolean
): boolean => !Cause.hasInterruptsOnly(cause) && (aborted || status >= 500 || (status === 0 && !closed))
