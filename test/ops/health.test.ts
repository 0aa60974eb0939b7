/**
 * Health path and stop delay (issue 12, item 2), over real sockets and real processes: the
 * server answers `--health-path` itself (200 while serving, never reaching the app), 503 from the
 * moment a graceful stop begins while requests in flight complete; `--stop-delay` keeps serving
 * for that long after SIGTERM (the health path failing meanwhile) before draining; a pool's
 * workers answer for the pool (503 once it stops, 200 through a rolling reload); the SCGI server
 * the same. The stop's progress is logged.
 */
import * as Net from "node:net"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { cli, connectionRefused, exitOf, killAll, listening, listeningOn } from "../helpers/cli.ts"
import { parseResponses, request } from "../helpers/raw.ts"
import { scgi } from "../helpers/scgi.ts"
import { serveApp } from "../helpers/server.ts"

afterEach(() => {
  killAll()
})

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A GET on a connection of its own: status and body. */
const get = async (url: string): Promise<{ status: number; body: string }> => {
  const response = await fetch(url, { headers: { connection: "close" } })
  return { status: response.status, body: await response.text() }
}

/** A keep-alive connection the test sends requests on by hand. */
const keepAlive = (port: number) =>
  new Promise<{ send: (path: string) => Promise<string>; socket: Net.Socket }>((resolve, reject) => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    let received = ""
    let waiting: (() => void) | undefined
    socket.setEncoding("latin1").on("data", (chunk: string) => {
      received += chunk
      waiting?.()
    })
    socket.on("error", reject)
    socket.on("connect", () =>
      resolve({
        socket,
        send: (path) =>
          new Promise<string>((done, fail) => {
            received = ""
            const timer = setTimeout(() => fail(new Error(`no response to ${path} within 5 s`)), 5_000)
            waiting = () => {
              const [response] = parseResponses(Buffer.from(received, "latin1"), [], false)
              if (response !== undefined) {
                clearTimeout(timer)
                done(`${response.status} ${response.body.toString("latin1")}`)
              }
            }
            socket.write(request(`GET ${path} HTTP/1.1`, "Host: x"))
          })
      })
    )
  })

describe("healthPath in the server", () => {
  it.effect("is answered by the server itself: the app and its middleware never see it", () =>
    Effect.gen(function* () {
      const calls = yield* Ref.make<Array<string>>([])
      const app = Effect.flatMap(HttpServerRequest, (req) =>
        Effect.as(
          Ref.update(calls, (all) => [...all, req.url]),
          HttpServerResponse.text(`app saw ${req.url}`)
        )
      )
      const { port } = yield* serveApp(app, { healthPath: "/healthz" })
      const base = `http://127.0.0.1:${port}`
      const health = yield* Effect.promise(() => fetch(`${base}/healthz`))
      expect(health.status).toBe(200)
      expect(health.headers.get("cache-control")).toBe("no-store")
      expect(yield* Effect.promise(() => health.text())).toBe("ok\n")
      expect((yield* Effect.promise(() => get(`${base}/healthz?probe=1`))).status).toBe(200)
      // only the exact path: these are the app's
      expect((yield* Effect.promise(() => get(`${base}/healthzz`))).body).toBe("app saw /healthzz")
      expect((yield* Effect.promise(() => get(`${base}/healthz/x`))).body).toBe("app saw /healthz/x")
      expect(yield* Ref.get(calls)).toEqual(["/healthzz", "/healthz/x"])
    })
  )

  it.effect("a health path that is not a path is refused, naming the option", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        serveApp(HttpServerResponse.text("x").pipe(Effect.succeed), { healthPath: "healthz" })
      )
      expect(String(error)).toContain("healthPath")
    })
  )
})

