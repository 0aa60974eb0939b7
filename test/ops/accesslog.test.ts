/**
 * Access logs (issue 3, item 9; issue 12, item 1): one line per request in Common or Combined
 * Log Format or as JSON, byte for byte with nothing around it, written to a file (or standard
 * output), nothing with "off", header values escaped so a request cannot forge log lines; the
 * client's address as its request started; the line of a request answered just before a stop.
 * Also `formatAccess` on its own.
 */

import * as Net from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { type AccessLogFormat, Http1Server } from "../../src/index.ts"
import { type AccessRecord, formatAccess } from "../../src/stats/AccessLog.ts"
import { accessLines, accessLogFile, linesOf } from "../helpers/accessLog.ts"
import { rawExchange, request } from "../helpers/raw.ts"
import { serveLayer } from "../helpers/server.ts"

/** The app answers `/empty` with 204, `/slow` after 300 ms, and everything else with a 11-byte body. */
const app = Effect.gen(function* () {
  const request = yield* HttpServerRequest
  if (request.url === "/empty") return HttpServerResponse.empty({ status: 204 })
  if (request.url === "/slow") return yield* Effect.as(Effect.sleep(300), HttpServerResponse.text("late"))
  return HttpServerResponse.text("hello world")
})

/** Serves the app writing its access log in `accessLog` format to a file of its own. */
const serveLogged = (accessLog: AccessLogFormat) =>
  Effect.gen(function* () {
    const file = yield* accessLogFile
    const { port } = yield* serveLayer(HttpServer.serve(app), { accessLog, accessLogFile: file })
    return { port, logged: file }
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
      const [line] = yield* accessLines(logged, 1)
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
      const [withHeaders, without] = yield* accessLines(logged, 2)
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
      const [line] = yield* accessLines(logged, 1)
      expect(line).toMatch(new RegExp(`^127\\.0\\.0\\.1 - - \\[[^\\]]+\\] "-" 400 ${bytes} "-" "-"$`))
    })
  )

  it.live("json: one JSON record per request with the same fields", () =>
    Effect.gen(function* () {
      const { port, logged } = yield* serveLogged("json")
      const before = Date.now()
      yield* rawExchange(port, request(...browser))
      const [line] = yield* accessLines(logged, 1)
      expect(line).not.toContain("\n")
      const record: unknown = JSON.parse(line)
      expect(record).toEqual({
        time: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/),
        remote: "127.0.0.1",
        remotePort: expect.any(Number),
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
      const logLines = yield* accessLines(logged, 3)
      expect(logLines.map((line) => line.replace(/\[[^\]]+\]/, "[time]"))).toEqual([
        '127.0.0.1 - - [time] "GET /a HTTP/1.1" 200 11',
        // a HEAD response sends no body bytes
        '127.0.0.1 - - [time] "HEAD /b HTTP/1.1" 200 -',
        '127.0.0.1 - - [time] "GET /c HTTP/1.1" 200 11'
      ])
    })
  )

  it.live("off: nothing is written to standard output", () =>
    Effect.gen(function* () {
      const written: Array<string> = []
      const write = process.stdout.write.bind(process.stdout)
      yield* Effect.acquireRelease(
        Effect.sync(() => {
          process.stdout.write = ((chunk: string | Uint8Array, ...rest: Array<never>) => {
            written.push(String(chunk))
            return write(chunk, ...rest)
          }) as typeof process.stdout.write
        }),
        () =>
          Effect.sync(() => {
            process.stdout.write = write
          })
      )
      const { port } = yield* serveLayer(HttpServer.serve(app), { accessLog: "off" })
      const result = yield* rawExchange(port, request(...browser))
      expect(result.responses.map((r) => r.status)).toEqual([200])
      yield* Effect.sleep("200 millis")
      expect(written.filter((text) => text.includes("GET /path"))).toEqual([])
    })
  )

  it.live("the client's address is the one it had when its request started, even when it left before the answer", () =>
    Effect.gen(function* () {
      const { port, logged } = yield* serveLogged("json")
      yield* Effect.callback<void>((resume) => {
        const socket = Net.connect({ host: "127.0.0.1", port }, () => {
          socket.write(request("GET /slow HTTP/1.1", "Host: x"))
          // gone while the app still runs
          setTimeout(() => {
            socket.destroy()
            resume(Effect.void)
          }, 50)
        })
        socket.on("error", () => resume(Effect.void))
      })
      const [line] = yield* accessLines(logged, 1)
      const record = JSON.parse(line) as { remote: unknown; remotePort: unknown; target: unknown }
      expect(record.target).toBe("/slow")
      expect(record.remote).toBe("127.0.0.1")
      expect(record.remotePort).toEqual(expect.any(Number))
    })
  )

  it.live("a request answered just before the server stops has its line when the stop completes", () =>
    Effect.gen(function* () {
      const file = yield* accessLogFile
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(
        HttpServer.serve(app).pipe(
          Layer.provideMerge(
            Http1Server.layer({ host: "127.0.0.1", port: 0, accessLog: "common", accessLogFile: file })
          )
        ),
        scope
      )
      const address = Context.get(context, HttpServer.HttpServer).address
      const port = address._tag === "UnixPathAddress" ? 0 : address.port
      const result = yield* rawExchange(port, request("GET /last HTTP/1.1", "Host: x", "Connection: close"))
      expect(result.responses.map((r) => r.status)).toEqual([200])
      yield* Scope.close(scope, Exit.void)
      // read at once, no waiting: the stop wrote it
      expect(linesOf(file).map((line) => line.replace(/\[[^\]]+\]/, "[time]"))).toEqual([
        '127.0.0.1 - - [time] "GET /last HTTP/1.1" 200 11'
      ])
    })
  )

  it.effect(
    "accessLogFile without an access log format, or one that cannot be opened, is refused naming the option",
    () =>
      Effect.gen(function* () {
        const file = yield* accessLogFile
        const error = yield* Effect.flip(serveLayer(HttpServer.serve(app), { accessLogFile: file }))
        expect(error).toMatchObject({ _tag: "InvalidOptions", option: "accessLogFile" })
        const missing = yield* Effect.flip(
          serveLayer(HttpServer.serve(app), { accessLog: "common", accessLogFile: "/nonexistent-dir/access.log" })
        )
        expect(missing).toMatchObject({ _tag: "InvalidOptions", option: "accessLogFile" })
        expect(String(missing)).toContain("cannot open /nonexistent-dir/access.log")
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
      const [line] = yield* accessLines(logged, 1)
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
      const [record] = yield* accessLines(json.logged, 1)
      expect(hasControl(record)).toBe(false)
      expect(JSON.parse(record)).toMatchObject({ userAgent })
    })
  )
})

const record: AccessRecord = {
  remoteAddress: "192.0.2.7",
  remotePort: 51234,
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
      remotePort: 51234,
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
