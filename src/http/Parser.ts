/**
 * A sans-I/O, incremental HTTP/1.1 request parser (RFC 9112).
 *
 * Bytes go in with `push`, events come out of `next`: a request head, body data, the end of a
 * message, a request for more data, or a typed `HttpProtocolError` carrying the status to answer
 * with. No sockets, timers or Effect runtime are involved, and input may be split at any byte:
 * the parser resumes where it stopped. Every strictness rule below names the RFC section it
 * implements.
 *
 * @since 0.1.0
 */

import { appendInput } from "../wire/appendInput.ts"
import { CR, FIELD_VALUE, HTAB, isToken, LF, SP, TARGET, TCHAR } from "../wire/chars.ts"
import { isValidAuthority } from "../wire/fields.ts"
import * as intern from "../wire/intern.ts"
import { chunkSizeEnd, chunkSizeValue, isChunkExtensions, maxChunkExtensionBytes } from "./Chunked.ts"
import { HttpProtocolError, type ProtocolStatus } from "./HttpProtocolError.ts"

/**
 * Size and count limits enforced while parsing.
 *
 * @since 0.1.0
 * @category models
 */
export interface ParserLimits {
  /** Longest request line, without its CRLF (414 beyond it). */
  readonly maxRequestLineSize: number
  /** Largest header section, field lines and their CRLFs (431 beyond it); also bounds trailers. */
  readonly maxHeaderSize: number
  /** Most header field lines (431 beyond it); also bounds trailers. */
  readonly maxHeaderCount: number
  /** A declared Content-Length above this is refused with 413 before the body is read. */
  readonly maxBodySize: number
}

/**
 * The defaults: 8 KiB request line, 16 KiB header section, 100 fields, 64 MiB body.
 *
 * @since 0.1.0
 * @category models
 */
export const defaultLimits: ParserLimits = {
  maxRequestLineSize: 8 * 1024,
  maxHeaderSize: 16 * 1024,
  maxHeaderCount: 100,
  maxBodySize: 64 * 1024 * 1024
}

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

/**
 * A slice of decoded body bytes. It is a view into the parser's input, never copied.
 *
 * @since 0.1.0
 * @category models
 */
export interface BodyData {
  readonly _tag: "Data"
  readonly bytes: Buffer
}

/**
 * @since 0.1.0
 * @category models
 */
export interface NeedData {
  readonly _tag: "NeedData"
}

/**
 * The end of a request message: all body bytes and trailers have been consumed.
 *
 * @since 0.1.0
 * @category models
 */
export interface MessageEnd {
  readonly _tag: "End"
}

/**
 * @since 0.1.0
 * @category models
 */
export type ParseEvent = RequestHead | BodyData | NeedData | MessageEnd | HttpProtocolError

/** @since 0.1.0 */
export const needData: NeedData = { _tag: "NeedData" }
/** @since 0.1.0 */
export const messageEnd: MessageEnd = { _tag: "End" }

// Parser states
const HEAD = 0
const PENDING_END = 1
const FIXED = 2
const CHUNK_SIZE = 3
const CHUNK_DATA = 4
const CHUNK_DATA_END = 5
const TRAILERS = 6
const FAILED = 7

const COLON = 0x3a

const EMPTY = Buffer.alloc(0)

const fail = (status: ProtocolStatus, reason: string) => new HttpProtocolError({ status, reason })

/**
 * Incremental request parser for one connection.
 *
 * @since 0.1.0
 * @category parser
 */
export class RequestParser {
  private readonly limits: ParserLimits
  private buf: Buffer = EMPTY
  /** Start of unconsumed input in `buf`. In line-oriented states, the start of the current line. */
  private pos = 0
  /** Bytes of the current line already searched for its LF. */
  private scanned = 0
  private state = HEAD
  private error: HttpProtocolError | undefined

