import { describe, expect, it } from 'vitest'
import { EVENTS } from '../../shared/events.ts'
import { StarsockError, wireError } from '../../shared/errors.ts'
import { checkDialTarget, MAX_PEER_PAGES, PeerList, type PeerInfo } from '../../client/peer-list.ts'
import type { Requester } from '../../client/server-link.ts'
import { PeerBatchWindow } from '../../server/peer-batch.ts'

const ID = (n: number): string => `12D3KooW${String(n).padStart(44, 'A').replace(/0/g, 'o')}`
const ADDR = (n: number, host = '1.2.3.4'): string => `/ip4/${host}/tcp/9090/ws/p2p-websocket-star/ipfs/${ID(n)}`
const SELF = 0

function setup (): { list: PeerList, events: string[] } {
  const events: string[] = []
  const list = new PeerList(ID(SELF), (p: PeerInfo) => events.push(`join ${p.peerId} ${p.addr}`), (p: PeerInfo) => events.push(`leave ${p.peerId} ${p.addr}`))
  return { list, events }
}

/** A requester that answers `starsock:peers` with `page(cursor)` and records the cursors asked. */
function pages (page: (cursor: number) => unknown[]): Requester & { cursors: number[] } {
  const cursors: number[] = []
  return {
    connected: true,
    cursors,
    request: async (event, args) => {
      expect(event).toBe(EVENTS.PEERS)
      cursors.push(args[0] as number)
      return page(args[0] as number)
    }
  }
}

describe('PeerList', () => {
  it('applies a peer-batch in order, as the single events, telling each change once', () => {
    const events: string[] = []
    const list = new PeerList(ID(SELF), (p) => events.push(`join ${p.peerId} ${p.name ?? ''}`), (p) => events.push(`leave ${p.peerId}`), (p) => events.push(`profile ${p.peerId} ${p.name ?? ''}`))
    list.learn(ADDR(5))
    list.applyBatch([
      ['join', ADDR(1), { kind: 'node', name: 'one' }],
      ['join', ADDR(2)],
      ['leave', ADDR(5)],
      ['profile', ADDR(2), { kind: 'browser', name: 'two' }],
      ['join', ADDR(SELF)],
      ['leave', ADDR(1)],
      ['join', ADDR(1)],
      'junk',
      ['profile', ADDR(9), { kind: 'node', name: 'nobody' }]
    ])
    expect(events).toEqual([`join ${ID(5)} `, `join ${ID(1)} one`, `join ${ID(2)} `, `leave ${ID(5)}`, `profile ${ID(2)} two`, `leave ${ID(1)}`, `join ${ID(1)} `])
    expect(list.list().map((p) => [p.peerId, p.name])).toEqual([[ID(2), 'two'], [ID(1), undefined]])
    list.applyBatch({ not: 'an array' })
    list.applyBatch(undefined)
    expect(events).toHaveLength(7)
  })

  it('learns and forgets other peers, telling each change once', () => {
    const { list, events } = setup()
    list.learn(ADDR(1))
    list.learn(ADDR(1))
    list.learn(ADDR(2))
    list.forget(ADDR(1))
    list.forget(ADDR(1))
    expect(events).toEqual([`join ${ID(1)} ${ADDR(1)}`, `join ${ID(2)} ${ADDR(2)}`, `leave ${ID(1)} ${ADDR(1)}`])
    expect(list.list()).toEqual([{ peerId: ID(2), addr: ADDR(2) }])
  })

  it.each<[string, unknown]>([['itself', ADDR(SELF)], ['a number', 7], ['a bad address', '/not/an/address'], ['nothing', undefined]])('ignores %s', (_, addr) => {
    const { list, events } = setup()
    list.learn(addr)
    list.forget(addr)
    expect(events).toEqual([])
  })

  it('a new address for a known peer replaces the old one; a leave of the old one is then ignored', () => {
    const { list, events } = setup()
    list.learn(ADDR(1))
    list.learn(ADDR(1, '5.6.7.8'))
    list.forget(ADDR(1))
    expect(events).toEqual([`join ${ID(1)} ${ADDR(1)}`, `join ${ID(1)} ${ADDR(1, '5.6.7.8')}`])
    expect(list.addressOf(ID(1))).toBe(ADDR(1, '5.6.7.8'))
  })

  it('addressOf: an address is itself, a known peer id its address, an unknown one E_PEER_NOT_FOUND', () => {
    const { list } = setup()
    list.learn(ADDR(1))
    expect(list.addressOf(ADDR(9))).toBe(ADDR(9))
    expect(list.addressOf(ID(1))).toBe(ADDR(1))
    expect(() => list.addressOf(ID(2))).toThrow(expect.objectContaining({ code: 'E_PEER_NOT_FOUND', message: `Peer ${ID(2)} is not online` }))
  })

  it.each<[unknown, string]>([
    ['', 'dial target must be a peer id or a websocket-star address'],
    [3, 'dial target must be a peer id or a websocket-star address'],
    ['/ip4/nope', 'dial target /ip4/nope is not a valid multiaddr'],
    ['not-a-peer-id', 'dial target not-a-peer-id is not a peer id']
  ])('checkDialTarget(%j) throws a TypeError', (target, message) => {
    expect(() => checkDialTarget(target as string)).toThrow(new TypeError(message))
  })
})

