/**
 * HTTPS over real sockets (issue 3, item 1): a TLS session serves keep-alive requests, ALPN picks
 * http/1.1, plain HTTP on the TLS port gets a plain-text 400, stalled handshakes neither block
 * other clients nor live past handshakeTimeout, client certificates reach the app through
 * `tlsInfo`, bad key material is a typed startup failure, and the command line serves HTTPS.
 */

import * as Crypto from "node:crypto"
import * as Net from "node:net"
import * as Tls from "node:tls"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Scope from "effect/Scope"
import { Http1Server, Stats, tlsInfo } from "../../src/index.ts"
import type { Http1ServerOptionsInput } from "../../src/options.ts"
import { cli, exitOf, killAll, listeningOn } from "../helpers/cli.ts"
import { parseResponses, type RawResponse, rawExchange, request } from "../helpers/raw.ts"
import { type Provided, serveApp } from "../helpers/server.ts"
import { type Certs, makeCerts } from "../helpers/tls.ts"
import { waitUntil } from "../helpers/wait.ts"

let certs: Certs

beforeAll(() => {
  certs = makeCerts()
})

afterAll(() => {
  certs.remove()
})

afterEach(() => {
  killAll()
})

const hello = Effect.succeed(HttpServerResponse.text("Hello, World!"))

/** Answers with what the app sees of the TLS session, as JSON (null for none). */
const inspectTls = Effect.flatMap(HttpServerRequest, (req) => {
  const info = tlsInfo(req)
  const peer = info?.peerCertificate
  return HttpServerResponse.json(
    info === undefined
      ? null
      : {
          protocol: info.protocol,
          alpnProtocol: info.alpnProtocol,
          authorized: info.authorized,
          authorizationError: info.authorizationError ?? null,
          peer:
            peer === undefined
              ? null
              : {
                  subjectCN: peer.subject.CN,
                  subjectO: peer.subject.O,
                  issuerCN: peer.issuer.CN,
                  fingerprint256: peer.fingerprint256
                }
        }
  )
})

interface Seen {
  readonly protocol: string | null
  readonly alpnProtocol: string | false | null
  readonly authorized: boolean
  readonly authorizationError: string | null
  readonly peer: {
    readonly subjectCN: string
    readonly subjectO: string | undefined
    readonly issuerCN: string
    readonly fingerprint256: string
  } | null
}

/** Serves `app` over HTTPS on an ephemeral port; returns the port and the server's Stats. */
const start = <E>(
  app: Effect.Effect<HttpServerResponse.HttpServerResponse, E, Provided>,
  options: Http1ServerOptionsInput = {},
  tls: Partial<NonNullable<Http1ServerOptionsInput["tls"]>> = {}
) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(
      HttpServer.serve(app).pipe(
        Layer.provideMerge(
          Http1Server.layer({
            host: "127.0.0.1",
            port: 0,
            ...options,
            tls: { key: certs.server.key, cert: certs.server.cert, ...tls }
          })
        )
      )
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
    return { port: address.port, stats: Context.get(context, Stats) }
  })

/** A TLS client connection the test drives by hand. */
interface TlsClient {
  readonly socket: Tls.TLSSocket
  readonly chunks: Array<Buffer>
  closed: boolean
  error: Error | undefined
}

const responsesOf = (client: TlsClient): Array<RawResponse> =>
  parseResponses(Buffer.concat(client.chunks), [], client.closed)

/**
 * Connects with TLS to 127.0.0.1:port as "localhost", verifying the server certificate against
 * the test's own; succeeds once the handshake is done (or fails with the handshake error).
 */
const connectTls = (port: number, options: Tls.ConnectionOptions = {}): Effect.Effect<TlsClient, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<TlsClient, Error>((resume) => {
      const socket = Tls.connect({
        host: "127.0.0.1",
        port,
        servername: "localhost",
        ca: certs.server.cert,
        ...options
      })
      const client: TlsClient = { socket, chunks: [], closed: false, error: undefined }
      socket.on("data", (chunk: Buffer) => client.chunks.push(chunk))
      socket.on("close", () => {
        client.closed = true
      })
      socket.on("error", (error) => {
        client.error = error
        resume(Effect.fail(error))
      })
      socket.once("secureConnect", () => resume(Effect.succeed(client)))
      return Effect.sync(() => socket.destroy())
    }),
    (client) => Effect.sync(() => client.socket.destroy())
  )