  // head in progress
  private requestLineDone = false
  private skippedEmptyLine = false
  /** Bytes of the request line, from `pos`, already checked by `checkMethodPrefix`. */
  private methodChecked = 0
  private method = ""
  private target = ""
  private minor: 0 | 1 = 1
  private raw: Array<string> | undefined
  private headerBytes = 0
  private trailerCount = 0
  private hostCount = 0
  private host = ""
  private contentLength: Array<string> | undefined
  private transferEncoding: Array<string> | undefined
  private connection: Array<string> | undefined
  private expect: Array<string> | undefined

  // body in progress
  private remaining = 0
  private extensionBytes = 0

  constructor(limits: ParserLimits = defaultLimits) {
    this.limits = limits
  }

  /**
   * Adds received bytes. The parser keeps a reference to `chunk`: do not modify it afterwards.
   */
  push(chunk: Buffer): void {
    this.buf = this.pos >= this.buf.length ? chunk : appendInput(this.buf.subarray(this.pos), chunk)
    this.pos = 0
  }

  /**
   * Whether the unconsumed input holds the end of a head (an empty line), so that a next request
   * has arrived whole or at least its head has. Used when stopping, not per request.
   */
  get hasWholeHead(): boolean {
    return this.state === HEAD && this.buf.indexOf("\r\n\r\n", this.pos) !== -1
  }

  /** Bytes received and not yet returned as events. */
  get buffered(): number {
    return this.buf.length - this.pos
  }

  /** Whether the parser is between messages with nothing of the next one received. */
  get idle(): boolean {
    return this.state === HEAD && !this.requestLineDone && !this.skippedEmptyLine && this.buf.length === this.pos
  }

  /** Whether a request head has started arriving but is not complete. */
  get inHead(): boolean {
    return this.state === HEAD && (this.requestLineDone || this.buf.length > this.pos)
  }

  /**
   * The next event. `NeedData` when the input so far holds no complete event; after an error,
   * the same error forever (the connection must close).
   */
  next(): ParseEvent {
    switch (this.state) {
      case HEAD:
        return this.parseHead()
      case PENDING_END:
        this.state = HEAD
        return messageEnd
      case FIXED:
        return this.fixedData()
      case CHUNK_SIZE:
        return this.chunkSize()
      case CHUNK_DATA:
        return this.chunkData()
      case CHUNK_DATA_END:
        return this.chunkDataEnd()
      case TRAILERS:
        return this.trailers()
      default:
        return this.error!
    }
  }

  private failWith(status: ProtocolStatus, reason: string): HttpProtocolError {
    this.state = FAILED
    this.error = fail(status, reason)
    this.buf = EMPTY
    this.pos = 0
    return this.error
  }

  /**
   * Finds the LF ending the current line. Returns its index, or -1 (NeedData) after recording how
   * far the search got. RFC 9112 §2.2: lines end in CRLF; a bare LF is refused rather than
   * accepted as a terminator, since parsers that disagree on line ends enable request smuggling.
   */
  private findLineEnd(): number {
    const lf = this.buf.indexOf(LF, this.pos + this.scanned)
    if (lf === -1) {
      this.scanned = this.buf.length - this.pos
      return -1
    }
    this.scanned = 0
    return lf
  }

