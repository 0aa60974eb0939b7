/**
 * Requests the parser must accept, each checked whole, split in two at every byte and byte by byte.
 */
import { describe, expect, it } from "vitest"
import { RequestParser } from "../../src/http/Parser.ts"
import { bytes, type Event, head, parseEverySplit } from "../helpers/parse.ts"

const end: Event = { _tag: "End" }
const body = (text: string): Event => ({ _tag: "Body", body: text })

describe("request line (RFC 9112 §3)", () => {
  it("parses a simple GET", () => {
    expect(parseEverySplit("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")).toEqual([
      head({ rawHeaders: ["Host", "example.com"] }),
      end
    ])
  })

  it("keeps the path and query of an origin-form target", () => {
    expect(parseEverySplit("GET /a/b%20c?x=1&y=[2]|{3} HTTP/1.1\r\nHost: h\r\n\r\n")).toEqual([
      head({ target: "/a/b%20c?x=1&y=[2]|{3}", rawHeaders: ["Host", "h"] }),
      end
    ])
  })

  it("accepts any token as a method and keeps its case (RFC 9110 §9.1)", () => {
    const input = "M-SEARCH / HTTP/1.1\r\nHost: h\r\n\r\nget / HTTP/1.1\r\nHost: h\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([
      head({ method: "M-SEARCH", rawHeaders: ["Host", "h"] }),
      end,
      head({ method: "get", rawHeaders: ["Host", "h"] }),
      end
    ])
  })

  it("tolerates one empty line before the request line (RFC 9112 §2.2)", () => {
    expect(parseEverySplit("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")).toEqual([head({ rawHeaders: ["Host", "h"] }), end])
  })

  it("tolerates one empty line before each pipelined request, e.g. a CRLF sent after a body", () => {
    const input = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok\r\n" + "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([
      head({ method: "POST", rawHeaders: ["Host", "h", "Content-Length", "2"], contentLength: 2 }),
      body("ok"),
      end,
      head({ target: "/2", rawHeaders: ["Host", "h"] }),
      end
    ])
  })
})

describe("HTTP version and persistence (RFC 9112 §2.3, §9.3)", () => {
  it("HTTP/1.0 is not persistent by default and needs no Host", () => {
    expect(parseEverySplit("GET /x HTTP/1.0\r\n\r\n")).toEqual([
      head({ target: "/x", versionMinor: 0, keepAlive: false, rawHeaders: [] }),
      end
    ])
  })

  it("HTTP/1.0 with Connection: keep-alive is persistent, matched case-insensitively in a list", () => {
    expect(parseEverySplit("GET / HTTP/1.0\r\nConnection: foo, Keep-Alive\r\n\r\n")).toEqual([
      head({ versionMinor: 0, keepAlive: true, rawHeaders: ["Connection", "foo, Keep-Alive"] }),
      end
    ])
  })

  it("HTTP/1.0 with both keep-alive and close is not persistent", () => {
    expect(parseEverySplit("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n")).toEqual([
      head({ versionMinor: 0, keepAlive: false, rawHeaders: ["Connection", "keep-alive", "Connection", "close"] }),
      end
    ])
  })

  it("HTTP/1.1 is persistent by default and not with Connection: close", () => {
    const input =
      "GET /1 HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n" +
      "GET /2 HTTP/1.1\r\nHost: h\r\nconnection: upgrade, CLOSE\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([
      head({ target: "/1", rawHeaders: ["Host", "h", "Connection", "keep-alive"] }),
      end,
      head({ target: "/2", keepAlive: false, rawHeaders: ["Host", "h", "connection", "upgrade, CLOSE"] }),
      end
    ])
  })
})

