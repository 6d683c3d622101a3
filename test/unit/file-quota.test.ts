import { describe, expect, it } from 'vitest'
import { FileQuota } from '../../client/sock/file-quota.ts'

describe('FileQuota: running sums of file charges within a sliding window', () => {
  it('sums per peer and in all, settles a charge to what arrived, and drops charges that leave the window', () => {
    const q = new FileQuota(1000)
    const a1 = q.charge('a', 500, 0)
    q.charge('b', 300, 100)
    expect(q.used('a', 100)).toEqual({ mine: 500, all: 800 })
    q.settle(a1, 64)
    expect(q.used('a', 100)).toEqual({ mine: 64, all: 364 })
    expect(q.used('b', 1001)).toEqual({ mine: 300, all: 300 }) // a1 left the window
    q.settle(a1, 9999) // out of the window: the sums do not change
    expect(q.used('a', 1001)).toEqual({ mine: 0, all: 300 })
    expect(q.used('b', 1101)).toEqual({ mine: 0, all: 0 })
  })

  it('keeps the sums right over many charges (compacting its queue on the way)', () => {
    const q = new FileQuota(10)
    for (let t = 0; t < 5000; t++) q.charge(t % 2 === 0 ? 'a' : 'b', 1, t)
    expect(q.used('a', 4999)).toEqual({ mine: 5, all: 11 })
  })
})