/** Sends a request on `client` and waits (up to 5 s) for the `count`th response overall. */
const exchange = (client: TlsClient, bytes: string, count: number): Effect.Effect<Array<RawResponse>> =>
  Effect.gen(function* () {
    client.socket.write(bytes)
    yield* waitUntil(() => responsesOf(client).length >= count || client.closed, 5_000)
    return responsesOf(client)
  })

const get = (path: string, ...fields: ReadonlyArray<string>) =>
  request(`GET ${path} HTTP/1.1`, "Host: localhost", ...fields)

/** One request on a fresh TLS connection; the parsed JSON body of what the app saw. */
const seenWith = (port: number, options: Tls.ConnectionOptions) =>
  Effect.gen(function* () {
    const client = yield* connectTls(port, options)
    const [response] = yield* exchange(client, get("/", "Connection: close"), 1)
    expect(response?.status).toBe(200)
    const seen: Seen = JSON.parse(response.body.toString())
    return seen
  })

/** The first bytes a real TLS client sends: a ClientHello record. */
const clientHello = (): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const capture = Net.createServer((socket) => {
      socket.once("data", (chunk: Buffer) => {
        resolve(chunk)
        socket.destroy()
        capture.close()
      })
    })
    capture.on("error", reject)
    capture.listen(0, "127.0.0.1", () => {
      const address = capture.address()
      if (address === null || typeof address === "string") return reject(new Error("no TCP address"))
      const client = Tls.connect({ host: "127.0.0.1", port: address.port, servername: "localhost" })
      client.on("error", () => {})
    })
  })

/** A plain TCP connection that records when the server closed it. */
interface Stalled {
  readonly socket: Net.Socket
  readonly chunks: Array<Buffer>
  openedAt: number
  endedAt: number | undefined
}

const openStalled = (port: number, send: Buffer | undefined): Effect.Effect<Stalled, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Stalled>((resume) => {
      const socket = Net.connect({ port, host: "127.0.0.1" })
      const stalled: Stalled = { socket, chunks: [], openedAt: 0, endedAt: undefined }
      const ended = () => {
        stalled.endedAt ??= performance.now()
      }
      socket.on("data", (chunk: Buffer) => stalled.chunks.push(chunk))
      socket.on("end", ended)
      socket.on("close", ended)
      socket.on("error", () => {})
      socket.once("connect", () => {
        stalled.openedAt = performance.now()
        if (send !== undefined) socket.write(send)
        resume(Effect.succeed(stalled))
      })
      return Effect.sync(() => socket.destroy())
    }),
    (stalled) => Effect.sync(() => stalled.socket.destroy())
  )

/** Several connections that never finish a handshake: half of them silent, half with half a ClientHello. */
const openStalledClients = (port: number, count: number) =>
  Effect.gen(function* () {
    const hello = yield* Effect.promise(clientHello)
    expect(hello[0]).toBe(0x16)
    const half = hello.subarray(0, Math.floor(hello.length / 2))
    return yield* Effect.forEach(
      Array.from({ length: count }, (_, i) => i),
      (i) => openStalled(port, i % 2 === 0 ? undefined : half)
    )
  })

