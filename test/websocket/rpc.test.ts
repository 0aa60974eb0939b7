/**
 * Effect RPC over WebSocket end to end: `RpcServer.layerHttp` with the WebSocket protocol served
 * by `HttpRouter.serve`, and `RpcClient` over `RpcClient.layerProtocolSocket` with a `ws`-backed
 * `Socket.layerWebSocket`: a request/response rpc, a streaming rpc, a typed failure and calls in
 * parallel, on both servers.
 */
import * as NodeWS from "@effect/platform-node/NodeWS"
import { describe, expect, it } from "@effect/vitest"
import { type Context, Effect, Layer, Schema, Stream } from "effect"
import * as Rpc from "effect/rpc/Rpc"
import * as RpcClient from "effect/rpc/RpcClient"
import * as RpcGroup from "effect/rpc/RpcGroup"
import * as RpcSerialization from "effect/rpc/RpcSerialization"
import * as RpcServer from "effect/rpc/RpcServer"
import * as Socket from "effect/socket/Socket"
import { on, serveRoutes, serverPort, servers } from "../conformance/servers.ts"

class Greet extends Rpc.make("Greet", { payload: { name: Schema.String }, success: Schema.String }) {}
class Count extends Rpc.make("Count", { payload: { to: Schema.Number }, success: Schema.Number, stream: true }) {}
class Refuse extends Rpc.make("Refuse", { payload: { why: Schema.String }, error: Schema.String }) {}

const Api = RpcGroup.make(Greet, Count, Refuse)

const handlers = Api.toLayer({
  Greet: ({ name }) => Effect.succeed(`Hello, ${name}!`),
  Count: ({ to }) => Stream.range(1, to).pipe(Stream.tap(() => Effect.sleep(1))),
  Refuse: ({ why }) => Effect.fail(`refused: ${why}`)
})

/** The RPC server at `/rpc` over WebSocket, NDJSON framed. */
const rpcRoutes = RpcServer.layerHttp({ group: Api, path: "/rpc", protocol: "websocket" }).pipe(
  Layer.provide(handlers),
  Layer.provide(RpcSerialization.layerNdjson)
)

/** A client for `Api` over a WebSocket to `url`, open for the rest of the scope. */
const clientFor = (url: string) =>
  Effect.gen(function* () {
    const protocol = yield* Layer.build(
      RpcClient.layerProtocolSocket().pipe(
        Layer.provide(Socket.layerWebSocket(url)),
        Layer.provide(NodeWS.layerWebSocketConstructor),
        Layer.provide(RpcSerialization.layerNdjson)
      )
    )
    return yield* RpcClient.make(Api).pipe(Effect.provideContext(protocol as Context.Context<RpcClient.Protocol>))
  })

for (const [name, layer] of servers) {
  describe(`${name}: Effect RPC over WebSocket`, () => {
    it.live("request/response, streaming, a typed failure and parallel calls", () =>
      on(layer)(
        Effect.gen(function* () {
          yield* serveRoutes(rpcRoutes)
          const client = yield* clientFor(`ws://127.0.0.1:${yield* serverPort}/rpc`)
          expect(yield* client.Greet({ name: "WebSocket" })).toBe("Hello, WebSocket!")
          expect(yield* Stream.runCollect(client.Count({ to: 5 }))).toEqual([1, 2, 3, 4, 5])
          expect(yield* Effect.flip(client.Refuse({ why: "no" }))).toBe("refused: no")
          const names = Array.from({ length: 50 }, (_, i) => `client ${i}`)
          const greetings = yield* Effect.forEach(names, (name) => client.Greet({ name }), { concurrency: "unbounded" })
          expect(greetings).toEqual(names.map((name) => `Hello, ${name}!`))
          const streams = yield* Effect.forEach([3, 10, 100], (to) => Stream.runCollect(client.Count({ to })), {
            concurrency: "unbounded"
          })
          expect(streams.map((values) => values.length)).toEqual([3, 10, 100])
        }).pipe(Effect.timeout("10 seconds"))
      )
    )
  })
}
