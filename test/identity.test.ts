/**
 * One identity, one place: a held address refuses a second starsock client unless it takes over,
 * a displaced client is told and stays closed, and a client's own reconnect after a network drop
 * takes its address back from its stale socket. Real server, real clients, a real TCP proxy.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { Socket } from 'socket.io-client'
import { createIdentity, identityFromBytes, publicKeyHex, signNonce, type Identity } from '../client/identity.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import type { StarsockError } from '../shared/errors.ts'
import { legacyPeerId, pull, startLegacyPeer } from './helpers/legacy.ts'
import { startServer, waitFor, within } from './helpers/server.ts'
import { tcpProxy } from './helpers/proxy.ts'
import { connectSocket, request } from './helpers/raw-peer.ts'

const stops: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop()
})

async function server (options: Parameters<typeof startServer>[0] = {}): Promise<Awaited<ReturnType<typeof startServer>>> {
  const s = await startServer(options)
  stops.push(async () => await s.close())
  return s
}

async function peerOn (url: string, identity: Identity, options: { takeover?: boolean } = {}): Promise<StarsockPeer> {
  const p = await createPeer({ server: url, identity, reconnectDelayMs: 100, reconnectDelayMaxMs: 200, ...options })
  stops.push(async () => await p.close())
  return p
}

/** Errors a peer reports, in order. */
function errorsOf (peer: StarsockPeer): StarsockError[] {
  const seen: StarsockError[] = []
  peer.on('error', (err) => seen.push(err))
  return seen
}

/** A raw starsock socket: hello with `resume`, then both steps of the challenge; the last join reply. */
async function rawJoin (url: string, identity: Identity, addr: string, resume?: string): Promise<{ socket: Socket, reply: unknown[] }> {
  const socket = await connectSocket(url)
  stops.push(() => { socket.close() })
  await request(socket, 'starsock:hello', [{ peerEvents: true, resume }])
  const first = await request(socket, 'ss-join', [addr, publicKeyHex(identity)])
  if (first[0] != null) return { socket, reply: first }
  return { socket, reply: await request(socket, 'ss-join', [addr, await signNonce(identity, first[1] as string)]) }
}

async function metric (url: string, line: string): Promise<string | undefined> {
  const text = await (await fetch(new URL('/metrics', url))).text()
  return text.split('\n').find((l) => l.startsWith(line))
}

