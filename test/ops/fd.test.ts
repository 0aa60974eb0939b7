/**
 * Inherited listening sockets (issue 3, item 3): systemd socket activation's environment is read
 * as sd_listen_fds(3) says, and the command line serves a listening socket passed as a
 * descriptor, explicitly (`--fd 3`) or by systemd activation (`--systemd`).
 */

import { type ChildProcess, spawn } from "node:child_process"
import * as Net from "node:net"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import { systemdFd } from "../../src/listen/Listener.ts"
import { type Cli, cli, cliWith, exitOf, killAll, listening, root } from "../helpers/cli.ts"

/** Children this file spawns itself (the systemd case needs a shell in front of node). */
const spawned = new Set<ChildProcess>()
const listeners: Array<Net.Server> = []

afterEach(() => {
  killAll()
  for (const child of spawned) child.kill("SIGKILL")
  spawned.clear()
  for (const server of listeners.splice(0)) if (server.listening) server.close()
})

describe("systemdFd", () => {
  const failure = (env: NodeJS.ProcessEnv, pid = 4242) => {
    const result = systemdFd(env, pid)
    if (Result.isSuccess(result)) throw new Error(`expected a failure, got fd ${result.success}`)
    return result.failure
  }

  it("LISTEN_PID naming this process and LISTEN_FDS=1 give fd 3 and remove the variables", () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: "4242", LISTEN_FDS: "1", LISTEN_FDNAMES: "http", OTHER: "kept" }
    const result = systemdFd(env, 4242)
    expect(Result.isSuccess(result) ? result.success : undefined).toBe(3)
    // Children of the server must not take the sockets for theirs.
    expect(env).toEqual({ OTHER: "kept" })
  })

  it("with several sockets the first, fd 3, is served", () => {
    const result = systemdFd({ LISTEN_PID: "4242", LISTEN_FDS: "2" }, 4242)
    expect(Result.isSuccess(result) ? result.success : undefined).toBe(3)
  })

  it.each([
    ["no variables", {}],
    ["LISTEN_PID only", { LISTEN_PID: "4242" }],
    ["LISTEN_FDS only", { LISTEN_FDS: "1" }],
    ["another process's sockets", { LISTEN_PID: "4243", LISTEN_FDS: "1" }],
    ["a non-numeric LISTEN_PID", { LISTEN_PID: "self", LISTEN_FDS: "1" }],
    ["LISTEN_FDS=0", { LISTEN_PID: "4242", LISTEN_FDS: "0" }],
    ["a non-numeric LISTEN_FDS", { LISTEN_PID: "4242", LISTEN_FDS: "one" }],
    ["a negative LISTEN_FDS", { LISTEN_PID: "4242", LISTEN_FDS: "-1" }]
  ])("fails naming systemd with %s", (_, env: NodeJS.ProcessEnv) => {
    const error = failure(env)
    expect(error._tag).toBe("InvalidOptions")
    expect(error.option).toBe("systemd")
    expect(error.message).toMatch(/^invalid option systemd: /)
  })

  it("names the process the sockets were meant for", () => {
    expect(failure({ LISTEN_PID: "4243", LISTEN_FDS: "1" }).detail).toContain("4243")
  })
})

/** A listening TCP socket on 127.0.0.1 made by this process, and its OS descriptor. */
const listeningSocket = (): Promise<{ server: Net.Server; port: number; fd: number }> =>
  new Promise((resolve, reject) => {
    const server = Net.createServer()
    listeners.push(server)
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const handle: unknown = Reflect.get(server, "_handle")
      const fd = typeof handle === "object" && handle !== null ? Reflect.get(handle, "fd") : undefined
      if (address === null || typeof address === "string") return reject(new Error("no TCP address"))
      if (typeof fd !== "number" || fd < 0) return reject(new Error("no descriptor for the listening socket"))
      resolve({ server, port: address.port, fd })
    })
  })

/**
 * Hands the descriptor to a child and closes this process's copy, so that only the child accepts
 * on it (this process would otherwise take some of the connections).
 */
const handOver = (server: Net.Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()))

/** `sh -c 'LISTEN_PID=$$ LISTEN_FDS=1 exec node bin ...'`: the pid is the one node runs as. */
const systemdActivated = (fd: number, ...args: ReadonlyArray<string>): Cli => {
  const child = spawn(
    "sh",
    ["-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"', process.execPath, Path.join(root, "src/cli/bin.ts"), ...args],
    { cwd: root, env: process.env, stdio: ["ignore", "pipe", "pipe", fd] }
  )
  spawned.add(child)
  let stdout = ""
  let stderr = ""
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("exit", (code, signal) => {
      spawned.delete(child)
      resolve({ code, signal })
    })
  })
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

const text = async (url: string): Promise<{ status: number; body: string }> => {
  const response = await fetch(url)
  return { status: response.status, body: await response.text() }
}

describe("effect-appserver serve on an inherited socket", () => {
  it("--fd 3 serves the listening socket passed as descriptor 3, on its port", async () => {
    const { server, port, fd } = await listeningSocket()
    const run = cliWith({ extraFds: [fd] }, "serve", "examples/echo.ts", "--fd", "3")
    await handOver(server)
    expect(await listening(run)).toBe(`http://127.0.0.1:${port}`)
    expect(await text(`http://127.0.0.1:${port}/`)).toEqual({ status: 200, body: "Hello, World!" })
    expect(await text(`http://127.0.0.1:${port}/bytes?n=5`)).toEqual({ status: 200, body: "aaaaa" })
    run.child.kill("SIGTERM")
    expect(await exitOf(run)).toEqual({ code: 0, signal: null })
  })

  it("--systemd serves the socket systemd passes (LISTEN_PID and LISTEN_FDS)", async () => {
    const { server, port, fd } = await listeningSocket()
    const run = systemdActivated(fd, "serve", "examples/echo.ts", "--systemd")
    await handOver(server)
    expect(await listening(run)).toBe(`http://127.0.0.1:${port}`)
    expect(await text(`http://127.0.0.1:${port}/`)).toEqual({ status: 200, body: "Hello, World!" })
    run.child.kill("SIGTERM")
    expect(await exitOf(run)).toEqual({ code: 0, signal: null })
  })

  it("--systemd without the activation variables exits 2 naming systemd", async () => {
    const run = cli("serve", "examples/echo.ts", "--systemd")
    expect((await exitOf(run)).code).toBe(2)
    expect(run.stderr()).toMatch(/--systemd: .*LISTEN_PID and LISTEN_FDS are not set/)
  })

  it("--systemd with variables meant for another process exits 2 naming systemd", async () => {
    const run = cliWith({ env: { LISTEN_PID: "1", LISTEN_FDS: "1" } }, "serve", "examples/echo.ts", "--systemd")
    expect((await exitOf(run)).code).toBe(2)
    expect(run.stderr()).toMatch(/--systemd: .*process 1/)
  })

  it("--fd with --socket exits 2: they exclude each other", async () => {
    const run = cli("serve", "examples/echo.ts", "--fd", "3", "--socket", "/tmp/unused.sock")
    expect((await exitOf(run)).code).toBe(2)
    expect(run.stderr()).toContain("exclude each other")
  })

  it("--fd naming a descriptor that is not open exits 1 naming it", async () => {
    const run = cli("serve", "examples/echo.ts", "--fd", "57")
    expect((await exitOf(run)).code).toBe(1)
    expect(run.stderr()).toContain("fd 57")
  })
})
