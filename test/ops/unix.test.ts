/**
 * Unix sockets over real sockets (issue 3, item 2): requests round-trip over a socket path, a
 * stale socket file left by a crash is replaced, a live socket and a file that is not a socket
 * are refused with typed failures and left alone, socketMode sets the file's mode, the file is
 * removed when the server stops, and the command line serves `--socket PATH`.
 */

import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type * as Scope from "effect/Scope"
import { Http1Server } from "../../src/index.ts"
import type { Http1ServerOptionsInput } from "../../src/options.ts"
import { cli, exitOf, killAll, listeningOn } from "../helpers/cli.ts"
import { parseResponses, type RawResponse, request } from "../helpers/raw.ts"

const dirs: Array<string> = []
const servers: Array<Net.Server> = []

afterEach(() => {
  killAll()
  for (const server of servers.splice(0)) server.close()
  for (const dir of dirs.splice(0)) Fs.rmSync(dir, { recursive: true, force: true })
})

/** A socket path in a fresh temporary directory (removed after the test). */
const socketPath = (name = "app.sock"): string => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "appserver-unix-"))
  dirs.push(dir)
  return Path.join(dir, name)
}

const app = Effect.map(HttpServerRequest, (req) => HttpServerResponse.text(`Hello over ${req.url}`))

/** Builds the server on a unix socket for the rest of the scope; returns its address. */
const start = (options: Http1ServerOptionsInput) =>
  Effect.map(
    Layer.build(HttpServer.serve(app).pipe(Layer.provideMerge(Http1Server.layer(options)))),
    (context) => Context.get(context, HttpServer.HttpServer).address
  )

/** Building the server fails: the error. */
const startFails = (options: Http1ServerOptionsInput) => Effect.flip(Effect.scoped(start(options)))

/** Sends exact bytes over the unix socket; collects responses until `count` arrived or the server closed. */
const unixExchange = (
  path: string,
  bytes: ReadonlyArray<string>,
  count: number
): Effect.Effect<{ responses: Array<RawResponse>; closed: boolean }, Error> =>
  Effect.callback((resume) => {
    const chunks: Array<Buffer> = []
    let closed = false
    const socket = Net.connect({ path })
    const done = () => {
      clearTimeout(timer)
      socket.destroy()
      resume(Effect.succeed({ responses: parseResponses(Buffer.concat(chunks), [], closed), closed }))
    }
    const timer = setTimeout(done, 5_000)
    const sendNext = (i: number) => {
      if (i < bytes.length) socket.write(bytes[i])
    }
    socket.on("error", (error) => {
      clearTimeout(timer)
      resume(Effect.fail(error))
    })
    socket.on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      const got = parseResponses(Buffer.concat(chunks)).length
      if (got >= count) done()
      else sendNext(got)
    })
    socket.on("close", () => {
      closed = true
      done()
    })
    socket.on("connect", () => sendNext(0))
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  })

/** GET over the unix socket with node:http, as a client library does it. */
const httpGet = (socketPath: string, path: string): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = Http.request({ socketPath, path, agent: false, headers: { host: "localhost" } }, (res) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
      res.on("error", reject)
    })
    req.on("error", reject)
    req.end()
  })

/** Whether a connection to the unix socket at `path` is accepted. */
const accepts = (path: string): Promise<boolean> =>
  new Promise((resolve) => {
    const probe = Net.connect({ path })
    probe.once("connect", () => {
      probe.destroy()
      resolve(true)
    })
    probe.once("error", () => resolve(false))
  })

/** The other server's connection handler: a greeting, then close (the probe of a starting server may reset). */
const greet = (socket: Net.Socket): void => {
  socket.on("error", () => {})
  socket.end("other")
}

/** Another program listening on `path`: it greets each connection with "other". */
const otherServer = (path: string): Effect.Effect<Net.Server, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Net.Server, Error>((resume) => {
      const server = Net.createServer(greet)
      servers.push(server)
      server.once("error", (error) => resume(Effect.fail(error)))
      server.listen(path, () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        server.close(() => resume(Effect.void))
      })
  )

/** What a connection to `path` receives before the server closes it. */
const greeting = (path: string): Promise<string> =>
  new Promise((resolve, reject) => {
    let data = ""
    const socket = Net.connect({ path })
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => (data += chunk))
    socket.on("end", () => resolve(data))
    socket.on("error", reject)
  })

/** Leaves a socket file nobody listens on, as a crashed server does: a process that binds it and is SIGKILLed. */
const staleSocket = (path: string): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        "-e",
        "require('net').createServer().listen(process.env.STALE_PATH, () => process.kill(process.pid, 'SIGKILL'))"
      ],
      { env: { ...process.env, STALE_PATH: path }, stdio: "ignore" }
    )
    child.on("error", reject)
    child.on("exit", (_code, signal) =>
      signal === "SIGKILL" ? resolve() : reject(new Error(`the stale-socket process exited with ${signal}`))
    )
  })

const modeOf = (path: string): number => Fs.statSync(path).mode & 0o777

