/**
 * Reading a plain TCP or unix socket into one buffer shared by every connection of the process,
 * instead of a fresh buffer per read.
 *
 * A socket read the usual way ('data' events) costs, for every read: a 64 KiB `malloc` that is
 * then shrunk to what arrived, an `ArrayBuffer` and a `Buffer` over it, the stream machinery
 * (`push`, 'data', `maybeReadMore` on the next tick), and later the collection of the
 * `ArrayBuffer` and the `free`. Node's `onread` option (`net.Socket`, since Node 12) reads into a
 * buffer the caller provides and calls back with the byte count, none of the above. Node takes
 * the option only where it creates a socket for the caller, not for the sockets a `net.Server`
 * accepts; this module sets the same two fields `onread` sets, found by their names on a socket
 * Node creates, and tells the handle to read into the buffer (`useUserBuffer`, what `onread` does
 * when the handle is attached). Where any of that is missing (another Node, a TLS socket, a
 * socket whose handle is not a stream handle) nothing is changed and the caller reads 'data'.
 *
 * The buffer is reused by the next read of any connection: the callback must copy whatever it
 * keeps beyond its return.
 *
 * @since 0.1.0
 */
import * as Net from "node:net"
import * as NodeTls from "node:tls"

/**
 * What a read delivers: the bytes are `buffer[0, length)`, valid until the callback returns.
 * Returning false stops reading, as `pause()` does.
 */
export type SharedReadCallback = (this: Net.Socket, length: number, buffer: Buffer) => boolean

interface UserBufferHandle {
  readonly useUserBuffer?: (buffer: Uint8Array) => void
}

const fieldsOfOnread = (): { readonly buffer: symbol; readonly callback: symbol } | undefined => {
  const probe = new Net.Socket()
  const symbols = Object.getOwnPropertySymbols(probe)
  probe.destroy()
  const buffer = symbols.find((symbol) => symbol.description === "kBuffer")
  const callback = symbols.find((symbol) => symbol.description === "kBufferCb")
  return buffer === undefined || callback === undefined ? undefined : { buffer, callback }
}

const onread = fieldsOfOnread()

/**
 * The largest read: what libuv asks for when Node allocates (64 KiB), so a read takes as much as
 * it did before.
 */
const sharedBuffer = Buffer.allocUnsafeSlow(64 * 1024)

/**
 * Whether `bytes` lie in the shared buffer, and so must be copied to be kept past the read.
 *
 * @since 0.1.0
 */
export const inSharedBuffer = (bytes: Uint8Array): boolean => bytes.buffer === sharedBuffer.buffer

/**
 * Makes `socket` deliver its reads to `callback` through the shared buffer. False when it
 * cannot; the socket then emits 'data' as usual.
 *
 * @since 0.1.0
 */
export const readIntoShared = (socket: Net.Socket, callback: SharedReadCallback): boolean => {
  // Bytes already read into the stream's own buffer would never reach the callback.
  if (onread === undefined || socket instanceof NodeTls.TLSSocket || socket.readableLength > 0) return false
  const handle = (socket as unknown as { readonly _handle?: UserBufferHandle | null })._handle
  if (handle == null || typeof handle.useUserBuffer !== "function") return false
  const fields = socket as unknown as Record<symbol, unknown>
  fields[onread.buffer] = sharedBuffer
  fields[onread.callback] = callback
  handle.useUserBuffer(sharedBuffer)
  return true
}
