/**
 * `--host H --port P` for the peer servers, the same flags the appserver CLI takes, so the
 * harness starts all three servers the same way.
 */
import { parseArgs } from "node:util"

export interface ListenArgs {
  readonly host: string
  readonly port: number
}

export const parseListenArgs = (argv: ReadonlyArray<string> = process.argv.slice(2)): ListenArgs => {
  const { values } = parseArgs({
    args: [...argv],
    options: { host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "8080" } }
  })
  const port = Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port must be an integer in 0..65535, got ${values.port}`)
  }
  return { host: values.host, port }
}

/** The ready line the harness waits for, identical for every server. */
export const readyLine = (host: string, port: number): string =>
  `listening on http://${host.includes(":") ? `[${host}]` : host}:${port}`