describe("unix socket", () => {
  it.live("serves requests over the socket path, keep-alive included; the address is the path", () =>
    Effect.gen(function* () {
      const path = socketPath()
      const address = yield* start({ path })
      expect(address).toMatchObject({ _tag: "UnixPathAddress", path })
      expect(Fs.lstatSync(path).isSocket()).toBe(true)
      const result = yield* unixExchange(
        path,
        [request("GET /one HTTP/1.1", "Host: localhost"), request("GET /two HTTP/1.1", "Host: localhost")],
        2
      )
      expect(result.responses.map((r) => [r.status, r.body.toString()])).toEqual([
        [200, "Hello over /one"],
        [200, "Hello over /two"]
      ])
      expect(result.closed).toBe(false)
      const viaHttp = yield* Effect.promise(() => httpGet(path, "/http"))
      expect(viaHttp).toEqual({ status: 200, body: "Hello over /http" })
    })
  )

  it.live("a stale socket file left by a killed process is replaced and served", () =>
    Effect.gen(function* () {
      const path = socketPath()
      yield* Effect.promise(() => staleSocket(path))
      // The file is there, and nobody accepts on it.
      expect(Fs.lstatSync(path).isSocket()).toBe(true)
      expect(yield* Effect.promise(() => accepts(path))).toBe(false)
      yield* start({ path })
      expect(yield* Effect.promise(() => httpGet(path, "/"))).toEqual({ status: 200, body: "Hello over /" })
    })
  )

  it.live("a socket another process listens on is a typed AddressInUse, and that process keeps it", () =>
    Effect.gen(function* () {
      const path = socketPath()
      yield* otherServer(path)
      const error = yield* startFails({ path })
      expect(error._tag).toBe("AddressInUse")
      expect(error.message).toContain(path)
      expect(yield* Effect.promise(() => greeting(path))).toBe("other")
      expect(Fs.lstatSync(path).isSocket()).toBe(true)
    })
  )

  it.live("a regular file at the path is a typed failure and is left untouched", () =>
    Effect.gen(function* () {
      const path = socketPath("not-a-socket")
      Fs.writeFileSync(path, "precious data\n")
      const error = yield* startFails({ path })
      expect(error._tag).toBe("BadAddress")
      if (error._tag === "BadAddress") expect(error.code).toBe("ENOTSOCK")
      expect(error.message).toContain(path)
      expect(Fs.readFileSync(path, "utf8")).toBe("precious data\n")
    })
  )

  it.live("socketMode sets the socket file's permissions", () =>
    Effect.gen(function* () {
      for (const mode of [0o600, 0o660, 0o666]) {
        const path = socketPath(`mode-${mode.toString(8)}.sock`)
        yield* Effect.scoped(
          Effect.gen(function* () {
            yield* start({ path, socketMode: mode })
            expect(modeOf(path)).toBe(mode)
            expect(yield* Effect.promise(() => httpGet(path, "/"))).toEqual({ status: 200, body: "Hello over /" })
          })
        )
      }
    })
  )

  it.live("socketMode without a path, and a path with fd or systemd, are typed InvalidOptions", () =>
    Effect.gen(function* () {
      const noPath = yield* startFails({ host: "127.0.0.1", port: 0, socketMode: 0o600 })
      expect(noPath._tag).toBe("InvalidOptions")
      if (noPath._tag === "InvalidOptions") expect(noPath.option).toBe("socketMode")
      const path = socketPath()
      for (const other of [{ fd: 3 }, { systemd: true }]) {
        const both = yield* startFails({ path, ...other })
        expect(both._tag).toBe("InvalidOptions")
        if (both._tag === "InvalidOptions") expect(both.option).toBe("path")
      }
      // Nothing was bound.
      expect(Fs.existsSync(path)).toBe(false)
    })
  )

  it.live("the socket file is removed when the server's scope closes", () =>
    Effect.gen(function* () {
      const path = socketPath()
      yield* Effect.scoped(
        Effect.gen(function* () {
          yield* start({ path })
          expect(yield* Effect.promise(() => httpGet(path, "/"))).toEqual({ status: 200, body: "Hello over /" })
          expect(Fs.existsSync(path)).toBe(true)
        })
      )
      expect(Fs.existsSync(path)).toBe(false)
      // And the path can be bound again at once.
      yield* start({ path })
      expect(yield* Effect.promise(() => httpGet(path, "/again"))).toEqual({ status: 200, body: "Hello over /again" })
    })
  )
})

describe("effect-appserver serve --socket", () => {
  it("prints unix:PATH, serves, and on SIGTERM removes the socket file and exits 0", async () => {
    const path = socketPath()
    const run = cli("serve", "examples/echo.ts", "--socket", path)
    const announced = await listeningOn(run, /^listening on unix:(.+)$/m)
    expect(announced).toBe(path)
    expect(await httpGet(path, "/")).toEqual({ status: 200, body: "Hello, World!" })
    run.child.kill("SIGTERM")
    expect(await exitOf(run)).toEqual({ code: 0, signal: null })
    expect(Fs.existsSync(path)).toBe(false)
  })

  it("--socket-mode takes an octal mode", async () => {
    const path = socketPath()
    const run = cli("serve", "examples/echo.ts", "--socket", path, "--socket-mode", "660")
    await listeningOn(run, /^listening on unix:(.+)$/m)
    expect(modeOf(path)).toBe(0o660)
    expect(await httpGet(path, "/")).toEqual({ status: 200, body: "Hello, World!" })
  })

  it("a live socket at the path exits 1 naming the address, leaving the other server alone", async () => {
    const path = socketPath()
    const other = Net.createServer(greet)
    servers.push(other)
    await new Promise<void>((resolve) => other.listen(path, resolve))
    const run = cli("serve", "examples/echo.ts", "--socket", path)
    expect((await exitOf(run)).code).toBe(1)
    expect(run.stderr()).toContain(`address already in use: ${path}`)
    expect(await greeting(path)).toBe("other")
  })
})
