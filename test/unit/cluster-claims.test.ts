/**
 * The identity rules across cluster nodes, without a network: the credential's hash, claims and
 * reservations as written to and read back from Redis (a bad one is refused, never trusted),
 * `decideClaim` against a holder known by its hash, the directory's index of remote starsock
 * holders by peer id, and reservations with another node's grace.
 */
import { describe, expect, it } from 'vitest'
import { ClusterDirectory } from '../../server/cluster/cluster-directory.ts'
import { claimJson, MAX_RESERVATION_MS, readClaim, readLogEntry, readPeerRow, readReservation, readSnapshot, reservationJson } from '../../server/cluster/plane-entries.ts'
import type { HolderClaim } from '../../server/cluster/types.ts'
import { decideClaim, hashSecret, Reservations } from '../../server/identity-claims.ts'
import { TokenBucket } from '../../server/rate-limit.ts'
import { Session, type Endpoint } from '../../server/session.ts'

const H = hashSecret('aa')
const CLAIM: HolderClaim = { starsock: true, credentialHash: H, remote: '10.0.0.1:4000' }

describe('hashSecret', () => {
  it('is SHA-256, hex', () => {
    expect(hashSecret('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
  })
})

describe('claims and reservations in Redis', () => {
  it('round-trip', () => {
    expect(readClaim(claimJson(CLAIM))).toEqual(CLAIM)
    const legacy: HolderClaim = { starsock: false, credentialHash: undefined, remote: '[::1]:5' }
    expect(readClaim(claimJson(legacy))).toEqual(legacy)
    expect(readClaim(undefined)).toBeUndefined()
    const r = { credentialHash: H, remote: '10.0.0.1:4000', graceMs: 30_000 }
    expect(readReservation(reservationJson(r))).toEqual(r)
    // What a node writes is always what the others read back: a long remote is cut, a long grace bounded.
    expect(readClaim(claimJson({ ...CLAIM, remote: 'x'.repeat(100) }))).toMatchObject({ remote: 'x'.repeat(64) })
    expect(readReservation(reservationJson({ ...r, graceMs: 10 * MAX_RESERVATION_MS }))).toMatchObject({ graceMs: MAX_RESERVATION_MS })
  })

  it('a snapshot\'s live reservations: the grace is what is left (never more than written); malformed triples counted and skipped', () => {
    const r = reservationJson({ credentialHash: H, remote: '10.0.0.1:4000', graceMs: 30_000 })
    const held = (a: unknown, c: unknown = r): string => JSON.stringify({ a, c })
    const snapshot = readSnapshot(['5-0', '9', [], [], ['A', held('/a'), '12000', 'B', held('/b'), '99999', 'C', held('/c'), '0', 'D', held('/d', '{"h":1}'), '500', 'E', held('/e'), 'x', 'F', held(7), '500', 'G', '{"a":"/g"', '500']])
    expect(snapshot.reservations).toEqual([
      { addr: '/a', reservation: { credentialHash: H, remote: '10.0.0.1:4000', graceMs: 12_000 } },
      { addr: '/b', reservation: { credentialHash: H, remote: '10.0.0.1:4000', graceMs: 30_000 } }
    ])
    expect(snapshot.bad).toBe(5)
    // A snapshot of an older script (four parts) has none.
    expect(readSnapshot(['5-0', '9', [], []]).reservations).toEqual([])
  })

  it.each<[string, unknown]>([
    ['not JSON', '{k:1'],
    ['not an object', '[1]'],
    ['not text', 42],
    ['too long', JSON.stringify({ k: 1, r: '1.2.3.4:5', pad: 'x'.repeat(600) })],
    ['k not 0/1', JSON.stringify({ k: 2, r: '1.2.3.4:5' })],
    ['no remote', JSON.stringify({ k: 1, h: H })],
    ['remote too long', JSON.stringify({ k: 1, r: '1'.repeat(65) })],
    ['hash not hex', JSON.stringify({ k: 1, h: 'Z'.repeat(64), r: '1.2.3.4:5' })],
    ['hash too short', JSON.stringify({ k: 1, h: H.slice(1), r: '1.2.3.4:5' })],
    ['a credential in clear where the hash goes', JSON.stringify({ k: 1, h: 'aa', r: '1.2.3.4:5' })],
    ['a legacy client with a hash', JSON.stringify({ k: 0, h: H, r: '1.2.3.4:5' })]
  ])('a claim that is %s is refused', (_name, text) => {
    expect(typeof readClaim(text)).toBe('symbol')
  })

  it.each<[string, object]>([
    ['no hash', { r: '1.2.3.4:5', g: 1000 }],
    ['grace 0', { h: H, r: '1.2.3.4:5', g: 0 }],
    ['grace not an integer', { h: H, r: '1.2.3.4:5', g: 1.5 }],
    ['grace past the bound', { h: H, r: '1.2.3.4:5', g: MAX_RESERVATION_MS + 1 }]
  ])('a reservation with %s is refused', (_name, value) => {
    expect(typeof readReservation(JSON.stringify(value))).toBe('symbol')
  })

  const row = (fields: string[]): unknown => ['1-0', ['t', fields[0], 'a', '/a', 'n', 'node1', 's', '7', 'p', 'null', ...fields.slice(1)]]

  it('reads a join entry\'s claim and decision, a leave entry\'s reservation; a bad one makes the entry malformed', () => {
    expect(readLogEntry(row(['join', 'c', claimJson(CLAIM), 'o', 'takeover', 'x', '/b']))).toMatchObject({ claim: CLAIM, decision: { outcome: 'takeover', takes: '/b' } })
    expect(readLogEntry(row(['join', 'c', claimJson(CLAIM)]))).toMatchObject({ claim: CLAIM, decision: undefined })
    expect(readLogEntry(row(['join']))).toMatchObject({ claim: undefined, decision: undefined })
    const r = { credentialHash: H, remote: '1.2.3.4:5', graceMs: 500 }
    expect(readLogEntry(row(['leave', 'c', reservationJson(r)]))).toMatchObject({ reservation: r })
    expect(readLogEntry(row(['join', 'o', 'steal']))).toBeUndefined()
    expect(readLogEntry(row(['join', 'x', '/b']))).toBeUndefined() // an address taken without an outcome
    expect(readLogEntry(row(['join', 'c', '{"k":7}']))).toBeUndefined()
    expect(readLogEntry(row(['leave', 'c', '{"h":"aa"}']))).toBeUndefined()
  })

  it('reads a peers row\'s claim (the JSON text in `c`); a bad one makes the row malformed', () => {
    expect(readPeerRow('/a', JSON.stringify({ n: 'node1', s: 3, p: null, c: claimJson(CLAIM) }))).toMatchObject({ claim: CLAIM })
    expect(readPeerRow('/a', JSON.stringify({ n: 'node1', s: 3, p: null }))).toMatchObject({ claim: undefined })
    expect(readPeerRow('/a', JSON.stringify({ n: 'node1', s: 3, p: null, c: '{"k":1}' }))).toBeUndefined()
  })
})

describe('decideClaim against a holder known by its hash', () => {
  const newcomer = (starsock: boolean, resume?: string, takeover = false): Session => {
    const s = new Session('x', '127.0.0.1', {} as Endpoint, new TokenBucket(1, 1))
    s.starsock = starsock
    s.takeover = takeover
    s.resume = resume
    return s
  }
  const hashOf = (s: Session): string | undefined => s.resume === undefined ? undefined : hashSecret(s.resume)
  it.each<[string, Session, boolean, boolean, string]>([
    ['its resume id', newcomer(true, 'aa'), true, true, 'resume'],
    ['its resume id, challenge off', newcomer(true, 'aa'), true, false, 'resume'],
    ['another resume id', newcomer(true, 'ab'), true, true, 'in-use'],
    ['the hash itself as a resume id', newcomer(true, H), true, true, 'in-use'],
    ['no resume id', newcomer(true), true, true, 'in-use'],
    ['takeover', newcomer(true, 'ab', true), true, true, 'displace'],
    ['a legacy newcomer', newcomer(false), true, true, 'displace'],
    ['a starsock newcomer to a legacy holder', newcomer(true, 'ab'), false, true, 'replace']
  ])('%s', (_name, s, holderStarsock, challenge, outcome) => {
    const holder = { starsock: holderStarsock, credentialHash: holderStarsock ? H : undefined }
    expect(decideClaim(s, holder, challenge, hashOf(s))).toBe(outcome)
  })
})

describe('ClusterDirectory: remote starsock holders by peer id', () => {
  it('finds the peer id under another spelling, only for starsock rows, and forgets removed ones', () => {
    const d = new ClusterDirectory()
    d.putRemote('/one/P', 'n2', 1, undefined)
    d.setRemoteClaim('/one/P', CLAIM, 'P')
    d.putRemote('/legacy/Q', 'n2', 2, undefined)
    d.setRemoteClaim('/legacy/Q', { starsock: false, credentialHash: undefined, remote: '1.2.3.4:5' }, 'Q')
    expect(d.remoteStarsock('P', '/two/P')?.addr).toBe('/one/P')
    const seq = d.entry('/one/P')?.seq ?? NaN
    expect(d.remoteStarsock('P', '/two/P', seq - 1)?.addr).toBe('/one/P')
    expect(d.remoteStarsock('P', '/two/P', seq)).toBeUndefined() // only one joined after a given seq
    expect(d.remoteStarsock('P', '/one/P')).toBeUndefined()
    expect(d.remoteStarsock('Q', '/two/Q')).toBeUndefined()
    // A claim that changes to legacy, or a local join of the address, takes it out of the index.
    d.setRemoteClaim('/one/P', { starsock: false, credentialHash: undefined, remote: '1.2.3.4:5' }, 'P')
    expect(d.remoteStarsock('P', '/two/P')).toBeUndefined()
    d.setRemoteClaim('/one/P', CLAIM, 'P')
    d.set('/one/P', 's1')
    expect(d.remoteStarsock('P', '/two/P')).toBeUndefined()
    d.putRemote('/three/P', 'n3', 4, undefined)
    d.setRemoteClaim('/three/P', CLAIM, 'P')
    expect(d.dropRemote('/three/P', 'n3')).toBe(true)
    expect(d.remoteStarsock('P', '/two/P')).toBeUndefined()
  })
})

describe('Reservations with another node\'s grace', () => {
  it('hold for the shorter of the two graces', () => {
    let now = 0
    const r = new Reservations(1000, 10, () => now)
    r.reserve('a', '/a', H, '1.2.3.4:5', 200)
    r.reserve('b', '/b', H, '1.2.3.4:5', 60_000)
    now = 300
    expect(r.find('a')).toBeUndefined()
    expect(r.find('b')?.credentialHash).toBe(H)
    now = 1001
    expect(r.find('b')).toBeUndefined()
  })

  it('hold at most maxEntries (maxPeers) whatever a flood of leave entries from other nodes says', () => {
    const r = new Reservations(1000, 3, () => 0)
    for (let i = 0; i < 1000; i++) {
      r.reserve(`k${i}`, `/k${i}`, H, '1.2.3.4:5', i % 2 === 0 ? 1 : 86_400_000)
      expect(r.size).toBeLessThanOrEqual(3)
    }
    expect(r.find('k999')?.untilMs).toBe(1000) // capped at this node's grace
  })
})
