import { describe, expect, it } from 'vitest'
import { MAX_CREDIT_BYTES } from '../../shared/events.ts'
import { StarsockError } from '../../shared/errors.ts'
import { checkHelloReply, checkPeersPage, checkUdpAllocation } from '../../shared/validate.ts'

const HELLO = { protocol: 1, version: '0.1.0', cryptoChallenge: true, limits: { maxMessageBytes: 1_000_000, streamBufferBytes: 4 * 1024 * 1024, dialTimeoutMs: 10_000, maxStreamsPerSocket: 256 } }

describe('checkHelloReply', () => {
  it('keeps a well-formed reply as it is', () => {
    expect(checkHelloReply(HELLO)).toEqual(HELLO)
  })

  it.each<[string, unknown]>([['undefined', undefined], ['null', null], ['a string', 'hello'], ['an array', [1]]])('is undefined for %s (not a starsock server)', (_, value) => {
    expect(checkHelloReply(value)).toBeUndefined()
  })

  it('replaces wrong-typed fields and drops limits that are not non-negative numbers', () => {
    expect(checkHelloReply({ protocol: '1', version: 7, cryptoChallenge: 'no', limits: { a: -1, b: 'x', c: Infinity, d: NaN, e: 3 } }))
      .toEqual({ protocol: 0, version: '', cryptoChallenge: true, limits: { e: 3 } })
    expect(checkHelloReply({ limits: null })?.limits).toEqual({})
    expect(checkHelloReply({ cryptoChallenge: false })?.cryptoChallenge).toBe(false)
  })

  it.each<[string, number, number]>([
    ['maxMessageBytes', 1, 8 * 1024],
    ['maxMessageBytes', 0, 8 * 1024],
    ['maxMessageBytes', 2 ** 40, 1024 * 1024 * 1024],
    ['maxMessageBytes', 1_000_000, 1_000_000],
    ['streamBufferBytes', 2 ** 50, 2 * MAX_CREDIT_BYTES],
    ['streamBufferBytes', 0, 0],
    ['dialTimeoutMs', 0, 1],
    ['dialTimeoutMs', 1e12, 300_000]
  ])('clamps %s %d to %d', (name, value, clamped) => {
    expect(checkHelloReply({ ...HELLO, limits: { [name]: value } })?.limits[name]).toBe(clamped)
  })
})

describe('checkPeersPage', () => {
  it('keeps a page and its cursor', () => {
    expect(checkPeersPage({ addrs: ['/a', '/b'], next: 7 })).toEqual({ addrs: ['/a', '/b'], next: 7 })
    expect(checkPeersPage({ addrs: [], next: null })).toEqual({ addrs: [], next: null })
  })

  it('drops entries that are not address strings', () => {
    expect(checkPeersPage({ addrs: ['/a', 3, null, 'x'.repeat(2000)], next: null })).toEqual({ addrs: ['/a'], next: null })
  })

  it.each<[string, unknown, string]>([
    ['not an object', 'page', 'must be an object'],
    ['no addrs', { next: null }, 'addrs must be an array'],
    ['a negative cursor', { addrs: [], next: -1 }, 'next must be a non-negative integer or null'],
    ['a fractional cursor', { addrs: [], next: 1.5 }, 'next must be a non-negative integer or null'],
    ['a missing cursor', { addrs: [] }, 'next must be a non-negative integer or null']
  ])('refuses %s', (_, value, what) => {
    const result = checkPeersPage(value)
    expect(result).toBeInstanceOf(StarsockError)
    expect((result as StarsockError).code).toBe('E_BAD_REQUEST')
    expect((result as StarsockError).message).toBe(`starsock:peers reply: ${what}`)
  })
})

describe('checkUdpAllocation', () => {
  const ALLOCATION = { id: 'a1b2', ip: '127.0.0.1', port1: 40000, port2: 40001, token1: 'beef', token2: 'cafe', mode: 'token', expiresAt: 1_700_000_000_000 }

  it('keeps a well-formed allocation (and nothing else)', () => {
    expect(checkUdpAllocation('starsock:udp-allocate', { ...ALLOCATION, extra: 1 })).toEqual(ALLOCATION)
  })

  it.each<[string, Record<string, unknown>, string]>([
    ['an empty id', { id: '' }, 'id must be a string'],
    ['a numeric ip', { ip: 1 }, 'ip must be a string'],
    ['port 0', { port1: 0 }, 'ports must be integers from 1 to 65535'],
    ['port 65536', { port2: 65536 }, 'ports must be integers from 1 to 65535'],
    ['a token that is not hex', { token1: 'zz' }, 'tokens must be hex'],
    ['an unknown mode', { mode: 'any' }, 'mode must be token, address or open'],
    ['an expiry that is not a number', { expiresAt: 'soon' }, 'expiresAt must be a number']
  ])('refuses %s', (_, change, what) => {
    const result = checkUdpAllocation('starsock:udp-refresh', { ...ALLOCATION, ...change })
    expect(result).toBeInstanceOf(StarsockError)
    expect((result as StarsockError).code).toBe('E_BAD_REQUEST')
    expect((result as StarsockError).message).toBe(`starsock:udp-refresh reply: ${what}`)
  })

  it('refuses a reply that is not an object', () => {
    expect((checkUdpAllocation('starsock:udp-allocate', null) as StarsockError).message).toBe('starsock:udp-allocate reply: must be an object')
  })
})