describe("pipelining", () => {
  it("returns several requests from one buffer in order, with their bodies", () => {
    const input =
      "GET /a HTTP/1.1\r\nHost: h\r\n\r\n" +
      "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
      "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
      "DELETE /d HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n" +
      "GET /e HTTP/1.0\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([
      head({ target: "/a", rawHeaders: ["Host", "h"] }),
      end,
      head({ method: "POST", target: "/b", contentLength: 5, rawHeaders: ["Host", "h", "Content-Length", "5"] }),
      body("hello"),
      end,
      head({ method: "PUT", target: "/c", chunked: true, rawHeaders: ["Host", "h", "Transfer-Encoding", "chunked"] }),
      body("abc"),
      end,
      head({ method: "DELETE", target: "/d", contentLength: 0, rawHeaders: ["Host", "h", "Content-Length", "0"] }),
      end,
      head({ target: "/e", versionMinor: 0, keepAlive: false, rawHeaders: [] }),
      end
    ])
  })

  it("stops at an incomplete request after complete ones", () => {
    const input = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel"
    expect(parseEverySplit(input)).toEqual([
      head({ target: "/a", rawHeaders: ["Host", "h"] }),
      end,
      head({ method: "POST", target: "/b", contentLength: 5, rawHeaders: ["Host", "h", "Content-Length", "5"] }),
      body("hel")
    ])
  })
})

describe("Content-Length (RFC 9110 §8.6, RFC 9112 §6.3)", () => {
  it("reads exactly Content-Length bytes of body; the rest is the next request", () => {
    const input =
      "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello worldGET / HTTP/1.1\r\nHost: h\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([
      head({ method: "POST", target: "/p", contentLength: 11, rawHeaders: ["Host", "h", "Content-Length", "11"] }),
      body("hello world"),
      end,
      head({ rawHeaders: ["Host", "h"] }),
      end
    ])
  })

  it("passes body bytes through unchanged, including CRLFs and non-ASCII bytes", () => {
    const payload = "\r\n\r\n0\r\n\x00\xff\x80GET / HTTP/1.1\r\n"
    const input = `POST / HTTP/1.1\r\nHost: h\r\nContent-Length: ${payload.length}\r\n\r\n${payload}`
    expect(parseEverySplit(input)).toEqual([
      head({
        method: "POST",
        contentLength: payload.length,
        rawHeaders: ["Host", "h", "Content-Length", String(payload.length)]
      }),
      body(payload),
      end
    ])
  })

  it("Content-Length: 0 ends the message at once", () => {
    expect(parseEverySplit("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")).toEqual([
      head({ method: "POST", contentLength: 0, rawHeaders: ["Host", "h", "Content-Length", "0"] }),
      end
    ])
  })

  it("accepts leading zeros", () => {
    expect(parseEverySplit("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0003\r\n\r\nabc")).toEqual([
      head({ method: "POST", contentLength: 3, rawHeaders: ["Host", "h", "Content-Length", "0003"] }),
      body("abc"),
      end
    ])
  })

  it("merges identical duplicate Content-Length field lines", () => {
    const input = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello"
    expect(parseEverySplit(input)).toEqual([
      head({
        method: "POST",
        contentLength: 5,
        rawHeaders: ["Host", "h", "Content-Length", "5", "content-length", "5"]
      }),
      body("hello"),
      end
    ])
  })

  it("merges an identical duplicate in a list value (5, 5)", () => {
    const input = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello"
    expect(parseEverySplit(input)).toEqual([
      head({ method: "POST", contentLength: 5, rawHeaders: ["Host", "h", "Content-Length", "5, 5"] }),
      body("hello"),
      end
    ])
  })

  it("accepts a Content-Length equal to maxBodySize", () => {
    const limits = { maxRequestLineSize: 64, maxHeaderSize: 64, maxHeaderCount: 4, maxBodySize: 4 }
    expect(parseEverySplit("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd", limits)).toEqual([
      head({ method: "POST", contentLength: 4, rawHeaders: ["Host", "h", "Content-Length", "4"] }),
      body("abcd"),
      end
    ])
  })
})

