/**
 * The SCGI request parser, sans-I/O: bytes in (split anywhere), events out. An SCGI request is a
 * netstring of NUL-terminated header name/value pairs followed by exactly CONTENT_LENGTH body
 * bytes; the connection carries one request.
 *
 * References: the SCGI protocol (Neil Schemenauer, python.ca/scgi/protocol.txt, "SCGI" below) and
 * netstrings (D. J. Bernstein, cr.yp.to/proto/netstrings.txt).
 *
 * @since 0.1.0
 */
import { appendInput, ownInput } from "../wire/appendInput.ts"
import { latin1 } from "../wire/intern.ts"
import { ScgiProtocolError } from "./ScgiProtocolError.ts"

/**
 * @since 0.1.0
 * @category models
 */
export interface ScgiLimits {
  /** Largest header netstring (its declared length) in bytes. */
  readonly maxHeaderSize: number
  /** Largest body (CONTENT_LENGTH) in bytes. */
  readonly maxBodySize: number
}

/**
 * The parsed header block of a request.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScgiHead {
  readonly _tag: "Head"
  /** Names and values in received order: `[name0, value0, name1, value1, ...]`. */
  readonly variables: ReadonlyArray<string>
  readonly contentLength: number
}

/**
 * Body bytes: a view into the parser's input, never copied.
 *
 * @since 0.1.0
 * @category models
 */
export interface ScgiData {
  readonly _tag: "Data"
  readonly bytes: Buffer
}

/**
 * @since 0.1.0
 * @category models
 */
export type ScgiEvent =
  | ScgiHead
  | ScgiData
  | { readonly _tag: "NeedData" }
  | { readonly _tag: "End" }
  | ScgiProtocolError

const needData = { _tag: "NeedData" } as const
const end = { _tag: "End" } as const

const LENGTH = 0
const HEADERS = 1
const BODY = 2
const PENDING_END = 3
const DONE = 4
const FAILED = 5

const COLON = 0x3a
const COMMA = 0x2c
const ZERO = 0x30
const NINE = 0x39
const EMPTY = Buffer.alloc(0)

/**
 * Parses the request on one SCGI connection.
 *
 * @since 0.1.0
 * @category parser
 */
export class ScgiParser {
  private readonly limits: ScgiLimits
  /** How many length digits can be within maxHeaderSize: more is refused without waiting for the colon. */
  private readonly maxLengthDigits: number
  private buf: Buffer = EMPTY
  private pos = 0
  private state = LENGTH
  private error: ScgiProtocolError | undefined
  private headerLength = 0
  private lengthDigits = 0
  private remaining = 0
  private beyond = false

  constructor(limits: ScgiLimits) {
    this.limits = limits
    this.maxLengthDigits = String(limits.maxHeaderSize).length
  }

  /** Adds received bytes. The parser keeps a reference to `chunk`: do not modify it afterwards. */
  push(chunk: Buffer): void {
    if (this.state === FAILED) return
    if (this.state === DONE || this.state === PENDING_END) {
      if (chunk.length > 0) this.beyond = true
      return
    }
    this.buf = this.pos >= this.buf.length ? chunk : appendInput(this.buf.subarray(this.pos), chunk)
    this.pos = 0
  }

  /**
   * Whether the connection is between requests with nothing of a next one received: before the
   * request begins, or after it ended with nothing beyond it.
   */
  get idle(): boolean {
    return (
      (this.state === LENGTH && this.lengthDigits === 0 && this.buf.length === this.pos) ||
      (this.state === DONE && !this.beyond)
    )
  }

