/**
 * Graceful stop (issue 3, item 6): closing the server's scope stops accepting at once, lets the
 * requests in progress and those already received finish (their last response carrying
 * `Connection: close`), closes idle keep-alive connections at once, interrupts what is still
 * running after shutdownTimeout, and leaves no socket open. Also the command line's SIGTERM.
 */

import * as Net from "node:net"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { cli, connectionRefused, exitOf, killAll, listening } from "../helpers/cli.ts"
import { parseResponses, type RawResponse, request } from "../helpers/raw.ts"
import { serveScoped } from "../helpers/server.ts"
import { waitUntil } from "../helpers/wait.ts"

afterEach(() => {
  killAll()
})

const startScoped = serveScoped

/** A client connection the test drives by hand. */
interface Client {
  readonly socket: Net.Socket
  readonly chunks: Array<Buffer>
  /** When the server ended its side (FIN), performance.now(). */
  endedAt: number | undefined
  /** When the socket was fully closed, performance.now(). */
  closedAt: number | undefined
  /** The connection was reset rather than closed. */
  reset: boolean
}

const received = (client: Client): Buffer => Buffer.concat(client.chunks)
const responsesOf = (client: Client): Array<RawResponse> =>
  parseResponses(received(client), [], client.endedAt !== undefined)

/** A connection destroyed when the test's scope closes. */
const connect = (port: number) =>
  Effect.acquireRelease(
    Effect.callback<Client>((resume) => {
      const socket = Net.connect({ port, host: "127.0.0.1" })
      const client: Client = { socket, chunks: [], endedAt: undefined, closedAt: undefined, reset: false }
      socket.on("data", (chunk: Buffer) => client.chunks.push(chunk))
      socket.on("end", () => {
        client.endedAt ??= performance.now()
        // our side closes too once the server's FIN arrives, as a client would
        socket.end()
      })
      socket.on("close", () => {
        client.endedAt ??= performance.now()
        client.closedAt = performance.now()
      })
      socket.on("error", (error: NodeJS.ErrnoException) => {
        if (error.code === "ECONNRESET") client.reset = true
      })
      socket.once("connect", () => resume(Effect.succeed(client)))
      return Effect.sync(() => socket.destroy())
    }),
    (client) => Effect.sync(() => client.socket.destroy())
  )

/** What a new connection attempt gets: "connected" or the error code. */
const connectAttempt = (port: number): Effect.Effect<string> =>
  Effect.callback<string>((resume) => {
    const socket = Net.connect({ port, host: "127.0.0.1" })
    socket.on("connect", () => {
      socket.destroy()
      resume(Effect.succeed("connected"))
    })
    socket.on("error", (error: NodeJS.ErrnoException) => resume(Effect.succeed(error.code ?? "error")))
    return Effect.sync(() => socket.destroy())
  })

const get = (path: string) => request(`GET ${path} HTTP/1.1`, "Host: x")

/** Closes the scope in a fiber; the result is how long the close took (ms). */
const closeInBackground = (scope: Scope.Closeable) =>
  Effect.forkChild(
    Effect.gen(function* () {
      const started = performance.now()
      yield* Scope.close(scope, Exit.void)
      return { started, finished: performance.now() }
    })
  )

