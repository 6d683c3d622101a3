/**
 * One identity, one place: a held address refuses a second starsock client unless it takes over,
 * a displaced client is told and stays closed, and a client's own reconnect after a network drop
 * takes its address back from its stale socket. Real server, real clients, a real TCP proxy.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createIdentity, identityFromBytes, type Identity } from '../client/identity.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import type { StarsockError } from '../shared/errors.ts'
import { legacyPeerId, pull, startLegacyPeer } from './helpers/legacy.ts'
import { startServer, waitFor, within } from './helpers/server.ts'
import { tcpProxy } from './helpers/proxy.ts'

const stops: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop()
})

async function server (): Promise<Awaited<ReturnType<typeof startServer>>> {
  const s = await startServer()
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
