/**
 * The floors of DESIGN.md as a check over the import graph of `src/`: a module imports only from
 * its own floor or lower ones, HTTP and SCGI are siblings that never import each other, and no
 * two folders import each other (a cycle would make a floor meaningless). Type-only imports count:
 * they are dependencies of the design even when they vanish at run time.
 */
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"

const src = Path.resolve(import.meta.dirname, "../src")

/** Each folder (or top-level file) of src/ and its floor, from the bottom up. */
const floors: Readonly<Record<string, number>> = {
  "errors.ts": 1,
  "options.ts": 1,
  stats: 1,
  wire: 2,
  listen: 2,
  process: 2,
  gateway: 3,
  conn: 3,
  http: 4,
  scgi: 4,
  prefork: 5,
  manager: 5,
  cli: 9,
  "index.ts": 9
}

/** Pairs of folders that must not import each other in either direction, though their floors allow it. */
const siblings: ReadonlyArray<readonly [string, string]> = [["http", "scgi"]]

/**
 * Folders a folder must not import although its floor allows: the prefork primary loads no app
 * code, so it imports neither server nor the gateway (its workers do, from cli/). Managers run
 * other processes and speak to them over sockets only: no server code, and no prefork either.
 */
const forbidden: Readonly<Record<string, ReadonlyArray<string>>> = {
  prefork: ["http", "scgi", "gateway", "conn"],
  manager: ["prefork", "http", "scgi", "gateway", "conn"]
}

const unitOf = (file: string): string => Path.relative(src, file).split(Path.sep)[0]

const sources = (dir: string): Array<string> =>
  Fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = Path.join(dir, entry.name)
    if (entry.isDirectory()) return sources(full)
    return entry.name.endsWith(".ts") ? [full] : []
  })

/** Relative module specifiers of `import ... from`, `export ... from` and `import(...)`. */
const importsOf = (file: string): Array<string> => {
  const text = Fs.readFileSync(file, "utf8")
  const found: Array<string> = []
  for (const match of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)["'](\.[^"']+)["']/gm)) {
    found.push(match[1])
  }
  return found
}

interface Edge {
  readonly file: string
  readonly from: string
  readonly to: string
}

const edges: ReadonlyArray<Edge> = sources(src).flatMap((file) =>
  importsOf(file)
    .map((specifier) => Path.resolve(Path.dirname(file), specifier))
    .filter((target) => target.startsWith(src + Path.sep))
    .map((target) => ({ file: Path.relative(src, file), from: unitOf(file), to: unitOf(target) }))
    .filter((edge) => edge.from !== edge.to)
)

describe("the floors of src/ (DESIGN.md)", () => {
  it("reads the imports it checks", () => {
    // A broken pattern would make every rule below pass vacuously.
    expect(edges.length).toBeGreaterThan(40)
    expect(edges.some((e) => e.from === "http" && e.to === "conn")).toBe(true)
    expect(edges.some((e) => e.from === "conn" && e.to === "listen")).toBe(true)
  })

  it("gives every folder of src/ a floor", () => {
    const units = new Set(sources(src).map(unitOf))
    expect([...units].filter((unit) => floors[unit] === undefined)).toEqual([])
  })

  it("imports only from the same floor or lower ones", () => {
    const upward = edges
      .filter((e) => floors[e.to] > floors[e.from])
      .map((e) => `${e.file} (floor ${floors[e.from]}) imports ${e.to}/ (floor ${floors[e.to]})`)
    expect(upward).toEqual([])
  })

  it("keeps HTTP and SCGI apart: neither imports the other", () => {
    const crossing = edges
      .filter((e) => siblings.some(([a, b]) => (e.from === a && e.to === b) || (e.from === b && e.to === a)))
      .map((e) => `${e.file} imports ${e.to}/`)
    expect(crossing).toEqual([])
  })

  it("keeps the prefork primary and the managers free of app code: no server, gateway or driver", () => {
    const crossing = edges
      .filter((e) => (forbidden[e.from] ?? []).includes(e.to))
      .map((e) => `${e.file} imports ${e.to}/`)
    expect(crossing).toEqual([])
  })

  it("has no two folders importing each other", () => {
    const pairs = new Set(edges.map((e) => `${e.from}→${e.to}`))
    const cycles = [...pairs].filter((pair) => {
      const [from, to] = pair.split("→")
      return pairs.has(`${to}→${from}`)
    })
    expect(cycles).toEqual([])
  })
})
