/**
 * Reading a server's access log in tests: a file of its own in a fresh directory (removed with
 * the test's scope), and its lines once they are there.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { expect } from "@effect/vitest"
import { Effect } from "effect"

/** A path for an access log in a fresh directory, removed with the test's scope. */
export const accessLogFile = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "appserver-access-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => Path.join(dir, "access.log")))

/** The whole lines of a file (each ends with a newline); none while it does not exist. */
export const linesOf = (file: string): Array<string> => {
  const text = Fs.existsSync(file) ? Fs.readFileSync(file, "latin1") : ""
  return text === "" ? [] : text.slice(0, text.lastIndexOf("\n")).split("\n")
}

/** Waits (up to 5 s) for `n` lines in the file, then returns them: exactly `n`, each newline-terminated. */
export const accessLines = (file: string, n: number) =>
  Effect.gen(function* () {
    const until = performance.now() + 5_000
    while (linesOf(file).length < n && performance.now() < until) yield* Effect.sleep(10)
    const found = linesOf(file)
    expect(found).toHaveLength(n)
    expect(Fs.readFileSync(file, "latin1").endsWith("\n")).toBe(true)
    return found
  })
