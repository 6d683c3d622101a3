import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { Socket } from 'socket.io-client'
import { afterEach, describe, expect, it } from 'vitest'
import type { ServerOptions } from '../server/options.ts'
import type { StarsockServer } from '../server/server.ts'
import { chunked, connectSocket, dialAndEcho, echoIncoming, joinWithChallenge, makeIdentity, receiveStream, request, startRawPeer, streamFailure, StreamSink, type RawPeer } from './helpers/raw-peer.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'
import { expectBytes } from './helpers/bytes.ts'
import { streamEvent } from '../shared/events.ts'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

/** The client's own websocket (the `ws` package in Node), to stop reading like a slow receiver. */
function clientWebSocket (socket: Socket): { pause: () => void, resume: () => void } {
  return (socket.io.engine.transport as unknown as { ws: { pause: () => void, resume: () => void } }).ws
}

/** Accept every dial on `peer` and receive its dialer stream; `got(dialId)` settles with it. */
function incomingStreams (peer: RawPeer): (dialId: string) => Promise<Buffer> {
  const streams = new Map<string, Promise<Buffer>>()
  peer.socket.on('ss-incomming', (dialId: string, _from: string, ack: () => void) => {
    const p = receiveStream(peer.socket, `${dialId}.dialer`)
    p.catch(() => {}) // observed by the test through `got`
    streams.set(dialId, p)
    ack()
  })
  return async (dialId) => {
    await waitFor(`an incoming dial ${dialId}`, () => streams.has(dialId))
    return await (streams.get(dialId) as Promise<Buffer>)
  }
}

