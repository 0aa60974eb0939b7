/**
 * A manager for nginx (servermgr's `Nginx`): writes the configuration and the prefix directories
 * under a working directory, validates with `nginx -t` before starting and before each reload,
 * runs `nginx -p PREFIX -c CONF -g 'daemon off;'` (the nginx on PATH, or the one given), and is
 * healthy when its loopback-only `stub_status` location answers 200. Its error log goes to its
 * stderr, so what nginx said last is in the `WorkerError` of a failed start.
 *
 * @since 0.1.0
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Context, type Duration, Effect, type Layer, type Scope, Semaphore, Stream } from "effect"
import * as ChildProcess from "effect/process/ChildProcess"
import type { ChildProcessSpawner } from "effect/process/ChildProcessSpawner"
import { WorkerError } from "../errors.ts"
import { endpointFreeCheck } from "./Address.ts"
import { clientHost, describeEndpoint } from "./Endpoint.ts"
import * as Manager from "./Manager.ts"
import * as NginxConfig from "./NginxConfig.ts"
import * as Probe from "./Probe.ts"
import * as ProcessManager from "./ProcessManager.ts"

/**
 * What nginx to run and how.
 *
 * @since 0.1.0
 * @category models
 */
export interface NginxManagerOptions
  // Passed on to the process manager as they are (see ProcessManagerOptions).
  extends Pick<ProcessManager.ProcessManagerOptions, "readySchedule" | "restart" | "echo"> {
  /** The name in errors (default "nginx"). */
  readonly name?: string | undefined
  readonly config: NginxConfig.NginxConfig
  /** The prefix directory for nginx.conf, logs/ and temp/ (default: a fresh temporary one, removed on release). */
  readonly workDir?: string | undefined
  /** The nginx binary (default: nginx on PATH, then /usr/sbin, /usr/local/sbin, /usr/local/nginx/sbin). */
  readonly nginx?: string | undefined
  /**
   * Who nginx's workers run as when it starts as root (the `user` directive). Default: "root"
   * when we run as root, since "nobody" (nginx's default) may not enter a private prefix or
   * connect to a unix socket made by this user; none otherwise (it is ignored then).
   */
  readonly user?: string | undefined
  /** Seconds for its graceful stop (SIGQUIT) before SIGKILL (default 10). */
  readonly stopGrace?: Duration.Input | undefined
  /** The default timeout of `start` and `readyWait` (default 10 s). */
  readonly startTimeout?: Duration.Input | undefined
}

/**
 * A managed nginx.
 *
 * @since 0.1.0
 * @category models
 */
export interface NginxManagerShape extends Manager.ManagerShape {
  /** The prefix directory. */
  readonly prefix: string
  /** The configuration file nginx runs with. */
  readonly configFile: string
  /** The configuration in effect (the last one started or reloaded). */
  readonly config: Effect.Effect<NginxConfig.NginxConfig>
  /** `http://HOST:PORT` of the listen address, for a client on this host. */
  readonly url: Effect.Effect<string>
  /**
   * Validates `config` (default: the current one) with `nginx -t`, and when nginx runs, signals
   * it (SIGHUP) and waits until the new configuration answers, so the next request sees it; then
   * it is current. A configuration that `nginx -t` refuses, or that nginx fails to apply (a
   * listen address taken, say), fails with `WorkerError` (InvalidConfig, with what nginx said)
   * and changes nothing: nginx keeps serving the old one, which stays current and in the
   * configuration file.
   */
  readonly reload: (config?: NginxConfig.NginxConfig) => Effect.Effect<void, WorkerError>
}

/**
 * The NginxManager service, for Layers that provide one.
 *
 * @since 0.1.0
 * @category services
 */
export class NginxManager extends Context.Service<NginxManager, NginxManagerShape>()("effect-appserver/NginxManager") {}

const searched = ["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin", "/usr/bin"]

const executable = (file: string): boolean => {
  try {
    Fs.accessSync(file, Fs.constants.X_OK)
    return Fs.statSync(file).isFile()
  } catch {
    return false
  }
}

