/**
 * The one-shot socket client the probes and address checks are built on: connect, write a
 * request, read until enough has arrived, close.
 *
 * @since 0.1.0
 */
import * as Net from "node:net"
import { Duration, Effect } from "effect"
import { describeEndpoint, type Endpoint } from "./Endpoint.ts"

/**
 * Why an exchange with an endpoint failed: the connect or the read failed (`code` is the errno
 * code, "ETIMEDOUT" for our own timeout), or the peer closed before answering enough.
 *
 * @since 0.1.0
 * @category errors
 */
export interface ExchangeFailure {
  readonly code: string
  readonly detail: string
  readonly cause?: unknown
}

/**
 * Connects to `endpoint`, writes `request` (if any), and reads until `enough` says the bytes
 * received so far suffice (or the peer closes), then closes the socket. Without a request it
 * succeeds with "" as soon as the connection is established. Bounded by `timeout`; interrupting
 * it destroys the socket.
 *
 * @since 0.1.0
 * @category exchanges
 */
export const exchange = (
  endpoint: Endpoint,
  options: {
    readonly request?: Uint8Array | string | undefined
    readonly enough?: ((received: string) => boolean) | undefined
    readonly timeout?: Duration.Input | undefined
  } = {}
): Effect.Effect<string, ExchangeFailure> =>
  Effect.callback<string, ExchangeFailure>((resume) => {
    const timeoutMillis = Duration.toMillis(Duration.fromInputUnsafe(options.timeout ?? "1 second"))
    const socket = "path" in endpoint ? Net.connect(endpoint.path) : Net.connect(endpoint.port, endpoint.host)
    let received = ""
    let done = false
    const finish = (result: Effect.Effect<string, ExchangeFailure>) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resume(result)
    }
    const timer = setTimeout(
      () =>
        finish(
          Effect.fail({
            code: "ETIMEDOUT",
            detail: `no answer from ${describeEndpoint(endpoint)} in ${timeoutMillis} ms`
          })
        ),
      timeoutMillis
    )
    socket.on("error", (error: NodeJS.ErrnoException) =>
      finish(
        Effect.fail({
          code: error.code ?? "EUNKNOWN",
          detail: `${describeEndpoint(endpoint)}: ${error.message}`,
          cause: error
        })
      )
    )
    socket.on("connect", () => {
      if (options.request === undefined) return finish(Effect.succeed(""))
      socket.write(options.request)
    })
    socket.setEncoding("latin1")
    socket.on("data", (chunk: string) => {
      received += chunk
      if (options.enough?.(received) ?? true) finish(Effect.succeed(received))
    })
    socket.on("end", () =>
      received === ""
        ? finish(Effect.fail({ code: "ECONNRESET", detail: `${describeEndpoint(endpoint)} closed without answering` }))
        : finish(Effect.succeed(received))
    )
    return Effect.sync(() => {
      done = true
      clearTimeout(timer)
      socket.destroy()
    })
  })
