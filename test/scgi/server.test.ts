/**
 * ScgiServer over real sockets (TCP and a unix socket), driven by a small SCGI client that speaks
 * the protocol as a front end does: one request per connection, a CGI-style response with a
 * `Status:` field, delimited by the server closing the connection.
 */

import { randomBytes } from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import type { HttpServerError } from "effect/http/HttpServerError"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import echo from "../../examples/echo.ts"
import { BodyTimeout, IncompleteBody, rawHeaders, ScgiServer, Stats } from "../../src/index.ts"
import type { ScgiServerOptionsInput } from "../../src/options.ts"
import { accessLines, accessLogFile } from "../helpers/accessLog.ts"
import { halfOpenClient } from "../helpers/raw.ts"
import {
  netstring,
  parseScgiResponse,
  type ScgiAddress,
  type ScgiResponse,
  scgi,
  scgiExchange,
  scgiRequest
} from "../helpers/scgi.ts"
import { type Provided, serveApp as serveHttp } from "../helpers/server.ts"
import { waitUntil } from "../helpers/wait.ts"

const dirs: Array<string> = []

afterEach(() => {
  for (const dir of dirs.splice(0)) Fs.rmSync(dir, { recursive: true, force: true })
})

/** A socket path in a fresh temporary directory (removed after the test). */
const socketPath = (): string => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "appserver-scgi-"))
  dirs.push(dir)
  return Path.join(dir, "scgi.sock")
}

interface Started {
  readonly address: ScgiAddress
  readonly server: HttpServer.HttpServer["Service"]
  readonly stats: Stats["Service"]
}

const addressOf = (context: Context.Context<HttpServer.HttpServer | Stats>): Started => {
  const server = Context.get(context, HttpServer.HttpServer)
  const address = server.address
  return {
    address: address._tag === "UnixPathAddress" ? { path: address.path } : { port: address.port },
    server,
    stats: Context.get(context, Stats)
  }
}

const withDefaults = (options: ScgiServerOptionsInput): ScgiServerOptionsInput =>
  options.path === undefined ? { host: "127.0.0.1", port: 0, ...options } : options

/** Serves `served` (an app, an HttpRouter) on ScgiServer for the rest of the scope. */
const serveLayer = <E>(
  served: Layer.Layer<never, E, HttpServer.HttpServer | Exclude<Provided, HttpServerRequest>>,
  options: ScgiServerOptionsInput = {}
) => Effect.map(Layer.build(served.pipe(Layer.provideMerge(ScgiServer.layer(withDefaults(options))))), addressOf)

const serveApp = <E>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, Provided>,
  options: ScgiServerOptionsInput = {}
) => serveLayer(HttpServer.serve(app), options)

/** Serves `app` in a scope the test closes itself (and that is closed at the end of the test too). */
const serveScoped = <E>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, Provided>,
  options: ScgiServerOptionsInput = {}
) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(
      HttpServer.serve(app).pipe(Layer.provideMerge(ScgiServer.layer(withDefaults(options)))),
      scope
    )
    return { scope, ...addressOf(context) }
  })

const get = (uri: string, extra: Readonly<Record<string, string>> = {}) => ({
  REQUEST_METHOD: "GET",
  REQUEST_URI: uri,
  SERVER_PROTOCOL: "HTTP/1.1",
  ...extra
})

/** A front end connection the test drives by hand. */
interface Client {
  readonly socket: Net.Socket
  readonly chunks: Array<Buffer>
  /** The server closed its side or the connection. */
  closed: boolean
}

const received = (client: Client): Buffer => Buffer.concat(client.chunks)

/** A connection destroyed when the scope closes. */
const connect = (address: ScgiAddress) =>
  Effect.acquireRelease(
    Effect.callback<Client>((resume) => {
      const socket = "port" in address ? Net.connect(address.port, "127.0.0.1") : Net.connect(address.path)
      const client: Client = { socket, chunks: [], closed: false }
      socket.on("data", (chunk: Buffer) => client.chunks.push(chunk))
      socket.on("end", () => {
        client.closed = true
      })
      socket.on("close", () => {
        client.closed = true
      })
      socket.on("error", () => {})
      socket.once("connect", () => resume(Effect.succeed(client)))
      return Effect.sync(() => socket.destroy())
    }),
    (client) => Effect.sync(() => client.socket.destroy())
  )

const waitForStats = (stats: Stats["Service"], done: (s: StatsOf) => boolean, timeoutMs: number) =>
  Effect.gen(function* () {
    const until = performance.now() + timeoutMs
    for (;;) {
      const snapshot = yield* stats.snapshot
      if (done(snapshot)) return true
      if (performance.now() > until) return false
      yield* Effect.sleep(10)
    }
  })
type StatsOf = Effect.Success<Stats["Service"]["snapshot"]>

/** How an app's body read ended. */
type Outcome = "read" | "interrupted" | "IncompleteBody" | "timeout 408" | "other failure"

const outcomeOf = (exit: Exit.Exit<unknown, HttpServerError>): Outcome => {
  if (Exit.isSuccess(exit)) return "read"
  const error = Cause.findErrorOption(exit.cause)
  if (Option.isNone(error)) return Cause.hasInterrupts(exit.cause) ? "interrupted" : "other failure"
  const reason = error.value.reason
  const cause = reason._tag === "RequestParseError" ? reason.cause : undefined
  if (cause instanceof IncompleteBody) return "IncompleteBody"
  if (cause instanceof BodyTimeout) return "timeout 408"
  return "other failure"
}

const hello = { REQUEST_METHOD: "GET", REQUEST_URI: "/" }

