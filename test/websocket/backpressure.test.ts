/**
 * Flow control of an upgraded socket, on `NodeHttpServer.layerTest` (the reference) and
 * `Http1Server.layerTest` alike: while the app does not pull, the server stops reading the
 * connection once 64 KiB of messages wait (Effect's Socket contract), so a client that keeps
 * sending is held back by TCP instead of filling the server's memory; once the app pulls, every
 * message arrives, whole and in order, as bytes for binary and as strings for text.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { on, serveRoutes, serverPort, servers } from "../conformance/servers.ts"
import { connectWs } from "../helpers/ws.ts"

const messages = 48
const messageSize = 1024 * 1024

/**
 * Waits 1.5 s before pulling, then reads until it has all the bytes sent and answers with what
 * it saw: the byte count, whether each binary message was a Uint8Array, the text messages, and
 * whether the bytes came in order (message i is filled with i).
 */
const slowReader = Effect.flatMap(HttpServerRequest, (request) =>
  Effect.flatMap(request.upgrade, (socket) =>
    Effect.scoped(
      Effect.gen(function* () {
        const { pull } = yield* socket.reader
        const writer = yield* socket.writer
        yield* Effect.sleep(1_500)
        let bytes = 0
        let binary = 0
        let inOrder = true
        const texts: Array<string> = []
        while (bytes < messages * messageSize || texts.length === 0) {
          for (const message of yield* pull) {
            if (typeof message === "string") {
              texts.push(message)
              continue
            }
            if (!(message instanceof Uint8Array) || message.byteLength !== messageSize) inOrder = false
            else if (message[0] !== binary % 256 || message[messageSize - 1] !== binary % 256) inOrder = false
            binary++
            bytes += message.byteLength
          }
        }
        yield* writer.write(JSON.stringify({ bytes, binary, inOrder, texts }))
        return HttpServerResponse.empty()
      })
    )
  )
)

const routes = HttpRouter.addAll([HttpRouter.route("GET", "/slow", slowReader)])

for (const [name, layer] of servers) {
  describe(`${name}: WebSocket flow control`, () => {
    it.live(
      "a socket the app does not pull stops being read: the client is held back, then every message arrives in order",
      () =>
        on(layer)(
          Effect.gen(function* () {
            yield* serveRoutes(routes)
            const client = yield* connectWs(`ws://127.0.0.1:${yield* serverPort}/slow`)
            for (let i = 0; i < messages; i++) client.ws.send(Buffer.alloc(messageSize, i % 256))
            client.ws.send("the end")
            yield* Effect.sleep(1_000)
            // 48 MiB is more than loopback's socket buffers hold: what the server did not read
            // is still queued in the client
            expect(client.ws.bufferedAmount).toBeGreaterThan(8 * messageSize)
            const report = yield* client.receive(20_000)
            expect(JSON.parse(report.data.toString())).toEqual({
              bytes: messages * messageSize,
              binary: messages,
              inOrder: true,
              texts: ["the end"]
            })
          })
        ),
      30_000
    )
  })
}
