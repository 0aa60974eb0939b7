/**
 * systemd's notify protocol (`Type=notify` units): READY=1 once serving, STATUS= lines,
 * STOPPING=1 when a graceful stop begins, WATCHDOG=1 pings while `WatchdogSec=` is set.
 *
 * The messages are datagrams on the unix socket NOTIFY_SOCKET names, which Node cannot send
 * (`dgram` has no unix sockets, `net` no datagrams). Rather than a native addon (a build step for
 * every user), each message is sent by systemd's own `systemd-notify`, which waits until systemd
 * has taken it (its barrier), so a message is never attributed to a process that has already
 * exited. The sender is then not the main process: the unit needs `NotifyAccess=all`.
 *
 * @since 0.1.0
 */
import * as ChildProcess from "node:child_process"
import { Effect, Schedule } from "effect"
import type * as Scope from "effect/Scope"

/**
 * How long one message may take to reach systemd before it is given up on (logged).
 */
const sendTimeoutMillis = 5_000

/**
 * Sends notifications while a notify socket is given.
 *
 * @since 0.1.0
 * @category models
 */
export interface Notifier {
  /** Sends `VARIABLE=VALUE` assignments in one message; failures are logged, never raised. */
  readonly notify: (assignments: ReadonlyArray<string>) => Effect.Effect<void>
  /** The watchdog interval systemd asked for (WATCHDOG_USEC for this process), ms; undefined for none. */
  readonly watchdogMillis: number | undefined
}

const run = (env: NodeJS.ProcessEnv, assignments: ReadonlyArray<string>): Effect.Effect<void> =>
  Effect.callback<void, Error>((resume) => {
    const child = ChildProcess.spawn("systemd-notify", [...assignments], {
      env,
      stdio: ["ignore", "ignore", "pipe"],
      timeout: sendTimeoutMillis
    })
    let stderr = ""
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk))
    child.on("error", (error) => resume(Effect.fail(error)))
    child.on("close", (code, signal) =>
      resume(
        code === 0
          ? Effect.void
          : Effect.fail(new Error(`systemd-notify ${signal ?? `exited with ${code}`}: ${stderr.trim()}`))
      )
    )
  }).pipe(
    Effect.catch((error) =>
      Effect.logWarning(`systemd notify (${assignments.join(" ")}) was not delivered: ${error.message}`)
    )
  )

/**
 * The notifier for this process when systemd gave it a notify socket (NOTIFY_SOCKET), else
 * undefined. The watchdog applies to it when WATCHDOG_USEC is set and WATCHDOG_PID, if set, is
 * its pid.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromEnvironment = (env: NodeJS.ProcessEnv = process.env): Notifier | undefined => {
  const socket = env.NOTIFY_SOCKET
  if (socket === undefined || socket === "") return undefined
  const usec = Number(env.WATCHDOG_USEC)
  const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid
  const childEnv = { ...env, NOTIFY_SOCKET: socket }
  return {
    notify: (assignments) => run(childEnv, assignments),
    watchdogMillis: forUs && Number.isFinite(usec) && usec > 0 ? usec / 1000 : undefined
  }
}

/**
 * The notify variables must not reach the processes this one starts (a pool's workers, an app's
 * own children): systemd would take their messages for the service's.
 *
 * @since 0.1.0
 */
export const unsetEnvironment = (): void => {
  for (const name of ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]) delete process.env[name]
}

/**
 * For the rest of the scope: READY=1 with `status`, WATCHDOG=1 at half the watchdog interval
 * (systemd's advice), and STOPPING=1 when the scope closes (the start of the graceful stop, when
 * this scope is closed before the server's).
 *
 * @since 0.1.0
 */
export const serving = (notifier: Notifier, status: string): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    yield* notifier.notify(["READY=1", `STATUS=${status}`, `MAINPID=${process.pid}`])
    yield* Effect.addFinalizer(() => notifier.notify(["STOPPING=1", "STATUS=stopping: finishing requests in progress"]))
    const watchdog = notifier.watchdogMillis
    if (watchdog !== undefined) {
      yield* Effect.forkScoped(
        Effect.repeat(notifier.notify(["WATCHDOG=1"]), Schedule.spaced(Math.max(10, Math.floor(watchdog / 2))))
      )
    }
  })
