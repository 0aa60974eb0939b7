/**
 * Conformance, file responses and cookies: `HttpServerResponse.file` and `fileWeb` (the platform's
 * Raw bodies, with their ETag, Last-Modified, length, slices and HEAD), and cookies set and read,
 * on `NodeHttpServer.layerTest` (the reference) and `Http1Server.layerTest` alike.
 */
import { Buffer } from "node:buffer"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, FileSystem, Path, Schema } from "effect"
import * as Cookies from "effect/http/Cookies"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpPlatform from "effect/http/HttpPlatform"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { rawExchange, request } from "../helpers/raw.ts"
import { on, serveRoutes, serverPort, servers } from "./servers.ts"

const content = "lorem ipsum dolor sit amet\n"

/** A text file with `content` in a temporary directory removed with the scope. */
const textFile = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const file = path.join(yield* fs.makeTempDirectoryScoped({ prefix: "conformance-" }), "text.txt")
  yield* fs.writeFileString(file, content)
  return file
})

/** The `set-cookie` lines of a raw GET, in the order sent. */
const setCookieLines = (path: string) =>
  Effect.flatMap(serverPort, (port) =>
    Effect.map(rawExchange(port, request(`GET ${path} HTTP/1.1`, "Host: x", "Connection: close")), (result) =>
      result.responses[0].fields.filter(([name]) => name.toLowerCase() === "set-cookie").map(([, v]) => v)
    )
  )

