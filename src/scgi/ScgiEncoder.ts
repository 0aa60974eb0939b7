/**
 * Serialising SCGI response heads, as pure functions over strings. An SCGI response is a CGI
 * response (RFC 3875 §6): a `Status:` header field, the header fields, an empty line and the body,
 * delimited by closing the connection.
 *
 * @since 0.1.0
 */

import type { ResponseInit } from "../gateway/ResponseTarget.ts"
import { appendFields, type EncodedHead, valueMax } from "../wire/fields.ts"
import { reasonPhrase } from "../wire/reasons.ts"

/**
 * Fields the server writes itself or the front end derives from its own connection to the
 * client: the CGI `Status` field (RFC 3875 §6.3.3: the response's status, sent once; a second one
 * from the app's headers would contradict it), hop-by-hop fields (RFC 9110 §7.6.1) and a
 * transfer coding, which SCGI's close-delimited bodies never use.
 */
const managed = new Set(["status", "content-length", "transfer-encoding", "connection", "keep-alive"])

/**
 * Encodes a response head, or returns a description of what makes it invalid (a bad status, a
 * header name that is not a token, a value with CR/LF/NUL or characters beyond Latin-1).
 *
 * @since 0.1.0
 */
export const encodeScgiHead = (h: ResponseInit): EncodedHead | string => {
  const status = h.status
  // RFC 3875 §6.3.3: Status is a three-digit code and a reason phrase; 1xx are not CGI responses.
  if (!Number.isInteger(status) || status < 200 || status > 599) return `invalid response status: ${status}`
  let max = 0
  const reason = reasonPhrase(status, h.statusText)
  if (h.statusText !== undefined) {
    max = valueMax(h.statusText)
    if (max === -1) return "invalid status text"
  }
  const fields = appendFields(`Status: ${status} ${reason}\r\n`, max, h, managed)
  if (typeof fields === "string") return fields
  const length = h.contentLength >= 0 ? `content-length: ${h.contentLength}\r\n` : ""
  return { head: `${fields.head}${length}\r\n`, latin1: fields.latin1 }
}
