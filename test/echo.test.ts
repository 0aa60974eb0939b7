/**
 * The contract of examples/echo.ts (documented at its top), checked against the real server.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import echo from "../examples/echo.ts"
import { rawExchange, request } from "./helpers/raw.ts"
import { serveApp } from "./helpers/server.ts"
import { connectWs } from "./helpers/ws.ts"

interface Fetched {
  readonly status: number
  readonly headers: Headers
  readonly body: Buffer
}

const fetchBytes = (url: string, init?: RequestInit): Effect.Effect<Fetched> =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) }
  })

interface Inspected {
  readonly method: string
  readonly url: string
  readonly headers: ReadonlyArray<readonly [string, string]>
  readonly body: string
}

/** Sends one raw request to /inspect and returns the parsed JSON answer. */
const inspect = (port: number, head: string, body: Uint8Array = new Uint8Array(0)) =>
  Effect.gen(function* () {
    const result = yield* rawExchange(port, Buffer.concat([Buffer.from(head, "latin1"), body]), { responses: 1 })
    expect(result.responses).toHaveLength(1)
    const response = result.responses[0]
    expect(response.status).toBe(200)
    expect(response.header("content-type")).toBe("application/json")
    const inspected: Inspected = JSON.parse(response.body.toString("utf8"))
    return inspected
  })