  private parseHead(): ParseEvent {
    const buf = this.buf
    const limits = this.limits
    for (;;) {
      const lf = this.findLineEnd()
      if (lf === -1) {
        if (!this.requestLineDone) {
          // RFC 9112 §3: refuse an over-long or malformed request line before it is complete.
          if (this.scanned > limits.maxRequestLineSize + 1) {
            return this.failWith(414, "request line too long")
          }
          const early = this.checkMethodPrefix()
          if (early !== undefined) return early
        } else if (this.headerBytes + this.scanned > limits.maxHeaderSize + 1) {
          // + 1: a lone CR may begin the empty line that ends the section, which is not counted.
          return this.failWith(431, "header section too large")
        }
        return needData
      }
      const start = this.pos
      if (lf === start || buf[lf - 1] !== CR) {
        return this.failWith(400, "line not terminated by CRLF")
      }
      const end = lf - 1
      this.pos = lf + 1
      if (!this.requestLineDone) {
        if (end === start) {
          // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request
          // line; we ignore exactly one, so a stream of CRLFs cannot keep a connection busy.
          if (this.skippedEmptyLine) return this.failWith(400, "unexpected empty line before request line")
          this.skippedEmptyLine = true
          this.methodChecked = 0
          continue
        }
        if (end - start > limits.maxRequestLineSize) {
          return this.failWith(414, "request line too long")
        }
        const error = this.parseRequestLine(start, end)
        if (error !== undefined) return error
        this.requestLineDone = true
        this.methodChecked = 0
        continue
      }
      if (end === start) {
        return this.finishHead()
      }
      this.headerBytes += lf + 1 - start
      if (this.headerBytes > limits.maxHeaderSize) {
        return this.failWith(431, "header section too large")
      }
      if (this.raw !== undefined && this.raw.length >= limits.maxHeaderCount * 2) {
        return this.failWith(431, "too many header fields")
      }
      const error = this.parseField(start, end, true)
      if (error !== undefined) return error
    }
  }

  /** RFC 9112 §3.1: the method is a token; garbage (a TLS handshake, say) fails at once. */
  private checkMethodPrefix(): HttpProtocolError | undefined {
    const buf = this.buf
    let i = this.pos
    // one leading CRLF may precede the request line
    if (!this.skippedEmptyLine && buf[i] === CR) i += 2
    const end = this.buf.length
    // What earlier calls checked is not checked again: a dribbled request line costs linear time.
    i = Math.max(i, this.pos + this.methodChecked)
    for (; i < end; i++) {
      const b = buf[i]
      if (b === SP) return undefined
      if (TCHAR[b] === 0) return this.failWith(400, "invalid method")
    }
    this.methodChecked = end - this.pos
    return undefined
  }

  /** RFC 9112 §3: request-line = method SP request-target SP HTTP-version, single spaces. */
  private parseRequestLine(start: number, end: number): HttpProtocolError | undefined {
    const buf = this.buf
    let i = start
    while (i < end && TCHAR[buf[i]] === 1) i++
    // RFC 9110 §9.1: the method is a case-sensitive token.
    if (i === start || i >= end || buf[i] !== SP) return this.failWith(400, "invalid method")
    this.method = intern.method(buf, start, i)
    const targetStart = ++i
    while (i < end && TARGET[buf[i]] === 1) i++
    // RFC 9112 §3.2: a request-target with invalid characters gets 400.
    if (i === targetStart || i >= end || buf[i] !== SP) return this.failWith(400, "invalid request-target")
    this.target = intern.latin1(buf, targetStart, i)
    i++
    // RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
    if (
      end - i !== 8 ||
      buf[i] !== 0x48 ||
      buf[i + 1] !== 0x54 ||
      buf[i + 2] !== 0x54 ||
      buf[i + 3] !== 0x50 ||
      buf[i + 4] !== 0x2f ||
      buf[i + 6] !== 0x2e ||
      !isDigit(buf[i + 5]) ||
      !isDigit(buf[i + 7])
    ) {
      return this.failWith(400, "invalid HTTP version")
    }
    // RFC 9110 §6.2, §15.6.6: a server may refuse a protocol version with 505. This server speaks
    // exactly HTTP/1.0 and HTTP/1.1 and refuses every other version rather than guessing at it.
    if (buf[i + 5] !== 0x31 || buf[i + 7] > 0x31) return this.failWith(505, "HTTP version not supported")
    this.minor = buf[i + 7] === 0x31 ? 1 : 0
    return undefined
  }

