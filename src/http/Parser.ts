/**
 * A sans-I/O, incremental HTTP/1.1 request parser (RFC 9112).
 *
 * Bytes go in with `push`, events come out of `next`: a request head, body data, the end of a
 * message, a request for more data, or a typed `HttpProtocolError` carrying the status to answer
 * with. No sockets, timers or Effect runtime are involved, and input may be split at any byte:
 * the parser resumes where it stopped. Every strictness rule below names the RFC section it
 * implements.
 *
 * This module is the incremental state machine: finding lines, the request line, field lines,
 * size limits and the body states. What a complete head means (target forms, Host, framing,
 * keep-alive, Expect) is decided by `HeadSemantics.ts`, and the chunk-size line's grammar is in
 * `Chunked.ts`: pure functions called with plain values, which add no allocation to a request.
 *
 * @since 0.1.0
 */

import { appendInput, ownInput } from "../wire/appendInput.ts"
import { CR, FIELD_VALUE, HTAB, LF, SP, TARGET, TCHAR } from "../wire/chars.ts"
import * as intern from "../wire/intern.ts"
import { chunkSizeEnd, chunkSizeValue, isChunkExtensions, maxChunkExtensionBytes } from "./Chunked.ts"
import { interpretHead, type RequestHead } from "./HeadSemantics.ts"
import { HttpProtocolError, type ProtocolStatus } from "./HttpProtocolError.ts"

/**
 * A parsed request head (defined with the rules that decide its meaning).
 *
 * @since 0.1.0
 * @category models
 */
export type { RequestHead } from "./HeadSemantics.ts"

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

/**
 * Whether a field name is `usual` or `lower` in any case (RFC 9110 §5.1: names are
 * case-insensitive). The two usual spellings are the interned strings (wire/intern.ts), matched
 * without lowercasing a copy.
 */
const named = (name: string, usual: string, lower: string): boolean =>
  name === usual || name === lower || name.toLowerCase() === lower

const EMPTY = Buffer.alloc(0)

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
  /** The `scanned` bytes are all bytes a field line may hold. */
  private scannedValid = true
  /** The line `findLineEnd` returned holds only bytes a field line may hold before its CRLF. */
  private lineValid = false
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

  /** Copies the unconsumed input into memory of the parser's own (RequestDecoder.detach). */
  detach(): void {
    this.buf = this.pos >= this.buf.length ? EMPTY : ownInput(this.buf.subarray(this.pos))
    this.pos = 0
  }

  /** Bytes received and not yet returned as events. */
  get buffered(): number {
    return this.buf.length - this.pos
  }

  /**
   * Takes the bytes received beyond the messages parsed so far (what a client sent after a
   * request whose connection switches protocols); the parser is not used again.
   */
  rest(): Buffer {
    const rest = this.buf.subarray(this.pos)
    this.buf = EMPTY
    this.pos = 0
    return rest
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
    return this.fail(new HttpProtocolError({ status, reason }))
  }

  /** Enters the failed state: `error` is every later event, and the input is dropped. */
  private fail(error: HttpProtocolError): HttpProtocolError {
    this.state = FAILED
    this.error = error
    this.buf = EMPTY
    this.pos = 0
    return error
  }

  /**
   * Finds the LF ending the current line. Returns its index, or -1 (NeedData) after recording how
   * far the search got. RFC 9112 §2.2: lines end in CRLF; a bare LF is refused rather than
   * accepted as a terminator, since parsers that disagree on line ends enable request smuggling.
   */
  private findLineEnd(): number {
    const buf = this.buf
    const length = buf.length
    const from = this.pos + this.scanned
    // One pass over the line while its bytes are ones a field line may hold (RFC 9110 §5.5; a
    // request line's are among them): a line that ends in CRLF right after them is found without
    // a call into `Buffer.indexOf` (about 60 ns a line, measured), and its bytes need no second
    // look for invalid characters (`lineValid`). Anything else is searched for natively and
    // checked by the caller as before.
    let i = from
    while (i < length && FIELD_VALUE[buf[i]] === 1) i++
    if (i + 1 < length && buf[i] === CR && buf[i + 1] === LF) {
      this.lineValid = this.scannedValid
      this.scanned = 0
      this.scannedValid = true
      return i + 1
    }
    const lf = i === length ? -1 : buf.indexOf(LF, i)
    if (lf === -1) {
      // What was scanned holds only valid bytes if the pass reached the end of the input.
      if (i < length) this.scannedValid = false
      this.scanned = length - this.pos
      return -1
    }
    this.lineValid = false
    this.scanned = 0
    this.scannedValid = true
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
    // (`findLineEnd` has checked the whole line when `lineValid`.)
    if (!this.lineValid) {
      for (let j = i; j < valueEnd; j++) {
        if (FIELD_VALUE[buf[j]] === 0) return this.failWith(400, "invalid character in field value")
      }
    }
    if (!special) return undefined
    const name = intern.fieldName(buf, start, nameEnd)
    const isHost = nameEnd - start === 4 && named(name, "Host", "host")
    const value = isHost ? intern.host(buf, i, valueEnd) : intern.latin1(buf, i, valueEnd)
    ;(this.raw ??= []).push(name, value)
    switch (nameEnd - start) {
      case 4:
        if (isHost) {
          this.hostCount++
          this.host = value
        }
        break
      case 6:
        if (named(name, "Expect", "expect")) (this.expect ??= []).push(value)
        break
      case 10:
        if (named(name, "Connection", "connection")) (this.connection ??= []).push(value)
        break
      case 14:
        if (named(name, "Content-Length", "content-length")) (this.contentLength ??= []).push(value)
        break
      case 17:
        if (named(name, "Transfer-Encoding", "transfer-encoding")) (this.transferEncoding ??= []).push(value)
        break
    }
    return undefined
  }

  /** The empty line ended the head: its meaning is decided by `interpretHead`, then its body is read. */
  private finishHead(): ParseEvent {
    const head = interpretHead(
      this.method,
      this.target,
      this.minor,
      this.raw ?? [],
      this.hostCount,
      this.host,
      this.contentLength,
      this.transferEncoding,
      this.connection,
      this.expect,
      this.limits.maxBodySize
    )
    if (head._tag !== "Head") return this.fail(head)
    this.resetHead()
    if (head.chunked) {
      this.state = CHUNK_SIZE
      this.extensionBytes = 0
    } else if (head.contentLength > 0) {
      this.state = FIXED
      this.remaining = head.contentLength
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