describe("chunked transfer coding (RFC 9112 §7.1)", () => {
  const chunkedHead = (extra: ReadonlyArray<string> = []) =>
    head({ method: "POST", chunked: true, rawHeaders: ["Host", "h", "Transfer-Encoding", "chunked", ...extra] })

  it("decodes several chunks with hex sizes in either case", () => {
    const input =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0000b\r\nabcdefghijk\r\n0\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([chunkedHead(), body("hello 0123456789abcdefghijk"), end])
  })

  it("accepts chunk extensions with token and quoted-string values, escapes and BWS (RFC 9112 §7.1.1)", () => {
    const input =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
      '5;name=value;flag;q="a \\"quoted\\" \\\\ \tvalue;=\xe9"\r\nhello\r\n' +
      "3 ; a = b ;c\r\nabc\r\n" +
      '0;last="\\x"\r\n\r\n'
    expect(parseEverySplit(input)).toEqual([chunkedHead(), body("helloabc"), end])
  })

  it("consumes trailers: they are neither body data nor the next request (RFC 9112 §7.1.2)", () => {
    const input =
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
      "4\r\nbody\r\n0\r\nX-Checksum: abc\r\nX-Req: GET / HTTP/1.1\r\nOther:\t v \r\n\r\n" +
      "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([
      chunkedHead(),
      body("body"),
      end,
      head({ target: "/next", rawHeaders: ["Host", "h"] }),
      end
    ])
  })

  it("an empty chunked body is just the last chunk", () => {
    const input = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([chunkedHead(), end])
  })

  it("matches the coding name case-insensitively and ignores empty list members", () => {
    const input = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , Chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([
      head({ method: "POST", chunked: true, rawHeaders: ["Host", "h", "Transfer-Encoding", ", Chunked"] }),
      body("x"),
      end
    ])
  })

  it("accepts the largest chunk size that is a safe integer, then waits for its data", () => {
    const input = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1fffffffffffff\r\nabc"
    expect(parseEverySplit(input)).toEqual([chunkedHead(), body("abc")])
  })
})

describe("request-target forms (RFC 9112 §3.2)", () => {
  it("absolute-form: the url is the path and query, the authority is kept (§3.2.2)", () => {
    expect(parseEverySplit("GET http://example.com:8080/a?b HTTP/1.1\r\nHost: example.com:8080\r\n\r\n")).toEqual([
      head({
        target: "http://example.com:8080/a?b",
        url: "/a?b",
        authority: "example.com:8080",
        rawHeaders: ["Host", "example.com:8080"]
      }),
      end
    ])
  })

  it("absolute-form with a query and no path gets the path /", () => {
    expect(parseEverySplit("GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n")).toEqual([
      head({ target: "http://h?x", url: "/?x", authority: "h", rawHeaders: ["Host", "h"] }),
      end
    ])
  })

  it("absolute-form without a path gets the path /", () => {
    expect(parseEverySplit("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n")).toEqual([
      head({ target: "http://h", url: "/", authority: "h", rawHeaders: ["Host", "h"] }),
      end
    ])
  })

  it("absolute-form with https, a case-insensitive scheme and an IPv6 literal", () => {
    expect(parseEverySplit("GET HTTPS://[::1]:8443/x HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n")).toEqual([
      head({ target: "HTTPS://[::1]:8443/x", url: "/x", authority: "[::1]:8443", rawHeaders: ["Host", "[::1]:8443"] }),
      end
    ])
  })

  it("asterisk-form with OPTIONS (§3.2.4)", () => {
    expect(parseEverySplit("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")).toEqual([
      head({ method: "OPTIONS", target: "*", url: "*", rawHeaders: ["Host", "h"] }),
      end
    ])
  })
})

