/**
 * Size and count limits, with custom small limits and with the defaults at their exact
 * boundaries: exactly at a limit passes, one byte or field over fails, whole or split anywhere.
 */
import { describe, expect, it } from "vitest"
import { defaultLimits, type ParserLimits, RequestParser } from "../../src/http/Parser.ts"
import { bytes, type Event, expectError, head, parseEverySplit } from "../helpers/parse.ts"

const limits = (overrides: Partial<ParserLimits>): ParserLimits => ({ ...defaultLimits, ...overrides })
const end: Event = { _tag: "End" }

describe("defaults", () => {
  it("are 8 KiB for the request line, 16 KiB for the header section, 100 fields and 64 MiB of body", () => {
    expect(defaultLimits).toEqual({
      maxRequestLineSize: 8192,
      maxHeaderSize: 16384,
      maxHeaderCount: 100,
      maxBodySize: 64 * 1024 * 1024
    })
  })
})

describe("request line (RFC 9112 §3: 414 when too long)", () => {
  // "GET " + target + " HTTP/1.1" is 13 bytes plus the target
  const requestOf = (lineLength: number) => {
    const target = `/${"a".repeat(lineLength - 14)}`
    return { target, input: `GET ${target} HTTP/1.1\r\nHost: h\r\n\r\n` }
  }

  it("accepts a request line of exactly the default 8 KiB", () => {
    const { target, input } = requestOf(8192)
    expect(parseEverySplit(input)).toEqual([head({ target, rawHeaders: ["Host", "h"] }), end])
  })

  it("answers a request line one byte over the default 8 KiB with 414", () => {
    expectError(requestOf(8193).input, 414)
  })

  it("answers a request line over a custom limit with 414, and accepts one at it", () => {
    const small = limits({ maxRequestLineSize: 20 })
    expect(parseEverySplit("GET /123456 HTTP/1.1\r\nHost: h\r\n\r\n", small)).toEqual([
      head({ target: "/123456", rawHeaders: ["Host", "h"] }),
      end
    ])
    expectError("GET /1234567 HTTP/1.1\r\nHost: h\r\n\r\n", 414, small)
  })

  it("counts the request line after a tolerated leading empty line", () => {
    const small = limits({ maxRequestLineSize: 20 })
    expect(parseEverySplit("\r\nGET /123456 HTTP/1.1\r\nHost: h\r\n\r\n", small)).toEqual([
      head({ target: "/123456", rawHeaders: ["Host", "h"] }),
      end
    ])
  })

  it("answers 414 before the CRLF arrives, instead of waiting for more data forever", () => {
    const parser = new RequestParser()
    // 8193 bytes: the longest line plus its CR could still be valid
    parser.push(bytes(`GET /${"a".repeat(8188)}`))
    expect(parser.next()._tag).toBe("NeedData")
    parser.push(bytes("aaaa"))
    expect(parser.next()).toMatchObject({ _tag: "HttpProtocolError", status: 414 })
  })

  it("answers 414 for an endless stream of token bytes without a space or line end", () => {
    const parser = new RequestParser(limits({ maxRequestLineSize: 100 }))
    let event = parser.next()
    for (let i = 0; i < 200 && event._tag === "NeedData"; i++) {
      parser.push(bytes("A"))
      event = parser.next()
    }
    expect(event).toMatchObject({ _tag: "HttpProtocolError", status: 414 })
  })
})

describe("header section (RFC 6585 §5: 431 when too large)", () => {
  // "Host: h\r\n" is 9 bytes, "X: " + value + "\r\n" is 5 bytes plus the value
  const requestOf = (sectionSize: number) => {
    const value = "v".repeat(sectionSize - 14)
    return { value, input: `GET / HTTP/1.1\r\nHost: h\r\nX: ${value}\r\n\r\n` }
  }

  it("accepts a header section of exactly the default 16 KiB, however it is split", () => {
    const { value, input } = requestOf(16384)
    expect(parseEverySplit(input)).toEqual([head({ rawHeaders: ["Host", "h", "X", value] }), end])
  })

  it("answers a header section one byte over the default 16 KiB with 431", () => {
    expectError(requestOf(16385).input, 431)
  })

  it("answers a header section over a custom limit with 431, and accepts one at it", () => {
    const small = limits({ maxHeaderSize: 20 })
    // 9 + 11 bytes of field lines
    expect(parseEverySplit("GET / HTTP/1.1\r\nHost: h\r\nX: 123456\r\n\r\n", small)).toEqual([
      head({ rawHeaders: ["Host", "h", "X", "123456"] }),
      end
    ])
    expectError("GET / HTTP/1.1\r\nHost: h\r\nX: 1234567\r\n\r\n", 431, small)
  })

  it("answers 431 before the end of the head arrives", () => {
    const parser = new RequestParser()
    parser.push(bytes(`GET / HTTP/1.1\r\nHost: h\r\nX: ${"v".repeat(16370)}`))
    expect(parser.next()._tag).toBe("NeedData")
    parser.push(bytes("vvvvv"))
    expect(parser.next()).toMatchObject({ _tag: "HttpProtocolError", status: 431 })
  })

  it("answers 431 for an endless stream of short field lines", () => {
    const parser = new RequestParser(limits({ maxHeaderSize: 100, maxHeaderCount: 1000 }))
    parser.push(bytes("GET / HTTP/1.1\r\n"))
    let event = parser.next()
    for (let i = 0; i < 100 && event._tag === "NeedData"; i++) {
      parser.push(bytes("A: b\r\n"))
      event = parser.next()
    }
    expect(event).toMatchObject({ _tag: "HttpProtocolError", status: 431 })
  })
})

