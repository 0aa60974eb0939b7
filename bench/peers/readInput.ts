/**
 * How the yardsticks read their sockets: as effect-appserver does, into the process's shared read
 * buffer (src/listen/SharedRead.ts) where Node allows it, else as 'data' chunks. The yardsticks
 * use every trick the server does.
 */
import type * as Net from "node:net"
import { readIntoShared } from "../../src/listen/SharedRead.ts"

/**
 * Hands what `socket` reads to `onInput`. Bytes in the shared buffer (`inSharedBuffer`) are valid
 * only during the call: `onInput` copies what it keeps of them.
 */
export const readInput = (socket: Net.Socket, onInput: (bytes: Buffer) => void): void => {
  const shared = readIntoShared(socket, (length, buffer) => {
    onInput(buffer.subarray(0, length))
    return true
  })
  if (!shared) socket.on("data", onInput)
}