describe("ScgiServer: requests and responses", () => {
  it.live("answers GET / with a Status line, the app's headers and the body, then closes", () =>
    Effect.gen(function* () {
      const { address } = yield* serveApp(echo)
      const { data, reset } = yield* scgiExchange(address, scgiRequest(hello))
      expect(reset).toBe(false)
      const response = parseScgiResponse(data)
      expect(data.toString("latin1").startsWith("Status: 200 OK\r\n")).toBe(true)
      expect(response.status).toBe(200)
      expect(response.header("content-type")).toBe("text/plain")
      expect(response.header("content-length")).toBe("13")
      expect(response.body.toString()).toBe("Hello, World!")
      // CGI responses carry no hop-by-hop fields: the front end frames the client's response
      expect(response.header("connection")).toBeUndefined()
      expect(response.header("transfer-encoding")).toBeUndefined()
    })
  )

  it.live("serves on a unix socket, whose address is a UnixPathAddress", () =>
    Effect.gen(function* () {
      const path = socketPath()
      const { address, server } = yield* serveApp(echo, { path })
      expect(server.address._tag).toBe("UnixPathAddress")
      expect(server.address._tag === "UnixPathAddress" && server.address.path).toBe(path)
      expect(address).toEqual({ path })
      const response = yield* scgi(address, hello)
      expect(response.status).toBe(200)
      expect(response.body.toString()).toBe("Hello, World!")
      const echoed = yield* scgi({ path }, { REQUEST_METHOD: "POST", REQUEST_URI: "/echo" }, "over unix")
      expect(echoed.body.toString()).toBe("over unix")
    })
  )

  it.live("echoes a 1 MiB body written in pieces, with its content type", () =>
    Effect.gen(function* () {
      const { address } = yield* serveApp(echo)
      const body = randomBytes(1024 * 1024)
      const request = scgiRequest(
        { REQUEST_METHOD: "POST", REQUEST_URI: "/echo", CONTENT_TYPE: "application/x-test" },
        body
      )
      const headLength = request.length - body.length
      // the head in two pieces, then the body in 16 pieces of 64 KiB
      const pieces = [request.subarray(0, 10), request.subarray(10, headLength)]
      for (let at = headLength; at < request.length; at += 64 * 1024) pieces.push(request.subarray(at, at + 64 * 1024))
      const { data } = yield* scgiExchange(address, pieces, { delayMs: 2, timeoutMs: 15_000 })
      const response = parseScgiResponse(data)
      expect(response.status).toBe(200)
      expect(response.header("content-type")).toBe("application/x-test")
      expect(response.header("content-length")).toBe(String(body.length))
      expect(response.body.length).toBe(body.length)
      expect(response.body.equals(body)).toBe(true)
    })
  )

  it.live("sends a streamed body close-delimited: no Content-Length and no chunked framing", () =>
    Effect.gen(function* () {
      const { address } = yield* serveApp(echo)
      const small = yield* scgi(address, get("/stream?chunks=4&size=3"))
      expect(small.status).toBe(200)
      expect(small.header("content-length")).toBeUndefined()
      expect(small.header("transfer-encoding")).toBeUndefined()
      expect(small.body.toString()).toBe("aaaaaaaaaaaa")
      // a large stream arrives whole, every byte the app's (no chunk-size lines in between)
      const large = yield* scgi(address, get("/stream?chunks=64&size=16384"))
      expect(large.body.length).toBe(64 * 16384)
      expect(large.body.every((byte) => byte === 0x61)).toBe(true)
    })
  )

  it.live("answers HEAD with the headers (Content-Length included) and no body", () =>
    Effect.gen(function* () {
      const { address } = yield* serveApp(echo)
      const head = yield* scgi(address, { REQUEST_METHOD: "HEAD", REQUEST_URI: "/" })
      expect(head.status).toBe(200)
      expect(head.header("content-length")).toBe("13")
      expect(head.body.length).toBe(0)
      const bytes = yield* scgi(address, { REQUEST_METHOD: "HEAD", REQUEST_URI: "/bytes?n=5000" })
      expect(bytes.header("content-length")).toBe("5000")
      expect(bytes.body.length).toBe(0)
      const stream = yield* scgi(address, { REQUEST_METHOD: "HEAD", REQUEST_URI: "/stream?chunks=3&size=10" })
      expect(stream.status).toBe(200)
      expect(stream.body.length).toBe(0)
    })
  )

  it.live("provides HttpServer to HttpRouter.serve: routes, its 404, and a failing handler's 500", () =>
    Effect.gen(function* () {
      const routes = Layer.mergeAll(
        HttpRouter.add("GET", "/known", HttpServerResponse.text("known route")),
        HttpRouter.add("POST", "/users/:id", (request) =>
          Effect.map(HttpRouter.params, (params) =>
            HttpServerResponse.text(`user ${params.id} via ${request.method}`, { status: 201 })
          )
        ),
        HttpRouter.add("*", "/fail", echo)
      )
      const { address } = yield* serveLayer(HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true }))
      const known = yield* scgi(address, get("/known"))
      expect(known.status).toBe(200)
      expect(known.body.toString()).toBe("known route")
      const created = yield* scgi(address, { REQUEST_METHOD: "POST", REQUEST_URI: "/users/42" })
      expect(created.status).toBe(201)
      expect(created.reason).toBe("Created")
      expect(created.body.toString()).toBe("user 42 via POST")
      const missing = yield* scgi(address, get("/nowhere"))
      expect(missing.status).toBe(404)
      const failed = yield* scgi(address, get("/fail"))
      expect(failed.status).toBe(500)
      expect(failed.reason).toBe("Internal Server Error")
    })
  )

  it.live("answers the echo app's /fail with 500", () =>
    Effect.gen(function* () {
      const { address } = yield* serveApp(echo)
      const failed = yield* scgi(address, get("/fail"))
      expect(failed.status).toBe(500)
      const notFound = yield* scgi(address, get("/nowhere"))
      expect(notFound.status).toBe(404)
      expect(notFound.body.toString()).toBe("Not Found")
    })
  )

  it.live("gives the app the request and its CGI environment through ScgiEnviron", () =>
    Effect.gen(function* () {
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        const environ = yield* ScgiServer.ScgiEnviron
        const body = yield* request.text
        return yield* HttpServerResponse.json({
          method: request.method,
          url: request.url,
          originalUrl: request.originalUrl,
          remoteAddress: Option.getOrNull(request.remoteAddress),
          xFoo: request.headers["x-foo"] ?? null,
          contentType: request.headers["content-type"] ?? null,
          rawHeaders: rawHeaders(request),
          body,
          https: environ.https,
          remotePort: (yield* environ.cgi).REMOTE_PORT ?? null,
          variables: environ.variables
        })
      })
      const { address } = yield* serveApp(app, { environ: { APP_ENV: "staging", SERVER_NAME: "static.example" } })
      const request = Buffer.concat([
        netstring([
          ["CONTENT_LENGTH", "4"],
          ["SCGI", "1"],
          ["REQUEST_METHOD", "PUT"],
          ["REQUEST_URI", "/env/caf%C3%A9?x=1"],
          ["CONTENT_TYPE", "text/plain"],
          ["HTTPS", "on"],
          ["REMOTE_ADDR", "203.0.113.7"],
          ["REMOTE_PORT", "50123"],
          ["SERVER_NAME", "front.example"],
          ["HTTP_HOST", "www.example.com"],
          ["HTTP_X_FOO", "one"],
          ["HTTP_X_FOO", "two"]
        ]),
        Buffer.from("body")
      ])
      const { data } = yield* scgiExchange(address, request)
      const response = parseScgiResponse(data)
      expect(response.status).toBe(200)
      const seen = JSON.parse(response.body.toString())
      expect(seen).toMatchObject({
        method: "PUT",
        url: "/env/caf%C3%A9?x=1",
        originalUrl: "https://www.example.com/env/caf%C3%A9?x=1",
        remoteAddress: "203.0.113.7",
        xFoo: "one, two",
        contentType: "text/plain",
        body: "body",
        https: true,
        remotePort: 50123
      })
      expect(seen.rawHeaders).toEqual([
        ["host", "www.example.com"],
        ["x-foo", "one"],
        ["x-foo", "two"],
        ["content-type", "text/plain"],
        ["content-length", "4"]
      ])
      expect(seen.variables).toMatchObject({
        // the request's own variables win over the static environ
        SERVER_NAME: "front.example",
        // static ones fill in
        APP_ENV: "staging",
        HTTP_X_FOO: "one, two",
        REMOTE_PORT: "50123",
        SCGI: "1"
      })
    })
  )

  it.live("layerServer provides HttpServer and Stats alone, for apps that need no platform services", () =>
    Effect.gen(function* () {
      const context = yield* Layer.build(
        HttpServer.serve(Effect.succeed(HttpServerResponse.text("bare"))).pipe(
          Layer.provideMerge(ScgiServer.layerServer({ host: "127.0.0.1", port: 0 }))
        )
      )
      const { address, stats } = addressOf(context)
      const response = yield* scgi(address, hello)
      expect(response.body.toString()).toBe("bare")
      expect((yield* stats.snapshot).requests).toBe(1)
    })
  )

  it.live("an app that reads ScgiEnviron runs unchanged on the HTTP server, with an empty environment", () =>
    Effect.gen(function* () {
      const app = Effect.gen(function* () {
        const environ = yield* ScgiServer.ScgiEnviron
        return yield* HttpServerResponse.json({ variables: environ.variables, https: environ.https })
      })
      const { url } = yield* serveHttp(app)
      const response = yield* Effect.promise(() => fetch(`${url}/`))
      expect(yield* Effect.promise(() => response.json())).toEqual({ variables: {}, https: false })
    })
  )

  it.live("answers 500 for a response header with CR/LF, and never sends the header", () =>
    Effect.gen(function* () {
      const app = Effect.succeed(HttpServerResponse.text("stolen", { headers: { "x-bad": "a\r\nInjected: yes" } }))
      const { address } = yield* serveApp(app)
      const { data } = yield* scgiExchange(address, scgiRequest(hello))
      const response = parseScgiResponse(data)
      expect(response.status).toBe(500)
      expect(data.toString("latin1")).not.toContain("Injected")
      expect(data.toString("latin1")).not.toContain("stolen")
    })
  )
})