describe('PeerGathering (a rejoin)', () => {
  it('tells only what changed: gone peers leave, new ones join, unchanged ones stay silent', () => {
    const { list, events } = setup()
    list.learn(ADDR(1))
    list.learn(ADDR(2))
    events.length = 0
    const g = list.gather()
    g.collectAll([ADDR(1), ADDR(3), ADDR(SELF), 42])
    g.apply()
    expect(events).toEqual([`leave ${ID(2)} ${ADDR(2)}`, `join ${ID(3)} ${ADDR(3)}`])
    expect(list.list().map((p) => p.peerId).sort()).toEqual([ID(1), ID(3)].sort())
  })

  it('keeps peers learned from live events while the join ran, and a peer that moved meanwhile', () => {
    const { list, events } = setup()
    list.learn(ADDR(2))
    const g = list.gather()
    list.learn(ADDR(4)) // a live peer-join during the join
    list.learn(ADDR(2, '5.6.7.8')) // peer 2 rejoined from elsewhere
    events.length = 0
    g.collectAll([])
    g.apply()
    expect(events).toEqual([])
    expect(list.addressOf(ID(4))).toBe(ADDR(4))
    expect(list.addressOf(ID(2))).toBe(ADDR(2, '5.6.7.8'))
  })

  it('a live change after the page listed a peer wins over the page (a leave, or a move, in a batch or alone)', () => {
    const { list, events } = setup()
    list.learn(ADDR(5))
    const g = list.gather()
    g.collectAll([ADDR(1), ADDR(2), ADDR(3), ADDR(5)]) // a page read while the peers were there
    list.applyBatch([['leave', ADDR(1)], ['join', ADDR(2, '5.6.7.8')]]) // then a batch: 1 left, 2 moved
    list.forget(ADDR(3)) // a single peer-leave
    list.applyBatch([['leave', ADDR(5)], ['join', ADDR(5)]]) // 5 left and came back
    g.apply()
    expect(list.list().map((p) => p.addr).sort()).toEqual([ADDR(2, '5.6.7.8'), ADDR(5)].sort())
    expect(events.filter((e) => e.includes(ID(1)) || e.includes(ID(3)))).toEqual([])
  })

  it('a live join before a page that lacks the peer keeps it (the page passed its place before it joined)', () => {
    const { list } = setup()
    list.learn(ADDR(1))
    const g = list.gather()
    list.applyBatch([['leave', ADDR(1)], ['join', ADDR(1)]])
    g.collectAll([])
    g.apply()
    expect(list.list().map((p) => p.addr)).toEqual([ADDR(1)])
  })

  it('a live profile change after the page wins over the page\'s profile', async () => {
    const { list } = setup()
    const g = list.gather()
    await g.loadPages(pages(() => [null, { addrs: [ADDR(1)], next: null, profiles: [{ name: 'old', kind: 'node' }] }]))
    list.applyBatch([['profile', ADDR(1), { name: 'new', kind: 'node' }]]) // not known yet: only noted
    g.apply()
    expect(list.info(ID(1))?.name).toBe('new')
  })

  it('reads the pages by their cursors to the end', async () => {
    const { list, events } = setup()
    const link = pages((cursor) => cursor === 0 ? [null, { addrs: [ADDR(1)], next: 5 }] : [null, { addrs: [ADDR(2)], next: null }])
    const g = list.gather()
    expect(await g.loadPages(link)).toBe(true)
    g.apply()
    expect(link.cursors).toEqual([0, 5])
    expect(events).toEqual([`join ${ID(1)} ${ADDR(1)}`, `join ${ID(2)} ${ADDR(2)}`])
  })

  it('stops at the page cap when the server never ends its list', async () => {
    const { list } = setup()
    const link = pages((cursor) => [null, { addrs: [], next: cursor + 1 }])
    expect(await list.gather().loadPages(link, 3)).toBe(false)
    expect(link.cursors).toEqual([0, 1, 2])
    expect(MAX_PEER_PAGES).toBe(5000)
  })

  it('rejects with the server\'s error, or E_BAD_REQUEST for a malformed page', async () => {
    const { list } = setup()
    await expect(list.gather().loadPages(pages(() => [wireError('E_NOT_JOINED', 'Join first')]))).rejects.toMatchObject({ code: 'E_NOT_JOINED' })
    const bad = list.gather().loadPages(pages(() => [null, { addrs: 'all', next: null }]))
    await expect(bad).rejects.toBeInstanceOf(StarsockError)
    await expect(bad).rejects.toMatchObject({ code: 'E_BAD_REQUEST', message: 'starsock:peers reply: addrs must be an array' })
  })
})

