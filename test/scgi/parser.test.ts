/**
 * The sans-I/O SCGI parser: valid requests give the same events however their bytes are split
 * (whole, in two at every position, byte by byte, at random points), and every malformed request
 * gives one ScgiProtocolError with its status and a reason, repeated forever after.
 */
import { isDeepStrictEqual } from "node:util"
import * as fc from "fast-check"
import { describe, expect, it } from "vitest"
import { type ScgiLimits, ScgiParser } from "../../src/scgi/ScgiParser.ts"
import { ScgiProtocolError } from "../../src/scgi/ScgiProtocolError.ts"
import { netstring, scgiRequest } from "../helpers/scgi.ts"

const limits: ScgiLimits = { maxHeaderSize: 64 * 1024, maxBodySize: 1024 * 1024 }

/** `fc.assert` for synchronous properties, typed as such. */
const check = <Ts>(property: fc.IProperty<Ts>, params: fc.Parameters<Ts>): void => fc.assert(property, params)

type Event =
  | { readonly _tag: "Head"; readonly variables: ReadonlyArray<string>; readonly contentLength: number }
  /** Adjacent Data events merged, as latin1 so every byte is one character. */
  | { readonly _tag: "Body"; readonly body: string }
  | { readonly _tag: "End" }
  | { readonly _tag: "Error"; readonly status: number; readonly reason: string }

const maxStepsPerPiece = 100_000

/** Pushes each piece and drains `next()` until NeedData or an error, collecting comparable events. */
const parsePieces = (pieces: ReadonlyArray<Buffer>, parserLimits: ScgiLimits = limits): Array<Event> => {
  const parser = new ScgiParser(parserLimits)
  const events: Array<Event> = []
  for (const piece of pieces) {
    parser.push(piece)
    for (let steps = 0; ; steps++) {
      if (steps > maxStepsPerPiece) throw new Error("parser did not return NeedData")
      const event = parser.next()
      if (event._tag === "NeedData") break
      if (event._tag === "ScgiProtocolError") {
        events.push({ _tag: "Error", status: event.status, reason: event.reason })
        return events
      }
      if (event._tag === "Data") {
        if (event.bytes.length === 0) throw new Error("empty Data event")
        const text = event.bytes.toString("latin1")
        const last = events[events.length - 1]
        if (last?._tag === "Body") events[events.length - 1] = { _tag: "Body", body: last.body + text }
        else events.push({ _tag: "Body", body: text })
      } else if (event._tag === "End") {
        events.push({ _tag: "End" })
      } else {
        events.push({ _tag: "Head", variables: [...event.variables], contentLength: event.contentLength })
      }
    }
  }
  return events
}

const splitAt = (input: Buffer, points: ReadonlyArray<number>): Array<Buffer> => {
  const out: Array<Buffer> = []
  let from = 0
  for (const point of points) {
    out.push(input.subarray(from, point))
    from = point
  }
  out.push(input.subarray(from))
  return out
}

const byteByByte = (input: Buffer): Array<Buffer> => Array.from(input, (_, i) => input.subarray(i, i + 1))

const toBuffer = (input: Buffer | string): Buffer => (typeof input === "string" ? Buffer.from(input, "latin1") : input)

/** The events of the whole input, asserted identical for every split in two and byte by byte. */
const parseEverySplit = (input: Buffer | string, parserLimits: ScgiLimits = limits): Array<Event> => {
  const buffer = toBuffer(input)
  const whole = parsePieces([buffer], parserLimits)
  for (let i = 0; i <= buffer.length; i++) {
    const split = parsePieces(splitAt(buffer, [i]), parserLimits)
    if (!isDeepStrictEqual(split, whole)) expect(split, `split at byte ${i}`).toEqual(whole)
  }
  expect(parsePieces(byteByByte(buffer), parserLimits), "byte by byte").toEqual(whole)
  return whole
}