describe("the command line: --health-path and --stop-delay", () => {
  it("SIGTERM: 503 on the health path at once, requests in flight complete, then the server exits", async () => {
    const run = cli(
      "serve",
      "test/fixtures/prefork-app.ts",
      "--port",
      "0",
      "--health-path",
      "/healthz",
      "--drain-grace",
      "3"
    )
    const url = await listening(run)
    const port = Number(new URL(url).port)
    expect(await get(`${url}/healthz`)).toEqual({ status: 200, body: "ok\n" })
    const idle = await keepAlive(port)
    expect(await idle.send("/healthz")).toBe("200 ok\n")
    const slow = get(`${url}/sleep?ms=1500`)
    await sleep(200)
    run.child.kill("SIGTERM")
    await sleep(200)
    // the keep-alive connection is kept for drainGrace: its health check sees the stop
    expect(await idle.send("/healthz")).toBe("503 stopping\n")
    expect((await slow).status).toBe(200)
    expect((await exitOf(run)).code).toBe(0)
    expect(run.stderr()).toMatch(/stopping: 1 of 2 connections have a request in progress; waiting up to 30 s/)
  })

  it("--stop-delay: after SIGTERM the server serves on for the delay, failing its health check, then drains", async () => {
    const run = cli(
      "serve",
      "test/fixtures/prefork-app.ts",
      "--port",
      "0",
      "--health-path",
      "/healthz",
      "--stop-delay",
      "1.5"
    )
    const url = await listening(run)
    const slow = get(`${url}/sleep?ms=2500`)
    await sleep(100)
    const stopAt = performance.now()
    run.child.kill("SIGTERM")
    await sleep(300)
    // new connections are still accepted and served: only the health check fails
    expect(await get(`${url}/healthz`)).toEqual({ status: 503, body: "stopping\n" })
    expect((await get(`${url}/pid`)).status).toBe(200)
    await sleep(1_700)
    // the delay is over: it no longer accepts, and what was in flight still completes
    expect(await connectionRefused(url)).toBe(true)
    expect((await slow).status).toBe(200)
    expect((await exitOf(run)).code).toBe(0)
    expect(performance.now() - stopAt).toBeGreaterThanOrEqual(1_500)
    expect(run.stderr()).toContain("stopping in 1.5 s (stopDelay)")
  })

  it("SCGI: the health path by REQUEST_URI, 503 during the stop delay", async () => {
    const run = cli(
      "serve",
      "test/fixtures/prefork-app.ts",
      "--protocol",
      "scgi",
      "--port",
      "0",
      "--health-path",
      "/healthz",
      "--stop-delay",
      "1"
    )
    const port = Number(await listeningOn(run, /^listening on scgi:\/\/127\.0\.0\.1:(\d+)$/m))
    const ask = (uri: string) => Effect.runPromise(scgi({ port }, { REQUEST_METHOD: "GET", REQUEST_URI: uri }))
    const ok = await ask("/healthz")
    expect(ok.status).toBe(200)
    expect(ok.body.toString()).toBe("ok\n")
    run.child.kill("SIGTERM")
    await sleep(300)
    expect((await ask("/healthz")).status).toBe(503)
    expect((await ask("/pid")).status).toBe(200)
    expect((await exitOf(run)).code).toBe(0)
  })

  it("workers answer for the pool: 200 through a rolling reload, 503 once the pool stops, serving through the stop delay", async () => {
    const run = cli(
      "serve",
      "test/fixtures/prefork-app.ts",
      "--port",
      "0",
      "--workers",
      "2",
      "--health-path",
      "/healthz",
      "--stop-delay",
      "1.5"
    )
    const url = await listeningOn(run, /^listening on (http:\/\/127\.0\.0\.1:\d+) \(2 workers\)$/m, 30_000)
    const before = new Set([(await get(`${url}/pid`)).body.split(" ")[0]])
    // a reload replaces every worker; the pool serves on, and its health check says so throughout
    run.child.kill("SIGHUP")
    const seen: Array<number> = []
    for (let i = 0; i < 30; i++) {
      seen.push((await get(`${url}/healthz`)).status)
      await sleep(50)
    }
    expect(seen.every((status) => status === 200)).toBe(true)
    run.child.kill("SIGTERM")
    await sleep(300)
    // a reload asked for meanwhile does not kill the stopping primary (its handlers stay until the end)
    run.child.kill("SIGHUP")
    const statuses = [await get(`${url}/healthz`), await get(`${url}/healthz`)].map((r) => r.status)
    expect(statuses).toEqual([503, 503])
    const served = await get(`${url}/pid`)
    expect(served.status).toBe(200)
    expect(before.has(served.body.split(" ")[0])).toBe(false)
    expect((await exitOf(run, 20_000)).code).toBe(0)
    expect(run.stderr()).toContain("stopping in 1.5 s (stopDelay)")
  })
})
