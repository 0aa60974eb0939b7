/**
 * The server's live connections: an array with swap-remove standing in for a Set.
 */
import { describe, expect, it } from "@effect/vitest"
import * as fc from "fast-check"
import { ConnectionList } from "../../src/listen/ConnectionList.ts"

interface Item {
  readonly id: number
  listIndex: number
}

/** `fc.assert` for synchronous properties, typed as such. */
const check = <Ts>(property: fc.IProperty<Ts>): void => fc.assert(property)

const item = (id: number): Item => ({ id, listIndex: -1 })
const ids = (list: ConnectionList<Item>): Array<number> =>
  list
    .toArray()
    .map((i) => i.id)
    .sort((a, b) => a - b)

describe("ConnectionList", () => {
  it("adds, removes from any position, and refuses what it does not hold", () => {
    const list = new ConnectionList<Item>()
    const [a, b, c, d] = [item(1), item(2), item(3), item(4)]
    for (const i of [a, b, c, d]) list.add(i)
    expect(list.size).toBe(4)
    expect(list.delete(b)).toBe(true)
    expect(ids(list)).toEqual([1, 3, 4])
    expect(b.listIndex).toBe(-1)
    expect(list.delete(b)).toBe(false)
    expect(list.delete(item(9))).toBe(false)
    expect(list.delete(d)).toBe(true)
    expect(list.delete(a)).toBe(true)
    expect(ids(list)).toEqual([3])
    expect(list.delete(c)).toBe(true)
    expect(list.size).toBe(0)
  })

  it("does not mistake a member of another list at the same index for its own", () => {
    const one = new ConnectionList<Item>()
    const other = new ConnectionList<Item>()
    const a = item(1)
    one.add(a)
    other.add(item(2))
    expect(other.delete(a)).toBe(false)
    expect(one.size).toBe(1)
    expect(other.size).toBe(1)
  })

  it("forEach visits every member once even when each visit removes the member (as a timeout closing it)", () => {
    const list = new ConnectionList<Item>()
    for (let i = 0; i < 10; i++) list.add(item(i))
    const seen: Array<number> = []
    list.forEach((i) => {
      seen.push(i.id)
      if (i.id % 3 === 0) list.delete(i)
    })
    expect(seen.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(ids(list)).toEqual([1, 2, 4, 5, 7, 8])
  })

  it("holds what a Set would after any sequence of adds and deletes", () => {
    check(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 15 })), { maxLength: 200 }), (ops) => {
        const items = Array.from({ length: 16 }, (_, i) => item(i))
        const list = new ConnectionList<Item>()
        const model = new Set<number>()
        for (const [add, id] of ops) {
          if (add && !model.has(id)) {
            list.add(items[id])
            model.add(id)
          } else if (!add) {
            expect(list.delete(items[id])).toBe(model.delete(id))
          }
          expect(list.size).toBe(model.size)
        }
        expect(ids(list)).toEqual([...model].sort((a, b) => a - b))
      })
    )
  })
})
