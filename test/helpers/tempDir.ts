/**
 * Temporary directories for tests that need files (sockets, logs, modules): made fresh, removed
 * by `removeTempDirs` in an `afterEach`, whether the test passed or not.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"

const made: Array<string> = []

/** A fresh directory `PREFIX…` in `parent` (the system's temporary directory by default). */
export const tempDir = (prefix: string, parent: string = Os.tmpdir()): string => {
  const dir = Fs.mkdtempSync(Path.join(parent, prefix))
  made.push(dir)
  return dir
}

/** Removes every directory `tempDir` made. */
export const removeTempDirs = (): void => {
  for (const dir of made.splice(0)) Fs.rmSync(dir, { recursive: true, force: true })
}
