/**
 * The one request of an SCGI connection and its response: the request as the CGI variables map
 * it, and the CGI framing of the response (RFC 3875 §6: a `Status:` field, the header fields, an
 * empty line and a body that the connection's close delimits). What every protocol shares is the
 * `Exchange` it extends; SCGI never keeps a connection after its request.
 *
 * @since 0.1.0
 */
import { Exchange, type ExchangeHost } from "../conn/Exchange.ts"
import type { ResponseInit } from "../gateway/ResponseTarget.ts"
import type { TlsInfo } from "../listen/Tls.ts"
import type { EncodedHead } from "../wire/fields.ts"
import type { Environ, MappedRequest } from "./Environ.ts"
import { encodeScgiHead, simpleScgiResponse } from "./ScgiEncoder.ts"

/**
 * @since 0.1.0
 * @category models
 */
export class ScgiExchange extends Exchange {
  readonly method: string
  readonly url: string
  readonly rawHeaders: ReadonlyArray<string>
  /** The client's address, as the front end passed it (REMOTE_ADDR). */
  readonly remoteAddress: string | undefined
  readonly protocol: "http" | "https"
  readonly protocolLabel: string
  readonly environ: Environ

  constructor(host: ExchangeHost, mapped: MappedRequest, maxBodySize: number) {
    // SCGI: one request per connection; the body's length is always declared, and always read.
    super(host, maxBodySize, false, -1)
    this.method = mapped.method
    this.url = mapped.url
    this.rawHeaders = mapped.rawHeaders
    this.remoteAddress = mapped.remoteAddress
    this.protocol = mapped.protocol
    this.protocolLabel = mapped.protocolLabel
    this.environ = mapped.environ
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

  protected encodeHead(init: ResponseInit): EncodedHead | string {
    return encodeScgiHead(init)
  }

  protected simpleResponse(status: number, text: string): string {
    return simpleScgiResponse(status, text)
  }
}
