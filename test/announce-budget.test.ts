/**
 * Discovery bounded at cluster scale (issue 18), over real sockets: legacy clients get at most the
 * budget of immediate `ws-peer` and the rest through the rotation; starsock clients get every
 * change, batched (`starsock:peer-batch`) when they ask, one event per change when they do not.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { Socket } from 'socket.io-client'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { EVENTS, PEER_BATCH_INTERVAL_MS } from '../shared/events.ts'
import type { ServerOptions } from '../server/options.ts'
import type { StarsockServer } from '../server/server.ts'
import { connectSocket, joinWithChallenge, makeIdentity, request, startRawPeer, type RawPeer } from './helpers/raw-peer.ts'
import { startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { startServer, waitFor, within } from './helpers/server.ts'

/** A raw socket that said hello (with `hello`) and joined; records every peer event it gets. */
interface Watcher {
  socket: Socket
  addr: string
  /** `[event, ...args]` of every `starsock:peer-*` and `ws-peer` event, in order. */
  events: unknown[][]
}

let server: StarsockServer & { port: number }
const sockets: Socket[] = []
const peers: StarsockPeer[] = []
const legacies: LegacyPeer[] = []

afterEach(async () => {
  for (const p of peers.splice(0)) await p.close()
  for (const l of legacies.splice(0)) l.stop()
  for (const s of sockets.splice(0)) s.close()
  await server?.close()
})

async function serve (options: ServerOptions): Promise<void> {
  server = await startServer(options)
}

/** A raw client: hello with `hello` (none: a legacy client), then a join; records its peer events. */
async function watcher (hello?: Record<string, unknown>): Promise<Watcher> {
  const socket = await connectSocket(server.url())
  sockets.push(socket)
  const events: unknown[][] = []
  for (const event of [EVENTS.PEER, EVENTS.PEER_JOIN, EVENTS.PEER_LEAVE, EVENTS.PEER_PROFILE, EVENTS.PEER_BATCH]) {
    socket.on(event, (...args: unknown[]) => events.push([event, ...args]))
  }
  if (hello !== undefined) {
    const [err] = await request(socket, EVENTS.HELLO, [hello])
    expect(err).toBeNull()
  }
  const { key, addr } = await makeIdentity(server.port)
  await joinWithChallenge(socket, key, addr)
  return { socket, addr, events }
}

/** `n` raw legacy peers joined at once; settles with them and the ms the burst took. */
async function burst (n: number): Promise<{ joined: RawPeer[], ms: number }> {
  const started = Date.now()
  const joined = await within(`${n} joins`, Promise.all(Array.from({ length: n }, async () => await startRawPeer(server.url(), server.port))), 60_000)
  for (const p of joined) sockets.push(p.socket)
  return { joined, ms: Date.now() - started }
}

