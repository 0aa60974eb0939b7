/**
 * Property tests: generated valid requests round-trip through the parser however their bytes are
 * split; arbitrary bytes never break it; a valid request is returned before any garbage after it.
 */
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { defaultLimits, type ParserLimits, RequestParser } from "../../src/http/Parser.ts"
import { bytes, type Event, type HeadEvent, parsePieces, splitAt } from "../helpers/parse.ts"

/** `fc.assert` for synchronous properties, typed as such (it returns a promise only for async ones). */
const check = <Ts>(property: fc.IProperty<Ts>, params: fc.Parameters<Ts>): void => fc.assert(property, params)

// ---------------------------------------------------------------------------------------------
// Alphabets (RFC 9110 §5.6.2, §5.5; RFC 3986)

const range = (from: number, to: number): Array<string> =>
  Array.from({ length: to - from + 1 }, (_, i) => String.fromCharCode(from + i))
const alphaNum = [...range(0x30, 0x39), ...range(0x41, 0x5a), ...range(0x61, 0x7a)]
const tchars = [...alphaNum, ..."!#$%&'*+-.^_`|~"]
/** Visible ASCII except the characters the parser refuses in a target: `"`, `<`, `>`, `#`. */
const targetChars = range(0x21, 0x7e).filter((c) => !'"<>#'.includes(c))
const valueChars = ["\t", " ", ...range(0x21, 0x7e), ...range(0x80, 0xff)]
const hostChars = [...alphaNum, ..."-._~"]

const token = (maxLength: number) => fc.string({ unit: fc.constantFrom(...tchars), minLength: 1, maxLength })
const ows = fc.string({ unit: fc.constantFrom(" ", "\t"), maxLength: 2 })
const trimOws = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, "")

/** Field names the parser interprets, generated only where the test controls them. */
const specialNames = new Set(["host", "content-length", "transfer-encoding", "connection", "expect"])

interface Field {
  readonly wire: string
  readonly name: string
  readonly value: string
}

const field = (name: fc.Arbitrary<string>): fc.Arbitrary<Field> =>
  fc
    .record({
      name,
      before: ows,
      value: fc.string({ unit: fc.constantFrom(...valueChars), maxLength: 24 }).map(trimOws),
      after: ows
    })
    .map(({ name, before, value, after }) => ({ wire: `${name}:${before}${value}${after}\r\n`, name, value }))

const plainField = field(token(12).filter((name) => !specialNames.has(name.toLowerCase())))

/** A field with a fixed value, its name in random case and random OWS around the value. */
const fixedField = (name: string, value: string): fc.Arbitrary<Field> =>
  fc
    .record({ upper: fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }), ows1: ows, ows2: ows })
    .map(({ upper, ows1, ows2 }) => {
      const cased = [...name].map((c, i) => (upper[i] ? c.toUpperCase() : c.toLowerCase())).join("")
      return { wire: `${cased}:${ows1}${value}${ows2}\r\n`, name: cased, value }
    })

const hostName = fc.string({ unit: fc.constantFrom(...hostChars), minLength: 1, maxLength: 12 })
const authority = fc
  .tuple(hostName, fc.option(fc.integer({ min: 0, max: 65535 }), { nil: undefined }))
  .map(([host, port]) => (port === undefined ? host : `${host}:${port}`))

const path = fc.string({ unit: fc.constantFrom(...targetChars), maxLength: 30 }).map((rest) => `/${rest}`)

interface Target {
  readonly target: string
  readonly url: string
  readonly authority: string | undefined
}

/** RFC 9112 §3.2: origin-form, or absolute-form with a path, a query only, or nothing after the authority. */
const target: fc.Arbitrary<Target> = fc.oneof(
  { weight: 3, arbitrary: path.map((p) => ({ target: p, url: p, authority: undefined })) },
  {
    weight: 1,
    arbitrary: fc
      .record({
        scheme: fc.constantFrom("http", "https", "HTTP", "hTTpS"),
        authority,
        rest: fc.oneof(
          path.map((p) => ({ wire: p, url: p })),
          path.map((p) => ({ wire: `?${p.slice(1)}`, url: `/?${p.slice(1)}` })),
          fc.constant({ wire: "", url: "/" })
        )
      })
      .map(({ scheme, authority, rest }) => ({
        target: `${scheme}://${authority}${rest.wire}`,
        url: rest.url,
        authority
      }))
  }
)

