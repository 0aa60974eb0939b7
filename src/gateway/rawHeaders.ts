/**
 * Request header fields in the order and case they were received.
 *
 * @since 0.1.0
 */
import type { HttpServerRequest } from "effect/http/HttpServerRequest"
import type { TlsInfo } from "../listen/Tls.ts"

const hasRawHeaders = (source: unknown): source is { readonly rawHeaders: ReadonlyArray<string> } =>
  typeof source === "object" && source !== null && "rawHeaders" in source && Array.isArray(source.rawHeaders)

/**
 * The request's header field lines as `[name, value]` pairs in received order, with names in
 * received case and repeated fields kept apart. Effect's `request.headers` is a lowercased map
 * that joins repeated fields; this is the wire view. Works for requests from this package's
 * servers and from `NodeHttpServer`; for other sources it falls back to the header map.
 *
 * @since 0.1.0
 * @category accessors
 */
export const rawHeaders = (request: HttpServerRequest): Array<readonly [string, string]> => {
  const source = request.source
  if (hasRawHeaders(source)) {
    const raw = source.rawHeaders
    const out: Array<readonly [string, string]> = []
    for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]])
    return out
  }
  return Object.entries(request.headers)
}

/**
 * The TLS session of a request received over HTTPS by this package's servers: protocol, cipher,
 * ALPN, and the client certificate when one was asked for. Undefined for plain HTTP and for
 * requests from other servers.
 *
 * @since 0.1.0
 * @category accessors
 */
export const tlsInfo = (request: HttpServerRequest): TlsInfo | undefined => {
  const source = request.source
  return typeof source === "object" && source !== null && "tls" in source
    ? (source.tls as TlsInfo | undefined)
    : undefined
}
