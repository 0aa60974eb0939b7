/**
 * AppServerManager: the project's own command in a subprocess, HTTP on TCP and SCGI with worker
 * processes on a unix socket; the address check before starting; no process left behind.
 */
import * as Net from "node:net"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as AppServerManager from "../../src/manager/AppServerManager.ts"
import * as Manager from "../../src/manager/Manager.ts"
import {
  alive,
  freePort,
  killLeftovers,
  makeToken,
  removeTempDirs,
  root,
  socketPath,
  tokenEnv,
  tokenPids
} from "./support.ts"

const token = makeToken()

afterAll(() => {
  removeTempDirs()
  expect(killLeftovers(token)).toEqual([])
})

const get = (port: number, path: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect(port, "127.0.0.1", () =>
      socket.end(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`)
    )
    let received = ""
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => (received += chunk))
    socket.on("end", () => resolve(received))
    socket.on("error", reject)
  })

describe("AppServerManager", () => {
  it.live(
    "serves examples/echo.ts over HTTP as a Layer: ready once acquired, gone once released",
    () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const pid = yield* Effect.gen(function* () {
          const manager = yield* Manager.Manager
          const response = yield* Effect.promise(() => get(port, "/"))
          expect(response).toMatch(/^HTTP\/1\.1 200/)
          return yield* manager.pid
        }).pipe(
          Effect.provide(
            AppServerManager.layer({
              module: "examples/echo.ts",
              port,
              cwd: root,
              env: tokenEnv(token),
              stopGrace: "5 seconds"
            }).pipe(Layer.provide(NodeServices.layer))
          )
        )
        expect(pid).toBeTypeOf("number")
        expect(alive(pid ?? 0)).toBe(false)
        expect(tokenPids(token)).toEqual([])
      }),
    40_000
  )

  it.live(
    "serves SCGI with two workers on a unix socket; stopping leaves no worker behind",
    () =>
      Effect.gen(function* () {
        const socket = socketPath("app")
        const manager = yield* AppServerManager.make({
          module: "examples/echo.ts",
          protocol: "scgi",
          socket,
          workers: 2,
          cwd: root,
          env: tokenEnv(token),
          stopGrace: "5 seconds"
        })
        yield* manager.start()
        yield* manager.health
        // The primary and its two workers.
        expect(tokenPids(token).length).toBeGreaterThanOrEqual(3)
        yield* manager.stop()
        expect(tokenPids(token)).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(NodeServices.layer)),
    40_000
  )

  it.live(
    "fails AddressInUse, starting nothing, when the port is taken; InvalidOptions without a port",
    () =>
      Effect.gen(function* () {
        const server = Net.createServer((socket) => socket.end())
        yield* Effect.acquireRelease(
          Effect.callback<void>((resume) => void server.listen(0, "127.0.0.1", () => resume(Effect.void))),
          () => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
        )
        const address = server.address()
        const port = typeof address === "object" && address !== null ? address.port : 0
        const manager = yield* AppServerManager.make({
          module: "examples/echo.ts",
          port,
          cwd: root,
          env: tokenEnv(token)
        })
        const error = yield* Effect.flip(manager.start())
        expect(error.reason).toBe("AddressInUse")
        expect(yield* manager.pid).toBe(undefined)
        const invalid = yield* Effect.flip(AppServerManager.make({ module: "examples/echo.ts", port: 0 }))
        expect(invalid._tag).toBe("InvalidOptions")
      }).pipe(Effect.scoped, Effect.provide(NodeServices.layer)),
    20_000
  )
})
