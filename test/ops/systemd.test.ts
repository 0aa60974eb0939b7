/**
 * systemd's notify protocol (issue 12, item 4), with the real `systemd-notify` and a stand-in for
 * systemd's notify socket (test/fixtures/notify-listener.py, a unix datagram socket): READY=1
 * once listening (with workers: once they serve), STATUS=, WATCHDOG=1 pings at half of
 * WATCHDOG_USEC, STOPPING=1 when SIGTERM starts the graceful stop; the notify variables do not
 * reach the workers. Needs systemd-notify and python3: skipped without them, except under
 * CI=true, where their absence fails.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { type Cli, cliWith, exitOf, killAll, listening, listeningOn, root, spawnTracked } from "../helpers/cli.ts"
import { removeTempDirs, tempDir } from "../helpers/tempDir.ts"

const has = (command: string): boolean => {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}
const available = has("systemd-notify") && has("python3")
const runs = available || process.env.CI === "true"

afterEach(() => {
  killAll()
  removeTempDirs()
})

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The notify socket stand-in: its path, and the messages it received so far. */
const notifySocket = async (): Promise<{ path: string; messages: () => Array<string> }> => {
  const dir = tempDir("appserver-notify-")
  const path = Path.join(dir, "notify")
  const listener = spawnTracked("python3", [Path.join(root, "test/fixtures/notify-listener.py"), path], { cwd: root })
  for (let waited = 0; !listener.stdout().startsWith("ready\n"); waited += 20) {
    if (waited > 5_000) throw new Error(`notify listener not ready: ${listener.stderr()}`)
    await sleep(20)
  }
  return { path, messages: () => listener.stdout().split("\n").slice(1, -1) }
}

/** Waits up to 5 s for a message that `matches`. */
const waitForMessage = async (messages: () => Array<string>, matches: (m: string) => boolean, run: Cli) => {
  for (let waited = 0; !messages().some(matches); waited += 20) {
    if (waited > 5_000) throw new Error(`no such message; got ${JSON.stringify(messages())}\n${run.stderr()}`)
    await sleep(20)
  }
}

describe.skipIf(!runs)("systemd notify (Type=notify)", () => {
  it("systemd-notify and python3 are here (CI=true)", () => {
    expect(available).toBe(true)
  })

  it("a single process: READY=1 with STATUS once listening, WATCHDOG=1 pings, STOPPING=1 on SIGTERM", async () => {
    const notify = await notifySocket()
    const run = cliWith(
      { env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: "400000" } },
      "serve",
      "examples/echo.ts",
      "--port",
      "0"
    )
    const url = await listening(run)
    await waitForMessage(notify.messages, (m) => m.startsWith("READY=1"), run)
    const ready = notify.messages().find((m) => m.startsWith("READY=1")) ?? ""
    expect(ready).toBe(`READY=1|STATUS=serving on ${url}|MAINPID=${run.child.pid}`)
    // pings every 200 ms
    await sleep(900)
    expect(notify.messages().filter((m) => m === "WATCHDOG=1").length).toBeGreaterThanOrEqual(2)
    expect(notify.messages().some((m) => m.startsWith("STOPPING=1"))).toBe(false)
    run.child.kill("SIGTERM")
    expect((await exitOf(run)).code).toBe(0)
    await waitForMessage(notify.messages, (m) => m.startsWith("STOPPING=1"), run)
    // READY came first, STOPPING after every ping it sent
    const all = notify.messages()
    expect(all.findIndex((m) => m.startsWith("READY=1"))).toBeLessThan(all.findIndex((m) => m.startsWith("STOPPING=1")))
  })

  it("a pool: READY=1 once the workers serve; the workers do not see NOTIFY_SOCKET", async () => {
    const notify = await notifySocket()
    const run = cliWith(
      { env: { NOTIFY_SOCKET: notify.path } },
      "serve",
      "test/fixtures/prefork-app.ts",
      "--port",
      "0",
      "--workers",
      "2"
    )
    const url = await listeningOn(run, /^listening on (http:\/\/127\.0\.0\.1:\d+) \(2 workers\)$/m, 30_000)
    await waitForMessage(notify.messages, (m) => m.startsWith("READY=1"), run)
    expect(notify.messages()[0]).toBe(`READY=1|STATUS=serving on ${url} with 2 workers|MAINPID=${run.child.pid}`)
    // a worker's environment, read from /proc
    const response = await fetch(`${url}/pid`)
    const workerPid = (await response.text()).split(" ")[0]
    const environ = Fs.readFileSync(`/proc/${workerPid}/environ`, "utf8").split("\0")
    expect(environ.some((entry) => entry.startsWith("NOTIFY_SOCKET="))).toBe(false)
    run.child.kill("SIGTERM")
    expect((await exitOf(run, 20_000)).code).toBe(0)
    await waitForMessage(notify.messages, (m) => m.startsWith("STOPPING=1"), run)
  })

  it("without NOTIFY_SOCKET nothing is sent and nothing is logged about it", async () => {
    const run = cliWith({ env: { WATCHDOG_USEC: "100000" } }, "serve", "examples/echo.ts", "--port", "0")
    await listening(run)
    await sleep(300)
    run.child.kill("SIGTERM")
    expect((await exitOf(run)).code).toBe(0)
    expect(run.stderr()).not.toMatch(/notify/i)
  })
})
