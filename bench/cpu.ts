/**
 * CPU time of processes from /proc (Linux): the CPU a server and nginx spend per request tells
 * where the time goes when wrk, nginx and the server share the machine's cores.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"

/** USER_HZ: the unit of utime and stime in /proc/PID/stat, 100 on Linux. */
const TICKS_PER_SECOND = 100

/** Whether this system has /proc with per-process CPU times. */
export const procAvailable = (): boolean => existsSync("/proc/self/stat")

/** User and system CPU seconds of a live process (utime and stime, fields 14 and 15 of its stat). */
export const cpuTimes = (pid: number): { readonly user: number; readonly system: number } => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  // The command name (field 2) is in parentheses and may contain spaces: count after its ")".
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return { user: Number(fields[11]) / TICKS_PER_SECOND, system: Number(fields[12]) / TICKS_PER_SECOND }
}

/** User + system CPU seconds of a live process. */
export const cpuSeconds = (pid: number): number => {
  const { user, system } = cpuTimes(pid)
  return user + system
}

/** The direct children of a process (nginx's workers under its master). */
export const childPids = (pid: number): Array<number> =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter((word) => word !== "")
    .map(Number)

/** The children of every thread of a process (a child belongs to the thread that forked it). */
export const allChildPids = (pid: number): Array<number> =>
  readdirSync(`/proc/${pid}/task`)
    .flatMap((task) => {
      try {
        return readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/)
      } catch {
        return [] // the thread ended meanwhile
      }
    })
    .filter((word) => word !== "")
    .map(Number)
    .sort((a, b) => a - b)

/**
 * CPU seconds of a live process to the nanosecond: the sum over its threads of the scheduler's
 * run time (/proc/PID/task/TID/schedstat). utime and stime count 10 ms ticks, too coarse for a
 * process that spends a few ms over a run (a prefork primary); `cpuSeconds` without schedstat.
 */
export const preciseCpuSeconds = (pid: number): number => {
  if (!existsSync(`/proc/${pid}/schedstat`)) return cpuSeconds(pid)
  let ns = 0
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0])
    } catch {
      // the thread ended meanwhile: its time is lost (Node's threads live as long as the process)
    }
  }
  return ns / 1e9
}
