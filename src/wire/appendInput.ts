/**
 * Joining received chunks for a sans-I/O parser whose current unit (a line, a netstring) spans
 * several of them.
 *
 * @since 0.1.0
 */

/** Buffers allocated here, which may be written past their views; socket chunks never are. */
const owned = new WeakSet<ArrayBufferLike>()

/** The smallest buffer allocated to join chunks (and large enough never to come from Node's pool). */
const minJoin = 4096

/**
 * `rest` (unconsumed input) followed by `chunk`, as one buffer. When `rest` ends a buffer this
 * module allocated and there is room after it, `chunk` is copied in place; otherwise a buffer of
 * twice the size needed is allocated. A unit dribbled a byte at a time then costs linear copying
 * rather than quadratic. Views handed out earlier lie before the end of `rest` and are never
 * written over: the caller must pass the whole unconsumed tail of what this function returned.
 *
 * @since 0.1.0
 */
export const appendInput = (rest: Buffer, chunk: Buffer): Buffer => {
  const store = rest.buffer
  const end = rest.byteOffset + rest.length
  if (owned.has(store) && end + chunk.length <= store.byteLength) {
    new Uint8Array(store, end, chunk.length).set(chunk)
    return Buffer.from(store, rest.byteOffset, rest.length + chunk.length)
  }
  const joined = Buffer.allocUnsafeSlow(Math.max(minJoin, 2 * (rest.length + chunk.length)))
  owned.add(joined.buffer)
  joined.set(rest, 0)
  joined.set(chunk, rest.length)
  return joined.subarray(0, rest.length + chunk.length)
}

/**
 * `rest` in memory of this module's own: `rest` itself when it is already there, else a copy
 * (with room for what comes next), for input whose buffer is about to be reused.
 *
 * @since 0.1.0
 */
export const ownInput = (rest: Buffer): Buffer => {
  if (rest.length === 0 || owned.has(rest.buffer)) return rest
  const copy = Buffer.allocUnsafeSlow(Math.max(minJoin, 2 * rest.length))
  owned.add(copy.buffer)
  copy.set(rest, 0)
  return copy.subarray(0, rest.length)
}
