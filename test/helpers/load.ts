/**
 * Load for the prefork tests: keep-alive clients that send GET requests back to back and record
 * every answer of test/fixtures/prefork-app.ts (`PID VERSION`), so a test can count the requests
 * that failed (anything but a complete 200 with that body) and see which workers answered.
 */
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Os from "node:os"
import * as Path from "node:path"

/** One answer: which client got it, from which worker, when (performance.now()) and how fast. */
export interface Answer {
  readonly client: number
  readonly pid: number
  readonly version: string
  readonly at: number
  /** Milliseconds from sending the request to the end of the answer. */
  readonly ms: number
}

/** A failed request: which client sent it (and its id, with `trace`), what went wrong, and when. */
export interface Failure {
  readonly client: number
  readonly id: number
  /** An error code or message, or the status and body. */
  readonly what: string
  readonly at: number
}

export interface LoadReport {
  readonly answers: ReadonlyArray<Answer>
  readonly failures: ReadonlyArray<Failure>
  /** With `trace`: requests that got no answer and were sent again (once). */
  readonly retried: ReadonlyArray<Failure>
  /** With `trace`, once the load is done: the retried requests that had reached the app (none may). */
  readonly retriedInApp: ReadonlyArray<Failure>
}

export interface Load {
  /** The report so far. */
  readonly report: LoadReport
  /** Stops sending (requests in flight complete) and gives the final report. */
  readonly stop: () => Promise<LoadReport>
  /** Completes once `requests` requests are done (when given), or after `stop`. */
  readonly done: Promise<LoadReport>
}

export interface LoadOptions {
  /** Concurrent keep-alive clients, one connection each at a time. */
  readonly clients: number
  /** How many requests in all (default: until `stop`). */
  readonly requests?: number
  /** A request with no complete answer within this long fails (default 10 s). */
  readonly timeoutMs?: number
  /** Pause between one client's requests (default none). */
  readonly pauseMs?: number
  /** How long the app takes to answer, so requests are in progress when workers stop (default 0). */
  readonly appMs?: number
  /** A connection per request instead of kept-alive ones (default false), as nginx's to SCGI. */
  readonly connectionPerRequest?: boolean
  /**
   * Send `/pid?trace=FILE&id=N`, the app noting each id it starts in a temporary FILE, and send
   * again, once, a request that got no answer (its connection closed or reset first, or nginx's
   * 502 for the same upstream): `retriedInApp` then tells which of those had reached the app.
   *
   * This stands in for two known server bugs, each with a test that is known to fail in
   * pool-suite.ts: a stopping worker closes the connections whose next request it has not read
   * yet (kept-alive ones, and new ones). Those requests never reach the app and a client can send
   * them again; a request the app had started (one a worker dropped while running it) may not be.
   * Without `trace`, every request that gets no answer fails.
   */
  readonly trace?: boolean
}

const answer = /^(\d+) (\S+)$/

/** A request's error, and whether any of a response had come, and on which kind of connection. */
interface RequestError extends NodeJS.ErrnoException {
  responded?: boolean
  /** It went out on a kept-alive connection that had served a request before. */
  reused?: boolean
}

const get = (agent: Http.Agent, url: string, timeoutMs: number): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    let responded = false
    const request = Http.get(url, { agent }, (response) => {
      responded = true
      let body = ""
      response.setEncoding("utf8")
      response.on("data", (chunk: string) => (body += chunk))
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body }))
      response.on("error", reject)
      // a response cut short ends with "aborted" rather than "end"
      response.on("aborted", () => reject(new Error("response aborted")))
    })
    request.setTimeout(timeoutMs, () => request.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    request.on("error", (error: RequestError) => {
      error.responded = responded
      error.reused = request.reusedSocket
      reject(error)
    })
  })

const describe = (error: RequestError): string =>
  `${error.code ?? error.message}${error.reused === true ? " (kept-alive connection)" : " (new connection)"}`

/** Starts `clients` clients against `base` (`http://127.0.0.1:PORT`), GETting /pid. */
export const startLoad = (base: string, options: LoadOptions): Load => {
  const answers: Array<Answer> = []
  const failures: Array<Failure> = []
  const retried: Array<Failure> = []
  const traceFile = options.trace === true ? Path.join(Os.tmpdir(), `prefork-trace-${process.pid}-${Date.now()}`) : ""
  const retriedInApp: Array<Failure> = []
  const report: LoadReport = { answers, failures, retried, retriedInApp }
  const readTrace = () => {
    if (traceFile === "" || !Fs.existsSync(traceFile)) return
    const started = new Set(Fs.readFileSync(traceFile, "utf8").split("\n"))
    Fs.rmSync(traceFile, { force: true })
    retriedInApp.push(...retried.filter((failure) => started.has(String(failure.id))))
  }
  const timeoutMs = options.timeoutMs ?? 10_000
  let issued = 0
  let ids = 0
  let stopped = false
  const once = async (agent: Http.Agent, client: number, retry: boolean): Promise<void> => {
    const id = ++ids
    const query = new URLSearchParams()
    if (options.appMs !== undefined) query.set("ms", String(options.appMs))
    if (traceFile !== "") {
      query.set("trace", traceFile)
      query.set("id", String(id))
    }
    const url = query.size === 0 ? `${base}/pid` : `${base}/pid?${query}`
    const sent = performance.now()
    let failure: Failure
    let unanswered: boolean
    try {
      const { status, body } = await get(agent, url, timeoutMs)
      const match = answer.exec(body)
      const at = performance.now()
      if (status === 200 && match !== null) {
        answers.push({ client, pid: Number(match[1]), version: match[2], at, ms: at - sent })
        return
      }
      failure = { client, id, what: `status ${status}: ${body.slice(0, 200)}`, at }
      unanswered = status === 502
    } catch (error) {
      failure = { client, id, what: describe(error as RequestError), at: performance.now() }
      unanswered = (error as RequestError).responded === false && (error as RequestError).code !== undefined
    }
    if (retry && unanswered) {
      retried.push(failure)
      return once(agent, client, false)
    }
    failures.push(failure)
  }
  const client = async (_: unknown, client: number) => {
    const agent = new Http.Agent({ keepAlive: options.connectionPerRequest !== true, maxSockets: 1 })
    try {
      while (!stopped && (options.requests === undefined || issued < options.requests)) {
        issued++
        await once(agent, client, traceFile !== "")
        if (options.pauseMs !== undefined) await new Promise((resolve) => setTimeout(resolve, options.pauseMs))
      }
    } finally {
      agent.destroy()
    }
  }
  const done = Promise.all(Array.from({ length: options.clients }, client)).then(() => {
    readTrace()
    return report
  })
  return {
    report,
    done,
    stop: () => {
      stopped = true
      return done
    }
  }
}

/** How many answers each worker gave. */
export const answersByPid = (answers: ReadonlyArray<Answer>): Map<number, number> => {
  const counts = new Map<number, number>()
  for (const { pid } of answers) counts.set(pid, (counts.get(pid) ?? 0) + 1)
  return counts
}

/** The slowest answer, in milliseconds. */
export const slowest = (answers: ReadonlyArray<Answer>): number => Math.max(0, ...answers.map((a) => a.ms))
