/**
 * Access log lines: Common Log Format, Combined Log Format (Apache/nginx), or a JSON record.
 *
 * @since 0.1.0
 */

/**
 * What one access log line records.
 *
 * @since 0.1.0
 * @category models
 */
export interface AccessRecord {
  readonly remoteAddress: string | undefined
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
