/**
 * Decoding of the short strings a request head is made of. Common methods and field names are
 * recognised byte for byte and returned as shared constants, so the hot path allocates no string
 * for them; anything else is decoded as Latin-1 (RFC 9110 §5.5: field values are octets).
 *
 * @since 0.1.0
 */

interface Latin1Buffer extends Buffer {
  /** Node's internal fast path behind `toString("latin1", start, end)`, without argument checks. */
  latin1Slice(start: number, end: number): string
}

/**
 * Decodes `buf[start, end)` as Latin-1.
 *
 * @since 0.1.0
 */
export const latin1 = (buf: Buffer, start: number, end: number): string =>
  // V8 keeps one string per single character: no call into Node for a one-byte target ("/").
  end - start === 1 ? String.fromCharCode(buf[start]) : (buf as Latin1Buffer).latin1Slice(start, end)

/** The Host values decoded last: a server answers to few names, so most requests repeat one. */
const hosts: Array<string> = ["", "", "", ""]
let nextHost = 0
/** A host name of at most 253 characters (RFC 1035 §2.3.4), a colon and a 5-digit port: longer is not kept. */
const longestHost = 259

/**
 * A Host field's value: the same string as an earlier request's when the bytes are the same
 * (compared in JavaScript, cheaper than decoding anew), else decoded and remembered.
 *
 * @since 0.1.0
 */
export const host = (buf: Buffer, start: number, end: number): string => {
  const length = end - start
  for (let h = 0; h < hosts.length; h++) {
    const known = hosts[h]
    if (known.length !== length || length === 0) continue
    let i = 0
    while (i < length && known.charCodeAt(i) === buf[start + i]) i++
    if (i === length) return known
  }
  const value = latin1(buf, start, end)
  if (length <= longestHost) {
    hosts[nextHost] = value
    nextHost = (nextHost + 1) & (hosts.length - 1)
  }
  return value
}

const table = (words: ReadonlyArray<string>): ReadonlyArray<ReadonlyArray<string> | undefined> => {
  const byLength: Array<Array<string> | undefined> = []
  for (const word of words) (byLength[word.length] ??= []).push(word)
  return byLength
}

const lookup = (
  byLength: ReadonlyArray<ReadonlyArray<string> | undefined>,
  buf: Buffer,
  start: number,
  end: number
): string => {
  const candidates = byLength[end - start]
  if (candidates !== undefined) {
    outer: for (const word of candidates) {
      for (let i = 0; i < word.length; i++) {
        if (buf[start + i] !== word.charCodeAt(i)) continue outer
      }
      return word
    }
  }
  return latin1(buf, start, end)
}

const methods = table(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])

/** `word` as V8's internalized string (property keys are), so that using it as a key needs no lookup. */
const internalized = (word: string): string => Object.keys({ [word]: true })[0]

const commonFieldNames = [
  "Host",
  "User-Agent",
  "Accept",
  "Accept-Encoding",
  "Accept-Language",
  "Connection",
  "Content-Length",
  "Content-Type",
  "Cookie",
  "Authorization",
  "Cache-Control",
  "Origin",
  "Referer",
  "Transfer-Encoding",
  "Expect",
  "If-None-Match",
  "If-Modified-Since",
  "Upgrade-Insecure-Requests",
  "X-Forwarded-For",
  "X-Forwarded-Proto",
  "X-Request-Id"
]

const lowerNames = new Map<string, string>()
for (const name of commonFieldNames) {
  const lower = internalized(name.toLowerCase())
  lowerNames.set(name, lower)
  lowerNames.set(lower, lower)
}

const fieldNames = table([...lowerNames.keys()])

/**
 * A request method, shared for the standard ones.
 *
 * @since 0.1.0
 */
export const method = (buf: Buffer, start: number, end: number): string => lookup(methods, buf, start, end)

/**
 * A field name, shared for common ones in their usual and lowercase spellings.
 *
 * @since 0.1.0
 */
export const fieldName = (buf: Buffer, start: number, end: number): string => lookup(fieldNames, buf, start, end)

/**
 * A field name in lower case. For the common names `fieldName` returns, the lower-case spelling is
 * one internalized string: an object keyed by it (Effect's header map) is built and read without
 * a string-table lookup per field, which a fresh `toLowerCase()` copy costs (270 against 100 ns
 * for a three-field head, measured).
 *
 * @since 0.1.0
 */
export const lowerFieldName = (name: string): string => lowerNames.get(name) ?? name.toLowerCase()