describe('one identity, one place (library)', () => {
  it('refuses the identity under another spelling of the server address too', async () => {
    const s = await server()
    const proxy = await tcpProxy(s.port)
    stops.push(() => proxy.close())
    const identity = await createIdentity()
    const first = await peerOn(s.url(), identity)
    const err = await createPeer({ server: proxy.url, identity }).then(() => undefined, (e: StarsockError) => e)
    expect(err?.code).toBe('E_ADDRESS_IN_USE')
    expect(first.state).toBe('joined')
  })

  it('refuses a second client with a held identity (E_ADDRESS_IN_USE, saying from where); the holder stays joined', async () => {
    const s = await server()
    const identity = await createIdentity()
    const first = await peerOn(s.url(), identity)
    const err = await createPeer({ server: s.url(), identity }).then(() => undefined, (e: StarsockError) => e)
    expect(err?.code).toBe('E_ADDRESS_IN_USE')
    expect(err?.message).toMatch(/joined from 127\.0\.0\.1:\d+$/)
    expect(first.state).toBe('joined')
    expect(s.stats().peers).toBe(1)
    expect(await metric(s.url(), 'starsock_address_in_use_total{holder="here"}')).toBe('starsock_address_in_use_total{holder="here"} 1')
    await waitFor('the refused socket to go', () => s.stats().sockets === 1)
  })

  it('takeover: the holder gets E_DISPLACED naming the newcomer, closes, and does not reconnect', async () => {
    const s = await server()
    const identity = await createIdentity()
    const first = await peerOn(s.url(), identity)
    const errors = errorsOf(first)
    const states: string[] = []
    first.on('state', (st) => states.push(st))
    const other = await peerOn(s.url(), await createIdentity())
    const second = await peerOn(s.url(), identity, { takeover: true })
    await waitFor('the first peer to close', () => first.state === 'closed')
    expect(states).toEqual(['closed'])
    expect(errors.map((e) => e.code)).toEqual(['E_DISPLACED'])
    expect(first.closedBy?.code).toBe('E_DISPLACED')
    expect(first.closedBy?.message).toMatch(/^Displaced: another client took this peer id over from 127\.0\.0\.1:\d+$/)
    expect(second.state).toBe('joined')
    // Had the first reconnected (100-200 ms backoff), it would be refused or take it back: neither.
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(second.state).toBe('joined')
    expect(first.state).toBe('closed')
    expect(s.stats().sockets).toBe(2)
    expect(await metric(s.url(), 'starsock_displaced_total{reason="takeover"}')).toMatch(/ 1$/)
    // The identity is reachable at its new place.
    await waitFor('the other peer to know the identity', () => other.peers().some((p) => p.peerId === identity.peerId))
  })

  it('a reconnect after a network drop takes the address back from the stale socket, no one displaced', async () => {
    const s = await server()
    const proxy = await tcpProxy(s.port)
    stops.push(() => proxy.close())
    const identity = await createIdentity()
    const peer = await createPeer({ server: proxy.url, identity, transports: ['websocket'], reconnectDelayMs: 100, reconnectDelayMaxMs: 200 })
    stops.push(async () => await peer.close())
    const errors = errorsOf(peer)
    const states: string[] = []
    peer.on('state', (st) => states.push(st))
    proxy.cut()
    await waitFor('the peer to rejoin through the proxy', () => states.includes('joined'), 10_000)
    expect(states).toEqual(['reconnecting', 'joined'])
    expect(errors.filter((e) => e.code !== 'E_SERVER_UNREACHABLE' && e.code !== 'E_DISCONNECTED')).toEqual([])
    // The server dropped the stale socket at once instead of waiting for its ping timeout.
    await waitFor('the stale socket to be dropped', () => s.stats().sockets === 1)
    expect(s.stats().peers).toBe(1)
    expect(await metric(s.url(), 'starsock_displaced_total{reason="resume"}')).toMatch(/ 1$/)
    expect(await metric(s.url(), 'starsock_displaced_total{reason="takeover"}')).toBeUndefined()
  })

  it('a client away while another took its identity over hears E_DISPLACED when it comes back', async () => {
    const s = await server()
    const proxy = await tcpProxy(s.port)
    stops.push(() => proxy.close())
    const identity = await createIdentity()
    const away = await createPeer({ server: proxy.url, identity, transports: ['websocket'], reconnectDelayMs: 2000, reconnectDelayMaxMs: 2000 })
    stops.push(async () => await away.close())
    proxy.cut()
    await waitFor('the peer to notice the drop', () => away.state === 'reconnecting')
    const newcomer = await peerOn(s.url(), identity, { takeover: true })
    await waitFor('the away peer to come back and close', () => away.state === 'closed', 10_000)
    expect(away.closedBy?.code).toBe('E_DISPLACED')
    expect(away.closedBy?.message).toMatch(/^Displaced while disconnected: this peer id is joined from 127\.0\.0\.1:\d+$/)
    expect(newcomer.state).toBe('joined')
  })
})

