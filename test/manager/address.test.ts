/**
 * addressInUse / addressFreeCheck (servermgr's address_in_use, address_free_check) and the
 * probes, against sockets this test opens itself.
 */
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Latch, Scope } from "effect"
import { addressFreeCheck, addressInUse } from "../../src/manager/Address.ts"
import * as Probe from "../../src/manager/Probe.ts"
import { backend, freePort, portOf, removeTempDirs, socketPath, tempDir } from "./support.ts"

afterAll(removeTempDirs)

/** A server on 127.0.0.1 (port 0) or a unix path answering each connection with `answer`, closed with the scope. */
const listen = (where: { readonly port: number } | { readonly path: string }, answer?: string) =>
  backend(where, answer === undefined ? undefined : () => answer)

/** Prepares a probe with no process output and runs its check once. */
const runProbe = (probe: Probe.Probe) =>
  Effect.gen(function* () {
    const check = yield* probe.prepare({ onLine: () => Effect.void })
    return yield* Effect.exit(check)
  })

describe("addressInUse / addressFreeCheck", () => {
  it.live(
    "a taken TCP port is in use and fails the free check; a free one passes",
    () =>
      Effect.gen(function* () {
        const server = yield* listen({ port: 0 })
        const port = portOf(server)
        expect(yield* addressInUse("127.0.0.1", port)).toBe(true)
        const error = yield* Effect.flip(addressFreeCheck("127.0.0.1", port))
        expect(error.reason).toBe("AddressInUse")
        expect(error.message).toContain(`127.0.0.1:${port}`)
        const free = yield* Effect.promise(freePort)
        expect(yield* addressInUse("127.0.0.1", free)).toBe(false)
        yield* addressFreeCheck("127.0.0.1", free)
      }),
    10_000
  )

  it.live(
    "a unix socket path: in use while something listens, free when nothing exists there",
    () =>
      Effect.gen(function* () {
        const path = socketPath("taken")
        expect(yield* addressInUse(path)).toBe(false)
        yield* addressFreeCheck(path)
        yield* listen({ path })
        expect(yield* addressInUse(path)).toBe(true)
        const error = yield* Effect.flip(addressFreeCheck(path))
        expect(error.reason).toBe("AddressInUse")
        expect(error.name).toBe(`unix:${path}`)
      }),
    10_000
  )

  it.live(
    "a connect that fails otherwise than refused fails AddressCheckFailed naming the error, not free",
    () =>
      Effect.gen(function* () {
        // A regular file where a directory should be: ENOTDIR. (EACCES, the other usual one,
        // cannot be made here: the tests run as root, whom permissions do not stop.)
        const file = Path.join(tempDir(), "not-a-directory")
        Fs.writeFileSync(file, "")
        const path = Path.join(file, "app.sock")
        const error = yield* Effect.flip(addressInUse(path))
        expect(error.reason).toBe("AddressCheckFailed")
        expect(error.message).toContain("ENOTDIR")
        expect(error.name).toBe(`unix:${path}`)
        expect((yield* Effect.flip(addressFreeCheck(path))).reason).toBe("AddressCheckFailed")
        // A regular file at the path itself is refused by the kernel (ECONNREFUSED): free.
        expect(yield* addressInUse(file)).toBe(false)
      }),
    10_000
  )
})