describe("graceful stop", () => {
  it.live(
    "50 requests in flight all complete with 200 and Connection: close, new connections are refused",
    () =>
      Effect.gen(function* () {
        let arrived = 0
        let completed = 0
        const app = Effect.gen(function* () {
          arrived++
          yield* Effect.sleep("800 millis")
          completed++
          return HttpServerResponse.text("slept")
        })
        const { scope, port, stats } = yield* startScoped(app, { shutdownTimeout: 20, keepAliveTimeout: 60 })
        const clients = yield* Effect.forEach(Array.from({ length: 50 }), () => connect(port), {
          concurrency: 10
        })
        for (const client of clients) client.socket.write(get("/sleep"))
        expect(yield* waitUntil(() => arrived === 50, 10_000)).toBe(true)
        expect(completed).toBe(0)

        const closing = yield* closeInBackground(scope)
        // accepting stops at once: a new connection is refused while the requests still run
        yield* Effect.sleep("100 millis")
        expect(yield* connectAttempt(port)).toBe("ECONNREFUSED")

        const { started, finished } = yield* Fiber.join(closing)
        // the stop waited for the requests, well short of the 20 s shutdownTimeout
        expect(completed).toBe(50)
        expect(finished - started).toBeLessThan(10_000)
        expect(yield* waitUntil(() => clients.every((c) => c.closedAt !== undefined), 5_000)).toBe(true)
        for (const client of clients) {
          const responses = responsesOf(client)
          expect(responses).toHaveLength(1)
          expect(responses[0].status).toBe(200)
          expect(responses[0].body.toString()).toBe("slept")
          expect(responses[0].header("connection")).toBe("close")
          expect(client.reset).toBe(false)
        }
        const snapshot = yield* stats.snapshot
        expect(snapshot.openConnections).toBe(0)
        expect(snapshot.requests).toBe(50)
      }),
    60_000
  )

  it.live("a request outliving shutdownTimeout is interrupted, and the stop does not wait for it", () =>
    Effect.gen(function* () {
      let interrupted = 0
      let started = 0
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        if (request.url !== "/slow") return HttpServerResponse.text("fast")
        started++
        // Effect runs handlers uninterruptibly unless they opt in, as a handler that can be
        // stopped mid-way must
        yield* Effect.sleep("10 seconds").pipe(
          Effect.interruptible,
          Effect.onInterrupt(() =>
            Effect.sync(() => {
              interrupted++
            })
          )
        )
        return HttpServerResponse.text("late")
      })
      const { scope, port, stats } = yield* startScoped(app, { shutdownTimeout: 0.3 })
      const slow = yield* connect(port)
      slow.socket.write(get("/slow"))
      // an idle keep-alive connection alongside, closed at once
      const idle = yield* connect(port)
      idle.socket.write(get("/fast"))
      expect(yield* waitUntil(() => started === 1 && responsesOf(idle).length === 1, 5_000)).toBe(true)

      const closing = yield* closeInBackground(scope)
      expect(yield* waitUntil(() => idle.endedAt !== undefined, 2_000)).toBe(true)
      // the slow request still runs within shutdownTimeout
      expect(interrupted).toBe(0)
      const { started: closeStarted, finished } = yield* Fiber.join(closing)
      const took = finished - closeStarted
      // it waited for shutdownTimeout (300 ms), then interrupted rather than waiting 10 s
      expect(took).toBeGreaterThanOrEqual(250)
      expect(took).toBeLessThan(3_000)
      expect(interrupted).toBe(1)
      expect(yield* waitUntil(() => slow.closedAt !== undefined, 2_000)).toBe(true)
      expect(received(slow).toString()).not.toContain("late")
      expect((yield* stats.snapshot).openConnections).toBe(0)
    })
  )

  it.live("an app that cannot be interrupted does not hold the stop: its socket closes and the stop returns", () =>
    Effect.gen(function* () {
      let started = 0
      let finished = 0
      // no Effect.interruptible: Effect runs HttpServer.serve apps uninterruptibly
      const app = Effect.gen(function* () {
        started++
        yield* Effect.sleep("8 seconds")
        finished++
        return HttpServerResponse.text("late")
      })
      const { scope, port } = yield* startScoped(app, { shutdownTimeout: 0.3 })
      const slow = yield* connect(port)
      slow.socket.write(get("/slow"))
      expect(yield* waitUntil(() => started === 1, 5_000)).toBe(true)
      const closing = yield* closeInBackground(scope)
      const { started: closeStarted, finished: closeFinished } = yield* Fiber.join(closing)
      // shutdownTimeout (300 ms) plus at most the interrupt grace (1 s), never the app's 8 s
      expect(closeFinished - closeStarted).toBeLessThan(4_000)
      expect(yield* waitUntil(() => slow.closedAt !== undefined, 2_000)).toBe(true)
      expect(received(slow).toString()).not.toContain("late")
      expect(finished).toBe(0)
    })
  )

  it.live("idle keep-alive connections are closed at once, long before keepAliveTimeout", () =>
    Effect.gen(function* () {
      const { scope, port, stats } = yield* startScoped(Effect.succeed(HttpServerResponse.text("hi")), {
        keepAliveTimeout: 60,
        shutdownTimeout: 30
      })
      const clients = yield* Effect.forEach(Array.from({ length: 20 }), () => connect(port), { concurrency: 5 })
      for (const client of clients) client.socket.write(get("/"))
      expect(yield* waitUntil(() => clients.every((c) => responsesOf(c).length === 1), 5_000)).toBe(true)
      // one more connection that has sent nothing yet, and one with half a request head
      const silent = yield* connect(port)
      const partial = yield* connect(port)
      partial.socket.write("GET / HTTP/1.1\r\nHost: x\r\n")
      expect(yield* waitUntil(() => Effect.runSync(stats.snapshot).idleConnections === 21, 5_000)).toBe(true)
      for (const client of clients) {
        // kept alive: no close requested yet
        expect(responsesOf(client)[0].header("connection")).toBeUndefined()
        expect(client.endedAt).toBeUndefined()
      }

      const { started, finished } = yield* Fiber.join(yield* closeInBackground(scope))
      // nothing in flight: the stop does not wait (shutdownTimeout is 30 s, keepAliveTimeout 60 s)
      expect(finished - started).toBeLessThan(3_000)
      const all = [...clients, silent, partial]
      expect(yield* waitUntil(() => all.every((c) => c.closedAt !== undefined), 3_000)).toBe(true)
      for (const client of clients) {
        // closed cleanly (FIN), without a further response
        expect(client.reset).toBe(false)
        expect(responsesOf(client)).toHaveLength(1)
      }
      // a request not fully received at the stop is not waited for, and gets no response
      expect(received(partial).length).toBe(0)
      expect(received(silent).length).toBe(0)
      expect((yield* stats.snapshot).openConnections).toBe(0)
    })
  )

  it.live(
    "with drainGrace, a request sent on an idle or a new connection just after the stop began is answered with Connection: close",
    () =>
      Effect.gen(function* () {
        const { scope, port, stats } = yield* startScoped(Effect.succeed(HttpServerResponse.text("hi")), {
          keepAliveTimeout: 60,
          drainGrace: 1
        })
        const kept = yield* connect(port)
        kept.socket.write(get("/"))
        expect(yield* waitUntil(() => responsesOf(kept).length === 1, 5_000)).toBe(true)
        const fresh = yield* connect(port)
        const silent = yield* connect(port)
        expect(yield* waitUntil(() => Effect.runSync(stats.snapshot).idleConnections === 3, 5_000)).toBe(true)
        const stopping = yield* closeInBackground(scope)
        // Requests racing the stop: on the kept-alive connection, and the first on a new one.
        yield* Effect.sleep(200)
        kept.socket.write(get("/again"))
        fresh.socket.write(get("/first"))
        expect(yield* waitUntil(() => responsesOf(kept).length === 2 && responsesOf(fresh).length === 1, 3_000)).toBe(
          true
        )
        expect(responsesOf(kept)[1].status).toBe(200)
        expect(responsesOf(kept)[1].header("connection")).toBe("close")
        expect(responsesOf(fresh)[0].header("connection")).toBe("close")
        const { started, finished } = yield* Fiber.join(stopping)
        // The one that sent nothing is closed when the grace ends; the stop waits no longer.
        expect(finished - started).toBeGreaterThan(800)
        expect(finished - started).toBeLessThan(3_500)
        expect(yield* waitUntil(() => [kept, fresh, silent].every((c) => c.closedAt !== undefined), 3_000)).toBe(true)
        expect(received(silent).length).toBe(0)
        expect(silent.reset).toBe(false)
        // The grace's end is no client timeout.
        const { timeouts } = yield* stats.snapshot
        expect(timeouts.keepAlive + timeouts.headers).toBe(0)
      })
  )

  it.live("pipelined requests received before the stop are all answered, the last with Connection: close", () =>
    Effect.gen(function* () {
      let started = 0
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        if (request.url === "/sleep") {
          started++
          yield* Effect.sleep("500 millis")
          return HttpServerResponse.text("slept")
        }
        return HttpServerResponse.text(`answer ${request.url}`)
      })
      const { scope, port } = yield* startScoped(app, { shutdownTimeout: 10 })
      const client = yield* connect(port)
      client.socket.write(get("/sleep") + get("/second") + get("/third"))
      expect(yield* waitUntil(() => started === 1, 5_000)).toBe(true)
      const closing = yield* closeInBackground(scope)
      expect(yield* waitUntil(() => client.closedAt !== undefined, 5_000)).toBe(true)
      yield* Fiber.join(closing)
      const responses = responsesOf(client)
      expect(responses.map((r) => [r.status, r.body.toString()])).toEqual([
        [200, "slept"],
        [200, "answer /second"],
        [200, "answer /third"]
      ])
      // the earlier ones keep the connection for the requests that follow them
      expect(responses[0].header("connection")).toBeUndefined()
      expect(responses[1].header("connection")).toBeUndefined()
      expect(responses[2].header("connection")).toBe("close")
      expect(client.reset).toBe(false)
    })
  )

  it.live("a request sent on a busy keep-alive connection after the stop began is not taken", () =>
    Effect.gen(function* () {
      let started = 0
      const app = Effect.gen(function* () {
        const request = yield* HttpServerRequest
        started++
        if (request.url === "/sleep") yield* Effect.sleep("400 millis")
        return HttpServerResponse.text(`answer ${request.url}`)
      })
      const { scope, port } = yield* startScoped(app, { shutdownTimeout: 10 })
      const client = yield* connect(port)
      client.socket.write(get("/sleep"))
      expect(yield* waitUntil(() => started === 1, 5_000)).toBe(true)
      const closing = yield* closeInBackground(scope)
      yield* Effect.sleep("50 millis")
      // half a head arrives during the stop: it is not waited for
      client.socket.write("GET /late HTTP/1.1\r\n")
      yield* Fiber.join(closing)
      expect(yield* waitUntil(() => client.closedAt !== undefined, 5_000)).toBe(true)
      const responses = responsesOf(client)
      expect(responses.map((r) => r.body.toString())).toEqual(["answer /sleep"])
      // the answer says the connection closes: the half head is not waited for
      expect(responses[0].header("connection")).toBe("close")
      expect(started).toBe(1)
    })
  )
})

