/**
 * The limit: a raw node:net responder that does the least an HTTP/1.1 server must for the echo
 * contract. It finds the end of each head, reads a Content-Length body, and answers; every
 * complete request in a read is answered in one write. No validation, no app, no timeouts: what
 * no real server can beat on this machine, the yardstick the others are reported against. What
 * it must send it sends: the Date field, which an origin server with a clock MUST send in every
 * 2xx, 3xx and 4xx response (RFC 9110 §6.6.1), formatted once a second as every server here does
 * (src/wire/httpDate.ts); the hello response is rebuilt when the date changes.
 *
 *   GET  /      200 text/plain "Hello, World!"
 *   POST /echo  200, the request body with the request's Content-Type
 *
 * With `--handoff-workers N` it is the limit of dispatch `primary` instead: a primary that
 * accepts (paused, unread) and hands each connection round-robin to one of N forked copies of
 * itself with Node's IPC handle passing, the mechanism effect-appserver's primary uses, and
 * nothing else (no load balancing, no queue, no bookkeeping).
 *
 * Usage: node bench/peers/limit.ts --host 127.0.0.1 --port 8080 [--handoff-workers N]
 */
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import { httpDate } from "../../src/wire/httpDate.ts"
import { type FramedRequest, header, serveFramed } from "./framing.ts"
import { parseListenArgs, readyLine } from "./listenArgs.ts"

/** The fixed responses of one second, rebuilt when the Date changes. */
let fixedDate = ""
let hello = Buffer.alloc(0)
let helloClose = Buffer.alloc(0)
let notFound = Buffer.alloc(0)

const fixed = (date: string): void => {
  fixedDate = date
  const ok = `HTTP/1.1 200 OK\r\nDate: ${date}\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n`
  hello = Buffer.from(`${ok}\r\nHello, World!`, "latin1")
  helloClose = Buffer.from(`${ok}Connection: close\r\n\r\nHello, World!`, "latin1")
  notFound = Buffer.from(`HTTP/1.1 404 Not Found\r\nDate: ${date}\r\nContent-Length: 0\r\n\r\n`, "latin1")
}

const answer = ({ head, body, close }: FramedRequest): Buffer => {
  const date = httpDate()
  if (date !== fixedDate) fixed(date)
  if (head.startsWith("GET / ")) return close ? helloClose : hello
  if (!head.startsWith("POST /echo ")) return notFound
  const type = header(head, "content-type:") ?? "application/octet-stream"
  return Buffer.concat([
    Buffer.from(
      `HTTP/1.1 200 OK\r\nDate: ${date}\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\n\r\n`,
      "latin1"
    ),
    body
  ])
}

const serve = (socket: Net.Socket): void => serveFramed(socket, answer)

/** `--handoff-workers N` and the listen flags after taking it out. */
const { workers, listenArgv } = (() => {
  const argv = process.argv.slice(2)
  const at = argv.indexOf("--handoff-workers")
  if (at === -1) return { workers: 0, listenArgv: argv }
  return { workers: Number(argv[at + 1]), listenArgv: [...argv.slice(0, at), ...argv.slice(at + 2)] }
})()

if (process.env.LIMIT_HANDOFF_WORKER === "1") {
  process.on("message", (_message: unknown, handle: unknown) => {
    if (handle instanceof Net.Socket) {
      serve(handle)
      handle.resume()
    }
  })
  process.on("disconnect", () => process.exit(0))
  process.send?.("ready")
} else {
  const { host, port } = parseListenArgs(listenArgv)
  if (!(Number.isInteger(workers) && workers >= 0)) throw new Error(`--handoff-workers: not a count: ${workers}`)
  const children = Array.from({ length: workers }, () =>
    ChildProcess.fork(import.meta.filename, [], {
      env: { ...process.env, LIMIT_HANDOFF_WORKER: "1" },
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
  )
  const ready = children.map((child) => new Promise<void>((resolve) => child.once("message", () => resolve())))
  let next = 0
  const server =
    workers === 0
      ? Net.createServer({ noDelay: true }, serve)
      : Net.createServer({ noDelay: true, pauseOnConnect: true }, (socket) => {
          const child = children[next++ % workers]
          child.send("connection", socket, { keepOpen: false })
        })
  const stop = (): void => {
    for (const child of children) child.kill("SIGKILL")
    process.exit(0)
  }
  process.on("SIGTERM", stop)
  process.on("SIGINT", stop)
  void Promise.all(ready).then(() =>
    server.listen(port, host, () => {
      console.log(readyLine(host, (server.address() as Net.AddressInfo).port))
    })
  )
}
