/**
 * effect-appserver's prefork pool as the prefork scenario (bench/prefork.ts) runs it, and the single
 * process it is compared with: started in a process group of its own, its workers found in /proc
 * (the primary's children), its CPU and each worker's share of the open connections read from
 * /proc. The whole group is killed however the harness ends: normally, on an error, on Ctrl-C.
 */
import type { ChildProcess } from "node:child_process"
import { readdirSync, readFileSync, readlinkSync } from "node:fs"
import { allChildPids, preciseCpuSeconds } from "./cpu.ts"
import { runCommand, terminate } from "./proc.ts"
import { appserverArgs, HOST, type StartedProcess, startProcess, THIS_CHECKOUT } from "./servers.ts"

export type Dispatch = "shared" | "primary"

/** A single process (`workers` 0), or a pool of `workers` in a dispatch mode. */
export interface PoolShape {
  readonly id: string
  /** Name used in tables. */
  readonly label: string
  readonly workers: number
  readonly dispatch: Dispatch | undefined
  /**
   * Not effect-appserver but the limit of its dispatch: bench/peers/limit.ts handing connections
   * to `workers` bare responders (HTTP only), measured only under these loads.
   */
  readonly handoffLimit?: { readonly loads: ReadonlyArray<string> } | undefined
}

export interface Pool {
  readonly shape: PoolShape
  readonly protocol: "http" | "scgi"
  readonly process: StartedProcess
  /** The primary (the single process itself without workers). */
  readonly pid: number
  readonly port: number
}

/** Process groups (by their leader's pid) still to kill when the harness exits. */
const liveGroups = new Set<number>()
let exitHookInstalled = false

const killGroup = (pid: number): void => {
  // -0 would be the harness's own group
  if (!(pid > 0)) return
  try {
    process.kill(-pid, "SIGKILL")
  } catch {
    // already gone
  }
}