/** Asserts that the input, split anywhere, gives exactly one error: a 400 (or `status`) whose reason matches. */
const expectError = (
  input: Buffer | string,
  reason: RegExp,
  status: 400 | 413 = 400,
  parserLimits: ScgiLimits = limits
): void => {
  const events = parseEverySplit(input, parserLimits)
  expect(events).toHaveLength(1)
  expect(events[0]).toMatchObject({ _tag: "Error", status })
  const event = events[0]
  if (event._tag !== "Error") throw new Error("unreachable")
  expect(event.reason).toMatch(reason)
}

/** A header netstring of raw `block` text (latin1), for blocks the helper's netstring cannot make. */
const rawNetstring = (block: string): string => `${Buffer.byteLength(block, "latin1")}:${block},`

const head = (variables: ReadonlyArray<string>, contentLength = 0): Event => ({
  _tag: "Head",
  variables,
  contentLength
})

describe("valid requests", () => {
  it("parses a request without a body, split anywhere", () => {
    const input = scgiRequest({ REQUEST_METHOD: "GET", REQUEST_URI: "/a?b=c" })
    expect(parseEverySplit(input)).toEqual([
      head(["CONTENT_LENGTH", "0", "SCGI", "1", "REQUEST_METHOD", "GET", "REQUEST_URI", "/a?b=c"]),
      { _tag: "End" }
    ])
  })

  it("parses the example request of the SCGI specification", () => {
    // SCGI protocol.txt: the example request, with its "What is the answer to life?" body.
    const block = "CONTENT_LENGTH\x0027\x00SCGI\x001\x00REQUEST_METHOD\x00POST\x00REQUEST_URI\x00/deepthought\x00"
    expect(block.length).toBe(70)
    const input = `70:${block},What is the answer to life?`
    expect(parseEverySplit(input)).toEqual([
      head(["CONTENT_LENGTH", "27", "SCGI", "1", "REQUEST_METHOD", "POST", "REQUEST_URI", "/deepthought"], 27),
      { _tag: "Body", body: "What is the answer to life?" },
      { _tag: "End" }
    ])
  })

  it("delivers exactly CONTENT_LENGTH body bytes, whatever their values, then End", () => {
    const body = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const input = scgiRequest({ REQUEST_METHOD: "PUT" }, body)
    expect(parseEverySplit(input)).toEqual([
      head(["CONTENT_LENGTH", "256", "SCGI", "1", "REQUEST_METHOD", "PUT"], 256),
      { _tag: "Body", body: body.toString("latin1") },
      { _tag: "End" }
    ])
  })

  it("ignores bytes after the body: one request per connection", () => {
    const input = Buffer.concat([scgiRequest({}, "hello"), Buffer.from("garbage, or a second request")])
    expect(parseEverySplit(input)).toEqual([
      head(["CONTENT_LENGTH", "5", "SCGI", "1"], 5),
      { _tag: "Body", body: "hello" },
      { _tag: "End" }
    ])
    const noBody = Buffer.concat([scgiRequest({}), scgiRequest({}, "x")])
    expect(parseEverySplit(noBody)).toEqual([head(["CONTENT_LENGTH", "0", "SCGI", "1"]), { _tag: "End" }])
  })

  it("returns NeedData after End, and ignores anything pushed after it", () => {
    const parser = new ScgiParser(limits)
    parser.push(scgiRequest({}, "ab"))
    expect(parser.next()._tag).toBe("Head")
    expect(parser.next()._tag).toBe("Data")
    expect(parser.done).toBe(true)
    expect(parser.next()._tag).toBe("End")
    parser.push(scgiRequest({}, "cd"))
    expect(parser.next()._tag).toBe("NeedData")
    expect(parser.next()._tag).toBe("NeedData")
    expect(parser.done).toBe(true)
  })

  it("tells whether bytes beyond the request arrived, in the same piece or after it, with a body or without", () => {
    const beyond = (pieces: ReadonlyArray<Buffer>): boolean => {
      const parser = new ScgiParser(limits)
      for (const piece of pieces) {
        parser.push(piece)
        while (!["NeedData", "End"].includes(parser.next()._tag)) {}
      }
      return parser.bytesBeyondRequest
    }
    const withBody = scgiRequest({}, "hello")
    const without = scgiRequest({})
    expect(beyond([withBody])).toBe(false)
    expect(beyond(splitAt(withBody, [3, 30, withBody.length - 1]))).toBe(false)
    expect(beyond([without])).toBe(false)
    expect(beyond([Buffer.concat([withBody, Buffer.from("x")])])).toBe(true)
    expect(beyond([Buffer.concat([without, Buffer.from("x")])])).toBe(true)
    expect(beyond([withBody, Buffer.from("x")])).toBe(true)
    expect(beyond([without, Buffer.from("x")])).toBe(true)
    expect(beyond([withBody, Buffer.alloc(0)])).toBe(false)
  })

  it("keeps names and values as bytes (latin1), with '=' and ':' and non-ASCII in values", () => {
    const input = netstring([
      ["CONTENT_LENGTH", "0"],
      ["SCGI", "1"],
      ["HTTP_X_A", "a=b:c, d"],
      ["HTTP_X_B", "caf\xe9 \xff"],
      ["EMPTY_VALUE", ""]
    ])
    expect(parseEverySplit(input)).toEqual([
      head(["CONTENT_LENGTH", "0", "SCGI", "1", "HTTP_X_A", "a=b:c, d", "HTTP_X_B", "caf\xe9 \xff", "EMPTY_VALUE", ""]),
      { _tag: "End" }
    ])
  })

  it("accepts a repeated HTTP_* name, kept twice in order (nginx < 1.23 repeats request header fields)", () => {
    const input = netstring([
      ["CONTENT_LENGTH", "0"],
      ["SCGI", "1"],
      ["HTTP_X_FOO", "one"],
      ["HTTP_COOKIE", "a=1"],
      ["HTTP_X_FOO", "two"]
    ])
    expect(parseEverySplit(input)).toEqual([
      head(["CONTENT_LENGTH", "0", "SCGI", "1", "HTTP_X_FOO", "one", "HTTP_COOKIE", "a=1", "HTTP_X_FOO", "two"]),
      { _tag: "End" }
    ])
  })

  it("accepts a header netstring of exactly maxHeaderSize bytes and a body of exactly maxBodySize", () => {
    const input = scgiRequest({ PAD: "x".repeat(20) }, "12345")
    const size = input.indexOf(":")
    const declared = Number(input.subarray(0, size).toString())
    const tight = { maxHeaderSize: declared, maxBodySize: 5 }
    expect(parseEverySplit(input, tight)).toEqual([
      head(["CONTENT_LENGTH", "5", "SCGI", "1", "PAD", "x".repeat(20)], 5),
      { _tag: "Body", body: "12345" },
      { _tag: "End" }
    ])
  })

  it("reports progress through inHead, bodyRemaining and done", () => {
    const parser = new ScgiParser(limits)
    expect(parser.inHead).toBe(false)
    const input = scgiRequest({}, "abcdef")
    const headEnd = input.length - 6
    parser.push(input.subarray(0, 1))
    expect(parser.next()._tag).toBe("NeedData")
    expect(parser.inHead).toBe(true)
    parser.push(input.subarray(1, headEnd))
    expect(parser.next()._tag).toBe("Head")
    expect(parser.inHead).toBe(false)
    expect(parser.bodyRemaining).toBe(6)
    parser.push(input.subarray(headEnd, headEnd + 2))
    const data = parser.next()
    expect(data._tag === "Data" && data.bytes.toString()).toBe("ab")
    expect(parser.bodyRemaining).toBe(4)
    expect(parser.done).toBe(false)
    expect(parser.next()._tag).toBe("NeedData")
    parser.push(input.subarray(headEnd + 2))
    const rest = parser.next()
    expect(rest._tag === "Data" && rest.bytes.toString()).toBe("cdef")
    expect(parser.done).toBe(true)
    expect(parser.next()._tag).toBe("End")
  })
})

