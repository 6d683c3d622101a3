import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { Socket } from 'socket.io-client'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { StarsockServer } from '../server/server.ts'
import { connectSocket, dialAndEcho, echoIncoming, joinWithChallenge, makeIdentity, request, startRawPeer, type RawPeer } from './helpers/raw-peer.ts'
import { startServer, testBytes, within } from './helpers/server.ts'
import { expectBytes } from './helpers/bytes.ts'
import { FRAME_EVENT } from '../shared/raw-frame.ts'
import { streamEvent } from '../shared/events.ts'
import { MAX_STRAY_STREAM_EVENTS_PER_IP_PER_SECOND, MAX_STRAY_STREAM_EVENTS_PER_SECOND, STRAY_HOLD_MS, STRAY_STREAM_EVENTS_BURST } from '../server/constants.ts'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const BAD = /\[E_BAD_REQUEST\]$/

describe('bad input gets an error string or is ignored, and the server keeps serving', () => {
  let server: StarsockServer & { port: number }
  let socket: Socket
  let me: Awaited<ReturnType<typeof makeIdentity>>

  beforeAll(async () => {
    server = await startServer()
    socket = await connectSocket(server.url())
    me = await makeIdentity(server.port)
  })
  afterAll(async () => {
    socket.close()
    await server.close()
  })

  const cases: Array<[string, string, () => unknown[], string | RegExp]> = [
    ['join without arguments', 'ss-join', () => [], BAD],
    ['join with a number address', 'ss-join', () => [42, ''], BAD],
    ['join with an object key', 'ss-join', () => [me.addr, {}], BAD],
    ['join with a huge address', 'ss-join', () => ['/'.repeat(100_000), ''], BAD],
    ['join with a huge key', 'ss-join', () => [me.addr, 'a'.repeat(100_000)], BAD],
    ['join with a garbage address', 'ss-join', () => ['garbage', ''], 'Invalid multiaddr'],
    ['join with a bad multiaddr value', 'ss-join', () => ['/ip4/1.2.3.999/tcp/1/ws/p2p-websocket-star', ''], 'Invalid multiaddr'],
    ['join with a non-websocket-star address', 'ss-join', () => [`/ip4/127.0.0.1/tcp/1/ipfs/${me.id}`, 'ab'], 'Invalid multiaddr'],
    ['join without a key', 'ss-join', () => [me.addr, ''], 'Crypto Challenge required but no Id provided'],
    ['join with non-hex key', 'ss-join', () => [me.addr, 'zz not hex'], 'Crypto error'],
    ['join with hex that is no key', 'ss-join', () => [me.addr, 'deadbeef'], 'Crypto error'],
    ['join with an address that has no peer id', 'ss-join', () => ['/ip4/127.0.0.1/tcp/1/ws/p2p-websocket-star', hex(publicKeyToProtobuf(me.key.publicKey))], 'Id is not matching'],
    ['dial without arguments', 'ss-dial', () => [], BAD],
    ['dial with a number dial id', 'ss-dial', () => [me.addr, me.addr, 7], BAD],
    ['dial with a dial id with spaces', 'ss-dial', () => [me.addr, me.addr, 'a b'], BAD],
    ['dial with a huge dial id', 'ss-dial', () => [me.addr, me.addr, 'x'.repeat(1000)], BAD],
    ['dial from an address not joined', 'ss-dial', () => [me.addr, me.addr, 'id1'], 'Not authorized for this address'],
    ['leave with a number', 'ss-leave', () => [5], BAD],
    ['hello with a string', 'starsock:hello', () => ['yes'], BAD],
    ['hello with a non-boolean flag', 'starsock:hello', () => [{ peerEvents: 'yes' }], BAD],
    ['hello with a non-boolean takeover', 'starsock:hello', () => [{ takeover: 1 }], 'starsock:hello: takeover must be a boolean [E_BAD_REQUEST]'],
    ['hello with a resume secret that is not a string', 'starsock:hello', () => [{ resume: { a: 1 } }], 'starsock:hello: resume must be a string [E_BAD_REQUEST]'],
    ['hello with a huge resume secret', 'starsock:hello', () => [{ resume: 'ab'.repeat(100_000) }], BAD],
    ['peers with a negative cursor', 'starsock:peers', () => [-1], BAD],
    ['an unknown event', 'no-such-event', () => [1, 2], 'Unknown event "no-such-event" [E_BAD_REQUEST]'],
    ['a stream chunk with an ack, for no stream', 'socket.io-pull-stream.queue.nope.dialer', () => [Buffer.from('x')], 'Stream event queue not taken: no such stream of this socket, not its side of it, an ended stream, or bad arguments [E_BAD_REQUEST]'],
    ['a stream accept with an ack and nothing else, for no stream', 'socket.io-pull-stream.accept.nope.listener', () => [], /^Stream event accept not taken: .* \[E_BAD_REQUEST\]$/]
  ]

  it.each(cases)('%s', async (_name, event, args, expected) => {
    const [err] = await request(socket, event, args())
    if (typeof expected === 'string') expect(err).toBe(expected)
    else expect(err).toMatch(expected)
  })

  it('refuses a wrong signature, a garbage signature, and a replayed one', async () => {
    const pub = hex(publicKeyToProtobuf(me.key.publicKey))
    const [, nonce1] = await request(socket, 'ss-join', [me.addr, pub])
    expect(typeof nonce1).toBe('string')
    expect(await request(socket, 'ss-join', [me.addr, hex(new Uint8Array(64))])).toEqual(['Signature Invalid'])
    // the nonce was used up by the failed attempt: the same address starts over
    const [, nonce2] = await request(socket, 'ss-join', [me.addr, pub])
    expect(nonce2).not.toBe(nonce1)
    expect(await request(socket, 'ss-join', [me.addr, 'not hex'])).toEqual(['Crypto error'])

    // a signature made for another socket's nonce does not verify here
    const other = await connectSocket(server.url())
    try {
      const [, nonceOther] = await request(other, 'ss-join', [me.addr, pub])
      const sigOther = hex(await me.key.sign(new TextEncoder().encode(nonceOther as string)))
      await request(socket, 'ss-join', [me.addr, pub])
      expect(await request(socket, 'ss-join', [me.addr, sigOther])).toEqual(['Signature Invalid'])
      // the right socket joins with it once; replaying it is no longer a valid answer
      expect((await request(other, 'ss-join', [me.addr, sigOther]))[0]).toBeNull()
      expect(await request(other, 'ss-join', [me.addr, sigOther])).toEqual(['Crypto error'])
    } finally {
      other.close()
    }
  })

  it.each(['Ed25519', 'RSA'] as const)('a %s key that joined before still has to sign: another key\'s signature, and another key under its id, are refused', async (kind) => {
    const known = await makeIdentity(server.port, kind)
    const stranger = await makeIdentity(server.port, kind)
    const knownPub = hex(publicKeyToProtobuf(known.key.publicKey))
    const sockets = await Promise.all([0, 1, 2].map(async () => await connectSocket(server.url())))
    const [first, second, third] = sockets as [Socket, Socket, Socket]
    try {
      await joinWithChallenge(first, known.key, known.addr) // the server now knows this key
      const [, nonce] = await request(second, 'ss-join', [known.addr, knownPub])
      const sig = hex(await stranger.key.sign(new TextEncoder().encode(nonce as string)))
      expect(await request(second, 'ss-join', [known.addr, sig])).toEqual(['Signature Invalid'])
      const [err] = await request(third, 'ss-join', [known.addr, hex(publicKeyToProtobuf(stranger.key.publicKey))])
      expect(err).toBe('Id is not matching') // E_ID_MISMATCH, as the original words it
      expect(server.rendezvous.directory.owner(known.addr)).toBe(first.id)
    } finally {
      for (const s of sockets) s.close()
    }
  })

  it('answers stream events that carry an ack once each: null when taken, an error when not', async () => {
    const a = await startRawPeer(server.url(), server.port)
    const b = await startRawPeer(server.url(), server.port)
    try {
      b.socket.on('ss-incomming', (_dialId: string, _from: string, ack: () => void) => ack())
      expect((await request(a.socket, 'ss-dial', [a.addr, b.addr, 'acked']))[0] ?? null).toBeNull()
      expect(await request(b.socket, 'socket.io-pull-stream.accept.acked.dialer', [])).toEqual([null])
      expect(await request(a.socket, 'socket.io-pull-stream.queue.acked.dialer', [Buffer.from('hi')])).toEqual([null])
      // Not a's side of that stream; a chunk that is not bytes.
      expect((await request(a.socket, 'socket.io-pull-stream.accept.acked.dialer', []))[0]).toMatch(BAD)
      expect((await request(a.socket, 'socket.io-pull-stream.credit.acked.listener', ['lots']))[0]).toMatch(BAD)
      expect(await request(a.socket, 'socket.io-pull-stream.error.acked.dialer', [true])).toEqual([null])
    } finally {
      a.close()
      b.close()
    }
  })

  it('ignores requests without an ack and stream events for streams that do not exist', async () => {
    socket.emit('ss-join', 42)
    socket.emit('ss-dial')
    socket.emit('ss-leave', { a: 1 })
    socket.emit('socket.io-pull-stream.queue.nope.dialer', Buffer.from('x'))
    socket.emit('socket.io-pull-stream.accept.nope.listener')
    socket.emit('socket.io-pull-stream.error.nope.dialer', 'boom')
    socket.emit('socket.io-pull-stream.bogus.x')
    socket.emit('socket.io-pull-stream.queue.', 'x')
    // the socket still works: a full join and an echo after all that
    const [err] = await request(socket, 'starsock:hello', [{}])
    expect(err).toBeNull()
    const metrics = await (await fetch(`${server.url()}/metrics`)).text()
    expect(metrics).toMatch(/starsock_bad_requests_total\{event="stream-queue"\} [1-9]/)
  })

  it('keeps serving after all of it', async () => {
    await joinWithChallenge(socket, me.key, me.addr)
    const a = await startRawPeer(server.url(), server.port)
    const b = await startRawPeer(server.url(), server.port)
    try {
      await expectEcho(a, b, 100_000, 'the echo of 100,000 bytes')
    } finally {
      a.close()
      b.close()
    }
  })
})

