/**
 * The package's version, for `--version` and the startup log line.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs"
import * as Path from "node:path"

/**
 * The package's version, from the nearest package.json above this module named effect-appserver:
 * found the same way from src/cli/ and from a build's dist/cli/, and never another package's.
 *
 * @since 0.1.0
 */
export const packageVersion = (from: string = import.meta.dirname): string => {
  for (let dir = from; ; dir = Path.dirname(dir)) {
    const file = Path.join(dir, "package.json")
    if (Fs.existsSync(file)) {
      const json: unknown = JSON.parse(Fs.readFileSync(file, "utf8"))
      if (typeof json === "object" && json !== null && "name" in json && json.name === "effect-appserver") {
        return "version" in json && typeof json.version === "string" ? json.version : "unknown"
      }
    }
    if (Path.dirname(dir) === dir) return "unknown"
  }
}
