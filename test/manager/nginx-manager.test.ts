/**
 * NginxConfig rendering, and NginxManager with a real nginx (Debian's, as in the SCGI tests): a
 * file mapping with listings, a redirect, an HTTP proxy with X-Forwarded-* headers, SCGI to two
 * backends (TCP and unix) and to the project's own SCGI server, an HTTP proxy to the project's own
 * HTTP server, reload with a changed
 * configuration, refusal of an invalid one and of one nginx cannot apply; nginx's process
 * group gone after stop; a stack stopped in reverse. nginx rewrites its environment with its
 * process title, so the token cannot mark it: each nginx runs in a work directory named with the
 * token, which its master's command line shows, and the groups of the masters seen are checked
 * too.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as NodeServices from "@effect/platform-node/NodeServices"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as AppServerManager from "../../src/manager/AppServerManager.ts"
import * as Manager from "../../src/manager/Manager.ts"
import * as NginxConfig from "../../src/manager/NginxConfig.ts"
import * as NginxManager from "../../src/manager/NginxManager.ts"
import { nginxBinary, nginxGate } from "../helpers/nginx.ts"
import {
  alive,
  backend,
  freePort,
  groupPids,
  killLeftovers,
  makeToken,
  portOf,
  removeTempDirs,
  root,
  socketPath,
  tempDir,
  tokenEnv,
  tokenPids
} from "./support.ts"

const token = makeToken()
const gate = nginxGate()
const groups: Array<number> = []
/** The nginx to run: NGINX_BIN, or the one the gate found. */
const binary = nginxBinary()

/** A fresh work directory for one nginx, its path holding the token. */
const workDir = (): string => tempDir(`effect-appserver-nginx-${token}-`)

/** Live processes whose command line holds `text` (nginx's master shows its `-p` prefix). */
const commandLinePids = (text: string): Array<number> => {
  const found: Array<number> = []
  for (const entry of Fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (Fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(text) && alive(Number(entry))) {
        found.push(Number(entry))
      }
    } catch {
      // gone meanwhile
    }
  }
  return found
}

afterAll(() => {
  const masters = commandLinePids(`effect-appserver-nginx-${token}-`)
  const left = [...new Set([...killLeftovers(token), ...masters, ...[...groups, ...masters].flatMap(groupPids)])]
  for (const pid of left) {
    try {
      process.kill(pid, "SIGKILL")
    } catch {
      // gone meanwhile
    }
  }
  removeTempDirs()
  expect(left).toEqual([])
})

/**
 * GET over a fresh connection: status, headers and body as text. The request is written without
 * half-closing: nginx takes a half-close as the client going away (499) before a proxied answer.
 */
