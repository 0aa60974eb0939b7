/**
 * Health probes: how a manager tells that what it runs is ready and healthy. A TCP or unix
 * connect, an HTTP or SCGI request with an expected status, a line in the process's output, or
 * any Effect; combined with `all` and `any`.
 *
 * A probe is prepared once per process start, in that process's scope, and the check it returns
 * is what `health` and `readyWait` run, as often as they like. Preparing is what lets a log-line
 * probe watch the output from the first line on and remember that it matched.
 *
 * @since 0.1.0
 */
import { Data, type Duration, Effect, type Scope } from "effect"
import { describeEndpoint, type Endpoint } from "./Endpoint.ts"
import { type ExchangeFailure, exchange } from "./Exchange.ts"

/**
 * A failed health check: which probe, and why.
 *
 * @since 0.1.0
 * @category errors
 */
export class ProbeFailed extends Data.TaggedError("ProbeFailed")<{
  readonly probe: string
  readonly detail: string
  readonly cause?: unknown
}> {
  override get message(): string {
    return `${this.probe}: ${this.detail}`
  }
}

/**
 * Which output stream a line came from.
 *
 * @since 0.1.0
 * @category models
 */
export type OutputSource = "stdout" | "stderr"

/**
 * What a probe can see of the process it checks: its output, line by line.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProcessOutput {
  /** Calls `listener` with each line the process writes from now on, until the scope closes. */
  readonly onLine: (listener: (line: string, source: OutputSource) => void) => Effect.Effect<void, never, Scope.Scope>
}

/**
 * A health probe.
 *
 * @since 0.1.0
 * @category models
 */
export interface Probe {
  /** For messages: "tcp 127.0.0.1:8080", "http GET /health at 127.0.0.1:8080". */
  readonly description: string
  /** Prepares the check for one run of a process; the check fails with `ProbeFailed`. */
  readonly prepare: (output: ProcessOutput) => Effect.Effect<Effect.Effect<void, ProbeFailed>, never, Scope.Scope>
}

/**
 * A probe from a check that needs no preparation.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (description: string, check: Effect.Effect<void, ProbeFailed>): Probe => ({
  description,
  prepare: () => Effect.succeed(check)
})

const fromExchange =
  (probe: string) =>
  (failure: ExchangeFailure): ProbeFailed =>
    new ProbeFailed({ probe, detail: failure.detail, cause: failure.cause ?? failure.code })

/**
 * Options shared by the socket probes.
 *
 * @since 0.1.0
 * @category models
 */
