/**
 * `--reload` (development): watch the module's directory and reload the app when a file in it
 * changes, as a rolling reload of the pool's workers (new ones load the changed code and are
 * ready before old ones drain, so no request fails). What changed is logged.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { Effect } from "effect"
import type * as Scope from "effect/Scope"

/** Changes closer together than this are one reload (an editor writes a file in several steps). */
const settleMillis = 150

/** What is not the app's code: dependencies, VCS data, editors' temporary and hidden files. */
const ignored = (file: string): boolean =>
  file.split(Path.sep).some((part) => part === "node_modules" || part.startsWith(".")) ||
  /(~|\.swp|\.swx|\.tmp|\.log)$/.test(file) ||
  /^\d+$/.test(Path.basename(file))

/**
 * Watches `dir` (recursively) for the rest of the scope, running `reload` with the changed files
 * (relative to `dir`) once changes settle. Fails when the directory cannot be watched.
 *
 * @since 0.1.0
 */
export const watchForChanges = (
  dir: string,
  reload: (changed: ReadonlyArray<string>) => Effect.Effect<void>
): Effect.Effect<void, Error, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Effect.context<never>()
    const changed = new Set<string>()
    let timer: ReturnType<typeof setTimeout> | undefined
    const fire = () => {
      timer = undefined
      const files = [...changed].sort()
      changed.clear()
      Effect.runForkWith(context)(reload(files))
    }
    yield* Effect.acquireRelease(
      Effect.try({
        try: () =>
          Fs.watch(dir, { recursive: true }, (_event, file) => {
            if (file === null || ignored(file)) return
            changed.add(file)
            if (timer !== undefined) clearTimeout(timer)
            timer = setTimeout(fire, settleMillis)
          }).on("error", (error) => {
            // The directory went away, or the watch limit was reached: serving goes on unwatched.
            Effect.runForkWith(context)(Effect.logWarning(`--reload: no longer watching ${dir}: ${error.message}`))
          }),
        catch: (error) =>
          new Error(`--reload: cannot watch ${dir}: ${error instanceof Error ? error.message : String(error)}`)
      }),
      (watcher) =>
        Effect.sync(() => {
          watcher.removeAllListeners("error")
          if (timer !== undefined) clearTimeout(timer)
          watcher.close()
        })
    )
  })