describe("malformed header netstring (netstrings)", () => {
  it("refuses a length that is not decimal digits", () => {
    expectError("x:,", /length is not a decimal number/)
    expectError("1a:", /length is not a decimal number/)
    expectError(" 5:", /length is not a decimal number/)
    expectError("-5:", /length is not a decimal number/)
    // an HTTP request sent to the SCGI port
    expectError("GET / HTTP/1.1\r\n\r\n", /length is not a decimal number/)
  })

  it("refuses an empty length", () => {
    expectError(":", /has no length/)
    expectError(":CONTENT_LENGTH\x000\x00,", /has no length/)
  })

  it("refuses a length with a leading zero, as soon as the second digit arrives", () => {
    expectError("012:", /leading zero/)
    expectError("00:", /leading zero/)
    const parser = new ScgiParser(limits)
    parser.push(Buffer.from("01"))
    expect(parser.next()).toMatchObject({ _tag: "ScgiProtocolError", status: 400 })
  })

  it("accepts the length 0 as a netstring, whose empty header block then lacks CONTENT_LENGTH", () => {
    expectError("0:,", /first header is not CONTENT_LENGTH/)
  })

  it("refuses a length over maxHeaderSize as soon as its digits exceed it, before the rest arrives", () => {
    const small = { maxHeaderSize: 100, maxBodySize: 0 }
    expectError("101:", /longer than maxHeaderSize \(100 bytes\)/, 400, small)
    // Only the digits: nothing else is needed to refuse.
    for (const digits of ["101", "999", "1000", "99999999999999999999999"]) {
      const parser = new ScgiParser(small)
      parser.push(Buffer.from(digits))
      const event = parser.next()
      expect(event, digits).toBeInstanceOf(ScgiProtocolError)
      expect(event).toMatchObject({ status: 400 })
    }
    // ...and no earlier than that: "10" could still be a length of 100.
    const parser = new ScgiParser(small)
    parser.push(Buffer.from("10"))
    expect(parser.next()._tag).toBe("NeedData")
    parser.push(Buffer.from("0"))
    expect(parser.next()._tag).toBe("NeedData")
  })

  it("refuses a header block longer than the default 64 KiB limit without reading it", () => {
    const parser = new ScgiParser({ maxHeaderSize: 65536, maxBodySize: 0 })
    parser.push(Buffer.from("65537"))
    expect(parser.next()).toMatchObject({ _tag: "ScgiProtocolError", status: 400 })
    const ok = new ScgiParser({ maxHeaderSize: 65536, maxBodySize: 0 })
    ok.push(Buffer.from("65536:"))
    expect(ok.next()._tag).toBe("NeedData")
  })

  it("refuses a netstring without its closing comma", () => {
    const good = netstring([
      ["CONTENT_LENGTH", "0"],
      ["SCGI", "1"]
    ])
    const withoutComma = Buffer.concat([good.subarray(0, good.length - 1), Buffer.from(";")])
    expectError(withoutComma, /does not end with a comma/)
    // a length one too short leaves the last NUL where the comma should be
    const block = "CONTENT_LENGTH\x000\x00SCGI\x001\x00"
    expectError(`${block.length - 1}:${block},`, /does not end with a comma/)
  })

  it("refuses a header block that does not end with a NUL", () => {
    expectError(rawNetstring("CONTENT_LENGTH\x000\x00SCGI\x001"), /does not end with a NUL/)
    expectError(rawNetstring("CONTENT_LENGTH"), /does not end with a NUL/)
  })

  it("refuses an odd number of strings (a name without a value)", () => {
    expectError(rawNetstring("CONTENT_LENGTH\x000\x00SCGI\x001\x00REQUEST_METHOD\x00"), /name without a value/)
  })
})

