/**
 * Effect's `Socket` over a server-side `ws` WebSocket, with the contract of `Socket.fromWebSocket`
 * (what `NodeHttpServer` uses): the reader pulls every message that arrived since the last pull
 * (binary as bytes, text as strings), pauses the connection while 64 KiB wait unread, and fails
 * with the peer's close code; writes wait until the reader has opened the socket; a `CloseEvent`
 * closes it with its code.
 *
 * Why not `fromWebSocket` itself: it listens through `ws`'s DOM-style event shim, which allocates
 * a `MessageEvent` per message, and asks for `arraybuffer` binary data, which copies every binary
 * message out of the frame it arrived in. `ws`'s own `message` event hands over the frame's
 * `Buffer` (a `Uint8Array`) and tells text from binary, so a message costs neither; a text
 * message's size for the high-water mark is its byte length, with no re-encoding.
 *
 * @since 0.1.0
 */
import type { WebSocket } from "@effect/platform-node/NodeWS"
import { Effect, Latch, Scope } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as Socket from "effect/socket/Socket"

/** Unread bytes at which the connection is paused, as in `Socket.fromWebSocket`. */
const highWaterMark = 64 * 1024

const closeError = (code: number, closeReason?: string): Socket.SocketError =>
  new Socket.SocketError({ reason: new Socket.SocketCloseError({ code, closeReason }) })

type Message = Uint8Array | string
type Resume = (effect: Effect.Effect<NonEmptyReadonlyArray<Message>, Socket.SocketError>) => void

/** One message as `ws` delivers it with the default `nodebuffer` binary type. */
const bytesOf = (data: WebSocket.RawData): Buffer =>
  Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)

/**
 * A `Socket` whose reader acquires the WebSocket with `acquire` (in the reader's scope, so its
 * release closes it) once it is open.
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromWs = (acquire: Effect.Effect<WebSocket, Socket.SocketError, Scope.Scope>): Socket.Socket => {
  let current: WebSocket | undefined
  const latch = Latch.makeUnsafe(false)

  const reader: Socket.Socket["reader"] = Effect.gen(function* () {
    const scope = yield* Effect.scope
    const ws = yield* Scope.provide(acquire, scope)
    let buffer: Array<Message> = []
    let bufferSize = 0
    let paused = false
    let error: Socket.SocketError | undefined
    let waiter: Resume | undefined

    const resumeWs = () => {
      if (!paused) return
      paused = false
      ws.resume()
    }

    const take = (): NonEmptyReadonlyArray<Message> => {
      const chunk = buffer as unknown as NonEmptyReadonlyArray<Message>
      buffer = []
      bufferSize = 0
      if (error === undefined) resumeWs()
      return chunk
    }

    const fail = (err: Socket.SocketError) => {
      if (error === undefined) error = err
      if (waiter === undefined) return
      const resume = waiter
      waiter = undefined
      resume(buffer.length > 0 ? Effect.succeed(take()) : Effect.fail(error))
    }

    const onMessage = (data: WebSocket.RawData, isBinary: boolean) => {
      const bytes = bytesOf(data)
      buffer.push(isBinary ? bytes : bytes.toString("utf8"))
      bufferSize += bytes.byteLength
      if (waiter !== undefined) {
        const resume = waiter
        waiter = undefined
        resume(Effect.succeed(take()))
      } else if (bufferSize >= highWaterMark && !paused) {
        paused = true
        ws.pause()
      }
    }
    const onError = (cause: Error) => fail(new Socket.SocketError({ reason: new Socket.SocketReadError({ cause }) }))
    const onClose = (code: number, reason: Buffer) => fail(closeError(code, reason.toString("utf8")))

    ws.on("message", onMessage)
    ws.once("error", onError)
    ws.once("close", onClose)
    yield* Scope.addFinalizer(
      scope,
      Effect.sync(() => {
        // Resume a pull blocked in another fiber before detaching.
        fail(closeError(1006))
        ws.off("message", onMessage)
        ws.off("close", onClose)
        ws.off("error", onError)
        // Late errors (a peer gone during the close handshake) stay handled.
        ws.on("error", ignore)
        // Let the close handshake proceed once nothing is pulling (a no-op once closed).
        resumeWs()
        latch.closeUnsafe()
        current = undefined
      })
    )
    if (ws.readyState !== ws.OPEN) return yield* Effect.fail(error ?? closeError(1006))
    current = ws
    latch.openUnsafe()
    return {
      pull: Effect.callback<NonEmptyReadonlyArray<Message>, Socket.SocketError>((resume) => {
        if (buffer.length > 0) return resume(Effect.succeed(take()))
        if (error !== undefined) return resume(Effect.fail(error))
        waiter = resume
        return Effect.sync(() => {
          if (waiter === resume) waiter = undefined
        })
      }),
      upgrade: Socket.SocketUpgradeError.unsupported
    }
  })

  const writeError = (cause: unknown) =>
    Effect.fail(new Socket.SocketError({ reason: new Socket.SocketWriteError({ cause }) }))

  const write = (chunk: Message | Socket.CloseEvent): Effect.Effect<void, Socket.SocketError> =>
    Effect.suspend(() => {
      const ws = current
      if (ws === undefined) return latch.whenOpen(write(chunk))
      try {
        if (Socket.isCloseEvent(chunk)) ws.close(chunk.code, chunk.reason)
        else ws.send(chunk)
        return Effect.void
      } catch (cause) {
        return writeError(cause)
      }
    })

  const writeAll = (chunks: NonEmptyReadonlyArray<Message>): Effect.Effect<void, Socket.SocketError> =>
    Effect.suspend(() => {
      const ws = current
      if (ws === undefined) return latch.whenOpen(writeAll(chunks))
      try {
        for (let i = 0; i < chunks.length; i++) ws.send(chunks[i])
        return Effect.void
      } catch (cause) {
        return writeError(cause)
      }
    })

  return Socket.make({ reader, writer: Effect.succeed({ write, writeAll }) })
}

const ignore = (): void => {}