// ---------------------------------------------------------------------------------------------
// Bodies and their framing (RFC 9112 §6, §7.1)

const quotedString = fc
  .string({ unit: fc.constantFrom(...valueChars), maxLength: 8 })
  .map((s) => `"${s.replace(/["\\]/g, "\\$&")}"`)
const chunkExtension = fc
  .record({ bws: ows, name: token(6), value: fc.option(fc.oneof(token(6), quotedString), { nil: undefined }) })
  .map(({ bws, name, value }) => `${bws};${bws}${name}${value === undefined ? "" : `${bws}=${bws}${value}`}`)

interface ChunkStyle {
  readonly zeros: number
  readonly upper: boolean
  readonly extensions: string
}

const chunkStyle: fc.Arbitrary<ChunkStyle> = fc.record({
  zeros: fc.nat(3),
  upper: fc.boolean(),
  extensions: fc.array(chunkExtension, { maxLength: 2 }).map((e) => e.join(""))
})

type Framing =
  | { readonly _tag: "None" }
  | { readonly _tag: "Length" }
  | {
      readonly _tag: "Chunked"
      readonly cuts: ReadonlyArray<number>
      readonly styles: ReadonlyArray<ChunkStyle>
      readonly trailers: ReadonlyArray<Field>
    }

const chunkSizeLine = (size: number, style: ChunkStyle) => {
  const hex = size.toString(16)
  return `${"0".repeat(style.zeros)}${style.upper ? hex.toUpperCase() : hex}${style.extensions}\r\n`
}

/** The body as sent on the wire with its framing. */
const encodeBody = (framing: Framing, body: Buffer): Buffer => {
  if (framing._tag !== "Chunked") return body
  const cuts = [...new Set(framing.cuts.map((cut) => (body.length > 1 ? 1 + (cut % (body.length - 1)) : 0)))]
    .filter((cut) => cut > 0)
    .sort((a, b) => a - b)
  const chunks = body.length === 0 ? [] : splitAt(body, cuts)
  const parts: Array<Buffer> = []
  chunks.forEach((chunk, i) => {
    parts.push(bytes(chunkSizeLine(chunk.length, framing.styles[i % framing.styles.length]!)), chunk, bytes("\r\n"))
  })
  parts.push(bytes(chunkSizeLine(0, framing.styles[chunks.length % framing.styles.length]!)))
  parts.push(bytes(`${framing.trailers.map((trailer) => trailer.wire).join("")}\r\n`))
  return Buffer.concat(parts)
}

// ---------------------------------------------------------------------------------------------
// Requests

interface GeneratedRequest {
  readonly wire: Buffer
  readonly events: ReadonlyArray<Event>
}

const connectionOptions = fc.subarray(["close", "keep-alive", "upgrade", "Close", "Keep-Alive"], { minLength: 1 })

