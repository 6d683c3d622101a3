/** Byte comparisons for tests: a length check, then the first differing offset, never a diff of two arrays. */
import { expect } from 'vitest'

const view = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength)

/** The first offset where `a` and `b` differ, or -1 when they hold the same bytes. */
export function firstDifference (a: Uint8Array, b: Uint8Array): number {
  const x = view(a)
  const y = view(b)
  if (x.equals(y)) return -1
  const n = Math.min(x.byteLength, y.byteLength)
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return i
  return n
}

/** Assert `actual` holds exactly the bytes of `expected`; `what` names them in the failure. */
export function expectBytes (actual: Uint8Array | null | undefined, expected: Uint8Array, what: string): void {
  expect(actual, `${what}: no bytes`).toBeInstanceOf(Uint8Array)
  const got = actual as Uint8Array
  expect(got.byteLength, `${what}: length`).toBe(expected.byteLength)
  const at = firstDifference(got, expected)
  expect(at, `${what}: the offset of the first differing byte (${at < 0 ? '' : `${got[at] ?? '-'} instead of ${expected[at] ?? '-'}`})`).toBe(-1)
}
