/**
 * Access logs (issue 3, item 9): one line per request through Effect's Logger in Common or
 * Combined Log Format or as JSON, nothing with "off", and header values escaped so a request
 * cannot forge log lines. Also `formatAccess` on its own.
 */

import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Logger } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import type { AccessLogFormat } from "../../src/index.ts"
import { type AccessRecord, formatAccess } from "../../src/stats/AccessLog.ts"
import { rawExchange, request } from "../helpers/raw.ts"
import { serveLayer } from "../helpers/server.ts"

interface Logged {
  readonly level: string
  readonly message: ReadonlyArray<unknown>
}

/** The app answers `/empty` with 204 and everything else with a 11-byte body. */
const app = Effect.gen(function* () {
  const request = yield* HttpServerRequest
  if (request.url === "/empty") return HttpServerResponse.empty({ status: 204 })
  return HttpServerResponse.text("hello world")
})

/** Serves the app with `accessLog` and a Logger that records what is logged. */
const serveLogged = (accessLog: AccessLogFormat | "off") =>
  Effect.gen(function* () {
    const logged: Array<Logged> = []
    const capture = Logger.make<unknown, void>((options) => {
      logged.push({
        level: options.logLevel,
        message: Array.isArray(options.message) ? options.message : [options.message]
      })
    })
    const { port } = yield* serveLayer(HttpServer.serve(app).pipe(Layer.provide(Logger.layer([capture]))), {
      accessLog
    })
    return { port, logged }
  })

/** Waits (up to 5 s) for `n` log entries, then returns the messages as single strings. */
const lines = (logged: ReadonlyArray<Logged>, n: number) =>
  Effect.gen(function* () {
    const until = performance.now() + 5_000
    while (logged.length < n && performance.now() < until) yield* Effect.sleep(10)
    expect(logged).toHaveLength(n)
    return logged.map((entry) => {
      expect(entry.level).toBe("Info")
      expect(entry.message).toHaveLength(1)
      const [line] = entry.message
      if (typeof line !== "string") throw new Error(`expected a string message, got ${typeof line}`)
      return line
    })
  })

/** Whether `text` has a control character (C0 or DEL), which could break or forge a log line. */
const hasControl = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20 || c === 0x7f) return true
  }
  return false
}

const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

/** Parses a CLF time (`10/Oct/2000:13:55:36 +0000`) to ms since the epoch. */
const clfTime = (text: string): number => {
  const match = /^(\d{2})\/([A-Z][a-z]{2})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) \+0000$/.exec(text)
  if (match === null) throw new Error(`not a CLF time: ${text}`)
  const [, day, month, year, hours, minutes, seconds] = match
  return Date.UTC(Number(year), months.indexOf(month), Number(day), Number(hours), Number(minutes), Number(seconds))
}

const clf = /^127\.0\.0\.1 - - \[([^\]]+)\] "GET \/path\?q=1 HTTP\/1\.1" 200 11$/
const browser = [
  "GET /path?q=1 HTTP/1.1",
  "Host: x",
  "User-Agent: Mozilla/5.0 (X11)",
  "Referer: http://example.com/from?a=b",
  "Connection: close"
]