describe("malformed headers (SCGI)", () => {
  it("refuses a first header other than CONTENT_LENGTH", () => {
    const input = netstring([
      ["SCGI", "1"],
      ["CONTENT_LENGTH", "0"]
    ])
    expectError(input, /first header is not CONTENT_LENGTH/)
    expectError(
      netstring([
        ["content_length", "0"],
        ["SCGI", "1"]
      ]),
      /first header is not CONTENT_LENGTH/
    )
  })

  it("accepts CONTENT_LENGTH 0 and decimal digits without a leading zero, nothing else", () => {
    const withLength = (value: string) =>
      netstring([
        ["CONTENT_LENGTH", value],
        ["SCGI", "1"]
      ])
    expect(parseEverySplit(withLength("0"))).toEqual([head(["CONTENT_LENGTH", "0", "SCGI", "1"]), { _tag: "End" }])
    expect(parsePieces([withLength("10"), Buffer.alloc(10, "z")])).toEqual([
      head(["CONTENT_LENGTH", "10", "SCGI", "1"], 10),
      { _tag: "Body", body: "zzzzzzzzzz" },
      { _tag: "End" }
    ])
    for (const bad of ["", "01", "00", "+1", "-1", " 1", "1 ", "1.0", "1e3", "0x10", "one", "\xb9"]) {
      expectError(withLength(bad), /CONTENT_LENGTH is not a decimal number/)
    }
  })

  it("refuses a CONTENT_LENGTH too large to be a safe integer", () => {
    const input = netstring([
      ["CONTENT_LENGTH", "9999999999999999"],
      ["SCGI", "1"]
    ])
    const events = parsePieces([input])
    expect(events).toEqual([{ _tag: "Error", status: 400, reason: expect.stringMatching(/CONTENT_LENGTH/) }])
  })

  it("refuses an empty name", () => {
    expectError(
      netstring([
        ["CONTENT_LENGTH", "0"],
        ["SCGI", "1"],
        ["", "value"]
      ]),
      /empty name/
    )
  })

  it("refuses a repeated name that is not HTTP_*", () => {
    for (const name of ["REQUEST_METHOD", "SCGI", "CONTENT_LENGTH", "REQUEST_URI"]) {
      const input = netstring([
        ["CONTENT_LENGTH", "0"],
        ["SCGI", "1"],
        ["REQUEST_METHOD", "GET"],
        ["REQUEST_URI", "/"],
        [name, name === "SCGI" ? "1" : name === "CONTENT_LENGTH" ? "0" : "POST"]
      ])
      expectError(input, new RegExp(`header ${name} is repeated`))
    }
  })

  it("refuses a request without the SCGI header", () => {
    expectError(
      netstring([
        ["CONTENT_LENGTH", "0"],
        ["REQUEST_METHOD", "GET"]
      ]),
      /SCGI header is missing/
    )
  })

  it("refuses an SCGI version other than 1", () => {
    for (const version of ["2", "", "1.0", "01"]) {
      expectError(
        netstring([
          ["CONTENT_LENGTH", "0"],
          ["SCGI", version]
        ]),
        /unsupported SCGI version/
      )
    }
  })
})

