/**
 * The accept queue of a shared listening socket: connections the kernel has completed that no
 * worker has accepted yet (uWSGI's "backlog" spawn signal). With dispatch `shared` the primary
 * accepts nothing, so it cannot see a worker's queue of requests, but it can see this one grow
 * when every worker is too busy to accept: Linux gives a listening TCP socket's queue length as
 * its `rx_queue` in /proc/net/tcp and /proc/net/tcp6, found by the socket's inode.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs"

/**
 * A reader of the accept queue's length of the listening socket `fd` (this process's), or
 * undefined where there is none to read: not Linux, not a TCP socket (unix sockets show no
 * queue), or not found.
 *
 * @since 0.1.0
 * @category constructors
 */
export const acceptQueueOf = (fd: number): (() => number) | undefined => {
  let inode: string
  try {
    const link = Fs.readlinkSync(`/proc/self/fd/${fd}`)
    const match = /^socket:\[(\d+)\]$/.exec(link)
    if (match === null) return undefined
    inode = match[1]
  } catch {
    // No /proc (not Linux): the pool sizes on what the workers report.
    return undefined
  }
  const read = (): number | undefined => {
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      const length = queueIn(Fs.readFileSync(table, "latin1"), inode)
      if (length !== undefined) return length
    }
    return undefined
  }
  if (read() === undefined) return undefined
  return () => read() ?? 0
}

/**
 * The rx_queue of the LISTEN socket with `inode` in a /proc/net/tcp table:
 * `sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode ...`, numbers in hex.
 *
 * @since 0.1.0
 */
export const queueIn = (table: string, inode: string): number | undefined => {
  for (const line of table.split("\n")) {
    const fields = line.trim().split(/\s+/)
    // 0A: TCP_LISTEN
    if (fields.length < 10 || fields[9] !== inode || fields[3] !== "0A") continue
    const queues = fields[4].split(":")
    return Number.parseInt(queues[1] ?? "0", 16)
  }
  return undefined
}
