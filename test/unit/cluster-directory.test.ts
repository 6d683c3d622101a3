/** `ClusterDirectory`: one order by the global sequence number over local and remote entries. */
import { describe, expect, it } from 'vitest'
import { ClusterDirectory, SEQ_SCALE } from '../../server/cluster/cluster-directory.ts'

/** Every address by paging `limit` at a time from cursor 0. */
function pageAll (d: ClusterDirectory, limit: number, cursor = 0): string[] {
  const out: string[] = []
  let next: number | null = cursor
  for (let guard = 0; next !== null; guard++) {
    if (guard > 1000) throw new Error('paging does not end')
    const page = d.page(next, limit)
    out.push(...page.addrs)
    next = page.next
  }
  return out
}

describe('ClusterDirectory', () => {
  it('orders local and remote entries by global seq, whatever the arrival order', () => {
    const d = new ClusterDirectory()
    d.putRemote('/r5', 'n2', 5, undefined)
    d.putRemote('/r2', 'n2', 2, { kind: 'node' })
    d.set('/l', 's1')
    expect(d.confirm(d.entry('/l')!, 3)).toBe(true)
    d.putRemote('/r9', 'n3', 9, undefined)
    expect(pageAll(d, 10)).toEqual(['/r2', '/l', '/r5', '/r9'])
    expect(pageAll(d, 1)).toEqual(['/r2', '/l', '/r5', '/r9'])
    expect(d.size).toBe(4)
    expect(d.localSize).toBe(1)
    expect(d.remoteSize).toBe(3)
  })

  it('answers owner for local entries only and nodeOf for remote ones only', () => {
    const d = new ClusterDirectory()
    d.set('/l', 's1')
    d.putRemote('/r', 'n2', 1, { name: 'x', kind: 'browser' })
    expect(d.owner('/l')).toBe('s1')
    expect(d.nodeOf('/l')).toBeUndefined()
    expect(d.owner('/r')).toBeUndefined()
    expect(d.nodeOf('/r')).toBe('n2')
    // Joined either way (the rotation tells of both).
    expect(d.has('/l')).toBe(true)
    expect(d.has('/r')).toBe(true)
    expect(d.has('/x')).toBe(false)
    expect(d.remoteProfile('/r')).toEqual({ name: 'x', kind: 'browser' })
    expect(d.remoteProfile('/l')).toBeUndefined()
    // release is for local entries, by their session.
    expect(d.release('/r', 's1')).toBe(false)
    expect(d.release('/l', 's2')).toBe(false)
    expect(d.release('/l', 's1')).toBe(true)
    expect(d.localSize).toBe(0)
  })

  it('puts a local join provisionally after the highest seq seen, and moves it (never earlier) when numbered', () => {
    const d = new ClusterDirectory()
    d.putRemote('/a', 'n2', 10, undefined)
    d.set('/p1', 's1')
    d.set('/p2', 's2')
    expect(pageAll(d, 10)).toEqual(['/a', '/p1', '/p2'])
    // A pager holding a cursor between /p1 and /p2 keeps going after them.
    const first = d.page(0, 2)
    expect(first.addrs).toEqual(['/a', '/p1'])
    d.putRemote('/b', 'n3', 11, undefined)
    expect(d.confirm(d.entry('/p1')!, 12)).toBe(true)
    expect(d.confirm(d.entry('/p2')!, 13)).toBe(true)
    expect(pageAll(d, 10)).toEqual(['/a', '/b', '/p1', '/p2'])
    expect(pageAll(d, 10, first.next!)).toEqual(['/b', '/p1', '/p2'])
    // A local join after those goes after seq 13.
    d.set('/p3', 's3')
    expect(d.entry('/p3')!.key).toBe(13 * SEQ_SCALE + 1)
  })

  it('unnumbers a local entry that changes hands (the new holder\'s join is not written yet), keeping its place', () => {
    const d = new ClusterDirectory()
    d.set('/h', 's1')
    expect(d.confirm(d.entry('/h')!, 5)).toBe(true)
    const key = d.entry('/h')!.key
    d.set('/h', 's2')
    expect(d.owner('/h')).toBe('s2')
    expect(d.entry('/h')!.seq).toBe(0)
    expect(d.entry('/h')!.key).toBe(key)
    expect(d.confirm(d.entry('/h')!, 9)).toBe(true)
    expect(d.entry('/h')!.seq).toBe(9)
  })

  it('keeps the order across nodes: a cursor of one copy is valid on another', () => {
    const one = new ClusterDirectory()
    const two = new ClusterDirectory()
    const joins: Array<[string, string, number]> = [['/a', 'n1', 1], ['/b', 'n2', 2], ['/c', 'n1', 3], ['/d', 'n2', 4], ['/e', 'n3', 5]]
    for (const [addr, node, seq] of joins) {
      for (const [copy, self] of [[one, 'n1'], [two, 'n2']] as const) {
        if (node === self) {
          copy.set(addr, `s-${addr}`)
          copy.confirm(copy.entry(addr)!, seq)
        } else {
          copy.putRemote(addr, node, seq, undefined)
        }
      }
    }
    const p = one.page(0, 2)
    expect(p.addrs).toEqual(['/a', '/b'])
    expect(pageAll(two, 2, p.next!)).toEqual(['/c', '/d', '/e'])
  })

  it('lists a peer joined before paging began and still there at the end, through joins, leaves and moves', () => {
    const d = new ClusterDirectory()
    for (let i = 1; i <= 20; i++) d.putRemote(`/r${i}`, 'n2', i, undefined)
    const seen: string[] = []
    let next: number | null = 0
    let seq = 21
    while (next !== null) {
      const page = d.page(next, 3)
      seen.push(...page.addrs)
      next = page.next
      // Churn between pages: a leave, a join elsewhere, a local join numbered later.
      d.dropRemote(`/r${seq - 19}`, 'n2')
      d.putRemote(`/x${seq}`, 'n3', seq++, undefined)
      d.set(`/l${seq}`, 's')
      d.confirm(d.entry(`/l${seq}`)!, seq++)
    }
    for (let i = 1; i <= 20; i++) {
      if (d.entry(`/r${i}`) !== undefined) expect(seen).toContain(`/r${i}`)
    }
  })

  it('replaces a remote entry by a local join, and never a local entry by a remote one', () => {
    const d = new ClusterDirectory()
    d.putRemote('/a', 'n2', 1, undefined)
    d.set('/a', 's1')
    expect(d.owner('/a')).toBe('s1')
    expect(d.nodeOf('/a')).toBeUndefined()
    expect(d.putRemote('/a', 'n3', 5, undefined)).toBe(false)
    expect(d.owner('/a')).toBe('s1')
    expect(d.size).toBe(1)
  })

  it('reports whether a remote entry is new or moved, drops it only for its node, and keeps at() dense', () => {
    const d = new ClusterDirectory()
    expect(d.putRemote('/a', 'n2', 1, undefined)).toBe(true)
    expect(d.putRemote('/a', 'n2', 4, { kind: 'node' })).toBe(false) // renumbered: the same node
    expect(d.putRemote('/a', 'n3', 6, undefined)).toBe(true) // moved
    expect(d.dropRemote('/a', 'n2')).toBe(false)
    d.putRemote('/b', 'n2', 7, undefined)
    d.set('/c', 's')
    expect(d.dropRemote('/a', 'n3')).toBe(true)
    const listed = [d.at(0), d.at(1)].sort()
    expect(listed).toEqual(['/b', '/c'])
    expect(d.at(2)).toBeUndefined()
    expect(pageAll(d, 1)).toEqual(['/b', '/c'])
  })

  it('ignores a late number for an entry that left or changed since', () => {
    const d = new ClusterDirectory()
    d.set('/a', 's1')
    const old = d.entry('/a')!
    d.release('/a', 's1')
    d.set('/a', 's2')
    expect(d.confirm(old, 3)).toBe(false)
    expect(d.entry('/a')!.seq).toBe(0)
    expect(d.highestSeq).toBe(3)
  })

  it('compacts stale order pairs without losing live entries', () => {
    const d = new ClusterDirectory()
    for (let i = 1; i <= 500; i++) d.putRemote(`/r${i}`, 'n2', i, undefined)
    for (let i = 1; i <= 450; i++) d.dropRemote(`/r${i}`)
    for (let i = 451; i <= 500; i++) d.putRemote(`/r${i}`, 'n2', i + 1000, undefined)
    const all = pageAll(d, 7)
    expect(all).toHaveLength(50)
    expect(new Set(all).size).toBe(50)
  })
})
