/**
 * PathDispatcher: apps mounted at path prefixes, served by the real server and reached with fetch
 * or raw requests (for targets fetch would normalise), plus the mount-table validation and the
 * dispatch.ts example.
 */
import { afterEach, describe, expect, expectTypeOf, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as HttpRouter from "effect/http/HttpRouter"
import * as HttpServer from "effect/http/HttpServer"
import type { HttpServerError } from "effect/http/HttpServerError"
import * as HttpServerRequest from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import dispatchExample, { makeApp } from "../../examples/dispatch.ts"
import { PathDispatcher } from "../../src/index.ts"
import { cli, exitOf, killAll, listening } from "../helpers/cli.ts"
import { rawExchange, request } from "../helpers/raw.ts"
import { type Provided, serveApp, serveLayer } from "../helpers/server.ts"

interface Seen {
  readonly app: string
  readonly url: string
  readonly originalUrl: string
  readonly prefix: string
}

/** An app that reports what it sees: its name, its URL, the original URL and its mount prefix. */
const echo = (app: string) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const prefix = yield* PathDispatcher.mountPrefix
    const seen: Seen = { app, url: request.url, originalUrl: request.originalUrl, prefix }
    return yield* HttpServerResponse.json(seen)
  })

const fetchSeen = (url: string) =>
  Effect.promise(async () => {
    const response = await fetch(url)
    const body = await response.text()
    return { status: response.status, seen: response.status === 200 ? (JSON.parse(body) as Seen) : body }
  })

/** What the app at `app` saw for `path`, or the status when it is not 200. */
const seenAt = (base: string, path: string) =>
  Effect.map(fetchSeen(`${base}${path}`), ({ status, seen }) =>
    typeof seen === "string" ? { status } : { app: seen.app, url: seen.url, prefix: seen.prefix }
  )

/** The same through a raw request line, for targets that fetch would normalise. */
const rawSeen = (port: number, target: string) =>
  Effect.map(
    rawExchange(port, request(`GET ${target} HTTP/1.1`, "Host: x", "Connection: close"), { responses: 1 }),
    (result) => {
      const response = result.responses[0]
      if (response.status !== 200) return { status: response.status }
      const seen = JSON.parse(response.body.toString("utf8")) as Seen
      return { app: seen.app, url: seen.url, prefix: seen.prefix }
    }
  )

const serveMounts = <const M extends { readonly [prefix: string]: PathDispatcher.App<unknown, Provided> }>(mounts: M) =>
  Effect.gen(function* () {
    const app = yield* PathDispatcher.make(mounts)
    return yield* serveApp(app)
  })

