/**
 * Access log lines: Common Log Format, Combined Log Format (Apache/nginx), or a JSON record.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs"

/**
 * What one access log line records.
 *
 * @since 0.1.0
 * @category models
 */
export interface AccessRecord {
  readonly remoteAddress: string | undefined
  /** The client's port (JSON records only; Common and Combined Log Format have no field for it). */
  readonly remotePort: number | undefined
  /** When the request head was received (ms since the epoch). */
  readonly time: number
  /** Empty for a request refused before its request line was understood. */
  readonly method: string
  /** The request-target as received. */
  readonly target: string
  readonly protocol: string
  /** 0 when no response was sent (the client went away first). */
  readonly status: number
  /** Response body bytes, when known. */
  readonly bytes: number | undefined
  readonly referer: string | undefined
  readonly userAgent: string | undefined
  /** From head received to response done, in seconds. */
  readonly duration: number
}

/**
 * @since 0.1.0
 * @category models
 */
export type AccessLogFormat = "common" | "combined" | "json"

const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const pad = (n: number) => (n < 10 ? `0${n}` : `${n}`)

/** CLF time, e.g. `10/Oct/2000:13:55:36 +0000` (logged in UTC). */
const clfTime = (ms: number): string => {
  const d = new Date(ms)
  return `${pad(d.getUTCDate())}/${months[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad(d.getUTCHours())}:${pad(
    d.getUTCMinutes()
  )}:${pad(d.getUTCSeconds())} +0000`
}

/** Escapes `"` and `\` and controls in a quoted field, so a request cannot forge log lines. */
const escapeField = (value: string): string => {
  let out = ""
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === 0x22 || c === 0x5c) out += `\\${value[i]}`
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, "0")}`
    else out += value[i]
  }
  return out
}

const quoted = (value: string | undefined): string => (value === undefined ? '"-"' : `"${escapeField(value)}"`)

/** The request line; unknown (`"-"`) for a request refused before it could be read. */
const requestLine = (r: AccessRecord): string | undefined =>
  r.method === "" ? undefined : `${r.method} ${r.target} ${r.protocol}`

const common = (r: AccessRecord): string =>
  `${r.remoteAddress ?? "-"} - - [${clfTime(r.time)}] ${quoted(requestLine(r))} ${
    r.status === 0 ? "-" : r.status
  } ${r.bytes === undefined || r.bytes === 0 ? "-" : r.bytes}`

/**
 * Formats a record. JSON records carry the same fields with an ISO time.
 *
 * @since 0.1.0
 */
export const formatAccess = (format: AccessLogFormat, r: AccessRecord): string => {
  switch (format) {
    case "common":
      return common(r)
    case "combined":
      return `${common(r)} ${quoted(r.referer)} ${quoted(r.userAgent)}`
    case "json":
      return JSON.stringify({
        time: new Date(r.time).toISOString(),
        remote: r.remoteAddress ?? null,
        remotePort: r.remotePort ?? null,
        method: r.method === "" ? null : r.method,
        target: r.method === "" ? null : r.target,
        protocol: r.method === "" ? null : r.protocol,
        status: r.status,
        bytes: r.bytes ?? null,
        referer: r.referer ?? null,
        userAgent: r.userAgent ?? null,
        duration: r.duration
      })
  }
}

/** The sinks writing to files, which `reopenAccessLogs` reopens. */
const fileSinks = new Set<AccessLogSink>()

/**
 * Reopens every access log file of this process (a prefork worker told to by its primary).
 *
 * @since 0.1.0
 */
export const reopenAccessLogs = (): void => {
  for (const sink of fileSinks) sink.reopen()
}

/**
 * Where access log lines go: standard output, or a file opened for appending (several processes
 * may append to one: each write is one `write(2)` of whole lines to a file opened with O_APPEND).
 * Lines are queued and written together once the current batch of I/O callbacks is done: one
 * system call for all the requests a turn of the event loop completes, and none of them lost at
 * a stop (`close`) or an exit (written then, synchronously).
 *
 * @since 0.1.0
 * @category models
 */
export class AccessLogSink {
  private readonly path: string | undefined
  private readonly onError: (error: Error) => void
  private fd: number | undefined
  private closed = false
  /** Standard output failing (EPIPE: the reader went away) is an error event, not a throw. */
  private readonly onStdoutError = (error: Error) => this.onError(error)
  private queued: Array<string> = []
  private scheduled = false
  private readonly onExit = () => this.flush()
  private readonly flushSoon = () => {
    this.scheduled = false
    this.flush()
  }

  /**
   * Opens the sink: standard output without a `path`. Throws when the file cannot be opened.
   * `onError` hears of a write that failed (its lines are dropped, the next write tries again).
   */
  constructor(path: string | undefined, onError: (error: Error) => void) {
    this.path = path
    this.onError = onError
    this.fd = path === undefined ? undefined : Fs.openSync(path, "a", 0o640)
    process.on("exit", this.onExit)
    if (path === undefined) process.stdout.on("error", this.onStdoutError)
    else fileSinks.add(this)
  }

  write(line: string): void {
    if (this.closed) {
      // A request that ended after the stop (an app that would not be interrupted): its line
      // still goes where the others went.
      this.writeClosed(`${line}\n`)
      return
    }
    this.queued.push(line)
    if (!this.scheduled) {
      this.scheduled = true
      setImmediate(this.flushSoon)
    }
  }

  /** Writes what is queued, now. */
  flush(): void {
    if (this.queued.length === 0) return
    const text = `${this.queued.join("\n")}\n`
    const lines = this.queued.length
    this.queued = []
    try {
      // Standard output to a pipe, a file or a terminal is written synchronously on Linux.
      if (this.fd === undefined) process.stdout.write(text)
      else Fs.writeSync(this.fd, text)
    } catch (error) {
      this.onError(new Error(`${lines} lines lost: ${error instanceof Error ? error.message : String(error)}`))
    }
  }

  /**
   * Closes and opens the file again by its path (what logrotate asks with SIGUSR1 after renaming
   * it, as nginx does); lines queued meanwhile go to the old file first.
   */
  reopen(): void {
    if (this.path === undefined || this.fd === undefined) return
    this.flush()
    try {
      const next = Fs.openSync(this.path, "a", 0o640)
      Fs.closeSync(this.fd)
      this.fd = next
    } catch (error) {
      // The old file stays open: lines keep going somewhere rather than nowhere.
      const why = error instanceof Error ? error.message : String(error)
      this.onError(new Error(`cannot reopen ${this.path} (${why}); writing on to the file it had open`))
    }
  }

  private writeClosed(text: string): void {
    try {
      if (this.path === undefined) process.stdout.write(text)
      else Fs.appendFileSync(this.path, text, { mode: 0o640 })
    } catch (error) {
      this.onError(error instanceof Error ? error : new Error(String(error)))
    }
  }

  /** Writes what is queued and closes the file. */
  close(): void {
    this.flush()
    this.closed = true
    process.off("exit", this.onExit)
    process.stdout.off("error", this.onStdoutError)
    fileSinks.delete(this)
    if (this.fd !== undefined) Fs.closeSync(this.fd)
    this.fd = undefined
  }
}