describe("access log through the server", () => {
  it.live("common: CLF with the client address, UTC time, request line, status and body bytes", () =>
    Effect.gen(function* () {
      const { port, logged } = yield* serveLogged("common")
      const before = Date.now()
      const result = yield* rawExchange(port, request(...browser))
      expect(result.responses.map((r) => r.status)).toEqual([200])
      const [line] = yield* lines(logged, 1)
      const match = clf.exec(line)
      expect(match, line).not.toBeNull()
      // whole seconds, when the head arrived
      const time = clfTime(match?.[1] ?? "")
      expect(time).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000)
      expect(time).toBeLessThanOrEqual(Date.now())
    })
  )

  it.live("combined: CLF plus the quoted Referer and User-Agent, '-' when absent", () =>
    Effect.gen(function* () {
      const { port, logged } = yield* serveLogged("combined")
      yield* rawExchange(port, request(...browser))
      yield* rawExchange(port, request("GET /empty HTTP/1.1", "Host: x", "Connection: close"))
      const [withHeaders, without] = yield* lines(logged, 2)
      expect(withHeaders).toMatch(
        /^127\.0\.0\.1 - - \[[^\]]+\] "GET \/path\?q=1 HTTP\/1\.1" 200 11 "http:\/\/example\.com\/from\?a=b" "Mozilla\/5\.0 \(X11\)"$/
      )
      // no body: "-" for the bytes, as Apache logs it
      expect(without).toMatch(/^127\.0\.0\.1 - - \[[^\]]+\] "GET \/empty HTTP\/1\.1" 204 - "-" "-"$/)
    })
  )

  it.live('a request the parser refuses is logged too, with "-" for its request line', () =>
    Effect.gen(function* () {
      const { port, logged } = yield* serveLogged("combined")
      const result = yield* rawExchange(port, "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
      expect(result.responses.map((r) => r.status)).toEqual([400])
      const bytes = result.responses[0].body.length
      const [line] = yield* lines(logged, 1)
      expect(line).toMatch(new RegExp(`^127\\.0\\.0\\.1 - - \\[[^\\]]+\\] "-" 400 ${bytes} "-" "-"$`))
    })
  )

  it.live("json: one JSON record per request with the same fields", () =>
    Effect.gen(function* () {
      const { port, logged } = yield* serveLogged("json")
      const before = Date.now()
      yield* rawExchange(port, request(...browser))
      const [line] = yield* lines(logged, 1)
      expect(line).not.toContain("\n")
      const record: unknown = JSON.parse(line)
      expect(record).toEqual({
        time: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
        remote: "127.0.0.1",
        method: "GET",
        target: "/path?q=1",
        protocol: "HTTP/1.1",
        status: 200,
        bytes: 11,
        referer: "http://example.com/from?a=b",
        userAgent: "Mozilla/5.0 (X11)",
        duration: expect.any(Number)
      })
      if (typeof record !== "object" || record === null || !("time" in record) || !("duration" in record)) {
        throw new Error("expected a record")
      }
      const time = Date.parse(String(record.time))
      expect(time).toBeGreaterThanOrEqual(before)
      expect(time).toBeLessThanOrEqual(Date.now())
      expect(record.duration).toBeGreaterThanOrEqual(0)
      expect(record.duration).toBeLessThan(5)
    })
  )

  it.live("one line per request on a keep-alive connection, in order", () =>
    Effect.gen(function* () {
      const { port, logged } = yield* serveLogged("common")
      const result = yield* rawExchange(
        port,
        request("GET /a HTTP/1.1", "Host: x") +
          request("HEAD /b HTTP/1.1", "Host: x") +
          request("GET /c HTTP/1.1", "Host: x", "Connection: close"),
        { headIndexes: [1] }
      )
      expect(result.responses.map((r) => r.status)).toEqual([200, 200, 200])
      const logLines = yield* lines(logged, 3)
      expect(logLines.map((line) => line.replace(/\[[^\]]+\]/, "[time]"))).toEqual([
        '127.0.0.1 - - [time] "GET /a HTTP/1.1" 200 11',
        // a HEAD response sends no body bytes
        '127.0.0.1 - - [time] "HEAD /b HTTP/1.1" 200 -',
        '127.0.0.1 - - [time] "GET /c HTTP/1.1" 200 11'
      ])
    })
  )

  it.live("off: nothing is logged", () =>
    Effect.gen(function* () {
      const { port, logged } = yield* serveLogged("off")
      const result = yield* rawExchange(port, request(...browser))
      expect(result.responses.map((r) => r.status)).toEqual([200])
      yield* Effect.sleep("200 millis")
      expect(logged).toEqual([])
    })
  )

  it.live("quotes, backslashes and control characters in headers are escaped: one line, no forged fields", () =>
    Effect.gen(function* () {
      const { port, logged } = yield* serveLogged("combined")
      // a tab is a control character allowed inside a field value
      const userAgent = 'evil" 200 0 "-" "forged\\\tx'
      yield* rawExchange(
        port,
        request("GET /path?q=1 HTTP/1.1", "Host: x", `User-Agent: ${userAgent}`, 'Referer: a"b', "Connection: close")
      )
      const [line] = yield* lines(logged, 1)
      expect(line).toMatch(
        /^127\.0\.0\.1 - - \[[^\]]+\] "GET \/path\?q=1 HTTP\/1\.1" 200 11 "a\\"b" "evil\\" 200 0 \\"-\\" \\"forged\\\\\\x09x"$/
      )
      expect(hasControl(line)).toBe(false)
      // each quoted field ends at the first unescaped quote
      const fields = [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1])
      expect(fields).toEqual(["GET /path?q=1 HTTP/1.1", 'a\\"b', 'evil\\" 200 0 \\"-\\" \\"forged\\\\\\x09x'])

      const json = yield* serveLogged("json")
      yield* rawExchange(
        json.port,
        request("GET / HTTP/1.1", "Host: x", `User-Agent: ${userAgent}`, "Connection: close")
      )
      const [record] = yield* lines(json.logged, 1)
      expect(hasControl(record)).toBe(false)
      expect(JSON.parse(record)).toMatchObject({ userAgent })
    })
  )
})

