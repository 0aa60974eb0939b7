/**
 * Running the `effect-appserver` command as a user runs it: a real child process on Node 24.
 * Tests that use `cli` must call `killAll` in an `afterEach` so no child outlives its test.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as Net from "node:net"
import * as Path from "node:path"

export const root = Path.resolve(import.meta.dirname, "../..")
const bin = Path.join(root, "src/cli/bin.ts")

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface Cli {
  readonly child: ChildProcess
  readonly stdout: () => string
  readonly stderr: () => string
  readonly exited: Promise<Exit>
}

const running = new Set<ChildProcess>()

/** Process groups of children started with `group` (see `spawnTracked`). */
const groups = new Set<number>()

/**
 * Kills whatever child process a test left behind, and every process left in the group of a
 * `group` child, even after the child itself exited (npx's server outlives a killed npx).
 */
export const killAll = (): void => {
  for (const child of running) child.kill("SIGKILL")
  running.clear()
  for (const group of groups) {
    try {
      process.kill(-group, "SIGKILL")
    } catch {
      // nothing left in the group
    }
  }
  groups.clear()
}

export interface SpawnOptions {
  /** Extra environment variables. */
  readonly env?: Record<string, string>
  /** Descriptors after stdin/stdout/stderr handed to the child (fd 3, 4, ...), e.g. a listening socket. */
  readonly extraFds?: ReadonlyArray<number | "ignore">
}

/** Runs `node src/cli/bin.ts ...args` in the repository root (process.execPath is Node 24 here). */
export const cli = (...args: ReadonlyArray<string>): Cli => cliWith({}, ...args)

/** `cli` with an environment and inherited descriptors. */
export const cliWith = (options: SpawnOptions, ...args: ReadonlyArray<string>): Cli =>
  spawnTracked(process.execPath, [bin, ...args], { ...options, cwd: root })

export interface TrackedOptions extends SpawnOptions {
  readonly cwd: string
  /**
   * Start the child in a process group of its own, which `killAll` kills whole: for commands
   * that run the server in a further process (npx runs npm, a shell, then the command).
   */
  readonly group?: boolean
  /** Run the child as this user and group (the test must run as root). */
  readonly uid?: number
  readonly gid?: number
}

/** Runs any command as `cli` runs the command line: output collected, killed by `killAll`. */
export const spawnTracked = (command: string, args: ReadonlyArray<string>, options: TrackedOptions): Cli => {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe", ...(options.extraFds ?? [])],
    detached: options.group === true,
    ...(options.uid === undefined ? {} : { uid: options.uid }),
    ...(options.gid === undefined ? {} : { gid: options.gid })
  })
  running.add(child)
  if (options.group === true && child.pid !== undefined) groups.add(child.pid)
  let stdout = ""
  let stderr = ""
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk))
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
  const exited = new Promise<Exit>((resolve) => {
    child.on("exit", (code, signal) => {
      running.delete(child)
      resolve({ code, signal })
    })
  })
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

/** Fails after `ms` with what the process printed so far. */
export const within = <A>(promise: Promise<A>, ms: number, what: string, run: Cli): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${what}: not within ${ms} ms\nstdout: ${run.stdout()}\nstderr: ${run.stderr()}`)),
      ms
    )
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      }
    )
  })

/** Waits for `listening on http://127.0.0.1:PORT` and returns the URL. */
export const listening = (run: Cli, ms?: number): Promise<string> =>
  listeningOn(run, /^listening on (http:\/\/127\.0\.0\.1:[1-9]\d*)$/m, ms)

/** Waits for a `listening on ...` line matching `pattern` and returns its first group. */
export const listeningOn = (run: Cli, pattern: RegExp, ms = 10_000): Promise<string> =>
  within(
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const match = pattern.exec(run.stdout())
        if (match !== null) resolve(match[1])
      }
      run.child.stdout?.on("data", check)
      check()
      void run.exited.then((exit) => reject(new Error(`exited (${exit.code}) before listening: ${run.stderr()}`)))
    }),
    ms,
    "listening line",
    run
  )

/** The exit of a process that is expected to stop on its own. */
export const exitOf = (run: Cli, ms = 10_000): Promise<Exit> => within(run.exited, ms, "exit", run)

export const text = async (url: string): Promise<string> => (await fetch(url)).text()

export const connectionRefused = (url: string): Promise<boolean> =>
  new Promise((resolve) => {
    const { hostname, port } = new URL(url)
    const socket = Net.connect({ host: hostname, port: Number(port) })
    socket.on("connect", () => {
      socket.destroy()
      resolve(false)
    })
    socket.on("error", () => resolve(true))
  })