describe("examples/echo.ts", () => {
  it.live("GET / answers text/plain Hello, World!", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApp(echo)
      const response = yield* fetchBytes(`${url}/`)
      expect(response.status).toBe(200)
      expect(response.headers.get("content-type")).toBe("text/plain")
      expect(response.body.toString()).toBe("Hello, World!")
    })
  )

  it.live("POST /echo returns the body bytes with the same Content-Type", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApp(echo)
      const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
      const cases: ReadonlyArray<readonly [Buffer, string]> = [
        [binary, "application/octet-stream"],
        [Buffer.from("héllo wörld"), "text/plain; charset=utf-8"],
        [Buffer.concat([binary, binary, binary]), "application/x-custom"]
      ]
      for (const [body, type] of cases) {
        const response = yield* fetchBytes(`${url}/echo`, {
          method: "POST",
          body: new Uint8Array(body),
          headers: { "content-type": type }
        })
        expect(response.status).toBe(200)
        expect(response.headers.get("content-type")).toBe(type)
        expect(response.headers.get("content-length")).toBe(String(body.length))
        expect(response.body.equals(body)).toBe(true)
      }
    })
  )

  it.live("POST /echo of an empty body returns an empty body", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      const result = yield* rawExchange(
        port,
        request("POST /echo HTTP/1.1", "Host: x", "Content-Type: text/x-empty", "Content-Length: 0"),
        { responses: 1 }
      )
      const response = result.responses[0]
      expect(response.status).toBe(200)
      expect(response.header("content-type")).toBe("text/x-empty")
      expect(response.header("content-length")).toBe("0")
      expect(response.body.length).toBe(0)
    })
  )

  it.live("/inspect reports method, url with query, headers as received, and the body in base64", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      const body = Buffer.from([0, 1, 2, 253, 254, 255])
      const head = request(
        "PUT /inspect?a=1&b=two%20words&a=3 HTTP/1.1",
        "Host: example.test",
        "X-Zeta: last-letter-first",
        "content-LENGTH: 6",
        "X-Repeat: one",
        "Accept: */*",
        "X-Repeat: two"
      )
      const inspected = yield* inspect(port, head, body)
      expect(inspected.method).toBe("PUT")
      expect(inspected.url).toBe("/inspect?a=1&b=two%20words&a=3")
      expect(inspected.headers).toEqual([
        ["Host", "example.test"],
        ["X-Zeta", "last-letter-first"],
        ["content-LENGTH", "6"],
        ["X-Repeat", "one"],
        ["Accept", "*/*"],
        ["X-Repeat", "two"]
      ])
      expect(Buffer.from(inspected.body, "base64").equals(body)).toBe(true)
    })
  )

  it.live("/inspect answers any method", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      for (const method of ["GET", "POST", "DELETE", "PATCH", "OPTIONS", "CUSTOM"]) {
        const inspected = yield* inspect(port, request(`${method} /inspect HTTP/1.1`, "host: h"))
        expect(inspected).toEqual({ method, url: "/inspect", headers: [["host", "h"]], body: "" })
      }
      const posted = yield* inspect(
        port,
        request("POST /inspect?x HTTP/1.1", "Host: h", "Content-Length: 5", "Content-Type: text/plain"),
        Buffer.from("hello")
      )
      expect(posted.url).toBe("/inspect?x")
      expect(Buffer.from(posted.body, "base64").toString()).toBe("hello")
    })
  )

  it.live("/stream?chunks=N&size=B streams N*B bytes chunked, without Content-Length", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      for (const [chunks, size] of [
        [3, 5],
        [10, 1000],
        [1, 0]
      ]) {
        const result = yield* rawExchange(
          port,
          request(`GET /stream?chunks=${chunks}&size=${size} HTTP/1.1`, "Host: x"),
          {
            responses: 1
          }
        )
        const response = result.responses[0]
        expect(response.status).toBe(200)
        expect(response.header("transfer-encoding")).toBe("chunked")
        expect(response.header("content-length")).toBeUndefined()
        expect(response.body.length).toBe(chunks * size)
        expect(response.body.every((byte) => byte === 0x61)).toBe(true)
      }
    })
  )

  it.live("/bytes?n=N answers N bytes with Content-Length N", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      for (const n of [0, 1, 65536, 1_000_001]) {
        const result = yield* rawExchange(port, request(`GET /bytes?n=${n} HTTP/1.1`, "Host: x"), { responses: 1 })
        const response = result.responses[0]
        expect(response.status).toBe(200)
        expect(response.header("content-length")).toBe(String(n))
        expect(response.header("transfer-encoding")).toBeUndefined()
        expect(response.body.length).toBe(n)
      }
      // nothing follows the declared length: the next response on the connection parses cleanly
      const two = yield* rawExchange(
        port,
        request("GET /bytes?n=0 HTTP/1.1", "Host: x") + request("GET /bytes?n=2 HTTP/1.1", "Host: x"),
        { responses: 2 }
      )
      expect(two.responses.map((r) => r.body.toString())).toEqual(["", "aa"])
    })
  )

  it.live("/sleep?ms=N waits at least N ms, then answers slept", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApp(echo)
      const started = performance.now()
      const response = yield* fetchBytes(`${url}/sleep?ms=150`)
      const elapsed = performance.now() - started
      expect(response.status).toBe(200)
      expect(response.body.toString()).toBe("slept")
      expect(elapsed).toBeGreaterThanOrEqual(145)
      expect((yield* fetchBytes(`${url}/sleep?ms=0`)).body.toString()).toBe("slept")
    })
  )

  it.live("/fail answers 500", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApp(echo)
      expect((yield* fetchBytes(`${url}/fail`)).status).toBe(500)
    })
  )

  it.live("bad query values answer 400", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApp(echo)
      const bad = [
        "/stream",
        "/stream?chunks=2",
        "/stream?chunks=x&size=1",
        "/stream?chunks=1&size=-1",
        "/stream?chunks=1&size=99999999",
        "/bytes",
        "/bytes?n=",
        "/bytes?n=1.5",
        "/bytes?n=-3",
        "/bytes?n=0x10",
        "/bytes?n=99999999999",
        "/sleep",
        "/sleep?ms=soon",
        "/sleep?ms=99999999"
      ]
      for (const path of bad) {
        const response = yield* fetchBytes(`${url}${path}`)
        expect({ path, status: response.status }).toEqual({ path, status: 400 })
      }
    })
  )

  it.live("GET /ws is a WebSocket that echoes text as text and binary as binary", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echo)
      const client = yield* connectWs(`ws://127.0.0.1:${port}/ws`)
      expect(yield* client.echo("hello")).toEqual({ data: Buffer.from("hello"), binary: false })
      expect(yield* client.echo(Buffer.from([0, 255]))).toEqual({ data: Buffer.from([0, 255]), binary: true })
      // Without an upgrade the request gets 400 (Effect's answer to the failed upgrade).
      expect((yield* fetchBytes(`http://127.0.0.1:${port}/ws`)).status).toBe(400)
    })
  )

  it.live("unknown paths and methods a route does not take answer 404", () =>
    Effect.gen(function* () {
      const { url } = yield* serveApp(echo)
      for (const [method, path] of [
        ["GET", "/nowhere"],
        ["GET", "/echo"],
        ["POST", "/"],
        ["DELETE", "/"],
        ["GET", "/inspect/more"],
        ["POST", "/ws"]
      ]) {
        const response = yield* fetchBytes(`${url}${path}`, { method })
        expect({ method, path, status: response.status }).toEqual({ method, path, status: 404 })
        expect(response.body.toString()).toBe("Not Found")
      }
    })
  )
})