describe('reconnects that are not collisions', () => {
  it.each<[string, boolean]>([
    ['a resume id of the client\'s own', true],
    ['the credential an older client got in its first ack', false]
  ])('the ack of a plain rejoin is lost: the next reconnect still resumes (%s)', async (_name, ownId) => {
    const s = await server()
    const identity = await createIdentity()
    const addr = `/ip4/127.0.0.1/tcp/${s.port}/ws/p2p-websocket-star/ipfs/${identity.peerId}`
    const a = await rawJoin(s.url(), identity, addr, ownId ? 'd1'.repeat(32) : undefined)
    expect(a.reply[0]).toBeNull()
    const resume = (a.reply[3] as { resume: string }).resume
    // The server sees the first connection go (a reset).
    a.socket.io.engine.close()
    await waitFor('the server to see the first socket go', () => s.stats().sockets === 0)
    // The client rejoins (no live holder: a plain join); that connection goes silent before its ack arrives.
    const b = await rawJoin(s.url(), identity, addr, resume)
    expect(b.reply[0]).toBeNull()
    // The next reconnect presents what the client knows: the same as before.
    const c = await rawJoin(s.url(), identity, addr, resume)
    expect(c.reply[0]).toBeNull()
    await waitFor('the silent socket to be dropped', () => s.stats().sockets === 1)
    expect(s.stats().peers).toBe(1)
    expect(await metric(s.url(), 'starsock_displaced_total{reason="takeover"}')).toBeUndefined()
  })

  it('the identity is held for its client while it reconnects: a second client without takeover is refused, the first comes back', async () => {
    const s = await server()
    const proxy = await tcpProxy(s.port)
    stops.push(() => proxy.close())
    const identity = await createIdentity()
    const holder = await createPeer({ server: proxy.url, identity, transports: ['websocket'], reconnectDelayMs: 1500, reconnectDelayMaxMs: 1500 })
    stops.push(async () => await holder.close())
    const errors = errorsOf(holder)
    proxy.drop() // the server sees the socket go at once
    await waitFor('the server to see the holder go', () => s.stats().peers === 0)
    const err = await createPeer({ server: s.url(), identity }).then(async (p) => { await p.close(); return undefined }, (e: StarsockError) => e)
    expect(err?.code).toBe('E_ADDRESS_IN_USE')
    expect(err?.message).toMatch(/^Address in use: this peer id is reserved for a reconnecting client \(joined from 127\.0\.0\.1:\d+\) for up to \d+ s more$/)
    expect(await metric(s.url(), 'starsock_address_in_use_total{holder="reserved"}')).toBe('starsock_address_in_use_total{holder="reserved"} 1')
    await waitFor('the holder to come back', () => holder.state === 'joined', 10_000)
    expect(holder.closedBy).toBeUndefined()
    expect(errors.filter((e) => e.code === 'E_DISPLACED')).toEqual([])
    expect(s.stats().peers).toBe(1)
  })

  it('a client that closes frees its identity at once; one gone for longer than identityGraceMs frees it too', async () => {
    const s = await server({ identityGraceMs: 300 })
    const identity = await createIdentity()
    const first = await createPeer({ server: s.url(), identity })
    await first.close()
    const second = await within('the next client to join at once', peerOn(s.url(), identity))
    expect(second.state).toBe('joined')
    await second.close()

    const proxy = await tcpProxy(s.port)
    stops.push(() => proxy.close())
    const away = await createPeer({ server: proxy.url, identity, transports: ['websocket'], reconnectDelayMs: 5000, reconnectDelayMaxMs: 5000 })
    stops.push(async () => await away.close())
    proxy.drop()
    await waitFor('the server to see it go', () => s.stats().peers === 0)
    await new Promise((resolve) => setTimeout(resolve, 400))
    const third = await within('a client to join after the grace', peerOn(s.url(), identity))
    expect(third.state).toBe('joined')
  })

  it('a rejoin refused by a limit that passes (peers per IP) is retried with backoff, not the end', async () => {
    const s = await server({ maxPeersPerIp: 1 })
    const proxy = await tcpProxy(s.port)
    stops.push(() => proxy.close())
    const peer = await createPeer({ server: proxy.url, identity: await createIdentity(), transports: ['websocket'], reconnectDelayMs: 300, reconnectDelayMaxMs: 600 })
    stops.push(async () => await peer.close())
    const errors = errorsOf(peer)
    proxy.drop()
    await waitFor('the server to see it go', () => s.stats().peers === 0)
    const other = await peerOn(s.url(), await createIdentity()) // takes the one place of this IP
    await waitFor('the rejoin to be refused by the limit', () => errors.some((e) => e.code === 'E_LIMIT_PEERS_PER_IP'), 10_000)
    expect(peer.state).toBe('reconnecting')
    await other.close()
    await waitFor('the peer to rejoin once the limit allows', () => peer.state === 'joined', 10_000)
    expect(peer.closedBy).toBeUndefined()
  })
})

describe('one identity, one place with the published legacy client', () => {
  it('a legacy newcomer takes the address over; the starsock holder is told and closes', async () => {
    const s = await server()
    const legacyId = await legacyPeerId()
    // One Ed25519 key for both clients.
    const holderIdentity = identityFromBytes(Buffer.from(legacyId.marshalPrivKey()))
    expect(holderIdentity.peerId).toBe(legacyId.toB58String())
    const holder = await peerOn(s.url(), holderIdentity)
    const legacy = await startLegacyPeer(s.port, (conn: unknown) => { pull(conn, conn) }, { peerId: legacyId })
    stops.push(() => legacy.stop())
    await waitFor('the starsock holder to close', () => holder.state === 'closed')
    expect(holder.closedBy?.code).toBe('E_DISPLACED')
    expect(holder.closedBy?.message).toMatch(/websocket-star client\) from 127\.0\.0\.1:\d+$/)
    expect(s.stats().peers).toBe(1)
  })

  it('a legacy holder is replaced by a starsock client, as in the original (no refusal)', async () => {
    const s = await server()
    const legacyId = await legacyPeerId()
    const legacy = await startLegacyPeer(s.port, (conn: unknown) => { pull(conn, conn) }, { peerId: legacyId })
    stops.push(() => legacy.stop())
    const ours = await within('the starsock join', peerOn(s.url(), identityFromBytes(Buffer.from(legacyId.marshalPrivKey()))))
    expect(ours.state).toBe('joined')
    expect(s.stats().peers).toBe(1)
  })
})
