/**
 * Upgrades to protocols other than WebSocket (`request.upgradeWith`): the `101` names the protocol
 * and carries the app's headers, bytes the client sent right after its request reach the app
 * first, reserved headers are refused, and the `101` waits for the request body to end. On both
 * servers where they agree; chunked bodies and the protocol named in the `101` on this server.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, type Scope } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import type { HttpServerError } from "effect/http/HttpServerError"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { on, serveRoutes, serverPort, servers } from "../conformance/servers.ts"
import { type HalfOpenClient, halfOpenClient, request } from "../helpers/raw.ts"
import { serveLayer } from "../helpers/server.ts"
import { waitUntil } from "../helpers/wait.ts"
import { echoHandler, echoUpgrade } from "./apps.ts"

/**
 * `/echo` switches to the protocol asked for with `x-proto: 1` and `x-body:` the request body it
 * read first (POST), then echoes bytes; `/reserved?h=NAME` tries to set header NAME, records
 * the failure and answers 204.
 */
const routes = (failed: Deferred.Deferred<HttpServerError>) =>
  HttpRouter.addAll([
    HttpRouter.route(
      "*",
      "/echo",
      Effect.gen(function* () {
        const request = yield* HttpServerRequest
        const body = request.method === "POST" ? yield* request.text : ""
        return yield* echoUpgrade(request, { "x-proto": "1", "x-body": body })
      })
    ),
    HttpRouter.route("*", "/unread", echoHandler),
    HttpRouter.route(
      "GET",
      "/reserved",
      Effect.gen(function* () {
        const request = yield* HttpServerRequest
        const name = new URL(request.url, "http://x").searchParams.get("h") ?? ""
        yield* request.upgradeWith({ headers: { [name]: name === "x-bad" ? "a\r\nb" : "x" } }).pipe(
          Effect.tapError((error) => Deferred.succeed(failed, error)),
          Effect.catchTag("HttpServerError", () => Effect.void)
        )
        return HttpServerResponse.empty()
      })
    )
  ])

const serveOn =
  (layer: Parameters<typeof on>[0]) => (test: (port: number) => Effect.Effect<void, unknown, Scope.Scope>) =>
    on(layer)(
      Effect.gen(function* () {
        const failed = yield* Deferred.make<HttpServerError>()
        yield* serveRoutes(routes(failed))
        yield* test(yield* serverPort)
      })
    )

const received = (client: HalfOpenClient): Buffer => Buffer.concat(client.chunks)

/** The response head once it has arrived, and the bytes after it. */
const awaitHead = (client: HalfOpenClient) =>
  Effect.gen(function* () {
    expect(yield* waitUntil(() => received(client).includes("\r\n\r\n"), 2_000)).toBe(true)
    const data = received(client)
    const end = data.indexOf("\r\n\r\n") + 4
    return { head: data.toString("latin1", 0, end), rest: () => received(client).subarray(end).toString() }
  })

const echoRequest = (method: string, ...extra: ReadonlyArray<string>) =>
  request(`${method} /echo HTTP/1.1`, "Host: 127.0.0.1", "Upgrade: echo/1", "Connection: Upgrade", ...extra)