const get = (port: number, path: string): Promise<string> =>
  send(port, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`)

/** Sends `request` as it is and gives back all the answer. */
const send = (port: number, request: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect(port, "127.0.0.1", () => socket.write(request))
    let received = ""
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => (received += chunk))
    socket.on("end", () => resolve(received))
    socket.on("error", reject)
  })

describe("NginxConfig.render", () => {
  it("renders mappings, upstreams, the status location and the paths under the prefix", () => {
    const text = NginxConfig.render(
      {
        listen: { host: "127.0.0.1", port: 8080 },
        clientMaxBodySize: "10m",
        mappings: [
          NginxConfig.files("/static", "/srv/files", { autoindex: true }),
          NginxConfig.redirect("/old", "/new$request_uri", { status: 301 }),
          NginxConfig.proxy("/api/", [
            { host: "10.0.0.1", port: 80 },
            { host: "10.0.0.2", port: 80 }
          ]),
          NginxConfig.scgi("/", [{ host: "127.0.0.1", port: 4000 }, { path: "/run/app.sock" }], { buffering: false })
        ]
      },
      "/tmp/prefix",
      { generation: 3 }
    )
    expect(text).not.toContain("daemon")
    expect(text).toContain("pid /tmp/prefix/nginx.pid;")
    expect(text).toContain("error_log stderr notice;")
    expect(text).toContain("client_max_body_size 10m;")
    expect(text).toContain("location /static/ {\n      alias /srv/files/;\n      autoindex on;\n    }")
    expect(text).toContain("location /old {\n      return 301 /new$request_uri;\n    }")
    expect(text).toContain(
      "upstream upstream_2 {\n    server 10.0.0.1:80;\n    server 10.0.0.2:80;\n    keepalive 16;\n  }"
    )
    expect(text).toContain("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
    expect(text).toContain("upstream upstream_3 {\n    server 127.0.0.1:4000;\n    server unix:/run/app.sock;\n  }")
    expect(text).toContain("scgi_buffering off;")
    expect(text).toContain(
      "location = /nginx_status {\n      stub_status;\n      allow 127.0.0.1;\n      allow ::1;\n      deny all;"
    )
    expect(text).toContain("add_header X-Nginx-Generation 3 always;")
    expect(text).toContain("proxy_set_header Host $host;")
    // files are served with the types browsers show, not downloaded as octet-stream
    expect(text).toContain("image/svg+xml svg svgz;")
    expect(text).toContain("font/woff2 woff2;")
    // listening on another address of this machine, the health check comes from that address
    const lan = NginxConfig.render({ listen: { host: "192.0.2.2", port: 80 }, mappings: [] }, "/tmp/prefix")
    expect(lan).toContain("allow ::1;\n      allow 192.0.2.2;\n      deny all;")
    expect(text).not.toContain("allow 127.0.0.1;\n      allow ::1;\n      allow")
  })
})

describe.skipIf(gate.skip)("NginxManager", () => {
  it.live(
    "serves files, a redirect, an HTTP proxy and SCGI to two backends; reloads a changed configuration",
    () =>
      Effect.gen(function* () {
        const files = tempDir("effect-appserver-nginx-files-")
        Fs.writeFileSync(Path.join(files, "hello.txt"), "hello from a file\n")
        const http = yield* backend({ port: 0 }, (request) => {
          const body = request.slice(0, request.indexOf("\r\n\r\n"))
          return `HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
        })
        const scgiAnswer = (id: string) => () => `Status: 200 OK\r\nContent-Type: text/plain\r\n\r\n${id}`
        const scgiTcp = yield* backend({ port: 0 }, scgiAnswer("tcp backend"))
        const unixPath = socketPath("scgi")
        yield* backend({ path: unixPath }, scgiAnswer("unix backend"))
        const port = yield* Effect.promise(freePort)
        const config: NginxConfig.NginxConfig = {
          listen: { host: "127.0.0.1", port },
          mappings: [
            NginxConfig.files("/static/", files, { autoindex: true }),
            NginxConfig.redirect("/old", "/static/hello.txt"),
            NginxConfig.proxy("/api/", [{ host: "127.0.0.1", port: portOf(http) }]),
            NginxConfig.scgi("/app/", [{ host: "127.0.0.1", port: portOf(scgiTcp) }, { path: unixPath }])
          ]
        }
        const nginx = yield* NginxManager.make({ config, nginx: binary, workDir: workDir(), stopGrace: "5 seconds" })
        yield* nginx.start({ timeout: "10 seconds" })
        const pid = (yield* nginx.pid) ?? 0
        groups.push(pid)
        expect(commandLinePids(nginx.prefix)).toEqual([pid])
        expect(yield* nginx.url).toBe(`http://127.0.0.1:${port}`)

        const file = yield* Effect.promise(() => get(port, "/static/hello.txt"))
        expect(file).toMatch(/^HTTP\/1\.1 200/)
        expect(file).toContain("hello from a file")
        const listing = yield* Effect.promise(() => get(port, "/static/"))
        expect(listing).toContain('<a href="hello.txt">hello.txt</a>')

        const redirect = yield* Effect.promise(() => get(port, "/old"))
        expect(redirect).toMatch(/^HTTP\/1\.1 302/)
        expect(redirect).toMatch(/\r\nLocation: http:\/\/localhost:\d+\/static\/hello\.txt\r\n/)

        const proxied = yield* Effect.promise(() => get(port, "/api/items?x=1"))
        expect(proxied).toContain("GET /api/items?x=1 HTTP/1.1")
        expect(proxied).toContain("X-Forwarded-For: 127.0.0.1")
        expect(proxied).toContain("X-Forwarded-Proto: http")
        expect(proxied).toContain("X-Real-IP: 127.0.0.1")

        const answers = new Set<string>()
        for (let i = 0; i < 4; i++) {
          const response = yield* Effect.promise(() => get(port, "/app/x"))
          expect(response).toMatch(/^HTTP\/1\.1 200/)
          // nginx sends the answer chunked: find the backend's name in it.
          answers.add(/tcp backend|unix backend/.exec(response)?.[0] ?? response)
        }
        expect([...answers].sort()).toEqual(["tcp backend", "unix backend"])

        // Reload: the redirect now points elsewhere, seen by the very next request.
        yield* nginx.reload({
          ...config,
          mappings: [NginxConfig.redirect("/old", "/elsewhere", { status: 301 }), ...config.mappings.slice(0, 1)]
        })
        const moved = yield* Effect.promise(() => get(port, "/old"))
        expect(moved).toMatch(/^HTTP\/1\.1 301/)
        expect(moved).toMatch(/\r\nLocation: http:\/\/localhost:\d+\/elsewhere\r\n/)
        expect(yield* nginx.pid).toBe(pid)

        // An invalid configuration is refused and changes nothing.
        const refused = yield* Effect.flip(nginx.reload({ ...config, clientMaxBodySize: "lots" }))
        expect(refused.reason).toBe("InvalidConfig")
        expect(refused.stderr).toContain("client_max_body_size")
        expect(yield* Effect.promise(() => get(port, "/old"))).toMatch(/^HTTP\/1\.1 301/)

        yield* nginx.health
        yield* nginx.stop()
        expect(groupPids(pid)).toEqual([])
      }).pipe(Effect.scoped, Effect.provide(NodeServices.layer)),
    30_000
  )

  it.live(
    "an invalid configuration fails start with InvalidConfig and nginx's words, starting nothing",
    () =>
      Effect.gen(function* () {
        const port = yield* Effect.promise(freePort)
        const nginx = yield* NginxManager.make({
          config: { listen: { host: "127.0.0.1", port }, mappings: [], clientMaxBodySize: "lots" },
          nginx: binary,
          workDir: workDir()
        })
        const error = yield* Effect.flip(nginx.start())
        expect(error.reason).toBe("InvalidConfig")
        expect(error.message).toContain('"client_max_body_size" directive invalid value')
        expect(yield* nginx.pid).toBe(undefined)
      }).pipe(Effect.scoped, Effect.provide(NodeServices.layer)),
    15_000
  )

  it.live(
    "a reload nginx cannot apply (its listen address taken) fails, and the old configuration stays in effect",
    () =>
      Effect.gen(function* () {
        const taken = yield* backend({ port: 0 }, () => "")
        const port = yield* Effect.promise(freePort)
        const config: NginxConfig.NginxConfig = {
          listen: { host: "127.0.0.1", port },
          mappings: [NginxConfig.redirect("/old", "/first")]
        }
        const nginx = yield* NginxManager.make({ config, nginx: binary, workDir: workDir(), startTimeout: "5 seconds" })
        yield* nginx.start()
        const pid = (yield* nginx.pid) ?? 0
        groups.push(pid)
        const before = Fs.readFileSync(nginx.configFile, "utf8")
        // `nginx -t` does not bind, so this one passes it; nginx's own bind then fails.
        const moved: NginxConfig.NginxConfig = {
          listen: { host: "127.0.0.1", port: portOf(taken) },
          mappings: [NginxConfig.redirect("/old", "/second")]
        }
        const started = performance.now()
        const error = yield* Effect.flip(nginx.reload(moved))
        expect(performance.now() - started).toBeLessThan(4_000)
        expect(error.reason).toBe("InvalidConfig")
        expect(error.stderr).toContain("Address already in use")
        expect(yield* nginx.config).toBe(config)
        expect(yield* nginx.url).toBe(`http://127.0.0.1:${port}`)
        expect(Fs.readFileSync(nginx.configFile, "utf8")).toBe(before)
        const old = yield* Effect.promise(() => get(port, "/old"))
        expect(old).toMatch(/\r\nLocation: http:\/\/localhost:\d+\/first\r\n/)
        yield* nginx.health
        // The next reload still works, from the old configuration on.
        yield* nginx.reload({ ...config, mappings: [NginxConfig.redirect("/old", "/third")] })
        expect(yield* Effect.promise(() => get(port, "/old"))).toMatch(
          /\r\nLocation: http:\/\/localhost:\d+\/third\r\n/
        )
        expect(yield* nginx.pid).toBe(pid)
      }).pipe(Effect.scoped, Effect.provide(NodeServices.layer)),
    20_000
  )

  it.live(
    "proxies HTTP to the project's own HTTP server: the app sees the X-Forwarded-* headers and the client's Host",
    () =>
      Effect.gen(function* () {
        const appPort = yield* Effect.promise(freePort)
        const port = yield* Effect.promise(freePort)
        const app = AppServerManager.layer({
          module: "examples/echo.ts",
          protocol: "http",
          port: appPort,
          cwd: root,
          env: tokenEnv(token),
          stopGrace: "5 seconds"
        })
        const front = NginxManager.layer({
          config: {
            listen: { host: "127.0.0.1", port },
            mappings: [NginxConfig.proxy("/", [{ host: "127.0.0.1", port: appPort }])]
          },
          nginx: binary,
          workDir: workDir()
        })
        const [hello, inspect, withoutHost] = yield* Effect.gen(function* () {
          const nginx = yield* NginxManager.NginxManager
          groups.push((yield* nginx.pid) ?? 0)
          return [
            yield* Effect.promise(() => get(port, "/")),
            yield* Effect.promise(() => get(port, "/inspect?x=1")),
            // HTTP/1.0 without Host: passed on with the server's name (an HTTP/1.1 request without
            // Host would be a 400 from the app)
            yield* Effect.promise(() => send(port, "GET / HTTP/1.0\r\n\r\n"))
          ] as const
        }).pipe(Effect.provide(front.pipe(Layer.provideMerge(app), Layer.provide(NodeServices.layer))))
        expect(hello).toMatch(/^HTTP\/1\.1 200/)
        expect(hello).toContain("Hello, World!")
        expect(withoutHost).toMatch(/^HTTP\/1\.1 200/)
        expect(inspect).toMatch(/^HTTP\/1\.1 200/)
        const seen = JSON.parse(inspect.slice(inspect.indexOf("\r\n\r\n") + 4)) as {
          readonly method: string
          readonly url: string
          readonly headers: ReadonlyArray<readonly [string, string]>
        }
        expect(seen.method).toBe("GET")
        expect(seen.url).toBe("/inspect?x=1")
        const headers = Object.fromEntries(seen.headers.map(([name, value]) => [name.toLowerCase(), value]))
        expect(headers).toMatchObject({
          // the Host the client sent, not the upstream's address
          host: "localhost",
          "x-forwarded-for": "127.0.0.1",
          "x-forwarded-proto": "http",
          "x-real-ip": "127.0.0.1"
        })
        // upstream keep-alive: nginx speaks HTTP/1.1 without "Connection: close" to the app
        expect(headers.connection).toBeUndefined()
        expect(tokenPids(token)).toEqual([])
      }),
    40_000
  )

  it.live(
    "fronts the project's SCGI server: two Layers, started in order and stopped in reverse",
    () =>
      Effect.gen(function* () {
        const socket = socketPath("app")
        const port = yield* Effect.promise(freePort)
        const app = AppServerManager.layer({
          module: "examples/echo.ts",
          protocol: "scgi",
          socket,
          cwd: root,
          env: tokenEnv(token),
          stopGrace: "5 seconds"
        })
        let nginxPid = 0
        let appPid = 0
        /** What the layer between the two saw on release: nginx gone yet, the app server still up? */
        let atRelease: { readonly nginxLeft: ReadonlyArray<number>; readonly appAlive: boolean } | undefined
        // Built after the app server and before nginx, so released after nginx and before it.
        const between = Layer.effectDiscard(
          Effect.gen(function* () {
            const server = yield* Manager.Manager
            appPid = (yield* server.pid) ?? 0
            yield* Effect.addFinalizer(() =>
              Effect.sync(() => {
                atRelease = { nginxLeft: groupPids(nginxPid), appAlive: alive(appPid) }
              })
            )
          })
        )
        const front = NginxManager.layer({
          config: { listen: { host: "127.0.0.1", port }, mappings: [NginxConfig.scgi("/", [{ path: socket }])] },
          nginx: binary,
          workDir: workDir()
        })
        const response = yield* Effect.gen(function* () {
          const nginx = yield* NginxManager.NginxManager
          nginxPid = (yield* nginx.pid) ?? 0
          groups.push(nginxPid)
          return yield* Effect.promise(() => get(port, "/"))
        }).pipe(
          Effect.provide(
            front.pipe(Layer.provideMerge(between.pipe(Layer.provideMerge(app))), Layer.provide(NodeServices.layer))
          )
        )
        expect(response).toMatch(/^HTTP\/1\.1 200/)
        expect(response).toContain("Hello, World!")
        expect(nginxPid).toBeGreaterThan(0)
        expect(appPid).toBeGreaterThan(0)
        // In reverse: nginx was gone, its whole group, while the app server still ran.
        expect(atRelease).toEqual({ nginxLeft: [], appAlive: true })
        expect(groupPids(nginxPid)).toEqual([])
        expect(alive(appPid)).toBe(false)
        expect(tokenPids(token)).toEqual([])
      }),
    40_000
  )
})