describe("ScgiServer: response framing", () => {
  it.live("sends each cookie as its own set-cookie line, and a custom status text", () =>
    Effect.gen(function* () {
      const app = HttpServerResponse.text("teapot", { status: 418, statusText: "Short And Stout" }).pipe(
        HttpServerResponse.setCookies([
          ["a", "1", {}],
          ["b", "2", { httpOnly: true }]
        ])
      )
      const { address } = yield* serveApp(app)
      const { data } = yield* scgiExchange(address, scgiRequest(hello))
      const response = parseScgiResponse(data)
      expect(response.status).toBe(418)
      expect(response.reason).toBe("Short And Stout")
      expect(response.fields.filter(([name]) => name.toLowerCase() === "set-cookie").map(([, v]) => v)).toEqual([
        "a=1",
        "b=2; HttpOnly"
      ])
      expect(response.body.toString()).toBe("teapot")
    })
  )

  it.live("sends one Status line, the response's: a status header from the app is not copied", () =>
    Effect.gen(function* () {
      const app = Effect.succeed(HttpServerResponse.text("missing", { status: 404, headers: { status: "200 OK" } }))
      const { address } = yield* serveApp(app)
      const { data } = yield* scgiExchange(address, scgiRequest(hello))
      const response = parseScgiResponse(data)
      expect(response.status).toBe(404)
      expect(response.fields.filter(([name]) => name.toLowerCase() === "status")).toEqual([["Status", "404 Not Found"]])
      expect(response.body.toString()).toBe("missing")
    })
  )

  it.live("sends no body for 204 and 304, and no Content-Length for 204", () =>
    Effect.gen(function* () {
      const app = Effect.map(HttpServerRequest, (request) =>
        HttpServerResponse.text("ignored", { status: Number(request.url.slice(1)) })
      )
      const { address } = yield* serveApp(app)
      for (const status of [204, 304]) {
        const response = yield* scgi(address, get(`/${status}`))
        expect(response.status).toBe(status)
        expect(response.body.length).toBe(0)
        // RFC 9110 §8.6: never in a 204; a 304 may carry the length a 200 would have had
        if (status === 204) expect(response.header("content-length")).toBeUndefined()
        else expect(response.header("content-length") ?? "7").toBe("7")
      }
    })
  )

  it.live("an app that answers without reading the body: the response arrives whole, without a reset", () =>
    Effect.gen(function* () {
      const app = Effect.succeed(HttpServerResponse.text("answered early"))
      const { address } = yield* serveApp(app)
      const body = Buffer.alloc(4 * 1024 * 1024, "e")
      const request = scgiRequest({ REQUEST_METHOD: "POST", REQUEST_URI: "/" }, body)
      const { data, reset } = yield* scgiExchange(address, request, { timeoutMs: 10_000 })
      expect(reset).toBe(false)
      expect(parseScgiResponse(data).body.toString()).toBe("answered early")
    })
  )

  it.live(
    "closes at once after answering a request read in full: a front end that keeps its side open holds nothing",
    () =>
      Effect.gen(function* () {
        const { address, stats } = yield* serveApp(Effect.succeed(HttpServerResponse.text("whole")))
        const client = yield* halfOpenClient(address, scgiRequest(hello))
        expect(yield* waitUntil(() => client.ended, 5_000)).toBe(true)
        expect(client.error).toBeUndefined()
        expect(parseScgiResponse(Buffer.concat(client.chunks)).body.toString()).toBe("whole")
        // The front end's side is still open; the server's linger (2 s) would keep the connection.
        expect(yield* waitForStats(stats, (s) => s.openConnections === 0, 500)).toBe(true)
      })
  )

  it.live(
    "bytes after the request: the response arrives whole, and the server lingers until the front end closes",
    () =>
      Effect.gen(function* () {
        const { address, stats } = yield* serveApp(Effect.succeed(HttpServerResponse.text("whole")))
        const client = yield* halfOpenClient(address, Buffer.concat([scgiRequest(hello), Buffer.from("more bytes")]))
        expect(yield* waitUntil(() => client.ended, 5_000)).toBe(true)
        expect(client.error).toBeUndefined()
        expect(parseScgiResponse(Buffer.concat(client.chunks)).body.toString()).toBe("whole")
        // Half-closed and still reading: a close now could reset what the front end sends next.
        yield* Effect.sleep(200)
        expect((yield* stats.snapshot).openConnections).toBe(1)
        client.socket.end()
        expect(yield* waitForStats(stats, (s) => s.openConnections === 0, 5_000)).toBe(true)
      })
  )

  it.live("a streamed body that fails midway resets the connection: a partial body never looks whole", () =>
    Effect.gen(function* () {
      const app = Effect.succeed(
        HttpServerResponse.stream(
          Stream.concat(
            Stream.make(new TextEncoder().encode("partial")),
            Stream.fromEffect(Effect.andThen(Effect.sleep("20 millis"), Effect.fail(new Error("the stream broke"))))
          )
        )
      )
      const { address } = yield* serveApp(app)
      const { data, reset } = yield* scgiExchange(address, scgiRequest(hello))
      expect(reset).toBe(true)
      // whatever arrived is not a complete response the front end could pass on as one
      expect(data.toString()).not.toContain("the stream broke")
    })
  )

  it.live("a streamed body longer or shorter than its declared Content-Length resets the connection", () =>
    Effect.gen(function* () {
      const app = Effect.map(HttpServerRequest, (request) =>
        HttpServerResponse.stream(Stream.make(new TextEncoder().encode("0123456789")), {
          contentLength: request.url === "/short" ? 20 : 5
        })
      )
      const { address } = yield* serveApp(app)
      for (const path of ["/long", "/short"]) {
        const { reset } = yield* scgiExchange(address, scgiRequest(get(path)))
        expect(reset, path).toBe(true)
      }
    })
  )

  it.live("a front end that sends part of a head and leaves costs nothing: the app never runs", () =>
    Effect.gen(function* () {
      let ran = 0
      const app = Effect.sync(() => {
        ran++
        return HttpServerResponse.text("ran")
      })
      const { address, stats } = yield* serveApp(app)
      const client = yield* connect(address)
      client.socket.write("70:CONTENT_LENGTH\x000\x00")
      expect(yield* waitForStats(stats, (s) => s.openConnections === 1, 5_000)).toBe(true)
      client.socket.destroy()
      expect(yield* waitForStats(stats, (s) => s.openConnections === 0, 5_000)).toBe(true)
      expect(ran).toBe(0)
      const snapshot = yield* stats.snapshot
      expect(snapshot.requests).toBe(0)
      expect(snapshot.protocolErrors).toEqual({})
    })
  )
})

