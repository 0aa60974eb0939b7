/**
 * The command line's logs (issue 12, item 1), over real processes: access log lines exactly in
 * their format on standard output with nothing around them, or in `--access-log-file`, reopened
 * on SIGUSR1 after logrotate renamed it (by a single process, and by every worker of a pool, to
 * which the primary forwards the signal); a request answered just before SIGTERM has its line;
 * the server's own log on standard error in `--log-format` pretty, json or logfmt, at
 * `--log-level`, starting with a line that says what serves what, where.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { cli, exitOf, killAll, listening, listeningOn } from "../helpers/cli.ts"
import { removeTempDirs, tempDir } from "../helpers/tempDir.ts"

afterEach(() => {
  killAll()
  removeTempDirs()
})

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** A GET on a connection of its own (so a pool's workers take turns). */
const get = async (url: string): Promise<number> => {
  const response = await fetch(url, { headers: { connection: "close", "user-agent": "logs-test" } })
  await response.arrayBuffer()
  return response.status
}

/** Whole lines of a file; none when it does not exist. */
const linesOf = (file: string): Array<string> => {
  const text = Fs.existsSync(file) ? Fs.readFileSync(file, "utf8") : ""
  return text === "" ? [] : text.slice(0, text.lastIndexOf("\n")).split("\n")
}

/** Waits up to 5 s for `file` to hold `n` lines. */
const waitForLines = async (file: string, n: number): Promise<Array<string>> => {
  for (let waited = 0; linesOf(file).length < n && waited < 5_000; waited += 20) await sleep(20)
  return linesOf(file)
}

const common = (path: string) =>
  new RegExp(
    `^127\\.0\\.0\\.1 - - \\[\\d{2}/[A-Z][a-z]{2}/\\d{4}:\\d{2}:\\d{2}:\\d{2} \\+0000\\] "GET ${path.replace(/[?]/g, "\\?")} HTTP/1\\.1" 200 \\d+$`
  )