describe("field lines (RFC 9112 §5)", () => {
  it("keeps rawHeaders in received order and case, duplicates included", () => {
    const input = "GET / HTTP/1.1\r\nX-B: 1\r\nhost: h\r\nx-a: 2\r\nX-B: 3\r\nACCEPT: */*\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([
      head({ rawHeaders: ["X-B", "1", "host", "h", "x-a", "2", "X-B", "3", "ACCEPT", "*/*"] }),
      end
    ])
  })

  it("accepts every tchar in field names (RFC 9110 §5.6.2)", () => {
    const name = "!#$%&'*+-.^_`|~09azAZ"
    expect(parseEverySplit(`GET / HTTP/1.1\r\nHost: h\r\n${name}: v\r\n\r\n`)).toEqual([
      head({ rawHeaders: ["Host", "h", name, "v"] }),
      end
    ])
  })

  it("trims OWS around field values and keeps inner whitespace", () => {
    const input = "GET / HTTP/1.1\r\nHost:h\r\nX-A: \t v a\tl \t \r\nX-B:\t\r\nX-C:\r\nX-D:    \r\n\r\n"
    expect(parseEverySplit(input)).toEqual([
      head({ rawHeaders: ["Host", "h", "X-A", "v a\tl", "X-B", "", "X-C", "", "X-D", ""] }),
      end
    ])
  })

  it("allows obs-text (bytes 0x80-0xff) and all visible characters in field values (RFC 9110 §5.5)", () => {
    const value = 'caf\xe9 \x80\xff "q" <>#;,:\\ ~'
    expect(parseEverySplit(`GET / HTTP/1.1\r\nHost: h\r\nX-Text: ${value}\r\n\r\n`)).toEqual([
      head({ rawHeaders: ["Host", "h", "X-Text", value] }),
      end
    ])
  })
})

describe("framing and routing field names in any case (RFC 9110 §5.1)", () => {
  it("recognises Host, Content-Length, Connection, Expect and Transfer-Encoding however they are spelled", () => {
    const input =
      "POST / HTTP/1.1\r\nhOsT: a\r\nCONTENT-LENGTH: 1\r\nConnection: CLOSE\r\nEXPECT: 100-continue\r\n\r\nx"
    expect(parseEverySplit(input)).toEqual([
      head({
        method: "POST",
        rawHeaders: ["hOsT", "a", "CONTENT-LENGTH", "1", "Connection", "CLOSE", "EXPECT", "100-continue"],
        contentLength: 1,
        keepAlive: false,
        expectContinue: true
      }),
      body("x"),
      end
    ])
    expect(parseEverySplit("POST / HTTP/1.1\r\nHost: a\r\ntRaNsFeR-eNcOdInG: chunked\r\n\r\n0\r\n\r\n")).toEqual([
      head({ method: "POST", rawHeaders: ["Host", "a", "tRaNsFeR-eNcOdInG", "chunked"], chunked: true }),
      end
    ])
  })

  it("decodes one-byte values and targets as Latin-1 too", () => {
    expect(parseEverySplit("OPTIONS * HTTP/1.1\r\nHost: h\r\nX-A: \xe9\r\nX-B: 7\r\n\r\n")).toEqual([
      head({ method: "OPTIONS", target: "*", rawHeaders: ["Host", "h", "X-A", "\xe9", "X-B", "7"] }),
      end
    ])
  })

  it("counts a second Host however it is spelled (RFC 9112 §3.2: 400)", () => {
    const parser = new RequestParser()
    parser.push(Buffer.from("GET / HTTP/1.1\r\nHost: a\r\nHOST: a\r\n\r\n", "latin1"))
    expect(parser.next()).toMatchObject({ status: 400, reason: "multiple Host header fields" })
  })

  it("gives each request its own Host value, also when connections alternate between host names", () => {
    // Host values are remembered across requests (a server answers to few names): the value of
    // every request must still be the one it sent, with more names than are remembered.
    const names = [
      "a.example",
      "b.example",
      "c.example:8080",
      "d.example",
      "e.example",
      "a.example",
      "A.example",
      "a.exampl"
    ]
    const events = names.flatMap((name) => {
      const parser = new RequestParser()
      parser.push(Buffer.from(`GET / HTTP/1.1\r\nHost: ${name}\r\n\r\n`, "latin1"))
      return [parser.next()]
    })
    expect(events.map((event) => (event._tag === "Head" ? event.rawHeaders[1] : event._tag))).toEqual(names)
  })
})

