/**
 * Baseline peer for the nginx scenario: the echo contract over SCGI written directly against
 * node:net, the least a Node SCGI server can do (no framework, no limits, no timeouts, no checks
 * beyond what the contract needs). Behind nginx it shows how fast any Node SCGI server can be on
 * the machine, as node:http does for HTTP.
 *
 *   GET  /      200 text/plain "Hello, World!"
 *   POST /echo  200, the request body with the request's Content-Type
 *
 * Usage: node bench/peers/scgi-net.ts --host 127.0.0.1 --port 4000
 */

import type { AddressInfo } from "node:net"
import * as Net from "node:net"
import { parseListenArgs } from "./listenArgs.ts"

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

const serve = (socket: Net.Socket): void => {
  let input: Buffer = Buffer.alloc(0)
  socket.on("error", () => socket.destroy())
  socket.on("data", (chunk: Buffer) => {
    input = input.length === 0 ? chunk : Buffer.concat([input, chunk])
    const head = parseHead(input)
    if (head === undefined) return
    const length = Number(head.variables.get("CONTENT_LENGTH") ?? "0")
    if (input.length < head.bodyAt + length) return
    socket.removeAllListeners("data")
    const method = head.variables.get("REQUEST_METHOD")
    const uri = head.variables.get("REQUEST_URI")
    if (uri === "/" && (method === "GET" || method === "HEAD")) socket.write(hello)
    else if (uri === "/echo" && method === "POST") {
      const type = head.variables.get("CONTENT_TYPE") || "application/octet-stream"
      socket.write(response("200 OK", type, input.subarray(head.bodyAt, head.bodyAt + length)))
    } else socket.write(notFound)
    // The whole request is read and the front end sends nothing more: once the response is all in
    // the kernel, close at once (the FIN follows it), as effect-appserver does.
    if (socket.writableLength === 0) socket.destroy()
    else socket.end()
  })
}

const { host, port } = parseListenArgs()
const server = Net.createServer({ noDelay: true }, serve)
server.listen(port, host, () => {
  const address = server.address() as AddressInfo
  console.log(`listening on scgi://${address.address}:${address.port}`)
})
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => server.close(() => process.exit(0)))