describe("ScgiServer: refusals", () => {
  it.live("answers a malformed request 400 with the reason, closes, and keeps serving others", () =>
    Effect.gen(function* () {
      let ran = 0
      const app = Effect.sync(() => {
        ran++
        return HttpServerResponse.text("ran")
      })
      const { address, stats } = yield* serveApp(app)
      // an HTTP request sent to the SCGI port
      const http = yield* scgiExchange(address, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      const refused = parseScgiResponse(http.data)
      expect(refused.status).toBe(400)
      expect(refused.reason).toBe("Bad Request")
      expect(refused.body.toString()).toMatch(/not a decimal number/)
      // variables that do not make an HTTP request
      const badMethod = yield* scgi(address, { REQUEST_METHOD: "G ET", REQUEST_URI: "/" })
      expect(badMethod.status).toBe(400)
      expect(badMethod.body.toString()).toMatch(/REQUEST_METHOD/)
      const noScgi = yield* scgiExchange(address, netstring([["CONTENT_LENGTH", "0"]]))
      expect(parseScgiResponse(noScgi.data).status).toBe(400)
      expect(ran).toBe(0)
      // the server still serves well-formed requests, also at the same time as a bad one
      const [good, bad] = yield* Effect.all([scgi(address, hello), scgiExchange(address, "1x:")], {
        concurrency: "unbounded"
      })
      expect(good.body.toString()).toBe("ran")
      expect(parseScgiResponse(bad.data).status).toBe(400)
      expect(ran).toBe(1)
      expect((yield* stats.snapshot).protocolErrors).toEqual({ "400": 4 })
    })
  )

  it.live("answers variables with bytes HTTP refuses 400 naming the variable, closes, never runs the app", () =>
    Effect.gen(function* () {
      let ran = 0
      const { address, stats } = yield* serveApp(
        Effect.andThen(
          Effect.sync(() => {
            ran++
          }),
          echo
        )
      )
      const inspect = get("/inspect")
      // [the variables, the reason the front end is told]
      const cases: ReadonlyArray<readonly [Readonly<Record<string, string>>, string]> = [
        [{ ...inspect, HTTP_X_A: "a\r\nInjected: 1" }, "invalid character in HTTP_X_A"],
        // a NUL cannot be sent in a value (it ends it in the netstring): the unit tests have it
        [{ ...inspect, HTTP_X_A: "a\x01b" }, "invalid character in HTTP_X_A"],
        [{ ...inspect, HTTP_X_A: "a\x7fb" }, "invalid character in HTTP_X_A"],
        // the app would echo it into its response head
        [{ REQUEST_METHOD: "POST", REQUEST_URI: "/echo", CONTENT_TYPE: "a\rb" }, "invalid character in CONTENT_TYPE"],
        [{ ...inspect, HTTP_HOST: "exa mple.com" }, "invalid HTTP_HOST"],
        [get("/inspect\r\nInjected: 1"), "invalid character in REQUEST_URI"],
        [get("/inspect?a b"), "invalid character in REQUEST_URI"],
        [{ REQUEST_METHOD: "GET", PATH_INFO: "/inspect", QUERY_STRING: "a\nb" }, "invalid character in QUERY_STRING"],
        [{ ...inspect, REMOTE_ADDR: "203.0.113.9\nInjected" }, "invalid character in REMOTE_ADDR"],
        [{ ...inspect, SERVER_PROTOCOL: "HTTP/1.1\r\nInjected" }, "invalid character in SERVER_PROTOCOL"]
      ]
      for (const [variables, reason] of cases) {
        // scgiExchange fails unless the server closes, and tells a reset from a FIN
        const { data, reset } = yield* scgiExchange(address, scgiRequest(variables))
        expect(reset).toBe(false)
        const refused = parseScgiResponse(data)
        expect(refused.status, reason).toBe(400)
        // the reason names the variable and echoes none of its bytes
        expect(refused.body.toString("latin1")).toBe(`${reason}\n`)
        expect(data.toString("latin1")).not.toContain("Injected")
        expect(ran, reason).toBe(0)
      }
      // the next connection is served, HTAB in a field value allowed
      const served = yield* scgi(address, { ...inspect, HTTP_X_A: "a\tb", HTTP_HOST: "example.com:8080" })
      expect(served.status).toBe(200)
      const { url, headers } = JSON.parse(served.body.toString()) as { url: string; headers: Array<[string, string]> }
      expect(url).toBe("/inspect")
      expect(headers).toContainEqual(["x-a", "a\tb"])
      expect(headers).toContainEqual(["host", "example.com:8080"])
      expect(ran).toBe(1)
      const snapshot = yield* stats.snapshot
      expect(snapshot.protocolErrors).toEqual({ "400": cases.length })
      expect(snapshot.requests).toBe(1)
    })
  )

  it.live('logs a request refused for its variables with "-" for the address and request line, none of its bytes', () =>
    Effect.gen(function* () {
      const file = yield* accessLogFile
      const { address } = yield* serveLayer(
        HttpServer.serve(echo),
        withDefaults({ accessLog: "common", accessLogFile: file })
      )
      const forged = '203.0.113.9 - - [01/Jan/2026:00:00:00 +0000] "GET /admin HTTP/1.1" 200 1'
      const refused = yield* scgi(address, { ...hello, REMOTE_ADDR: `${forged}\n127.0.0.1` })
      expect(refused.status).toBe(400)
      const injected = yield* scgi(address, { ...hello, SERVER_PROTOCOL: "HTTP/1.1\r\nInjected" })
      expect(injected.status).toBe(400)
      const served = yield* scgi(address, { ...hello, REMOTE_ADDR: "203.0.113.9" })
      expect(served.status).toBe(200)
      const lines = yield* accessLines(file, 3)
      const bytes = (response: ScgiResponse) => response.body.length
      expect(lines[0]).toMatch(new RegExp(`^- - - \\[[^\\]]+\\] "-" 400 ${bytes(refused)}$`))
      expect(lines[1]).toMatch(new RegExp(`^- - - \\[[^\\]]+\\] "-" 400 ${bytes(injected)}$`))
      expect(lines[2]).toMatch(/^203\.0\.113\.9 - - \[[^\]]+\] "GET \/ HTTP\/1\.1" 200 13$/)
    })
  )

  it.live("answers a header netstring over maxHeaderSize 400 as soon as its length is read", () =>
    Effect.gen(function* () {
      const { address } = yield* serveApp(echo, { maxHeaderSize: 1024 })
      // only the length: the server does not wait for the 2000 bytes it announces
      const { data } = yield* scgiExchange(address, "2000:", { timeoutMs: 5_000 })
      const response = parseScgiResponse(data)
      expect(response.status).toBe(400)
      expect(response.body.toString()).toMatch(/maxHeaderSize/)
      const ok = yield* scgi(address, { ...hello, PAD: "x".repeat(900) })
      expect(ok.status).toBe(200)
    })
  )

  it.live("answers CONTENT_LENGTH over maxBodySize 413 before the app runs or the body arrives", () =>
    Effect.gen(function* () {
      let ran = 0
      const app = Effect.sync(() => {
        ran++
        return HttpServerResponse.text("ran")
      })
      const { address, stats } = yield* serveApp(app, { maxBodySize: 10 })
      const headOnly = netstring([
        ["CONTENT_LENGTH", "11"],
        ["SCGI", "1"],
        ["REQUEST_METHOD", "POST"],
        ["REQUEST_URI", "/"]
      ])
      // the body is never sent: the answer must not wait for it
      const { data } = yield* scgiExchange(address, headOnly)
      const response = parseScgiResponse(data)
      expect(response.status).toBe(413)
      expect(response.body.toString()).toMatch(/maxBodySize/)
      // with the body sent too
      const whole = yield* scgi(address, { REQUEST_METHOD: "POST", REQUEST_URI: "/" }, "x".repeat(11))
      expect(whole.status).toBe(413)
      expect(ran).toBe(0)
      const atLimit = yield* scgi(address, { REQUEST_METHOD: "POST", REQUEST_URI: "/" }, "x".repeat(10))
      expect(atLimit.status).toBe(200)
      expect(ran).toBe(1)
      const snapshot = yield* stats.snapshot
      expect(snapshot.protocolErrors).toEqual({ "413": 2 })
      expect(snapshot.requests).toBe(1)
    })
  )

  it.live("answers a connection over maxConnections 503, and serves again once one closes", () =>
    Effect.gen(function* () {
      const { address, stats } = yield* serveApp(echo, { maxConnections: 1 })
      const holder = yield* connect(address)
      expect(yield* waitForStats(stats, (s) => s.openConnections === 1, 5_000)).toBe(true)
      const refused = yield* scgi(address, hello)
      expect(refused.status).toBe(503)
      expect(refused.reason).toBe("Service Unavailable")
      expect((yield* stats.snapshot).rejectedConnections).toBe(1)
      holder.socket.destroy()
      expect(yield* waitForStats(stats, (s) => s.openConnections === 0, 5_000)).toBe(true)
      const served = yield* scgi(address, hello)
      expect(served.status).toBe(200)
    })
  )

  it.live("a queued request whose body times out gets 408 and never runs, even once a slot frees", () =>
    Effect.gen(function* () {
      const started: Array<string> = []
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        started.push(request.url)
        yield* Effect.sleep(request.url === "/slow" ? "1500 millis" : "10 millis")
        return HttpServerResponse.text(request.url)
      })
      const { address } = yield* serveApp(app, {
        maxConcurrentRequests: 1,
        requestQueueTimeout: 10,
        requestTimeout: 0.3
      })
      const slow = yield* Effect.forkChild(scgi(address, get("/slow")))
      expect(yield* waitUntil(() => started.length === 1, 5_000)).toBe(true)
      // the head and 2 of 10 body bytes, then nothing: queued behind /slow, then timed out
      const partial = Buffer.concat([
        netstring([
          ["CONTENT_LENGTH", "10"],
          ["SCGI", "1"],
          ["REQUEST_METHOD", "POST"],
          ["REQUEST_URI", "/stalled"]
        ]),
        Buffer.from("ab")
      ])
      // a front end that reads the 408 but keeps its side open until /slow is done
      const received: Array<Buffer> = []
      let answered = false
      const lingering = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const socket =
            "port" in address
              ? Net.connect({ port: address.port, host: "127.0.0.1", allowHalfOpen: true })
              : Net.connect({ path: address.path, allowHalfOpen: true })
          socket.on("data", (chunk: Buffer) => received.push(chunk))
          socket.on("end", () => {
            answered = true
          })
          socket.on("error", () => {})
          socket.write(partial)
          return socket
        }),
        (socket) => Effect.sync(() => socket.destroy())
      )
      expect(yield* waitUntil(() => answered, 5_000)).toBe(true)
      expect(parseScgiResponse(Buffer.concat(received)).status).toBe(408)
      expect((yield* Fiber.join(slow)).body.toString()).toBe("/slow")
      // the slot is free again and a later request runs; the stalled one never did
      expect((yield* scgi(address, get("/after"))).body.toString()).toBe("/after")
      lingering.destroy()
      expect(started).toEqual(["/slow", "/after"])
    })
  )

  it.live("maxConcurrentRequests queues requests; one that waits beyond requestQueueTimeout gets 503", () =>
    Effect.gen(function* () {
      let running = 0
      let most = 0
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        running++
        most = Math.max(most, running)
        yield* Effect.sleep(request.url === "/slow" ? "1200 millis" : "50 millis")
        running--
        return HttpServerResponse.text(request.url)
      })
      const { address, stats } = yield* serveApp(app, { maxConcurrentRequests: 1, requestQueueTimeout: 0.3 })
      const slow = yield* Effect.forkChild(scgi(address, get("/slow")))
      expect(yield* waitUntil(() => running === 1, 5_000)).toBe(true)
      const queued = yield* scgi(address, get("/queued"))
      expect(queued.status).toBe(503)
      expect((yield* Fiber.join(slow)).body.toString()).toBe("/slow")
      expect((yield* stats.snapshot).rejectedRequests).toBe(1)
      // within the queue timeout, requests wait their turn and all run, one at a time
      const patient = yield* serveApp(app, { maxConcurrentRequests: 1, requestQueueTimeout: 10 })
      const all = yield* Effect.all(
        ["/a", "/b", "/c"].map((path) => scgi(patient.address, get(path))),
        { concurrency: "unbounded" }
      )
      expect(all.map((r) => r.body.toString())).toEqual(["/a", "/b", "/c"])
      expect(most).toBe(1)
    })
  )

  it.live("bad options are a typed InvalidOptions naming the option", () =>
    Effect.gen(function* () {
      const tooSmall = yield* Effect.flip(Layer.build(ScgiServer.layer({ port: 0, maxHeaderSize: 1 })))
      expect(tooSmall._tag).toBe("InvalidOptions")
      if (tooSmall._tag !== "InvalidOptions") return
      expect(tooSmall.option).toBe("maxHeaderSize")
      expect(tooSmall.message).toMatch(/maxHeaderSize/)
      const negative = yield* Effect.flip(Layer.build(ScgiServer.layer({ port: 0, maxBodySize: -1 })))
      expect(negative).toMatchObject({ _tag: "InvalidOptions", option: "maxBodySize" })
      // an HTTP-only option is not an SCGI one
      const httpOnly = { port: 0, keepAliveTimeout: 5 }
      const unknown = yield* Effect.flip(Layer.build(ScgiServer.layer(httpOnly)))
      expect(unknown).toMatchObject({ _tag: "InvalidOptions" })
      expect(unknown.message).toMatch(/keepAliveTimeout/)
    })
  )
})