describe("Expect (RFC 9110 §10.1.1)", () => {
  it("Expect: 100-continue on HTTP/1.1 sets expectContinue, case-insensitively", () => {
    const input =
      "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx" +
      "POST / HTTP/1.1\r\nHost: h\r\nexpect: 100-Continue\r\nContent-Length: 0\r\n\r\n"
    expect(parseEverySplit(input)).toEqual([
      head({
        method: "POST",
        contentLength: 1,
        expectContinue: true,
        rawHeaders: ["Host", "h", "Expect", "100-continue", "Content-Length", "1"]
      }),
      body("x"),
      end,
      head({
        method: "POST",
        contentLength: 0,
        expectContinue: true,
        rawHeaders: ["Host", "h", "expect", "100-Continue", "Content-Length", "0"]
      }),
      end
    ])
  })

  it("Expect: 100-continue on HTTP/1.0 is ignored", () => {
    expect(parseEverySplit("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx")).toEqual([
      head({
        method: "POST",
        versionMinor: 0,
        keepAlive: false,
        contentLength: 1,
        rawHeaders: ["Expect", "100-continue", "Content-Length", "1"]
      }),
      body("x"),
      end
    ])
  })
})

describe("Host (RFC 9112 §3.2, RFC 3986 §3.2.2)", () => {
  it.each([
    ["a host with a port", "example.com:8080"],
    ["an IPv4 address", "127.0.0.1"],
    ["an IPv6 literal with a port", "[::1]:8080"],
    ["an IPv6 literal without a port", "[2001:db8::1]"],
    ["an empty value", ""],
    ["an empty port", "h:"],
    ["sub-delims and pct-encoded in a reg-name", "a-b_c~d.e%41!$&'()*+,;="]
  ])("accepts %s", (_, host) => {
    expect(parseEverySplit(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`)).toEqual([
      head({ rawHeaders: ["Host", host] }),
      end
    ])
  })
})

describe("parser state", () => {
  it("is idle between messages and inHead while a head arrives", () => {
    const parser = new RequestParser()
    expect(parser.idle).toBe(true)
    expect(parser.inHead).toBe(false)
    parser.push(bytes("GET / HTTP/1.1\r\nHo"))
    expect(parser.next()._tag).toBe("NeedData")
    expect(parser.idle).toBe(false)
    expect(parser.inHead).toBe(true)
    parser.push(bytes("st: h\r\n\r\n"))
    expect(parser.next()._tag).toBe("Head")
    expect(parser.next()._tag).toBe("End")
    expect(parser.idle).toBe(true)
    expect(parser.inHead).toBe(false)
    expect(parser.buffered).toBe(0)
  })

  it("counts buffered bytes not yet returned", () => {
    const parser = new RequestParser()
    parser.push(bytes("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n"))
    expect(parser.next()._tag).toBe("Head")
    expect(parser.buffered).toBe(0)
    parser.push(bytes("0123"))
    expect(parser.buffered).toBe(4)
    const data = parser.next()
    expect(data._tag === "Data" && data.bytes.toString()).toBe("0123")
    expect(parser.buffered).toBe(0)
    expect(parser.next()._tag).toBe("NeedData")
  })
})

describe("input arriving a byte at a time", () => {
  it("keeps body views intact while later bytes are appended (1, 3 and 7 bytes at a time)", () => {
    const longValue = "v".repeat(5000)
    const chunks = ["a".repeat(3000), "b".repeat(17), "c".repeat(4500)]
    const chunked = chunks.map((c) => `${c.length.toString(16)}\r\n${c}\r\n`).join("")
    const input = Buffer.from(
      `POST /${"p".repeat(6000)} HTTP/1.1\r\nHost: h\r\nX-Long: ${longValue}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}0\r\n\r\n`
    )
    for (const step of [1, 3, 7]) {
      const parser = new RequestParser()
      const views: Array<Buffer> = []
      let headValue: string | undefined
      let ended = false
      for (let i = 0; i < input.length; i += step) {
        parser.push(input.subarray(i, i + step))
        for (let event = parser.next(); event._tag !== "NeedData"; event = parser.next()) {
          if (event._tag === "Head") headValue = event.rawHeaders[3]
          else if (event._tag === "Data") views.push(event.bytes)
          else if (event._tag === "End") ended = true
          else throw new Error(`unexpected ${event._tag}`)
        }
      }
      expect(headValue).toBe(longValue)
      expect(ended).toBe(true)
      // the views are read only now, after every later byte was pushed
      expect(Buffer.concat(views).toString()).toBe(chunks.join(""))
    }
  })
})
