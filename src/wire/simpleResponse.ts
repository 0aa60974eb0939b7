/**
 * The responses a server makes itself (a protocol error, an overload refusal), in each protocol's
 * framing: here, below the protocols, because a prefork primary that hands connections to its
 * workers answers with them too (its queue overflows) without loading protocol code.
 *
 * @since 0.1.0
 */
import { httpDate } from "./httpDate.ts"
import { reasonPhrase } from "./reasons.ts"

/**
 * An HTTP/1.1 response with a plain-text body; `server` names the server unless empty.
 *
 * @since 0.1.0
 */
export const simpleResponse = (status: number, body: string, close: boolean, server: string): string =>
  `HTTP/1.1 ${status} ${reasonPhrase(status, undefined)}\r\n` +
  `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
  (close ? "connection: close\r\n" : "") +
  `date: ${httpDate()}\r\n` +
  (server === "" ? "" : `server: ${server}\r\n`) +
  `\r\n${body}`

/**
 * An SCGI response (CGI's `Status` line, RFC 3875 §6.3.3) with a plain-text body.
 *
 * @since 0.1.0
 */
export const simpleScgiResponse = (status: number, body: string): string =>
  `Status: ${status} ${reasonPhrase(status, undefined)}\r\n` +
  `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
