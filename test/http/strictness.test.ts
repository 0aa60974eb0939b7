/**
 * Every rejection over a real socket answers its status with Connection: close, closes that
 * connection, and the server goes on serving other clients. (The parser's unit tests cover each
 * rule byte by byte; these prove the server's behaviour around them.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { rawExchange, request } from "../helpers/raw.ts"
import { serveApp } from "../helpers/server.ts"

const hello = Effect.succeed(HttpServerResponse.text("Hello, World!"))

const cases: ReadonlyArray<readonly [string, string | Buffer, number]> = [
  ["bare LF line ends (RFC 9112 §2.2)", "GET / HTTP/1.1\nHost: x\n\n", 400],
  ["obs-fold (RFC 9112 §5.2)", request("GET / HTTP/1.1", "Host: x", "X-A: a", " folded"), 400],
  ["whitespace before the colon (RFC 9112 §5.1)", request("GET / HTTP/1.1", "Host : x"), 400],
  ["NUL in a field value (RFC 9110 §5.5)", request("GET / HTTP/1.1", "Host: x", "X-A: a\0b"), 400],
  ["bare CR in a field value (RFC 9110 §5.5)", request("GET / HTTP/1.1", "Host: x", "X-A: a\rb"), 400],
  ["missing Host (RFC 9112 §3.2)", request("GET / HTTP/1.1"), 400],
  ["two Host fields (RFC 9112 §3.2)", request("GET / HTTP/1.1", "Host: a", "Host: b"), 400],
  ["invalid Host (RFC 9112 §3.2)", request("GET / HTTP/1.1", "Host: a b"), 400],
  ["asterisk-form without OPTIONS (RFC 9112 §3.2.4)", request("GET * HTTP/1.1", "Host: x"), 400],
  [
    "Content-Length with Transfer-Encoding (RFC 9112 §6.1)",
    request("POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Transfer-Encoding: chunked"),
    400
  ],
  [
    "conflicting Content-Length values (RFC 9112 §6.3)",
    request("POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Content-Length: 6"),
    400
  ],
  ["non-digit Content-Length (RFC 9110 §8.6)", request("POST / HTTP/1.1", "Host: x", "Content-Length: +5"), 400],
  ["Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1)", request("POST / HTTP/1.0", "Transfer-Encoding: chunked"), 400],
  ["chunked not last (RFC 9112 §6.3)", request("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked, gzip"), 400],
  [
    "unknown transfer coding (RFC 9112 §6.1)",
    request("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: gzip, chunked"),
    501
  ],
  [
    "bad chunk size (RFC 9112 §7.1)",
    `${request("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked")}zz\r\n`,
    400
  ],
  ["HTTP/2.0 on an HTTP/1.1 port (RFC 9110 §15.6.6)", request("GET / HTTP/2.0", "Host: x"), 505],
  ["HTTP/1.2 (RFC 9110 §15.6.6)", request("GET / HTTP/1.2", "Host: x"), 505],
  ["malformed version (RFC 9112 §2.3)", request("GET / http/1.1", "Host: x"), 400],
  ["request line over 8 KiB (RFC 9112 §3)", request(`GET /${"a".repeat(8200)} HTTP/1.1`, "Host: x"), 414],
  [
    "header section over 16 KiB (RFC 6585 §5)",
    request("GET / HTTP/1.1", "Host: x", `X-Big: ${"a".repeat(17_000)}`),
    431
  ],
  [
    "more than 100 fields (RFC 6585 §5)",
    request("GET / HTTP/1.1", "Host: x", ...Array.from({ length: 100 }, (_, i) => `X-${i}: v`)),
    431
  ],
  ["unsupported expectation (RFC 9110 §10.1.1)", request("GET / HTTP/1.1", "Host: x", "Expect: teapot"), 417],
  ["CONNECT (RFC 9110 §9.3.6)", request("CONNECT example.com:443 HTTP/1.1", "Host: example.com:443"), 501],
  ["a TLS ClientHello on the plain port", Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]), 400]
]

describe("protocol violations over a real socket", () => {
  for (const [name, input, status] of cases) {
    it.live(`${name} → ${status}, close, server keeps serving`, () =>
      Effect.gen(function* () {
        const { port } = yield* serveApp(hello)
        const bad = yield* rawExchange(port, input)
        expect(bad.responses).toHaveLength(1)
        expect(bad.responses[0].status).toBe(status)
        expect(bad.responses[0].header("connection")).toBe("close")
        expect(bad.closed).toBe(true)
        const good = yield* rawExchange(port, request("GET / HTTP/1.1", "Host: x"), { responses: 1 })
        expect(good.responses[0].body.toString()).toBe("Hello, World!")
      })
    )
  }

  it.live("a rejection after pipelined valid requests comes after their responses", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(hello)
      const result = yield* rawExchange(
        port,
        `${request("GET / HTTP/1.1", "Host: x") + request("GET / HTTP/1.1", "Host: x")}GET / HTTP/1.1\nHost: x\n\n`
      )
      expect(result.responses.map((r) => r.status)).toEqual([200, 200, 400])
      expect(result.closed).toBe(true)
    })
  )

  it.live("one leading empty line before a request is tolerated (RFC 9112 §2.2)", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(hello)
      const result = yield* rawExchange(port, `\r\n${request("GET / HTTP/1.1", "Host: x")}`, { responses: 1 })
      expect(result.responses[0].status).toBe(200)
    })
  )

  it.live("limits are configurable", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(hello, { maxRequestLineSize: 100, maxHeaderSize: 300, maxHeaderCount: 3 })
      const line = yield* rawExchange(port, request(`GET /${"a".repeat(120)} HTTP/1.1`, "Host: x"))
      expect(line.responses[0].status).toBe(414)
      const count = yield* rawExchange(port, request("GET / HTTP/1.1", "Host: x", "A: 1", "B: 2", "C: 3"))
      expect(count.responses[0].status).toBe(431)
      const size = yield* rawExchange(port, request("GET / HTTP/1.1", "Host: x", `A: ${"a".repeat(300)}`))
      expect(size.responses[0].status).toBe(431)
      const ok = yield* rawExchange(port, request("GET / HTTP/1.1", "Host: x", "A: 1"), { responses: 1 })
      expect(ok.responses[0].status).toBe(200)
    })
  )
})