  /**
   * RFC 9112 §5: field-line = field-name ":" OWS field-value OWS. `special` marks the fields that
   * frame or route the request, which are collected for checks once the head is complete.
   */
  private parseField(start: number, end: number, special: boolean): HttpProtocolError | undefined {
    const buf = this.buf
    const first = buf[start]
    // RFC 9112 §5.2: obsolete line folding is refused with 400 in requests.
    if (first === SP || first === HTAB) return this.failWith(400, "obsolete line folding")
    let i = start
    while (i < end && TCHAR[buf[i]] === 1) i++
    if (i === start || i >= end || buf[i] !== COLON) {
      // RFC 9112 §5.1: no whitespace between field name and colon; a server MUST reject it with 400.
      return this.failWith(
        400,
        i < end && (buf[i] === SP || buf[i] === HTAB) ? "whitespace before colon" : "invalid field name"
      )
    }
    const nameEnd = i
    i++
    while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++
    let valueEnd = end
    while (valueEnd > i && (buf[valueEnd - 1] === SP || buf[valueEnd - 1] === HTAB)) valueEnd--
    // RFC 9110 §5.5: CR, LF and NUL in a field value are invalid; other controls and DEL too.
    for (let j = i; j < valueEnd; j++) {
      if (FIELD_VALUE[buf[j]] === 0) return this.failWith(400, "invalid character in field value")
    }
    if (!special) return undefined
    const name = intern.fieldName(buf, start, nameEnd)
    const value = intern.latin1(buf, i, valueEnd)
    ;(this.raw ??= []).push(name, value)
    switch (nameEnd - start) {
      case 4:
        if (name.toLowerCase() === "host") {
          this.hostCount++
          this.host = value
        }
        break
      case 6:
        if (name.toLowerCase() === "expect") (this.expect ??= []).push(value)
        break
      case 10:
        if (name.toLowerCase() === "connection") (this.connection ??= []).push(value)
        break
      case 14:
        if (name.toLowerCase() === "content-length") (this.contentLength ??= []).push(value)
        break
      case 17:
        if (name.toLowerCase() === "transfer-encoding") (this.transferEncoding ??= []).push(value)
        break
    }
    return undefined
  }