describe("PathDispatcher routing", () => {
  it.live("the longest matching prefix wins", () =>
    Effect.gen(function* () {
      const { url } = yield* serveMounts({ "/": echo("root"), "/a": echo("a"), "/a/b": echo("ab"), "/c/d": echo("cd") })
      expect(yield* seenAt(url, "/a/b/c")).toEqual({ app: "ab", url: "/c", prefix: "/a/b" })
      expect(yield* seenAt(url, "/a/b")).toEqual({ app: "ab", url: "/", prefix: "/a/b" })
      expect(yield* seenAt(url, "/a/bc")).toEqual({ app: "a", url: "/bc", prefix: "/a" })
      expect(yield* seenAt(url, "/a/x/b")).toEqual({ app: "a", url: "/x/b", prefix: "/a" })
      expect(yield* seenAt(url, "/c")).toEqual({ app: "root", url: "/c", prefix: "" })
      expect(yield* seenAt(url, "/c/d/e")).toEqual({ app: "cd", url: "/e", prefix: "/c/d" })
      expect(yield* seenAt(url, "/")).toEqual({ app: "root", url: "/", prefix: "" })
    })
  )

  it.live("a prefix matches only at a segment boundary", () =>
    Effect.gen(function* () {
      const withRoot = yield* serveMounts({ "/": echo("root"), "/blog": echo("blog") })
      for (const path of ["/blog", "/blog/", "/blog/x", "/blog?x=1"]) {
        expect({ path, app: (yield* seenAt(withRoot.url, path)).app }).toEqual({ path, app: "blog" })
      }
      for (const path of ["/blogger", "/blog-x", "/blog.html", "/blo", "/xblog", "/Blog"]) {
        expect({ path, seen: yield* seenAt(withRoot.url, path) }).toEqual({
          path,
          seen: { app: "root", url: path, prefix: "" }
        })
      }
      const withoutRoot = yield* serveMounts({ "/blog": echo("blog") })
      expect(yield* seenAt(withoutRoot.url, "/blogger")).toEqual({ status: 404 })
      expect((yield* seenAt(withoutRoot.url, "/blog/x")).app).toBe("blog")
    })
  )

  it.live("the mounted app sees its URL relative to the prefix, query included; originalUrl stays whole", () =>
    Effect.gen(function* () {
      const { url, port } = yield* serveMounts({ "/blog": echo("blog"), "/api/v1": echo("api") })
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["/blog/x?q=1", "/x?q=1"],
        ["/blog", "/"],
        ["/blog/", "/"],
        ["/blog?q", "/?q"],
        ["/blog?q=/blog/x", "/?q=/blog/x"],
        ["/blog/a/b/?x=1&y=2", "/a/b/?x=1&y=2"],
        ["/blog//x", "//x"],
        ["/api/v1/users?id=1", "/users?id=1"]
      ]
      for (const [path, relative] of cases) {
        const { seen } = yield* fetchSeen(`${url}${path}`)
        expect({ path, seen }).toEqual({
          path,
          seen: {
            app: path.startsWith("/blog") ? "blog" : "api",
            url: relative,
            originalUrl: `${url}${path}`,
            prefix: path.startsWith("/blog") ? "/blog" : "/api/v1"
          }
        })
      }
      // A query is not part of the path: "/blog" in it does not make a match.
      expect(yield* rawSeen(port, "/x?/blog")).toEqual({ status: 404 })
    })
  )

  it.live("the mounted app reads its prefix; outside any mount the prefix is empty", () =>
    Effect.gen(function* () {
      expect(yield* PathDispatcher.mountPrefix).toBe("")
      const { url } = yield* serveMounts({ "/": echo("root"), "/docs": echo("docs") })
      expect((yield* seenAt(url, "/docs/guide")).prefix).toBe("/docs")
      expect((yield* seenAt(url, "/other")).prefix).toBe("")
      // served directly, not mounted
      const direct = yield* serveApp(echo("direct"))
      expect(yield* seenAt(direct.url, "/docs/guide")).toEqual({ app: "direct", url: "/docs/guide", prefix: "" })
    })
  )

  it.live("nested dispatchers accumulate the prefix and strip one level each", () =>
    Effect.gen(function* () {
      const inner = yield* PathDispatcher.make({ "/": echo("inner-root"), "/b": echo("b"), "/b/c": echo("bc") })
      const { url } = yield* serveMounts({ "/": echo("root"), "/a": inner })
      expect(yield* seenAt(url, "/a/b/x?y=1")).toEqual({ app: "b", url: "/x?y=1", prefix: "/a/b" })
      expect(yield* seenAt(url, "/a/b/c/d")).toEqual({ app: "bc", url: "/d", prefix: "/a/b/c" })
      expect(yield* seenAt(url, "/a/b")).toEqual({ app: "b", url: "/", prefix: "/a/b" })
      // the inner root keeps the outer prefix
      expect(yield* seenAt(url, "/a/bee")).toEqual({ app: "inner-root", url: "/bee", prefix: "/a" })
      expect(yield* seenAt(url, "/a")).toEqual({ app: "inner-root", url: "/", prefix: "/a" })
      expect(yield* seenAt(url, "/b/x")).toEqual({ app: "root", url: "/b/x", prefix: "" })
    })
  )

  it.live("answers 404 (RouteNotFound) when nothing matches and there is no root app", () =>
    Effect.gen(function* () {
      const { url, port } = yield* serveMounts({ "/blog": echo("blog"), "/api": echo("api") })
      for (const path of ["/", "/other", "/blogs", "/ap", "/apis/x"]) {
        const response = yield* Effect.promise(() => fetch(`${url}${path}`))
        const body = yield* Effect.promise(() => response.text())
        expect({ path, status: response.status, body }).toEqual({ path, status: 404, body: "" })
      }
      // an empty table answers everything with 404
      const empty = yield* serveMounts({})
      expect(yield* seenAt(empty.url, "/")).toEqual({ status: 404 })
      // OPTIONS * goes to the root app when there is one, else 404
      const asterisk = request("OPTIONS * HTTP/1.1", "Host: x", "Connection: close")
      expect((yield* rawExchange(port, asterisk, { responses: 1 })).responses[0].status).toBe(404)
      const withRoot = yield* serveMounts({ "/": echo("root"), "/blog": echo("blog") })
      const answered = (yield* rawExchange(withRoot.port, asterisk, { responses: 1 })).responses[0]
      expect(answered.status).toBe(200)
      expect(JSON.parse(answered.body.toString("utf8"))).toMatchObject({ app: "root", url: "*" })
    })
  )

  it.effect("fails with HttpServerError / RouteNotFound, as HttpRouter does for an unmatched path", () =>
    Effect.gen(function* () {
      const app = yield* PathDispatcher.make({ "/blog": echo("blog") })
      const request = HttpServerRequest.fromWeb(new Request("http://localhost/blogger?x"))
      const error = yield* Effect.flip(Effect.provideService(app, HttpServerRequest.HttpServerRequest, request))
      expect(error._tag).toBe("HttpServerError")
      expect((error as HttpServerError).reason._tag).toBe("RouteNotFound")
      expect((error as HttpServerError).reason.request).toBe(request)
    })
  )

  it.live("matches the raw path: a percent-encoded slash is not a segment boundary", () =>
    Effect.gen(function* () {
      const withRoot = yield* serveMounts({ "/": echo("root"), "/blog": echo("blog") })
      expect(yield* seenAt(withRoot.url, "/blog%2Fx")).toEqual({ app: "root", url: "/blog%2Fx", prefix: "" })
      expect(yield* seenAt(withRoot.url, "/blog%2fx")).toEqual({ app: "root", url: "/blog%2fx", prefix: "" })
      // an encoded character of the prefix is not decoded either
      expect(yield* seenAt(withRoot.url, "/bl%6Fg/x")).toEqual({ app: "root", url: "/bl%6Fg/x", prefix: "" })
      // after the prefix, the rest reaches the app still encoded
      expect(yield* seenAt(withRoot.url, "/blog/a%2Fb")).toEqual({ app: "blog", url: "/a%2Fb", prefix: "/blog" })
      const withoutRoot = yield* serveMounts({ "/blog": echo("blog") })
      expect(yield* seenAt(withoutRoot.url, "/blog%2Fx")).toEqual({ status: 404 })
    })
  )

  it.live("percent-encodings in a prefix match in either hex case", () =>
    Effect.gen(function* () {
      const { url } = yield* serveMounts({ "/caf%c3%A9": echo("cafe") })
      for (const path of ["/caf%C3%A9/menu", "/caf%c3%a9/menu", "/caf%C3%a9/menu"]) {
        expect({ path, seen: yield* seenAt(url, path) }).toEqual({
          path,
          seen: { app: "cafe", url: "/menu", prefix: "/caf%C3%A9" }
        })
      }
      expect(yield* seenAt(url, "/caf%C3%A8/menu")).toEqual({ status: 404 })
      expect(yield* seenAt(url, "/cafe/menu")).toEqual({ status: 404 })
    })
  )

  it.live("dot segments are not resolved: the app at the prefix gets them", () =>
    Effect.gen(function* () {
      const { port } = yield* serveMounts({ "/": echo("root"), "/blog": echo("blog"), "/admin": echo("admin") })
      expect(yield* rawSeen(port, "/blog/../admin")).toEqual({ app: "blog", url: "/../admin", prefix: "/blog" })
      expect(yield* rawSeen(port, "/x/../admin")).toEqual({ app: "root", url: "/x/../admin", prefix: "" })
    })
  )

  it.live("an HttpRouter mounted at a prefix routes on the relative path", () =>
    Effect.gen(function* () {
      const routes = Layer.mergeAll(
        HttpRouter.add(
          "GET",
          "/users/:id",
          Effect.gen(function* () {
            const { id } = yield* HttpRouter.params
            const request = yield* HttpServerRequest.HttpServerRequest
            const prefix = yield* PathDispatcher.mountPrefix
            return HttpServerResponse.text(`user ${id} at ${request.url} under ${prefix}`)
          })
        ),
        HttpRouter.add("GET", "/", HttpServerResponse.text("api index"))
      )
      const api = yield* HttpRouter.toHttpEffect(routes)
      const app = yield* PathDispatcher.make({ "/api/v1": api, "/": echo("root") })
      const { url } = yield* serveLayer(HttpServer.serve(app))
      const get = (path: string) =>
        Effect.promise(async () => {
          const response = await fetch(`${url}${path}`)
          return { status: response.status, body: await response.text() }
        })
      expect(yield* get("/api/v1/users/7?x=1")).toEqual({ status: 200, body: "user 7 at /users/7?x=1 under /api/v1" })
      expect(yield* get("/api/v1")).toEqual({ status: 200, body: "api index" })
      expect(yield* get("/api/v1/")).toEqual({ status: 200, body: "api index" })
      // the router's own 404 for a path it has no route for
      expect(yield* get("/api/v1/nowhere")).toEqual({ status: 404, body: "" })
      // the router's paths are relative: /users/7 outside the prefix is the root app's
      expect(JSON.parse((yield* get("/users/7")).body)).toMatchObject({ app: "root", url: "/users/7" })
    })
  )
})

