/**
 * Releasing a server Layer stops the server, whichever scope its app was served in (issue 8,
 * item 5). Effect's own tests provide the server Layer around a program that serves on it
 * (`Effect.provide(layerTest)` around `HttpServer.serveEffect` or `Layer.build(HttpRouter.serve)`),
 * so the server's scope closes before the serving one; a program composed of Layers closes them
 * the other way round. Either way an idle keep-alive connection (fetch keeps one) must not hold
 * the stop, and a request in flight must still be answered.
 */
import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Http1Server, ScgiServer } from "../../src/index.ts"
import { parseResponses, request } from "../helpers/raw.ts"
import { waitUntil } from "../helpers/wait.ts"

const routes = HttpRouter.add("GET", "/", Effect.succeed(HttpServerResponse.text("Hello")))

/** Well under a second: NodeHttpServer stops in milliseconds; fetch's idle connection lives ~4 s. */
const quickStop = 700

/** Runs `program` and returns how long its release took after `release` was called. */
const timed = <A, E>(program: (markRelease: () => void) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    let releaseStarted = 0
    const value = yield* program(() => {
      releaseStarted = performance.now()
    })
    return { value, releaseMillis: performance.now() - releaseStarted }
  })

describe("releasing a server Layer", () => {
  it.live("provided around Layer.build(HttpRouter.serve): stops at once with an idle fetch connection", () =>
    Effect.gen(function* () {
      const { value, releaseMillis } = yield* timed((markRelease) =>
        Effect.scoped(
          Effect.gen(function* () {
            yield* Layer.build(HttpRouter.serve(routes, { disableLogger: true }))
            const response = yield* HttpClient.get("/")
            const text = yield* response.text
            markRelease()
            return text
          }).pipe(Effect.provide(Http1Server.layerTest))
        )
      )
      expect(value).toBe("Hello")
      expect(releaseMillis).toBeLessThan(quickStop)
    })
  )

  it.live("provided around HttpServer.serveEffect: stops at once with an idle fetch connection", () =>
    Effect.gen(function* () {
      const { value, releaseMillis } = yield* timed((markRelease) =>
        Effect.scoped(
          Effect.gen(function* () {
            yield* HttpServer.serveEffect()(Effect.succeed(HttpServerResponse.text("served")))
            const response = yield* HttpClient.get("/")
            const text = yield* response.text
            markRelease()
            return text
          }).pipe(Effect.provide(Http1Server.layerTest))
        )
      )
      expect(value).toBe("served")
      expect(releaseMillis).toBeLessThan(quickStop)
    })
  )

  it.live("composed as Layers (the serving one released first): stops at once with an idle fetch connection", () =>
    Effect.gen(function* () {
      const { value, releaseMillis } = yield* timed((markRelease) =>
        Effect.scoped(
          Effect.gen(function* () {
            const context = yield* Layer.build(
              HttpRouter.serve(routes, { disableLogger: true }).pipe(Layer.provideMerge(Http1Server.layerTest))
            )
            const response = yield* Effect.provideContext(HttpClient.get("/"), context)
            const text = yield* response.text
            markRelease()
            return text
          })
        )
      )
      expect(value).toBe("Hello")
      expect(releaseMillis).toBeLessThan(quickStop)
    })
  )

  it.live("released before the serving scope, it still answers a request in flight, then closes", () =>
    Effect.gen(function* () {
      const app = Effect.gen(function* () {
        const req = yield* HttpServerRequest
        if (req.url === "/slow") yield* Effect.sleep(300)
        return HttpServerResponse.text("done")
      })
      const chunks: Array<Buffer> = []
      let closed = false
      const serving = yield* Scope.make()
      yield* Effect.addFinalizer(() => Scope.close(serving, Exit.void))
      const { releaseMillis } = yield* timed((markRelease) =>
        Effect.gen(function* () {
          yield* Scope.provide(HttpServer.serveEffect()(app), serving)
          const address = (yield* HttpServer.HttpServer).address
          if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
          const socket = Net.connect(address.port, "127.0.0.1")
          socket.on("data", (chunk: Buffer) => chunks.push(chunk))
          socket.on("error", () => {})
          socket.on("close", () => {
            closed = true
          })
          socket.write(request("GET /slow HTTP/1.1", "Host: x"))
          yield* Effect.sleep(50)
          markRelease()
        }).pipe(Effect.provide(Http1Server.layerServer({ host: "127.0.0.1", port: 0 })))
      )
      // The release waited for the request in flight and no longer.
      expect(releaseMillis).toBeGreaterThan(150)
      expect(releaseMillis).toBeLessThan(300 + quickStop)
      expect(yield* waitUntil(() => closed, 2_000)).toBe(true)
      const responses = parseResponses(Buffer.concat(chunks), [], true)
      expect(responses.map((r) => r.status)).toEqual([200])
      expect(responses[0].header("connection")).toBe("close")
      expect(responses[0].body.toString()).toBe("done")
    })
  )

  it.live("SCGI: provided around serveEffect, stops at once with a connection that sent nothing", () =>
    Effect.gen(function* () {
      let closed = false
      const { releaseMillis } = yield* timed((markRelease) =>
        Effect.scoped(
          Effect.gen(function* () {
            yield* HttpServer.serveEffect()(Effect.succeed(HttpServerResponse.text("served")))
            const address = (yield* HttpServer.HttpServer).address
            if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
            const socket = Net.connect(address.port, "127.0.0.1")
            socket.on("error", () => {})
            socket.on("close", () => {
              closed = true
            })
            yield* Effect.callback<void>((resume) => {
              socket.once("connect", () => resume(Effect.void))
            })
            // Accepted by the server before the release begins.
            yield* Effect.sleep(50)
            markRelease()
          }).pipe(Effect.provide(ScgiServer.layerServer({ host: "127.0.0.1", port: 0 })))
        )
      )
      expect(releaseMillis).toBeLessThan(quickStop)
      expect(yield* waitUntil(() => closed, 2_000)).toBe(true)
    })
  )

  it.live("a released server Layer leaves nothing listening", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(Http1Server.layerServer({ host: "127.0.0.1", port: 0 }), scope)
      const address = Context.get(context, HttpServer.HttpServer).address
      if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
      yield* Scope.close(scope, Exit.void)
      // Connecting now is refused: the listener closed with the Layer.
      const refused = yield* Effect.callback<boolean>((resume) => {
        const socket = Net.connect(address.port, "127.0.0.1")
        socket.once("connect", () => {
          socket.destroy()
          resume(Effect.succeed(false))
        })
        socket.once("error", () => resume(Effect.succeed(true)))
      })
      expect(refused).toBe(true)
    })
  )
})