describe("access log from the command line", () => {
  it("standard output: the listening line, then exactly one Common Log Format line per request", async () => {
    const run = cli("serve", "examples/echo.ts", "--port", "0", "--access-log", "common")
    const url = await listening(run)
    for (const path of ["/", "/?a=1"]) expect(await get(`${url}${path}`)).toBe(200)
    for (let waited = 0; run.stdout().split("\n").length < 4 && waited < 5_000; waited += 20) await sleep(20)
    const [first, ...rest] = run.stdout().split("\n")
    expect(first).toBe(`listening on ${url}`)
    expect(rest.pop()).toBe("")
    expect(rest).toHaveLength(2)
    expect(rest[0]).toMatch(common("/"))
    expect(rest[1]).toMatch(common("/?a=1"))
    // the server's own log is on standard error
    expect(run.stderr()).toContain(`serving ${Path.resolve("examples/echo.ts")} over http on ${url}, a single process`)
  })

  it("standard output that goes away (EPIPE) loses lines, not the server", async () => {
    const run = cli("serve", "examples/echo.ts", "--port", "0", "--access-log", "common")
    const url = await listening(run)
    // the reader of standard output is gone, as `| head -1` leaves it
    run.child.stdout?.destroy()
    for (let i = 0; i < 5; i++) expect(await get(`${url}/?i=${i}`)).toBe(200)
    await sleep(200)
    expect(run.child.exitCode).toBe(null)
    run.child.kill("SIGTERM")
    expect((await exitOf(run)).code).toBe(0)
  })

  it("--access-log-file: SIGUSR1 reopens the file after a rename (logrotate), no line lost", async () => {
    const dir = tempDir("appserver-logs-")
    const file = Path.join(dir, "access.log")
    const run = cli("serve", "examples/echo.ts", "--port", "0", "--access-log", "combined", "--access-log-file", file)
    const url = await listening(run)
    expect(await get(`${url}/?before`)).toBe(200)
    expect(await waitForLines(file, 1)).toHaveLength(1)
    Fs.renameSync(file, `${file}.1`)
    // written after the rename and before the signal: still the old file's
    expect(await get(`${url}/?renamed`)).toBe(200)
    await waitForLines(`${file}.1`, 2)
    run.child.kill("SIGUSR1")
    await sleep(200)
    expect(await get(`${url}/?after`)).toBe(200)
    const after = await waitForLines(file, 1)
    expect(after).toHaveLength(1)
    expect(after[0]).toMatch(/"GET \/\?after HTTP\/1\.1" 200 13 "-" "logs-test"$/)
    const rotated = linesOf(`${file}.1`)
    expect(rotated.map((line) => /"GET (\S+) /.exec(line)?.[1])).toEqual(["/?before", "/?renamed"])
    // a request answered just before the stop: its line is written before the process exits
    const last = get(`${url}/?last`)
    expect(await last).toBe(200)
    run.child.kill("SIGTERM")
    expect((await exitOf(run)).code).toBe(0)
    expect(linesOf(file).at(-1)).toMatch(/"GET \/\?last HTTP\/1\.1" 200 13/)
    // nothing of the access log on standard output
    expect(run.stdout()).toBe(`listening on ${url}\n`)
  })

  it("a pool: every worker appends to the file, and reopens it when the primary gets SIGUSR1", async () => {
    const dir = tempDir("appserver-logs-")
    const file = Path.join(dir, "access.log")
    const run = cli(
      "serve",
      "test/fixtures/prefork-app.ts",
      "--port",
      "0",
      "--workers",
      "2",
      "--access-log",
      "common",
      "--access-log-file",
      file
    )
    const url = await listeningOn(run, /^listening on (http:\/\/127\.0\.0\.1:\d+) \(2 workers\)$/m, 30_000)
    const pids = async (count: number): Promise<Set<string>> => {
      const seen = new Set<string>()
      for (let i = 0; i < count; i++) {
        const response = await fetch(`${url}/pid`, { headers: { connection: "close" } })
        seen.add((await response.text()).split(" ")[0])
      }
      return seen
    }
    expect((await pids(20)).size).toBe(2)
    expect(await waitForLines(file, 20)).toHaveLength(20)
    Fs.renameSync(file, `${file}.1`)
    run.child.kill("SIGUSR1")
    await sleep(300)
    // both workers answer again, and every line is in the new file
    expect((await pids(20)).size).toBe(2)
    const after = await waitForLines(file, 20)
    expect(after).toHaveLength(20)
    for (const line of after) expect(line).toMatch(common("/pid"))
    expect(linesOf(`${file}.1`)).toHaveLength(20)
    // the workers are alive and well (SIGUSR1 did not start an inspector or kill them)
    expect(run.stderr()).not.toMatch(/Debugger listening|exited unexpectedly/)
  })
})

describe("the server's own log", () => {
  it("--log-format json: one JSON object per line on standard error", async () => {
    const run = cli("serve", "examples/echo.ts", "--port", "0", "--log-format", "json")
    const url = await listening(run)
    run.child.kill("SIGTERM")
    expect((await exitOf(run)).code).toBe(0)
    const lines = run.stderr().trim().split("\n")
    const records = lines.map((line) => JSON.parse(line) as { message: unknown; level: unknown })
    expect(records[0]).toMatchObject({ level: "INFO", timestamp: expect.any(String) })
    expect(String(records[0].message)).toContain(`serving ${Path.resolve("examples/echo.ts")} over http on ${url}`)
    expect(run.stdout()).toBe(`listening on ${url}\n`)
  })

  it("--log-format logfmt, with workers: the primary's and the workers' lines are logfmt", async () => {
    const run = cli(
      "serve",
      "test/fixtures/prefork-app.ts",
      "--port",
      "0",
      "--workers",
      "2",
      "--log-format",
      "logfmt",
      "--log-level",
      "debug"
    )
    await listeningOn(run, /^listening on (http:\/\/127\.0\.0\.1:\d+) \(2 workers\)$/m, 30_000)
    run.child.kill("SIGTERM")
    expect((await exitOf(run, 20_000)).code).toBe(0)
    const lines = run.stderr().trim().split("\n")
    for (const line of lines) expect(line).toMatch(/^timestamp=\S+ level=[A-Z]+ fiber=#\d+ message=/)
    // a worker's debug line on its way out, annotated with its number and pid
    expect(lines.some((line) => /level=DEBUG .*stopping: asked to stop.* worker=\d+ pid=\d+/.test(line))).toBe(true)
  })

  it("--log-level warn: the startup line (Info) is not logged", async () => {
    const run = cli("serve", "examples/echo.ts", "--port", "0", "--log-level", "warn")
    await listening(run)
    await sleep(100)
    run.child.kill("SIGTERM")
    expect((await exitOf(run)).code).toBe(0)
    expect(run.stderr()).toBe("")
  })
})