/** `b` echoes what it is sent; `a` dials it and gets `size` bytes back exactly within `ms`. */
async function expectEcho (a: RawPeer, b: RawPeer, size: number, what: string, ms?: number): Promise<void> {
  echoIncoming(b)
  const data = testBytes(size)
  expectBytes(await within(what, dialAndEcho(a, b.addr, data), ms), data, what)
}

/** The reason `socket` is disconnected with within `ms`, or `undefined`. */
async function disconnected (socket: Socket, ms: number): Promise<string | undefined> {
  return await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms)
    socket.once('disconnect', (reason: string) => { clearTimeout(timer); resolve(reason) })
  })
}

describe('a socket that floods requests no client sends is disconnected; others are not', () => {
  let server: StarsockServer & { port: number }
  beforeAll(async () => { server = await startServer() })
  afterAll(async () => { await server.close() })

  it.each([
    ['unknown events', (s: Socket, i: number) => s.emit(`no-such-event-${i}`, i)],
    ['malformed requests with an ack', (s: Socket, i: number) => s.emit('ss-dial', i, () => {})],
    ['raw frames nobody negotiated', (s: Socket, i: number) => s.emit(FRAME_EVENT, Buffer.of(1, 0, 0, 0, i & 0xff))]
  ])('%s: past the burst, the server closes the socket', async (_what, send) => {
    const flooder = await connectSocket(server.url())
    const honest = await startRawPeer(server.url(), server.port)
    try {
      const gone = disconnected(flooder, 10_000)
      for (let i = 0; i < 300; i++) send(flooder, i)
      expect(await gone).toBe('io server disconnect')
      const metrics = await (await fetch(`${server.url()}/metrics`)).text()
      expect(metrics).toMatch(/starsock_limit_hits_total\{limit="E_LIMIT_BAD_REQUESTS"\} [1-9]/)
      // The honest socket is still served.
      expect(await request(honest.socket, 'starsock:ping', [])).toEqual([null])
    } finally {
      flooder.close()
      honest.close()
    }
  })

  it('a burst under the budget, and a legacy sender still pushing into a stream that ended, keep their socket', async () => {
    const a = await startRawPeer(server.url(), server.port)
    const b = await startRawPeer(server.url(), server.port)
    try {
      const gone = disconnected(a.socket, 3000)
      for (let i = 0; i < 60; i++) a.socket.emit(`no-such-event-${i}`)
      for (let i = 0; i < 5000; i++) a.socket.emit('socket.io-pull-stream.queue.ended.dialer', Buffer.of(i & 0xff))
      expect(await gone).toBeUndefined()
      await expectEcho(a, b, 10_000, 'an echo after it')
    } finally {
      a.close()
      b.close()
    }
  })
})