const record: AccessRecord = {
  remoteAddress: "192.0.2.7",
  time: Date.UTC(2000, 9, 10, 13, 55, 36, 789),
  method: "POST",
  target: "/submit?x=1",
  protocol: "HTTP/1.1",
  status: 201,
  bytes: 1234,
  referer: "https://example.org/",
  userAgent: "curl/8.0",
  duration: 0.0125
}

describe("formatAccess", () => {
  it("common: the Apache example's shape, in UTC", () => {
    expect(formatAccess("common", record)).toBe(
      '192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "POST /submit?x=1 HTTP/1.1" 201 1234'
    )
  })

  it("pads day and time fields to two digits and names every month", () => {
    const times = months.map((_, month) => Date.UTC(2024, month, 3, 4, 5, 6))
    expect(times.map((time) => formatAccess("common", { ...record, time }).split(/[[\]]/)[1])).toEqual(
      months.map((month) => `03/${month}/2024:04:05:06 +0000`)
    )
  })

  it("combined: adds the referer and user agent", () => {
    expect(formatAccess("combined", record)).toBe(
      '192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "POST /submit?x=1 HTTP/1.1" 201 1234 "https://example.org/" "curl/8.0"'
    )
  })

  it("uses '-' for what is unknown: address, referer, user agent, no response, no bytes", () => {
    const unknown: AccessRecord = {
      ...record,
      remoteAddress: undefined,
      status: 0,
      bytes: undefined,
      referer: undefined,
      userAgent: undefined
    }
    expect(formatAccess("combined", unknown)).toBe(
      '- - - [10/Oct/2000:13:55:36 +0000] "POST /submit?x=1 HTTP/1.1" - - "-" "-"'
    )
    expect(formatAccess("common", { ...record, bytes: 0 })).toMatch(/ 201 -$/)
  })

  it("escapes quotes, backslashes and control characters in every quoted field", () => {
    const hostile: AccessRecord = {
      ...record,
      target: '/a"b\\c\r\nd',
      referer: 'x"\n127.0.0.1 - - [forged]',
      userAgent: "\x00\x1b[31m\x7f"
    }
    const line = formatAccess("combined", hostile)
    expect(line).toBe(
      '192.0.2.7 - - [10/Oct/2000:13:55:36 +0000] "POST /a\\"b\\\\c\\x0d\\x0ad HTTP/1.1" 201 1234 "x\\"\\x0a127.0.0.1 - - [forged]" "\\x00\\x1b[31m\\x7f"'
    )
    expect(hasControl(line)).toBe(false)
  })

  it('a refused request (no method) has "-" as its request line, and null fields in JSON', () => {
    const refused = {
      ...record,
      method: "",
      target: "",
      protocol: "",
      status: 400,
      referer: undefined,
      userAgent: undefined
    }
    expect(formatAccess("common", refused)).toMatch(/\] "-" 400 /)
    const json: unknown = JSON.parse(formatAccess("json", refused))
    expect(json).toMatchObject({ method: null, target: null, protocol: null, status: 400 })
  })

  it("json: every field, with an ISO time and null for what is unknown", () => {
    expect(JSON.parse(formatAccess("json", record))).toEqual({
      time: "2000-10-10T13:55:36.789Z",
      remote: "192.0.2.7",
      method: "POST",
      target: "/submit?x=1",
      protocol: "HTTP/1.1",
      status: 201,
      bytes: 1234,
      referer: "https://example.org/",
      userAgent: "curl/8.0",
      duration: 0.0125
    })
    const unknown = formatAccess("json", {
      ...record,
      remoteAddress: undefined,
      bytes: undefined,
      referer: undefined,
      userAgent: undefined
    })
    expect(JSON.parse(unknown)).toMatchObject({ remote: null, bytes: null, referer: null, userAgent: null })
  })

  it("json: hostile values stay inside their strings and the record stays on one line", () => {
    const line = formatAccess("json", { ...record, userAgent: '"}\n{"status":500', target: "/\u2028x" })
    expect(line).not.toContain("\n")
    const parsed: unknown = JSON.parse(line)
    expect(parsed).toMatchObject({ userAgent: '"}\n{"status":500', target: "/\u2028x", status: 201 })
  })
})
