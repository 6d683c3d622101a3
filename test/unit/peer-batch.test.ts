import { describe, expect, it } from 'vitest'
import type { PeerBatchEntry } from '../../shared/events.ts'
import type { PeerProfile } from '../../shared/profile.ts'
import { PeerBatchWindow } from '../../server/peer-batch.ts'

type Op = readonly ['join', string, PeerProfile?] | readonly ['leave', string] | readonly ['profile', string, PeerProfile]

/** Feed `ops` to a window and take the batch. */
function batchOf (ops: readonly Op[], maxEntries = 1000): { entries: PeerBatchEntry[], window: PeerBatchWindow } {
  const window = new PeerBatchWindow(maxEntries)
  for (const op of ops) {
    if (op[0] === 'join') window.join(op[1], op[2])
    else if (op[0] === 'leave') window.leave(op[1])
    else window.profile(op[1], op[2])
  }
  return { entries: window.take(), window }
}

/** What a client knows (address -> profile name) after applying changes one by one, as `PeerList` does. */
function apply (start: ReadonlyMap<string, string | undefined>, changes: ReadonlyArray<Op | PeerBatchEntry>): Map<string, string | undefined> {
  const known = new Map(start)
  for (const change of changes) {
    if (change[0] === 'join') known.set(change[1], change[2]?.name ?? known.get(change[1]))
    else if (change[0] === 'leave') known.delete(change[1])
    else if (known.has(change[1])) known.set(change[1], change[2].name)
  }
  return known
}

const p = (name: string): PeerProfile => ({ kind: 'node', name })

describe('PeerBatchWindow', () => {
  it.each<[string, Op[], PeerBatchEntry[]]>([
    ['keeps order', [['join', 'a'], ['leave', 'b'], ['profile', 'c', p('c')]], [['join', 'a'], ['leave', 'b'], ['profile', 'c', p('c')]]],
    ['join then leave: only the leave', [['join', 'a'], ['join', 'b'], ['leave', 'a']], [['join', 'b'], ['leave', 'a']]],
    ['leave then join: both, in order', [['leave', 'a'], ['join', 'a', p('x')]], [['leave', 'a'], ['join', 'a', p('x')]]],
    ['leave, join, leave: one leave', [['leave', 'a'], ['join', 'a'], ['leave', 'a']], [['leave', 'a']]],
    ['every profile change is kept, in order', [['join', 'a'], ['join', 'b'], ['profile', 'a', p('y')], ['profile', 'a', p('z')]], [['join', 'a'], ['join', 'b'], ['profile', 'a', p('y')], ['profile', 'a', p('z')]]],
    ['a profile change then a leave: the leave', [['profile', 'a', p('1')], ['leave', 'a']], [['leave', 'a']]],
    ['a second join with a profile: one join, the newest profile', [['join', 'a', p('1')], ['join', 'b'], ['profile', 'a', p('2')], ['join', 'a', p('3')]], [['join', 'a', p('3')], ['join', 'b']]],
    ['a second join without one: the first join and the changes since stand', [['join', 'a', p('1')], ['profile', 'a', p('2')], ['join', 'a']], [['join', 'a', p('1')], ['profile', 'a', p('2')]]]
  ])('%s', (_, ops, expected) => {
    expect(batchOf(ops).entries).toEqual(expected)
  })

  it('take empties the window', () => {
    const window = new PeerBatchWindow(10)
    window.join('a')
    expect(window.size).toBe(1)
    expect(window.take()).toEqual([['join', 'a']])
    expect(window.size).toBe(0)
    expect(window.take()).toEqual([])
    window.leave('a')
    expect(window.take()).toEqual([['leave', 'a']])
  })

  it('past maxEntries drops the oldest joins and profile changes, never a leave, and counts them', () => {
    const { entries, window } = batchOf([['leave', 'x'], ['join', 'a'], ['profile', 'b', p('b')], ['leave', 'y'], ['join', 'c'], ['join', 'd']], 3)
    expect(entries).toEqual([['leave', 'x'], ['leave', 'y'], ['join', 'd']])
    expect(window.dropped).toBe(3)
    // Only leaves: over the cap, all kept (they are bounded by the directory).
    expect(batchOf([['leave', 'a'], ['leave', 'b'], ['leave', 'c']], 2).entries).toHaveLength(3)
  })

  it('a join dropped at the cap then left: the leave is still sent', () => {
    expect(batchOf([['join', 'a'], ['join', 'b'], ['leave', 'a']], 1).entries).toEqual([['leave', 'a']])
  })

  it('stays small under join/leave churn of few addresses', () => {
    const window = new PeerBatchWindow(100)
    for (let i = 0; i < 100_000; i++) {
      window.join(`a${i % 3}`)
      window.leave(`a${i % 3}`)
    }
    expect(window.size).toBe(3)
    expect(window.take()).toEqual([['leave', 'a0'], ['leave', 'a1'], ['leave', 'a2']])
  })

  it('refuses a cap below 1', () => {
    expect(() => new PeerBatchWindow(0)).toThrow(RangeError)
  })

  it('a client applying the batch ends where single events would have left it (random changes, any start)', () => {
    // mulberry32: the low bits of the LCG this had alternated (rand(2) was 0, 1, 0, 1, ...).
    let seed = 7
    const rand = (n: number): number => {
      seed = (seed + 0x6d2b79f5) | 0
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) % n
    }
    for (let round = 0; round < 2000; round++) {
      const addrs = ['a', 'b', 'c', 'd', 'e']
      const start = new Map<string, string | undefined>(addrs.filter(() => rand(2) === 0).map((a) => [a, undefined]))
      const ops: Op[] = []
      for (let k = 0, n = 1 + rand(12); k < n; k++) {
        const addr = addrs[rand(addrs.length)] as string
        const kind = rand(3)
        ops.push(kind === 0 ? ['join', addr, rand(2) === 0 ? p(`n${k}`) : undefined] : kind === 1 ? ['leave', addr] : ['profile', addr, p(`m${k}`)])
      }
      expect(apply(start, batchOf(ops).entries), JSON.stringify({ start: [...start], ops })).toEqual(apply(start, ops))
    }
  })
})
