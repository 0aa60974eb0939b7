/**
 * Is something listening there? servermgr's `address_in_use` and `address_free_check`, for TCP
 * addresses and unix socket paths.
 *
 * The test is a connect, as in servermgr: a port bound by a socket that does not listen counts
 * as free, since nothing there would answer a client either. Only a refused connect, a unix path
 * that does not exist, or no answer within the timeout mean free; any other failure (EACCES,
 * ENOTDIR, EMFILE...) says nothing about the address and fails with `WorkerError`.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { WorkerError } from "../errors.ts"
import { describeEndpoint, type Endpoint } from "./Endpoint.ts"
import { exchange } from "./Exchange.ts"

const toEndpoint = (hostOrPath: string, port: number | undefined): Endpoint =>
  port === undefined ? { path: hostOrPath } : { host: hostOrPath, port }

/** The connect failures that mean nothing listens there. */
const freeCodes: ReadonlySet<string> = new Set(["ECONNREFUSED", "ENOENT", "ETIMEDOUT"])

/** Whether something accepts connections at `endpoint`; fails when the connect cannot tell. */
const inUse = (endpoint: Endpoint): Effect.Effect<boolean, WorkerError> =>
  exchange(endpoint).pipe(
    Effect.as(true),
    Effect.catch((failure) =>
      freeCodes.has(failure.code)
        ? Effect.succeed(false)
        : Effect.fail(
            new WorkerError({
              name: describeEndpoint(endpoint),
              reason: "AddressCheckFailed",
              detail: `cannot tell whether ${describeEndpoint(endpoint)} is free: ${failure.code} (${failure.detail})`,
              stderr: "",
              cause: failure.cause ?? failure.code
            })
          )
    )
  )

/**
 * Whether something accepts connections at `host`:`port`, or at the unix socket `path` when no
 * port is given. A refused connect, a missing unix path or no answer within 1 s count as free;
 * any other connect failure fails with `WorkerError` (AddressCheckFailed) naming its code.
 *
 * @since 0.1.0
 * @category checks
 */
export const addressInUse: {
  (host: string, port: number): Effect.Effect<boolean, WorkerError>
  (path: string): Effect.Effect<boolean, WorkerError>
} = (hostOrPath: string, port?: number): Effect.Effect<boolean, WorkerError> => inUse(toEndpoint(hostOrPath, port))

/**
 * Fails with `WorkerError` (reason `AddressInUse`) when something accepts connections at
 * `host`:`port` (or at the unix socket `path`): run it before starting a server there, so a
 * stale server is reported as such rather than mistaken for the new one being ready. Fails with
 * AddressCheckFailed when the connect fails otherwise than as on a free address.
 *
 * @since 0.1.0
 * @category checks
 */
export const addressFreeCheck: {
  (host: string, port: number): Effect.Effect<void, WorkerError>
  (path: string): Effect.Effect<void, WorkerError>
} = (hostOrPath: string, port?: number): Effect.Effect<void, WorkerError> => {
  const endpoint = toEndpoint(hostOrPath, port)
  return inUse(endpoint).pipe(
    Effect.flatMap((used) =>
      used
        ? Effect.fail(
            new WorkerError({
              name: describeEndpoint(endpoint),
              reason: "AddressInUse",
              detail: `something already listens at ${describeEndpoint(endpoint)}`,
              stderr: ""
            })
          )
        : Effect.void
    )
  )
}

/**
 * `addressFreeCheck` of an `Endpoint`.
 *
 * @since 0.1.0
 * @category checks
 */
export const endpointFreeCheck = (endpoint: Endpoint): Effect.Effect<void, WorkerError> =>
  "path" in endpoint ? addressFreeCheck(endpoint.path) : addressFreeCheck(endpoint.host, endpoint.port)
