/**
 * Baseline peer for the nginx scenario: the echo contract over SCGI written directly against
 * node:net, the least a Node SCGI server can do (no framework, no limits, no timeouts, no checks
 * beyond what the contract needs). Behind nginx it shows how fast any Node SCGI server can be on
 * the machine, as node:http does for HTTP.
 *
 *   GET  /      200 text/plain "Hello, World!"
 *   POST /echo  200, the request body with the request's Content-Type
 *
 * With `--effect` it is the SCGI Effect limit instead: the same, but each request runs the echo app
 * (examples/echo.ts) as Effect's HTTP app, at the least that costs (bench/peers/effectFloor.ts).
 *
 * Usage: node bench/peers/scgi-net.ts --host 127.0.0.1 --port 4000 [--effect]
 */

import type { AddressInfo } from "node:net"
import * as Net from "node:net"
import { inSharedBuffer } from "../../src/listen/SharedRead.ts"
import { parseListenArgs } from "./listenArgs.ts"
import { readInput } from "./readInput.ts"

const response = (status: string, type: string, body: Buffer): Buffer =>
  Buffer.concat([
    Buffer.from(`Status: ${status}\r\nContent-Type: ${type}\r\nContent-Length: ${body.length}\r\n\r\n`, "latin1"),
    body
  ])

const hello = response("200 OK", "text/plain", Buffer.from("Hello, World!"))
const notFound = response("404 Not Found", "text/plain", Buffer.from("Not Found"))

/** The request's variables, and where its body starts; undefined until the netstring is complete. */
const parseHead = (input: Buffer): { readonly variables: Map<string, string>; readonly bodyAt: number } | undefined => {
  const colon = input.indexOf(0x3a)
  if (colon === -1) return undefined
  const length = Number(input.toString("latin1", 0, colon))
  const end = colon + 1 + length
  if (input.length < end + 1) return undefined
  const parts = input.toString("latin1", colon + 1, end).split("\0")
  const variables = new Map<string, string>()
  for (let i = 0; i + 1 < parts.length; i += 2) variables.set(parts[i], parts[i + 1])
  return { variables, bodyAt: end + 1 }
}

/** The echo contract answered directly. */
const answerDirectly = (variables: ReadonlyMap<string, string>, body: Buffer): Buffer => {
  const method = variables.get("REQUEST_METHOD")
  const uri = variables.get("REQUEST_URI")
  if (uri === "/" && (method === "GET" || method === "HEAD")) return hello
  if (uri === "/echo" && method === "POST") {
    return response("200 OK", variables.get("CONTENT_TYPE") || "application/octet-stream", body)
  }
  return notFound
}

/** The HTTP header fields of the variables (HTTP_*, CONTENT_TYPE, CONTENT_LENGTH), by lower-case name. */
const fieldsOf = (variables: ReadonlyMap<string, string>): Record<string, string> => {
  const fields: Record<string, string> = {}
  for (const [name, value] of variables) {
    if (name.startsWith("HTTP_")) fields[name.slice(5).toLowerCase().replaceAll("_", "-")] = value
  }
  const type = variables.get("CONTENT_TYPE")
  if (type) fields["content-type"] = type
  const length = variables.get("CONTENT_LENGTH")
  if (length !== undefined && length !== "0") fields["content-length"] = length
  return fields
}

/**
 * `--effect`: the echo app run as Effect's HTTP app, at the least that costs. Loaded only then, so
 * the bare server loads no Effect.
 */
const floor = process.argv.includes("--effect") ? await import("./effectFloor.ts") : undefined

const answer =
  floor === undefined
    ? answerDirectly
    : (variables: ReadonlyMap<string, string>, body: Buffer): Buffer => {
        const reply = floor.respond({
          method: variables.get("REQUEST_METHOD") ?? "GET",
          url: variables.get("REQUEST_URI") ?? "/",
          headers: () => fieldsOf(variables),
          body
        })
        return floor.encodeResponse("Status: ", reply, "")
      }

const serve = (socket: Net.Socket): void => {
  let input: Buffer = Buffer.alloc(0)
  let answered = false
  socket.on("error", () => socket.destroy())
  readInput(socket, (chunk) => {
    if (answered) return
    input = input.length === 0 ? chunk : Buffer.concat([input, chunk])
    const head = parseHead(input)
    const length = head === undefined ? 0 : Number(head.variables.get("CONTENT_LENGTH") ?? "0")
    if (head === undefined || input.length < head.bodyAt + length) {
      // A request in pieces keeps what arrived; a read in the shared buffer is copied.
      if (inSharedBuffer(input)) input = Buffer.from(input)
      return
    }
    answered = true
    socket.write(answer(head.variables, input.subarray(head.bodyAt, head.bodyAt + length)))
    // The whole request is read and the front end sends nothing more: once the response is all in
    // the kernel, close at once (the FIN follows it), as effect-appserver does.
    if (socket.writableLength === 0) socket.destroy()
    else socket.end()
  })
}

const { host, port } = parseListenArgs(process.argv.slice(2).filter((arg) => arg !== "--effect"))
const server = Net.createServer({ noDelay: true }, serve)
server.listen(port, host, () => {
  const address = server.address() as AddressInfo
  console.log(`listening on scgi://${address.address}:${address.port}`)
})
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => server.close(() => process.exit(0)))