describe("limits", () => {
  it("refuses a body over maxBodySize with 413 right after the head, before any body byte", () => {
    const small = { maxHeaderSize: 1024, maxBodySize: 10 }
    const headOnly = netstring([
      ["CONTENT_LENGTH", "11"],
      ["SCGI", "1"],
      ["REQUEST_METHOD", "POST"]
    ])
    // No Head event: the app never sees the request.
    expectError(headOnly, /body of 11 bytes exceeds maxBodySize \(10 bytes\)/, 413, small)
    const parser = new ScgiParser(small)
    parser.push(headOnly)
    expect(parser.next()).toMatchObject({ _tag: "ScgiProtocolError", status: 413 })
  })

  it("maxBodySize 0 allows only bodiless requests", () => {
    const none = { maxHeaderSize: 1024, maxBodySize: 0 }
    expect(parsePieces([scgiRequest({})], none)).toEqual([head(["CONTENT_LENGTH", "0", "SCGI", "1"]), { _tag: "End" }])
    expect(parsePieces([scgiRequest({}, "x")], none)).toMatchObject([{ _tag: "Error", status: 413 }])
  })
})

describe("after an error", () => {
  it("returns the same error forever, whatever is pushed", () => {
    const parser = new ScgiParser(limits)
    parser.push(Buffer.from("x"))
    const error = parser.next()
    expect(error).toBeInstanceOf(ScgiProtocolError)
    parser.push(scgiRequest({}, "ok"))
    expect(parser.next()).toBe(error)
    expect(parser.next()).toBe(error)
    expect(parser.done).toBe(false)
    expect(parser.inHead).toBe(false)
  })

  it("a late header error also sticks", () => {
    const parser = new ScgiParser(limits)
    parser.push(
      netstring([
        ["CONTENT_LENGTH", "0"],
        ["SCGI", "2"]
      ])
    )
    const error = parser.next()
    expect(error).toMatchObject({ _tag: "ScgiProtocolError", status: 400 })
    expect(parser.next()).toBe(error)
  })

  it("describes the error with its status in the message", () => {
    const error = new ScgiProtocolError({ status: 413, reason: "too big" })
    expect(error.message).toBe("413: too big")
    expect(error._tag).toBe("ScgiProtocolError")
  })
})

