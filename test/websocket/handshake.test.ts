/**
 * The WebSocket handshake (RFC 6455 §4.2): the subprotocol (the first the client offered unless
 * the app chooses another it offered; none when none was offered), the accept value, custom
 * headers refused as Effect documents, `permessage-deflate` only when enabled, and requests that
 * cannot be upgraded: a bad version gets 426 with the version this server speaks, other invalid
 * handshakes fail `request.upgrade` with an error the app can still answer. Behaviours both servers
 * share run on `NodeHttpServer.layerTest` too.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import type { HttpServerError } from "effect/http/HttpServerError"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { on, serveRoutes, serverPort, servers } from "../conformance/servers.ts"
import { rawExchange } from "../helpers/raw.ts"
import { serveApp, serveLayer } from "../helpers/server.ts"
import { acceptFor, connectWs, upgradeRequest } from "../helpers/ws.ts"
import { echoHandler, echoRoutes, echoUpgrade } from "./apps.ts"

/** `/choose?p=NAME` upgrades with `Sec-WebSocket-Protocol: NAME` and echoes; the upgrade's failure is recorded. */
const chooseRoutes = (failed: Deferred.Deferred<HttpServerError>) =>
  HttpRouter.add(
    "GET",
    "/choose",
    Effect.flatMap(HttpServerRequest, (request) => {
      const chosen = new URL(request.url, "http://x").searchParams.get("p") ?? ""
      return echoUpgrade(request, { "sec-websocket-protocol": chosen }).pipe(
        Effect.tapError((error) => Deferred.succeed(failed, error))
      )
    })
  )

/** The app answers what `request.upgrade` failed with (reason, status and description) as JSON. */
const reportUpgradeFailure = Effect.gen(function* () {
  const request = yield* HttpServerRequest
  return yield* request.upgrade.pipe(
    Effect.as(HttpServerResponse.text("upgraded?", { status: 500 })),
    Effect.catchTag("HttpServerError", (error) =>
      HttpServerResponse.json({ reason: error.reason._tag, description: error.reason.description }, { status: 400 })
    )
  )
})

