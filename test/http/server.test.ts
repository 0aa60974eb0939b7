import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Stream } from "effect"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import echo from "../../examples/echo.ts"
import { halfOpenClient, parseResponses, rawExchange, request } from "../helpers/raw.ts"
import { serveApp, serveWithStats } from "../helpers/server.ts"
import { waitFor, waitUntil } from "../helpers/wait.ts"

const hello = Effect.succeed(HttpServerResponse.text("Hello, World!"))

describe("Http1Server over real sockets", () => {
  it.live("answers a fetch with status, headers, Date and Server", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApp(echo)
      const response = yield* Effect.promise(() => fetch(`${url}/`))
      expect(response.status).toBe(200)
      expect(yield* Effect.promise(() => response.text())).toBe("Hello, World!")
      expect(response.headers.get("content-type")).toBe("text/plain")
      expect(response.headers.get("content-length")).toBe("13")
      expect(response.headers.get("server")).toBe("effect-appserver")
      // RFC 9110 §5.6.7 IMF-fixdate
      expect(response.headers.get("date")).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/)
    })
  )

  it.live("echoes a POST body with its content type", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApp(echo)
      const body = Buffer.alloc(100_000, "x")
      const response = yield* Effect.promise(() =>
        fetch(`${url}/echo`, { method: "POST", body, headers: { "content-type": "application/x-test" } })
      )
      expect(response.headers.get("content-type")).toBe("application/x-test")
      expect(Buffer.from(yield* Effect.promise(() => response.arrayBuffer())).equals(body)).toBe(true)
    })
  )

  it.live("keeps a connection alive across requests and honours Connection: close", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(hello)
      const result = yield* rawExchange(
        port,
        [request("GET / HTTP/1.1", "Host: x"), request("GET / HTTP/1.1", "Host: x", "Connection: close")],
        { delayMs: 20 }
      )
      expect(result.responses.map((r) => r.status)).toEqual([200, 200])
      expect(result.responses[0].header("connection")).toBeUndefined()
      expect(result.responses[1].header("connection")).toBe("close")
      expect(result.closed).toBe(true)
    })
  )

  it.live("closes at once after answering a client that sent Connection: close, even if it keeps its side open", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* serveWithStats(hello)
      for (const head of [
        request("GET / HTTP/1.1", "Host: x", "Connection: close"),
        request("GET / HTTP/1.0", "Host: x"),
        `${request("POST / HTTP/1.1", "Host: x", "Connection: close", "Content-Length: 5").slice(0, -2)}\r\nhello`
      ]) {
        const client = yield* halfOpenClient({ port }, head)
        expect(yield* waitUntil(() => client.ended, 5_000)).toBe(true)
        expect(client.error).toBeUndefined()
        expect(parseResponses(Buffer.concat(client.chunks), [], true)[0].body.toString()).toBe("Hello, World!")
        // The lingering close (2 s) would keep the connection while the client's side is open.
        expect(
          yield* waitFor(
            Effect.map(stats.snapshot, (s) => s.openConnections === 0),
            500
          )
        ).toBe(true)
      }
    })
  )

  it.live("lingers after a Connection: close response when more bytes came, so none of them resets it", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* serveWithStats(hello)
      const client = yield* halfOpenClient(
        { port },
        request("GET / HTTP/1.1", "Host: x", "Connection: close") + request("GET / HTTP/1.1", "Host: x")
      )
      expect(yield* waitUntil(() => client.ended, 5_000)).toBe(true)
      expect(client.error).toBeUndefined()
      const responses = parseResponses(Buffer.concat(client.chunks), [], true)
      expect(responses.map((r) => r.body.toString())).toEqual(["Hello, World!"])
      yield* Effect.sleep(200)
      expect((yield* stats.snapshot).openConnections).toBe(1)
      client.socket.end()
      expect(
        yield* waitFor(
          Effect.map(stats.snapshot, (s) => s.openConnections === 0),
          5_000
        )
      ).toBe(true)
    })
  )

  it.live("closes HTTP/1.0 connections unless keep-alive is asked for", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(hello)
      const plain = yield* rawExchange(port, request("GET / HTTP/1.0"))
      expect(plain.responses[0].status).toBe(200)
      expect(plain.responses[0].header("connection")).toBe("close")
      expect(plain.closed).toBe(true)
      const kept = yield* rawExchange(
        port,
        [request("GET / HTTP/1.0", "Connection: keep-alive"), request("GET / HTTP/1.0")],
        { delayMs: 20 }
      )
      expect(kept.responses.map((r) => r.header("connection"))).toEqual(["keep-alive", "close"])
      expect(kept.closed).toBe(true)
    })
  )

  it.live("answers pipelined requests in order, coalesced into few writes", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      const pipelined =
        request("GET /sleep?ms=50 HTTP/1.1", "Host: x") +
        request("POST /echo HTTP/1.1", "Host: x", "Content-Length: 5") +
        "first" +
        request("GET / HTTP/1.1", "Host: x") +
        request("GET /bytes?n=3 HTTP/1.1", "Host: x")
      const result = yield* rawExchange(port, pipelined, { responses: 4 })
      expect(result.responses.map((r) => r.body.toString())).toEqual(["slept", "first", "Hello, World!", "aaa"])

      const many = Array.from({ length: 16 }, () => request("GET / HTTP/1.1", "Host: x")).join("")
      const batch = yield* rawExchange(port, many, { responses: 16 })
      expect(batch.responses).toHaveLength(16)
      // sixteen responses computed from one read go out in one write
      expect(batch.reads).toBeLessThanOrEqual(2)
    })
  )

  it.live("serves HEAD without a body but with the length", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      const result = yield* rawExchange(
        port,
        request("HEAD / HTTP/1.1", "Host: x") + request("GET / HTTP/1.1", "Host: x"),
        { responses: 2, headIndexes: [0] }
      )
      expect(result.responses[0].header("content-length")).toBe("13")
      expect(result.responses[0].body.length).toBe(0)
      expect(result.responses[1].body.toString()).toBe("Hello, World!")
    })
  )

  it.live("sends no body and no length for 204 and 304, and Content-Length: 0 for 205", () =>
    Effect.gen(function* () {
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        const status = Number(request.url.slice(1))
        return HttpServerResponse.text("ignored", { status })
      })
      const { port } = yield* serveApp(app)
      const result = yield* rawExchange(
        port,
        ["/204", "/304", "/205", "/200"].map((path) => request(`GET ${path} HTTP/1.1`, "Host: x")).join(""),
        { responses: 4 }
      )
      const [noContent, notModified, reset, ok] = result.responses
      expect(noContent.status).toBe(204)
      expect(noContent.header("content-length")).toBeUndefined()
      expect(noContent.header("transfer-encoding")).toBeUndefined()
      expect(notModified.status).toBe(304)
      expect(notModified.header("transfer-encoding")).toBeUndefined()
      expect(reset.header("content-length")).toBe("0")
      expect(ok.body.toString()).toBe("ignored")
      // nothing stray between the responses: the fourth parsed cleanly
      expect(result.data.toString("latin1").match(/ignored/g)).toHaveLength(1)
    })
  )

  it.live("streams bodies chunked on HTTP/1.1 and close-delimited on HTTP/1.0", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      const chunked = yield* rawExchange(port, request("GET /stream?chunks=4&size=3 HTTP/1.1", "Host: x"), {
        responses: 1
      })
      expect(chunked.responses[0].header("transfer-encoding")).toBe("chunked")
      expect(chunked.responses[0].body.toString()).toBe("aaaaaaaaaaaa")
      const delimited = yield* rawExchange(port, request("GET /stream?chunks=4&size=3 HTTP/1.0"))
      expect(delimited.responses[0].header("transfer-encoding")).toBeUndefined()
      expect(delimited.responses[0].header("connection")).toBe("close")
      expect(delimited.closed).toBe(true)
      expect(delimited.responses[0].body.toString()).toBe("aaaaaaaaaaaa")
    })
  )

  it.live("reads chunked request bodies and drops trailers", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      const result = yield* rawExchange(
        port,
        [
          request("POST /echo HTTP/1.1", "Host: x", "Transfer-Encoding: chunked", "Content-Type: text/plain").slice(
            0,
            -2
          ),
          "\r\n5;ext=1\r\nhello\r\n",
          "6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n",
          request("GET / HTTP/1.1", "Host: x")
        ],
        { responses: 2, delayMs: 10 }
      )
      expect(result.responses[0].body.toString()).toBe("hello world")
      expect(result.responses[1].body.toString()).toBe("Hello, World!")
    })
  )

  it.live("discards an unread body to keep the connection, and closes when it is too large", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(hello, { maxDrainSize: 1000 })
      const small = yield* rawExchange(
        port,
        request("POST / HTTP/1.1", "Host: x", "Content-Length: 500") +
          "x".repeat(500) +
          request("GET / HTTP/1.1", "Host: x"),
        { responses: 2 }
      )
      expect(small.responses.map((r) => r.status)).toEqual([200, 200])
      expect(small.responses[0].header("connection")).toBeUndefined()
      const large = yield* rawExchange(
        port,
        request("POST / HTTP/1.1", "Host: x", "Content-Length: 50000") + "x".repeat(100)
      )
      expect(large.responses[0].status).toBe(200)
      expect(large.responses[0].header("connection")).toBe("close")
      expect(large.closed).toBe(true)
    })
  )

  it.live("answers 100 Continue only when the app reads the body", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      const head = request("POST /echo HTTP/1.1", "Host: x", "Content-Length: 4", "Expect: 100-continue")
      // the client holds the body back until it sees 100 Continue
      const reading = yield* rawExchange(port, [head, "ping"], { delayMs: 300, responses: 1 })
      const text = reading.data.toString("latin1")
      expect(text.startsWith("HTTP/1.1 100 Continue\r\n\r\n")).toBe(true)
      expect(reading.responses[0].body.toString()).toBe("ping")

      const ignoring = yield* rawExchange(
        port,
        request("GET / HTTP/1.1", "Host: x", "Content-Length: 4", "Expect: 100-continue")
      )
      expect(ignoring.data.toString("latin1")).not.toContain("100 Continue")
      expect(ignoring.responses[0].status).toBe(200)
      // the client may still be holding its body: the connection cannot be reused
      expect(ignoring.responses[0].header("connection")).toBe("close")
    })
  )

  it.live("refuses a declared body over the limit with 413 before the app runs or 100 Continue", () =>
    Effect.gen(function* () {
      let ran = false
      const app = Effect.sync(() => {
        ran = true
        return HttpServerResponse.text("ran")
      })
      const { port } = yield* serveApp(app, { maxBodySize: 1000 })
      const result = yield* rawExchange(
        port,
        request("POST / HTTP/1.1", "Host: x", "Content-Length: 1001", "Expect: 100-continue")
      )
      expect(result.data.toString("latin1")).not.toContain("100 Continue")
      expect(result.responses[0].status).toBe(413)
      expect(result.responses[0].header("connection")).toBe("close")
      expect(ran).toBe(false)
    })
  )

  it.live("fails the body stream with MaxSizeExceeded when a chunked body grows over the limit", () =>
    Effect.gen(function* () {
      const seen = yield* Deferred.make<string>()
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        return yield* request.text.pipe(
          Effect.map(HttpServerResponse.text),
          Effect.tapError((error) =>
            Deferred.succeed(seen, error.reason._tag === "RequestParseError" ? String(error.reason.cause) : "other")
          )
        )
      })
      const { port } = yield* serveApp(app, { maxBodySize: 10 })
      const result = yield* rawExchange(
        port,
        request("POST / HTTP/1.1", "Host: x", "Transfer-Encoding: chunked") +
          "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n"
      )
      expect(result.responses[0].status).toBe(413)
      expect(yield* Deferred.await(seen)).toContain("MaxSizeExceeded")
    })
  )

  it.live("maps app failures to 500, logs them, and keeps the connection", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      const result = yield* rawExchange(
        port,
        request("GET /fail HTTP/1.1", "Host: x") + request("GET / HTTP/1.1", "Host: x"),
        { responses: 2 }
      )
      expect(result.responses.map((r) => r.status)).toEqual([500, 200])
      expect(result.closed).toBe(false)
    })
  )

  it.live("never sends a response header with CR or LF: 500 instead", () =>
    Effect.gen(function* () {
      const app = Effect.succeed(HttpServerResponse.text("x", { headers: { "x-evil": "a\r\nset-cookie: stolen=1" } }))
      const { port } = yield* serveApp(app)
      const result = yield* rawExchange(port, request("GET / HTTP/1.1", "Host: x"), { responses: 1 })
      expect(result.responses[0].status).toBe(500)
      expect(result.data.toString("latin1")).not.toContain("stolen")
    })
  )

  it.live("interrupts the request's fiber when the client disconnects", () =>
    Effect.gen(function* () {
      const started = yield* Deferred.make<void>()
      const interrupted = yield* Deferred.make<void>()
      const app = Effect.gen(function* () {
        yield* Deferred.succeed(started, undefined)
        yield* Effect.sleep("10 seconds")
        return HttpServerResponse.text("late")
      }).pipe(
        Effect.interruptible,
        Effect.onInterrupt(() => Deferred.succeed(interrupted, undefined))
      )
      const { port } = yield* serveApp(app)
      const client = yield* Effect.forkChild(
        rawExchange(port, request("GET / HTTP/1.1", "Host: x"), { timeoutMs: 10_000 })
      )
      yield* Deferred.await(started)
      yield* Fiber.interrupt(client)
      yield* Deferred.await(interrupted).pipe(Effect.timeout("2 seconds"))
    })
  )

  it.live("gives the app the path and query of an absolute-form target, with Host from it", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      const result = yield* rawExchange(
        port,
        request("GET http://example.com:81/inspect?a=1 HTTP/1.1", "Host: other"),
        { responses: 1 }
      )
      const body = JSON.parse(result.responses[0].body.toString())
      expect(body.url).toBe("/inspect?a=1")
    })
  )

  it.live("stops producing a streamed response for a client that does not read (backpressure)", () =>
    Effect.gen(function* () {
      let produced = 0
      const chunk = new Uint8Array(64 * 1024)
      const app = Effect.succeed(
        HttpServerResponse.stream(
          Stream.range(1, 4096, 1).pipe(
            Stream.map(() => {
              produced += chunk.length
              return chunk
            })
          )
        )
      )
      const { port } = yield* serveApp(app)
      // connect and send, but never read: the kernel buffers fill, then the server must wait
      yield* rawExchange(port, request("GET / HTTP/1.1", "Host: x"), { timeoutMs: 1500, responses: 1 }).pipe(
        Effect.forkChild
      )
      yield* Effect.sleep("1 second")
      // 4096 chunks of 64 KiB would be 256 MiB; only what fits in socket buffers is produced
      expect(produced).toBeLessThan(64 * 1024 * 1024)
    })
  )
})