  /** Never: SCGI carries one request per connection, so no next request head is ever answered. */
  get hasWholeHead(): boolean {
    return false
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

  /** Nothing: SCGI never switches protocols (the front end owns the client's connection). */
  rest(): Buffer {
    return EMPTY
  }

  /** Whether the header netstring has started arriving but is not complete. */
  get inHead(): boolean {
    return this.state === HEADERS || (this.state === LENGTH && (this.lengthDigits > 0 || this.buf.length > this.pos))
  }

  /** Whether the request (head and body) has been received in full. */
  get done(): boolean {
    return this.state === DONE || this.state === PENDING_END
  }

  /**
   * Whether bytes beyond the request have arrived (a front end sends none: SCGI carries one
   * request per connection). They are ignored, but the connection must not close over them.
   */
  get bytesBeyondRequest(): boolean {
    return this.beyond
  }

  /** Body bytes still expected. */
  get bodyRemaining(): number {
    return this.state === BODY ? this.remaining : 0
  }

  /**
   * The next event: `NeedData` when the input so far holds no complete event; after an error, the
   * same error forever (the connection must close). After `End`, further input is ignored: SCGI
   * carries one request per connection.
   */
  next(): ScgiEvent {
    switch (this.state) {
      case LENGTH:
        return this.parseLength()
      case HEADERS:
        return this.parseHeaders()
      case BODY:
        return this.body()
      case PENDING_END:
        this.state = DONE
        return end
      case DONE:
        return needData
      default:
        return this.error!
    }
  }

  private fail(reason: string, status: 400 | 413 = 400): ScgiProtocolError {
    this.state = FAILED
    this.error = new ScgiProtocolError({ status, reason })
    this.buf = EMPTY
    this.pos = 0
    return this.error
  }

  private parseLength(): ScgiEvent {
    const buf = this.buf
    while (this.pos < buf.length) {
      const c = buf[this.pos]
      if (c === COLON) {
        // netstrings: the length is at least one digit.
        if (this.lengthDigits === 0) return this.fail("header netstring has no length")
        this.pos++
        this.state = HEADERS
        return this.parseHeaders()
      }
      // netstrings: the length is ASCII decimal digits, without leading zeros.
      if (c < ZERO || c > NINE) return this.fail("header netstring length is not a decimal number")
      if (this.lengthDigits === 1 && this.headerLength === 0) {
        return this.fail("header netstring length has a leading zero")
      }
      this.headerLength = this.headerLength * 10 + (c - ZERO)
      this.lengthDigits++
      this.pos++
      if (this.lengthDigits > this.maxLengthDigits || this.headerLength > this.limits.maxHeaderSize) {
        return this.fail(`header netstring is longer than maxHeaderSize (${this.limits.maxHeaderSize} bytes)`)
      }
    }
    return needData
  }

  private parseHeaders(): ScgiEvent {
    const length = this.headerLength
    // The headers and the netstring's closing comma.
    if (this.buf.length - this.pos < length + 1) return needData
    const start = this.pos
    const stop = start + length
    // netstrings: the string is followed by ",".
    if (this.buf[stop] !== COMMA) return this.fail("header netstring does not end with a comma")
    const block = this.buf.subarray(start, stop)
    this.pos = stop + 1
    const variables = splitHeaders(block)
    if (typeof variables === "string") return this.fail(variables)
    const contentLength = checkHeaders(variables)
    if (typeof contentLength === "string") return this.fail(contentLength)
    if (contentLength > this.limits.maxBodySize) {
      return this.fail(`body of ${contentLength} bytes exceeds maxBodySize (${this.limits.maxBodySize} bytes)`, 413)
    }
    this.remaining = contentLength
    this.state = contentLength === 0 ? PENDING_END : BODY
    if (contentLength === 0) this.dropRest()
    return { _tag: "Head", variables, contentLength }
  }

  /** Anything after the request is not part of it (SCGI: one request per connection). */
  private dropRest(): void {
    if (this.pos < this.buf.length) this.beyond = true
    this.buf = EMPTY
    this.pos = 0
  }

  private body(): ScgiEvent {
    const available = this.buf.length - this.pos
    if (available === 0) return needData
    const take = Math.min(available, this.remaining)
    const bytes = this.buf.subarray(this.pos, this.pos + take)
    this.pos += take
    this.remaining -= take
    if (this.remaining === 0) {
      this.state = PENDING_END
      this.dropRest()
    } else if (this.pos === this.buf.length) {
      this.buf = EMPTY
      this.pos = 0
    }
    return { _tag: "Data", bytes }
  }
}

/**
 * SCGI: "The headers are a list of NUL-terminated name/value pairs". Names and values are read
 * as Latin-1 so every byte maps to one character, as Node does for HTTP header values. The block
 * is decoded once and cut at the NULs: one native decode instead of one per name and value.
 */
const splitHeaders = (block: Buffer): Array<string> | string => {
  const text = latin1(block, 0, block.length)
  const out: Array<string> = []
  let from = 0
  while (from < text.length) {
    const nul = text.indexOf("\0", from)
    if (nul === -1) return "header block does not end with a NUL"
    out.push(text.slice(from, nul))
    from = nul + 1
  }
  if (out.length % 2 !== 0) return "header block has a name without a value"
  return out
}

/** The value of CONTENT_LENGTH, or a description of what is wrong with the headers. */
const checkHeaders = (variables: ReadonlyArray<string>): number | string => {
  // SCGI: "The first request header must have the name CONTENT_LENGTH"; its value is the body
  // length in decimal ("0" for none).
  if (variables.length === 0 || variables[0] !== "CONTENT_LENGTH") return "the first header is not CONTENT_LENGTH"
  const lengthText = variables[1]
  if (!/^(0|[1-9][0-9]{0,15})$/.test(lengthText))
    return `CONTENT_LENGTH is not a decimal number: ${JSON.stringify(lengthText)}`
  const contentLength = Number(lengthText)
  if (!Number.isSafeInteger(contentLength)) return "CONTENT_LENGTH is too large"
  const seen = new Set<string>()
  let scgi: string | undefined
  for (let i = 0; i < variables.length; i += 2) {
    const name = variables[i]
    if (name === "") return "a header has an empty name"
    // SCGI: "Duplicate names are not allowed in the headers." Except HTTP_* variables: nginx
    // before 1.23 passes a repeated request header field as repeated HTTP_* names, and they are
    // repeated header fields (RFC 9110 §5.3) rather than conflicting meta-variables.
    if (seen.has(name) && !name.startsWith("HTTP_")) return `header ${name} is repeated`
    seen.add(name)
    if (name === "SCGI") scgi = variables[i + 1]
  }
  // SCGI: "There must also always be a SCGI header with the value 1."
  if (scgi === undefined) return "the SCGI header is missing"
  if (scgi !== "1") return `unsupported SCGI version ${JSON.stringify(scgi)}`
  return contentLength
}