for (const [name, layer] of servers) {
  const test = on(layer)

  describe(`${name}: file responses`, () => {
    it.live("file: the platform's type, length and ETag (an overridden one too), and the bytes", () =>
      test(
        Effect.gen(function* () {
          const file = yield* textFile
          const response = yield* HttpServerResponse.file(file).pipe(
            Effect.updateService(HttpPlatform.HttpPlatform, (platform) => ({
              ...platform,
              fileResponse: (path, options) =>
                Effect.map(platform.fileResponse(path, options), (res) =>
                  HttpServerResponse.setHeader(res, "etag", '"fixed"')
                )
            }))
          )
          yield* HttpServer.serveEffect()(Effect.succeed(response))
          const res = yield* HttpClient.get("/")
          expect(res.status).toBe(200)
          expect(res.headers["content-type"]).toBe("text/plain")
          expect(res.headers["content-length"]).toBe(String(content.length))
          expect(res.headers.etag).toBe('"fixed"')
          expect(res.headers["last-modified"]).toMatch(/ GMT$/)
          expect(yield* res.text).toBe(content)
        })
      )
    )

    it.live("file with offset and bytesToRead sends that slice with its length", () =>
      test(
        Effect.gen(function* () {
          const file = yield* textFile
          yield* serveRoutes(
            HttpRouter.add("GET", "/slice", HttpServerResponse.file(file, { offset: 6, bytesToRead: 5 }))
          )
          const res = yield* HttpClient.get("/slice")
          expect([res.status, res.headers["content-length"], yield* res.text]).toEqual([200, "5", "ipsum"])
        })
      )
    )

    it.live("HEAD of a file: its headers and length, and no body", () =>
      test(
        Effect.gen(function* () {
          const file = yield* textFile
          yield* serveRoutes(HttpRouter.add("GET", "/file", HttpServerResponse.file(file)))
          const port = yield* serverPort
          const result = yield* rawExchange(
            port,
            [request("HEAD /file HTTP/1.1", "Host: x"), request("GET /file HTTP/1.1", "Host: x")],
            { responses: 2, headIndexes: [0] }
          )
          const [head, get] = result.responses
          expect([head.status, head.header("content-length"), head.header("etag")]).toEqual([
            200,
            String(content.length),
            get.header("etag")
          ])
          expect(get.body.toString()).toBe(content)
        })
      )
    )

    it.live("fileWeb: a web File's type, size and Last-Modified, with an overridden ETag", () =>
      test(
        Effect.gen(function* () {
          const modified = new Date("2024-05-06T07:08:09Z")
          const file = new File(["web file"], "web.txt", { type: "text/plain", lastModified: modified.getTime() })
          yield* HttpServerResponse.fileWeb(file).pipe(
            Effect.updateService(HttpPlatform.HttpPlatform, (platform) => ({
              ...platform,
              fileWebResponse: (file, options) =>
                Effect.map(platform.fileWebResponse(file, options), (res) =>
                  HttpServerResponse.setHeader(res, "etag", 'W/"web"')
                )
            })),
            Effect.map((response) => Effect.succeed(response)),
            Effect.flatMap(HttpServer.serveEffect())
          )
          const res = yield* HttpClient.get("/")
          expect(res.status).toBe(200)
          expect(res.headers["content-type"]).toBe("text/plain")
          expect(res.headers["content-length"]).toBe("8")
          expect(res.headers["last-modified"]).toBe(modified.toUTCString())
          expect(res.headers.etag).toBe('W/"web"')
          expect(yield* res.text).toBe("web file")
        })
      )
    )
  })

  describe(`${name}: cookies`, () => {
    it.live("setCookie: every attribute reaches the client", () =>
      test(
        Effect.gen(function* () {
          const options = {
            httpOnly: true,
            secure: true,
            sameSite: "strict",
            partitioned: true,
            path: "/app",
            domain: "example.org",
            expires: new Date(Date.UTC(2030, 0, 2, 3, 4, 5)),
            maxAge: "10 minutes"
          } as const
          yield* serveRoutes(
            HttpRouter.add(
              "GET",
              "/login",
              HttpServerResponse.empty().pipe(
                HttpServerResponse.setCookieUnsafe("plain", "1"),
                HttpServerResponse.setCookieUnsafe("session", "s3cr3t", options)
              )
            )
          )
          const res = yield* HttpClient.get("/login")
          expect(res.cookies.toJSON()).toEqual(
            Cookies.fromReadonlyRecord({
              plain: Cookies.makeCookieUnsafe("plain", "1"),
              session: Cookies.makeCookieUnsafe("session", "s3cr3t", { ...options, maxAge: Duration.minutes(10) })
            }).toJSON()
          )
        })
      )
    )

    it.live("each cookie is its own Set-Cookie line; an app's set-cookie header comes after them", () =>
      test(
        Effect.gen(function* () {
          yield* serveRoutes(
            HttpRouter.add(
              "GET",
              "/many",
              HttpServerResponse.text("ok", { headers: { "set-cookie": "raw=from-header" } }).pipe(
                HttpServerResponse.setCookieUnsafe("a", "1"),
                HttpServerResponse.setCookieUnsafe("b", "2"),
                HttpServerResponse.expireCookieUnsafe("old")
              )
            )
          )
          const lines = yield* setCookieLines("/many")
          expect(lines.map((line) => line.split(";")[0])).toEqual(["a=1", "b=2", "old=", "raw=from-header"])
          expect(lines[2]).toContain("Max-Age=0")
        })
      )
    )

    it.live("the app reads the request's cookies, also through schemaCookies", () =>
      test(
        Effect.gen(function* () {
          const Session = Schema.Struct({ session: Schema.String, theme: Schema.optional(Schema.String) })
          yield* serveRoutes(
            HttpRouter.add(
              "GET",
              "/me",
              Effect.gen(function* () {
                const request = yield* HttpServerRequest.HttpServerRequest
                const decoded = yield* HttpServerRequest.schemaCookies(Session)
                return HttpServerResponse.jsonUnsafe({ raw: request.cookies, decoded })
              })
            )
          )
          const port = yield* serverPort
          const result = yield* rawExchange(
            port,
            request("GET /me HTTP/1.1", "Host: x", "Connection: close", "Cookie: session=abc; theme=dark%20blue")
          )
          expect(JSON.parse(Buffer.from(result.responses[0].body).toString())).toEqual({
            raw: { session: "abc", theme: "dark blue" },
            decoded: { session: "abc", theme: "dark blue" }
          })
        })
      )
    )
  })
}