const request: fc.Arbitrary<GeneratedRequest> = fc
  .record({
    leadingEmptyLine: fc.boolean(),
    method: token(10).filter((m) => m !== "CONNECT"),
    target,
    minor: fc.constantFrom<0 | 1>(0, 1, 1),
    host: fc.option(fc.oneof(authority, fc.constant("")), { nil: undefined }),
    fields: fc.array(plainField, { maxLength: 5 }),
    connection: fc.option(connectionOptions, { nil: undefined }),
    expectContinue: fc.boolean(),
    positions: fc.array(fc.nat(), { minLength: 5, maxLength: 5 }),
    body: fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b)),
    framingKind: fc.constantFrom("None", "Length", "Chunked"),
    zeros: fc.nat(2),
    cuts: fc.array(fc.nat(), { maxLength: 6 }),
    styles: fc.array(chunkStyle, { minLength: 1, maxLength: 4 }),
    trailers: fc.array(field(token(12)), { maxLength: 3 })
  })
  .chain((r) => {
    // HTTP/1.0 has no chunked coding (RFC 9112 §6.1); no framing means no body.
    const kind = r.framingKind === "Chunked" && r.minor === 0 ? "Length" : r.framingKind
    const body = kind === "None" ? Buffer.alloc(0) : r.body
    const framing: Framing =
      kind === "None"
        ? { _tag: "None" }
        : kind === "Length"
          ? { _tag: "Length" }
          : { _tag: "Chunked", cuts: r.cuts, styles: r.styles, trailers: r.trailers }
    const hostValue = r.host ?? (r.minor === 1 ? "example.com" : undefined)
    const special: Array<fc.Arbitrary<Field>> = []
    if (hostValue !== undefined) special.push(fixedField("host", hostValue))
    if (r.connection !== undefined) special.push(fixedField("connection", r.connection.join(", ")))
    if (r.expectContinue) special.push(fixedField("expect", "100-continue"))
    if (kind === "Length") special.push(fixedField("content-length", `${"0".repeat(r.zeros)}${body.length}`))
    if (kind === "Chunked") special.push(fixedField("transfer-encoding", "chunked"))
    return fc.tuple(...special).map((fields) => ({ r, body, framing, special: fields }))
  })
  .map(({ r, body, framing, special }): GeneratedRequest => {
    const fields = [...r.fields]
    special.forEach((f, i) => {
      fields.splice(r.positions[i]! % (fields.length + 1), 0, f)
    })
    const wireHead =
      `${r.leadingEmptyLine ? "\r\n" : ""}${r.method} ${r.target.target} HTTP/1.${r.minor}\r\n` +
      `${fields.map((f) => f.wire).join("")}\r\n`
    const options = (r.connection ?? []).map((o) => o.toLowerCase())
    const head: HeadEvent = {
      _tag: "Head",
      method: r.method,
      target: r.target.target,
      url: r.target.url,
      versionMinor: r.minor,
      rawHeaders: fields.flatMap((f) => [f.name, f.value]),
      authority: r.target.authority,
      contentLength: framing._tag === "Length" ? body.length : -1,
      chunked: framing._tag === "Chunked",
      keepAlive: !options.includes("close") && (r.minor === 1 || options.includes("keep-alive")),
      expectContinue: r.expectContinue && r.minor === 1
    }
    const events: Array<Event> = [head]
    if (body.length > 0) events.push({ _tag: "Body", body: body.toString("latin1") })
    events.push({ _tag: "End" })
    return { wire: Buffer.concat([bytes(wireHead), encodeBody(framing, body)]), events }
  })

/** Random cut points for an input, as an arbitrary of increasing positions. */
const cutsFor = (length: number) =>
  fc
    .uniqueArray(fc.integer({ min: 0, max: length }), { maxLength: Math.min(length + 1, 40) })
    .map((points) => points.sort((a, b) => a - b))

const splits = <A extends { readonly wire: Buffer }>(arbitrary: fc.Arbitrary<A>) =>
  arbitrary.chain((value) => fc.tuple(fc.constant(value), cutsFor(value.wire.length)))

// ---------------------------------------------------------------------------------------------

describe("generated valid requests", () => {
  it("round-trip: method, url, headers, body and framing, however the bytes are split", () => {
    check(
      fc.property(
        splits(
          fc
            .array(request, { minLength: 1, maxLength: 3 })
            .map((rs) => ({ wire: Buffer.concat(rs.map((r) => r.wire)), rs }))
        ),
        ([{ wire, rs }, cuts]) => {
          const expected = rs.flatMap((r) => r.events)
          expect(parsePieces([wire])).toEqual(expected)
          expect(parsePieces(splitAt(wire, cuts))).toEqual(expected)
        }
      ),
      { numRuns: 500 }
    )
  })

  it("round-trip when fed one byte at a time", () => {
    check(
      fc.property(request, ({ wire, events }) => {
        const pieces = Array.from({ length: wire.length }, (_, i) => wire.subarray(i, i + 1))
        expect(parsePieces(pieces)).toEqual(events)
      }),
      { numRuns: 200 }
    )
  })

  it("are returned first, whatever garbage follows them", () => {
    check(
      fc.property(
        splits(
          fc
            .tuple(request, fc.uint8Array({ minLength: 1, maxLength: 60 }))
            .map(([r, garbage]) => ({ wire: Buffer.concat([r.wire, Buffer.from(garbage)]), events: r.events }))
        ),
        ([{ wire, events }, cuts]) => {
          expect(parsePieces([wire]).slice(0, events.length)).toEqual(events)
          expect(parsePieces(splitAt(wire, cuts)).slice(0, events.length)).toEqual(events)
        }
      ),
      { numRuns: 300 }
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Arbitrary input

/** Pieces of HTTP that reach the parser's deeper states, mixed with random bytes. */
const fragment = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      "GET / HTTP/1.1\r\n",
      "POST /p HTTP/1.0\r\n",
      "Host: h\r\n",
      "X-Long-Name: some value\r\n",
      "Content-Length: 3\r\n",
      "Transfer-Encoding: chunked\r\n",
      "\r\nabc",
      "3;e=v\r\nabc\r\n",
      "0\r\nT: t\r\n\r\n",
      "0\r\n\r\n"
    )
  },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "GET ",
      "OPTIONS ",
      "/ ",
      "* ",
      "http://h/ ",
      "HTTP/1.1",
      "\r\n",
      "\r",
      "\n",
      "Connection: close",
      "Expect: 100-continue",
      "X: y",
      "0",
      "ff",
      ";a=b",
      ';q="\\""',
      "abc",
      " ",
      "\t",
      ":",
      "\x00",
      "\x16",
      "\xff"
    )
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 6 }).map((b) => Buffer.from(b).toString("latin1")) }
)