const ownGroup = (child: ChildProcess): void => {
  if (!exitHookInstalled) {
    exitHookInstalled = true
    process.on("exit", () => {
      for (const pid of liveGroups) killGroup(pid)
    })
  }
  if (child.pid !== undefined) liveGroups.add(child.pid)
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** The primary's worker processes, in pid order; none for a single process. */
export const workerPids = (pool: Pool): Array<number> => (pool.shape.workers === 0 ? [] : allChildPids(pool.pid))

/** Whether the primary still runs. */
export const poolAlive = (pool: Pool): boolean =>
  pool.process.child.exitCode === null && pool.process.child.signalCode === null

/** SIGTERM to the primary (a graceful stop of its workers), then SIGKILL to whatever is left of its group. */
export const stopPool = async (pool: Pool): Promise<void> => {
  await terminate(pool.process.child)
  killGroup(pool.pid)
  liveGroups.delete(pool.pid)
}

/**
 * `effect-appserver serve examples/echo.ts` on a port of its own (`--port 0`), with `--workers`
 * and `--dispatch` for a pool, and `extra` flags; resolves once it prints its ready line and all
 * its workers are there.
 */
export const startPool = async (
  shape: PoolShape,
  protocol: "http" | "scgi",
  extra: ReadonlyArray<string>,
  timeoutMs: number
): Promise<Pool> => {
  if (shape.handoffLimit !== undefined && (protocol !== "http" || extra.length > 0))
    throw new Error(`${shape.label} serves HTTP only, with no flags`)
  const args =
    shape.handoffLimit !== undefined
      ? ["bench/peers/limit.ts", "--host", HOST, "--port", "0", "--handoff-workers", String(shape.workers)]
      : [
          ...appserverArgs(THIS_CHECKOUT),
          "--host",
          HOST,
          "--port",
          "0",
          ...(protocol === "scgi" ? ["--protocol", "scgi"] : []),
          ...(shape.workers === 0
            ? []
            : ["--workers", String(shape.workers), "--dispatch", shape.dispatch ?? "shared"]),
          ...extra
        ]
  let leader: number | undefined
  const started = await startProcess(`${shape.label} (${protocol})`, args, timeoutMs, undefined, (child) => {
    leader = child.pid
    ownGroup(child)
  }).catch((error: unknown) => {
    if (leader !== undefined) {
      killGroup(leader)
      liveGroups.delete(leader)
    }
    throw error
  })
  const pid = started.child.pid
  if (pid === undefined) {
    await terminate(started.child)
    throw new Error(`${shape.label}: no process id`)
  }
  const pool: Pool = {
    shape,
    protocol,
    process: started,
    pid,
    port: Number(/:(\d+)$/.exec(started.address)?.[1] ?? Number.NaN)
  }
  const expected = `${protocol}://${HOST}:`
  if (!started.address.startsWith(expected) || !Number.isInteger(pool.port)) {
    await stopPool(pool)
    throw new Error(`${shape.label} reported ${started.address}, expected ${expected}PORT`)
  }
  // the ready line comes once the workers serve; their processes are there by then
  for (let waited = 0; workerPids(pool).length < shape.workers; waited += 50) {
    if (waited > 5000) {
      await stopPool(pool)
      throw new Error(`${shape.label}: ${workerPids(pool).length} worker processes, expected ${shape.workers}`)
    }
    await sleep(50)
  }
  return pool
}

/** CPU seconds of the primary and of each worker (by pid) at one moment. */
export interface CpuSnapshot {
  readonly primary: number
  readonly workers: ReadonlyMap<number, number>
}

const cpuOrNaN = (pid: number): number => {
  try {
    return preciseCpuSeconds(pid)
  } catch {
    return Number.NaN // exited
  }
}

export const cpuSnapshot = (pool: Pool): CpuSnapshot => ({
  primary: cpuOrNaN(pool.pid),
  workers: new Map(workerPids(pool).map((pid) => [pid, cpuOrNaN(pid)]))
})

/** CPU seconds spent between two snapshots: the primary's, and each worker's present in both (pid order). */
export const cpuDelta = (
  before: CpuSnapshot,
  after: CpuSnapshot
): {
  readonly primary: number
  readonly workers: ReadonlyArray<{ readonly pid: number; readonly seconds: number }>
} => ({
  primary: after.primary - before.primary,
  workers: [...after.workers]
    .filter(([pid, seconds]) => before.workers.has(pid) && Number.isFinite(seconds))
    .map(([pid, seconds]) => ({ pid, seconds: seconds - (before.workers.get(pid) ?? Number.NaN) }))
    .sort((a, b) => a.pid - b.pid)
})

/**
 * Inodes of the established TCP connections whose local port is `port` (the server's ends), from
 * `ss` (netlink, filtered in the kernel: milliseconds). Without `ss`, from /proc/net/tcp, which
 * lists every socket: after connection-per-request runs that is tens of thousands in TIME_WAIT,
 * and reading it takes most of a second on a busy machine.
 */
const establishedInodes = async (port: number): Promise<Set<number>> => {
  const inodes = new Set<number>()
  try {
    const ss = await runCommand("ss", ["-tnHe", "state", "established", `( sport = :${port} )`])
    if (ss.code === 0) {
      for (const match of ss.stdout.matchAll(/\bino:(\d+)/g)) inodes.add(Number(match[1]))
      return inodes
    }
  } catch {
    // no ss: read the table
  }
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string
    try {
      text = readFileSync(table, "utf8")
    } catch {
      continue
    }
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const fields = line.trim().split(/\s+/)
      if (fields.length < 10 || fields[3] !== "01") continue
      if (Number.parseInt(fields[1].slice(fields[1].lastIndexOf(":") + 1), 16) === port) inodes.add(Number(fields[9]))
    }
  }
  return inodes
}

/** How many of `inodes` a process holds open, from its /proc/PID/fd links (`socket:[INODE]`). */
const heldBy = (pid: number, inodes: ReadonlySet<number>): number => {
  let held = 0
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))
        if (match !== null && inodes.has(Number(match[1]))) held++
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // the process exited
  }
  return held
}

/**
 * The established connections to the pool's port each of its processes holds now: the exact
 * connection split among the workers (and what the primary still holds).
 */
export const connectionSplit = async (
  pool: Pool
): Promise<{
  readonly primary: number
  readonly workers: ReadonlyArray<{ readonly pid: number; readonly connections: number }>
}> => {
  const inodes = await establishedInodes(pool.port)
  return {
    primary: heldBy(pool.pid, inodes),
    workers: workerPids(pool).map((pid) => ({ pid, connections: heldBy(pid, inodes) }))
  }
}
