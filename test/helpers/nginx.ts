/**
 * Running a real nginx in front of a server for a test (and for the benchmark).
 *
 * Everything nginx writes (pid, logs, temp files) goes into a fresh temporary directory, so it
 * runs without touching /etc or /var and as any user. `startNginx` is the Promise API; `nginx`
 * is the same as an Effect scoped resource.
 *
 * Availability: tests use `nginxGate()`. Outside CI a missing nginx skips them with a message;
 * under `CI=true` it does not skip, and the gate's own check fails.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect } from "effect"
import type * as Scope from "effect/Scope"
import { scgiParams as upstreamScgiParams } from "../../src/manager/NginxConfig.ts"
import { findNginx } from "../../src/manager/NginxManager.ts"

/** Where nginx sends the requests. */
export type Upstream =
  | { readonly protocol: "scgi"; readonly port: number }
  | { readonly protocol: "scgi"; readonly path: string }
  /** proxy_pass over HTTP/1.1 with an `upstream` block; `keepalive` idle upstream connections (0: none). */
  | { readonly protocol: "http"; readonly port: number; readonly keepalive?: number }

export interface NginxConfig {
  /** The generated `location /` passes to this upstream. */
  readonly upstream?: Upstream
  /**
   * A whole `server { ... }` block to use instead of the generated one. `{{listen}}` in it stands
   * for the address nginx must listen on (`127.0.0.1:PORT`). Relative includes such as
   * `include scgi_params;` find the copy in the temporary directory.
   */
  readonly server?: string
  /** Directives added inside the generated `server` block. */
  readonly serverDirectives?: string
  /** `master_process on` with one worker (as in production), or one process doing both (default). */
  readonly masterProcess?: boolean
  /** With masterProcess (default 1). */
  readonly workerProcesses?: number
  /**
   * With masterProcess, as root: the user nginx's workers run as (nginx's `user` directive), as
   * a packaged nginx's do (`www-data` on Debian). Default: root, which can reach anything.
   */
  readonly workerUser?: string
  readonly workerConnections?: number
  /** Write an access log in the temporary directory (default true; the benchmark turns it off). */
  readonly accessLog?: boolean
  /** How long to wait for nginx to accept connections (default 10 s). */
  readonly startTimeoutMs?: number
  /** Called with the nginx process as soon as it is spawned (the benchmark tracks its children). */
  readonly onSpawn?: (child: ChildProcess) => void
}

export interface Nginx {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  readonly url: string
  readonly port: number
  readonly pid: number
  /** The temporary directory holding nginx.conf and the logs. */
  readonly dir: string
  /** The generated nginx.conf. */
  readonly config: string
  /** The error log so far. */
  readonly errorLog: () => Promise<string>
  /** Whether the nginx process (the master, with masterProcess) is still running. */
  readonly alive: () => boolean
  /** SIGKILL to nginx's process group at once, for synchronous exit handlers; `stop` still cleans up. */
  readonly kill: () => void
  /** SIGTERM (nginx's fast shutdown), SIGKILL after `graceMs`, then removes the directory. */
  readonly stop: (graceMs?: number) => Promise<void>
}

let binaryCache: string | null | undefined

/**
 * The nginx binary: NGINX_BIN when set (only it), else what NginxManager finds (PATH, then the
 * usual sbin directories); undefined if it does not run. (NGINX_BIN=/nonexistent shows what
 * happens without nginx.) Tests of NginxManager pass it as its `nginx` option.
 */
export const nginxBinary = (): string | undefined => {
  if (binaryCache !== undefined) return binaryCache ?? undefined
  const fromEnv = process.env.NGINX_BIN
  const candidate = fromEnv !== undefined && fromEnv !== "" ? fromEnv : findNginx()
  // `nginx -v` prints the version on stderr and exits 0.
  const found =
    candidate !== undefined &&
    existsSync(candidate) &&
    spawnSync(candidate, ["-v"], { stdio: "ignore", timeout: 5000 }).status === 0
      ? candidate
      : undefined
  binaryCache = found ?? null
  return found
}

export const nginxAvailable = (): boolean => nginxBinary() !== undefined

/** `nginx version: nginx/1.22.1`, or undefined. */
export const nginxVersion = (): string | undefined => {
  const binary = nginxBinary()
  if (binary === undefined) return undefined
  return spawnSync(binary, ["-v"], { encoding: "utf8", timeout: 5000 }).stderr.trim()
}

/** Under CI a missing nginx must fail the tests, not skip them. */
export const inCI = (): boolean => {
  const ci = process.env.CI
  return ci !== undefined && ci !== "" && ci !== "0" && ci.toLowerCase() !== "false"
}

