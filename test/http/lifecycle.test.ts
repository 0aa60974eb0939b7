/**
 * Binding, options and the server's lifetime as a Layer.
 */

import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Scope } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Http1Server } from "../../src/index.ts"
import { rawExchange, request } from "../helpers/raw.ts"
import { serveApp } from "../helpers/server.ts"

const hello = Effect.succeed(HttpServerResponse.text("Hello, World!"))

const build = (options: Http1Server.Http1ServerOptionsInput) =>
  Effect.flatMap(Layer.build(Http1Server.layer(options)), (context) =>
    Effect.succeed(Context.get(context, HttpServer.HttpServer))
  )

describe("binding", () => {
  it.live("port 0 gives an ephemeral port, visible in address", () =>
    Effect.gen(function* () {
      const server = yield* build({ host: "127.0.0.1", port: 0 })
      expect(server.address._tag).toBe("InetAddressV4")
      if (server.address._tag === "InetAddressV4") expect(server.address.port).toBeGreaterThan(0)
    })
  )

  it.live("listens on IPv6", () =>
    Effect.gen(function* () {
      const { port } = yield* Effect.flatMap(build({ host: "::1", port: 0 }), (server) =>
        Effect.succeed(server.address._tag === "InetAddressV6" ? { port: server.address.port } : { port: -1 })
      )
      expect(port).toBeGreaterThan(0)
    })
  )

  it.live("an address in use is a typed AddressInUse failure", () =>
    Effect.gen(function* () {
      const { port } = yield* serveApp(hello)
      const error = yield* Effect.flip(build({ host: "127.0.0.1", port }))
      expect(error._tag).toBe("AddressInUse")
      expect(error.message).toContain(`127.0.0.1:${port}`)
    })
  )

  it.live("an address not on this host and an unknown host name are typed BadAddress failures", () =>
    Effect.gen(function* () {
      const notHere = yield* Effect.flip(build({ host: "192.0.2.1", port: 0 }))
      expect(notHere._tag).toBe("BadAddress")
      if (notHere._tag === "BadAddress") expect(notHere.code).toBe("EADDRNOTAVAIL")
      const unknown = yield* Effect.flip(build({ host: "no-such-host.invalid", port: 0 }))
      expect(unknown._tag).toBe("BadAddress")
    })
  )

  it.live("a bad option fails at startup with a message naming it", () =>
    Effect.gen(function* () {
      const port = yield* Effect.flip(build({ port: 70_000 }))
      expect(port._tag).toBe("InvalidOptions")
      expect(port.message).toMatch(/^invalid option port: /)
      const count = yield* Effect.flip(build({ maxHeaderCount: 0 }))
      expect(count.message).toMatch(/^invalid option maxHeaderCount: /)
      // unknown options are refused, so a typo is not silently ignored
      const typo = yield* Effect.flip(build({ maxBodySise: 5 } as unknown as Http1Server.Http1ServerOptionsInput))
      expect(typo.message).toContain("maxBodySise")
    })
  )
})

describe("lifetime", () => {
  it.live("connections made before an app is served wait for it and are then served", () =>
    Effect.gen(function* () {
      const server = yield* build({ host: "127.0.0.1", port: 0 })
      const port = server.address._tag === "UnixPathAddress" ? 0 : server.address.port
      const early = yield* Effect.forkChild(rawExchange(port, request("GET / HTTP/1.1", "Host: x"), { responses: 1 }))
      yield* Effect.sleep("100 millis")
      yield* server.serve(hello)
      const result = yield* Fiber.join(early)
      expect(result.responses[0].body.toString()).toBe("Hello, World!")
    })
  )

  it.live("closing the Layer's scope stops accepting and closes open connections", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        HttpServer.serve(hello).pipe(Layer.provideMerge(Http1Server.layer({ host: "127.0.0.1", port: 0 }))),
        scope
      )
      const address = Context.get(context, HttpServer.HttpServer).address
      const port = address._tag === "UnixPathAddress" ? 0 : address.port
      // an idle keep-alive connection
      const socket = Net.connect(port, "127.0.0.1")
      const closed = new Promise<void>((resolve) => socket.on("close", () => resolve()))
      socket.on("error", () => {})
      socket.resume()
      socket.write(request("GET / HTTP/1.1", "Host: x"))
      yield* Effect.sleep("100 millis")
      yield* Scope.close(scope, Exit.void)
      yield* Effect.promise(() => closed).pipe(Effect.timeout("2 seconds"))
      const refused = yield* Effect.promise(
        () =>
          new Promise<string>((resolve) => {
            const again = Net.connect(port, "127.0.0.1")
            again.on("connect", () => resolve("connected"))
            again.on("error", (error: NodeJS.ErrnoException) => resolve(error.code ?? "error"))
          })
      )
      expect(refused).toBe("ECONNREFUSED")
    })
  )

  it.live("closing the scope interrupts a request still running after shutdownTimeout", () =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      let interrupted = false
      const slow = Effect.sleep("10 seconds").pipe(
        Effect.interruptible,
        Effect.onInterrupt(() =>
          Effect.sync(() => {
            interrupted = true
          })
        ),
        Effect.as(HttpServerResponse.text("late"))
      )
      const context = yield* Layer.buildWithScope(
        HttpServer.serve(slow).pipe(
          Layer.provideMerge(Http1Server.layer({ host: "127.0.0.1", port: 0, shutdownTimeout: 0.2 }))
        ),
        scope
      )
      const address = Context.get(context, HttpServer.HttpServer).address
      const port = address._tag === "UnixPathAddress" ? 0 : address.port
      const client = yield* Effect.forkChild(rawExchange(port, request("GET / HTTP/1.1", "Host: x")))
      yield* Effect.sleep("100 millis")
      yield* Scope.close(scope, Exit.void).pipe(Effect.timeout("2 seconds"))
      expect(interrupted).toBe(true)
      const result = yield* Fiber.join(client)
      expect(result.closed).toBe(true)
    })
  )
})
