/**
 * HTTP/1.1 as the connection driver's protocol: the request parser, the exchange with HTTP/1.1
 * response framing, and the server's own responses with `Connection: close` when they end the
 * connection. Keep-alive is HTTP's: the connection persists unless the request or the response
 * says otherwise (RFC 9112 §9.3).
 *
 * @since 0.1.0
 */
import type { Protocol } from "../conn/Protocol.ts"
import { simpleResponse } from "../wire/simpleResponse.ts"
import { HttpExchange, type HttpSettings } from "./HttpExchange.ts"
import { type ParserLimits, type RequestHead, RequestParser } from "./Parser.ts"

/**
 * @since 0.1.0
 * @category constructors
 */
export const http1Protocol = (limits: ParserLimits, settings: HttpSettings): Protocol<RequestHead, HttpExchange> => ({
  decoder: () => new RequestParser(limits),
  exchange: (host, head) => new HttpExchange(host, head, settings),
  simpleResponse: (status, text, close) => simpleResponse(status, text, close, settings.serverName),
  peerIsClient: true
})
