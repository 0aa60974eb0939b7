/**
 * What a complete HTTP/1.1 request head means (RFC 9110, RFC 9112): the request-target's form and
 * the URL the application sees, whether Host is acceptable, how the body is framed
 * (Content-Length or chunked), whether the connection persists and whether the client waits for
 * `100 Continue`, or else the refusal with the status that answers it.
 *
 * The request parser tokenizes: it finds lines, splits the request line and field lines and
 * collects the values of the fields that frame or route the request. Deciding what those values
 * mean is a separate job with rules of its own (RFC 9110's list syntax and semantics rather than
 * RFC 9112's byte grammar), so it is a pure function here, called once per complete head with
 * the collected values and the body size limit.
 *
 * @since 0.1.0
 */

import { isToken } from "../wire/chars.ts"
import { isValidAuthority } from "../wire/fields.ts"
import { HttpProtocolError, type ProtocolStatus } from "./HttpProtocolError.ts"

/**
 * A parsed request head.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestHead {
  readonly _tag: "Head"
  readonly method: string
  /** The request-target exactly as received. */
  readonly target: string
  /** What the application sees as its URL: the origin-form target, path and query of an absolute-form target, or `*`. */
  readonly url: string
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  readonly versionMinor: 0 | 1
  /** Field names and values in received order and case: `[name0, value0, name1, value1, ...]`. */
  readonly rawHeaders: ReadonlyArray<string>
  /** The authority of an absolute-form target, which replaces Host (RFC 9112 §3.2.2). */
  readonly authority: string | undefined
  /** The declared Content-Length, or -1 when there is none. */
  readonly contentLength: number
  readonly chunked: boolean
  /** Whether the connection may carry another request after this one (RFC 9112 §9.3). */
  readonly keepAlive: boolean
  /** `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1). */
  readonly expectContinue: boolean
}

const COLON = 0x3a

const refuse = (status: ProtocolStatus, reason: string) => new HttpProtocolError({ status, reason })

/**
 * The meaning of a complete request head: the `RequestHead` event, which carries the target's URL
 * and authority, the body's framing and the keep-alive decision, or the refusal with its status.
 * `hostCount` and `host` are the number of Host field lines and the last one's value; each of
 * Content-Length, Transfer-Encoding, Connection and Expect is passed as its field lines' values
 * in received order, or `undefined` when absent.
 *
 * The event is built here, not from a decision object returned to the parser, so that a request
 * costs no allocation beyond the event itself; the arguments are plain values for the same reason.
 *
 * @since 0.1.0
 */