// ---------------------------------------------------------------------------------------------
// Properties

const nameChar = fc.constantFrom(..."ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789abc-.")
const name = fc
  .string({ unit: nameChar, minLength: 1, maxLength: 12 })
  .filter((n) => n !== "CONTENT_LENGTH" && n !== "SCGI")
/** Any byte but NUL, as a latin1 character. */
const valueChar = fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c))
const value = fc.string({ unit: valueChar, maxLength: 20 })
const variables = fc.uniqueArray(fc.tuple(name, value), { selector: ([n]) => n, maxLength: 12 })
const body = fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b))
const trailing = fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b))

/** A request of `vars` in order (an object would reorder integer-like names) and `bytes`. */
const requestOf = (vars: ReadonlyArray<readonly [string, string]>, bytes: Buffer): Buffer =>
  Buffer.concat([netstring([["CONTENT_LENGTH", String(bytes.length)], ["SCGI", "1"], ...vars]), bytes])

/** Sorted distinct split points within `length`. */
const splitPoints = (length: number) =>
  fc.uniqueArray(fc.integer({ min: 0, max: length }), { maxLength: 12 }).map((points) => points.sort((a, b) => a - b))

describe("properties", () => {
  it("any valid request parses to its variables, body and End, however split, whatever follows", () => {
    const request = fc.tuple(variables, body, trailing).chain(([vars, bytes, after]) => {
      const input = Buffer.concat([requestOf(vars, bytes), after])
      return fc.tuple(fc.constant(vars), fc.constant(bytes), fc.constant(input), splitPoints(input.length))
    })
    check(
      fc.property(request, ([vars, bytes, input, points]) => {
        const expected: Array<Event> = [
          head(["CONTENT_LENGTH", String(bytes.length), "SCGI", "1", ...vars.flat()], bytes.length),
          ...(bytes.length > 0 ? [{ _tag: "Body", body: bytes.toString("latin1") } as const] : []),
          { _tag: "End" }
        ]
        expect(parsePieces(splitAt(input, points))).toEqual(expected)
      }),
      { numRuns: 300 }
    )
  })

  it("arbitrary bytes never throw: the parser waits for more or refuses with 400", () => {
    check(
      fc.property(fc.uint8Array({ maxLength: 200 }), splitPoints(200), (bytes, points) => {
        const input = Buffer.from(bytes)
        const events = parsePieces(
          splitAt(
            input,
            points.filter((p) => p <= input.length)
          )
        )
        for (const event of events) if (event._tag === "Error") expect([400, 413]).toContain(event.status)
        // an error is the last event
        const errorAt = events.findIndex((e) => e._tag === "Error")
        expect(errorAt === -1 || errorAt === events.length - 1).toBe(true)
      }),
      { numRuns: 500 }
    )
  })

  it("a valid request with one byte of its header netstring changed parses the same whole or split", () => {
    const mutated = fc.tuple(variables, body).chain(([vars, bytes]) => {
      const input = requestOf(vars, bytes)
      const headLength = input.length - bytes.length
      return fc
        .tuple(fc.integer({ min: 0, max: headLength - 1 }), fc.integer({ min: 0, max: 255 }), splitPoints(input.length))
        .map(([at, byte, points]) => {
          const copy = Buffer.from(input)
          copy[at] = byte
          return { input: copy, points }
        })
    })
    check(
      fc.property(mutated, ({ input, points }) => {
        const whole = parsePieces([input])
        expect(parsePieces(splitAt(input, points))).toEqual(whole)
        const last = whole[whole.length - 1]
        // a request either still parses (End or waiting for more) or is refused with a reason
        if (last?._tag === "Error") expect(last.reason.length).toBeGreaterThan(0)
      }),
      { numRuns: 300 }
    )
  })
})
