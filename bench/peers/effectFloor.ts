/**
 * What running the app as Effect's HTTP app costs at the least, shared by the two Effect limits
 * (bench/peers/effect-limit.ts over HTTP, `bench/peers/scgi-net.ts --effect` over SCGI): a request
 * object, a fiber with the request in its context, `HttpEffect.toHandled` (the request scope, the
 * error-to-response mapping), and encoding the `HttpServerResponse` the app returned. The app is
 * examples/echo.ts, the one every server of the bench runs.
 *
 * The request object carries only what that app reads (`url`, `method`, `headers`, `arrayBuffer`),
 * computed when read; it stands for the `HttpServerRequest` with a cast below, which is what makes
 * this a yardstick rather than a server, as is answering only apps that complete without
 * suspending (every echo route the bench drives does).
 */
import { Context, Effect } from "effect"
import * as HttpEffect from "effect/http/HttpEffect"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import type { HttpServerResponse } from "effect/http/HttpServerResponse"
import app from "../../examples/echo.ts"
import { reasonPhrase } from "../../src/wire/reasons.ts"

/** The request as a protocol decoded it. */
export interface FloorInput {
  readonly method: string
  readonly url: string
  /** The header fields by lower-case name, built when the app first reads them. */
  readonly headers: () => Record<string, string>
  readonly body: Uint8Array
}

class FloorRequest {
  readonly method: string
  readonly url: string
  private readonly input: FloorInput
  private fields: Record<string, string> | undefined
  /** The app's response, once it answered. */
  response: HttpServerResponse | undefined
  constructor(input: FloorInput) {
    this.input = input
    this.method = input.method
    this.url = input.url
  }
  get headers(): Readonly<Record<string, string>> {
    if (this.fields === undefined) this.fields = this.input.headers()
    return this.fields
  }
  get arrayBuffer(): Effect.Effect<ArrayBuffer> {
    return Effect.sync(() => {
      const body = this.input.body
      const copy = new ArrayBuffer(body.length)
      new Uint8Array(copy).set(body)
      return copy
    })
  }
}

const handled = HttpEffect.toHandled(app, (request, response) =>
  Effect.sync(() => {
    // The request in the context is the FloorRequest `respond` below put there.
    ;(request as unknown as FloorRequest).response = response
  })
)

/**
 * Every request's context derives from this one: contexts that share a root share the fiber's
 * derived cache (scheduler, tracer, log level), which a fresh `Context.make` would recompute for
 * every fiber (0.35 µs more per request, measured).
 */
const root = Context.empty()

/** Runs the app for one request and returns its response. */
export const respond = (input: FloorInput): HttpServerResponse => {
  const request = new FloorRequest(input)
  // The cast that makes this a yardstick: FloorRequest has only what examples/echo.ts reads.
  const context = Context.add(root, HttpServerRequest, request as unknown as HttpServerRequest)
  const fiber = Effect.runForkWith(context)(handled)
  if (fiber.pollUnsafe() === undefined || request.response === undefined) {
    throw new Error(`the Effect limit answers only requests the app completes at once: ${input.method} ${input.url}`)
  }
  return request.response
}

/**
 * The response as bytes: `statusPrefix` ("HTTP/1.1 " or "Status: ") with the status and its reason
 * phrase, the app's fields, `extra` fields, the body.
 */
export const encodeResponse = (statusPrefix: string, response: HttpServerResponse, extra: string): Buffer => {
  const body = response.body
  const headers = response.headers
  let head = `${statusPrefix}${response.status} ${reasonPhrase(response.status, undefined)}\r\n`
  for (const name in headers) head += `${name}: ${headers[name]}\r\n`
  head += extra
  switch (body._tag) {
    case "Uint8Array": {
      // Effect's response constructors put content-type and content-length in `headers`.
      if (headers["content-length"] === undefined) head += `content-length: ${body.contentLength}\r\n`
      head += "\r\n"
      if (body.text !== undefined) return Buffer.from(head + body.text, "latin1")
      return Buffer.concat([Buffer.from(head, "latin1"), body.body])
    }
    case "Empty":
      return Buffer.from(`${head}content-length: 0\r\n\r\n`, "latin1")
    default:
      throw new Error(`the Effect limit has no encoding for a ${body._tag} body`)
  }
}