describe('limits', () => {
  let server: (StarsockServer & { port: number }) | undefined
  const sockets: Array<{ close: () => void }> = []
  const start = async (options: ServerOptions): Promise<StarsockServer & { port: number }> => {
    server = await startServer(options)
    return server
  }
  /** A joined raw peer; `localAddress`: connecting from another loopback address (another client IP). */
  const peer = async (localAddress?: string): Promise<RawPeer> => {
    if (server === undefined) throw new Error('no server')
    const p = await startRawPeer(server.url(), server.port, { localAddress })
    sockets.push(p)
    return p
  }
  /** Dial `to` from `from`, with the listener accepting (and not reading unless asked). */
  const openDial = async (from: RawPeer, to: string, dialId: string): Promise<unknown> => {
    const [err] = await request(from.socket, 'ss-dial', [from.addr, to, dialId])
    return err
  }

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close()
    await server?.close()
    server = undefined
  })

  it('caps addresses per socket, naming the limit', async () => {
    const s = await start({ maxAddressesPerSocket: 2 })
    const socket = await connectSocket(s.url())
    sockets.push(socket)
    for (let i = 0; i < 2; i++) {
      const me = await makeIdentity(s.port)
      await joinWithChallenge(socket, me.key, me.addr)
    }
    const third = await makeIdentity(s.port)
    await expect(joinWithChallenge(socket, third.key, third.addr)).rejects.toThrow('maxAddressesPerSocket=2')
    expect(s.stats().peers).toBe(2)
  })

  it('caps peers per server', async () => {
    await start({ maxPeers: 2 })
    await peer()
    await peer()
    await expect(peer()).rejects.toThrow('Server peer limit reached (maxPeers=2) [E_LIMIT_PEERS]')
  })

  it('caps join attempts per IP per minute', async () => {
    const s = await start({ maxJoinsPerIpPerMinute: 3 })
    const socket = await connectSocket(s.url())
    sockets.push(socket)
    const me = await makeIdentity(s.port)
    const pub = hex(publicKeyToProtobuf(me.key.publicKey))
    for (let i = 0; i < 3; i++) expect((await request(socket, 'ss-join', [me.addr, pub]))[0]).toBeNull()
    expect((await request(socket, 'ss-join', [me.addr, pub]))[0]).toBe('Join rate limit reached (maxJoinsPerIpPerMinute=3) [E_LIMIT_JOIN_RATE]')
    const metrics = await (await fetch(`${s.url()}/metrics`)).text()
    expect(metrics).toMatch(/^starsock_limit_hits_total\{limit="E_LIMIT_JOIN_RATE"\} 1$/m)
  })

  it('caps dials per second per socket', async () => {
    await start({ maxDialsPerSecond: 2 })
    const a = await peer()
    const b = await peer()
    echoIncoming(b)
    const replies = await Promise.all(Array.from({ length: 10 }, async (_, i) => await openDial(a, b.addr, `rate${i}`)))
    const limited = replies.filter((r) => r === 'Dial rate limit reached (maxDialsPerSecond=2) [E_LIMIT_DIAL_RATE]')
    expect(replies.filter((r) => r == null).length).toBe(4) // a burst of twice the rate
    expect(limited.length).toBe(6)
  })

  it('caps concurrent streams per socket', async () => {
    await start({ maxStreamsPerSocket: 4 })
    const a = await peer()
    const b = await peer()
    echoIncoming(b)
    expect(await openDial(a, b.addr, 's1')).toBeUndefined()
    expect(await openDial(a, b.addr, 's2')).toBeUndefined()
    expect(await openDial(a, b.addr, 's3')).toBe('Stream limit reached (maxStreamsPerSocket=4) [E_LIMIT_STREAMS]')
  })

  it('one address takes at most a quarter of a peer\'s streams, whatever identities it joins with; another address still dials it', async () => {
    await start({ maxStreamsPerSocket: 16, maxDialsPerSecond: 1000 })
    const victim = await peer()
    echoIncoming(victim)
    const attacker = await peer('127.0.0.2')
    const again = await peer('127.0.0.2') // a second identity costs nothing
    const refused = 'Streams of the dialed peer with this address reached (at most 4, a quarter of its streams) (maxStreamsPerSocket=16) [E_LIMIT_STREAMS]'
    expect(await openDial(attacker, victim.addr, 'a1')).toBeUndefined()
    expect(await openDial(attacker, victim.addr, 'a2')).toBeUndefined()
    expect(await openDial(attacker, victim.addr, 'a3')).toBe(refused)
    expect(await openDial(again, victim.addr, 'b1')).toBe(refused)
    // Others reach it, and it can still dial out.
    const honest = await peer('127.0.0.3')
    echoIncoming(honest)
    expect(await openDial(honest, victim.addr, 'h1')).toBeUndefined()
    expect(await openDial(victim, honest.addr, 'v1')).toBeUndefined()
    // A peer's own dials to an address are not that address's share of it.
    const other = await peer()
    echoIncoming(other)
    echoIncoming(again)
    expect(await openDial(other, again.addr, 'o1')).toBeUndefined()
    expect(await openDial(other, again.addr, 'o2')).toBeUndefined()
    expect(await openDial(again, other.addr, 'c1')).toBeUndefined()
    expect(await openDial(again, other.addr, 'c2')).toBeUndefined()
    expect(await openDial(again, other.addr, 'c3')).toBe(refused)
  })

  it('fails a stream past its byte budget, and an idle stream', async () => {
    await start({ streamByteBudget: 10_000, streamIdleTimeoutMs: 300 })
    const a = await peer()
    const b = await peer()
    const got = incomingStreams(b)
    const sink = new StreamSink(a.socket, 'budget.dialer')
    expect(await openDial(a, b.addr, 'budget')).toBeUndefined()
    await sink.send(chunked(testBytes(20_000), 1000), false)
    await expect(within('budget error at B', got('budget'))).rejects.toThrow('streamByteBudget=10000')

    expect(await openDial(a, b.addr, 'idle')).toBeUndefined()
    await expect(within('idle error at B', got('idle'))).rejects.toThrow('[E_STREAM_IDLE]')
  })

  it('times out a listener that does not answer, and passes on a refusal', async () => {
    await start({ dialTimeoutMs: 300 })
    const a = await peer()
    const silent = await peer()
    expect(await openDial(a, silent.addr, 'slow')).toBe('Listener did not answer within 300 ms [E_DIAL_TIMEOUT]')
    const refusing = await peer()
    refusing.socket.on('ss-incomming', (_id: string, _from: string, ack: (err: string) => void) => ack('not today'))
    expect(await openDial(a, refusing.addr, 'no')).toBe('not today')
    await waitFor('streams of failed dials to close', () => server?.stats().streams === 0)
  })

  it('tells a listener that acks after the dial timed out', async () => {
    await start({ dialTimeoutMs: 100 })
    const a = await peer()
    const late = await peer()
    let heard: Promise<string> | undefined
    late.socket.on('ss-incomming', (dialId: string, _from: string, ack: () => void) => {
      // It listens on the dialer's stream but has not accepted it (an accept answers the dial).
      heard = streamFailure(late.socket, `${dialId}.dialer`)
      heard.catch(() => {})
      setTimeout(() => ack(), 300)
    })
    expect(await openDial(a, late.addr, 'late')).toBe('Listener did not answer within 100 ms [E_DIAL_TIMEOUT]')
    expect(await within('the late listener to hear', heard ?? Promise.reject(new Error('no dial')))).toContain('[E_DIAL_TIMEOUT]')
  })

  it("answers the dialer as soon as a legacy listener accepts the dialer's stream, and keeps the dial when the ack comes late", async () => {
    await start({ dialTimeoutMs: 300 })
    const a = await peer()
    const b = await peer()
    let answered = false
    let acked = false
    let got: Promise<Buffer> | undefined
    b.socket.on('ss-incomming', (dialId: string, _from: string, ack: () => void) => {
      got = receiveStream(b.socket, `${dialId}.dialer`)
      // Its ack waits for the dialer's answer (3 s at most), then comes past the dial timeout.
      void waitFor('the dialer to be answered', () => answered, 3000).catch(() => {}).then(() => { setTimeout(() => { acked = true; ack() }, 500) })
    })
    const sink = new StreamSink(a.socket, 'early.dialer')
    const err = await openDial(a, b.addr, 'early')
    answered = true
    expect(err).toBeUndefined()
    expect(acked).toBe(false) // answered on the accept, before the ack
    // Past the dial timeout, the ack still out: both streams stay open and carry the bytes.
    await new Promise((resolve) => setTimeout(resolve, 400))
    expect(acked).toBe(false)
    expect(server?.stats().streams).toBe(2)
    await sink.send(chunked(testBytes(5000), 1000))
    expectBytes(await within('the bytes at the listener, past the dial timeout', got ?? Promise.reject(new Error('no dial')), 3000), testBytes(5000), 'the early dial')
  })

  it("waits for a starsock listener's ack even when it accepted first: its refusal reaches the dialer", async () => {
    await start({})
    const a = await peer()
    const b = await peer()
    expect((await request(b.socket, 'starsock:hello', [{}]))[0]).toBeNull()
    b.socket.on('ss-incomming', (dialId: string, _from: string, ack: (err: string) => void) => {
      receiveStream(b.socket, `${dialId}.dialer`).catch(() => {})
      setTimeout(() => ack('no'), 50)
    })
    expect(await openDial(a, b.addr, 'consent')).toBe('no')
    await waitFor('the streams of the refused dial to close', () => server?.stats().streams === 0)
  })

  it('fails both streams with E_DIAL_REFUSED when a legacy listener refuses after accepting', async () => {
    await start({})
    const a = await peer()
    const b = await peer()
    let got: Promise<Buffer> | undefined
    b.socket.on('ss-incomming', (dialId: string, _from: string, ack: (err: string) => void) => {
      got = receiveStream(b.socket, `${dialId}.dialer`)
      got.catch(() => {})
      setTimeout(() => ack('changed my mind'), 50)
    })
    const back = receiveStream(a.socket, 'turn.listener')
    back.catch(() => {})
    expect(await openDial(a, b.addr, 'turn')).toBeUndefined()
    await expect(within('the dialer to hear', back)).rejects.toThrow('[E_DIAL_REFUSED]')
    await expect(within('the listener to hear', got ?? Promise.reject(new Error('no dial')))).rejects.toThrow('[E_DIAL_REFUSED]')
    await waitFor('the streams of the refused dial to close', () => server?.stats().streams === 0)
  })

  it('bounds what it holds for a socket that stops reading, and keeps serving others', async () => {
    const s = await start({ streamBufferBytes: 2_000_000, socketBufferBytes: 2_000_000, announceBatchPeers: 1000 })
    await Promise.all(Array.from({ length: 250 }, async () => await peer()))
    const reader = await peer()
    const session = s.rendezvous.sessions.get(reader.socket.id ?? '')
    clientWebSocket(reader.socket).pause()
    let maxBacklog = 0
    const sampler = setInterval(() => { maxBacklog = Math.max(maxBacklog, session?.endpoint.backlogBytes?.() ?? 0) }, 5)
    try {
      // Each page is ~24 KB and the client reads none; past the rate limit's burst the requests get
      // small error replies, and a socket over socketBufferBytes of backlog is disconnected.
      for (let i = 0; i < 80_000; i++) reader.socket.emit('starsock:peers', 0, () => {})
      await new Promise((resolve) => setTimeout(resolve, 3000))
    } finally {
      clearInterval(sampler)
      clientWebSocket(reader.socket).resume()
    }
    expect(maxBacklog).toBeGreaterThan(0)
    expect(maxBacklog).toBeLessThan(2_000_000 + 1_000_000)
    const metrics = await (await fetch(`${s.url()}/metrics`)).text()
    expect(metrics).toMatch(/starsock_limit_hits_total\{limit="E_LIMIT_REQUEST_RATE"\} [1-9]/)
    const a = await peer()
    const b = await peer()
    echoIncoming(b)
    expectBytes(await within('an echo between two other peers', dialAndEcho(a, b.addr, testBytes(10_000))), testBytes(10_000), 'an echo between two other peers')
  })

  it('drops a socket that sends a message over maxMessageBytes; its streams fail on the other side', async () => {
    await start({})
    const a = await peer()
    const b = await peer()
    const got = incomingStreams(b)
    const sink = new StreamSink(a.socket, 'big.dialer')
    expect(await openDial(a, b.addr, 'big')).toBeUndefined()
    await sink.send([testBytes(1000)], false)
    const gone = new Promise((resolve) => a.socket.once('disconnect', resolve))
    await sink.send([new Uint8Array(1_100_000)], false)
    await within('A to be dropped', gone)
    await expect(within('error at B', got('big'))).rejects.toThrow('Peer disconnected [E_PEER_GONE]')
  })

  it('holds a slow receiver to the buffer cap without losing a byte, and pauses the sender', async () => {
    const streamBufferBytes = 4 * 1024 * 1024
    const s = await start({ streamBufferBytes })
    const a = await peer()
    const b = await peer()
    const got = incomingStreams(b)
    const sink = new StreamSink(a.socket, 'slow.dialer')
    expect(await openDial(a, b.addr, 'slow')).toBeUndefined()
    const data = testBytes(48 * 1024 * 1024)
    const bWs = clientWebSocket(b.socket)
    bWs.pause()
    let maxBuffered = 0
    const sampler = setInterval(() => { maxBuffered = Math.max(maxBuffered, s.stats().bufferedBytes) }, 2)
    // A sends everything at once, like a legacy client with no flow control.
    await sink.send(chunked(data, 64 * 1024))
    await waitFor('the server to pause A', () => [...s.rendezvous.sessions.values()].some((x) => s.rendezvous.relay.stateOf(x).paused))
    await new Promise((resolve) => setTimeout(resolve, 500))
    bWs.resume()
    const all = await within('48 MiB at B', got('slow'), 30_000)
    clearInterval(sampler)
    expectBytes(all, data, '48 MiB at B')
    expect(maxBuffered).toBeGreaterThan(0)
    expect(maxBuffered).toBeLessThanOrEqual(streamBufferBytes)
    expect(s.stats().bufferedBytes).toBe(0)
  })

  it('fails the stream of a receiver that stalls, and lets the sender go on', async () => {
    const s = await start({ senderStallTimeoutMs: 300 })
    const a = await peer()
    const b = await peer()
    echoIncoming(b)
    const c = await peer()
    const got = incomingStreams(c)
    const sink = new StreamSink(a.socket, 'stall.dialer')
    expect(await openDial(a, c.addr, 'stall')).toBeUndefined()
    clientWebSocket(c.socket).pause()
    await sink.send(chunked(testBytes(24 * 1024 * 1024), 64 * 1024))
    await waitFor('the stalled stream to fail', () => s.stats().streams === 0, 10_000)
    clientWebSocket(c.socket).resume()
    await expect(within('error at C', got('stall'))).rejects.toThrow('[E_LIMIT_BUFFER]')
    expect(s.stats().bufferedBytes).toBe(0)
    // A was resumed: it still dials and echoes through B.
    const data = testBytes(100_000)
    expectBytes(await within('echo after the stall', dialAndEcho(a, b.addr, data)), data, 'echo after the stall')
  })
  it('holds the senders of one IP to its share together, each under its own marks; another IP goes on; a share that does not drain loses its fullest streams', async () => {
    const MiB = 1024 * 1024
    const ipBufferBytes = 4 * MiB
    const s = await start({ ipBufferBytes, socketBufferBytes: 2 * MiB, streamBufferBytes: 2 * MiB, senderStallTimeoutMs: 500 })
    // A listener on another IP that takes every dial and never accepts its stream: all of it waits on the server.
    const listener = await peer('127.0.0.2')
    listener.socket.on('ss-incomming', (_dialId: string, _from: string, ack: () => void) => ack())
    const senders = await Promise.all(Array.from({ length: 12 }, async () => await peer()))
    const aborts: string[] = []
    let maxBuffered = 0
    const sampler = setInterval(() => { maxBuffered = Math.max(maxBuffered, s.stats().bufferedBytes) }, 2)
    try {
      for (const [i, sender] of senders.entries()) {
        expect(await openDial(sender, listener.addr, `share${i}`)).toBeUndefined()
        sender.socket.on(streamEvent('abort', `share${i}.dialer`), (why: string) => aborts.push(why))
      }
      // 900 KiB each, sent at once without waiting for an accept (a legacy sender may): under a
      // stream's pause mark (1 MiB), 10.5 MiB in all.
      for (const [i, sender] of senders.entries()) {
        for (const chunk of chunked(testBytes(900 * 1024, i), 64 * 1024)) sender.socket.emit(streamEvent('queue', `share${i}.dialer`), chunk)
      }
      await waitFor('the senders of 127.0.0.1 to be paused', () => [...s.rendezvous.sessions.values()].filter((x) => s.rendezvous.relay.stateOf(x).paused).length >= 2)
      // Another IP relays on, meanwhile.
      const echo = await peer('127.0.0.3')
      echoIncoming(echo)
      const other = await peer('127.0.0.4')
      const data = testBytes(100_000)
      expectBytes(await within('an echo from another IP', dialAndEcho(other, echo.addr, data)), data, 'an echo from another IP')
      // No progress for the stall timeout: the IP's fullest streams fail until its share is low.
      await waitFor('streams of the stalled share to fail', () => aborts.length > 0, 10_000)
      expect(aborts[0]).toBe('Receivers stalled for 500 ms with the buffer of this IP address full (ipBufferBytes=4194304) [E_LIMIT_BUFFER]')
      expect(maxBuffered).toBeGreaterThan(ipBufferBytes / 2)
      expect(maxBuffered).toBeLessThanOrEqual(ipBufferBytes)
    } finally {
      clearInterval(sampler)
    }
  })
})