describe("HTTPS", () => {
  it.live("serves GET over TLS, and two requests on one keep-alive TLS connection", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* start(hello)
      const client = yield* connectTls(port)
      // The server certificate verified against the test's CA (connectTls keeps rejectUnauthorized on).
      expect(client.socket.authorized).toBe(true)
      const first = yield* exchange(client, get("/"), 1)
      expect(first.map((r) => r.status)).toEqual([200])
      expect(first[0].body.toString()).toBe("Hello, World!")
      expect(first[0].header("connection")).not.toBe("close")
      const both = yield* exchange(client, get("/again"), 2)
      expect(both.map((r) => r.status)).toEqual([200, 200])
      expect(both[1].body.toString()).toBe("Hello, World!")
      expect(client.closed).toBe(false)
      const snapshot = yield* stats.snapshot
      expect(snapshot.requests).toBe(2)
      expect(snapshot.accepted).toBe(1)
    })
  )

  it.live("the app sees the TLS session: protocol and ALPN; without a client certificate no peer", () =>
    Effect.gen(function* () {
      const { port } = yield* start(inspectTls)
      const seen = yield* seenWith(port, { ALPNProtocols: ["http/1.1"] })
      expect(seen.protocol).toMatch(/^TLSv1\.[23]$/)
      expect(seen.alpnProtocol).toBe("http/1.1")
      expect(seen.peer).toBeNull()
    })
  )

  it.live("over plain HTTP the app sees no TLS session", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(inspectTls)
      const result = yield* rawExchange(port, get("/", "Connection: close"), { responses: 1 })
      expect(result.responses.map((r) => r.status)).toEqual([200])
      expect(JSON.parse(result.responses[0].body.toString())).toBeNull()
    })
  )

  it.live("ALPN: a client offering h2 and http/1.1 gets http/1.1", () =>
    Effect.gen(function* () {
      const { port } = yield* start(hello)
      const client = yield* connectTls(port, { ALPNProtocols: ["h2", "http/1.1"] })
      expect(client.socket.alpnProtocol).toBe("http/1.1")
      const responses = yield* exchange(client, get("/"), 1)
      expect(responses.map((r) => `${r.version} ${r.status}`)).toEqual(["HTTP/1.1 200"])
    })
  )

  it.live("ALPN: a client offering only h2 is refused rather than spoken HTTP/1.1 to as if it were h2", () =>
    Effect.gen(function* () {
      const { port } = yield* start(hello)
      const error = yield* Effect.flip(connectTls(port, { ALPNProtocols: ["h2"] }))
      expect(error.message).toMatch(/no application protocol|alpn/i)
    })
  )

  it.live("plain HTTP on the TLS port gets a plain-text 400 pointing at HTTPS, then the connection closes", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* start(hello)
      const result = yield* rawExchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", { timeoutMs: 5_000 })
      expect(result.responses.map((r) => `${r.version} ${r.status}`)).toEqual(["HTTP/1.1 400"])
      const [response] = result.responses
      expect(response.body.toString()).toMatch(/HTTPS/)
      expect(response.header("connection")).toBe("close")
      expect(result.closed).toBe(true)
      // The TLS port still serves TLS afterwards, and no request reached the app.
      const client = yield* connectTls(port)
      expect((yield* exchange(client, get("/"), 1)).map((r) => r.status)).toEqual([200])
      expect((yield* stats.snapshot).requests).toBe(1)
    })
  )

  it.live("bytes that are neither TLS nor HTTP are dropped without an answer", () =>
    Effect.gen(function* () {
      const { port } = yield* start(hello)
      const result = yield* rawExchange(port, Buffer.from([0x00, 0x01, 0x02, 0x03, 0xff]), { timeoutMs: 5_000 })
      expect(result.closed).toBe(true)
      expect(result.data.length).toBe(0)
    })
  )
})

