/**
 * Child-process bookkeeping for the benchmark: every process the harness starts (servers, wrk,
 * autocannon) is tracked here so that any exit path (normal end, error, Ctrl-C, SIGTERM) can
 * kill it and leave no orphans behind; temporary directories registered here are removed then too.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { rmSync } from "node:fs"

const live = new Set<ChildProcess>()
let shuttingDown = false

/**
 * From now on every newly tracked child is killed at once: after Ctrl-C the terminal also
 * interrupts wrk, which then exits normally, and the benchmark loop would otherwise start the next run.
 */
export const beginShutdown = (): void => {
  shuttingDown = true
}

/** Registers a child so `killAllSync` reaches it; it unregisters itself when it exits. */
export const track = (child: ChildProcess): ChildProcess => {
  if (shuttingDown) child.kill("SIGKILL")
  live.add(child)
  child.once("exit", () => live.delete(child))
  return child
}

const hasExited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null

/** Resolves once the child has exited, or false after `timeoutMs`. */
const waitForExit = (child: ChildProcess, timeoutMs: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (hasExited(child)) return resolve(true)
    const timer = setTimeout(() => resolve(false), timeoutMs)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve(true)
    })
  })

/**
 * SIGTERM first so servers can shut down normally, SIGKILL after `graceMs`: Effect's NodeHttpServer
 * waits up to 20 s for open connections on shutdown, which a benchmark need not sit through.
 */
export const terminate = async (child: ChildProcess, graceMs = 3000): Promise<void> => {
  if (hasExited(child)) return
  child.kill("SIGTERM")
  if (await waitForExit(child, graceMs)) return
  child.kill("SIGKILL")
  await waitForExit(child, 1000)
}

/** Terminates every tracked child (graceful first), in parallel. */
export const terminateAll = async (): Promise<void> => {
  await Promise.all([...live].map((child) => terminate(child)))
}

/** Last resort for `process.on("exit")`, where only synchronous work runs: SIGKILL everything. */
export const killAllSync = (): void => {
  for (const child of live) {
    if (!hasExited(child)) child.kill("SIGKILL")
  }
}

const tempDirs = new Set<string>()

/** A temporary directory to remove when the harness exits, whichever way it ends. */
export const removeOnExit = (dir: string): void => {
  tempDirs.add(dir)
}

/**
 * For `process.on("exit")`, after `killAllSync`: removes the registered directories (synchronously,
 * as exit handlers must). A failure is reported, not thrown: the exit code stays the run's.
 */
export const removeTempDirsSync = (): void => {
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch (error) {
      process.stderr.write(`could not remove ${dir}: ${error instanceof Error ? error.message : String(error)}\n`)
    }
  }
  tempDirs.clear()
}

export interface CommandResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to completion, capturing its output; the child is tracked while it runs. */
export const runCommand = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd?: string } = {}
): Promise<CommandResult> =>
  new Promise((resolve, reject) => {
    const child = track(spawn(command, args, { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] }))
    let stdout = ""
    let stderr = ""
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
    })
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
    })
    child.once("error", reject)
    child.once("close", (code) => resolve({ code, stdout, stderr }))
  })
