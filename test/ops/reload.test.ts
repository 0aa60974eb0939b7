/**
 * `--reload` (issue 12, item 7), with real processes and files: editing a file in the module's
 * directory (here one the module imports) reloads the app, printing what changed, with no failed
 * request under continuous load; files that are not code (hidden, editors' backups) do not.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { cli, exitOf, killAll, listeningOn, root } from "../helpers/cli.ts"
import { removeTempDirs, tempDir } from "../helpers/tempDir.ts"

afterEach(() => {
  killAll()
  removeTempDirs()
})

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * An app in a directory of its own inside the repository (so that `effect` resolves from
 * node_modules), answering what its imported message.ts exports.
 */
const appDir = (): string => {
  const dir = tempDir(".reload-", Path.join(root, "test"))
  Fs.writeFileSync(
    Path.join(dir, "app.ts"),
    [
      'import { Effect } from "effect"',
      'import * as HttpServerResponse from "effect/http/HttpServerResponse"',
      'import { message } from "./message.ts"',
      'export default Effect.sync(() => HttpServerResponse.text([message, process.pid].join(" ")))',
      ""
    ].join("\n")
  )
  Fs.writeFileSync(Path.join(dir, "message.ts"), 'export const message = "v1"\n')
  return dir
}

describe("--reload", () => {
  it("an edited file the module imports is served after a rolling reload, no request failing meanwhile", async () => {
    const dir = appDir()
    const module = Path.relative(root, Path.join(dir, "app.ts"))
    const run = cli("serve", module, "--port", "0", "--reload")
    const url = await listeningOn(run, /^listening on (http:\/\/127\.0\.0\.1:\d+) \(1 workers\)$/m, 30_000)
    await listeningOn(run, /^listening on (http:\/\/127\.0\.0\.1:\d+)/m)
    for (let waited = 0; !run.stderr().includes("--reload: watching"); waited += 20) {
      if (waited > 5_000) throw new Error(`not watching: ${run.stderr()}`)
      await sleep(20)
    }
    const first = await (await fetch(url)).text()
    expect(first).toMatch(/^v1 \d+$/)

    // continuous load from 4 clients, half of them opening a connection per request
    const answers: Array<string> = []
    const failures: Array<string> = []
    let loading = true
    const client = async (close: boolean) => {
      while (loading) {
        try {
          const response = await fetch(url, close ? { headers: { connection: "close" } } : {})
          const text = await response.text()
          if (response.status === 200) answers.push(text)
          else failures.push(`${response.status} ${text}`)
        } catch (error) {
          failures.push(String(error))
        }
      }
    }
    const clients = [client(false), client(false), client(true), client(true)]
    await sleep(300)
    // a hidden file and an editor's backup are not code: no reload
    Fs.writeFileSync(Path.join(dir, ".message.ts.swp"), "x")
    Fs.writeFileSync(Path.join(dir, "message.ts~"), "x")
    await sleep(500)
    expect(run.stderr()).not.toContain("changed in")
    Fs.writeFileSync(Path.join(dir, "message.ts"), 'export const message = "v2"\n')
    for (let waited = 0; !answers.some((answer) => answer.startsWith("v2 ")); waited += 50) {
      if (waited > 15_000) break
      await sleep(50)
    }
    // the old worker drains (drainGrace 1 s for workers), then exits
    await sleep(2_000)
    loading = false
    await Promise.all(clients)
    expect(failures).toEqual([])
    expect(answers.some((answer) => answer.startsWith("v2 "))).toBe(true)
    // the old worker is gone once the reload is done: the last answers are all the new code's
    // (keep-alive connections to it were answered, then closed, while it drained)
    expect(answers.slice(-20).filter((answer) => !answer.startsWith("v2 "))).toEqual([])
    expect(run.stderr()).toContain(`--reload: message.ts changed in ${dir}: reloading the workers`)
    run.child.kill("SIGTERM")
    expect((await exitOf(run, 20_000)).code).toBe(0)
  })
})
