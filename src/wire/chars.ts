/**
 * Byte classes of HTTP's grammar (RFC 9110, RFC 9112, RFC 3986) as 256-entry lookup tables, used
 * by the HTTP/1.1 parser and encoder and by the SCGI variable mapping.
 *
 * @since 0.1.0
 */

const table = (predicate: (byte: number) => boolean): Uint8Array => {
  const out = new Uint8Array(256)
  for (let i = 0; i < 256; i++) out[i] = predicate(i) ? 1 : 0
  return out
}

const isAlphaNum = (b: number) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a)

/** RFC 9110 §5.6.2: tchar, the characters of a token (methods, field names, codings). */
export const TCHAR = table((b) => isAlphaNum(b) || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(b)))

/**
 * RFC 9110 §5.5: field-value characters, HTAB, SP, VCHAR and obs-text. CR, LF, NUL, the other
 * controls and DEL are refused ("Field values containing CR, LF, or NUL characters are invalid
 * and dangerous").
 */
export const FIELD_VALUE = table((b) => b === 0x09 || (b >= 0x20 && b !== 0x7f))

/**
 * RFC 9112 §3.2 and RFC 3986 §3.3/§3.4: request-target characters. Controls, SP, DEL and bytes
 * above 0x7e are never valid in a URI. Of the printable characters RFC 3986 excludes, `"`, `<`,
 * `>` and `#` are refused because no conforming client sends them unencoded (the fragment is
 * never sent); `{`, `}`, `|`, `^`, `` ` ``, `\`, `[` and `]` are let through because browsers
 * send some of them raw in paths and queries (WHATWG URL percent-encode sets).
 */
export const TARGET = table((b) => b > 0x20 && b < 0x7f && b !== 0x22 && b !== 0x3c && b !== 0x3e && b !== 0x23)

/**
 * RFC 3986 §3.2.2: reg-name and IPv4 characters of a Host (unreserved, pct-encoded and sub-delims).
 */
export const REG_NAME = table((b) => isAlphaNum(b) || "-._~%!$&'()*+,;=".includes(String.fromCharCode(b)))

/** RFC 3986 §3.2.2: characters inside an IP-literal's brackets (IPv6address and IPvFuture). */
export const IP_LITERAL = table((b) => isAlphaNum(b) || "-._~!$&'()*+,;=:".includes(String.fromCharCode(b)))

/**
 * RFC 9110 §5.6.2: whether `s` is a token (a method, a field name, a transfer coding).
 *
 * @since 0.1.0
 */
export const isToken = (s: string): boolean => {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    if (TCHAR[s.charCodeAt(i)] !== 1) return false
  }
  return true
}

/** Value of a hex digit, or -1. */
export const HEX = (() => {
  const out = new Int8Array(256).fill(-1)
  for (let i = 0; i < 10; i++) out[0x30 + i] = i
  for (let i = 0; i < 6; i++) {
    out[0x41 + i] = 10 + i
    out[0x61 + i] = 10 + i
  }
  return out
})()

export const CR = 0x0d
export const LF = 0x0a
export const SP = 0x20
export const HTAB = 0x09