describe("stalled handshakes", () => {
  it.live("silent connections and half a ClientHello do not hold up other clients", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* start(hello)
      const stalled = yield* openStalledClients(port, 10)
      // Let the server accept them all and start their handshakes.
      yield* Effect.sleep(100)
      for (let i = 0; i < 3; i++) {
        const client = yield* connectTls(port)
        const responses = yield* exchange(client, get("/", "Connection: close"), 1)
        expect(responses.map((r) => r.status)).toEqual([200])
      }
      // The stalled ones were open all along (the default handshake timeout is 10 s).
      expect(stalled.filter((s) => s.endedAt !== undefined)).toEqual([])
      const snapshot = yield* stats.snapshot
      expect(snapshot.requests).toBe(3)
      expect(snapshot.timeouts.handshake).toBe(0)
    })
  )

  it.live("a client that aborts the handshake (it does not trust the certificate) leaves the server serving", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* start(hello)
      for (let i = 0; i < 3; i++) {
        // Without the test's CA the client refuses the self-signed certificate and sends an alert.
        const error = yield* Effect.flip(connectTls(port, { ca: undefined }))
        expect(error.message).toMatch(/self-signed|self signed/i)
      }
      const client = yield* connectTls(port)
      expect((yield* exchange(client, get("/"), 1)).map((r) => r.status)).toEqual([200])
      expect((yield* stats.snapshot).requests).toBe(1)
    })
  )

  it.live(
    "stalled handshakes are closed after handshakeTimeout and counted in timeouts.handshake",
    () =>
      Effect.gen(function* () {
        const { port, stats } = yield* start(hello, { handshakeTimeout: 0.5 })
        const stalled = yield* openStalledClients(port, 6)
        const allClosed = yield* waitUntil(() => stalled.every((s) => s.endedAt !== undefined), 8_000)
        expect(allClosed).toBe(true)
        for (const s of stalled) {
          const lifetime = (s.endedAt ?? Number.POSITIVE_INFINITY) - s.openedAt
          // Not closed at once (the timeout, not the bytes, closed them), and well within seconds.
          expect(lifetime).toBeGreaterThan(300)
          expect(lifetime).toBeLessThan(6_000)
        }
        const snapshot = yield* stats.snapshot
        expect(snapshot.timeouts.handshake).toBe(6)
        expect(snapshot.requests).toBe(0)
        // A client that completes its handshake in time is unaffected.
        const client = yield* connectTls(port)
        expect((yield* exchange(client, get("/"), 1)).map((r) => r.status)).toEqual([200])
        expect((yield* stats.snapshot).timeouts.handshake).toBe(6)
      }),
    30_000
  )
})

describe("client certificates", () => {
  const fingerprint = (pem: string) => new Crypto.X509Certificate(pem).fingerprint256

  it.live("with requestCert, the app sees a certificate signed by the CA, authorized", () =>
    Effect.gen(function* () {
      const { port } = yield* start(inspectTls, {}, { requestCert: true, ca: certs.clientCa.cert })
      const seen = yield* seenWith(port, { key: certs.client.key, cert: certs.client.cert })
      expect(seen.authorized).toBe(true)
      expect(seen.authorizationError).toBeNull()
      expect(seen.peer).toEqual({
        subjectCN: "alice",
        subjectO: "Example",
        issuerCN: "Test Client CA",
        fingerprint256: fingerprint(certs.client.cert)
      })
    })
  )

  it.live("with requestCert, a client without a certificate is served and the app sees no peer", () =>
    Effect.gen(function* () {
      const { port } = yield* start(inspectTls, {}, { requestCert: true, ca: certs.clientCa.cert })
      const seen = yield* seenWith(port, {})
      expect(seen.authorized).toBe(false)
      expect(seen.peer).toBeNull()
    })
  )

  it.live("with requestCert, a certificate the CA did not sign is seen, not authorized, with the reason", () =>
    Effect.gen(function* () {
      const { port } = yield* start(inspectTls, {}, { requestCert: true, ca: certs.clientCa.cert })
      const seen = yield* seenWith(port, { key: certs.stranger.key, cert: certs.stranger.cert })
      expect(seen.authorized).toBe(false)
      expect(seen.authorizationError).toMatch(/SELF_SIGNED|UNABLE_TO_GET_ISSUER|unable to/i)
      expect(seen.peer?.subjectCN).toBe("mallory")
      expect(seen.peer?.fingerprint256).toBe(fingerprint(certs.stranger.cert))
    })
  )

  it.live("with rejectUnauthorized, clients without a CA-signed certificate get no response; signed ones do", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* start(
        inspectTls,
        {},
        { requestCert: true, rejectUnauthorized: true, ca: certs.clientCa.cert }
      )
      for (const options of [{}, { key: certs.stranger.key, cert: certs.stranger.cert }]) {
        // With TLS 1.3 the client may finish its side before the server refuses: either way the
        // connection ends without a response.
        const refused = yield* Effect.scoped(
          Effect.gen(function* () {
            const client = yield* connectTls(port, options)
            client.socket.write(get("/", "Connection: close"))
            yield* waitUntil(() => client.closed, 5_000)
            return { closed: client.closed, responses: responsesOf(client).length }
          }).pipe(Effect.catch(() => Effect.succeed({ closed: true, responses: 0 })))
        )
        expect(refused).toEqual({ closed: true, responses: 0 })
      }
      expect((yield* stats.snapshot).requests).toBe(0)
      const seen = yield* seenWith(port, { key: certs.client.key, cert: certs.client.cert })
      expect(seen.authorized).toBe(true)
      expect(seen.peer?.subjectCN).toBe("alice")
    })
  )
})

