/**
 * The package as users install it: `npm pack` (which builds dist/ through the `prepare` script),
 * the tarball installed with its peers into a temporary project, a consumer type-checked against
 * the installed `.d.ts` and run, and the installed command serving apps from that project.
 *
 * The install is `npm ci --prefer-offline` from a lockfile made of this repository's: the peers
 * are the versions `npm ci` installed here, so their tarballs come from the npm cache and no
 * registry metadata is needed. Commands run on the Node that runs the tests (Node 24 under `npm
 * test`, from the `node` devDependency): its directory comes first on PATH, then this repository's
 * `node_modules/.bin`, so `npx` and the command's `#!/usr/bin/env -S node ...` line find it.
 */
import { execFile } from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { promisify } from "node:util"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "@effect/vitest"
import { exitOf, killAll, listening, root, spawnTracked } from "./helpers/cli.ts"

const bin = Path.join(root, "node_modules", ".bin")
const env = { PATH: [Path.dirname(process.execPath), bin, process.env.PATH ?? ""].join(Path.delimiter) }

/** Runs a command to completion within `ms`; fails with its output when it exits non-zero. */
const run = async (command: string, args: ReadonlyArray<string>, cwd: string, ms = 120_000): Promise<string> => {
  try {
    const { stdout } = await promisify(execFile)(command, [...args], {
      cwd,
      env: { ...process.env, ...env },
      timeout: ms,
      killSignal: "SIGKILL",
      maxBuffer: 16 * 1024 * 1024
    })
    return stdout
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string }
    throw new Error(`${command} ${args.join(" ")} failed in ${cwd}: ${String(error)}\n${stdout}\n${stderr}`)
  }
}

interface Packed {
  readonly filename: string
  readonly integrity: string
  readonly files: ReadonlyArray<{ readonly path: string; readonly mode: number }>
}

interface LockEntry {
  readonly version: string
  readonly [field: string]: unknown
}

interface Lock {
  name?: string
  readonly packages: Record<string, LockEntry | { readonly name?: string; readonly dependencies?: object }>
}

/** A program that uses the package as an app does: both servers and their typed failures. */
const consumer = `import * as Net from "node:net"
import { Context, Effect, Layer } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { AddressInUse, type BindError, Http1Server, InvalidOptions, ScgiServer } from "effect-appserver"

const app = Effect.succeed(HttpServerResponse.text("hello from the package"))

const serve = <E>(server: Layer.Layer<HttpServer.HttpServer, E>) =>
  Effect.map(Layer.build(HttpServer.serve(app).pipe(Layer.provideMerge(server))), (context) => {
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
    return address.port
  })

const scgiGet = (port: number) =>
  Effect.promise(
    () =>
      new Promise<string>((resolve, reject) => {
        const header = "CONTENT_LENGTH\\u00000\\u0000SCGI\\u00001\\u0000REQUEST_METHOD\\u0000GET\\u0000REQUEST_URI\\u0000/\\u0000"
        const socket = Net.connect(port, "127.0.0.1", () => socket.end(\`\${header.length}:\${header},\`))
        let received = ""
        socket.setEncoding("latin1").on("data", (chunk: string) => (received += chunk))
        socket.on("end", () => resolve(received)).on("error", reject)
      })
  )

const program = Effect.gen(function* () {
  const httpPort = yield* serve(Http1Server.layer({ host: "127.0.0.1", port: 0 }))
  const response = yield* Effect.promise(() => fetch(\`http://127.0.0.1:\${httpPort}/\`))
  const body = yield* Effect.promise(() => response.text())
  const scgi = yield* scgiGet(yield* serve(ScgiServer.layer({ host: "127.0.0.1", port: 0 })))
  // The HTTP server's port bound again, and an option out of range: typed failures.
  const taken: BindError | InvalidOptions = yield* Effect.flip(
    Layer.build(Http1Server.layer({ host: "127.0.0.1", port: httpPort }))
  )
  const invalid: BindError | InvalidOptions = yield* Effect.flip(Layer.build(ScgiServer.layer({ port: 70000 })))
  return {
    http: { status: response.status, body },
    scgi: scgi.split("\\r\\n")[0],
    taken: taken instanceof AddressInUse ? taken._tag : \`unexpected \${taken._tag}\`,
    invalid: invalid instanceof InvalidOptions ? invalid.option : \`unexpected \${invalid._tag}\`
  }
})

Effect.runPromise(Effect.scoped(program)).then(
  (report) => console.log(JSON.stringify(report)),
  (error: unknown) => {
    console.error(error)
    process.exitCode = 1
  }
)
`

/** What `npx effect-appserver serve app.ts` serves: the Node that runs it, its flags and pid. */
const appTs = `import { Effect } from "effect"
import * as HttpServerResponse from "effect/http/HttpServerResponse"

export default Effect.sync(() =>
  HttpServerResponse.jsonUnsafe({ node: process.version, execArgv: process.execArgv, pid: process.pid })
)
`

/** A plain JavaScript module exporting an HttpRouter layer, for the command run as systemd runs it. */
const routesJs = `import { Effect } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServerResponse from "effect/http/HttpServerResponse"

export default HttpRouter.add("GET", "/", Effect.succeed(HttpServerResponse.text("routes from app.js")))
`

const tsconfig = {
  compilerOptions: {
    target: "ES2023",
    // effect's own declarations name DOM types (CryptoKey)
    lib: ["ES2023", "DOM"],
    module: "NodeNext",
    moduleResolution: "NodeNext",
    strict: true,
    noEmit: true,
    verbatimModuleSyntax: true,
    erasableSyntaxOnly: true,
    // the installed declarations are checked too
    skipLibCheck: false,
    types: ["node"]
  },
  include: ["*.ts"]
}

