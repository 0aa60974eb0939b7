/**
 * Baseline peer: the echo contract written directly against node:http, no framework.
 *
 *   GET  /      200 text/plain "Hello, World!"
 *   POST /echo  200, the request body with the request's Content-Type
 *
 * Usage: node bench/peers/node-http.ts --host 127.0.0.1 --port 8080
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { parseListenArgs, readyLine } from "./listenArgs.ts"

const hello = Buffer.from("Hello, World!")

const sendHello = (request: Http.IncomingMessage, response: Http.ServerResponse): void => {
  response.writeHead(200, { "content-type": "text/plain", "content-length": hello.length })
  response.end(request.method === "HEAD" ? undefined : hello)
}

const echo = (request: Http.IncomingMessage, response: Http.ServerResponse): void => {
  const chunks: Array<Buffer> = []
  request.on("data", (chunk: Buffer) => chunks.push(chunk))
  request.on("end", () => {
    const body = Buffer.concat(chunks)
    response.writeHead(200, {
      "content-type": request.headers["content-type"] ?? "application/octet-stream",
      "content-length": body.length
    })
    response.end(body)
  })
}

const handle = (request: Http.IncomingMessage, response: Http.ServerResponse): void => {
  const { method, url } = request
  if (url === "/" && (method === "GET" || method === "HEAD")) sendHello(request, response)
  else if (url === "/echo" && method === "POST") echo(request, response)
  else response.writeHead(404, { "content-type": "text/plain" }).end("Not Found")
}

const { host, port } = parseListenArgs()
// Node's default 5 s keep-alive timeout would close idle connections while the memory probe is
// still opening the rest of its 10,000; under wrk the connections are never idle, so this only
// matters for that probe.
const server = Http.createServer({ keepAliveTimeout: 120_000 }, handle)
server.listen(port, host, () => {
  console.log(readyLine(host, (server.address() as AddressInfo).port))
})
