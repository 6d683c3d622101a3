import { describe, expect, it } from 'vitest'
import { MAX_ADDRESS_CHARS } from '../../shared/constants.ts'
import { checkAddress, isWebsocketStarShape, parseAddress } from '../../shared/wsstar-address.ts'

const QM = 'QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC'
const KOO = '12D3KooWGC6TvWhfapngX6wvJHMYvKpDMXPb3ZnCZ6dMoaMtimQ5'

/** A valid strict address of exactly `length` characters (the host name takes up the slack). */
function addressOfLength (length: number): string {
  const rest = '/tcp/443/wss/p2p-websocket-star'
  const head = '/dns4/'
  return head + 'a'.repeat(length - head.length - rest.length) + rest
}

// [address, peer id it carries]
const ACCEPTED: Array<[string, string | undefined]> = [
  ['/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star', undefined],
  ['/ip4/127.0.0.1/tcp/9090/wss/p2p-websocket-star', undefined],
  [`/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${QM}`, QM],
  [`/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/p2p/${KOO}`, KOO],
  ['/ip6/::1/tcp/9090/wss/p2p-websocket-star', undefined],
  [`/ip6/2001:db8::1/tcp/443/wss/p2p-websocket-star/p2p/${QM}`, QM],
  [`/dns4/example.com/tcp/443/wss/p2p-websocket-star/ipfs/${QM}`, QM],
  [`/dns6/example.com/tcp/80/ws/p2p-websocket-star/p2p/${KOO}`, KOO],
  ['/dns/example.com/tcp/80/ws/p2p-websocket-star', undefined],
  ['/dnsaddr/example.com/tcp/443/wss/p2p-websocket-star', undefined],
  // A name host may leave out tcp.
  [`/dns4/example.com/ws/p2p-websocket-star/ipfs/${QM}`, QM],
  ['/dns6/example.com/wss/p2p-websocket-star', undefined],
  ['/dnsaddr/example.com/wss/p2p-websocket-star', undefined],
  ['/p2p-websocket-star', undefined],
  [`/p2p-websocket-star/ipfs/${QM}`, QM],
  [`/p2p-websocket-star/p2p/${KOO}`, KOO]
]

// [why, address]: multiaddrs that parse but are not websocket-star addresses.
const WRONG_SHAPE: Array<[string, string]> = [
  ['no p2p-websocket-star', '/ip4/127.0.0.1/tcp/9090/ws'],
  ['another star protocol', '/ip4/127.0.0.1/tcp/9090/ws/p2p-webrtc-star'],
  ['ip4 without tcp', '/ip4/127.0.0.1/ws/p2p-websocket-star'],
  ['ip6 without tcp', '/ip6/::1/wss/p2p-websocket-star'],
  ['no ws or wss', '/ip4/127.0.0.1/tcp/9090/p2p-websocket-star'],
  ['http instead of ws', '/ip4/127.0.0.1/tcp/9090/http/p2p-websocket-star'],
  ['udp instead of tcp', '/ip4/127.0.0.1/udp/9090/ws/p2p-websocket-star'],
  ['both wss and ws', '/ip4/127.0.0.1/tcp/9090/wss/ws/p2p-websocket-star'],
  ['no host', '/tcp/9090/ws/p2p-websocket-star'],
  ['only ws', '/ws/p2p-websocket-star'],
  ['trailing tcp after the id', `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${QM}/tcp/1`],
  ['two peer ids', `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${QM}/p2p/${KOO}`],
  ['p2p-websocket-star twice', '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/p2p-websocket-star'],
  ['a bare peer id', `/ipfs/${QM}`],
  ['a plain tcp address', '/ip4/127.0.0.1/tcp/9090'],
  ['a unix path', '/unix/tmp%2Fsock']
]

// [why, value]: not a multiaddr at all.
const UNPARSEABLE: Array<[string, unknown]> = [
  ['an unknown protocol at the end', '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/junk'],
  ['a bad ip4', '/ip4/999.0.0.1/tcp/9090/ws/p2p-websocket-star'],
  ['a bad port', '/ip4/127.0.0.1/tcp/99999/ws/p2p-websocket-star'],
  ['garbage', 'hello'],
  ['a leading space', ' /ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star'],
  ['a trailing space', '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star '],
  ['the empty string', ''],
  ['a number', 42],
  ['null', null],
  ['undefined', undefined],
  ['an object', { toString: () => '/p2p-websocket-star' }],
  ['an array', ['/p2p-websocket-star']],
  ['bytes', new TextEncoder().encode('/p2p-websocket-star')],
  ['an overlong address', addressOfLength(MAX_ADDRESS_CHARS + 1)]
]