describe('PeerList with batches and a page read in between (issue 18)', () => {
  it('ends with the server\'s exact list after any interleaving of joins, leaves, moves, profile changes, flushes and the page (random runs)', () => {
    // mulberry32: a seeded generator whose low bits are as random as its high ones.
    let seed = 11
    const rand = (n: number): number => {
      seed = (seed + 0x6d2b79f5) | 0
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) % n
    }
    const HOSTS = ['1.2.3.4', '5.6.7.8']
    for (let round = 0; round < 3000; round++) {
      // The server's directory: peer n -> its address and profile name (one address per peer).
      const server = new Map<number, { addr: string, name?: string }>()
      const window = new PeerBatchWindow(1000)
      const change = (): void => {
        const n = 1 + rand(4)
        const held = server.get(n)
        const name = rand(2) === 0 ? `n${rand(100)}` : undefined
        const profile = name === undefined ? undefined : { kind: 'node' as const, name }
        const kind = rand(4)
        if (held === undefined || kind === 0) { // a join, or a move to the other host
          const addr = ADDR(n, HOSTS[rand(2)])
          if (held?.addr === addr) return
          if (held !== undefined) { window.leave(held.addr); steps.push(`L${n}`) }
          server.set(n, name === undefined ? { addr } : { addr, name })
          steps.push(`J${n}@${addr.slice(5, 8)}`)
          window.join(addr, profile)
        } else if (kind === 1) {
          server.delete(n)
          steps.push(`L${n}`)
          window.leave(held.addr)
        } else if (profile !== undefined) {
          held.name = name
          window.profile(held.addr, profile)
        }
      }
      // What the client knew from its last connection, and changes pending before it joined.
      const steps: string[] = []
      const { list } = setup()
      for (let n = 1; n <= 4; n++) if (rand(2) === 0) list.learn(ADDR(n, HOSTS[rand(2)]))
      for (let k = rand(4); k > 0; k--) change()
      steps.push(`before:${list.list().map((p) => p.addr.slice(5, 8) + p.peerId.slice(-1)).join(',')}`)
      const g = list.gather()
      // The page is read at one step and the gathering applied at a later one (more pages, or
      // events that came in the same read as the last page's answer).
      let paged = false
      let applied = false
      for (let k = 0, n = 2 + rand(14); k < n || !applied; k++) {
        const step = k >= n ? (paged ? 3 : 2) : rand(4)
        if (step === 0) change()
        else if (step === 1) list.applyBatch(window.take())
        else if (step === 2 && !paged) {
          for (const { addr, name } of server.values()) g.collect(addr, name === undefined ? null : { kind: 'node', name })
          paged = true
        } else if (step === 3 && paged && !applied) {
          g.apply()
          applied = true
        }
        steps.push(String(step))
      }
      list.applyBatch(window.take())
      const want = [...server.values()].map(({ addr, name }) => `${addr} ${name ?? '-'}`).sort()
      expect(list.list().map((p) => `${p.addr} ${p.name ?? '-'}`).sort(), `round ${round}: ${steps.join(' ')}`).toEqual(want)
    }
  })
})