/**
 * For `describe.skipIf(gate.skip)`: skip only when nginx is missing outside CI, saying so on stderr.
 * `gate.mustCheck` is true under CI, for a test asserting `gate.available`.
 */
export const nginxGate = (): { readonly available: boolean; readonly skip: boolean; readonly mustCheck: boolean } => {
  const available = nginxAvailable()
  const ci = inCI()
  if (!available && !ci) {
    process.stderr.write(
      "nginx not found (PATH, /usr/sbin/nginx, NGINX_BIN): the nginx end-to-end tests are skipped. " +
        "Install nginx (Debian: apt-get install nginx-light) to run them; under CI=true they fail instead.\n"
    )
  }
  return { available, skip: !available && !ci, mustCheck: ci }
}

/** The system's scgi_params next to the binary's configuration, or the upstream default. */
const scgiParams = async (): Promise<string> => {
  for (const file of [
    "/etc/nginx/scgi_params",
    "/usr/local/nginx/conf/scgi_params",
    "/usr/local/etc/nginx/scgi_params"
  ]) {
    if (existsSync(file)) return readFile(file, "utf8")
  }
  return upstreamScgiParams
}

const indent = (text: string, spaces: number): string =>
  text
    .split("\n")
    .map((line) => (line === "" ? line : `${" ".repeat(spaces)}${line}`))
    .join("\n")

/** The `server` block (and the `upstream` block it needs) for `config.upstream`. */
const generatedServer = (upstream: Upstream, extra: string | undefined): string => {
  const keepalive = upstream.protocol === "http" ? (upstream.keepalive ?? 32) : 0
  const pass =
    upstream.protocol === "scgi"
      ? [
          "include scgi_params;",
          `scgi_pass ${"path" in upstream ? `unix:${upstream.path}` : `127.0.0.1:${upstream.port}`};`
        ]
      : [
          "proxy_pass http://backend;",
          "proxy_set_header Host $http_host;",
          // keep-alive to the upstream needs HTTP/1.1 and no "Connection: close" from nginx;
          // without it nginx's default is HTTP/1.0 and a connection per request
          ...(keepalive > 0 ? ["proxy_http_version 1.1;", 'proxy_set_header Connection "";'] : [])
        ]
  const upstreamBlock =
    upstream.protocol === "http"
      ? `upstream backend {\n  server 127.0.0.1:${upstream.port};\n${keepalive > 0 ? `  keepalive ${keepalive};\n` : ""}}\n\n`
      : ""
  return `${upstreamBlock}server {
  listen {{listen}};
  server_name localhost;
${extra === undefined ? "" : `${indent(extra, 2)}\n`}  location / {
${indent(pass.join("\n"), 4)}
  }
}`
}

/** The whole nginx.conf, every path inside `dir`. */
export const renderNginxConfig = (config: NginxConfig, dir: string, port: number): string => {
  const server =
    config.server ??
    (config.upstream === undefined ? undefined : generatedServer(config.upstream, config.serverDirectives))
  if (server === undefined) throw new Error("startNginx needs an upstream or a server block")
  const file = (name: string) => Path.join(dir, name)
  const master = config.masterProcess === true
  // As root, nginx's workers would run as "nobody", who cannot enter the 0700 temporary directory
  // or connect to a unix socket the tests create; the `user` directive matters only then.
  const asRoot =
    process.getuid?.() === 0 && master ? `user ${config.workerUser === undefined ? "root" : config.workerUser};\n` : ""
  return `# generated by test/helpers/nginx.ts
${asRoot}daemon off;
master_process ${master ? "on" : "off"};
worker_processes ${config.workerProcesses ?? 1};
pid ${file("nginx.pid")};
error_log ${file("error.log")} warn;

events {
  worker_connections ${config.workerConnections ?? 1024};
}

http {
  access_log ${config.accessLog === false ? "off" : `${file("access.log")}`};
  client_body_temp_path ${file("client_body_temp")};
  proxy_temp_path ${file("proxy_temp")};
  scgi_temp_path ${file("scgi_temp")};
  fastcgi_temp_path ${file("fastcgi_temp")};
  uwsgi_temp_path ${file("uwsgi_temp")};
  client_max_body_size 64m;
  default_type application/octet-stream;

${indent(server.replaceAll("{{listen}}", `127.0.0.1:${port}`), 2)}
}
`
}

