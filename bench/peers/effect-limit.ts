/**
 * The second yardstick, the limit of any server that runs the app as Effect's HTTP app: the
 * framing of bench/peers/limit.ts (bench/peers/framing.ts), and for each request what running an
 * `Effect<HttpServerResponse, E, HttpServerRequest>` cannot avoid (bench/peers/effectFloor.ts).
 *
 * Usage: node bench/peers/effect-limit.ts --host 127.0.0.1 --port 8080
 */
import * as Net from "node:net"
import { httpDate } from "../../src/wire/httpDate.ts"
import { encodeResponse, respond } from "./effectFloor.ts"
import { type FramedRequest, serveFramed } from "./framing.ts"
import { parseListenArgs, readyLine } from "./listenArgs.ts"

/** The header fields of a head (request line first), by lower-case name. */
const fieldsOf = (head: string): Record<string, string> => {
  const fields: Record<string, string> = {}
  for (const line of head.split("\r\n").slice(1)) {
    const colon = line.indexOf(":")
    if (colon > 0) fields[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim()
  }
  return fields
}

const answer = (framed: FramedRequest): Buffer => {
  const head = framed.head
  const line = head.slice(0, head.indexOf("\r\n"))
  const space = line.indexOf(" ")
  const response = respond({
    method: line.slice(0, space),
    url: line.slice(space + 1, line.lastIndexOf(" ")),
    headers: () => fieldsOf(head),
    body: framed.body
  })
  // RFC 9110 §6.6.1: the Date field, as the limit sends it.
  const date = `date: ${httpDate()}\r\n`
  return encodeResponse("HTTP/1.1 ", response, framed.close ? `${date}connection: close\r\n` : date)
}

const { host, port } = parseListenArgs()
const server = Net.createServer({ noDelay: true }, (socket) => serveFramed(socket, answer))
process.on("SIGTERM", () => process.exit(0))
process.on("SIGINT", () => process.exit(0))
server.listen(port, host, () => {
  console.log(readyLine(host, (server.address() as Net.AddressInfo).port))
})
