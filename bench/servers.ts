/**
 * The servers under test, started as child processes serving the echo contract on 127.0.0.1,
 * each on a free port of its own: effect-appserver from this checkout, Effect's NodeHttpServer,
 * bare node:http, the limit (a raw node:net responder, bench/peers/limit.ts), and with
 * --baseline effect-appserver from another revision (bench/baseline.ts).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { createInterface } from "node:readline"
import { terminate, track } from "./proc.ts"

export type ServerId = "appserver" | "appserver-base" | "effect-node" | "node-http" | "limit" | "effect-limit"

export interface ServerSpec {
  readonly id: ServerId
  /** Name used in tables. */
  readonly label: string
  /** Arguments after `node`, relative to `cwd`; `--host`/`--port` are appended. */
  readonly args: ReadonlyArray<string>
  /** Where the server is started: this repository's root, or the baseline's checkout. */
  readonly cwd: string
}

/** This repository's root: servers are started from here, so relative paths resolve. */
export const REPO_ROOT = Path.resolve(import.meta.dirname, "..")

/** A tree effect-appserver is started from: this checkout, or the baseline revision's. */
export interface Checkout {
  readonly root: string
  /** Name of its effect-appserver in tables: `effect-appserver`, `effect-appserver @ 1a2b3c4`. */
  readonly label: string
  /** Appended to the ids of its server and nginx paths. */
  readonly idSuffix: "" | "-base"
}

export const THIS_CHECKOUT: Checkout = { root: REPO_ROOT, label: "effect-appserver", idSuffix: "" }

/**
 * The Node flags of the command's shebang line (`#!/usr/bin/env -S node FLAGS`) in a checkout:
 * the server runs as `effect-appserver` runs when a user starts it.
 */
const commandFlags = (checkout: Checkout): ReadonlyArray<string> => {
  const shebang = readFileSync(Path.join(checkout.root, "src/cli/bin.ts"), "utf8").split("\n")[0]
  return shebang.split(/\s+/).filter((word) => word.startsWith("--"))
}

/** `node` arguments serving the echo app with a checkout's effect-appserver command. */
export const appserverArgs = (checkout: Checkout): Array<string> => [
  ...commandFlags(checkout),
  "src/cli/bin.ts",
  "serve",
  "examples/echo.ts"
]

// keep-alive timeout 120 s as for the node peers: idle connections must survive the memory probe
export const appserverSpec = (checkout: Checkout): ServerSpec => ({
  id: `appserver${checkout.idSuffix}`,
  label: checkout.label,
  args: [...appserverArgs(checkout), "--keep-alive-timeout", "120"],
  cwd: checkout.root
})

/** The servers --servers chooses from; the baseline is added by --baseline. */
export const SERVER_SPECS: ReadonlyArray<ServerSpec> = [
  appserverSpec(THIS_CHECKOUT),
  { id: "effect-node", label: "NodeHttpServer", args: ["bench/peers/effect-node.ts"], cwd: REPO_ROOT },
  { id: "node-http", label: "node:http", args: ["bench/peers/node-http.ts"], cwd: REPO_ROOT },
  // not a peer but the yardstick: the least an HTTP/1.1 responder must do (bench/peers/limit.ts)
  { id: "limit", label: "limit (raw node:net)", args: ["bench/peers/limit.ts"], cwd: REPO_ROOT },
  // the limit of any server running the app as an Effect: the limit plus a fiber per request
  // through HttpEffect.toHandled (bench/peers/effect-limit.ts)
  {
    id: "effect-limit",
    label: "Effect limit (limit + a fiber per request)",
    args: ["bench/peers/effect-limit.ts"],
    cwd: REPO_ROOT
  }
]

export const HOST = "127.0.0.1"

export interface RunningServer {
  readonly spec: ServerSpec
  readonly child: ChildProcess
  readonly pid: number
  /** Base URL without trailing slash, e.g. http://127.0.0.1:41234 */
  readonly url: string
  /** The last lines the server wrote to stdout/stderr, for error messages. */
  readonly outputTail: () => string
}

/** Asks the kernel for a free port. Another process could take it before the server binds; rare. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = Net.createServer()
    probe.once("error", reject)
    probe.listen(0, HOST, () => {
      const { port } = probe.address() as Net.AddressInfo
      probe.close(() => resolve(port))
    })
  })

/** Keeps the last `size` lines of output; the rest is read and dropped so the pipe never fills. */
const lineTail = (size: number) => {
  const lines: Array<string> = []
  return {
    push: (line: string) => {
      lines.push(line)
      if (lines.length > size) lines.shift()
    },
    text: () => lines.join("\n")
  }
}

/** `listening on http://HOST:PORT`; the SCGI server says `scgi://HOST:PORT` or `unix:PATH`. */
const READY = /listening on ((?:https?|scgi):\/\/\S+|unix:\S+)/