describe('checkAddress strict', () => {
  it.each(ACCEPTED)('accepts %s', (text, peerId) => {
    const parsed = checkAddress(text, true)
    expect(parsed?.text).toBe(text)
    expect(parsed?.peerId).toBe(peerId)
  })

  it.each(WRONG_SHAPE)('rejects %s', (_, text) => {
    expect(checkAddress(text, true)).toBeUndefined()
  })

  it.each(UNPARSEABLE)('rejects %s', (_, value) => {
    expect(checkAddress(value, true)).toBeUndefined()
  })

  it(`accepts an address of exactly ${MAX_ADDRESS_CHARS} characters`, () => {
    const text = addressOfLength(MAX_ADDRESS_CHARS)
    expect(text).toHaveLength(MAX_ADDRESS_CHARS)
    expect(checkAddress(text, true)?.text).toBe(text)
  })
})

describe('checkAddress not strict', () => {
  it.each([...ACCEPTED.map(([text]) => ['a websocket-star address', text]), ...WRONG_SHAPE])('accepts %s: %s', (_, text) => {
    expect(checkAddress(text, false)?.text).toBe(text)
  })

  it.each(UNPARSEABLE)('still rejects %s', (_, value) => {
    expect(checkAddress(value, false)).toBeUndefined()
  })
})

describe('parseAddress', () => {
  it.each<[string, string[], string | undefined]>([
    [`/ip4/1.2.3.4/tcp/1/ws/p2p-websocket-star/ipfs/${QM}`, ['ip4', 'tcp', 'ws', 'p2p-websocket-star', 'p2p'], QM],
    [`/dns4/a.b/wss/p2p-websocket-star/p2p/${KOO}`, ['dns4', 'wss', 'p2p-websocket-star', 'p2p'], KOO],
    ['/p2p-websocket-star', ['p2p-websocket-star'], undefined],
    // The peer id is the last /ipfs/ or /p2p/ component, wherever it is.
    [`/ipfs/${QM}/p2p-circuit/p2p/${KOO}`, ['p2p', 'p2p-circuit', 'p2p'], KOO]
  ])('reads %s', (text, protocols, peerId) => {
    expect(parseAddress(text)).toEqual({ text, protocols, peerId })
  })

  it('keeps /ipfs/ in the text (never re-serialised as /p2p/)', () => {
    const text = `/p2p-websocket-star/ipfs/${QM}`
    expect(parseAddress(text)?.text).toBe(text)
  })

  it('answers the same address again with the same frozen answer, and a bad one again as bad', () => {
    const text = `/ip4/1.2.3.4/tcp/1/ws/p2p-websocket-star/ipfs/${QM}`
    const first = parseAddress(text)
    expect(parseAddress(text)).toBe(first)
    expect(Object.isFrozen(first)).toBe(true)
    expect(Object.isFrozen(first?.protocols)).toBe(true)
    expect(parseAddress('/ip4/1.2.3.4/tcp/notaport')).toBeUndefined()
    expect(parseAddress('/ip4/1.2.3.4/tcp/notaport')).toBeUndefined()
  })

  it('stays right for addresses past what it remembers', () => {
    const texts = Array.from({ length: 1500 }, (_, i) => `/ip4/10.0.${i >> 8}.${i & 255}/tcp/${1000 + i}/ws/p2p-websocket-star/ipfs/${QM}`)
    for (const text of texts) expect(parseAddress(text)?.text).toBe(text)
    for (const text of texts.reverse()) expect(parseAddress(text)).toEqual({ text, protocols: ['ip4', 'tcp', 'ws', 'p2p-websocket-star', 'p2p'], peerId: QM })
  })
})

describe('isWebsocketStarShape', () => {
  it.each<[string[], boolean]>([
    [['p2p-websocket-star'], true],
    [['p2p-websocket-star', 'p2p'], true],
    [['ip4', 'tcp', 'ws', 'p2p-websocket-star'], true],
    [['dns4', 'wss', 'p2p-websocket-star', 'p2p'], true],
    [[], false],
    [['p2p-websocket-star', 'p2p', 'p2p'], false],
    [['ip4', 'tcp', 'ws'], false],
    [['ip4', 'ws', 'p2p-websocket-star'], false],
    [['tcp', 'ws', 'p2p-websocket-star'], false],
    [['dns4', 'tcp', 'ws', 'p2p-websocket-star', 'tcp'], false]
  ])('%j is %s', (protocols, expected) => {
    expect(isWebsocketStarShape(protocols)).toBe(expected)
  })
})
