/**
 * Test helpers for the sans-I/O request parser: feed input in pieces, collect comparable events,
 * and check that every way of splitting the input gives the same result as feeding it whole.
 */
import { isDeepStrictEqual } from "node:util"
import { expect } from "vitest"
import { type ParserLimits, type RequestHead, RequestParser } from "../../src/http/Parser.ts"

/** A request head as compared by the tests: every field of the parser's `Head` event. */
export type HeadEvent = RequestHead

/** Adjacent `Data` events merged into one body, decoded as latin1 so every byte maps to one char. */
export interface BodyEvent {
  readonly _tag: "Body"
  readonly body: string
}

export interface EndEvent {
  readonly _tag: "End"
}

export interface ErrorEvent {
  readonly _tag: "Error"
  readonly status: number
}

export type Event = HeadEvent | BodyEvent | EndEvent | ErrorEvent

/** Upper bound on `next()` calls per piece of input, so a parser that loops fails the test instead. */
const maxStepsPerPiece = 1_000_000

export const bytes = (input: string | Uint8Array): Buffer =>
  typeof input === "string" ? Buffer.from(input, "latin1") : Buffer.from(input.buffer, input.byteOffset, input.length)

/** Cuts `input` at the given increasing positions. */
export const splitAt = (input: Buffer, points: ReadonlyArray<number>): Array<Buffer> => {
  const out: Array<Buffer> = []
  let from = 0
  for (const point of points) {
    out.push(input.subarray(from, point))
    from = point
  }
  out.push(input.subarray(from))
  return out
}

/** One-byte pieces. */
export const byteByByte = (input: Buffer): Array<Buffer> => {
  const out: Array<Buffer> = []
  for (let i = 0; i < input.length; i++) out.push(input.subarray(i, i + 1))
  return out
}

/**
 * Pushes each piece and drains `next()` until `NeedData` or an error, collecting the events. An
 * error ends the collection. Data events are merged into `Body` events.
 */
export const parsePieces = (pieces: ReadonlyArray<Buffer>, limits?: ParserLimits): Array<Event> => {
  const parser = new RequestParser(limits)
  const events: Array<Event> = []
  const addBody = (chunk: Buffer) => {
    if (chunk.length === 0) throw new Error("parser returned an empty Data event")
    const last = events[events.length - 1]
    const text = chunk.toString("latin1")
    if (last?._tag === "Body") events[events.length - 1] = { _tag: "Body", body: last.body + text }
    else events.push({ _tag: "Body", body: text })
  }
  for (const piece of pieces) {
    parser.push(piece)
    for (let steps = 0; ; steps++) {
      if (steps > maxStepsPerPiece) throw new Error("parser did not return NeedData or an error")
      const event = parser.next()
      if (event._tag === "NeedData") break
      if (event._tag === "HttpProtocolError") {
        events.push({ _tag: "Error", status: event.status })
        return events
      }
      if (event._tag === "Data") addBody(event.bytes)
      else if (event._tag === "End") events.push({ _tag: "End" })
      else {
        const { _tag, ...head } = event
        events.push({ _tag: "Head", ...head, rawHeaders: [...head.rawHeaders] })
      }
    }
  }
  return events
}

/**
 * Feeds the input whole, then split in two at every byte position, then one byte at a time, and
 * asserts that every split yields exactly the events of the whole input. Returns those events.
 */
export const parseEverySplit = (input: string | Uint8Array, limits?: ParserLimits): Array<Event> => {
  const buffer = bytes(input)
  const whole = parsePieces([buffer], limits)
  for (let i = 0; i <= buffer.length; i++) {
    const split = parsePieces(splitAt(buffer, [i]), limits)
    // toEqual is slow over thousands of splits of large inputs: compare cheaply, diff only on a mismatch.
    if (!isDeepStrictEqual(split, whole)) expect(split, `split at byte ${i}`).toEqual(whole)
  }
  expect(parsePieces(byteByByte(buffer), limits), "byte by byte").toEqual(whole)
  return whole
}

/**
 * Asserts that the input, whole or split anywhere, yields the `before` events and then exactly one
 * error with `status` (the connection is closed, so nothing follows). Returns the events.
 */
export const expectError = (
  input: string | Uint8Array,
  status: number,
  limits?: ParserLimits,
  before: ReadonlyArray<Event> = []
): Array<Event> => {
  const events = parseEverySplit(input, limits)
  expect(events).toEqual([...before, { _tag: "Error", status }])
  return events
}

/** A head event with the defaults of a bodiless keep-alive HTTP/1.1 request, overridden by `fields`. */
export const head = (fields: Partial<Omit<HeadEvent, "_tag">> & { readonly rawHeaders: ReadonlyArray<string> }) => {
  const target = fields.target ?? "/"
  const event: HeadEvent = {
    _tag: "Head",
    method: "GET",
    target,
    url: target,
    versionMinor: 1,
    authority: undefined,
    contentLength: -1,
    chunked: false,
    keepAlive: true,
    expectContinue: false,
    ...fields
  }
  return event
}
