/**
 * Serialising HTTP/1.1 response heads and chunked body framing (RFC 9112 §4, §6, §7.1), as pure
 * functions over strings. The Date value is cached and reformatted at most once per second.
 *
 * @since 0.1.0
 */
import type { ResponseInit } from "../gateway/ResponseTarget.ts"
import { TCHAR } from "./chars.ts"

/**
 * Reason phrases sent when the application gives no status text (RFC 9110 §15).
 *
 * @since 0.1.0
 * @category constants
 */
export const reasonPhrases: Readonly<Record<number, string>> = {
  100: "Continue",
  101: "Switching Protocols",
  200: "OK",
  201: "Created",
  202: "Accepted",
  203: "Non-Authoritative Information",
  204: "No Content",
  205: "Reset Content",
  206: "Partial Content",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  402: "Payment Required",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  407: "Proxy Authentication Required",
  408: "Request Timeout",
  409: "Conflict",
  410: "Gone",
  411: "Length Required",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  421: "Misdirected Request",
  422: "Unprocessable Content",
  425: "Too Early",
  426: "Upgrade Required",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  451: "Unavailable For Legal Reasons",
  499: "Client Closed Request",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
  507: "Insufficient Storage",
  511: "Network Authentication Required"
}

/**
 * The reason phrase for a status: the application's, the standard one, or an empty one (which
 * RFC 9112 §4 allows).
 *
 * @since 0.1.0
 */
export const reasonPhrase = (status: number, statusText: string | undefined): string =>
  statusText ?? reasonPhrases[status] ?? ""

let cachedDate = ""
let dateTimer: ReturnType<typeof setTimeout> | undefined

/** Reformats the date now and again at the start of the next second. */
const refreshDate = (): void => {
  const now = Date.now()
  cachedDate = new Date(now).toUTCString()
  dateTimer = setTimeout(refreshDate, 1000 - (now % 1000))
  // The timer must never keep the process alive.
  dateTimer.unref()
}

/**
 * The current time as an IMF-fixdate (RFC 9110 §5.6.7). It is formatted once per second, by a
 * timer aligned to the second, so a response costs no clock read or formatting.
 *
 * @since 0.1.0
 */
export const httpDate = (): string => {
  if (dateTimer === undefined) refreshDate()
  return cachedDate
}

/**
 * An encoded head: `latin1` tells whether it holds characters above 0x7f, which must be sent
 * as single bytes rather than UTF-8.
 *
 * @since 0.1.0
 * @category models
 */
export interface EncodedHead {
  readonly head: string
  readonly latin1: boolean
}

/**
 * Header fields whose value the server derives from the message framing and connection state;
 * the application's values for them are not copied (RFC 9112 §6, §9.6).
 */
const managed = new Set(["content-length", "transfer-encoding", "connection", "keep-alive"])

const validNames = new Set<string>()

/** Status lines for the standard reason phrases, built on first use. */
const statusLines: Array<string | undefined> = []

/** RFC 9110 §5.1: a field name is a token. Valid names are remembered (bounded). */
const isValidName = (name: string): boolean => {
  if (validNames.has(name)) return true
  if (name.length === 0) return false
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i)
    if (c > 0x7f || TCHAR[c] === 0) return false
  }
  if (validNames.size < 1024) validNames.add(name)
  return true
}

/**
 * RFC 9110 §5.5: field values are HTAB, SP, VCHAR and obs-text; a CR or LF would split the head
 * (response splitting), so it is never sent. Returns -1 when invalid, else the highest code.
 *
 * @since 0.1.0
 */
export const valueMax = (value: string): number => {
  let max = 0
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) return -1
    if (c > max) max = c
  }
  return max
}

/**
 * Appends the application's header fields (except those in `skip`) and cookies to `head`,
 * validated (a name that is not a token, a value with CR, LF, NUL or characters beyond Latin-1 is
 * described instead), for the HTTP/1.1 and SCGI encoders alike. `max` is the highest character
 * code in `head` so far; `latin1` tells whether the result needs single-byte encoding.
 *
 * @since 0.1.0
 */
export const appendFields = (
  head: string,
  max: number,
  h: ResponseInit,
  skip: ReadonlySet<string>
): EncodedHead | string => {
  const headers = h.headers
  for (const name in headers) {
    if (skip.has(name)) continue
    const value = headers[name]
    if (!isValidName(name)) return `invalid response header name: ${JSON.stringify(name)}`
    const m = valueMax(value)
    if (m === -1) return `invalid value for response header ${name}`
    if (m > max) max = m
    head += `${name}: ${value}\r\n`
  }
  if (h.setCookies !== undefined) {
    for (const cookie of h.setCookies) {
      const m = valueMax(cookie)
      if (m === -1) return "invalid value for response header set-cookie"
      if (m > max) max = m
      head += `set-cookie: ${cookie}\r\n`
    }
  }
  return { head, latin1: max > 0x7f }
}

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
 * A minimal head for responses the server generates itself (protocol errors, fallbacks).
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
