/**
 * examples/prefork.ts, run as the README says (`node examples/prefork.ts`), in both dispatch
 * modes: two workers serve the echo app on one port, and SIGINT stops the pool gracefully
 * (no worker left).
 */
import * as Path from "node:path"
import { afterAll, afterEach, describe, expect, it } from "@effect/vitest"
import { exitOf, killAll, listeningOn, root, spawnTracked, text } from "../helpers/cli.ts"
import { alive, childPids, leftovers, track } from "../helpers/prefork.ts"

afterEach(() => {
  killAll()
})

afterAll(async () => {
  expect(await leftovers()).toEqual([])
})

describe("examples/prefork.ts", () => {
  for (const dispatch of ["shared", "primary"] as const) {
    it(`serves the echo app from two workers (DISPATCH=${dispatch}) and stops on SIGINT`, async () => {
      const run = spawnTracked(process.execPath, [Path.join(root, "examples/prefork.ts")], {
        cwd: root,
        env: { PORT: "0", DISPATCH: dispatch },
        group: true
      })
      const port = await listeningOn(run, /^primary \d+: 2 workers serving 127\.0\.0\.1:(\d+)$/m)
      const workers = childPids(run.child.pid ?? -1)
      track(workers)
      expect(workers).toHaveLength(2)
      expect(await text(`http://127.0.0.1:${port}/`)).toBe("Hello, World!")
      run.child.kill("SIGINT")
      // interrupted: 130, as Effect's runMain exits on SIGINT (the command line exits 0)
      expect(await exitOf(run, 10_000)).toEqual({ code: 130, signal: null })
      expect(workers.filter(alive)).toEqual([])
    }, 20_000)
  }
})
