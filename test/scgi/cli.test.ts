/**
 * `effect-appserver serve --protocol scgi` as a user runs it: a real child process serving SCGI
 * on a TCP port or a unix socket, stopping on SIGTERM, and refusing flags that are HTTP's only.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { cli, connectionRefused, exitOf, killAll, listeningOn } from "../helpers/cli.ts"
import { type ScgiAddress, type ScgiResponse, scgi } from "../helpers/scgi.ts"

const dirs: Array<string> = []

afterEach(() => {
  killAll()
  for (const dir of dirs.splice(0)) Fs.rmSync(dir, { recursive: true, force: true })
})

const request = (
  address: ScgiAddress,
  variables: Readonly<Record<string, string>>,
  body?: string
): Promise<ScgiResponse> => Effect.runPromise(scgi(address, variables, body))

const hello = { REQUEST_METHOD: "GET", REQUEST_URI: "/" }

describe("effect-appserver serve --protocol scgi", () => {
  it("prints listening on scgi://HOST:PORT, serves SCGI, and exits 0 on SIGTERM", async () => {
    const run = cli("serve", "examples/echo.ts", "--protocol", "scgi", "--port", "0")
    const port = Number(await listeningOn(run, /^listening on scgi:\/\/127\.0\.0\.1:([1-9]\d*)$/m))
    const response = await request({ port }, hello)
    expect(response.status).toBe(200)
    expect(response.body.toString()).toBe("Hello, World!")
    const echoed = await request({ port }, { REQUEST_METHOD: "POST", REQUEST_URI: "/echo" }, "via the command")
    expect(echoed.body.toString()).toBe("via the command")
    run.child.kill("SIGTERM")
    expect(await exitOf(run, 10_000)).toEqual({ code: 0, signal: null })
    expect(await connectionRefused(`http://127.0.0.1:${port}`)).toBe(true)
  })

  it("with --socket PATH prints listening on unix:PATH and serves SCGI there", async () => {
    const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "appserver-scgi-cli-"))
    dirs.push(dir)
    const path = Path.join(dir, "app.sock")
    const run = cli("serve", "examples/echo.ts", "--protocol=scgi", "--socket", path)
    expect(await listeningOn(run, /^listening on unix:(.+)$/m)).toBe(path)
    const response = await request({ path }, hello)
    expect(response.status).toBe(200)
    expect(response.body.toString()).toBe("Hello, World!")
    run.child.kill("SIGTERM")
    expect(await exitOf(run, 10_000)).toEqual({ code: 0, signal: null })
    // the socket file goes with the server
    expect(Fs.existsSync(path)).toBe(false)
  })

  it("passes the SCGI options on: --max-body-size answers 413 beyond it", async () => {
    const run = cli("serve", "examples/echo.ts", "--protocol", "scgi", "--port", "0", "--max-body-size", "10")
    const port = Number(await listeningOn(run, /^listening on scgi:\/\/127\.0\.0\.1:([1-9]\d*)$/m))
    const refused = await request({ port }, { REQUEST_METHOD: "POST", REQUEST_URI: "/echo" }, "x".repeat(11))
    expect(refused.status).toBe(413)
    const accepted = await request({ port }, { REQUEST_METHOD: "POST", REQUEST_URI: "/echo" }, "x".repeat(10))
    expect(accepted.body.toString()).toBe("x".repeat(10))
  })

  it("refuses HTTP-only flags with exit code 2, naming the flag", async () => {
    for (const flags of [
      ["--keep-alive-timeout", "3"],
      ["--tls-cert", "cert.pem", "--tls-key", "key.pem"]
    ]) {
      const run = cli("serve", "examples/echo.ts", "--protocol", "scgi", "--port", "0", ...flags)
      const exit = await exitOf(run)
      expect(exit.code, flags.join(" ")).toBe(2)
      expect(run.stderr()).toContain(`${flags[0]} does not apply to --protocol scgi`)
      expect(run.stdout()).not.toMatch(/listening on/)
    }
  })

  it("refuses an invalid SCGI option value with exit code 2, naming the flag", async () => {
    const run = cli("serve", "examples/echo.ts", "--protocol", "scgi", "--port", "0", "--max-header-size", "1")
    const exit = await exitOf(run)
    expect(exit.code).toBe(2)
    expect(run.stderr()).toContain("--max-header-size")
  })

  it("refuses an unknown protocol with exit code 2", async () => {
    const run = cli("serve", "examples/echo.ts", "--protocol", "ftp", "--port", "0")
    const exit = await exitOf(run)
    expect(exit.code).toBe(2)
    expect(run.stderr()).toMatch(/--protocol/)
    expect(run.stderr()).toMatch(/ftp/)
  })
})