const anyInput = fc.oneof(
  fc.array(fragment, { maxLength: 30 }).map((parts) => bytes(parts.join(""))),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b))
)

/**
 * Limits near the sizes found in the input, so that random inputs hit the exact boundaries: a
 * request line or a run of consecutive lines exactly at, one below or one above a limit.
 */
const limitsFor = (input: Buffer): fc.Arbitrary<ParserLimits> => {
  const lines = input
    .toString("latin1")
    .split("\n")
    .map((line) => line.length + 1)
  const runs = lines.flatMap((_, start) => lines.slice(start).map((__, k) => lines.slice(start, start + k + 1)))
  const sizes = [1, ...runs.map((run) => run.reduce((sum, n) => sum + n, 0))]
  const near = fc.tuple(fc.constantFrom(...sizes), fc.integer({ min: -2, max: 1 })).map(([n, d]) => Math.max(0, n + d))
  return fc.oneof(
    fc.constant(defaultLimits),
    fc.record({
      maxRequestLineSize: near,
      maxHeaderSize: near,
      maxHeaderCount: fc.integer({ min: 0, max: 4 }),
      maxBodySize: fc.integer({ min: 0, max: 20 })
    })
  )
}

/** An input with limits for it and random cut points. */
const anyCase = anyInput.chain((input) => fc.tuple(fc.constant(input), limitsFor(input), cutsFor(input.length)))

const eventTags = new Set(["Head", "Data", "End", "NeedData", "HttpProtocolError"])

describe("arbitrary input", () => {
  it("never makes the parser throw or loop, and an error is final", () => {
    check(
      fc.property(anyCase, ([input, limits, cuts]) => {
        const parser = new RequestParser(limits)
        // every event but End consumes input, and End follows a Head or body data
        const maxEvents = 2 * input.length + 2
        let events = 0
        for (const piece of splitAt(
          input,
          cuts.filter((cut) => cut <= input.length)
        )) {
          parser.push(piece)
          for (;;) {
            const event = parser.next()
            expect(eventTags.has(event._tag)).toBe(true)
            if (event._tag === "NeedData") break
            expect(++events).toBeLessThanOrEqual(maxEvents)
            if (event._tag === "Data") expect(event.bytes.length).toBeGreaterThan(0)
            if (event._tag === "HttpProtocolError") {
              expect([400, 413, 414, 417, 431, 501, 505]).toContain(event.status)
              expect(parser.next()).toBe(event)
              parser.push(bytes("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
              expect(parser.next()).toBe(event)
              return
            }
          }
        }
      }),
      { numRuns: 3000 }
    )
  })

  it("is accepted or refused the same whatever the split, and split pieces only delay events", () => {
    // When an input breaks two rules at once, which one is detected first may depend on how much of
    // it has arrived, so only the status of a final error may differ.
    const withoutStatus = (events: Array<Event>) =>
      events.map((event) => (event._tag === "Error" ? { _tag: "Error" } : event))
    check(
      fc.property(anyCase, ([input, limits, cuts]) => {
        const whole = withoutStatus(parsePieces([input], limits))
        expect(withoutStatus(parsePieces(splitAt(input, cuts), limits))).toEqual(whole)
        const byByte = Array.from({ length: input.length }, (_, i) => input.subarray(i, i + 1))
        expect(withoutStatus(parsePieces(byByte, limits))).toEqual(whole)
      }),
      { numRuns: 3000 }
    )
  })
})