/** A free TCP port on 127.0.0.1 (another process could take it before nginx binds; retried). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = Net.createServer()
    probe.once("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      probe.close(() => resolve(port))
    })
  })

const canConnect = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = Net.connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

const hasExited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null

const exitedWithin = (child: ChildProcess, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (hasExited(child)) return resolve(true)
    const timer = setTimeout(() => resolve(false), ms)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve(true)
    })
  })

/** Signals nginx's whole process group (master and workers: it is started detached). */
const signalGroup = (child: ChildProcess, signal: NodeJS.Signals): void => {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // already gone
  }
}

const readIfExists = async (file: string): Promise<string> => {
  try {
    return await readFile(file, "utf8")
  } catch {
    return ""
  }
}

class NginxStartError extends Error {
  readonly addressInUse: boolean
  constructor(message: string, addressInUse: boolean) {
    super(message)
    this.addressInUse = addressInUse
  }
}

const launch = async (config: NginxConfig, binary: string, dir: string): Promise<Nginx> => {
  const port = await freePort()
  const text = renderNginxConfig(config, dir, port)
  const confFile = Path.join(dir, "nginx.conf")
  const errorFile = Path.join(dir, "error.log")
  await writeFile(confFile, text)
  // -e (nginx >= 1.19.5): the log for errors before the configuration's error_log is open.
  const child = spawn(binary, ["-p", `${dir}/`, "-c", confFile, "-e", errorFile], {
    stdio: ["ignore", "pipe", "pipe"],
    // its own process group, so stopping it reaches the workers even if the master is killed
    detached: true
  })
  config.onSpawn?.(child)
  let output = ""
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (output += chunk))
  let spawnError: Error | undefined
  child.once("error", (error) => (spawnError = error))

  const stop = async (graceMs = 5000): Promise<void> => {
    if (!hasExited(child)) {
      signalGroup(child, "SIGTERM")
      if (!(await exitedWithin(child, graceMs))) {
        signalGroup(child, "SIGKILL")
        await exitedWithin(child, 2000)
      }
    }
    // workers of a master that exited on its own
    signalGroup(child, "SIGKILL")
  }

  const deadline = Date.now() + (config.startTimeoutMs ?? 10_000)
  for (;;) {
    if (spawnError !== undefined || hasExited(child)) {
      await exitedWithin(child, 1000)
      const log = await readIfExists(errorFile)
      const why = spawnError?.message ?? `exited with ${child.signalCode ?? child.exitCode}`
      await stop(0)
      throw new NginxStartError(
        `nginx ${why} before accepting connections\n--- output ---\n${output}\n--- error.log ---\n${log}\n--- nginx.conf ---\n${text}`,
        /Address already in use/.test(output + log)
      )
    }
    if (await canConnect(port)) break
    if (Date.now() > deadline) {
      await stop(0)
      const log = await readIfExists(errorFile)
      throw new NginxStartError(`nginx did not accept connections on ${port} in time\n${output}\n${log}`, false)
    }
    await sleep(20)
  }
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    dir,
    config: text,
    errorLog: () => readIfExists(errorFile),
    alive: () => !hasExited(child),
    kill: () => signalGroup(child, "SIGKILL"),
    stop: async (graceMs) => {
      await stop(graceMs)
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/**
 * Starts nginx with a generated configuration in a fresh temporary directory and waits until it
 * accepts connections. Fails with nginx's output and error log if it exits first.
 */
export const startNginx = async (config: NginxConfig): Promise<Nginx> => {
  const binary = nginxBinary()
  if (binary === undefined) throw new Error("nginx is not installed (looked in PATH, NGINX_BIN and /usr/sbin)")
  const dir = await mkdtemp(Path.join(Os.tmpdir(), "effect-appserver-nginx-"))
  // workers of another user must enter it (for their temporary files)
  if (config.workerUser !== undefined) await chmod(dir, 0o755)
  try {
    await writeFile(Path.join(dir, "scgi_params"), await scgiParams())
    for (let attempt = 1; ; attempt++) {
      try {
        return await launch(config, binary, dir)
      } catch (error) {
        // the free port was taken between probing and nginx's bind: try another
        if (!(error instanceof NginxStartError && error.addressInUse && attempt < 3)) throw error
      }
    }
  } catch (error) {
    await rm(dir, { recursive: true, force: true })
    throw error
  }
}

/** `startNginx` as a scoped resource: nginx stops and its directory goes when the scope closes. */
export const nginx = (config: NginxConfig): Effect.Effect<Nginx, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => startNginx(config),
      catch: (error) => (error instanceof Error ? error : new Error(String(error)))
    }),
    (running) => Effect.promise(() => running.stop())
  )