describe('access control and address ownership', () => {
  let server: (StarsockServer & { port: number }) | undefined
  const sockets: Array<{ close: () => void }> = []
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close()
    await server?.close()
    server = undefined
  })

  it('lets only allowlisted peer ids join', async () => {
    const allowed = await makeIdentity(0)
    server = await startServer({ allowPeers: [allowed.id] })
    const s = server
    const socket = await connectSocket(s.url())
    sockets.push(socket)
    const mine = { ...allowed, addr: allowed.addr.replace('/tcp/0/', `/tcp/${s.port}/`) }
    await joinWithChallenge(socket, mine.key, mine.addr)
    const other = await makeIdentity(s.port)
    await expect(joinWithChallenge(socket, other.key, other.addr)).rejects.toThrow('Peer id not allowed on this server [E_FORBIDDEN]')
  })

  it('requires the shared token when one is set (auth or query)', async () => {
    server = await startServer({ token: 's3cret' })
    await expect(connectSocket(server.url())).rejects.toThrow('[E_FORBIDDEN]')
    await expect(connectSocket(server.url(), { auth: { token: 'wrong' } })).rejects.toThrow('[E_FORBIDDEN]')
    sockets.push(await connectSocket(server.url(), { auth: { token: 's3cret' } }))
    sockets.push(await connectSocket(server.url(), { query: { token: 's3cret' } }))
  })

  it('with the challenge off, does not let another socket take a live address; strict off accepts any multiaddr', async () => {
    server = await startServer({ cryptoChallenge: false, strictMultiaddr: false })
    const one = await connectSocket(server.url())
    const two = await connectSocket(server.url())
    sockets.push(one, two)
    const addr = '/ip4/127.0.0.1/tcp/1/ws/p2p-websocket-star/ipfs/QmWSKarJ3N3FRauLB5yvMpWyxnw2oiw8sdWqKDskaEL1os'
    expect(await request(one, 'ss-join', [addr, ''])).toEqual([null, null, []])
    // Nothing proved the key: the refusal does not tell where the holder is.
    expect(await request(two, 'ss-join', [addr, ''])).toEqual(['Address in use: this peer id is joined elsewhere [E_ADDRESS_IN_USE]'])
    expect((await request(two, 'ss-join', ['/ip4/127.0.0.2/tcp/5', '']))[0]).toBeNull()
    one.close()
    await waitFor('the address to be free', () => server?.stats().peers === 1)
    expect((await request(two, 'ss-join', [addr, '']))[0]).toBeNull()
  })
})
