/**
 * Requests the parser must refuse, with the status each one is answered with. Every input is
 * checked whole, split in two at every byte and byte by byte, and must yield the same error.
 */
import { describe, expect, it } from "vitest"
import { defaultLimits, type ParserLimits, RequestParser } from "../../src/http/Parser.ts"
import { bytes, type Event, expectError, head, parseEverySplit } from "../helpers/parse.ts"

const limits = (overrides: Partial<ParserLimits>): ParserLimits => ({ ...defaultLimits, ...overrides })

const get = (fields: string) => `GET / HTTP/1.1\r\nHost: h\r\n${fields}\r\n`
const chunkedPost = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
const chunkedHead = head({ method: "POST", chunked: true, rawHeaders: ["Host", "h", "Transfer-Encoding", "chunked"] })
const body = (text: string): Event => ({ _tag: "Body", body: text })

describe("line endings (RFC 9112 §2.2)", () => {
  it("refuses a request line ended by a bare LF", () => {
    expectError("GET / HTTP/1.1\nHost: h\n\n", 400)
  })

  it("refuses a field line ended by a bare LF", () => {
    expectError("GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400)
  })

  it("refuses a head ended by a bare LF", () => {
    expectError("GET / HTTP/1.1\r\nHost: h\r\n\n", 400)
  })

  it("refuses a bare LF as the first line", () => {
    expectError("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400)
  })

  it("refuses a chunk-size line ended by a bare LF", () => {
    expectError(`${chunkedPost}5\nhello\r\n0\r\n\r\n`, 400, undefined, [chunkedHead])
  })

  it("refuses a trailer line ended by a bare LF", () => {
    expectError(`${chunkedPost}0\r\nX: y\n\r\n`, 400, undefined, [chunkedHead])
  })

  it("refuses the end of the trailer section as a bare LF", () => {
    expectError(`${chunkedPost}0\r\n\n`, 400, undefined, [chunkedHead])
  })

  it("refuses two empty lines before the request line (only one is ignored)", () => {
    expectError("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400)
  })

  it("refuses a CR before the request line that is not part of a CRLF", () => {
    expectError("\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400)
  })
})

describe("field values (RFC 9110 §5.5)", () => {
  it("refuses a bare CR inside a field value", () => {
    expectError(get("X: a\rb\r\n"), 400)
  })

  it("refuses a CR before the CRLF of a field line", () => {
    expectError(get("X: a\r\r\n"), 400)
  })

  it("refuses NUL in a field value", () => {
    expectError(get("X: a\x00b\r\n"), 400)
  })

  it.each([
    ["0x01", "\x01"],
    ["ESC", "\x1b"],
    ["DEL", "\x7f"]
  ])("refuses the control %s in a field value", (_, control) => {
    expectError(get(`X: a${control}b\r\n`), 400)
  })
})

describe("field lines (RFC 9112 §5)", () => {
  it("refuses obs-fold continuation lines with a space (§5.2)", () => {
    expectError(get("X: a\r\n b\r\n"), 400)
  })

  it("refuses obs-fold continuation lines with a tab (§5.2)", () => {
    expectError(get("X: a\r\n\tb\r\n"), 400)
  })

  it("refuses a first field line starting with whitespace (§2.2)", () => {
    expectError("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400)
  })

  it("refuses whitespace between field name and colon (§5.1)", () => {
    expectError("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400)
  })

  it("refuses a tab between field name and colon (§5.1)", () => {
    expectError(get("X\t: y\r\n"), 400)
  })

  it.each([
    ["a parenthesis", "X(a): b"],
    ["an at sign", "X@: b"],
    ["a slash", "X/Y: b"],
    ["a byte >= 0x80", "X\xe9: b"],
    ["an empty name", ": b"],
    ["no colon", "NoColon"]
  ])("refuses a field name with %s (RFC 9110 §5.1)", (_, line) => {
    expectError(get(`${line}\r\n`), 400)
  })
})

describe("method (RFC 9112 §3.1, RFC 9110 §9.1)", () => {
  it.each([
    ["a parenthesis", "G(T"],
    ["an at sign", "GE@T"],
    ["a byte >= 0x80", "G\xc9T"],
    ["a NUL", "G\x00T"],
    ["an empty method", ""]
  ])("refuses a method with %s", (_, method) => {
    expectError(`${method} / HTTP/1.1\r\nHost: h\r\n\r\n`, 400)
  })

  it("refuses two spaces after the method", () => {
    expectError("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400)
  })

  it("refuses CONNECT with 501: an origin server does not tunnel (RFC 9110 §9.3.6)", () => {
    expectError("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501)
  })
})

describe("Host (RFC 9112 §3.2)", () => {
  it("refuses an HTTP/1.1 request without Host", () => {
    expectError("GET / HTTP/1.1\r\nX: y\r\n\r\n", 400)
  })

  it("refuses an absolute-form HTTP/1.1 request without Host", () => {
    expectError("GET http://h/ HTTP/1.1\r\n\r\n", 400)
  })

  it("refuses two Host field lines", () => {
    expectError("GET / HTTP/1.1\r\nHost: h\r\nhost: h\r\n\r\n", 400)
  })

  it("refuses two Host field lines on HTTP/1.0", () => {
    expectError("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400)
  })

  it.each([
    ["a space", "a b"],
    ["userinfo", "a@b"],
    ["a non-numeric port", "h:x"],
    ["two ports", "h:1:2"],
    ["an unclosed IPv6 literal", "[::1"],
    ["an empty IP literal", "[]"],
    ["text after an IP literal", "[::1]x"],
    ["a slash", "h/p"],
    ["obs-text", "h\xe9"]
  ])("refuses a Host with %s (RFC 3986 §3.2.2)", (_, host) => {
    expectError(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`, 400)
  })

  it("refuses an invalid Host on HTTP/1.0 too", () => {
    expectError("GET / HTTP/1.0\r\nHost: a b\r\n\r\n", 400)
  })
})

describe("request-target (RFC 9112 §3.2)", () => {
  it("refuses the asterisk-form with GET (§3.2.4)", () => {
    expectError("GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400)
  })

  it.each([
    ["a space", "/a b"],
    ['"', '/a"b'],
    ["<", "/a<b"],
    [">", "/a>b"],
    ["#", "/a#frag"],
    ["a NUL", "/a\x00"],
    ["a tab", "/a\tb"],
    ["0x1f", "/a\x1f"],
    ["DEL", "/a\x7f"],
    ["0x80", "/a\x80"],
    ["0xff", "/caf\xff"]
  ])("refuses a target containing %s", (_, target) => {
    expectError(`GET ${target} HTTP/1.1\r\nHost: h\r\n\r\n`, 400)
  })

  it.each([
    ["ftp", "ftp://h/a"],
    ["ws", "ws://h/a"],
    ["mailto", "mailto:a@h"],
    ["a scheme without //", "http:/a"],
    ["a target that is neither origin- nor absolute-form", "a/b"],
    ["the authority-form outside CONNECT", "h:80"]
  ])("refuses the absolute-form with %s (§3.2.2)", (_, target) => {
    expectError(`GET ${target} HTTP/1.1\r\nHost: h\r\n\r\n`, 400)
  })

  it.each([
    ["userinfo", "http://user@h/"],
    ["userinfo with a password", "http://user:pw@h/"],
    ["an empty host", "http:///a"],
    ["a port without a host", "http://:80/a"],
    ["a non-numeric port", "http://h:x/a"]
  ])("refuses an absolute-form authority with %s (RFC 9110 §4.2)", (_, target) => {
    expectError(`GET ${target} HTTP/1.1\r\nHost: h\r\n\r\n`, 400)
  })
})

describe("HTTP-version (RFC 9112 §2.3)", () => {
  it("answers HTTP/2.0 with 505 (RFC 9110 §15.6.6)", () => {
    expectError("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505)
  })

  it("answers HTTP/1.2 with 505: this server only speaks 1.0 and 1.1", () => {
    expectError("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505)
  })

  it("refuses an HTTP/0.9-style request line without a version", () => {
    expectError("GET /\r\n\r\n", 400)
  })

  it("refuses a lowercase version (the name is case-sensitive)", () => {
    expectError("GET / http/1.1\r\nHost: h\r\n\r\n", 400)
  })

  it("refuses a two-digit minor version", () => {
    expectError("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400)
  })

  it.each([
    ["a missing dot", "HTTP/11"],
    ["a trailing space", "HTTP/1.1 "],
    ["a letter for a digit", "HTTP/1.x"],
    ["a missing minor", "HTTP/1."]
  ])("refuses a version with %s", (_, version) => {
    expectError(`GET / ${version}\r\nHost: h\r\n\r\n`, 400)
  })
})

describe("Content-Length (RFC 9110 §8.6, RFC 9112 §6.3)", () => {
  const post = (value: string) => `POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ${value}\r\n\r\nhello`

  it.each([
    ["a plus sign", "+5"],
    ["a minus sign", "-1"],
    ["hex", "0x5"],
    ["two numbers separated by a space", "5 5"],
    ["an empty value", ""],
    ["a trailing comma", "5,"],
    ["a leading comma", ",5"],
    ["a fraction", "5.0"],
    ["an exponent", "5e0"],
    ["letters", "five"]
  ])("refuses a Content-Length with %s", (_, value) => {
    expectError(post(value), 400)
  })

  it("refuses differing Content-Length field lines", () => {
    expectError("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", 400)
  })

  it("refuses differing values in a Content-Length list", () => {
    expectError(post("5, 6"), 400)
  })

  it("refuses duplicates that are equal only numerically", () => {
    expectError(post("5, 05"), 400)
  })

  it("answers a Content-Length over maxBodySize with 413 before reading the body", () => {
    expectError(post("6"), 413, limits({ maxBodySize: 5 }))
  })

  it("answers a 30-digit Content-Length with 413", () => {
    expectError(post("123456789012345678901234567890"), 413)
  })

  it("answers a Content-Length just above the default 64 MiB limit with 413", () => {
    expectError(post(String(64 * 1024 * 1024 + 1)), 413)
  })
})

describe("Transfer-Encoding (RFC 9112 §6.1, §6.3)", () => {
  const post = (fields: string, version = "1.1") => `POST / HTTP/${version}\r\nHost: h\r\n${fields}\r\n0\r\n\r\n`

  it("refuses Transfer-Encoding together with Content-Length", () => {
    expectError(post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400)
  })

  it("refuses Content-Length together with Transfer-Encoding, in either order", () => {
    expectError(post("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"), 400)
  })

  it("refuses Transfer-Encoding in an HTTP/1.0 request", () => {
    expectError(post("Transfer-Encoding: chunked\r\n", "1.0"), 400)
  })

  it("refuses chunked that is not the final coding (§6.3)", () => {
    expectError(post("Transfer-Encoding: chunked, gzip\r\n"), 400)
  })

  it("refuses chunked applied twice in one list (§7.1)", () => {
    expectError(post("Transfer-Encoding: chunked, chunked\r\n"), 400)
  })

  it("refuses chunked applied twice across field lines (§7.1)", () => {
    expectError(post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400)
  })

  it("answers an unknown coding before chunked with 501", () => {
    expectError(post("Transfer-Encoding: gzip, chunked\r\n"), 501)
  })

  it("answers an unknown coding on an earlier field line with 501", () => {
    expectError(post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), 501)
  })

  it("refuses an unknown coding alone with 400: chunked is not final", () => {
    expectError(post("Transfer-Encoding: gzip\r\n"), 400)
  })

  it("refuses an empty Transfer-Encoding", () => {
    expectError(post("Transfer-Encoding:\r\n"), 400)
  })
})

describe("chunk size (RFC 9112 §7.1)", () => {
  it.each([
    ["not hex", "zz"],
    ["empty", ""],
    ["negative", "-1"],
    ["0x-prefixed", "0x10"],
    ["preceded by whitespace", " 5"],
    ["followed by text", "5x"]
  ])("refuses a chunk size that is %s", (_, size) => {
    expectError(`${chunkedPost}${size}\r\nhello\r\n0\r\n\r\n`, 400, undefined, [chunkedHead])
  })

  it("refuses a chunk size of 20 hex digits of f (overflow)", () => {
    expectError(`${chunkedPost}${"f".repeat(20)}\r\nhello\r\n`, 400, undefined, [chunkedHead])
  })

  it("refuses a chunk size one above the largest safe integer", () => {
    expectError(`${chunkedPost}20000000000000\r\nhello\r\n`, 400, undefined, [chunkedHead])
  })

  it("refuses a chunk data not followed by CRLF", () => {
    expectError(`${chunkedPost}5\r\nhelloX\r\n0\r\n\r\n`, 400, undefined, [chunkedHead, body("hello")])
  })

  it("refuses a chunk data followed by CR and something other than LF", () => {
    expectError(`${chunkedPost}5\r\nhello\rX0\r\n\r\n`, 400, undefined, [chunkedHead, body("hello")])
  })

  it("refuses a chunk data followed by a bare LF", () => {
    expectError(`${chunkedPost}5\r\nhello\n0\r\n\r\n`, 400, undefined, [chunkedHead, body("hello")])
  })

  it("refuses a chunk data longer than its declared size", () => {
    expectError(`${chunkedPost}3\r\nhello\r\n0\r\n\r\n`, 400, undefined, [chunkedHead, body("hel")])
  })
})

describe("chunk extensions (RFC 9112 §7.1.1)", () => {
  it.each([
    ["a lone semicolon", ";"],
    ["no name", ";=x"],
    ["an unterminated quoted-string", ';a="unterminated'],
    ["two tokens in a value", ";a=b c"],
    ["an empty value", ";a="],
    ["a quoted-pair at the end of the line", ';a="x\\'],
    ["a NUL in a quoted-string", ';a="x\x00"'],
    ["text after a quoted-string", ';a="x"y'],
    ["a non-token name", ";a@b=c"],
    ["no semicolon", " a=b"],
    ["whitespace after the chunk size", " "],
    ["whitespace after the last extension", ";a=b\t"]
  ])("refuses an extension with %s", (_, ext) => {
    expectError(`${chunkedPost}5${ext}\r\nhello\r\n0\r\n\r\n`, 400, undefined, [chunkedHead])
  })

  it("refuses a last-chunk with a malformed extension", () => {
    expectError(`${chunkedPost}0;=\r\n\r\n`, 400, undefined, [chunkedHead])
  })

  it("refuses extensions over the cumulative bound of one message (16 KiB)", () => {
    // each chunk-size line carries 1003 extension bytes; 16 fit in 16 KiB, the 17th does not
    const chunk = `1;e=${"x".repeat(1000)}\r\na\r\n`
    expectError(`${chunkedPost}${chunk.repeat(17)}0\r\n\r\n`, 400, undefined, [chunkedHead, body("a".repeat(16))])
  })

  it("accepts extensions up to the cumulative bound of one message, and resets it per message", () => {
    const chunk = `1;e=${"x".repeat(1000)}\r\na\r\n`
    const message = `${chunkedPost}${chunk.repeat(16)}0\r\n\r\n`
    const parser = new RequestParser()
    parser.push(bytes(message + message))
    const tags: Array<string> = []
    for (let event = parser.next(); event._tag !== "NeedData"; event = parser.next()) tags.push(event._tag)
    const one = ["Head", ...Array.from({ length: 16 }, () => "Data"), "End"]
    expect(tags).toEqual([...one, ...one])
  })

  it("refuses a chunk-size line over the bound before its CRLF arrives", () => {
    const parser = new RequestParser()
    parser.push(bytes(chunkedPost))
    expect(parser.next()._tag).toBe("Head")
    parser.push(bytes(`1;e=${"x".repeat(16 * 1024)}`))
    expect(parser.next()._tag).toBe("NeedData")
    parser.push(bytes("x".repeat(100)))
    expect(parser.next()).toMatchObject({ _tag: "HttpProtocolError", status: 400 })
  })

  it("bounds a chunk-size line of leading zeros the same whole or split", () => {
    expectError(`${chunkedPost}${"0".repeat(17 * 1024)}5\r\nhello\r\n0\r\n\r\n`, 400, undefined, [chunkedHead])
  })
})

describe("trailers (RFC 9112 §7.1.2)", () => {
  it.each([
    ["whitespace before the colon", "X : y"],
    ["an invalid name", "X(y): z"],
    ["no colon", "X"],
    ["obs-fold", "X: y\r\n z"],
    ["a NUL in the value", "X: a\x00b"],
    ["a bare CR in the value", "X: a\rb"]
  ])("refuses a trailer field with %s", (_, line) => {
    expectError(`${chunkedPost}0\r\n${line}\r\n\r\n`, 400, undefined, [chunkedHead])
  })

  it("answers more than maxHeaderCount trailer fields with 431", () => {
    expectError(`${chunkedPost}0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n`, 431, limits({ maxHeaderCount: 2 }), [chunkedHead])
  })

  it("accepts exactly maxHeaderCount trailer fields", () => {
    expect(parseEverySplit(`${chunkedPost}0\r\nA: 1\r\nB: 2\r\n\r\n`, limits({ maxHeaderCount: 2 }))).toEqual([
      chunkedHead,
      { _tag: "End" }
    ])
  })

  // The head's field lines take 37 bytes, so a 40-byte limit leaves the trailers as the only excess.
  it("answers a trailer section over maxHeaderSize with 431", () => {
    expectError(`${chunkedPost}0\r\nX-Trailer: ${"v".repeat(28)}\r\n\r\n`, 431, limits({ maxHeaderSize: 40 }), [
      chunkedHead
    ])
  })

  it("accepts a trailer section of exactly maxHeaderSize, however it is split", () => {
    const input = `${chunkedPost}0\r\nX-Trailer: ${"v".repeat(27)}\r\n\r\n`
    expect(parseEverySplit(input, limits({ maxHeaderSize: 40 }))).toEqual([chunkedHead, { _tag: "End" }])
  })

  it("answers a trailer section over maxHeaderSize with 431 before it ends", () => {
    const parser = new RequestParser(limits({ maxHeaderSize: 64 }))
    parser.push(bytes(`${chunkedPost}0\r\nX: ${"v".repeat(100)}`))
    expect(parser.next()._tag).toBe("Head")
    expect(parser.next()).toMatchObject({ _tag: "HttpProtocolError", status: 431 })
  })
})

describe("Expect (RFC 9110 §10.1.1)", () => {
  it("answers an unsupported expectation with 417", () => {
    expectError(get("Expect: foo\r\n"), 417)
  })

  it("answers an unsupported expectation next to 100-continue with 417", () => {
    expectError(get("Expect: 100-continue, foo\r\n"), 417)
  })

  it("answers an unsupported expectation on HTTP/1.0 with 417", () => {
    expectError("GET / HTTP/1.0\r\nExpect: bar\r\n\r\n", 417)
  })
})

describe("after an error, the connection must close", () => {
  it("keeps returning the same error, even when more valid input arrives", () => {
    const parser = new RequestParser()
    parser.push(bytes("GET / HTTP/1.1\r\nHost: a b\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    const error = parser.next()
    expect(error).toMatchObject({ _tag: "HttpProtocolError", status: 400 })
    expect(parser.next()).toBe(error)
    parser.push(bytes("GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    expect(parser.next()).toBe(error)
    expect(parser.next()).toBe(error)
  })

  it("keeps returning the same error after a body error", () => {
    const parser = new RequestParser()
    parser.push(bytes(`${chunkedPost}zz\r\n`))
    expect(parser.next()._tag).toBe("Head")
    const error = parser.next()
    expect(error).toMatchObject({ _tag: "HttpProtocolError", status: 400 })
    parser.push(bytes("0\r\n\r\n"))
    expect(parser.next()).toBe(error)
  })

  it("a later valid request in the same buffer is never returned", () => {
    expectError("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400)
  })

  it("answers a TLS ClientHello with 400 at its first byte, without waiting for a line end (RFC 9112 §3.1: the method is a token)", () => {
    const parser = new RequestParser()
    parser.push(Buffer.from([0x16]))
    expect(parser.next()).toMatchObject({ _tag: "HttpProtocolError", status: 400 })
  })

  it("answers a whole TLS ClientHello record header with 400", () => {
    expectError(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), 400)
  })

  it("answers a garbage byte after a complete request with 400 at once", () => {
    const parser = new RequestParser()
    parser.push(bytes("GET / HTTP/1.1\r\nHost: h\r\n\r\n\x16"))
    expect(parser.next()._tag).toBe("Head")
    expect(parser.next()._tag).toBe("End")
    expect(parser.next()).toMatchObject({ _tag: "HttpProtocolError", status: 400 })
  })

  it("answers a garbage byte after a leading empty line with 400 at once", () => {
    const parser = new RequestParser()
    parser.push(bytes("\r\n\x16"))
    expect(parser.next()).toMatchObject({ _tag: "HttpProtocolError", status: 400 })
  })
})
