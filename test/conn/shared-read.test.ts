/**
 * Reads into the process's shared buffer (src/listen/SharedRead.ts): every plain connection's
 * bytes land in the same memory, which the next read of any connection overwrites. What a
 * connection keeps of a read (an unfinished head, pipelined requests waiting for an earlier
 * response, body bytes the app has not read yet) must be its own copy, or one client's request
 * would turn into another's bytes. These tests interleave many connections' reads while their
 * apps are still waiting, so that a kept view would be overwritten before it is used.
 */
import { randomBytes } from "node:crypto"
import * as Net from "node:net"
import * as NodeTls from "node:tls"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { echoSocket } from "../../examples/echo.ts"
import { ScgiServer } from "../../src/index.ts"
import { readIntoShared } from "../../src/listen/SharedRead.ts"
import { halfOpenClient, rawExchange } from "../helpers/raw.ts"
import { parseScgiResponse, scgiExchange, scgiRequest } from "../helpers/scgi.ts"
import { serveApp } from "../helpers/server.ts"
import { waitUntil } from "../helpers/wait.ts"
import { clientFrame, parseFrames, upgradeRequest } from "../helpers/ws.ts"
import { echoHandler } from "../websocket/apps.ts"

/** Answers with the request's path and body, read only after a pause of `?wait=` ms. */
const slowEcho = Effect.gen(function* () {
  const request = yield* HttpServerRequest
  const wait = Number(new URL(request.url, "http://x").searchParams.get("wait") ?? "0")
  yield* Effect.sleep(wait)
  const body = new Uint8Array(yield* request.arrayBuffer)
  return HttpServerResponse.uint8Array(body, { headers: { "x-path": request.url } })
})

/** Splits `bytes` into pieces at `cuts` positions chosen from `seed`, so reads end mid-unit. */
const piecesOf = (bytes: Buffer, seed: number): Array<Buffer> => {
  const out: Array<Buffer> = []
  let from = 0
  let state = seed
  while (from < bytes.length) {
    state = (state * 1103515245 + 12345) % 2147483648
    const size = 1 + (state % 9000)
    out.push(bytes.subarray(from, from + size))
    from += size
  }
  return out
}