describe('stream events and frames for streams a socket does not have are held to a budget: past it the socket is read slower', () => {
  // A server each: a flooder's backlog is still read, held, after its test closed it, and would
  // count in the next test's figures.
  let server: StarsockServer & { port: number }
  beforeEach(async () => { server = await startServer() })
  afterEach(async () => { await server.close() })

  /** `starsock_bad_requests_total{event}` and `starsock_limit_hits_total{limit}` from the server's metrics. */
  const counted = async (): Promise<{ bad: (event: string) => number, hits: (limit: string) => number }> => {
    const text = await (await fetch(`${server.url()}/metrics`)).text()
    const find = (re: RegExp): number => Number(re.exec(text)?.[1] ?? 0)
    return {
      bad: (event) => find(new RegExp(`starsock_bad_requests_total\\{event="${event}"\\} (\\d+)`)),
      hits: (limit) => find(new RegExp(`starsock_limit_hits_total\\{limit="${limit}"\\} (\\d+)`))
    }
  }

  /**
   * The most stray events the server may have handled `seconds` after a flood began: the burst,
   * the budget's rate, and per hold the messages of the reads already made when it began (generous).
   */
  const strayBound = (seconds: number): number => STRAY_STREAM_EVENTS_BURST + MAX_STRAY_STREAM_EVENTS_PER_SECOND * seconds + 5000 * (Math.ceil(seconds * 1000 / STRAY_HOLD_MS) + 1)

  /** Flood `send` 100,000 times at once and wait 1.5 s (the socket's reading is held meanwhile); `seconds()` since the flood began. */
  const flood = async (send: (i: number) => void): Promise<{ seconds: () => number }> => {
    const t0 = performance.now()
    for (let i = 0; i < 100_000; i++) send(i)
    await new Promise((resolve) => setTimeout(resolve, 1500))
    return { seconds: () => (performance.now() - t0) / 1000 }
  }

  it('stream events for streams it never had are held to the stray budget: the socket is read slower, not closed; the honest one is served', async () => {
    const flooder = await connectSocket(server.url())
    const honest = await startRawPeer(server.url(), server.port)
    try {
      const before = await counted()
      const flooded = await flood((i) => flooder.emit(`socket.io-pull-stream.queue.never-${i}.dialer`, Buffer.of(i & 0xff)))
      expect(await request(honest.socket, 'starsock:ping', [])).toEqual([null])
      const after = await counted()
      const seconds = flooded.seconds() // after the count: the bound grows with all the time the server had
      const handled = after.bad('stream-queue') - before.bad('stream-queue')
      expect(handled, 'the burst was handled').toBeGreaterThanOrEqual(STRAY_STREAM_EVENTS_BURST)
      expect(handled, `stray events handled in ${seconds.toFixed(1)} s`).toBeLessThanOrEqual(strayBound(seconds))
      expect(after.hits('E_LIMIT_STRAY_EVENTS')).toBeGreaterThan(before.hits('E_LIMIT_STRAY_EVENTS'))
      expect(flooder.connected, 'a legacy client pushing into dead streams is slowed down, not cut off').toBe(true)
    } finally {
      flooder.close()
      honest.close()
    }
  })

  it('the sockets of one address share a stray budget: each within its own, together past the address\'s, they are held', async () => {
    // Each sends less than one socket's burst; together several times the address's budget.
    const each = STRAY_STREAM_EVENTS_BURST * 3 / 4
    const flooders = await Promise.all(Array.from({ length: 6 }, async () => await connectSocket(server.url())))
    const honest = await startRawPeer(server.url(), server.port)
    try {
      expect(6 * each).toBeGreaterThan(2 * MAX_STRAY_STREAM_EVENTS_PER_IP_PER_SECOND)
      const before = await counted()
      for (const [n, flooder] of flooders.entries()) {
        for (let i = 0; i < each; i++) flooder.emit(`socket.io-pull-stream.queue.never-${n}-${i}.dialer`, Buffer.of(i & 0xff))
      }
      await new Promise((resolve) => setTimeout(resolve, 1500))
      expect(await request(honest.socket, 'starsock:ping', [])).toEqual([null])
      const after = await counted()
      expect(after.hits('E_LIMIT_STRAY_EVENTS'), 'sockets held for their address\'s budget').toBeGreaterThan(before.hits('E_LIMIT_STRAY_EVENTS'))
      expect(flooders.every((f) => f.connected), 'held, not cut off').toBe(true)
    } finally {
      for (const flooder of flooders) flooder.close()
      honest.close()
    }
  })

  it('a socket held for strays is read again once its budget refills: what it sent after them is served', async () => {
    const a = await startRawPeer(server.url(), server.port)
    const b = await startRawPeer(server.url(), server.port)
    try {
      const before = await counted()
      for (let i = 0; i < STRAY_STREAM_EVENTS_BURST + 3000; i++) a.socket.emit(`socket.io-pull-stream.queue.gone-${i}.dialer`, Buffer.of(1))
      expect(await request(a.socket, 'starsock:ping', [], 20_000)).toEqual([null])
      expect((await counted()).hits('E_LIMIT_STRAY_EVENTS')).toBeGreaterThan(before.hits('E_LIMIT_STRAY_EVENTS'))
      await expectEcho(a, b, 10_000, 'an echo after the hold', 20_000)
    } finally {
      a.close()
      b.close()
    }
  })

  it('on long-polling, which cannot be held, a flood of stray stream events past the budget closes the socket', async () => {
    const flooder = await connectSocket(server.url(), { transports: ['polling'] })
    try {
      const gone = disconnected(flooder, 30_000)
      // In posts under the server's body limit, as a polling client sends them when it keeps pace.
      for (let i = 0; i < 100_000 && flooder.connected; i += 2500) {
        for (let j = i; j < i + 2500; j++) flooder.emit(`socket.io-pull-stream.queue.poll-${j}.dialer`, Buffer.of(1))
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      expect(await gone).toBe('io server disconnect')
    } finally {
      flooder.close()
    }
  })

  /** A stream `a` dials to `b` that `b` accepts with a window; settles once `a` may send. */
  const openStream = async (a: RawPeer, b: RawPeer, dialId: string): Promise<string> => {
    const stream = `${dialId}.dialer`
    b.socket.on('ss-incomming', (id: string, _from: string, ack: () => void) => {
      ack()
      if (id === dialId) b.socket.emit(streamEvent('accept', stream), 65536)
    })
    const accepted = new Promise<void>((resolve) => a.socket.once(streamEvent('accept', stream), () => resolve()))
    const [err] = await request(a.socket, 'ss-dial', [a.addr, b.addr, dialId])
    expect(err ?? null).toBeNull()
    await within('the accept', accepted)
    return stream
  }

  it('credit past what a receiver got (in bytes, or one per chunk) is not passed on, and a flood of it is held to the stray budget', async () => {
    const a = await startRawPeer(server.url(), server.port)
    const b = await startRawPeer(server.url(), server.port)
    try {
      const stream = await openStream(a, b, 'credit-flood')
      let credits = 0
      a.socket.on(streamEvent('credit', stream), () => { credits++ })
      const got = new Promise<void>((resolve) => b.socket.once(streamEvent('queue', stream), () => resolve()))
      a.socket.emit(streamEvent('queue', stream), testBytes(1000))
      await within('the chunk', got)
      const before = await counted()
      const flooded = await flood(() => b.socket.emit(streamEvent('credit', stream), 1))
      expect(await request(a.socket, 'starsock:ping', [])).toEqual([null])
      const handled = (await counted()).bad('stream-credit') - before.bad('stream-credit')
      const seconds = flooded.seconds()
      expect(handled, `refused credit handled in ${seconds.toFixed(1)} s`).toBeLessThanOrEqual(strayBound(seconds))
      expect(credits, 'credit passed on: one, for the one chunk b got').toBe(1)
    } finally {
      a.close()
      b.close()
    }
  })

  it('empty chunks on an open stream, which carry nothing, are held to the stray budget', async () => {
    const a = await startRawPeer(server.url(), server.port)
    const b = await startRawPeer(server.url(), server.port)
    try {
      const stream = await openStream(a, b, 'empty-flood')
      let chunks = 0
      b.socket.on(streamEvent('queue', stream), () => { chunks++ })
      const before = await counted()
      const flooded = await flood(() => a.socket.emit(streamEvent('queue', stream), new Uint8Array(0)))
      expect(await request(b.socket, 'starsock:ping', [])).toEqual([null])
      const handled = (await counted()).bad('stream-queue-empty') - before.bad('stream-queue-empty')
      const seconds = flooded.seconds()
      expect(handled, 'the burst was handled').toBeGreaterThanOrEqual(STRAY_STREAM_EVENTS_BURST)
      expect(handled, `empty chunks handled in ${seconds.toFixed(1)} s`).toBeLessThanOrEqual(strayBound(seconds))
      expect(chunks, 'nothing passed on').toBe(0)
    } finally {
      a.close()
      b.close()
    }
  })
})
