/**
 * Serialising HTTP/1.1 response heads and chunked body framing (RFC 9112 §4, §6, §7.1), as pure
 * functions over strings.
 *
 * @since 0.1.0
 */
import type { ResponseInit } from "../gateway/ResponseTarget.ts"
import { appendFields, type EncodedHead, valueMax } from "../wire/fields.ts"
import { httpDate } from "../wire/httpDate.ts"
import { reasonPhrase } from "../wire/reasons.ts"

/**
 * Header fields whose value the server derives from the message framing and connection state;
 * the application's values for them are not copied (RFC 9112 §6, §9.6).
 */
const managed = new Set(["content-length", "transfer-encoding", "connection", "keep-alive"])

/** Status lines for the standard reason phrases, built on first use. */
const statusLines: Array<string | undefined> = []

/**
 * Encodes a response head, or returns a description of what makes it invalid (a bad status, a
 * header name that is not a token, a value with CR/LF/NUL or characters beyond Latin-1).
 *
 * @since 0.1.0
 */
export const encodeHead = (
  h: ResponseInit,
  /** Send Transfer-Encoding: chunked (when `h.contentLength` is -1). */
  chunked: boolean,
  /** Send Connection: close. */
  close: boolean,
  /** Send Connection: keep-alive (an HTTP/1.0 client that asked to persist). */
  keepAlive: boolean,
  /** The Server header value; empty for none. */
  server: string
): EncodedHead | string => {
  const status = h.status
  // RFC 9110 §15: a final status is a three-digit code from 200 to 599; 1xx are interim only.
  if (!Number.isInteger(status) || status < 200 || status > 599) return `invalid response status: ${status}`
  let max = 0
  let head: string
  if (h.statusText === undefined) {
    head = statusLines[status] ??= `HTTP/1.1 ${status} ${reasonPhrase(status, undefined)}\r\n`
  } else {
    max = valueMax(h.statusText)
    // RFC 9112 §4: reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
    if (max === -1) return "invalid status text"
    head = `HTTP/1.1 ${status} ${h.statusText}\r\n`
  }
  const fields = appendFields(head, max, h, managed)
  if (typeof fields === "string") return fields
  head = fields.head
  if (h.contentLength >= 0) head += `content-length: ${h.contentLength}\r\n`
  else if (chunked) head += "transfer-encoding: chunked\r\n"
  if (close) head += "connection: close\r\n"
  else if (keepAlive) head += "connection: keep-alive\r\n"
  if (h.headers.date === undefined) head += `date: ${httpDate()}\r\n`
  if (h.headers.server === undefined && server !== "") head += `server: ${server}\r\n`
  return { head: `${head}\r\n`, latin1: fields.latin1 }
}

/**
 * The interim response sent when the application first reads a body the client is holding back
 * with `Expect: 100-continue` (RFC 9110 §10.1.1, §15.2.1).
 *
 * @since 0.1.0
 */
export const continueResponse = "HTTP/1.1 100 Continue\r\n\r\n"

/**
 * The framing line before a chunk of `size` bytes (RFC 9112 §7.1).
 *
 * @since 0.1.0
 */
export const chunkHeader = (size: number): string => `${size.toString(16)}\r\n`

/**
 * The last chunk with an empty trailer section (RFC 9112 §7.1).
 *
 * @since 0.1.0
 */
export const lastChunk = "0\r\n\r\n"
