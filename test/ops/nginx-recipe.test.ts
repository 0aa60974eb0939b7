/**
 * The README's SCGI recipe as written (issue 12, item 5): nginx's workers run as www-data, as a
 * packaged nginx's do; the server, started as root, listens on a unix socket in a directory of
 * its own with mode 660. Without `--socket-group www-data` nginx cannot connect (502, the error a
 * new user met); with it, requests reach the app, which runs as nobody (`--user`). Needs root and
 * nginx (and the www-data user): skipped without them outside CI; under CI=true their absence fails.
 */
import { execFileSync } from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { cli, killAll, listeningOn } from "../helpers/cli.ts"
import { type Nginx, nginxGate, startNginx } from "../helpers/nginx.ts"
import { removeTempDirs, tempDir } from "../helpers/tempDir.ts"

const gate = nginxGate()
const isRoot = process.getuid?.() === 0
const hasWwwData = (() => {
  try {
    execFileSync("id", ["www-data"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
})()
const runs = (gate.available && isRoot && hasWwwData) || process.env.CI === "true"

const cleanups: Array<() => Promise<void> | void> = []

afterEach(async () => {
  killAll()
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  removeTempDirs()
})

/** `mkdir -p /run/app`: a fresh directory with the default mode (0755), removed afterwards. */
const socketDir = (): string => {
  const dir = tempDir("appserver-run-")
  Fs.chmodSync(dir, 0o755)
  return dir
}

const nginxAsWwwData = async (socket: string): Promise<Nginx> => {
  const nginx = await startNginx({
    masterProcess: true,
    workerUser: "www-data",
    upstream: { protocol: "scgi", path: socket }
  })
  cleanups.push(() => nginx.stop())
  return nginx
}

describe.skipIf(!runs)("the README's SCGI recipe behind nginx running as www-data", () => {
  it("has what it needs here: root, nginx and the www-data user (CI=true)", () => {
    expect({ isRoot, nginx: gate.available, hasWwwData }).toEqual({ isRoot: true, nginx: true, hasWwwData: true })
  })

  it("--socket-group www-data --socket-mode 660 --user nobody: nginx reaches the app, which runs as nobody", async () => {
    const socket = Path.join(socketDir(), "scgi.sock")
    const run = cli(
      "serve",
      "test/fixtures/whoami.ts",
      "--protocol",
      "scgi",
      "--socket",
      socket,
      "--socket-mode",
      "660",
      "--socket-group",
      "www-data",
      "--user",
      "nobody"
    )
    await listeningOn(run, /^listening on (unix:\S+)$/m)
    const nginx = await nginxAsWwwData(socket)
    const response = await fetch(`${nginx.url}/`)
    expect(response.status).toBe(200)
    const uid = Number(Fs.readFileSync("/etc/passwd", "utf8").match(/^nobody:[^:]*:(\d+):/m)?.[1])
    expect(Number((await response.text()).split(" ")[0])).toBe(uid)
  })

  it("without --socket-group, the same nginx gets 502 (permission denied on the socket)", async () => {
    const socket = Path.join(socketDir(), "scgi.sock")
    const run = cli(
      "serve",
      "test/fixtures/whoami.ts",
      "--protocol",
      "scgi",
      "--socket",
      socket,
      "--socket-mode",
      "660"
    )
    await listeningOn(run, /^listening on (unix:\S+)$/m)
    const nginx = await nginxAsWwwData(socket)
    expect((await fetch(`${nginx.url}/`)).status).toBe(502)
    expect(await nginx.errorLog()).toMatch(/Permission denied/)
  })
})

/** The first chunk of the body: how long after the request it came, and its text. */
const firstChunk = async (url: string): Promise<{ ms: number; text: string; rest: string }> => {
  const start = performance.now()
  const response = await fetch(url)
  const reader = response.body?.getReader()
  if (reader === undefined) throw new Error("no body")
  const first = await reader.read()
  const ms = performance.now() - start
  let rest = ""
  for (;;) {
    const next = await reader.read()
    if (next.done) break
    rest += new TextDecoder().decode(next.value)
  }
  return { ms, text: new TextDecoder().decode(first.value), rest }
}

describe.skipIf(gate.skip)("streamed responses through nginx over SCGI (the README's scgi_buffering off)", () => {
  it("nginx is here (CI=true)", () => {
    if (gate.mustCheck) expect(gate.available).toBe(true)
  })

  for (const buffering of ["on", "off"] as const) {
    it(`scgi_buffering ${buffering}: the first part arrives ${buffering === "off" ? "at once" : "only with the rest"}`, async () => {
      const run = cli("serve", "test/fixtures/stream.ts", "--protocol", "scgi", "--port", "0")
      const port = Number(await listeningOn(run, /^listening on scgi:\/\/127\.0\.0\.1:(\d+)$/m))
      const nginx = await startNginx({
        upstream: { protocol: "scgi", port },
        serverDirectives: `scgi_buffering ${buffering};`
      })
      cleanups.push(() => nginx.stop())
      const { ms, text, rest } = await firstChunk(`${nginx.url}/`)
      if (buffering === "off") {
        // it came on its own, before the app had produced the rest
        expect(text).toBe("first\n")
        expect(rest).toBe("second\n")
      } else {
        // nginx held the first part until the response ended
        expect(text + rest).toBe("first\nsecond\n")
        expect(ms).toBeGreaterThanOrEqual(550)
      }
    })
  }
})