export const interpretHead = (
  method: string,
  target: string,
  minor: 0 | 1,
  rawHeaders: ReadonlyArray<string>,
  hostCount: number,
  host: string,
  contentLengths: ReadonlyArray<string> | undefined,
  transferEncoding: ReadonlyArray<string> | undefined,
  connection: ReadonlyArray<string> | undefined,
  expect: ReadonlyArray<string> | undefined,
  maxBodySize: number
): RequestHead | HttpProtocolError => {
  // Request target forms, RFC 9112 §3.2.
  let url = target
  let authority: string | undefined
  if (method === "CONNECT") {
    // RFC 9110 §9.3.6: CONNECT asks for a tunnel; an origin server does not implement it.
    return refuse(501, "CONNECT is not supported")
  }
  if (target.charCodeAt(0) !== 0x2f) {
    if (target === "*") {
      // RFC 9112 §3.2.4: the asterisk-form is only used with OPTIONS.
      if (method !== "OPTIONS") return refuse(400, "asterisk-form request-target is only valid for OPTIONS")
    } else {
      // RFC 9112 §3.2.2: a server MUST accept the absolute-form; the app sees path and query.
      const parsed = parseAbsoluteForm(target)
      if (parsed === undefined) return refuse(400, "invalid request-target")
      authority = parsed.authority
      url = parsed.url
    }
  }

  // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, with more than one Host field line,
  // or with an invalid Host value (also checked on HTTP/1.0, where Host is optional).
  if (hostCount > 1) return refuse(400, "multiple Host header fields")
  if (hostCount === 0 && minor === 1) return refuse(400, "missing Host header field")
  if (hostCount === 1 && !isValidAuthority(host)) return refuse(400, "invalid Host header field")

  let contentLength = -1
  let chunked = false
  let forceClose = false
  if (transferEncoding !== undefined) {
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
    if (minor === 0) return refuse(400, "Transfer-Encoding in an HTTP/1.0 request")
    // RFC 9112 §6.1: a server MAY reject a request with both Content-Length and
    // Transfer-Encoding, and MUST close the connection either way; we reject (smuggling).
    if (contentLengths !== undefined) return refuse(400, "both Content-Length and Transfer-Encoding")
    const codings = listElements(transferEncoding)
    const last = codings.length - 1
    // RFC 9112 §6.3 (4): if chunked is not the final coding the length cannot be determined: 400.
    if (last < 0 || codingName(codings[last]) !== "chunked") {
      return refuse(400, "chunked is not the final transfer coding")
    }
    for (let i = 0; i < last; i++) {
      // RFC 9112 §7.1: chunked MUST NOT be applied more than once.
      if (codingName(codings[i]) === "chunked") {
        return refuse(400, "chunked transfer coding applied more than once")
      }
    }
    if (!isToken(codings[last])) return refuse(400, "invalid transfer coding")
    // RFC 9112 §6.1: a transfer coding the server does not understand gets 501; chunked is the
    // only one this server decodes.
    if (last > 0) return refuse(501, `transfer coding not implemented: ${codingName(codings[0])}`)
    chunked = true
  } else if (contentLengths !== undefined) {
    // RFC 9110 §8.6 / RFC 9112 §6.3 (5): Content-Length = 1*DIGIT; identical duplicates (lines
    // or list members) may be merged, anything else is an unrecoverable framing error.
    // The usual case, one line of plain digits, needs no list splitting.
    const values =
      contentLengths.length === 1 && isDigits(contentLengths[0]) ? contentLengths : listElements(contentLengths, true)
    const first = values[0]
    if (first === undefined || !isDigits(first)) return refuse(400, "invalid Content-Length")
    for (let i = 1; i < values.length; i++) {
      if (values[i] !== first) return refuse(400, "conflicting Content-Length values")
    }
    const trimmed = first.length > 1 && first.charCodeAt(0) === 0x30 ? first.replace(/^0+(?=\d)/, "") : first
    // More digits than the largest safe integer has are over any body limit.
    contentLength = trimmed.length > 15 ? Number.POSITIVE_INFINITY : Number(trimmed)
    if (contentLength > maxBodySize) {
      return refuse(413, "declared Content-Length exceeds the body size limit")
    }
  }

  let keepAlive = minor === 1
  if (connection !== undefined) {
    // RFC 9112 §9.3: "close" ends the connection after the response; HTTP/1.0 persists only
    // with "keep-alive" (RFC 9112 §C.2.2).
    for (const option of listElements(connection)) {
      const lower = option.toLowerCase()
      if (lower === "close") {
        forceClose = true
      } else if (lower === "keep-alive" && minor === 0) {
        keepAlive = true
      }
    }
  }
  if (forceClose) keepAlive = false

  let expectContinue = false
  if (expect !== undefined) {
    for (const expectation of listElements(expect)) {
      if (expectation.toLowerCase() === "100-continue") {
        // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored.
        expectContinue = minor === 1
      } else {
        // RFC 9110 §10.1.1: any other expectation may be answered with 417.
        return refuse(417, "unsupported expectation")
      }
    }
  }

  return {
    _tag: "Head",
    method,
    target,
    url,
    versionMinor: minor,
    rawHeaders,
    authority,
    contentLength,
    chunked,
    keepAlive,
    expectContinue
  }
}

const isDigits = (s: string): boolean => {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x30 || c > 0x39) return false
  }
  return true
}

/**
 * RFC 9110 §5.6.1: the members of a comma-separated list across all field lines, trimmed.
 * Empty members are ignored as the list rule requires, except for Content-Length where
 * `keepEmpty` keeps them so that "5," is refused rather than read as 5.
 */
const listElements = (values: ReadonlyArray<string>, keepEmpty = false): Array<string> => {
  const out: Array<string> = []
  for (const value of values) {
    for (const member of value.split(",")) {
      const trimmed = member.trim()
      if (trimmed.length > 0 || keepEmpty) out.push(trimmed)
    }
  }
  return out
}

/** A transfer-coding's name, lowercased, without parameters (RFC 9112 §7). */
const codingName = (coding: string): string => {
  const semicolon = coding.indexOf(";")
  return (semicolon === -1 ? coding : coding.slice(0, semicolon)).trim().toLowerCase()
}

const absoluteForm = /^https?:\/\//i

/** RFC 9112 §3.2.2: absolute-form = absolute-URI; only the http and https schemes are served. */
const parseAbsoluteForm = (target: string): { readonly authority: string; readonly url: string } | undefined => {
  if (!absoluteForm.test(target)) return undefined
  const authorityStart = target.indexOf("//") + 2
  let pathStart = authorityStart
  while (pathStart < target.length) {
    const c = target.charCodeAt(pathStart)
    if (c === 0x2f || c === 0x3f) break
    pathStart++
  }
  const authority = target.slice(authorityStart, pathStart)
  // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid.
  if (authority.length === 0 || authority.charCodeAt(0) === COLON || !isValidAuthority(authority)) return undefined
  const rest = target.slice(pathStart)
  return { authority, url: rest.length === 0 ? "/" : rest.charCodeAt(0) === 0x3f ? `/${rest}` : rest }
}