describe("ScgiServer: front ends that go away, timeouts", () => {
  it.live("a front end closing mid-body fails the app's body read with IncompleteBody, without a hang", () =>
    Effect.gen(function* () {
      const reading = yield* Deferred.make<void>()
      const outcome = yield* Deferred.make<Outcome>()
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        yield* Deferred.succeed(reading, undefined)
        const body = yield* request.arrayBuffer.pipe(
          Effect.onExit((exit) => Deferred.succeed(outcome, outcomeOf(exit)))
        )
        return HttpServerResponse.text(`read ${body.byteLength}`)
      })
      const { address, stats } = yield* serveApp(app)
      const client = yield* connect(address)
      const request = scgiRequest({ REQUEST_METHOD: "POST", REQUEST_URI: "/" }, Buffer.alloc(100_000, "b"))
      client.socket.write(request.subarray(0, request.length - 50_000))
      yield* Deferred.await(reading).pipe(Effect.timeout("5 seconds"))
      client.socket.destroy()
      expect(yield* Deferred.await(outcome).pipe(Effect.timeout("5 seconds"))).toBe("IncompleteBody")
      expect(yield* waitForStats(stats, (s) => s.openConnections === 0, 5_000)).toBe(true)
      // nothing was answered to a front end that left
      expect(received(client).length).toBe(0)
    })
  )

  it.live("a front end closing while the app runs interrupts the app's fiber", () =>
    Effect.gen(function* () {
      for (const close of ["destroy", "end"] as const) {
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
        const { address, stats } = yield* serveApp(app)
        const client = yield* connect(address)
        client.socket.write(scgiRequest(get("/sleep")))
        yield* Deferred.await(started).pipe(Effect.timeout("5 seconds"))
        // a FIN (end) counts as gone too: SCGI front ends never half-close a request
        if (close === "destroy") client.socket.destroy()
        else client.socket.end()
        yield* Deferred.await(interrupted).pipe(Effect.timeout("5 seconds"))
        expect(yield* waitForStats(stats, (s) => s.openConnections === 0, 5_000), close).toBe(true)
        expect(received(client).toString()).not.toContain("late")
      }
    })
  )

  it.live("headersTimeout: a partial netstring gets 408 and close; a silent connection closes without a word", () =>
    Effect.gen(function* () {
      const { address, stats } = yield* serveApp(echo, { headersTimeout: 0.5 })
      const started = performance.now()
      const { data } = yield* scgiExchange(address, "70:CONTENT_LENGTH\x000\x00", { timeoutMs: 5_000 })
      const took = performance.now() - started
      const response = parseScgiResponse(data)
      expect(response.status).toBe(408)
      expect(response.reason).toBe("Request Timeout")
      // it did wait for the timeout, and not for much longer
      expect(took).toBeGreaterThanOrEqual(400)
      expect(took).toBeLessThan(4_000)
      const silent = yield* scgiExchange(address, [], { timeoutMs: 5_000 })
      expect(silent.data.length).toBe(0)
      const snapshot = yield* stats.snapshot
      expect(snapshot.timeouts.headers).toBe(2)
      expect(snapshot.requests).toBe(0)
    })
  )

  it.live("requestTimeout: a body that stops arriving gets 408 and close, and the app's read fails", () =>
    Effect.gen(function* () {
      const outcome = yield* Deferred.make<Outcome>()
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        yield* request.arrayBuffer.pipe(Effect.onExit((exit) => Deferred.succeed(outcome, outcomeOf(exit))))
        return HttpServerResponse.text("read")
      })
      const { address, stats } = yield* serveApp(app, { requestTimeout: 0.5 })
      const request = scgiRequest({ REQUEST_METHOD: "POST", REQUEST_URI: "/" }, Buffer.alloc(100, "c"))
      const { data } = yield* scgiExchange(address, request.subarray(0, request.length - 90), { timeoutMs: 5_000 })
      const response = parseScgiResponse(data)
      expect(response.status).toBe(408)
      expect(response.body.toString()).toMatch(/body/)
      expect(data.toString()).not.toContain("read")
      expect(yield* Deferred.await(outcome).pipe(Effect.timeout("5 seconds"))).toBe("timeout 408")
      expect((yield* stats.snapshot).timeouts.request).toBe(1)
    })
  )

  it.live("a slow but steady body within requestTimeout is read in full", () =>
    Effect.gen(function* () {
      const { address } = yield* serveApp(echo, { requestTimeout: 5, headersTimeout: 5 })
      const body = Buffer.from("slowly but surely")
      const request = scgiRequest({ REQUEST_METHOD: "POST", REQUEST_URI: "/echo" }, body)
      const pieces = Array.from({ length: Math.ceil(request.length / 8) }, (_, i) => request.subarray(i * 8, i * 8 + 8))
      const { data } = yield* scgiExchange(address, pieces, { delayMs: 10 })
      expect(parseScgiResponse(data).body.toString()).toBe("slowly but surely")
    })
  )
})

