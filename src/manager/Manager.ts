/**
 * The manager interface (servermgr's `ManagerInterface`): start, readyWait, health, stop and wait
 * for an external process, each an Effect; and a manager as a scoped Layer, started and ready
 * once acquired, stopped on release, so a stack of them starts in dependency order and stops in
 * reverse.
 *
 * @since 0.1.0
 */
import { Context, type Duration, Effect, Layer, type Scope } from "effect"
import type { WorkerError } from "../errors.ts"
import type { ExitStatus } from "../process/Exit.ts"

/**
 * Options of `start`.
 *
 * @since 0.1.0
 * @category models
 */
export interface StartOptions {
  /** Wait until ready (default true); when it is not, the process is stopped and start fails. */
  readonly wait?: boolean | undefined
  /** How long to wait (default: the manager's start timeout, 10 s unless configured). */
  readonly timeout?: Duration.Input | undefined
}

/**
 * Options of `stop`.
 *
 * @since 0.1.0
 * @category models
 */
export interface StopOptions {
  /** Wait until the process and its process group are gone (default true). */
  readonly wait?: boolean | undefined
}

/**
 * A managed process.
 *
 * @since 0.1.0
 * @category models
 */
export interface ManagerShape {
  /** The name used in errors and logs. */
  readonly name: string
  /**
   * Starts the process (a no-op while it runs; while a restart policy waits to restart it, it
   * starts it at once, in place of that restart), then, unless `wait: false`, waits until
   * ready. Fails with `WorkerError`: SpawnFailed, ExitedEarly, NotReady.
   */
  readonly start: (options?: StartOptions) => Effect.Effect<void, WorkerError>
  /**
   * Signals the process group (the manager's stop signal), waits the grace period, then
   * SIGKILLs what is left, and reaps. Turns off restarting. A no-op when nothing runs.
   */
  readonly stop: (options?: StopOptions) => Effect.Effect<void>
  /**
   * Waits until the process has exited and will not be restarted, with its exit status. Fails
   * with `WorkerError` when the restart policy gave up (RestartLimit), nothing was started
   * (NotStarted), or a stop did not see the exit of the process it killed (ExitUnknown).
   */
  readonly wait: Effect.Effect<ExitStatus, WorkerError>
  /** Runs the health probe once; fails with `WorkerError` (Unhealthy, or NotStarted / ExitedEarly). */
  readonly health: Effect.Effect<void, WorkerError>
  /**
   * Polls `health` until it passes, failing at once if the process exits, and after `timeout`
   * (default: the start timeout) killing it and failing with NotReady.
   */
  readonly readyWait: (timeout?: Duration.Input) => Effect.Effect<void, WorkerError>
  /** The pid of the running process, undefined when none runs (also once it has exited). */
  readonly pid: Effect.Effect<number | undefined>
}

/**
 * The manager service. One manager per Context under this key; a stack of several gives each
 * its own key (`layerAs`).
 *
 * @since 0.1.0
 * @category services
 */
export class Manager extends Context.Service<Manager, ManagerShape>()("effect-appserver/Manager") {}

/**
 * A Layer from a manager's constructor, under `key` (the `Manager` interface, or a service
 * whose shape extends it, such as `NginxManager`): acquiring it makes the manager, starts the
 * process and waits until it is ready; releasing it stops the process.
 *
 * @since 0.1.0
 * @category layers
 */
export const layerAs = <I, S extends ManagerShape, E, R>(
  key: Context.Key<I, S>,
  make: Effect.Effect<S, E, R | Scope.Scope>,
  options?: StartOptions
): Layer.Layer<I, E | WorkerError, Exclude<R, Scope.Scope>> =>
  Layer.effect(
    key,
    Effect.gen(function* () {
      const manager = yield* make
      // The stop runs before the manager's own finalizers, with the default (waiting) options.
      yield* Effect.addFinalizer(() => manager.stop())
      yield* manager.start({ wait: options?.wait ?? true, timeout: options?.timeout })
      return manager
    })
  )

/**
 * `layerAs(Manager, make, options)`.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = <E, R>(
  make: Effect.Effect<ManagerShape, E, R | Scope.Scope>,
  options?: StartOptions
): Layer.Layer<Manager, E | WorkerError, Exclude<R, Scope.Scope>> => layerAs(Manager, make, options)
