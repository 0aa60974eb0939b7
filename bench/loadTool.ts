/**
 * Picks the load generator: wrk when installed, otherwise autocannon through npx, otherwise a
 * clear error naming the package to install.
 */
import { autocannon, autocannonWorks } from "./autocannon.ts"
import { runCommand } from "./proc.ts"
import type { LoadTool } from "./scenarios.ts"
import { wrk } from "./wrk.ts"

export type ToolChoice = "auto" | "wrk" | "autocannon"

/** wrk has no --version flag that exits 0 (it prints usage and exits 1), so only ENOENT means absent. */
const wrkInstalled = async (): Promise<boolean> => {
  try {
    await runCommand("wrk", ["--version"])
    return true
  } catch {
    return false
  }
}

export const chooseLoadTool = async (choice: ToolChoice): Promise<LoadTool> => {
  if (choice !== "autocannon" && (await wrkInstalled())) return wrk
  if (choice === "wrk") throw new Error("wrk is not installed: apt-get install wrk (Debian package: wrk)")
  if (await autocannonWorks()) return autocannon
  throw new Error(
    "no load generator: wrk is not installed and `npx --yes autocannon` does not run.\n" +
      "Install wrk (Debian/Ubuntu: apt-get install wrk) and run again."
  )
}
