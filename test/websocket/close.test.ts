/**
 * How WebSockets end: the close code follows the app's exit (1000 success, 1011 failure or
 * defect, 1001 interruption, RFC 6455 §7.4.1), a client's close code reaches the app's reader, a
 * close the app writes itself is the last thing on the wire (no HTTP response after it), a client
 * that vanishes ends the app's fiber. On both servers. Then this server's own: the graceful stop
 * closes open WebSockets with 1001 once `shutdownTimeout` has passed, and the ping drops a peer
 * that stops answering.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Scope } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import * as Socket from "effect/socket/Socket"
import { on, serveRoutes, serverPort, servers } from "../conformance/servers.ts"
import { serveLayer, serveScoped } from "../helpers/server.ts"
import { connectWs, rawWebSocket } from "../helpers/ws.ts"
import { allClosed, echoHandler, echoSocket } from "./apps.ts"

type Ending = "success" | "failure" | "defect" | "interrupt"

/**
 * `/end/KIND` upgrades, reads one message with the reader in the request's scope (as
 * NodeHttpServer's own test does), then ends the handler that way.
 */
const endingRoutes = HttpRouter.add(
  "GET",
  "/end/:kind",
  Effect.gen(function* () {
    const request = yield* HttpServerRequest
    const kind = request.url.split("/").pop() as Ending
    const socket = yield* request.upgrade
    const { pull } = yield* socket.reader
    yield* pull
    switch (kind) {
      case "failure":
        return yield* Effect.fail(new Error("handler failed"))
      case "defect":
        return yield* Effect.die(new Error("handler defect"))
      case "interrupt":
        return yield* Effect.interrupt
      default:
        return HttpServerResponse.empty()
    }
  })
)

/** What ended the app's reader or fiber, in words a test can compare. */
const describeEnd = (exit: Exit.Exit<unknown, Socket.SocketError>): string => {
  if (Exit.isSuccess(exit)) return "success"
  const failure = exit.cause.reasons.find((reason) => reason._tag === "Fail")
  if (failure !== undefined) {
    const reason = failure.error.reason
    return reason._tag === "SocketCloseError" ? `close ${reason.code} ${reason.closeReason ?? ""}`.trim() : reason._tag
  }
  return exit.cause.reasons.every((reason) => reason._tag === "Interrupt") ? "interrupted" : "defect"
}

/** Upgrades and echoes until the reader fails, recording how it ended. */
const recordingHandler = (ended: Deferred.Deferred<string>) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest
    const socket = yield* request.upgrade
    yield* echoSocket(socket).pipe(
      Effect.onExit((exit) => Deferred.succeed(ended, describeEnd(exit))),
      Effect.catchTag("SocketError", () => Effect.void)
    )
    return HttpServerResponse.empty()
  })

/** `/ws` is `recordingHandler`. */
const recordingRoutes = (ended: Deferred.Deferred<string>) => HttpRouter.add("GET", "/ws", recordingHandler(ended))

