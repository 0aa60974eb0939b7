/**
 * examples/stack.ts end to end, run as `npm run stack` runs it: nginx in front of the echo app
 * under the SCGI server with two workers, one request through the whole stack, then Ctrl-C
 * (SIGINT) stops everything and leaves no process behind. Needs nginx (Debian: nginx-light):
 * skipped without it, except under CI=true, where it fails.
 */
import * as Path from "node:path"
import { afterAll, afterEach, describe, expect, it } from "@effect/vitest"
import { exitOf, killAll, listeningOn, root, spawnTracked, text } from "../helpers/cli.ts"
import { freePort, nginxGate } from "../helpers/nginx.ts"
import { alive, childPids, kill, leftovers, track } from "../helpers/prefork.ts"

/** A process and all its descendants, now. */
const tree = (pid: number): Array<number> => {
  const all = [pid]
  for (let i = 0; i < all.length; i++) all.push(...childPids(all[i]))
  return all
}

afterEach(() => {
  killAll()
})

afterAll(async () => {
  expect(await leftovers()).toEqual([])
})

describe.skipIf(nginxGate().skip)("examples/stack.ts", () => {
  it("serves through nginx, SCGI and two workers, and Ctrl-C stops every process", async () => {
    const port = await freePort()
    const run = spawnTracked(process.execPath, [Path.join(root, "examples/stack.ts")], {
      cwd: root,
      env: { PORT: String(port) },
      group: true
    })
    const url = await listeningOn(run, /^serving (http:\/\/\S+) /m, 20_000)
    expect(url).toBe(`http://127.0.0.1:${port}`)
    const processes = tree(run.child.pid ?? -1).slice(1)
    track(processes)
    // the app server's primary and its two workers, nginx's master and its worker
    expect(processes.length).toBeGreaterThanOrEqual(5)
    expect(await text(`${url}/`)).toBe("Hello, World!")
    run.child.kill("SIGINT")
    // interrupted: 130, as Effect's runMain exits on SIGINT
    expect(await exitOf(run, 20_000)).toEqual({ code: 130, signal: null })
    const left = processes.filter(alive)
    for (const pid of left) kill(pid, "SIGKILL")
    expect(left).toEqual([])
  }, 40_000)
})
