/**
 * The two servers every conformance test runs on: Effect's own `NodeHttpServer.layerTest`, the
 * reference, and `Http1Server.layerTest`. A behaviour that differs fails on one side only.
 */
import * as Http from "node:http"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Effect, type FileSystem, Layer, type Path, type Scope } from "effect"
import type * as Etag from "effect/http/Etag"
import type { HttpClient } from "effect/http/HttpClient"
import type * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import { Http1Server } from "../../src/index.ts"

/** What both `layerTest`s provide. */
export type TestServices =
  | HttpServer.HttpServer
  | HttpClient
  | HttpPlatform.HttpPlatform
  | FileSystem.FileSystem
  | Path.Path
  | Etag.Generator

/** Each server: its `layerTest`, and a constructor of separate servers on ephemeral ports. */
export const servers: ReadonlyArray<
  readonly [
    name: string,
    layer: Layer.Layer<TestServices, unknown>,
    another: () => Layer.Layer<Exclude<TestServices, HttpClient>, unknown>
  ]
> = [
  ["NodeHttpServer", NodeHttpServer.layerTest, () => NodeHttpServer.layer(() => Http.createServer(), { port: 0 })],
  ["Http1Server", Http1Server.layerTest, () => Http1Server.layer({ host: "127.0.0.1", port: 0 })]
]

/**
 * Runs a test on `layer`. What the test builds in its scope (the served app) is released before
 * the server, as a program's `Layer` graph releases them.
 */
export const on =
  (layer: Layer.Layer<TestServices, unknown>) =>
  <A, E>(test: Effect.Effect<A, E, TestServices | Scope.Scope>): Effect.Effect<A, unknown> =>
    test.pipe(Effect.scoped, Effect.provide(layer))

/** Serves an `HttpRouter` app on the provided server for the rest of the scope, without request or listen logs. */
export const serveRoutes = <A, E, R>(routes: Layer.Layer<A, E, R>) =>
  Layer.build(HttpRouter.serve(routes, { disableLogger: true, disableListenLog: true }))

/** A server's TCP port (both test layers listen on loopback or all interfaces). */
export const portOf = (server: HttpServer.HttpServer["Service"]): number => {
  const address = server.address
  if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
  return address.port
}

/** The provided server's TCP port. */
export const serverPort: Effect.Effect<number, never, HttpServer.HttpServer> = Effect.map(HttpServer.HttpServer, portOf)
