/**
 * Field validation shared by the protocols: what a field name, a field value and a Host may hold
 * (RFC 9110 §5, RFC 3986 §3.2), and the appending of an application's response fields to a head.
 * The HTTP/1.1 parser and encoder and the SCGI encoder and variable mapping all check fields with
 * these, so a byte refused on one protocol is refused on the other.
 *
 * @since 0.1.0
 */
import { FIELD_VALUE, IP_LITERAL, isToken, REG_NAME } from "./chars.ts"

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
 * The application's part of a response head: lowercase field names to values, and cookies.
 *
 * @since 0.1.0
 * @category models
 */
export interface ResponseFields {
  readonly headers: Readonly<Record<string, string>>
  readonly setCookies: ReadonlyArray<string> | undefined
}

const validNames = new Set<string>()

/** RFC 9110 §5.1: a field name is a token. Valid names are remembered (bounded). */
const isValidName = (name: string): boolean => {
  if (validNames.has(name)) return true
  if (!isToken(name)) return false
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
 * RFC 9110 §5.5: whether a received field value (already decoded as Latin-1) holds only HTAB, SP,
 * VCHAR and obs-text. CR, LF, NUL, the other controls and DEL are refused: "Field values
 * containing CR, LF, or NUL characters are invalid and dangerous".
 *
 * @since 0.1.0
 */
export const isFieldValue = (value: string): boolean => {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c > 0xff || FIELD_VALUE[c] === 0) return false
  }
  return true
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
  fields: ResponseFields,
  skip: ReadonlySet<string>
): EncodedHead | string => {
  const headers = fields.headers
  for (const name in headers) {
    if (skip.has(name)) continue
    const value = headers[name]
    if (!isValidName(name)) return `invalid response header name: ${JSON.stringify(name)}`
    const m = valueMax(value)
    if (m === -1) return `invalid value for response header ${name}`
    if (m > max) max = m
    head += `${name}: ${value}\r\n`
  }
  if (fields.setCookies !== undefined) {
    for (const cookie of fields.setCookies) {
      const m = valueMax(cookie)
      if (m === -1) return "invalid value for response header set-cookie"
      if (m > max) max = m
      head += `set-cookie: ${cookie}\r\n`
    }
  }
  return { head, latin1: max > 0x7f }
}

const COLON = 0x3a

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39

/**
 * RFC 3986 §3.2.2/§3.2.3 and RFC 9110 §7.2: authority = uri-host [ ":" port ], where uri-host is
 * an IP-literal in brackets or a reg-name/IPv4 address, and port is digits. Userinfo is not
 * allowed in an http(s) authority (RFC 9110 §4.2.4).
 *
 * @since 0.1.0
 */
export const isValidAuthority = (authority: string): boolean => {
  const length = authority.length
  let i = 0
  if (authority.charCodeAt(0) === 0x5b) {
    const close = authority.indexOf("]")
    if (close < 2) return false
    for (i = 1; i < close; i++) {
      if (IP_LITERAL[authority.charCodeAt(i)] !== 1) return false
    }
    i = close + 1
  } else {
    while (i < length && REG_NAME[authority.charCodeAt(i)] === 1) i++
  }
  if (i === length) return true
  if (authority.charCodeAt(i) !== COLON) return false
  for (i++; i < length; i++) {
    if (!isDigit(authority.charCodeAt(i))) return false
  }
  return true
}