describe("bad TLS options", () => {
  const build = (tls: NonNullable<Http1ServerOptionsInput["tls"]>) =>
    Effect.flip(Layer.build(Http1Server.layer({ host: "127.0.0.1", port: 0, tls })))

  it.live("a key or certificate that is not PEM is a typed InvalidOptions naming tls", () =>
    Effect.gen(function* () {
      const badKey = yield* build({ key: "not a key", cert: certs.server.cert })
      expect(badKey._tag).toBe("InvalidOptions")
      if (badKey._tag === "InvalidOptions") expect(badKey.option).toBe("tls")
      expect(badKey.message).toMatch(/^invalid option tls: /)
      const badCert = yield* build({ key: certs.server.key, cert: "-----BEGIN CERTIFICATE-----\nnope\n" })
      expect(badCert._tag).toBe("InvalidOptions")
      if (badCert._tag === "InvalidOptions") expect(badCert.option).toBe("tls")
    })
  )

  it.live("a key that does not match the certificate is a typed InvalidOptions naming tls", () =>
    Effect.gen(function* () {
      const error = yield* build({ key: certs.client.key, cert: certs.server.cert })
      expect(error._tag).toBe("InvalidOptions")
      if (error._tag === "InvalidOptions") expect(error.option).toBe("tls")
    })
  )
})

describe("effect-appserver serve --tls-cert --tls-key", () => {
  const httpsGet = (url: string): Promise<{ status: number; body: string; authorized: boolean }> =>
    new Promise((resolve, reject) => {
      const { port } = new URL(url)
      const socket = Tls.connect({
        host: "127.0.0.1",
        port: Number(port),
        servername: "localhost",
        ca: certs.server.cert
      })
      const chunks: Array<Buffer> = []
      socket.on("error", reject)
      socket.on("data", (chunk: Buffer) => chunks.push(chunk))
      socket.once("secureConnect", () => socket.write(get("/", "Connection: close")))
      socket.on("close", () => {
        const [response] = parseResponses(Buffer.concat(chunks), [], true)
        if (response === undefined) return reject(new Error("no response"))
        resolve({ status: response.status, body: response.body.toString(), authorized: socket.authorized })
      })
    })

  it("prints an https:// URL and serves HTTPS", async () => {
    const run = cli(
      "serve",
      "examples/echo.ts",
      "--port",
      "0",
      "--tls-cert",
      certs.server.certFile,
      "--tls-key",
      certs.server.keyFile
    )
    const url = await listeningOn(run, /^listening on (https:\/\/127\.0\.0\.1:[1-9]\d*)$/m)
    expect(await httpsGet(url)).toEqual({ status: 200, body: "Hello, World!", authorized: true })
    run.child.kill("SIGTERM")
    expect(await exitOf(run)).toEqual({ code: 0, signal: null })
  })

  it("a key file that is not a key exits 2 naming the TLS flags", async () => {
    const run = cli(
      "serve",
      "examples/echo.ts",
      "--port",
      "0",
      "--tls-cert",
      certs.server.certFile,
      "--tls-key",
      certs.server.certFile
    )
    expect((await exitOf(run)).code).toBe(2)
    expect(run.stderr()).toContain("--tls-cert/--tls-key")
  })

  it("--tls-cert without --tls-key exits 2", async () => {
    const run = cli("serve", "examples/echo.ts", "--port", "0", "--tls-cert", certs.server.certFile)
    expect((await exitOf(run)).code).toBe(2)
    expect(run.stderr()).toContain("--tls-key")
  })
})
