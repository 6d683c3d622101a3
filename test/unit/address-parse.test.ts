/**
 * The server's own reading of websocket-star addresses (`shared/address-parse.ts`) against
 * `@multiformats/multiaddr`: whatever it reads without the library, it reads exactly as the
 * library does, on valid and hostile input; the common shapes never need the library; other
 * addresses wait for it.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import { MAX_ADDRESS_CHARS } from '../../shared/constants.ts'
import { checkAddress, needsAddressLibrary, parseAddress, readCommonAddress } from '../../shared/address-parse.ts'
import { loadAddressLibrary } from '../../server/address-library.ts'

const QM = 'QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC'
const KOO = '12D3KooWGC6TvWhfapngX6wvJHMYvKpDMXPb3ZnCZ6dMoaMtimQ5'

/** The library's reading: protocol names and the last peer id, or `null` when it refuses. */
function library (text: string): { protocols: string[], peerId: string | undefined } | null {
  try {
    const ma = multiaddr(text)
    const protocols = ma.protoNames()
    const tuples = ma.stringTuples()
    let peerId: string | undefined
    protocols.forEach((p, i) => { if (p === 'p2p') peerId = tuples[i]?.[1] })
    return { protocols, peerId }
  } catch {
    return null
  }
}

/** `readCommonAddress` as the library's shape; `'library'` when it leaves the address to the library. */
function own (text: string): { protocols: string[], peerId: string | undefined } | null | 'library' {
  const r = readCommonAddress(text)
  if (r === undefined) return 'library'
  return r === null ? null : { protocols: [...r.protocols], peerId: r.peerId }
}

/** Read without the library (the shapes peers join with). */
const COMMON = [
  '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star',
  '/ip4/0.0.0.0/tcp/0/wss/p2p-websocket-star',
  '/ip4/255.255.255.255/tcp/65535/wss/p2p-websocket-star',
  `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${QM}`,
  `/ip4/10.1.2.3/tcp/443/wss/p2p-websocket-star/p2p/${KOO}`,
  `/dns4/example.com/tcp/443/wss/p2p-websocket-star/ipfs/${QM}`,
  `/dns6/example.com/tcp/80/ws/p2p-websocket-star/p2p/${KOO}`,
  '/dns/example.com/tcp/80/ws/p2p-websocket-star',
  '/dnsaddr/example.com/wss/p2p-websocket-star',
  `/dns4/example.com/ws/p2p-websocket-star/ipfs/${QM}`,
  `/p2p-websocket-star/ipfs/${QM}`,
  '/p2p-websocket-star',
  // Not websocket-star shapes, but made of the same protocols: read alike.
  '/ip4/1.2.3.4/tcp/80',
  `/ipfs/${QM}`,
  '/ws/ws/ws',
  '/tcp/1/ip4/1.2.3.4/p2p/a/p2p/b',
  '/dns4/a b%2F\u00e9\ud800/ws/p2p-websocket-star/p2p/Qm0'
]

/** Hostile and unusual input: each either read as the library reads it or left to it. */
const HOSTILE = [
  '', '/', '//', '///', 'ip4/1.2.3.4', ' /ip4/1.2.3.4', '/ip4', '/ip4/', '/tcp', '/tcp/', '/p2p', '/ipfs/', '/p2p//x',
  '/ip4/01.2.3.4/tcp/1', '/ip4/1.2.3/tcp/1', '/ip4/1.2.3.4.5/tcp/1', '/ip4/256.1.1.1/tcp/1', '/ip4/1.2.3.4 /tcp/1', '/ip4/-1.2.3.4',
  '/ip4/1.2.3.4/tcp/080', '/ip4/1.2.3.4/tcp/65536', '/ip4/1.2.3.4/tcp/-1', '/ip4/1.2.3.4/tcp/+1', '/ip4/1.2.3.4/tcp/1e3', '/ip4/1.2.3.4/tcp/ 1',
  '/ip4/1.2.3.4/tcp/99999999999999999999', '/ip4/1.2.3.4/tcp/-0', '/ip4/1.2.3.4/tcp/00',
  '/ip6/::1/tcp/1/ws/p2p-websocket-star', '/ip6/not-an-ip/tcp/1', '/WS', '/ws/', '/ws//p2p-websocket-star', '/ws//', '//ws',
  '/udp/1/ws', '/unix/a%2Fb', '/p2p-circuit', '/dns4', '/dns4/', '/dns4//ws', '/p2p-websocket-star/ipfs',
  '/ipfs/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC/', '/__proto__/x', '/constructor', '/toString/1', '/hasOwnProperty',
  '/ip4/1.2.3.4/tcp/1/ws/p2p-websocket-star/p2p/' + 'Q'.repeat(MAX_ADDRESS_CHARS)
]

