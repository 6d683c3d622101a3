/** Bytes as their parts: their length, joined, and read from the front across part boundaries as views. */
import { describe, expect, it } from 'vitest'
import { joinParts, partsLength, PartsCursor } from '../../client/parts.ts'

const bytes = (...n: number[]): Uint8Array => Uint8Array.from(n)
const flat = (p: Uint8Array | readonly Uint8Array[]): number[] => p instanceof Uint8Array ? Array.from(p) : p.flatMap((x) => Array.from(x))

describe('parts', () => {
  it('counts and joins parts, and gives bytes given whole back as they are', () => {
    const parts = [bytes(1, 2), bytes(), bytes(3), bytes(4, 5, 6)]
    expect(partsLength(parts)).toBe(6)
    expect(Array.from(joinParts(parts))).toEqual([1, 2, 3, 4, 5, 6])
    const whole = bytes(7, 8)
    expect(joinParts(whole)).toBe(whole)
    expect(joinParts([]).byteLength).toBe(0)
  })

  it('takes n bytes at a time across parts, as views of them, after the skipped bytes', () => {
    const a = bytes(0, 0, 1, 2, 3)
    const b = bytes(4)
    const c = bytes()
    const d = bytes(5, 6, 7, 8)
    const cursor = new PartsCursor([a, b, c, d], 2)
    expect(cursor.remaining).toBe(8)
    const first = cursor.take(2)
    expect(first).toBeInstanceOf(Uint8Array) // within one part: one view
    expect((first as Uint8Array).buffer).toBe(a.buffer)
    expect(flat(first)).toEqual([1, 2])
    const spanning = cursor.take(4)
    expect(Array.isArray(spanning)).toBe(true) // across parts: a view of each
    expect(flat(spanning)).toEqual([3, 4, 5, 6])
    expect((spanning as Uint8Array[]).every((v) => v.byteLength > 0)).toBe(true)
    expect(flat(cursor.take(0))).toEqual([])
    expect(flat(cursor.take(2))).toEqual([7, 8])
    expect(cursor.remaining).toBe(0)
    expect(() => cursor.take(1)).toThrow(RangeError)
  })

  it('skips a whole first part (the room before a batch of nothing)', () => {
    const cursor = new PartsCursor([bytes(0, 0, 0), bytes(9)], 3)
    expect(cursor.remaining).toBe(1)
    expect(flat(cursor.take(1))).toEqual([9])
  })
})