export interface SocketProbeOptions {
  /** How long one attempt may take (default 1 s). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * Healthy when a connection to `endpoint` (TCP or unix) is accepted.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (endpoint: Endpoint, options: SocketProbeOptions = {}): Probe => {
  const description = `connect ${describeEndpoint(endpoint)}`
  return make(
    description,
    exchange(endpoint, { timeout: options.timeout }).pipe(Effect.asVoid, Effect.mapError(fromExchange(description)))
  )
}

/**
 * Healthy when `host`:`port` accepts a TCP connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const tcp = (host: string, port: number, options: SocketProbeOptions = {}): Probe =>
  connect({ host, port }, options)

/**
 * Healthy when the unix socket at `path` accepts a connection.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unix = (path: string, options: SocketProbeOptions = {}): Probe => connect({ path }, options)

/**
 * Options of the request probes.
 *
 * @since 0.1.0
 * @category models
 */
export interface RequestProbeOptions extends SocketProbeOptions {
  /** The request path (default "/"). */
  readonly path?: string | undefined
  /** The Host header (HTTP) or SERVER_NAME (SCGI); default "localhost". */
  readonly host?: string | undefined
  /** Whether the status means healthy (default 200-399). */
  readonly expect?: ((status: number) => boolean) | undefined
}

const defaultExpect = (status: number): boolean => status >= 200 && status < 400

/** The whole head, or at least the first line, has arrived. */
const headSeen = (received: string): boolean => received.includes("\r\n\r\n") || received.includes("\n\n")

const checkStatus = (
  description: string,
  expect: (status: number) => boolean,
  status: number | undefined,
  received: string
): Effect.Effect<void, ProbeFailed> => {
  if (status === undefined) {
    return Effect.fail(
      new ProbeFailed({ probe: description, detail: `unreadable response: ${JSON.stringify(received.slice(0, 80))}` })
    )
  }
  return expect(status)
    ? Effect.void
    : Effect.fail(new ProbeFailed({ probe: description, detail: `unexpected status ${status}` }))
}

/**
 * What an HTTP server answered: the status and the whole response head (status line and
 * headers, up to the blank line).
 *
 * @since 0.1.0
 * @category models
 */
export interface HttpAnswer {
  readonly status: number
  readonly head: string
}

/**
 * One GET of `path` at `endpoint` (TCP or unix), written by hand over a socket with
 * `Connection: close`; reads the response head only. Fails with `ProbeFailed` (named `probe`,
 * default "http GET PATH at ENDPOINT") when the exchange fails or the answer is not HTTP.
 *
 * @since 0.1.0
 * @category requests
 */
export const httpGet = (
  endpoint: Endpoint,
  path: string,
  options: {
    /** The Host header (default "localhost"). */
    readonly host?: string | undefined
    readonly timeout?: Duration.Input | undefined
    /** The name in failures. */
    readonly probe?: string | undefined
  } = {}
): Effect.Effect<HttpAnswer, ProbeFailed> => {
  const probe = options.probe ?? `http GET ${path} at ${describeEndpoint(endpoint)}`
  const request = `GET ${path} HTTP/1.1\r\nHost: ${options.host ?? "localhost"}\r\nConnection: close\r\n\r\n`
  return exchange(endpoint, { request, timeout: options.timeout, enough: headSeen }).pipe(
    Effect.mapError(fromExchange(probe)),
    Effect.flatMap((received) => {
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(received)
      if (match === null) {
        return Effect.fail(
          new ProbeFailed({ probe, detail: `unreadable response: ${JSON.stringify(received.slice(0, 80))}` })
        )
      }
      const end = received.search(/\r?\n\r?\n/)
      return Effect.succeed({ status: Number(match[1]), head: end === -1 ? received : received.slice(0, end) })
    })
  )
}

/**
 * Healthy when a GET of `options.path` at `endpoint` (TCP or unix) answers a status that
 * `options.expect` accepts (`httpGet`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const http = (endpoint: Endpoint, options: RequestProbeOptions = {}): Probe => {
  const path = options.path ?? "/"
  const description = `http GET ${path} at ${describeEndpoint(endpoint)}`
  const expect = options.expect ?? defaultExpect
  return make(
    description,
    httpGet(endpoint, path, { host: options.host, timeout: options.timeout, probe: description }).pipe(
      Effect.flatMap((answer) => checkStatus(description, expect, answer.status, answer.head))
    )
  )
}

/**
 * An SCGI request (the spec's netstring of NUL-separated headers, CONTENT_LENGTH first, then
 * SCGI=1), without a body.
 *
 * @since 0.1.0
 * @category requests
 */
export const scgiRequest = (options: { readonly path: string; readonly host: string }): Uint8Array => {
  const [pathOnly, query = ""] = options.path.split("?", 2)
  const headers: ReadonlyArray<readonly [string, string]> = [
    ["CONTENT_LENGTH", "0"],
    ["SCGI", "1"],
    ["REQUEST_METHOD", "GET"],
    ["REQUEST_URI", options.path],
    ["PATH_INFO", pathOnly],
    ["QUERY_STRING", query],
    ["SCRIPT_NAME", ""],
    ["SERVER_NAME", options.host],
    ["SERVER_PORT", "80"],
    ["SERVER_PROTOCOL", "HTTP/1.1"],
    ["REMOTE_ADDR", "127.0.0.1"],
    ["HTTP_HOST", options.host]
  ]
  const body = Buffer.from(headers.map(([name, value]) => `${name}\0${value}\0`).join(""), "latin1")
  return Buffer.concat([Buffer.from(`${body.length}:`, "latin1"), body, Buffer.from(",", "latin1")])
}

/**
 * The status of an SCGI (CGI-style) response head: a `Status:` header, or an `HTTP/1.x` status
 * line some servers send, or 200 when the head has neither (CGI's rule).
 */
const scgiStatus = (received: string): number | undefined => {
  const line = /^HTTP\/1\.[01] (\d{3})/.exec(received)
  if (line !== null) return Number(line[1])
  const end = received.search(/\r?\n\r?\n/)
  const head = end === -1 ? received : received.slice(0, end)
  const header = /(?:^|\n)status:[ \t]*(\d{3})/i.exec(head)
  if (header !== null) return Number(header[1])
  return end === -1 ? undefined : 200
}

/**
 * Healthy when an SCGI GET of `options.path` at `endpoint` (TCP or unix) answers a status that
 * `options.expect` accepts.
 *
 * @since 0.1.0
 * @category constructors
 */
export const scgi = (endpoint: Endpoint, options: RequestProbeOptions = {}): Probe => {
  const path = options.path ?? "/"
  const description = `scgi GET ${path} at ${describeEndpoint(endpoint)}`
  const request = scgiRequest({ path, host: options.host ?? "localhost" })
  const expect = options.expect ?? defaultExpect
  return make(
    description,
    exchange(endpoint, { request, timeout: options.timeout, enough: headSeen }).pipe(
      Effect.mapError(fromExchange(description)),
      Effect.flatMap((received) => checkStatus(description, expect, scgiStatus(received), received))
    )
  )
}

/**
 * Healthy once the process has written a line matching `pattern` (on `source`, default either)
 * since it started. Checks are then instant: for programs that say when they are ready.
 *
 * @since 0.1.0
 * @category constructors
 */
export const logLine = (pattern: RegExp, options: { readonly source?: OutputSource | undefined } = {}): Probe => {
  const description = `log line ${pattern}${options.source === undefined ? "" : ` on ${options.source}`}`
  return {
    description,
    prepare: (output) =>
      Effect.gen(function* () {
        let seen = false
        yield* output.onLine((line, source) => {
          if (!seen && (options.source === undefined || options.source === source)) {
            // A global or sticky pattern keeps its position between tests: start each line afresh.
            pattern.lastIndex = 0
            seen = pattern.test(line)
          }
        })
        return Effect.suspend(() =>
          seen ? Effect.void : Effect.fail(new ProbeFailed({ probe: description, detail: "no matching line yet" }))
        )
      })
  }
}

/**
 * Any Effect as a probe: healthy when it succeeds. Its failure becomes the `ProbeFailed` cause.
 *
 * @since 0.1.0
 * @category constructors
 */
export const effect = <A, E>(description: string, check: Effect.Effect<A, E>): Probe =>
  make(
    description,
    check.pipe(
      Effect.asVoid,
      Effect.mapError((cause) => new ProbeFailed({ probe: description, detail: String(cause), cause }))
    )
  )

/**
 * Healthy when every probe is (checked concurrently); fails with the first failure.
 *
 * @since 0.1.0
 * @category combinators
 */
export const all = (probes: ReadonlyArray<Probe>): Probe => ({
  description: `all(${probes.map((probe) => probe.description).join(", ")})`,
  prepare: (output) =>
    Effect.forEach(probes, (probe) => probe.prepare(output)).pipe(
      Effect.map((checks) => Effect.all(checks, { concurrency: "unbounded", discard: true }))
    )
})

/**
 * Healthy when at least one probe is (checked concurrently); fails with the failures of all.
 *
 * @since 0.1.0
 * @category combinators
 */
export const any = (probes: ReadonlyArray<Probe>): Probe => {
  const description = `any(${probes.map((probe) => probe.description).join(", ")})`
  return {
    description,
    prepare: (output) =>
      Effect.forEach(probes, (probe) => probe.prepare(output)).pipe(
        Effect.map((checks) =>
          // Flipped, a healthy check is a failure that ends the forEach (interrupting the rest).
          Effect.forEach(checks, (check) => Effect.flip(check), { concurrency: "unbounded" }).pipe(
            Effect.matchEffect({
              onFailure: () => Effect.void,
              onSuccess: (failures) =>
                Effect.fail(
                  new ProbeFailed({
                    probe: description,
                    detail: failures.map((failure) => failure.message).join("; "),
                    cause: failures
                  })
                )
            })
          )
        )
      )
  }
}