for (const [name, layer] of servers) {
  describe(`${name}: WebSocket handshake`, () => {
    it.live("the subprotocol is the first the client offered; none without an offer", () =>
      on(layer)(
        Effect.gen(function* () {
          yield* serveRoutes(echoRoutes)
          const port = yield* serverPort
          const offered = yield* connectWs(`ws://127.0.0.1:${port}/ws`, { protocols: ["chat.v2", "chat.v1"] })
          expect(offered.ws.protocol).toBe("chat.v2")
          expect((yield* offered.echo("hi")).data.toString()).toBe("hi")
          const none = yield* connectWs(`ws://127.0.0.1:${port}/ws`)
          expect(none.ws.protocol).toBe("")
          // On the wire: the accept value of RFC 6455 §4.2.2, and no Sec-WebSocket-Protocol without an offer.
          const key = "dGhlIHNhbXBsZSBub25jZQ=="
          const raw = yield* rawExchange(port, upgradeRequest("/ws", `Sec-WebSocket-Key: ${key}`), { responses: 1 })
          const [response] = raw.responses
          expect(response.status).toBe(101)
          expect(response.header("sec-websocket-accept")).toBe(acceptFor(key))
          expect(response.header("sec-websocket-accept")).toBe("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
          expect(response.header("upgrade")?.toLowerCase()).toBe("websocket")
          expect(response.header("connection")?.toLowerCase()).toBe("upgrade")
          expect(response.header("sec-websocket-protocol")).toBeUndefined()
          const withOffer = yield* rawExchange(port, upgradeRequest("/ws", "Sec-WebSocket-Protocol: b, a"), {
            responses: 1
          })
          expect(withOffer.responses[0].header("sec-websocket-protocol")).toBe("b")
        })
      )
    )

    it.live("a custom header on a WebSocket upgrade fails it (InternalError, 500); the client's handshake fails", () =>
      on(layer)(
        Effect.gen(function* () {
          const failed = yield* Deferred.make<HttpServerError>()
          yield* serveRoutes(
            HttpRouter.add(
              "GET",
              "/ws",
              Effect.gen(function* () {
                const request = yield* HttpServerRequest
                yield* request
                  .upgradeWith({ headers: { "x-custom": "1" } })
                  .pipe(Effect.tapError((error) => Deferred.succeed(failed, error)))
                return HttpServerResponse.empty()
              })
            )
          )
          const port = yield* serverPort
          const error = yield* Effect.flip(connectWs(`ws://127.0.0.1:${port}/ws`))
          expect(error.message).toBe("Unexpected server response: 500")
          const failure = yield* Deferred.await(failed).pipe(Effect.timeout("2 seconds"))
          expect(failure.reason._tag).toBe("InternalError")
          expect(failure.reason.description).toMatch(/do not support custom response headers/i)
        })
      )
    )

    it.live("without websocket options, permessage-deflate is not negotiated", () =>
      on(layer)(
        Effect.gen(function* () {
          yield* serveRoutes(echoRoutes)
          const client = yield* connectWs(`ws://127.0.0.1:${yield* serverPort}/ws`, { perMessageDeflate: true })
          expect(client.ws.extensions).toBe("")
          expect((yield* client.echo("plain")).data.toString()).toBe("plain")
        })
      )
    )
  })
}

describe("Http1Server: WebSocket subprotocols chosen by the app", () => {
  it.live("upgradeWith a Sec-WebSocket-Protocol the client offered selects it", () =>
    Effect.gen(function* () {
      const failed = yield* Deferred.make<HttpServerError>()
      const { port } = yield* serveLayer(
        HttpRouter.serve(chooseRoutes(failed), { disableLogger: true, disableListenLog: true })
      )
      const client = yield* connectWs(`ws://127.0.0.1:${port}/choose?p=b`, { protocols: ["a", "b", "c"] })
      expect(client.ws.protocol).toBe("b")
      expect((yield* client.echo("over b")).data.toString()).toBe("over b")
    }).pipe(Effect.scoped)
  )

  it.live("a subprotocol the client did not offer fails the upgrade, and the client's handshake", () =>
    Effect.gen(function* () {
      const failed = yield* Deferred.make<HttpServerError>()
      const { port } = yield* serveLayer(
        HttpRouter.serve(chooseRoutes(failed), { disableLogger: true, disableListenLog: true })
      )
      const error = yield* Effect.flip(connectWs(`ws://127.0.0.1:${port}/choose?p=z`, { protocols: ["a", "b"] }))
      expect(error.message).toBe("Unexpected server response: 500")
      const failure = yield* Deferred.await(failed).pipe(Effect.timeout("2 seconds"))
      expect(failure.reason._tag).toBe("InternalError")
      expect(failure.reason.description).toBe('the client did not offer the subprotocol "z"')
      // Nor can the app choose one when the client offered none.
      const none = yield* Effect.flip(connectWs(`ws://127.0.0.1:${port}/choose?p=a`))
      expect(none.message).toBe("Unexpected server response: 500")
    }).pipe(Effect.scoped)
  )
})

describe("Http1Server: WebSocket compression", () => {
  const connectWith = (websocketCompression: boolean) =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echoHandler, { websocketCompression })
      return yield* connectWs(`ws://127.0.0.1:${port}/`, { perMessageDeflate: true })
    })

  it.live("websocketCompression: true negotiates permessage-deflate with a client that offers it", () =>
    Effect.gen(function* () {
      const client = yield* connectWith(true)
      expect(client.ws.extensions).toContain("permessage-deflate")
      const text = "compressible ".repeat(1000)
      expect((yield* client.echo(text)).data.toString()).toBe(text)
      // A client that does not offer it still connects, uncompressed.
      const { port } = yield* serveApp(echoHandler, { websocketCompression: true })
      const plain = yield* connectWs(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false })
      expect(plain.ws.extensions).toBe("")
      expect((yield* plain.echo(text)).data.toString()).toBe(text)
    }).pipe(Effect.scoped)
  )

  it.live("offers spread over several Sec-WebSocket-Extensions lines all count (RFC 6455 §9.1)", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(echoHandler, { websocketCompression: true })
      const bytes = upgradeRequest(
        "/",
        "Sec-WebSocket-Extensions: x-unknown",
        "Sec-WebSocket-Extensions: permessage-deflate"
      )
      const result = yield* rawExchange(port, bytes, { responses: 1 })
      expect(result.responses[0].status).toBe(101)
      expect(result.responses[0].header("sec-websocket-extensions")).toBe("permessage-deflate")
    }).pipe(Effect.scoped)
  )

  it.live("the default (false) does not negotiate it", () =>
    Effect.gen(function* () {
      const client = yield* connectWith(false)
      expect(client.ws.extensions).toBe("")
    }).pipe(Effect.scoped)
  )
})

