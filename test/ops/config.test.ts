/**
 * `layerConfig`: server options read from Effect `Config` (as `NodeHttpServer.layerConfig` takes
 * them), decoded with the options' own Schemas; a bad value names its variable.
 */
import { describe, expect, it } from "@effect/vitest"
import { Config, ConfigProvider, Context, Effect, Layer } from "effect"
import * as HttpServer from "effect/http/HttpServer"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { Http1Server, ScgiServer } from "../../src/index.ts"
import { rawExchange, request } from "../helpers/raw.ts"
import { scgi } from "../helpers/scgi.ts"

const echoLength = Effect.gen(function* () {
  const req = yield* HttpServerRequest
  const body = yield* req.text
  return HttpServerResponse.text(`${body.length}`)
})

const withEnv = (env: Record<string, string>) => Effect.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env })))

const portOf = (context: Context.Context<HttpServer.HttpServer>): number => {
  const address = Context.get(context, HttpServer.HttpServer).address
  if (address._tag === "UnixPathAddress") throw new Error("expected a TCP address")
  return address.port
}

describe("layerConfig", () => {
  it.live("Http1Server: serves with options read from Config and applies them", () =>
    Effect.gen(function* () {
      const context = yield* Layer.build(
        HttpServer.serve(echoLength).pipe(
          Layer.provideMerge(
            Http1Server.layerConfig({
              host: Config.String("HOST"),
              port: Config.Int("PORT"),
              maxBodySize: Config.Int("MAX_BODY_SIZE"),
              serverName: Config.String("SERVER_NAME").pipe(Config.withDefault("from-config"))
            })
          )
        )
      ).pipe(withEnv({ HOST: "127.0.0.1", PORT: "0", MAX_BODY_SIZE: "10" }))
      const port = portOf(context)
      const small = yield* rawExchange(
        port,
        `${request("POST / HTTP/1.1", "Host: x", "Content-Length: 5", "Connection: close")}hello`
      )
      expect(small.responses.map((r) => r.status)).toEqual([200])
      expect(small.responses[0].header("server")).toBe("from-config")
      const large = yield* rawExchange(
        port,
        `${request("POST / HTTP/1.1", "Host: x", "Content-Length: 11", "Connection: close")}hello world`
      )
      expect(large.responses.map((r) => r.status)).toEqual([413])
    })
  )

  it.effect("a value the option's Schema refuses is a ConfigError naming the variable and the option", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Layer.build(
          Http1Server.layerConfig({ port: Config.Int("PORT"), maxHeaderSize: Config.Int("MAX_HEADER") })
        ).pipe(withEnv({ PORT: "0", MAX_HEADER: "10" }))
      )
      expect(error._tag).toBe("ConfigError")
      expect(error.message).toContain("MAX_HEADER")
      expect(error.message).toContain("maxHeaderSize")
    })
  )

  it.effect("a value Config itself cannot read is its ConfigError, naming the variable", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Layer.build(Http1Server.layerConfig({ port: Config.Int("PORT") })).pipe(withEnv({ PORT: "eighty" }))
      )
      expect(error._tag).toBe("ConfigError")
      expect(error.message).toContain("PORT")
    })
  )

  it.effect("options that are valid one by one but not together are InvalidOptions naming the option", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Layer.build(Http1Server.layerConfig({ socketMode: Config.Int("MODE"), port: Config.Int("PORT") })).pipe(
          withEnv({ MODE: "432", PORT: "0" })
        )
      )
      expect(error._tag).toBe("InvalidOptions")
      expect(error.message).toContain("socketMode")
    })
  )

  it.live("ScgiServer: serves with options read from Config", () =>
    Effect.gen(function* () {
      const context = yield* Layer.build(
        HttpServer.serve(echoLength).pipe(
          Layer.provideMerge(
            ScgiServer.layerConfig({
              host: Config.String("SCGI_HOST"),
              port: Config.Int("SCGI_PORT"),
              maxBodySize: Config.Int("SCGI_MAX_BODY")
            })
          )
        )
      ).pipe(withEnv({ SCGI_HOST: "127.0.0.1", SCGI_PORT: "0", SCGI_MAX_BODY: "4" }))
      const port = portOf(context)
      const ok = yield* scgi({ port }, { REQUEST_METHOD: "POST", REQUEST_URI: "/" }, "abcd")
      expect(ok.status).toBe(200)
      expect(ok.body.toString()).toBe("4")
      const tooLarge = yield* scgi({ port }, { REQUEST_METHOD: "POST", REQUEST_URI: "/" }, "abcde")
      expect(tooLarge.status).toBe(413)
    })
  )
})
