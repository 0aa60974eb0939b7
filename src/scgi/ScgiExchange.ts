/**
 * The one request of an SCGI connection and its response: the request as the CGI variables map
 * it, and the CGI framing of the response (RFC 3875 §6: a `Status:` field, the header fields, an
 * empty line and a body that the connection's close delimits). What every protocol shares is the
 * `Exchange` it extends; SCGI never keeps a connection after its request.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { HttpServerError, RequestParseError } from "effect/http/HttpServerError"
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import type * as Socket from "effect/socket/Socket"
import { Exchange, type ExchangeHost } from "../conn/Exchange.ts"
import { UpgradeUnavailable } from "../errors.ts"
import type { ResponseInit } from "../gateway/ResponseTarget.ts"
import type { TlsInfo } from "../listen/Tls.ts"
import type { EncodedHead } from "../wire/fields.ts"
import { simpleScgiResponse } from "../wire/simpleResponse.ts"
import type { Environ, MappedRequest } from "./Environ.ts"
import { encodeScgiHead } from "./ScgiEncoder.ts"

/**
 * @since 0.1.0
 * @category models
 */
export class ScgiExchange extends Exchange {
  /** The request as the variables map it. */
  readonly request: MappedRequest

  constructor(host: ExchangeHost, request: MappedRequest, maxBodySize: number) {
    // SCGI: one request per connection; the body's length is always declared, and always read.
    super(host, maxBodySize, false, -1)
    this.request = request
  }

  get method(): string {
    return this.request.method
  }
  get url(): string {
    return this.request.url
  }
  get rawHeaders(): ReadonlyArray<string> {
    return this.request.rawHeaders
  }
  /** The client's address, as the front end passed it (REMOTE_ADDR). */
  get remoteAddress(): string | undefined {
    return this.request.remoteAddress
  }
  /** The client's port, as the front end passed it (REMOTE_PORT). */
  get remotePort(): number | undefined {
    const port = this.request.environ.variables.REMOTE_PORT
    return port === undefined || !/^\d{1,5}$/.test(port) ? undefined : Number(port)
  }
  get protocol(): "http" | "https" {
    return this.request.protocol
  }
  get protocolLabel(): string {
    return this.request.protocolLabel
  }
  get environ(): Environ {
    return this.request.environ
  }
  get target(): string {
    return this.url
  }
  get authority(): undefined {
    return undefined
  }
  /** TLS ends at the front end; `environ.https` tells whether the client used it. */
  get tls(): TlsInfo | undefined {
    return undefined
  }
  /** A front end sends nothing after its request (SCGI: one request per connection). */
  get finalRequest(): boolean {
    return true
  }

  /**
   * SCGI cannot switch protocols: the front end owns the client's connection and nginx's SCGI
   * module passes no upgrade through (proxy WebSockets to the HTTP server instead).
   */
  upgrade(request: HttpServerRequest): Effect.Effect<Socket.Socket, HttpServerError> {
    return Effect.fail(
      new HttpServerError({
        reason: new RequestParseError({
          request,
          description: "connection upgrades are not possible over SCGI: serve WebSockets with the HTTP server",
          cause: new UpgradeUnavailable({ protocol: "scgi" })
        })
      })
    )
  }

  protected encodeHead(init: ResponseInit): EncodedHead | string {
    return encodeScgiHead(init)
  }

  protected simpleResponse(status: number, text: string): string {
    return simpleScgiResponse(status, text)
  }
}