describe("ScgiServer: backpressure", () => {
  it.live("stops reading a request body the app does not consume, and delivers it all once it does", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        yield* Deferred.await(release)
        const body = yield* request.arrayBuffer
        const bytes = new Uint8Array(body)
        return HttpServerResponse.text(`${bytes.length} ${bytes.every((b) => b === 0x64)}`)
      })
      const { address, stats } = yield* serveApp(app)
      const size = 16 * 1024 * 1024
      const exchange = yield* Effect.forkChild(
        scgiExchange(address, scgiRequest({ REQUEST_METHOD: "POST", REQUEST_URI: "/" }, Buffer.alloc(size, "d")), {
          timeoutMs: 20_000
        })
      )
      yield* Effect.sleep("500 millis")
      // the server read only about its buffer's worth (plus socket buffers), not the 16 MiB
      const held = (yield* stats.snapshot).bytesRead
      expect(held).toBeLessThan(8 * 1024 * 1024)
      yield* Deferred.succeed(release, undefined)
      const { data } = yield* Fiber.join(exchange)
      expect(parseScgiResponse(data).body.toString()).toBe(`${size} true`)
    })
  )

  it.live("stops producing a streamed response for a front end that does not read", () =>
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
      const { address, stats } = yield* serveApp(app)
      const client = yield* connect(address)
      client.socket.pause()
      client.socket.write(scgiRequest(hello))
      yield* Effect.sleep("1 second")
      // 4096 chunks of 64 KiB would be 256 MiB; only what fits in socket buffers is produced
      expect(produced).toBeGreaterThan(0)
      expect(produced).toBeLessThan(64 * 1024 * 1024)
      client.socket.destroy()
      expect(yield* waitForStats(stats, (s) => s.openConnections === 0, 5_000)).toBe(true)
      const afterClose = produced
      yield* Effect.sleep("200 millis")
      expect(produced).toBe(afterClose)
    })
  )
})