for (const [name, layer] of servers) {
  describe(`${name}: raw upgrades`, () => {
    it.live("101 with the protocol and the app's headers; bytes sent with the request are echoed first", () =>
      serveOn(layer)((port) =>
        Effect.gen(function* () {
          const client = yield* halfOpenClient({ port }, `${echoRequest("GET")}early bytes|`)
          const { head, rest } = yield* awaitHead(client)
          expect(head).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/)
          expect(head).toMatch(/\r\nupgrade: echo\/1\r\n/i)
          expect(head).toMatch(/\r\nconnection: upgrade\r\n/i)
          expect(head).toMatch(/\r\nx-proto: 1\r\n/)
          expect(head).not.toMatch(/content-length|transfer-encoding/i)
          expect(yield* waitUntil(() => rest() === "early bytes|", 2_000)).toBe(true)
          client.socket.write("more")
          expect(yield* waitUntil(() => rest() === "early bytes|more", 2_000)).toBe(true)
          // The client's end ends the app's reader; the server closes too.
          client.socket.end()
          expect(yield* waitUntil(() => client.ended, 2_000)).toBe(true)
        })
      )
    )

    it.live("the 101 waits for a Content-Length body, which the app read before upgrading", () =>
      serveOn(layer)((port) =>
        Effect.gen(function* () {
          const client = yield* halfOpenClient({ port }, `${echoRequest("POST", "Content-Length: 11")}hello`)
          yield* Effect.sleep(200)
          expect(received(client).length).toBe(0)
          client.socket.write(" worldafter")
          const { head, rest } = yield* awaitHead(client)
          expect(head).toMatch(/^HTTP\/1\.1 101 /)
          expect(head).toMatch(/\r\nx-body: hello world\r\n/)
          // What followed the body is the new protocol's first bytes.
          expect(yield* waitUntil(() => rest() === "after", 2_000)).toBe(true)
        })
      )
    )

    for (const reserved of ["connection", "upgrade", "content-length", "transfer-encoding"]) {
      it.live(`upgradeWith refuses the reserved header ${reserved} (InternalError)`, () =>
        on(layer)(
          Effect.gen(function* () {
            const failed = yield* Deferred.make<HttpServerError>()
            yield* serveRoutes(routes(failed))
            const client = yield* halfOpenClient(
              { port: yield* serverPort },
              request(`GET /reserved?h=${reserved} HTTP/1.1`, "Host: x", "Upgrade: echo/1", "Connection: Upgrade")
            )
            const error = yield* Deferred.await(failed).pipe(Effect.timeout("2 seconds"))
            expect(error.reason._tag).toBe("InternalError")
            expect(error.reason.description?.toLowerCase()).toContain(`cannot set the ${reserved} header`)
            // No 101 went out: the app's answer to the failure (204) did.
            expect(yield* waitUntil(() => received(client).length > 0, 2_000)).toBe(true)
            expect(received(client).toString("latin1")).toMatch(/^HTTP\/1\.1 204 /)
          })
        )
      )
    }
  })
}

describe("Http1Server: raw upgrades", () => {
  const serve = Effect.gen(function* () {
    const failed = yield* Deferred.make<HttpServerError>()
    const { port } = yield* serveLayer(
      HttpRouter.serve(routes(failed), { disableLogger: true, disableListenLog: true })
    )
    return { port, failed }
  })

  it.live("a chunked body is read before the 101 too", () =>
    Effect.gen(function* () {
      const { port } = yield* serve
      const client = yield* halfOpenClient(
        { port },
        `${echoRequest("POST", "Transfer-Encoding: chunked")}5\r\nhello\r\n`
      )
      yield* Effect.sleep(200)
      expect(received(client).length).toBe(0)
      client.socket.write("6\r\n world\r\n0\r\n\r\nafter")
      const { head, rest } = yield* awaitHead(client)
      expect(head).toMatch(/\r\nx-body: hello world\r\n/)
      expect(yield* waitUntil(() => rest() === "after", 2_000)).toBe(true)
    }).pipe(Effect.scoped)
  )

  it.live("a body the app does not read is discarded, and the 101 waits for its end", () =>
    Effect.gen(function* () {
      const { port } = yield* serve
      const bytes = request(
        "POST /unread HTTP/1.1",
        "Host: x",
        "Upgrade: echo/1",
        "Connection: Upgrade",
        "Content-Length: 10"
      )
      const client = yield* halfOpenClient({ port }, `${bytes}01234`)
      yield* Effect.sleep(200)
      expect(received(client).length).toBe(0)
      client.socket.write("56789next")
      const { head, rest } = yield* awaitHead(client)
      expect(head).toMatch(/^HTTP\/1\.1 101 /)
      expect(yield* waitUntil(() => rest() === "next", 2_000)).toBe(true)
    }).pipe(Effect.scoped)
  )

  it.live("the 101 names the first protocol the client listed (RFC 9110 §7.8)", () =>
    Effect.gen(function* () {
      const { port } = yield* serve
      const client = yield* halfOpenClient(
        { port },
        request("GET /unread HTTP/1.1", "Host: x", "Upgrade: echo/1, other/2", "Connection: Upgrade")
      )
      const { head } = yield* awaitHead(client)
      expect(head).toMatch(/\r\nupgrade: echo\/1\r\n/i)
    }).pipe(Effect.scoped)
  )

  it.live("a header value with CR/LF is refused, never sent", () =>
    Effect.gen(function* () {
      const { port, failed } = yield* serve
      const client = yield* halfOpenClient(
        { port },
        request("GET /reserved?h=x-bad HTTP/1.1", "Host: x", "Upgrade: echo/1", "Connection: Upgrade")
      )
      const error = yield* Deferred.await(failed).pipe(Effect.timeout("2 seconds"))
      expect(error.reason._tag).toBe("InternalError")
      expect(yield* waitUntil(() => received(client).length > 0, 2_000)).toBe(true)
      expect(received(client).toString("latin1")).not.toMatch(/101|x-bad/)
    }).pipe(Effect.scoped)
  )
})