/**
 * The nginx binary: on PATH, then in the usual sbin directories; undefined when there is none.
 *
 * @since 0.1.0
 * @category finding
 */
export const findNginx = (): string | undefined =>
  [...(process.env.PATH ?? "").split(Path.delimiter).filter((dir) => dir !== ""), ...searched]
    .map((dir) => Path.join(dir, "nginx"))
    .find(executable)

/** The children of `pid` (Linux /proc; none elsewhere, where reload relies on the answer alone). */
const childrenOf = (pid: number): ReadonlyArray<number> => {
  let entries: ReadonlyArray<string>
  try {
    entries = Fs.readdirSync("/proc")
  } catch {
    return []
  }
  const children: Array<number> = []
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = Fs.readFileSync(`/proc/${entry}/stat`, "utf8")
      // After the parenthesised name: state, then the parent's pid.
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) children.push(Number(entry))
    } catch {
      // exited meanwhile
    }
  }
  return children
}

/** An old nginx worker has stopped accepting: exited, or retitled itself as shutting down. */
const shuttingDown = (pid: number): boolean => {
  try {
    // A zombie (exited, not yet reaped by the master) has an empty command line.
    const cmdline = Fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")
    return cmdline === "" || cmdline.includes("shutting down")
  } catch {
    return true
  }
}

/** The listen address as a client reaches it. */
const clientEndpoint = (config: NginxConfig.NginxConfig): { readonly host: string; readonly port: number } => ({
  host: clientHost(config.listen.host),
  port: config.listen.port
})

/** The size of `file`, 0 when it does not exist. */
const sizeOf = (file: string): number => {
  try {
    return Fs.statSync(file).size
  } catch {
    return 0
  }
}

/** What was written to `file` after its first `offset` bytes ("" when nothing, or no file). */
const readFrom = (file: string, offset: number): string => {
  try {
    const fd = Fs.openSync(file, "r")
    try {
      const length = Math.max(0, Fs.fstatSync(fd).size - offset)
      const buffer = Buffer.alloc(length)
      const read = Fs.readSync(fd, buffer, 0, length, offset)
      return buffer.toString("utf8", 0, read)
    } finally {
      Fs.closeSync(fd)
    }
  } catch {
    return ""
  }
}