describe("reads into the shared buffer", () => {
  it.effect("an accepted plain socket reads into it, and every connection gets its own bytes", () =>
    Effect.callback<ReadonlyArray<string>, Error>((resume) => {
      const seen: Array<string> = []
      const buffers = new Set<Buffer>()
      const server = Net.createServer({ pauseOnConnect: true }, (socket) => {
        const reading = readIntoShared(socket, (length, buffer) => {
          buffers.add(buffer)
          seen.push(buffer.toString("latin1", 0, length))
          if (seen.length === 2) {
            server.close()
            resume(Effect.succeed(seen))
          }
          return true
        })
        if (!reading) resume(Effect.fail(new Error("an accepted plain socket did not take the shared buffer")))
        socket.on("error", () => {})
        socket.resume()
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as Net.AddressInfo
        for (const text of ["first", "second"]) {
          const client = Net.connect(port, "127.0.0.1", () => client.end(text))
          client.on("error", () => {})
        }
      })
      return Effect.sync(() => server.close())
    }).pipe(Effect.map((seen) => expect([...seen].sort()).toEqual(["first", "second"])))
  )

  it.effect("a socket that already holds read bytes keeps its 'data' events", () =>
    Effect.callback<boolean, Error>((resume) => {
      const server = Net.createServer((socket) => {
        socket.on("error", () => {})
        // Not paused: the bytes are read into the stream's own buffer before anyone asks.
        socket.once("readable", () => {
          const taken = readIntoShared(socket, () => true)
          socket.destroy()
          server.close()
          resume(Effect.succeed(taken))
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const client = Net.connect((server.address() as Net.AddressInfo).port, "127.0.0.1", () => client.write("early"))
        client.on("error", () => {})
      })
      return Effect.sync(() => server.close())
    }).pipe(Effect.map((taken) => expect(taken).toBe(false)))
  )

  it.effect("a TLS socket keeps its 'data' events", () =>
    Effect.sync(() => {
      // TLS records are decrypted by the TLS layer, which reads its socket itself.
      const socket = new NodeTls.TLSSocket(new Net.Socket())
      const taken = readIntoShared(socket, () => true)
      socket.destroy()
      expect(taken).toBe(false)
    })
  )

  it.live(
    "HTTP: 24 connections pipelining bodies in pieces, apps reading late, each gets its own bodies back",
    () =>
      Effect.gen(function* () {
        const { port } = yield* serveApp(slowEcho)
        const clients = Array.from({ length: 24 }, (_, client) => {
          // Small, mid-sized and over 64 KiB (more than one read of the shared buffer) bodies.
          const bodies = [randomBytes(17 + client), randomBytes(3000 + client * 7), randomBytes(70_000 + client)]
          const wire = Buffer.concat(
            bodies.flatMap((body, i) => [
              Buffer.from(
                `POST /c${client}/r${i}?wait=${(client * 7 + i * 5) % 30} HTTP/1.1\r\nHost: x\r\n` +
                  `Content-Length: ${body.length}\r\n\r\n`
              ),
              body
            ])
          )
          return { bodies, pieces: piecesOf(wire, client + 1) }
        })
        const results = yield* Effect.forEach(
          clients,
          ({ pieces }) => rawExchange(port, pieces, { responses: 3, delayMs: 1, timeoutMs: 15_000 }),
          { concurrency: "unbounded" }
        )
        results.forEach((result, client) => {
          expect(result.responses.map((response) => response.status)).toEqual([200, 200, 200])
          result.responses.forEach((response, i) => {
            expect(response.header("x-path")).toMatch(new RegExp(`^/c${client}/r${i}\\?`))
            expect(Buffer.compare(response.body, clients[client].bodies[i])).toBe(0)
          })
        })
      }),
    30_000
  )

  it.live(
    "SCGI: 24 requests with bodies in pieces, apps reading late, each gets its own body back",
    () =>
      Effect.gen(function* () {
        const context = yield* Layer.build(
          HttpServer.serve(slowEcho).pipe(Layer.provideMerge(ScgiServer.layer({ host: "127.0.0.1", port: 0 })))
        )
        const bound = Context.get(context, HttpServer.HttpServer).address
        if (bound._tag === "UnixPathAddress") throw new Error("expected a TCP address")
        const requests = Array.from({ length: 24 }, (_, client) => {
          const body = randomBytes(client % 2 === 0 ? 70_000 + client : 2_000 + client)
          const wire = scgiRequest(
            {
              REQUEST_METHOD: "POST",
              REQUEST_URI: `/c${client}?wait=${(client * 7) % 30}`,
              SERVER_PROTOCOL: "HTTP/1.1"
            },
            body
          )
          return { body, pieces: piecesOf(wire, client + 1) }
        })
        const responses = yield* Effect.forEach(
          requests,
          ({ pieces }) =>
            Effect.map(scgiExchange({ port: bound.port }, pieces, { delayMs: 1, timeoutMs: 15_000 }), ({ data }) =>
              parseScgiResponse(data)
            ),
          { concurrency: "unbounded" }
        )
        responses.forEach((response, client) => {
          expect(response.status).toBe(200)
          expect(response.header("x-path")).toBe(`/c${client}?wait=${(client * 7) % 30}`)
          expect(Buffer.compare(response.body, requests[client].body)).toBe(0)
        })
      }),
    30_000
  )

  it.live("bytes sent with an upgrade request reach the new protocol intact after other connections' reads", () =>
    Effect.gen(function* () {
      // `/up` switches protocols at once, in the read that brought the request, then waits before
      // echoing: the early bytes it was handed must not be the shared buffer's next contents.
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        if (!request.url.startsWith("/up")) return yield* slowEcho
        const socket = yield* request.upgradeWith({})
        yield* Effect.sleep(100)
        yield* Effect.catchTag(echoSocket(socket), "SocketError", () => Effect.void)
        return HttpServerResponse.empty()
      })
      const { port } = yield* serveApp(app)
      const early = randomBytes(2_000).toString("hex")
      const client = yield* halfOpenClient(
        { port },
        `GET /up HTTP/1.1\r\nHost: x\r\nUpgrade: echo/1\r\nConnection: Upgrade\r\n\r\n${early}`
      )
      expect(yield* waitUntil(() => Buffer.concat(client.chunks).includes("\r\n\r\n"), 2_000)).toBe(true)
      // While the app waits, other connections' requests are read into the same buffer.
      const others = yield* Effect.forEach(
        Array.from({ length: 8 }, (_, i) => randomBytes(20_000 + i)),
        (body) =>
          rawExchange(
            port,
            Buffer.concat([Buffer.from(`POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`), body]),
            {
              responses: 1
            }
          ),
        { concurrency: "unbounded" }
      )
      expect(others.map((result) => result.responses[0]?.status)).toEqual(Array(8).fill(200))
      const echoed = () => {
        const data = Buffer.concat(client.chunks)
        return data.subarray(data.indexOf("\r\n\r\n") + 4).toString("latin1")
      }
      expect(yield* waitUntil(() => echoed().length >= early.length, 2_000)).toBe(true)
      expect(echoed()).toBe(early)
    })
  )

  it.live("half a WebSocket frame sent with the handshake is whole when its other half arrives after other reads", () =>
    Effect.gen(function* () {
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        return yield* request.url === "/ws" ? echoHandler : slowEcho
      })
      const { port } = yield* serveApp(app)
      const message = randomBytes(3_000).toString("hex")
      const frame = clientFrame(1, message)
      const client = yield* halfOpenClient(
        { port },
        Buffer.concat([Buffer.from(upgradeRequest("/ws")), frame.subarray(0, 1_000)])
      )
      const received = () => Buffer.concat(client.chunks)
      expect(yield* waitUntil(() => received().includes("\r\n\r\n"), 2_000)).toBe(true)
      expect(received().toString("latin1")).toMatch(/^HTTP\/1\.1 101 /)
      yield* Effect.forEach(
        Array.from({ length: 8 }, (_, i) => randomBytes(20_000 + i)),
        (body) =>
          rawExchange(
            port,
            Buffer.concat([Buffer.from(`POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`), body]),
            { responses: 1 }
          ),
        { concurrency: "unbounded" }
      )
      client.socket.write(frame.subarray(1_000))
      const frames = () => parseFrames(received().subarray(received().indexOf("\r\n\r\n") + 4)).frames
      expect(yield* waitUntil(() => frames().length > 0, 2_000)).toBe(true)
      expect(frames()[0].opcode).toBe(1)
      expect(frames()[0].payload.toString("latin1")).toBe(message)
    })
  )
})