  private finishHead(): ParseEvent {
    const minor = this.minor
    const method = this.method
    const target = this.target

    // Request target forms, RFC 9112 §3.2.
    let url = target
    let authority: string | undefined
    if (method === "CONNECT") {
      // RFC 9110 §9.3.6: CONNECT asks for a tunnel; an origin server does not implement it.
      return this.failWith(501, "CONNECT is not supported")
    }
    if (target.charCodeAt(0) !== 0x2f) {
      if (target === "*") {
        // RFC 9112 §3.2.4: the asterisk-form is only used with OPTIONS.
        if (method !== "OPTIONS") return this.failWith(400, "asterisk-form request-target is only valid for OPTIONS")
      } else {
        // RFC 9112 §3.2.2: a server MUST accept the absolute-form; the app sees path and query.
        const parsed = parseAbsoluteForm(target)
        if (parsed === undefined) return this.failWith(400, "invalid request-target")
        authority = parsed.authority
        url = parsed.url
      }
    }

    // RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, with more than one Host field line,
    // or with an invalid Host value (also checked on HTTP/1.0, where Host is optional).
    if (this.hostCount > 1) return this.failWith(400, "multiple Host header fields")
    if (this.hostCount === 0 && minor === 1) return this.failWith(400, "missing Host header field")
    if (this.hostCount === 1 && !isValidAuthority(this.host)) return this.failWith(400, "invalid Host header field")

    let contentLength = -1
    let chunked = false
    let forceClose = false
    if (this.transferEncoding !== undefined) {
      // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
      if (minor === 0) return this.failWith(400, "Transfer-Encoding in an HTTP/1.0 request")
      // RFC 9112 §6.1: a server MAY reject a request with both Content-Length and
      // Transfer-Encoding, and MUST close the connection either way; we reject (smuggling).
      if (this.contentLength !== undefined) return this.failWith(400, "both Content-Length and Transfer-Encoding")
      const codings = listElements(this.transferEncoding)
      const last = codings.length - 1
      // RFC 9112 §6.3 (4): if chunked is not the final coding the length cannot be determined: 400.
      if (last < 0 || codingName(codings[last]) !== "chunked") {
        return this.failWith(400, "chunked is not the final transfer coding")
      }
      for (let i = 0; i < last; i++) {
        // RFC 9112 §7.1: chunked MUST NOT be applied more than once.
        if (codingName(codings[i]) === "chunked") {
          return this.failWith(400, "chunked transfer coding applied more than once")
        }
      }
      if (!isToken(codings[last])) return this.failWith(400, "invalid transfer coding")
      // RFC 9112 §6.1: a transfer coding the server does not understand gets 501; chunked is the
      // only one this server decodes.
      if (last > 0) return this.failWith(501, `transfer coding not implemented: ${codingName(codings[0])}`)
      chunked = true
    } else if (this.contentLength !== undefined) {
      // RFC 9110 §8.6 / RFC 9112 §6.3 (5): Content-Length = 1*DIGIT; identical duplicates (lines
      // or list members) may be merged, anything else is an unrecoverable framing error.
      const declared = this.contentLength
      // The usual case, one line of plain digits, needs no list splitting.
      const values = declared.length === 1 && isDigits(declared[0]) ? declared : listElements(declared, true)
      const first = values[0]
      if (first === undefined || !isDigits(first)) return this.failWith(400, "invalid Content-Length")
      for (let i = 1; i < values.length; i++) {
        if (values[i] !== first) return this.failWith(400, "conflicting Content-Length values")
      }
      const trimmed = first.length > 1 && first.charCodeAt(0) === 0x30 ? first.replace(/^0+(?=\d)/, "") : first
      // More digits than the largest safe integer has are over any body limit.
      contentLength = trimmed.length > 15 ? Number.POSITIVE_INFINITY : Number(trimmed)
      if (contentLength > this.limits.maxBodySize) {
        return this.failWith(413, "declared Content-Length exceeds the body size limit")
      }
    }

    let keepAlive = minor === 1
    if (this.connection !== undefined) {
      // RFC 9112 §9.3: "close" ends the connection after the response; HTTP/1.0 persists only
      // with "keep-alive" (RFC 9112 §C.2.2).
      for (const option of listElements(this.connection)) {
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
    if (this.expect !== undefined) {
      for (const expectation of listElements(this.expect)) {
        if (expectation.toLowerCase() === "100-continue") {
          // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored.
          expectContinue = minor === 1
        } else {
          // RFC 9110 §10.1.1: any other expectation may be answered with 417.
          return this.failWith(417, "unsupported expectation")
        }
      }
    }

    const head: RequestHead = {
      _tag: "Head",
      method,
      target,
      url,
      versionMinor: minor,
      rawHeaders: this.raw ?? [],
      authority,
      contentLength,
      chunked,
      keepAlive,
      expectContinue
    }
    this.resetHead()
    if (chunked) {
      this.state = CHUNK_SIZE
      this.extensionBytes = 0
    } else if (contentLength > 0) {
      this.state = FIXED
      this.remaining = contentLength
    } else {
      this.state = PENDING_END
    }
    return head
  }

  private resetHead(): void {
    this.requestLineDone = false
    this.skippedEmptyLine = false
    this.methodChecked = 0
    this.raw = undefined
    this.headerBytes = 0
    this.hostCount = 0
    this.host = ""
    this.contentLength = undefined
    this.transferEncoding = undefined
    this.connection = undefined
    this.expect = undefined
  }

  private take(): ParseEvent {
    const available = this.buf.length - this.pos
    if (available === 0) return needData
    const n = Math.min(available, this.remaining)
    const bytes = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    this.remaining -= n
    return { _tag: "Data", bytes }
  }

  private fixedData(): ParseEvent {
    if (this.remaining === 0) {
      this.state = HEAD
      return messageEnd
    }
    return this.take()
  }

  private chunkData(): ParseEvent {
    if (this.remaining === 0) {
      this.state = CHUNK_DATA_END
      return this.chunkDataEnd()
    }
    return this.take()
  }

  /** RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF; the CRLF is required. */
  private chunkDataEnd(): ParseEvent {
    const available = this.buf.length - this.pos
    if (available >= 1 && this.buf[this.pos] !== CR) return this.failWith(400, "missing CRLF after chunk data")
    if (available < 2) return needData
    if (this.buf[this.pos + 1] !== LF) return this.failWith(400, "missing CRLF after chunk data")
    this.pos += 2
    this.state = CHUNK_SIZE
    return this.chunkSize()
  }

  private chunkSize(): ParseEvent {
    const lf = this.findLineEnd()
    if (lf === -1) {
      if (this.scanned > maxChunkExtensionBytes - this.extensionBytes + 64) {
        return this.failWith(400, "chunk size line too long")
      }
      return needData
    }
    const buf = this.buf
    const start = this.pos
    // The same bound as above once the line is complete, so the outcome does not depend on how it arrived.
    if (lf - start > maxChunkExtensionBytes - this.extensionBytes + 64) {
      return this.failWith(400, "chunk size line too long")
    }
    if (lf === start || buf[lf - 1] !== CR) return this.failWith(400, "chunk size line not terminated by CRLF")
    const end = lf - 1
    // RFC 9112 §7.1: chunk-size = 1*HEXDIG, bounded so it cannot overflow.
    const sizeEnd = chunkSizeEnd(buf, start, end)
    const size = chunkSizeValue(buf, start, sizeEnd)
    if (size === -1) return this.failWith(400, "chunk size too large")
    if (sizeEnd === start) return this.failWith(400, "invalid chunk size")
    if (sizeEnd < end) {
      // RFC 9112 §7.1.1: extensions are parsed to the grammar and bounded in size, then ignored.
      this.extensionBytes += end - sizeEnd
      if (this.extensionBytes > maxChunkExtensionBytes) return this.failWith(400, "chunk extensions too large")
      if (!isChunkExtensions(buf, sizeEnd, end)) return this.failWith(400, "invalid chunk extension")
    }
    this.pos = lf + 1
    if (size === 0) {
      this.state = TRAILERS
      this.headerBytes = 0
      this.trailerCount = 0
      return this.trailers()
    }
    this.remaining = size
    this.state = CHUNK_DATA
    return this.chunkData()
  }

  /**
   * RFC 9112 §7.1.2: the trailer section is parsed as field lines, bounded like the header section,
   * and discarded; it never reaches the application or the next request.
   */
  private trailers(): ParseEvent {
    const limits = this.limits
    for (;;) {
      const lf = this.findLineEnd()
      if (lf === -1) {
        // + 1: a lone CR may begin the empty line that ends the section, which is not counted.
        if (this.headerBytes + this.scanned > limits.maxHeaderSize + 1) {
          return this.failWith(431, "trailer section too large")
        }
        return needData
      }
      const start = this.pos
      if (lf === start || this.buf[lf - 1] !== CR) return this.failWith(400, "line not terminated by CRLF")
      const end = lf - 1
      this.pos = lf + 1
      if (end === start) {
        this.state = HEAD
        this.headerBytes = 0
        return messageEnd
      }
      this.headerBytes += lf + 1 - start
      if (this.headerBytes > limits.maxHeaderSize) return this.failWith(431, "trailer section too large")
      if (++this.trailerCount > limits.maxHeaderCount) return this.failWith(431, "too many trailer fields")
      const error = this.parseField(start, end, false)
      if (error !== undefined) return error
    }
  }
}

const isDigit = (b: number) => b >= 0x30 && b <= 0x39

const isDigits = (s: string): boolean => {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    if (!isDigit(s.charCodeAt(i))) return false
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