describe("Http1Server: requests that cannot be upgraded", () => {
  const serveReporter = () => serveApp(reportUpgradeFailure)

  it.live("Sec-WebSocket-Version other than 13: 426 with Sec-WebSocket-Version: 13 (RFC 6455 §4.2.2)", () =>
    Effect.gen(function* () {
      const { port } = yield* serveReporter()
      for (const version of ["8", "12", "14", ""]) {
        const result = yield* rawExchange(port, upgradeRequest("/", `Sec-WebSocket-Version: ${version}`), {
          responses: 1,
          timeoutMs: 2_000
        })
        expect(result.responses).toHaveLength(1)
        const [response] = result.responses
        expect(response.status).toBe(426)
        expect(response.header("sec-websocket-version")).toBe("13")
        // The app's own answer to the failed upgrade is not sent after it.
        expect(result.data.toString("latin1").match(/HTTP\/1\.1/g)).toHaveLength(1)
      }
    }).pipe(Effect.scoped)
  )

  it.live("the app sees the failed upgrade as a RequestParseError", () =>
    Effect.gen(function* () {
      const outcome = yield* Deferred.make<HttpServerError>()
      const { port } = yield* serveApp(
        Effect.gen(function* () {
          const request = yield* HttpServerRequest
          return yield* request.upgrade.pipe(
            Effect.as(HttpServerResponse.empty()),
            Effect.tapError((error) => Deferred.succeed(outcome, error))
          )
        })
      )
      yield* rawExchange(port, upgradeRequest("/", "Sec-WebSocket-Version: 8"), { responses: 1 })
      const error = yield* Deferred.await(outcome).pipe(Effect.timeout("2 seconds"))
      expect(error.reason._tag).toBe("RequestParseError")
      expect(error.reason.description).toMatch(/version 13 is required/)
    }).pipe(Effect.scoped)
  )

  const refusedCases: ReadonlyArray<readonly [string, string, RegExp]> = [
    ["a missing key", upgradeRequest("/", "Sec-WebSocket-Key: "), /Sec-WebSocket-Key/],
    ["a key that is not 16 bytes", upgradeRequest("/", "Sec-WebSocket-Key: c2hvcnQ="), /Sec-WebSocket-Key/],
    [
      "a POST",
      upgradeRequest("/", "Content-Length: 0").replace(/^GET/, "POST"),
      /WebSocket handshake is a GET request/
    ],
    ["no Connection: upgrade", upgradeRequest("/").replace("Connection: Upgrade", "Connection: keep-alive"), /upgrade/],
    ["HTTP/1.0", upgradeRequest("/").replace("HTTP/1.1", "HTTP/1.0"), /upgrade/],
    ["a plain GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", /does not ask for a connection upgrade/]
  ]
  for (const [what, bytes, description] of refusedCases) {
    it.live(`${what}: the upgrade fails with a RequestParseError the app answers`, () =>
      Effect.gen(function* () {
        const { port } = yield* serveReporter()
        const result = yield* rawExchange(port, bytes, { responses: 1 })
        expect(result.responses).toHaveLength(1)
        const [response] = result.responses
        expect(response.status).toBe(400)
        const body = JSON.parse(response.body.toString()) as { reason: string; description: string }
        expect(body.reason).toBe("RequestParseError")
        expect(body.description).toMatch(description)
      }).pipe(Effect.scoped)
    )
  }

  it.live("an app that does not handle the failure answers 400 (Effect's mapping of RequestParseError)", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(
        Effect.flatMap(HttpServerRequest, (request) => Effect.as(request.upgrade, HttpServerResponse.empty()))
      )
      const result = yield* rawExchange(port, upgradeRequest("/", "Sec-WebSocket-Key: nope"), { responses: 1 })
      expect(result.responses[0].status).toBe(400)
    }).pipe(Effect.scoped)
  )

  it.live("building request.upgrade without running it sends nothing: the app's response goes out", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(
        Effect.gen(function* () {
          const request = yield* HttpServerRequest
          // An Effect is a description: making it must not answer the request.
          const upgrade = request.upgrade
          return upgrade === undefined ? HttpServerResponse.empty() : HttpServerResponse.text("not now")
        })
      )
      const result = yield* rawExchange(port, upgradeRequest("/", "Sec-WebSocket-Version: 8"), { responses: 1 })
      expect(result.responses[0].status).toBe(200)
      expect(result.responses[0].body.toString()).toBe("not now")
    }).pipe(Effect.scoped)
  )
})