let temp = ""
let project = ""
let packed: Packed

beforeAll(async () => {
  temp = await Fs.mkdtemp(Path.join(Os.tmpdir(), "effect-appserver-package-"))
  project = Path.join(temp, "app")
  await Fs.mkdir(project)
  const [pack] = JSON.parse(await run("npm", ["pack", "--json", "--pack-destination", temp], root)) as Array<Packed>
  packed = pack
  const manifest = JSON.parse(await Fs.readFile(Path.join(root, "package.json"), "utf8"))
  const lock = JSON.parse(await Fs.readFile(Path.join(root, "package-lock.json"), "utf8")) as Lock
  const peers = ["effect", "@effect/platform-node", "@types/node"]
  const dependencies: Record<string, string> = {
    ...Object.fromEntries(peers.map((name) => [name, (lock.packages[`node_modules/${name}`] as LockEntry).version])),
    "effect-appserver": `file:../${pack.filename}`
  }
  await Fs.writeFile(
    Path.join(project, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module", dependencies })
  )
  // This repository's lockfile with the project as its root and the tarball added; npm drops
  // the entries nothing depends on.
  lock.name = "consumer"
  lock.packages[""] = { name: "consumer", dependencies }
  lock.packages["node_modules/effect-appserver"] = {
    version: manifest.version,
    resolved: dependencies["effect-appserver"],
    integrity: pack.integrity,
    license: manifest.license,
    bin: manifest.bin,
    engines: manifest.engines,
    peerDependencies: manifest.peerDependencies
  }
  await Fs.writeFile(Path.join(project, "package-lock.json"), JSON.stringify(lock))
  await run("npm", ["ci", "--prefer-offline", "--no-audit", "--no-fund"], project)
  await Fs.writeFile(Path.join(project, "tsconfig.json"), JSON.stringify(tsconfig))
  await Fs.writeFile(Path.join(project, "main.ts"), consumer)
  await Fs.writeFile(Path.join(project, "app.ts"), appTs)
  await Fs.writeFile(Path.join(project, "app.js"), routesJs)
}, 240_000)

afterEach(killAll)

afterAll(async () => {
  killAll()
  if (temp !== "") await Fs.rm(temp, { recursive: true, force: true })
})

describe("the packed package", () => {
  it("ships built JavaScript, declarations and source maps, with an executable command", () => {
    const paths = packed.files.map((file) => file.path)
    expect(paths.filter((path) => !path.startsWith("dist/")).sort()).toEqual(["README.md", "package.json"])
    expect(paths).toEqual(
      expect.arrayContaining(["dist/index.js", "dist/index.d.ts", "dist/index.js.map", "dist/cli/bin.js"])
    )
    expect(paths.filter((path) => path.endsWith(".ts") && !path.endsWith(".d.ts"))).toEqual([])
    expect(packed.files.find((file) => file.path === "dist/cli/bin.js")?.mode).toBe(0o755)
  })

  it("installs with its peers satisfied and a single copy of effect", async () => {
    // npm ls fails on a missing or mismatched peer
    await run("npm", ["ls", "--all"], project)
    await expect(Fs.access(Path.join(project, "node_modules/effect-appserver/node_modules"))).rejects.toThrow()
    const installed = Path.join(project, "node_modules/effect-appserver/dist/cli/bin.js")
    expect((await Fs.readFile(installed, "utf8")).split("\n")[0]).toBe(
      "#!/usr/bin/env -S node --max-semi-space-size=16"
    )
    expect((await Fs.stat(installed)).mode & 0o111).not.toBe(0)
  })

  it("type-checks a consumer against the installed declarations", async () => {
    expect(await run(Path.join(bin, "tsc"), ["-p", "."], project)).toBe("")
  })

  it("runs the consumer: HTTP/1.1 and SCGI answer, failures are the exported classes", async () => {
    const out = await run(process.execPath, ["main.ts"], project, 30_000)
    expect(JSON.parse(out)).toEqual({
      http: { status: 200, body: "hello from the package" },
      scgi: "Status: 200 OK",
      taken: "AddressInUse",
      invalid: "port"
    })
  })

  it("npx effect-appserver serve app.ts answers 200 on this Node with the command's flags, and stops on SIGTERM", async () => {
    const server = spawnTracked("npx", ["--no", "effect-appserver", "serve", "app.ts", "--port", "0"], {
      cwd: project,
      env,
      group: true
    })
    const url = await listening(server, 30_000)
    const response = await fetch(url)
    expect(response.status).toBe(200)
    const served = (await response.json()) as { node: string; execArgv: Array<string>; pid: number }
    expect(served).toMatchObject({ node: process.version, execArgv: ["--max-semi-space-size=16"] })
    // npx runs npm, a shell, then the command: stopping the command ends npx with its exit code
    process.kill(served.pid, "SIGTERM")
    expect(await exitOf(server, 15_000)).toEqual({ code: 0, signal: null })
  })

  it("the installed bin run by its path serves a JavaScript module and exits 0 on SIGTERM", async () => {
    const server = spawnTracked(
      Path.join(project, "node_modules/.bin/effect-appserver"),
      ["serve", "app.js", "--port", "0"],
      { cwd: project, env }
    )
    const url = await listening(server, 30_000)
    const response = await fetch(url)
    expect({ status: response.status, body: await response.text() }).toEqual({
      status: 200,
      body: "routes from app.js"
    })
    server.child.kill("SIGTERM")
    expect(await exitOf(server)).toEqual({ code: 0, signal: null })
  })
})