describe("field count (RFC 6585 §5: 431 when too many)", () => {
  const requestWith = (count: number) => {
    const fields = Array.from({ length: count - 1 }, (_, i) => `X-${i}: ${i}\r\n`).join("")
    return `GET / HTTP/1.1\r\nHost: h\r\n${fields}\r\n`
  }

  it("accepts exactly the default 100 fields", () => {
    const events = parseEverySplit(requestWith(100))
    expect(events).toHaveLength(2)
    expect(events[0]?._tag === "Head" && events[0].rawHeaders.length).toBe(200)
  })

  it("answers 101 fields with 431", () => {
    expectError(requestWith(101), 431)
  })

  it("answers more fields than a custom limit with 431, and accepts exactly the limit", () => {
    const small = limits({ maxHeaderCount: 2 })
    expect(parseEverySplit("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n", small)).toEqual([
      head({ rawHeaders: ["Host", "h", "A", "1"] }),
      end
    ])
    expectError("GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n", 431, small)
  })

  it("counts fields per request, not per connection", () => {
    const small = limits({ maxHeaderCount: 2 })
    const request = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\n\r\n"
    expect(parseEverySplit(request + request + request, small)).toHaveLength(6)
  })
})

describe("trailer section (RFC 9112 §7.1.2: bounded like the header section)", () => {
  const chunked = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
  const chunkedHead = head({ method: "POST", chunked: true, rawHeaders: ["Host", "h", "Transfer-Encoding", "chunked"] })

  it("accepts a trailer section of exactly the default 16 KiB, however it is split", () => {
    expect(parseEverySplit(`${chunked}X: ${"v".repeat(16379)}\r\n\r\n`)).toEqual([chunkedHead, end])
  })

  it("answers a trailer section one byte over the default 16 KiB with 431", () => {
    expectError(`${chunked}X: ${"v".repeat(16380)}\r\n\r\n`, 431, undefined, [chunkedHead])
  })

  it("accepts 100 trailer fields and answers 101 with 431", () => {
    const fields = (count: number) => Array.from({ length: count }, (_, i) => `T-${i}: ${i}\r\n`).join("")
    expect(parseEverySplit(`${chunked}${fields(100)}\r\n`)).toEqual([chunkedHead, end])
    expectError(`${chunked}${fields(101)}\r\n`, 431, undefined, [chunkedHead])
  })

  it("counts trailer size and fields apart from the head's", () => {
    const small = limits({ maxHeaderSize: 64, maxHeaderCount: 2 })
    // two head fields of 37 bytes and two trailer fields of 60 bytes both fit
    const input = `${chunked}T-1: ${"a".repeat(23)}\r\nT-2: ${"b".repeat(23)}\r\n\r\n`
    expect(parseEverySplit(input, small)).toEqual([chunkedHead, end])
  })
})

describe("body size (RFC 9110 §15.5.14: 413 when too large)", () => {
  const post = (length: number) => `POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ${length}\r\n\r\n`

  it("accepts a declared Content-Length of exactly the default 64 MiB, then waits for the body", () => {
    const length = 64 * 1024 * 1024
    expect(parseEverySplit(`${post(length)}abc`)).toEqual([
      head({ method: "POST", contentLength: length, rawHeaders: ["Host", "h", "Content-Length", String(length)] }),
      { _tag: "Body", body: "abc" }
    ])
  })

  it("answers a declared Content-Length one byte over the default 64 MiB with 413", () => {
    expectError(post(64 * 1024 * 1024 + 1), 413)
  })
})
