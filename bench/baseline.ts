/**
 * --baseline REV: another revision of this repository, measured in the same run as this checkout.
 *
 * `git archive REV` is unpacked into a fresh temporary folder (the repository itself is not
 * touched: no worktree is registered), which gets this checkout's node_modules through a symlink
 * so nothing is downloaded. Its effect-appserver is then one more server, `appserver-base`, started
 * exactly as `appserver` is but from that folder; the nginx phase adds its `-base` paths. The
 * folder is removed when the harness exits, whichever way (proc.ts, `removeOnExit`).
 */
import { mkdir, mkdtemp, realpath, rm, symlink } from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { removeOnExit, runCommand } from "./proc.ts"
import { appserverSpec, type Checkout, REPO_ROOT, type ServerSpec } from "./servers.ts"

export interface Baseline {
  /** As given on the command line, e.g. `HEAD~1`. */
  readonly rev: string
  readonly sha: string
  readonly shortSha: string
  /** The commit's subject line. */
  readonly subject: string
  readonly checkout: Checkout
}

/** Runs a command to completion and returns its trimmed stdout; a non-zero exit is an error naming `what`. */
const run = async (
  what: string,
  command: string,
  args: ReadonlyArray<string>,
  cwd: string = REPO_ROOT
): Promise<string> => {
  const result = await runCommand(command, args, { cwd })
  if (result.code !== 0) throw new Error(`${what}: ${command} ${args.join(" ")} failed\n${result.stderr.trim()}`)
  return result.stdout.trim()
}

/** The full sha of `rev`, or a clear error if it names no commit of this repository. */
const resolveCommit = async (rev: string): Promise<string> => {
  const args = ["rev-parse", "--verify", "--quiet", "--end-of-options", `${rev}^{commit}`]
  const result = await runCommand("git", args, { cwd: REPO_ROOT })
  if (result.code !== 0) {
    throw new Error(
      `--baseline: "${rev}" is not a commit of this repository (git rev-parse --verify ${rev}^{commit} failed)`
    )
  }
  return result.stdout.trim()
}

/** This checkout's node_modules, resolved, for the baseline's symlink. */
const nodeModules = async (): Promise<string> => {
  try {
    return await realpath(Path.join(REPO_ROOT, "node_modules"))
  } catch {
    throw new Error(`--baseline: ${REPO_ROOT} has no node_modules to lend the baseline; run npm install first`)
  }
}

/** Checks `rev` out into a temporary folder that is removed when the harness exits. */
export const checkOutBaseline = async (rev: string): Promise<Baseline> => {
  const sha = await resolveCommit(rev)
  const [shortSha, subject] = (await run("--baseline", "git", ["log", "-1", "--format=%h%x00%s", sha])).split("\0")
  const modules = await nodeModules()
  const dir = await mkdtemp(Path.join(Os.tmpdir(), "effect-appserver-baseline-"))
  removeOnExit(dir)
  const archive = Path.join(dir, "tree.tar")
  const root = Path.join(dir, "tree")
  await run("--baseline", "git", ["archive", "--format=tar", `--output=${archive}`, sha])
  await mkdir(root)
  await run("--baseline", "tar", ["-x", "-f", archive, "-C", root])
  await rm(archive)
  await symlink(modules, Path.join(root, "node_modules"), "dir")
  return { rev, sha, shortSha, subject, checkout: { root, label: `effect-appserver @ ${shortSha}`, idSuffix: "-base" } }
}

/** The servers with the baseline's effect-appserver right after this checkout's. */
export const withBaseline = (servers: ReadonlyArray<ServerSpec>, baseline: Baseline): Array<ServerSpec> =>
  servers.flatMap((spec) => (spec.id === "appserver" ? [spec, appserverSpec(baseline.checkout)] : [spec]))
