/**
 * WebSocket echo with a real client (`ws`): text stays text and binary stays binary, a large
 * message comes back whole, over HTTP on `NodeHttpServer.layerTest` (the reference) and
 * `Http1Server.layerTest` alike, and over HTTPS on both.
 */
import * as Https from "node:https"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import { Http1Server } from "../../src/index.ts"
import { on, portOf, serveRoutes, serverPort, servers } from "../conformance/servers.ts"
import { type Certs, makeCerts } from "../helpers/tls.ts"
import { connectWs, type WsClient } from "../helpers/ws.ts"
import { echoRoutes } from "./apps.ts"

/** Text, binary with every byte value, an empty message and 1 MiB, each echoed as it was sent. */
const exchange = (client: WsClient) =>
  Effect.gen(function* () {
    expect(yield* client.echo("hello, world")).toEqual({ data: Buffer.from("hello, world"), binary: false })
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    expect(yield* client.echo(bytes)).toEqual({ data: bytes, binary: true })
    expect(yield* client.echo("")).toEqual({ data: Buffer.alloc(0), binary: false })
    const large = Buffer.alloc(1024 * 1024, 0x61)
    const back = yield* client.echo(large, 5_000)
    expect(back.binary).toBe(true)
    expect(back.data.equals(large)).toBe(true)
    // Several messages in one go come back in order.
    for (let i = 0; i < 20; i++) client.ws.send(`message ${i}`)
    for (let i = 0; i < 20; i++) expect((yield* client.receive()).data.toString()).toBe(`message ${i}`)
    client.ws.close(1000, "done")
    expect(yield* client.closed()).toMatchObject({ code: 1000, reason: "done" })
  })

for (const [name, layer] of servers) {
  describe(`${name}: WebSocket echo over HTTP`, () => {
    it.live("echoes text as text and binary as binary, in order, a 1 MiB message whole", () =>
      on(layer)(
        Effect.gen(function* () {
          yield* serveRoutes(echoRoutes)
          const client = yield* connectWs(`ws://127.0.0.1:${yield* serverPort}/ws`)
          yield* exchange(client)
        })
      )
    )

    it.live("serves ordinary requests next to open WebSockets", () =>
      on(layer)(
        Effect.gen(function* () {
          yield* serveRoutes(echoRoutes)
          const port = yield* serverPort
          const a = yield* connectWs(`ws://127.0.0.1:${port}/ws`)
          const b = yield* connectWs(`ws://127.0.0.1:${port}/ws`)
          const response = yield* Effect.promise(() => fetch(`http://127.0.0.1:${port}/`))
          expect(yield* Effect.promise(() => response.text())).toBe("ok")
          expect((yield* a.echo("a")).data.toString()).toBe("a")
          expect((yield* b.echo("b")).data.toString()).toBe("b")
        })
      )
    )
  })
}

describe("WebSocket echo over HTTPS", () => {
  let certs: Certs
  beforeAll(() => {
    certs = makeCerts()
  })
  afterAll(() => {
    certs.remove()
  })

  const tlsServers = (): ReadonlyArray<readonly [string, Layer.Layer<HttpServer.HttpServer, unknown>]> => [
    [
      "NodeHttpServer",
      NodeHttpServer.layer(() => Https.createServer({ key: certs.server.key, cert: certs.server.cert }), {
        host: "127.0.0.1",
        port: 0
      })
    ],
    [
      "Http1Server",
      Http1Server.layer({ host: "127.0.0.1", port: 0, tls: { key: certs.server.key, cert: certs.server.cert } })
    ]
  ]

  for (const name of ["NodeHttpServer", "Http1Server"]) {
    it.live(`${name}: echoes over wss:// with the server's certificate verified`, () =>
      Effect.gen(function* () {
        const serverLayer = tlsServers().find(([n]) => n === name)![1]
        const context = yield* Layer.build(
          HttpRouter.serve(echoRoutes, { disableLogger: true, disableListenLog: true }).pipe(
            Layer.provideMerge(serverLayer)
          )
        )
        const port = portOf(Context.get(context, HttpServer.HttpServer))
        const client = yield* connectWs(`wss://127.0.0.1:${port}/ws`, { ca: certs.server.cert })
        expect((client.ws as unknown as { _socket: { encrypted?: boolean } })._socket.encrypted).toBe(true)
        yield* exchange(client)
      }).pipe(Effect.scoped)
    )
  }
})
