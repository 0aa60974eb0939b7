/**
 * Socket ownership and privilege drop (issue 12, items 5 and 6), over real sockets and real
 * processes: `--socket-owner`/`--socket-group` set the socket file's owner before the server
 * accepts; `--user`/`--group` bind as root, then run the app as that user (a single process, and
 * every worker of a pool in both dispatch modes); without root they are refused at startup,
 * naming the flag. These need root (the CI runs as root); elsewhere they are skipped, and under
 * CI=true a run without root fails instead.
 */
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Path from "node:path"
import { afterEach, describe, expect, it } from "@effect/vitest"
import { cli, exitOf, killAll, listening, listeningOn, root, spawnTracked } from "../helpers/cli.ts"
import { removeTempDirs, tempDir } from "../helpers/tempDir.ts"

const isRoot = process.getuid?.() === 0
const runs = isRoot || process.env.CI === "true"

/** nobody and its group, as Debian names them; looked up so another system's numbers work too. */
const nobody = (() => {
  const line = Fs.readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((entry) => entry.startsWith("nobody:"))
  const fields = line?.split(":") ?? []
  return { uid: Number(fields[2] ?? Number.NaN), gid: Number(fields[3] ?? Number.NaN) }
})()

afterEach(() => {
  killAll()
  removeTempDirs()
})

/** A fresh directory only root may enter (mode 700), as /run/app would be. */
const rootOnlyDir = (): string => {
  const dir = tempDir("appserver-identity-")
  Fs.chmodSync(dir, 0o700)
  return dir
}

const getOverUnix = (socketPath: string, path = "/"): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    const req = Http.get({ socketPath, path, headers: { host: "localhost" } }, (res) => {
      let body = ""
      res.setEncoding("utf8").on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on("error", reject)
    req.setTimeout(5_000, () => req.destroy(new Error("no answer within 5 s")))
  })

/** `UID GID GROUPS PID` from the whoami fixture. */
const whoami = (body: string) => {
  const [uid, gid, groups, pid] = body.split(" ")
  return { uid: Number(uid), gid: Number(gid), groups, pid: Number(pid) }
}