for (const [name, layer] of servers) {
  describe(`${name}: how WebSockets close`, () => {
    const expected: ReadonlyArray<readonly [Ending, number]> = [
      ["success", 1000],
      ["failure", 1011],
      ["defect", 1011],
      ["interrupt", 1001]
    ]
    for (const [ending, code] of expected) {
      it.live(`a handler that ends with ${ending} closes with ${code}`, () =>
        on(layer)(
          Effect.gen(function* () {
            yield* serveRoutes(endingRoutes)
            const client = yield* connectWs(`ws://127.0.0.1:${yield* serverPort}/end/${ending}`)
            client.ws.send("go")
            expect((yield* client.closed()).code).toBe(code)
          })
        )
      )
    }

    it.live("a client's close code (4001) and reason reach the app's reader as a SocketCloseError", () =>
      on(layer)(
        Effect.gen(function* () {
          const ended = yield* Deferred.make<string>()
          yield* serveRoutes(recordingRoutes(ended))
          const client = yield* connectWs(`ws://127.0.0.1:${yield* serverPort}/ws`)
          expect((yield* client.echo("before")).data.toString()).toBe("before")
          client.ws.close(4001, "client leaves")
          expect(yield* Deferred.await(ended).pipe(Effect.timeout("2 seconds"))).toBe("close 4001 client leaves")
          // The closing handshake completes: the server echoes the code.
          expect((yield* client.closed()).code).toBe(4001)
        })
      )
    )

    it.live("a close the app writes is the last thing sent: a text frame, a 4400 close, no HTTP response", () =>
      on(layer)(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.add(
              "GET",
              "/ws",
              Effect.gen(function* () {
                const request = yield* HttpServerRequest
                const socket = yield* Effect.orDie(request.upgrade)
                yield* Effect.asVoid(socket.reader)
                const writer = yield* socket.writer
                yield* writer.write("refused")
                yield* writer.write(new Socket.CloseEvent(4400, "refused"))
                return HttpServerResponse.empty()
              }).pipe(Effect.scoped)
            )
          )
          const { head, frames, trailing } = yield* rawWebSocket(yield* serverPort, "/ws")
          expect(head).toMatch(/^HTTP\/1\.1 101 /)
          expect(frames.map((frame) => frame.opcode)).toEqual([1, 8])
          expect(frames[0].payload.toString()).toBe("refused")
          expect(frames[1].payload.readUInt16BE(0)).toBe(4400)
          expect(frames[1].payload.subarray(2).toString()).toBe("refused")
          expect(trailing.toString("latin1")).toBe("")
        })
      )
    )

    it.live("a client that vanishes (no close frame) ends the app's fiber", () =>
      on(layer)(
        Effect.gen(function* () {
          const ended = yield* Deferred.make<string>()
          yield* serveRoutes(recordingRoutes(ended))
          const client = yield* connectWs(`ws://127.0.0.1:${yield* serverPort}/ws`)
          expect((yield* client.echo("here")).data.toString()).toBe("here")
          client.ws.terminate()
          const how = yield* Deferred.await(ended).pipe(Effect.timeout("2 seconds"))
          expect(["close 1006", "interrupted"]).toContain(how)
        })
      )
    )
  })
}