describe("PathDispatcher.make validation", () => {
  const app = Effect.succeed(HttpServerResponse.text("x"))

  const refusals: ReadonlyArray<readonly [string, PathDispatcher.InvalidMountReason]> = [
    ["", "NotAbsolute"],
    ["blog", "NotAbsolute"],
    ["blog/", "NotAbsolute"],
    ["*", "NotAbsolute"],
    ["/blog?x=1", "QueryOrFragment"],
    ["/blog#top", "QueryOrFragment"],
    ["/?", "QueryOrFragment"],
    ["/blog/", "TrailingSlash"],
    ["/a/b/", "TrailingSlash"],
    ["//", "TrailingSlash"],
    ["//blog", "EmptySegment"],
    ["/a//b", "EmptySegment"],
    ["/.", "DotSegment"],
    ["/..", "DotSegment"],
    ["/a/./b", "DotSegment"],
    ["/a/../b", "DotSegment"],
    ["/my blog", "InvalidCharacter"],
    ["/café", "InvalidCharacter"],
    ["/a\\b", "InvalidCharacter"],
    ["/a<b>", "InvalidCharacter"],
    ["/a[0]", "InvalidCharacter"],
    ["/100%", "InvalidPercentEncoding"],
    ["/a%2", "InvalidPercentEncoding"],
    ["/a%zz", "InvalidPercentEncoding"],
    ["/%62log", "EncodedUnreserved"],
    ["/a%2Eb", "EncodedUnreserved"],
    ["/a%7e", "EncodedUnreserved"]
  ]

  it.effect("refuses each invalid prefix with InvalidMount naming the prefix and the reason", () =>
    Effect.gen(function* () {
      for (const [prefix, reason] of refusals) {
        const error = yield* Effect.flip(PathDispatcher.make({ "/": app, [prefix]: app }))
        expect(error).toBeInstanceOf(PathDispatcher.InvalidMount)
        expect({ tag: error._tag, prefix: error.prefix, reason: error.reason }).toEqual({
          tag: "InvalidMount",
          prefix,
          reason
        })
        expect(error.message).toContain(JSON.stringify(prefix))
      }
    })
  )

  it.effect("refuses two prefixes that differ only in the case of percent-encoded hex digits", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(PathDispatcher.make({ "/caf%c3%a9": app, "/caf%C3%A9": app }))
      expect(error).toMatchObject({ _tag: "InvalidMount", prefix: "/caf%C3%A9", reason: "Duplicate" })
      expect(error.message).toBe('invalid mount prefix "/caf%C3%A9": another prefix of the table is the same path')
    })
  )

  it.effect("accepts path characters, sub-delims and percent-encoded reserved or non-ASCII bytes", () =>
    Effect.gen(function* () {
      for (const prefix of [
        "/",
        "/a",
        "/a-b_c.d~e",
        "/v1.2",
        "/a/b/c",
        "/~user",
        "/a:b@c",
        "/a;v=1",
        "/x!$&'()*+,=",
        "/a%2Fb",
        "/caf%C3%A9",
        "/..."
      ]) {
        const made = yield* Effect.result(PathDispatcher.make({ [prefix]: app }))
        expect({ prefix, ok: made._tag }).toEqual({ prefix, ok: "Success" })
      }
    })
  )

  it.effect("types the composed app with the mounted apps' errors and requirements", () =>
    Effect.gen(function* () {
      class Boom {
        readonly _tag = "Boom"
      }
      const failing = Effect.fail(new Boom()).pipe(Effect.as(HttpServerResponse.text("never")))
      const withRoot = yield* PathDispatcher.make({ "/": app, "/boom": failing })
      expectTypeOf(withRoot).toEqualTypeOf<
        Effect.Effect<HttpServerResponse.HttpServerResponse, Boom, HttpServerRequest.HttpServerRequest>
      >()
      const withoutRoot = yield* PathDispatcher.make({ "/boom": failing })
      expectTypeOf(withoutRoot).toEqualTypeOf<
        Effect.Effect<
          HttpServerResponse.HttpServerResponse,
          Boom | HttpServerError,
          HttpServerRequest.HttpServerRequest
        >
      >()
      const url = Effect.map(HttpServerRequest.HttpServerRequest, (request) => HttpServerResponse.text(request.url))
      const needsRequest = yield* PathDispatcher.make({ "/": url })
      expectTypeOf(needsRequest).toEqualTypeOf<
        Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest>
      >()
    })
  )
})

