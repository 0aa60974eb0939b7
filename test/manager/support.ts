/**
 * What the manager tests share: the fixture command, free ports, and the check that no process
 * of a test file outlives it. Every process a test starts carries the file's token in its
 * environment (children inherit it), so leftovers are found in /proc whoever started them, and
 * SIGKILLed in `afterAll` even when a test failed half way.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { Effect, type Scope } from "effect"
import type { ProcessManagerOptions } from "../../src/manager/ProcessManager.ts"
import { alive } from "../helpers/prefork.ts"
import { removeTempDirs, tempDir as sharedTempDir } from "../helpers/tempDir.ts"

export const root = Path.resolve(import.meta.dirname, "../..")
export const fixturePath = Path.join(root, "test/fixtures/managed.ts")
export const binPath = Path.join(root, "src/cli/bin.ts")

/** The environment variable that marks this run's processes. */
const tokenVariable = "MANAGER_TEST_TOKEN"

/** A token for one test file. */
export const makeToken = (): string => `${process.pid}-${Math.random().toString(36).slice(2)}`

/** Options of a ProcessManager running the fixture with `args`, marked with `token`. */
export const fixture = (
  token: string,
  args: ReadonlyArray<string>
): Pick<ProcessManagerOptions, "command" | "args" | "env"> => ({
  command: process.execPath,
  args: [fixturePath, ...args],
  env: { [tokenVariable]: token }
})

/** The environment entry that marks a process as this run's (for commands other than the fixture). */
export const tokenEnv = (token: string): Record<string, string> => ({ [tokenVariable]: token })

export { alive }

/**
 * A backend on 127.0.0.1 (port 0) or a unix path answering each connection's first data with
 * `answer(request)` (or closing it at once without `answer`), closed with the scope.
 */
export const backend = (
  where: { readonly port: number } | { readonly path: string },
  answer?: (request: string) => string
): Effect.Effect<Net.Server, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Net.Server>((resume) => {
      const server = Net.createServer((socket) => {
        socket.setEncoding("latin1")
        socket.on("error", () => socket.destroy())
        if (answer === undefined) socket.end()
        else socket.once("data", (request: string) => socket.end(answer(request)))
      })
      const ready = () => resume(Effect.succeed(server))
      if ("path" in where) server.listen(where.path, ready)
      else server.listen(where.port, "127.0.0.1", ready)
    }),
    (server) => Effect.callback<void>((resume) => void server.close(() => resume(Effect.void)))
  )

/** The port a TCP server got. */
export const portOf = (server: Net.Server): number => {
  const address = server.address()
  return typeof address === "object" && address !== null ? address.port : 0
}

/** Live processes carrying `token` in their environment. */
export const tokenPids = (token: string): Array<number> => {
  const marker = `${tokenVariable}=${token}\0`
  const found: Array<number> = []
  for (const entry of Fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    try {
      if (Fs.readFileSync(`/proc/${pid}/environ`, "latin1").includes(marker) && alive(pid)) found.push(pid)
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found
}

/** SIGKILLs every live process of `token`; returns the pids it found. */
export const killLeftovers = (token: string): Array<number> => {
  const pids = tokenPids(token)
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // exited meanwhile
    }
  }
  return pids
}

/** A TCP port free on 127.0.0.1 right now. */
export { freePort } from "../helpers/nginx.ts"

/** A fresh temporary directory in /tmp (short: unix socket paths are bounded), removed by `removeTempDirs` (call it in `afterAll`). */
export const tempDir = (prefix = "effect-appserver-manager-"): string => sharedTempDir(prefix, "/tmp")

export { removeTempDirs }

/** A fresh path for a unix socket, in a directory `removeTempDirs` removes. */
export const socketPath = (name: string): string => Path.join(tempDir(), `${name}.sock`)

/** Polls until `done` holds, for at most `timeoutMs`. */
export const eventually = async (done: () => boolean, timeoutMs: number): Promise<boolean> => {
  const until = performance.now() + timeoutMs
  while (!done()) {
    if (performance.now() > until) return false
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return true
}

/** Live processes in process group `pgid` (a detached child's pid is its group's id). */
export const groupPids = (pgid: number): Array<number> => {
  const found: Array<number> = []
  for (const entry of Fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = Fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      // After the parenthesised name: state, ppid, pgrp.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (Number(fields[2]) === pgid && fields[0] !== "Z") found.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return found
}