describe("Http1Server: WebSockets and the server's lifetime", () => {
  it.live("a client that vanishes: open connections return to 0", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* serveScoped(echoHandler)
      const clients = yield* Effect.forEach([1, 2, 3], () => connectWs(`ws://127.0.0.1:${port}/`))
      for (const client of clients) expect((yield* client.echo("x")).data.toString()).toBe("x")
      expect((yield* stats.snapshot).openConnections).toBe(3)
      for (const client of clients) client.ws.terminate()
      expect(yield* allClosed(stats)).toBe(true)
    }).pipe(Effect.scoped)
  )

  it.live("stopping the server closes open WebSockets with 1001 once shutdownTimeout (0.3 s) has passed", () =>
    Effect.gen(function* () {
      // Interruptible, as HttpRouter routes are: the stop interrupts it, and its socket closes with 1001.
      const { scope, port, stats } = yield* serveScoped(Effect.interruptible(echoHandler), { shutdownTimeout: 0.3 })
      const clients = yield* Effect.forEach([1, 2], () => connectWs(`ws://127.0.0.1:${port}/`))
      const started = performance.now()
      const stop = yield* Scope.close(scope, Exit.void).pipe(Effect.forkChild)
      // During the grace period the WebSockets still work.
      yield* Effect.sleep(100)
      for (const client of clients) expect((yield* client.echo("still here")).data.toString()).toBe("still here")
      for (const client of clients) {
        const closed = yield* client.closed(3_000)
        expect(closed.code).toBe(1001)
        expect(closed.at - started).toBeGreaterThanOrEqual(250)
        expect(closed.at - started).toBeLessThan(1_500)
      }
      yield* Fiber.await(stop).pipe(Effect.timeout("2 seconds"))
      expect(performance.now() - started).toBeLessThan(2_000)
      expect((yield* stats.snapshot).openConnections).toBe(0)
    }).pipe(Effect.scoped)
  )

  it.live("an app served uninterruptibly (HttpServer.serve's default) still gets its WebSocket closed with 1001", () =>
    Effect.gen(function* () {
      const ended = yield* Deferred.make<string>()
      const { scope, port, stats } = yield* serveScoped(recordingHandler(ended), { shutdownTimeout: 0.3 })
      const client = yield* connectWs(`ws://127.0.0.1:${port}/`)
      const started = performance.now()
      const stop = yield* Scope.close(scope, Exit.void).pipe(Effect.forkChild)
      const closed = yield* client.closed(3_000)
      expect(closed.code).toBe(1001)
      // After shutdownTimeout and the second the stop gives an interruption (which cannot happen here).
      expect(closed.at - started).toBeGreaterThanOrEqual(250)
      expect(closed.at - started).toBeLessThan(2_000)
      // The app's reader ends (with 1006 when the socket goes before the client's close frame returns).
      expect(yield* Deferred.await(ended).pipe(Effect.timeout("2 seconds"))).toMatch(/^close 100[16]$/)
      yield* Fiber.await(stop).pipe(Effect.timeout("2 seconds"))
      expect((yield* stats.snapshot).openConnections).toBe(0)
    }).pipe(Effect.scoped)
  )

  it.live("a stop completes early when the last WebSocket closes during the grace period", () =>
    Effect.gen(function* () {
      const { scope, port } = yield* serveScoped(echoHandler, { shutdownTimeout: 5 })
      const client = yield* connectWs(`ws://127.0.0.1:${port}/`)
      const started = performance.now()
      const stop = yield* Scope.close(scope, Exit.void).pipe(Effect.forkChild)
      yield* Effect.sleep(100)
      client.ws.close(1000)
      yield* Fiber.await(stop).pipe(Effect.timeout("2 seconds"))
      expect(performance.now() - started).toBeLessThan(1_500)
    }).pipe(Effect.scoped)
  )

  it.live("a message over websocketMaxMessageSize closes the socket with 1009; the app's reader fails", () =>
    Effect.gen(function* () {
      const ended = yield* Deferred.make<string>()
      const routes = HttpRouter.serve(recordingRoutes(ended), { disableLogger: true, disableListenLog: true })
      const { port } = yield* serveLayer(routes, { websocketMaxMessageSize: 1024 })
      const client = yield* connectWs(`ws://127.0.0.1:${port}/ws`)
      expect((yield* client.echo(Buffer.alloc(1024))).data.length).toBe(1024)
      client.ws.send(Buffer.alloc(1025))
      expect((yield* client.closed()).code).toBe(1009)
      expect(yield* Deferred.await(ended).pipe(Effect.timeout("2 seconds"))).toBe("SocketReadError")
    }).pipe(Effect.scoped)
  )

  it.live("ping every websocketPingInterval: a peer that does not answer is dropped within about two intervals", () =>
    Effect.gen(function* () {
      const { port, stats } = yield* serveScoped(echoHandler, { websocketPingInterval: 0.2 })
      const silent = yield* connectWs(`ws://127.0.0.1:${port}/`, { autoPong: false })
      const answering = yield* connectWs(`ws://127.0.0.1:${port}/`)
      let pings = 0
      answering.ws.on("ping", () => {
        pings++
      })
      const opened = performance.now()
      const closed = yield* silent.closed(3_000)
      // Terminated, not closed: no close frame for a peer that is gone (1006 at the client).
      expect(closed.code).toBe(1006)
      expect(closed.at - opened).toBeGreaterThanOrEqual(300)
      expect(closed.at - opened).toBeLessThan(900)
      // The peer that answers stays, past several intervals.
      yield* Effect.sleep(1_000)
      expect(answering.isClosed).toBe(false)
      expect(pings).toBeGreaterThanOrEqual(4)
      expect((yield* answering.echo("alive")).data.toString()).toBe("alive")
      expect((yield* stats.snapshot).openConnections).toBe(1)
    }).pipe(Effect.scoped)
  )

  it.live("websocketPingInterval: 0 sends no pings", () =>
    Effect.gen(function* () {
      const { port } = yield* serveScoped(echoHandler, { websocketPingInterval: 0 })
      const client = yield* connectWs(`ws://127.0.0.1:${port}/`, { autoPong: false })
      let pings = 0
      client.ws.on("ping", () => {
        pings++
      })
      yield* Effect.sleep(600)
      expect(pings).toBe(0)
      expect(client.isClosed).toBe(false)
    }).pipe(Effect.scoped)
  )
})