/** Count of a metric row in `/metrics`. */
async function metric (row: string): Promise<number> {
  const text = await (await fetch(`${server.url()}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(`${row} `))
  return line === undefined ? 0 : Number(line.slice(row.length + 1))
}

/** What a client that applies `events` in order knows: the addresses joined and not left since. */
function applied (events: unknown[][]): Set<string> {
  const known = new Set<string>()
  for (const [event, ...args] of events) {
    if (event === EVENTS.PEER_JOIN) known.add(args[0] as string)
    if (event === EVENTS.PEER_LEAVE) known.delete(args[0] as string)
    if (event !== EVENTS.PEER_BATCH) continue
    for (const [kind, addr] of args[0] as Array<[string, string]>) {
      if (kind === 'join') known.add(addr)
      if (kind === 'leave') known.delete(addr)
    }
  }
  return known
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

describe('immediate ws-peer budget for legacy clients', () => {
  it('a burst of 40 joins: a legacy client gets at most the budget at once (1/s, bursts of 2), the rest held and counted', async () => {
    await serve({ announceIntervalMs: 0, announceJoinsPerSecond: 1 })
    const legacy = await watcher()
    const { joined, ms } = await burst(40)
    await sleep(500)
    const got = legacy.events.filter(([event]) => event === EVENTS.PEER).map(([, addr]) => addr as string)
    // Budget: 2 at once, then 1 a second over the burst (and the 500 ms after it), plus one for rounding.
    const budget = 2 + Math.ceil((ms + 500) / 1000) + 1
    expect(got.length).toBeGreaterThanOrEqual(1)
    expect(got.length).toBeLessThanOrEqual(budget)
    expect(got.length).toBeLessThan(40)
    expect(got.every((addr) => joined.some((p) => p.addr === addr))).toBe(true)
    // Every join was either announced at once to everyone or held: 40 in all.
    expect(await metric('starsock_announcements_held_total{reason="budget"}')).toBeGreaterThanOrEqual(40 - budget)
  }, 90_000)

  it('with no immediate announcements (0), the published legacy client still discovers every joined peer through the rotation', async () => {
    await serve({ announceIntervalMs: 1000, announceBatchPeers: 64, announceJoinsPerSecond: 0 })
    const legacy = await startLegacyPeer(server.port, () => {})
    legacies.push(legacy)
    const { joined } = await burst(30)
    await waitFor('the published legacy client discovering all 30 peers through the rotation', () => joined.every((p) => legacy.discovered.has(p.addr)), 30_000)
    // The 30 and the legacy client's own join: none announced at once.
    expect(await metric('starsock_announcements_held_total{reason="budget"}')).toBe(31)
  }, 90_000)
})

describe('batched peer events for starsock clients', () => {
  it('a burst of 40 joins and 10 leaves: a starsock peer and a raw peerBatch client end exact, in few batches, with no single events', async () => {
    // No immediate announcements: every change waits for the shared timer.
    await serve({ announceIntervalMs: 0, announceJoinsPerSecond: 0 })
    const raw = await watcher({ peerEvents: true, peerBatch: true })
    const peer = await createPeer({ server: server.url() })
    peers.push(peer)
    const started = Date.now()
    const { joined } = await burst(40)
    for (const p of joined.slice(0, 10)) p.close()
    const stay = joined.slice(10).map((p) => p.addr)
    await waitFor('the starsock peer listing exactly the 30 that stayed', () => {
      const list = peer.peers().map((p) => p.addr).filter((a) => a !== raw.addr).sort()
      return JSON.stringify(list) === JSON.stringify([...stay].sort())
    }, 30_000)
    await waitFor('the raw peerBatch client knowing exactly the 30 that stayed', () => {
      const known = applied(raw.events)
      known.delete(peer.addr)
      return JSON.stringify([...known].sort()) === JSON.stringify([...stay].sort())
    }, 30_000)
    const elapsed = Date.now() - started
    expect(raw.events.every(([event]) => event === EVENTS.PEER_BATCH)).toBe(true)
    // One batch per flush at most: the number of flushes in the time it took, plus the first.
    expect(raw.events.length).toBeLessThanOrEqual(Math.ceil(elapsed / PEER_BATCH_INTERVAL_MS) + 1)
    expect(raw.events.length).toBeLessThan(50)
  }, 90_000)

  it('a peer that joins and leaves at once ends absent; one that leaves and comes back ends present', async () => {
    await serve({ announceIntervalMs: 0, announceJoinsPerSecond: 0 })
    const raw = await watcher({ peerEvents: true, peerBatch: true })
    const peer = await createPeer({ server: server.url() })
    peers.push(peer)
    const comer = await startRawPeer(server.url(), server.port)
    sockets.push(comer.socket)
    const goer = await startRawPeer(server.url(), server.port)
    goer.close()
    const back = await connectSocket(server.url())
    sockets.push(back)
    comer.close()
    await joinWithChallenge(back, comer.key, comer.addr)
    const marker = await startRawPeer(server.url(), server.port)
    sockets.push(marker.socket)
    await waitFor('the marker peer at both', () => applied(raw.events).has(marker.addr) && peer.peers().some((p) => p.addr === marker.addr), 30_000)
    await sleep(2 * PEER_BATCH_INTERVAL_MS)
    expect(applied(raw.events).has(goer.addr)).toBe(false)
    expect(applied(raw.events).has(comer.addr)).toBe(true)
    expect(peer.peers().some((p) => p.addr === goer.addr)).toBe(false)
    expect(peer.peers().some((p) => p.addr === comer.addr)).toBe(true)
  }, 90_000)

  it('an older starsock client (peerEvents without peerBatch) still gets one event per change', async () => {
    await serve({ announceIntervalMs: 0 })
    const old = await watcher({ peerEvents: true })
    const { joined } = await burst(12)
    joined[0]?.close()
    await waitFor('12 peer-join and 1 peer-leave at the older client', () => old.events.length >= 13, 30_000)
    await sleep(2 * PEER_BATCH_INTERVAL_MS)
    expect(old.events.filter(([event]) => event === EVENTS.PEER_JOIN).map(([, addr]) => addr).sort()).toEqual(joined.map((p) => p.addr).sort())
    expect(old.events.filter(([event]) => event === EVENTS.PEER_LEAVE)).toEqual([[EVENTS.PEER_LEAVE, joined[0]?.addr]])
    expect(old.events).toHaveLength(13)
  }, 90_000)

  it('caps a batch at maxPeers entries: a flood of joins from another node keeps the newest, a leave of a told peer is kept, the rest counted', async () => {
    await serve({ announceIntervalMs: 0, announceJoinsPerSecond: 0, maxPeers: 10 })
    const raw = await watcher({ peerEvents: true, peerBatch: true })
    const told = await startRawPeer(server.url(), server.port)
    sockets.push(told.socket)
    await waitFor('the told peer at the raw client', () => applied(raw.events).has(told.addr), 30_000)
    raw.events.length = 0
    // As the cluster plane does for joins on other nodes, in one go (no batch can go out meanwhile).
    const remote = Array.from({ length: 30 }, (_, i) => `/ip4/10.0.0.2/tcp/9090/ws/p2p-websocket-star/ipfs/12D3KooWRemote${String(i).padStart(39, 'A')}`)
    told.close()
    await waitFor('the told peer gone from the server', () => server.stats().peers === 1, 30_000)
    for (const addr of remote) server.rendezvous.remoteJoined(addr, undefined)
    await waitFor('a batch after the flood', () => raw.events.some(([, entries]) => (entries as unknown[]).length > 1), 30_000)
    const entries = raw.events.flatMap(([, e]) => e as Array<[string, string]>)
    expect(entries.filter(([kind]) => kind === 'leave')).toEqual([['leave', told.addr]])
    expect(entries.filter(([kind]) => kind === 'join').map(([, addr]) => addr)).toEqual(remote.slice(-entries.filter(([kind]) => kind === 'join').length))
    expect(entries.length).toBeLessThanOrEqual(10 + 1)
    expect(await metric('starsock_announcements_held_total{reason="batch-cap"}')).toBe(30 - entries.filter(([kind]) => kind === 'join').length)
  }, 90_000)
})