const describeExit = (code: number | null, signal: NodeJS.Signals | null): string =>
  signal !== null ? `killed by ${signal}` : `exited with code ${code}`

/**
 * Resolves with the URL from the ready line. Rejects if the server exits first or stays silent
 * for `timeoutMs`; either way the message carries its recent output, which usually says why.
 */
const awaitReady = (
  spec: { readonly label: string },
  child: ChildProcess,
  tail: ReturnType<typeof lineTail>,
  timeoutMs: number
): Promise<string> =>
  new Promise((resolve, reject) => {
    let settled = false
    const fail = (why: string) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      const output = tail.text()
      reject(new Error(`${spec.label} failed to start: ${why}${output ? `\n--- its output ---\n${output}` : ""}`))
    }
    const timer = setTimeout(() => fail(`no "listening on" line within ${timeoutMs} ms`), timeoutMs)
    child.once("error", (error) => fail(error.message))
    child.once("exit", (code, signal) => fail(describeExit(code, signal)))
    // Read stdout for the whole life of the server: a full pipe would block a server that logs.
    createInterface({ input: child.stdout! }).on("line", (line) => {
      tail.push(line)
      const match = settled ? null : READY.exec(line)
      if (match === null) return
      settled = true
      clearTimeout(timer)
      resolve(match[1].replace(/\/$/, ""))
    })
  })

export interface StartedProcess {
  readonly child: ChildProcess
  /** What the ready line names: `http://HOST:PORT` (no trailing slash), `scgi://HOST:PORT` or `unix:PATH`. */
  readonly address: string
  readonly outputTail: () => string
}

/**
 * Runs `node ...args` from `cwd` (the repository root unless given) and waits for its
 * `listening on` line; the process is killed again if that fails. With `ownGroup`, the process
 * leads a process group of its own (a prefork pool: its workers are in the group) and `ownGroup`
 * is called with it at once, so the caller can kill the whole group however the run ends.
 */
export const startProcess = async (
  label: string,
  args: ReadonlyArray<string>,
  timeoutMs: number,
  cwd = REPO_ROOT,
  ownGroup?: (child: ChildProcess) => void
): Promise<StartedProcess> => {
  // process.execPath: the Node 24 that runs the harness, which can run the .ts entry points.
  const child = track(
    spawn(process.execPath, args, { cwd, detached: ownGroup !== undefined, stdio: ["ignore", "pipe", "pipe"] })
  )
  ownGroup?.(child)
  const tail = lineTail(30)
  createInterface({ input: child.stderr! }).on("line", tail.push)
  try {
    const address = await awaitReady({ label }, child, tail, timeoutMs)
    return { child, address, outputTail: tail.text }
  } catch (error) {
    await terminate(child)
    throw error
  }
}

/** Starts one server and waits for its ready line; the process is killed again if that fails. */
export const startServer = async (spec: ServerSpec, timeoutMs: number): Promise<RunningServer> => {
  const port = await freePort()
  const args = [...spec.args, "--host", HOST, "--port", String(port)]
  const started = await startProcess(spec.label, args, timeoutMs, spec.cwd)
  const url = started.address
  if (!url.endsWith(`:${port}`)) {
    await terminate(started.child)
    throw new Error(`${spec.label} reported ${url}, expected port ${port}`)
  }
  return { spec, child: started.child, pid: started.child.pid!, url, outputTail: started.outputTail }
}

/** Throws if the server has died, e.g. crashed under load, so no further numbers are taken from it. */
export const assertAlive = (server: RunningServer): void => {
  const { exitCode, signalCode } = server.child
  if (exitCode === null && signalCode === null) return
  throw new Error(
    `${server.spec.label} (pid ${server.pid}) ${describeExit(exitCode, signalCode)} during the benchmark` +
      `\n--- its output ---\n${server.outputTail()}`
  )
}

const POST_PROBE = "echo-contract-probe"

/**
 * Checks the echo contract before measuring anything: a server answering 404 or a wrong body
 * would otherwise produce impressive but meaningless numbers.
 */
export const verifyContract = async (server: {
  readonly url: string
  readonly spec: { readonly label: string }
}): Promise<void> => {
  const fail = (what: string) => {
    throw new Error(`${server.spec.label} does not serve the echo contract: ${what}`)
  }
  const hello = await fetch(`${server.url}/`)
  const helloBody = await hello.text()
  if (hello.status !== 200 || helloBody !== "Hello, World!") fail(`GET / gave ${hello.status} ${helloBody}`)
  const echo = await fetch(`${server.url}/echo`, {
    method: "POST",
    headers: { "content-type": "application/x-probe" },
    body: POST_PROBE
  })
  const echoBody = await echo.text()
  if (echo.status !== 200 || echoBody !== POST_PROBE) fail(`POST /echo gave ${echo.status} ${echoBody}`)
  const type = echo.headers.get("content-type")
  if (type !== "application/x-probe") fail(`POST /echo answered Content-Type ${type}`)
}