describe("probes", () => {
  it.live(
    "tcp and unix connect probes pass on a listener and fail on nothing",
    () =>
      Effect.gen(function* () {
        const server = yield* listen({ port: 0 })
        expect(Exit.isSuccess(yield* runProbe(Probe.tcp("127.0.0.1", portOf(server))))).toBe(true)
        const free = yield* Effect.promise(freePort)
        const refused = yield* runProbe(Probe.tcp("127.0.0.1", free))
        expect(Exit.isFailure(refused)).toBe(true)
        const path = socketPath("probe")
        expect(Exit.isFailure(yield* runProbe(Probe.unix(path)))).toBe(true)
        yield* listen({ path })
        expect(Exit.isSuccess(yield* runProbe(Probe.unix(path)))).toBe(true)
      }),
    10_000
  )

  it.live(
    "the http probe reads the status and applies the predicate",
    () =>
      Effect.gen(function* () {
        const ok = yield* listen({ port: 0 }, "HTTP/1.1 204 No Content\r\n\r\n")
        const broken = yield* listen({ port: 0 }, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        const garbage = yield* listen({ port: 0 }, "hello\r\n\r\n")
        expect(Exit.isSuccess(yield* runProbe(Probe.http({ host: "127.0.0.1", port: portOf(ok) })))).toBe(true)
        const unhealthy = yield* runProbe(Probe.http({ host: "127.0.0.1", port: portOf(broken) }))
        expect(String(unhealthy)).toContain("unexpected status 503")
        const accepted = yield* runProbe(
          Probe.http({ host: "127.0.0.1", port: portOf(broken) }, { expect: (status) => status === 503 })
        )
        expect(Exit.isSuccess(accepted)).toBe(true)
        expect(String(yield* runProbe(Probe.http({ host: "127.0.0.1", port: portOf(garbage) })))).toContain(
          "unreadable response"
        )
      }),
    10_000
  )

  it.live(
    "the scgi probe sends a netstring request and reads a Status header",
    () =>
      Effect.gen(function* () {
        let request = ""
        const server = yield* Effect.acquireRelease(
          Effect.callback<Net.Server>((resume) => {
            const s = Net.createServer((socket) => {
              socket.setEncoding("latin1")
              socket.once("data", (chunk: string) => {
                request = chunk
                socket.end("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nno")
              })
            })
            s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
          }),
          (s) => Effect.callback<void>((resume) => void s.close(() => resume(Effect.void)))
        )
        const exit = yield* runProbe(Probe.scgi({ host: "127.0.0.1", port: portOf(server) }, { path: "/health?x=1" }))
        expect(String(exit)).toContain("unexpected status 404")
        // "<length>:" then CONTENT_LENGTH first, SCGI=1, and the path split at "?"
        expect(request).toMatch(/^\d+:/)
        expect(request.slice(request.indexOf(":") + 1).startsWith("CONTENT_LENGTH\x000\x00SCGI\x001\x00")).toBe(true)
        expect(request).toContain("REQUEST_URI\x00/health?x=1\x00PATH_INFO\x00/health\x00QUERY_STRING\x00x=1\x00")
        expect(request.endsWith(",")).toBe(true)
        const length = Number(request.slice(0, request.indexOf(":")))
        expect(request.length).toBe(request.indexOf(":") + 1 + length + 1)
        const found = yield* runProbe(
          Probe.scgi({ host: "127.0.0.1", port: portOf(server) }, { expect: (status) => status === 404 })
        )
        expect(Exit.isSuccess(found)).toBe(true)
      }),
    10_000
  )

  it.live(
    "a log line probe passes once a matching line was written, and stays passed",
    () =>
      Effect.gen(function* () {
        let emit: (line: string, source: Probe.OutputSource) => void = () => {}
        const scope = yield* Scope.make()
        const check = yield* Probe.logLine(/ready on port \d+/, { source: "stderr" })
          .prepare({
            onLine: (listener) => Effect.sync(() => void (emit = listener))
          })
          .pipe(Scope.provide(scope))
        expect(Exit.isFailure(yield* Effect.exit(check))).toBe(true)
        emit("ready on port 80", "stdout")
        expect(Exit.isFailure(yield* Effect.exit(check))).toBe(true)
        emit("ready on port 80", "stderr")
        emit("something else", "stderr")
        expect(Exit.isSuccess(yield* Effect.exit(check))).toBe(true)
        yield* Scope.close(scope, Exit.void)
      }),
    10_000
  )

  it.live(
    "all needs every probe, any needs one; custom Effects are probes",
    () =>
      Effect.gen(function* () {
        const server = yield* listen({ port: 0 })
        const up = Probe.tcp("127.0.0.1", portOf(server))
        const free = yield* Effect.promise(freePort)
        const down = Probe.tcp("127.0.0.1", free)
        const latch = yield* Latch.make(false)
        const custom = Probe.effect(
          "latch open",
          Effect.suspend(() => (latch.isOpen() ? Effect.void : Effect.fail("closed")))
        )
        expect(Exit.isSuccess(yield* runProbe(Probe.all([up, custom])))).toBe(false)
        yield* latch.open
        expect(Exit.isSuccess(yield* runProbe(Probe.all([up, custom])))).toBe(true)
        expect(Exit.isSuccess(yield* runProbe(Probe.all([up, down])))).toBe(false)
        expect(Exit.isSuccess(yield* runProbe(Probe.any([down, up])))).toBe(true)
        const none = yield* runProbe(Probe.any([down, Probe.effect("never", Effect.fail("no"))]))
        expect(Exit.isFailure(none)).toBe(true)
        expect(String(none)).toContain("never: no")
      }),
    10_000
  )
})