describe.skipIf(!runs)("socket ownership and privilege drop (as root)", () => {
  it("the test runs as root (CI=true)", () => {
    // Under CI the suite must not pass by skipping: these behaviours need root to be tested.
    expect(isRoot).toBe(true)
  })

  it("--socket-owner, --socket-group and --socket-mode are applied before the server accepts", async () => {
    const dir = rootOnlyDir()
    const socket = Path.join(dir, "app.sock")
    const run = cli(
      "serve",
      "test/fixtures/whoami.ts",
      "--socket",
      socket,
      "--socket-owner",
      "nobody",
      "--socket-group",
      String(nobody.gid),
      "--socket-mode",
      "660"
    )
    await listeningOn(run, /^listening on (unix:\S+)$/m)
    const stat = Fs.statSync(socket)
    expect(stat.isSocket()).toBe(true)
    expect(stat.uid).toBe(nobody.uid)
    expect(stat.gid).toBe(nobody.gid)
    expect(stat.mode & 0o777).toBe(0o660)
    // the server itself still runs as root here
    expect(whoami((await getOverUnix(socket)).body).uid).toBe(0)
  })

  it("with workers too: the shared socket gets its owner, group and mode before the workers accept", async () => {
    const socket = Path.join(rootOnlyDir(), "app.sock")
    const run = cli(
      "serve",
      "test/fixtures/whoami.ts",
      "--socket",
      socket,
      "--workers",
      "1",
      "--socket-owner",
      "nobody",
      "--socket-group",
      String(nobody.gid),
      "--socket-mode",
      "660"
    )
    await listeningOn(run, /^listening on (unix:\S+) \(1 workers\)$/m, 30_000)
    const stat = Fs.statSync(socket)
    expect([stat.uid, stat.gid, stat.mode & 0o777]).toEqual([nobody.uid, nobody.gid, 0o660])
    expect((await getOverUnix(socket)).status).toBe(200)
  })

  it("--user with an access log file: the file is the user's, so it is reopened after a rotation", async () => {
    const dir = rootOnlyDir()
    // a log directory the user may create files in (logrotate's `create` does the same for it)
    Fs.chmodSync(dir, 0o1777)
    const file = Path.join(dir, "access.log")
    const run = cli(
      "serve",
      "test/fixtures/whoami.ts",
      "--port",
      "0",
      "--user",
      "nobody",
      "--access-log",
      "common",
      "--access-log-file",
      file
    )
    const url = await listening(run)
    expect(Fs.statSync(file).uid).toBe(nobody.uid)
    expect((await fetch(`${url}/one`)).status).toBe(200)
    Fs.renameSync(file, `${file}.1`)
    run.child.kill("SIGUSR1")
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect((await fetch(`${url}/two`)).status).toBe(200)
    for (let waited = 0; !Fs.existsSync(file) && waited < 3_000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(Fs.readFileSync(file, "utf8")).toMatch(/"GET \/two HTTP\/1\.1" 200/)
    expect(Fs.readFileSync(`${file}.1`, "utf8")).toMatch(/"GET \/one HTTP\/1\.1" 200/)
    expect(run.stderr()).not.toContain("cannot reopen")
  })

  it("an unknown socket owner or group is refused at startup, naming the flag", async () => {
    const socket = Path.join(rootOnlyDir(), "app.sock")
    const owner = cli("serve", "test/fixtures/whoami.ts", "--socket", socket, "--socket-owner", "no-such-user-x")
    expect((await exitOf(owner)).code).toBe(2)
    expect(owner.stderr()).toContain("--socket-owner: no such user: no-such-user-x")
    const group = cli("serve", "test/fixtures/whoami.ts", "--socket", socket, "--socket-group", "no-such-group-x")
    expect((await exitOf(group)).code).toBe(2)
    expect(group.stderr()).toContain("--socket-group: no such group: no-such-group-x")
    expect(Fs.existsSync(socket)).toBe(false)
    const tcp = cli("serve", "test/fixtures/whoami.ts", "--port", "0", "--socket-owner", "nobody")
    expect((await exitOf(tcp)).code).toBe(2)
    expect(tcp.stderr()).toContain("--socket-owner: needs a unix socket path")
  })

  it("--user binds as root, then the app runs as the user: a socket in a root-only directory still accepts", async () => {
    const dir = rootOnlyDir()
    const socket = Path.join(dir, "app.sock")
    const run = cli("serve", "test/fixtures/whoami.ts", "--socket", socket, "--user", "nobody", "--socket-mode", "600")
    await listeningOn(run, /^listening on (unix:\S+)$/m)
    const seen = whoami((await getOverUnix(socket)).body)
    expect(seen).toMatchObject({ uid: nobody.uid, gid: nobody.gid })
    // no supplementary group of root's is kept
    expect(seen.groups.split(",").map(Number)).not.toContain(0)
    // the process itself, not just the app's view of it
    const status = Fs.readFileSync(`/proc/${run.child.pid}/status`, "utf8")
    expect(status).toMatch(
      new RegExp(`^Uid:\\s+${nobody.uid}\\s+${nobody.uid}\\s+${nobody.uid}\\s+${nobody.uid}$`, "m")
    )
    // nobody could not have created the socket here: it was bound before the drop
    expect(Fs.statSync(socket).uid).toBe(0)
  })

  it("--group chooses the group the app runs with", async () => {
    const run = cli("serve", "test/fixtures/whoami.ts", "--port", "0", "--user", "nobody", "--group", "0")
    const url = await listening(run)
    expect(whoami(await (await fetch(url)).text())).toMatchObject({ uid: nobody.uid, gid: 0 })
  })

  for (const dispatch of ["shared", "primary"] as const) {
    it(`--user with workers (dispatch ${dispatch}): every worker runs as the user, the primary binds`, async () => {
      const run = cli(
        "serve",
        "test/fixtures/whoami.ts",
        "--port",
        "0",
        "--workers",
        "2",
        "--dispatch",
        dispatch,
        "--user",
        "nobody"
      )
      const url = await listeningOn(run, /^listening on (http:\/\/127\.0\.0\.1:\d+) \(2 workers\)$/m, 30_000)
      const pids = new Set<number>()
      for (let i = 0; i < 40 && pids.size < 2; i++) {
        // a new connection each time, so both workers answer
        const seen = whoami(await (await fetch(url, { headers: { connection: "close" } })).text())
        expect(seen).toMatchObject({ uid: nobody.uid, gid: nobody.gid })
        pids.add(seen.pid)
      }
      expect(pids.size).toBe(2)
      expect(pids.has(run.child.pid ?? -1)).toBe(false)
    })
  }

  it("--user without root is refused before anything is bound, naming the flag", async () => {
    // The command itself started as nobody: it may not become root.
    const run = spawnTracked(
      process.execPath,
      [Path.join(root, "src/cli/bin.ts"), "serve", "test/fixtures/whoami.ts", "--port", "0", "--user", "root"],
      {
        cwd: root,
        uid: nobody.uid,
        gid: nobody.gid
      }
    )
    expect((await exitOf(run)).code).toBe(2)
    expect(run.stderr()).toContain(
      `invalid value for --user: changing to uid 0, gid 0 needs root; this process runs as uid ${nobody.uid}`
    )
    expect(run.stdout()).not.toContain("listening on")
  })

  it("an unknown user is refused at startup, naming the flag", async () => {
    const run = cli("serve", "test/fixtures/whoami.ts", "--port", "0", "--user", "no-such-user-x")
    expect((await exitOf(run)).code).toBe(2)
    expect(run.stderr()).toContain("invalid value for --user: no such user: no-such-user-x")
  })
})