/**
 * Makes a manager for nginx, not started: finds nginx and prepares the prefix directory. Fails
 * with `WorkerError` (SpawnFailed) when there is no nginx or the directory cannot be written.
 * Closing the scope stops nginx (and removes a temporary prefix).
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: NginxManagerOptions
): Effect.Effect<NginxManagerShape, WorkerError, ChildProcessSpawner | Scope.Scope> =>
  Effect.gen(function* () {
    const name = options.name ?? "nginx"
    const fail = (reason: WorkerError["reason"], detail: string, stderr = "", cause?: unknown) =>
      new WorkerError(cause === undefined ? { name, reason, detail, stderr } : { name, reason, detail, stderr, cause })
    const binary = options.nginx ?? findNginx()
    if (binary === undefined) {
      return yield* Effect.fail(fail("SpawnFailed", "nginx not found on PATH nor in /usr/sbin, /usr/local/sbin"))
    }
    const prefix = yield* Effect.acquireRelease(
      Effect.try({
        try: () => {
          const dir = options.workDir ?? Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-appserver-nginx-"))
          for (const sub of ["logs", "temp"]) Fs.mkdirSync(Path.join(dir, sub), { recursive: true })
          Fs.writeFileSync(Path.join(dir, "scgi_params"), NginxConfig.scgiParams)
          return Path.resolve(dir)
        },
        catch: (cause) => fail("SpawnFailed", `cannot prepare its directory: ${String(cause)}`, "", cause)
      }),
      // Registered before the process manager: finalizers run in reverse, so nginx is stopped
      // before its directory goes.
      (dir) =>
        options.workDir === undefined
          ? Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
          : Effect.void
    )
    const configFile = Path.join(prefix, "nginx.conf")
    const errorLog = Path.join(prefix, "logs", "error.log")
    const user = options.user ?? (process.getuid?.() === 0 ? "root" : undefined)
    const spawner = yield* Effect.context<ChildProcessSpawner>()
    let current = options.config
    let generation = 0
    /** The last generation a reload tried (never reused). */
    let attempted = 0
    const lock = yield* Semaphore.make(1)

    /** `nginx -t` of `file`: fails with InvalidConfig and what nginx said. */
    const test = (file: string) =>
      Effect.gen(function* () {
        const handle = yield* ChildProcess.make(binary, ["-t", "-p", `${prefix}/`, "-c", file, "-e", "stderr"], {
          stdin: "ignore"
        })
        const [output, code] = yield* Effect.all([Stream.mkString(Stream.decodeText(handle.all)), handle.exitCode], {
          concurrency: 2
        })
        if (code !== 0) return yield* Effect.fail(fail("InvalidConfig", "nginx -t refused the configuration", output))
      }).pipe(
        Effect.scoped,
        Effect.provideContext(spawner),
        Effect.catchTag("PlatformError", (error) =>
          Effect.fail(fail("SpawnFailed", `cannot run nginx -t: ${error.message}`, "", error))
        )
      )

    /**
     * Writes `config` as generation `next` to a candidate file, tests it, then puts it in place.
     * It does not make it current: a reload does that once nginx answers with it.
     */
    const install = (config: NginxConfig.NginxConfig, next: number) =>
      Effect.gen(function* () {
        const candidate = `${configFile}.new`
        yield* Effect.try({
          try: () => Fs.writeFileSync(candidate, NginxConfig.render(config, prefix, { generation: next, user })),
          catch: (cause) => fail("SpawnFailed", `cannot write ${candidate}: ${String(cause)}`, "", cause)
        })
        yield* test(candidate)
        yield* Effect.try({
          try: () => Fs.renameSync(candidate, configFile),
          catch: (cause) => fail("SpawnFailed", `cannot write ${configFile}: ${String(cause)}`, "", cause)
        })
      })

    const statusPath = (config: NginxConfig.NginxConfig) => config.statusPath ?? "/nginx_status"

    // The listen address may change on reload: the probe reads the current one.
    const probe = Probe.make(
      "nginx stub_status",
      Effect.suspend(() =>
        Probe.httpGet(clientEndpoint(current), statusPath(current), { probe: "nginx stub_status" }).pipe(
          Effect.flatMap((answer) =>
            answer.status === 200
              ? Effect.void
              : Effect.fail(new Probe.ProbeFailed({ probe: "nginx stub_status", detail: `status ${answer.status}` }))
          )
        )
      )
    )

    const manager = yield* ProcessManager.make({
      name,
      command: binary,
      args: ["-p", `${prefix}/`, "-c", configFile, "-e", "stderr", "-g", "daemon off;"],
      probe,
      // nginx's graceful shutdown: requests in progress finish, idle connections close.
      stopSignal: "SIGQUIT",
      stopGrace: options.stopGrace ?? "10 seconds",
      startTimeout: options.startTimeout,
      readySchedule: options.readySchedule,
      restart: options.restart,
      echo: options.echo,
      beforeStart: Effect.suspend(() =>
        endpointFreeCheck(clientEndpoint(current)).pipe(Effect.andThen(lock.withPermit(install(current, generation))))
      )
    })

    /** The generation the status location of `config` reports, or undefined when it does not answer. */
    const answering = (config: NginxConfig.NginxConfig) =>
      Probe.httpGet(clientEndpoint(config), statusPath(config)).pipe(
        Effect.map((answer) => /\nX-Nginx-Generation: (\d+)(?:\r?\n|$)/i.exec(answer.head)?.[1]),
        Effect.catch(() => Effect.succeed(undefined))
      )

    /** Puts the current configuration back in the file, after a reload that did not take. */
    const restore = Effect.sync(() => {
      try {
        Fs.writeFileSync(`${configFile}.new`, NginxConfig.render(current, prefix, { generation, user }))
        Fs.renameSync(`${configFile}.new`, configFile)
      } catch {
        // The file keeps the refused configuration; `current` is still right, and a start
        // writes it again.
      }
    })

    /** Signals nginx (running as `pid`) to load generation `next` of `config`, and waits until it answers. */
    const apply = (pid: number, config: NginxConfig.NginxConfig, next: number, logMark: number) =>
      Effect.gen(function* () {
        const oldWorkers = childrenOf(pid)
        yield* Effect.try({
          try: () => process.kill(pid, "SIGHUP"),
          catch: (cause) => fail("Unhealthy", `cannot signal nginx (pid ${pid}) to reload`, "", cause)
        })
        // nginx that cannot apply the new configuration logs why as [emerg] and keeps its old
        // workers: fail then, with its words. A bind that fails is retried for a while first
        // (5 times, 500 ms apart: ngx_open_listening_sockets): fail once nginx has given up,
        // so that nothing it logs about this reload comes after, into the next one's log.
        const refused = Effect.gen(function* () {
          let said = readFrom(errorLog, logMark)
          if (!/\[emerg\]/.test(said)) return
          while (/try again to bind\(\)/.test(said) && !/still could not bind\(\)/.test(said)) {
            yield* Effect.sleep("20 millis")
            said = readFrom(errorLog, logMark)
          }
          return yield* Effect.fail(
            fail("InvalidConfig", `nginx did not apply configuration ${next}; the old one stays in effect`, said)
          )
        })
        // The master starts the new workers, then tells the old ones to quit; until an old
        // worker has closed its listening socket, a new connection may still reach it and see
        // the old configuration. An old worker retitles itself "worker process is shutting
        // down" right before closing it (ngx_worker_process_cycle): wait for that (or its
        // exit), then until the new configuration answers.
        const wanted = String(next)
        yield* Effect.gen(function* () {
          while (!oldWorkers.every(shuttingDown)) {
            yield* refused
            yield* Effect.sleep("2 millis")
          }
          yield* Effect.sleep("5 millis")
          while ((yield* answering(config)) !== wanted) {
            yield* refused
            yield* Effect.sleep("5 millis")
          }
        }).pipe(
          Effect.timeoutOrElse({
            duration: options.startTimeout ?? "10 seconds",
            orElse: () =>
              Effect.fail(
                fail(
                  "NotReady",
                  `the reloaded configuration ${next} did not answer in time`,
                  readFrom(errorLog, logMark)
                )
              )
          })
        )
      })

    const reload = (config?: NginxConfig.NginxConfig): Effect.Effect<void, WorkerError> =>
      lock.withPermit(
        Effect.gen(function* () {
          const wanted = config ?? current
          // Never a number used before: a reload that timed out may still be applied by nginx
          // later, and the next one would then see its own number answering too early.
          const next = ++attempted
          const logMark = sizeOf(errorLog)
          yield* install(wanted, next)
          const pid = yield* manager.pid
          if (pid !== undefined) yield* apply(pid, wanted, next, logMark).pipe(Effect.tapError(() => restore))
          current = wanted
          generation = next
        })
      )

    return {
      ...manager,
      prefix,
      configFile,
      config: Effect.sync(() => current),
      url: Effect.sync(() => `http://${describeEndpoint(clientEndpoint(current))}`),
      reload
    }
  })

/**
 * nginx as a Layer providing `NginxManager`: its configuration validated, nginx started and its
 * status location answering once acquired; stopped (gracefully) on release.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: NginxManagerOptions,
  startOptions?: Manager.StartOptions
): Layer.Layer<NginxManager, WorkerError, ChildProcessSpawner> =>
  Manager.layerAs(NginxManager, make(options), startOptions)

/**
 * nginx as a Layer under a `Manager` key of one's own (its manager interface only).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerAs = <I>(
  key: Context.Key<I, Manager.ManagerShape>,
  options: NginxManagerOptions,
  startOptions?: Manager.StartOptions
): Layer.Layer<I, WorkerError, ChildProcessSpawner> => Manager.layerAs(key, make(options), startOptions)
