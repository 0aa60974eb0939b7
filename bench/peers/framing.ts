/**
 * The framing both yardsticks share (bench/peers/limit.ts, bench/peers/effect-limit.ts): find the
 * end of each head, read a Content-Length body, and answer every complete request of a read in one
 * write. No validation and no timeouts: the least an HTTP/1.1 responder must do. The writes of one
 * turn of the event loop go out together after its I/O callbacks (`setImmediate`), as
 * effect-appserver's do (src/conn/WriteBatch.ts): a peer woken by each write costs the writer
 * more than the write. Reads go into the process's shared buffer, as the server's do
 * (bench/peers/readInput.ts). The yardsticks use every trick the server does.
 */
import type * as Net from "node:net"
import { inSharedBuffer } from "../../src/listen/SharedRead.ts"
import { readInput } from "./readInput.ts"

const END_OF_HEAD = Buffer.from("\r\n\r\n", "latin1")

/** The value of header `name` (lower case, with its colon) in a head, or undefined. */
export const header = (head: string, name: string): string | undefined => {
  const at = head.toLowerCase().indexOf(`\r\n${name}`)
  if (at === -1) return undefined
  const end = head.indexOf("\r\n", at + 2)
  return head.slice(at + 2 + name.length, end === -1 ? undefined : end).trim()
}

/** One complete request: its head (request line and fields, latin1) and its body. */
export interface FramedRequest {
  readonly head: string
  readonly body: Buffer
  /** The client asked to close after this request. */
  readonly close: boolean
}

/** Answers the requests arriving on `socket` with what `answer` returns for each, in order. */
export const serveFramed = (socket: Net.Socket, answer: (request: FramedRequest) => Buffer): void => {
  let buffered: Buffer = Buffer.alloc(0)
  socket.on("error", () => socket.destroy())
  readInput(socket, (chunk) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk])
    const out: Array<Buffer> = []
    let close = false
    for (;;) {
      const headEnd = buffered.indexOf(END_OF_HEAD)
      if (headEnd === -1) break
      const head = buffered.toString("latin1", 0, headEnd + 2)
      const length = Number(header(head, "content-length:") ?? 0)
      const bodyStart = headEnd + 4
      if (buffered.length < bodyStart + length) break
      close = header(head, "connection:")?.toLowerCase() === "close"
      out.push(answer({ head, body: buffered.subarray(bodyStart, bodyStart + length), close }))
      buffered = buffered.subarray(bodyStart + length)
      if (close) break
    }
    // What is kept of a read in the shared buffer is copied (bodies are copied by `answer`).
    if (buffered.length > 0 && inSharedBuffer(buffered)) buffered = Buffer.from(buffered)
    if (out.length === 0) return
    later(socket, out.length === 1 ? out[0] : Buffer.concat(out), close)
  })
}

let due: Array<{ readonly socket: Net.Socket; readonly bytes: Buffer; readonly close: boolean }> = []

/** Writes at the end of this turn of the event loop, with every other connection's output. */
const later = (socket: Net.Socket, bytes: Buffer, close: boolean): void => {
  if (due.length === 0) {
    setImmediate(() => {
      const now = due
      due = []
      for (const { socket, bytes, close } of now) {
        if (close) socket.end(bytes)
        else socket.write(bytes)
      }
    })
  }
  due.push({ socket, bytes, close })
}