describe("effect-appserver serve: stopping on signals", () => {
  it("SIGTERM lets requests in flight complete with 200, then exits 0", async () => {
    const run = cli("serve", "examples/echo.ts", "--host", "127.0.0.1", "--port", "0", "--shutdown-timeout", "5")
    const url = await listening(run)
    const requests = Array.from({ length: 5 }, () =>
      fetch(`${url}/sleep?ms=1500`).then(async (response) => ({
        status: response.status,
        connection: response.headers.get("connection"),
        body: await response.text()
      }))
    )
    // give the requests time to reach the app
    await new Promise((resolve) => setTimeout(resolve, 500))
    const signalled = performance.now()
    run.child.kill("SIGTERM")
    const results = await Promise.all(requests)
    for (const result of results) expect(result).toEqual({ status: 200, connection: "close", body: "slept" })
    expect(await exitOf(run, 8_000)).toEqual({ code: 0, signal: null })
    // well short of the 5 s shutdownTimeout: the stop ends once the requests are done
    expect(performance.now() - signalled).toBeLessThan(4_500)
    expect(await connectionRefused(url)).toBe(true)
  }, 30_000)

  it("a second signal while stopping exits at once with code 130", async () => {
    const run = cli("serve", "examples/echo.ts", "--host", "127.0.0.1", "--port", "0", "--shutdown-timeout", "30")
    const url = await listening(run)
    const long = fetch(`${url}/sleep?ms=20000`).then(
      (response) => response.status,
      () => "failed"
    )
    await new Promise((resolve) => setTimeout(resolve, 500))
    run.child.kill("SIGTERM")
    // the first signal stops accepting but waits for the request in flight
    const deadline = performance.now() + 5_000
    while (!(await connectionRefused(url)) && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    expect(await connectionRefused(url)).toBe(true)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(run.child.exitCode).toBeNull()
    const signalled = performance.now()
    run.child.kill("SIGTERM")
    expect(await exitOf(run, 5_000)).toEqual({ code: 130, signal: null })
    expect(performance.now() - signalled).toBeLessThan(5_000)
    // the request was cut off, not answered
    expect(await long).toBe("failed")
  }, 30_000)

  it("SIGINT after SIGTERM exits at once too", async () => {
    const run = cli("serve", "examples/echo.ts", "--host", "127.0.0.1", "--port", "0", "--shutdown-timeout", "30")
    const url = await listening(run)
    const long = fetch(`${url}/sleep?ms=20000`).then(
      (response) => response.status,
      () => "failed"
    )
    await new Promise((resolve) => setTimeout(resolve, 500))
    run.child.kill("SIGTERM")
    const deadline = performance.now() + 5_000
    while (!(await connectionRefused(url)) && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    run.child.kill("SIGINT")
    expect(await exitOf(run, 5_000)).toEqual({ code: 130, signal: null })
    expect(await long).toBe("failed")
  }, 30_000)
})