describe("examples/dispatch.ts", () => {
  afterEach(killAll)

  const get = (url: string) =>
    Effect.promise(async () => {
      const response = await fetch(url)
      return { status: response.status, body: await response.text() }
    })

  it.live("serves the home app, the blog at /blog and the HttpRouter at /api/v1", () =>
    Effect.gen(function* () {
      const { url } = yield* serveLayer(HttpServer.serve(dispatchExample))
      expect(yield* get(`${url}/`)).toEqual({ status: 200, body: "home: /" })
      expect(yield* get(`${url}/blogger`)).toEqual({ status: 200, body: "home: /blogger" })
      expect(yield* get(`${url}/blog/posts/1?draft`)).toEqual({
        status: 200,
        body: "blog: /posts/1?draft (mounted at /blog, first post at /blog/posts/1)"
      })
      expect(yield* get(`${url}/api/v1`)).toEqual({ status: 200, body: "api v1" })
      const user = yield* get(`${url}/api/v1/users/1`)
      expect(user.status).toBe(200)
      expect(JSON.parse(user.body)).toEqual({ id: 1, name: "Ada" })
      expect((yield* get(`${url}/api/v1/users/2`)).status).toBe(404)
      expect((yield* get(`${url}/api/v1/nowhere`)).status).toBe(404)
    })
  )

  it.live("makeApp builds the same app in a scope that a program owns", () =>
    Effect.gen(function* () {
      // the test's scope, closed when the test ends
      const app = yield* makeApp
      const { url } = yield* serveLayer(HttpServer.serve(app))
      expect(yield* get(`${url}/api/v1/users/1`)).toEqual({ status: 200, body: '{"id":1,"name":"Ada"}' })
    })
  )

  it("is served by `effect-appserver serve examples/dispatch.ts`", async () => {
    const run = cli("serve", "examples/dispatch.ts", "--port", "0")
    const url = await listening(run)
    expect(await (await fetch(`${url}/blog/x`)).text()).toBe("blog: /x (mounted at /blog, first post at /blog/posts/1)")
    expect(await (await fetch(`${url}/api/v1`)).text()).toBe("api v1")
    run.child.kill("SIGTERM")
    expect(await exitOf(run, 5_000)).toEqual({ code: 0, signal: null })
  })
})