/** Deterministic pseudo-random strings made of the pieces addresses are made of. */
function* fuzz (count: number): Generator<string> {
  const pieces = ['', 'ip4', 'ip6', 'dns', 'dns4', 'dns6', 'dnsaddr', 'tcp', 'udp', 'ws', 'wss', 'p2p-websocket-star', 'p2p', 'ipfs', 'tls',
    '1.2.3.4', '01.2.3.4', '256.1.1.1', '1.2.3', '80', '080', '0', '65535', '65536', '-1', '+1', '1e3', ' 8', 'example.com', QM, KOO, 'bafy', '::1', 'x y', '%2F', 'WS', 'P2P']
  let seed = 16
  const next = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n }
  for (let i = 0; i < count; i++) {
    const parts: string[] = []
    const length = 1 + next(7)
    for (let j = 0; j < length; j++) parts.push(pieces[next(pieces.length)] as string)
    const lead = next(10) === 0 ? '' : '/'
    const tail = next(8) === 0 ? '/' : ''
    yield lead + parts.join(next(12) === 0 ? '//' : '/') + tail
  }
}

describe('readCommonAddress against @multiformats/multiaddr', () => {
  it('reads the common shapes without the library, as the library does', () => {
    for (const text of COMMON) {
      expect(own(text), text).not.toBe('library')
      expect(own(text), text).toEqual(library(text))
    }
  })

  it('reads hostile input as the library does, or leaves it to the library', () => {
    for (const text of HOSTILE) {
      const mine = own(text)
      if (mine !== 'library') expect(mine, JSON.stringify(text)).toEqual(library(text))
    }
    expect(own('/ip6/::1/tcp/1/ws/p2p-websocket-star')).toBe('library')
    expect(own('ip4/1.2.3.4')).toBeNull()
  })

  it('agrees with the library on 20,000 generated strings', () => {
    let read = 0
    for (const text of fuzz(20_000)) {
      const mine = own(text)
      if (mine === 'library') continue
      read++
      expect(mine, JSON.stringify(text)).toEqual(library(text))
    }
    expect(read).toBeGreaterThan(2_000) // the generator does reach the reader's cases
  })
})

describe('the multiaddr library, loaded on demand', () => {
  it('parses other addresses only once loaded, and then as the library does', async () => {
    const ip6 = `/ip6/2001:db8::1/tcp/443/wss/p2p-websocket-star/p2p/${QM}`
    // This file never loads shared/wsstar-address.ts (the module that loads the library at once).
    expect(needsAddressLibrary(COMMON[0])).toBe(false)
    expect(checkAddress(COMMON[3], true)?.peerId).toBe(QM)
    expect(needsAddressLibrary(ip6)).toBe(true)
    expect(parseAddress(ip6)).toBeUndefined()
    expect(needsAddressLibrary('ip4/no-slash')).toBe(false) // refused whatever the library says
    expect(needsAddressLibrary(42)).toBe(false)
    await Promise.all([loadAddressLibrary(), loadAddressLibrary()])
    expect(needsAddressLibrary(ip6)).toBe(false)
    expect(checkAddress(ip6, true)).toMatchObject({ protocols: ['ip6', 'tcp', 'wss', 'p2p-websocket-star', 'p2p'], peerId: QM })
  })
})