describe("ScgiServer: stop and statistics", () => {
  it.live("a graceful stop completes the requests in flight and refuses new connections", () =>
    Effect.gen(function* () {
      let started = 0
      let finished = 0
      const app = Effect.gen(function* () {
        started++
        yield* Effect.sleep("1500 millis")
        finished++
        return HttpServerResponse.text("finished")
      })
      const { scope, address, stats } = yield* serveScoped(app, { shutdownTimeout: 10 })
      const inFlight = yield* Effect.forkChild(
        Effect.all(
          Array.from({ length: 3 }, () => scgi(address, hello)),
          { concurrency: "unbounded" }
        )
      )
      expect(yield* waitUntil(() => started === 3, 5_000)).toBe(true)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      // new connections are refused soon after the stop begins, while the requests still run
      let refused = false
      const probe = Effect.callback<boolean>((resume) => {
        if (!("port" in address)) return resume(Effect.succeed(false))
        const socket = Net.connect(address.port, "127.0.0.1")
        socket.once("connect", () => {
          socket.destroy()
          resume(Effect.succeed(false))
        })
        socket.once("error", () => resume(Effect.succeed(true)))
      })
      for (let i = 0; i < 100 && !refused; i++) {
        refused = yield* probe
        if (!refused) yield* Effect.sleep(10)
      }
      expect(refused).toBe(true)
      expect(finished).toBe(0)
      const responses: ReadonlyArray<ScgiResponse> = yield* Fiber.join(inFlight)
      expect(responses.map((r) => [r.status, r.body.toString()])).toEqual([
        [200, "finished"],
        [200, "finished"],
        [200, "finished"]
      ])
      yield* Fiber.join(closing).pipe(Effect.timeout("5 seconds"))
      const snapshot = yield* stats.snapshot
      expect(snapshot.openConnections).toBe(0)
      expect(snapshot.requests).toBe(3)
    })
  )

  it.live("Stats counts accepted connections, requests, protocol errors and bytes", () =>
    Effect.gen(function* () {
      const { address, stats } = yield* serveApp(echo, { maxBodySize: 100 })
      yield* scgi(address, hello)
      yield* scgi(address, { REQUEST_METHOD: "POST", REQUEST_URI: "/echo" }, "12345")
      yield* scgiExchange(address, "x")
      yield* scgiExchange(address, "012:")
      yield* scgi(address, { REQUEST_METHOD: "POST", REQUEST_URI: "/echo" }, "y".repeat(101))
      expect(yield* waitForStats(stats, (s) => s.openConnections === 0, 5_000)).toBe(true)
      const snapshot = yield* stats.snapshot
      expect(snapshot.accepted).toBe(5)
      expect(snapshot.requests).toBe(2)
      expect(snapshot.protocolErrors).toEqual({ "400": 2, "413": 1 })
      expect(snapshot.duration.count).toBe(2)
      expect(snapshot.rejectedConnections).toBe(0)
      expect(snapshot.bytesRead).toBeGreaterThan(101)
      expect(snapshot.bytesWritten).toBeGreaterThan(13)
    })
  )
})
