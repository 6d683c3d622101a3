import { describe, expect, it } from 'vitest'
import { MemoryPeerDirectory } from '../../server/peer-directory.ts'

/** Every address from `at(0)` to `at(size - 1)`, in order. */
function listed (directory: MemoryPeerDirectory): Array<string | undefined> {
  return Array.from({ length: directory.size }, (_, i) => directory.at(i))
}

/** A tiny seeded PRNG so the random walk below is the same on every run. */
function prng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

describe('MemoryPeerDirectory', () => {
  it('starts empty', () => {
    const directory = new MemoryPeerDirectory()
    expect(directory.size).toBe(0)
    expect(directory.at(0)).toBeUndefined()
    expect(directory.owner('/a')).toBeUndefined()
  })

  it('lists addresses in join order and knows their owners', () => {
    const directory = new MemoryPeerDirectory()
    directory.set('/a', 's1')
    directory.set('/b', 's2')
    directory.set('/c', 's1')
    expect(directory.size).toBe(3)
    expect(listed(directory)).toEqual(['/a', '/b', '/c'])
    expect([directory.owner('/a'), directory.owner('/b'), directory.owner('/c')]).toEqual(['s1', 's2', 's1'])
    expect(directory.at(3)).toBeUndefined()
    expect(directory.at(-1)).toBeUndefined()
  })

  it('set on a held address changes the owner and keeps one entry', () => {
    const directory = new MemoryPeerDirectory()
    directory.set('/a', 's1')
    directory.set('/b', 's1')
    directory.set('/a', 's2')
    expect(directory.size).toBe(2)
    expect(listed(directory)).toEqual(['/a', '/b'])
    expect(directory.owner('/a')).toBe('s2')
    // The old owner can no longer release it; the new one can.
    expect(directory.release('/a', 's1')).toBe(false)
    expect(directory.has('/a')).toBe(true)
    expect(directory.release('/a', 's2')).toBe(true)
    expect(directory.has('/a')).toBe(false)
    expect(directory.has('/b')).toBe(true)
    expect(listed(directory)).toEqual(['/b'])
  })

  // [joined, released, expected list after the swap-remove]
  it.each<[string[], string, string[]]>([
    [['/a'], '/a', []],
    [['/a', '/b', '/c'], '/c', ['/a', '/b']],
    [['/a', '/b', '/c'], '/a', ['/c', '/b']],
    [['/a', '/b', '/c', '/d'], '/b', ['/a', '/d', '/c']]
  ])('from %j releasing %s leaves %j', (joined, released, expected) => {
    const directory = new MemoryPeerDirectory()
    for (const addr of joined) directory.set(addr, 's')
    expect(directory.release(released, 's')).toBe(true)
    expect(listed(directory)).toEqual(expected)
    expect(directory.owner(released)).toBeUndefined()
    expect(directory.at(expected.length)).toBeUndefined()
  })

  it.each<[string, string, string]>([
    ['a non-owner', '/a', 'other'],
    ['an unknown address', '/z', 's1']
  ])('release by %s does nothing', (_, addr, sessionId) => {
    const directory = new MemoryPeerDirectory()
    directory.set('/a', 's1')
    directory.set('/b', 's2')
    expect(directory.release(addr, sessionId)).toBe(false)
    expect(directory.size).toBe(2)
    expect(listed(directory)).toEqual(['/a', '/b'])
    expect(directory.owner('/a')).toBe('s1')
  })

  it('releasing twice removes once', () => {
    const directory = new MemoryPeerDirectory()
    directory.set('/a', 's1')
    directory.set('/b', 's1')
    expect(directory.release('/a', 's1')).toBe(true)
    expect(directory.release('/a', 's1')).toBe(false)
    expect(listed(directory)).toEqual(['/b'])
  })

  it('after a long random walk of joins and leaves, at(0..size-1) is a permutation of the joined addresses', () => {
    const directory = new MemoryPeerDirectory()
    const reference = new Map<string, string>() // addr -> owner, the simple model
    const random = prng(42)
    for (let step = 0; step < 5000; step++) {
      const addr = `/p2p-websocket-star/ipfs/peer${Math.floor(random() * 200)}`
      const owner = `s${Math.floor(random() * 5)}`
      if (random() < 0.55) {
        directory.set(addr, owner)
        reference.set(addr, owner)
      } else {
        const removed = directory.release(addr, owner)
        expect(removed).toBe(reference.get(addr) === owner)
        if (removed) reference.delete(addr)
      }
      if (step % 97 === 0) {
        expect(directory.size).toBe(reference.size)
        expect([...listed(directory)].sort()).toEqual([...reference.keys()].sort())
      }
    }
    expect(directory.size).toBe(reference.size)
    const list = listed(directory)
    expect(new Set(list).size).toBe(list.length)
    expect([...list].sort()).toEqual([...reference.keys()].sort())
    for (const [addr, owner] of reference) expect(directory.owner(addr)).toBe(owner)
  })
})

describe('MemoryPeerDirectory.page', () => {
  it('lists every peer that stays, even when leaves reorder the rotation list mid-paging', () => {
    const dir = new MemoryPeerDirectory()
    const addrs = Array.from({ length: 10 }, (_, i) => `/p2p-websocket-star/ipfs/p${i}`)
    for (const a of addrs) dir.set(a, 's')
    const first = dir.page(0, 4)
    expect(first.addrs).toEqual(addrs.slice(0, 4))
    dir.release(addrs[1] as string, 's') // swap-remove moves p9 into an early slot of the rotation list
    dir.release(addrs[5] as string, 's')
    const seen = [...first.addrs]
    let cursor = first.next
    while (cursor !== null) {
      const page = dir.page(cursor, 4)
      seen.push(...page.addrs)
      cursor = page.next
    }
    expect(seen.filter((a) => a !== addrs[1])).toEqual(addrs.filter((a) => a !== addrs[1] && a !== addrs[5]))
  })

  it('skips what the caller excludes and compacts without losing order', () => {
    const dir = new MemoryPeerDirectory()
    for (let i = 0; i < 200; i++) dir.set(`a${i}`, 's')
    for (let i = 0; i < 150; i++) dir.release(`a${i}`, 's')
    const all = dir.page(0, 1000, (a) => a === 'a160')
    expect(all.addrs).toEqual(Array.from({ length: 50 }, (_, i) => `a${150 + i}`).filter((a) => a !== 'a160'))
    expect(all.next).toBeNull()
  })
})
