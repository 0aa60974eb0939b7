/**
 * The grammar of the chunked transfer coding's chunk-size line (RFC 9112 §7.1, §7.1.1): the
 * chunk-size and its extensions, as pure functions over a byte range.
 *
 * The request parser keeps the cursor, the decoding state and the per-message bound on extension
 * bytes, and calls these on a complete line; apart from it, the byte grammar can be read and
 * tested on its own, and the parser's state machine stays about lines and states.
 *
 * @since 0.1.0
 */

import { FIELD_VALUE, HEX, HTAB, SP, TCHAR } from "../wire/chars.ts"

const SEMICOLON = 0x3b
const EQUALS = 0x3d
const DQUOTE = 0x22
const BACKSLASH = 0x5c

/**
 * Cumulative bound on chunk extension bytes in one message, so a body of many tiny chunks with
 * large extensions cannot make the server do unbounded work for little data (as hyper does).
 *
 * @since 0.1.0
 */
export const maxChunkExtensionBytes = 16 * 1024

/** RFC 9112 §7.1: chunk sizes are bounded so they never lose precision as numbers. */
const maxChunkSize = Number.MAX_SAFE_INTEGER

/**
 * RFC 9112 §7.1: chunk-size = 1*HEXDIG. The end of the hex digits that begin at `start` (`start`
 * itself when there are none); what follows them is the chunk-ext.
 *
 * @since 0.1.0
 */
export const chunkSizeEnd = (buf: Buffer, start: number, end: number): number => {
  let i = start
  while (i < end && HEX[buf[i]] !== -1) i++
  return i
}

/**
 * The value of the hex digits `buf[start, end)`, or -1 when it exceeds `Number.MAX_SAFE_INTEGER`:
 * RFC 9112 §7.1 bounds chunk-size so that it cannot overflow.
 *
 * @since 0.1.0
 */
export const chunkSizeValue = (buf: Buffer, start: number, end: number): number => {
  let size = 0
  for (let i = start; i < end; i++) {
    size = size * 16 + HEX[buf[i]]
    if (size > maxChunkSize) return -1
  }
  return size
}

/**
 * RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ),
 * chunk-ext-val = token / quoted-string.
 *
 * @since 0.1.0
 */
export const isChunkExtensions = (buf: Buffer, start: number, end: number): boolean => {
  let i = start
  const skipWs = () => {
    while (i < end && (buf[i] === SP || buf[i] === HTAB)) i++
  }
  while (i < end) {
    skipWs()
    // Whitespace is allowed only before ";" and "=" (BWS), never trailing the line.
    if (i >= end || buf[i] !== SEMICOLON) return false
    i++
    skipWs()
    const nameStart = i
    while (i < end && TCHAR[buf[i]] === 1) i++
    if (i === nameStart) return false
    skipWs()
    if (i < end && buf[i] === EQUALS) {
      i++
      skipWs()
      if (i < end && buf[i] === DQUOTE) {
        i++
        let closed = false
        while (i < end) {
          const b = buf[i]
          if (b === DQUOTE) {
            closed = true
            i++
            break
          }
          if (b === BACKSLASH) {
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            i++
            if (i >= end || FIELD_VALUE[buf[i]] === 0) return false
          } else if (FIELD_VALUE[b] === 0) {
            return false
          }
          i++
        }
        if (!closed) return false
      } else {
        const valueStart = i
        while (i < end && TCHAR[buf[i]] === 1) i++
        if (i === valueStart) return false
      }
    }
  }
  return true
}
