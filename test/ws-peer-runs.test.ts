/**
 * The periodic `ws-peer` rotation over real sockets: each client's window is encoded once for its
 * whole group and goes to a WebSocket client as one engine.io packet holding every message's
 * frame back to back (one write, not one packet per address), read as separate `ws-peer` events by
 * the published legacy client; a long-polling client, which cannot take ready-made frames, gets
 * the same addresses one packet each. Fails if engine.io stops writing the frames as they are
 * (the legacy client would then get only the first address of each window).
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { Socket as ServerSocket } from 'socket.io'
import { EVENTS } from '../shared/events.ts'
import type { StarsockServer } from '../server/server.ts'
import { connectSocket, request } from './helpers/raw-peer.ts'
import { legacyPeerId, pull, startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { startServer, waitFor } from './helpers/server.ts'

/** Addresses held by "another node" in the directory, so windows are full. */
const OTHERS = 40
const BATCH = 16
/** Real peer ids: the legacy client parses every address it is told of. */
const ids: string[] = []
const other = (i: number): string => `/ip4/10.9.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${ids[i] as string}`

let server: StarsockServer & { port: number }
const stops: Array<() => void> = []

afterEach(async () => {
  for (const stop of stops.splice(0)) stop()
  await server?.close()
})

/** The engine.io message packets `socket` is sent. */
function packetsOf (socket: ServerSocket): { messages: number } {
  const seen = { messages: 0 }
  ;(socket.conn as unknown as { on: (e: string, fn: (p: { type: string }) => void) => void })
    .on('packetCreate', (packet) => { if (packet.type === 'message') seen.messages++ })
  return seen
}

/** Stop the rotation, then every `ws-peer` the server sent (to its one client) has arrived, none lost. */
async function everySentReceived (received: () => number): Promise<void> {
  server.rendezvous.announcer.stop()
  const sent = server.rendezvous.announcer.sent
  await waitFor(`all ${sent} ws-peer sent received (${received()} so far)`, () => received() >= sent, 5000)
  expect(received()).toBe(sent)
}

async function world (cryptoChallenge: boolean): Promise<void> {
  while (ids.length < OTHERS) ids.push((await legacyPeerId()).toB58String() as string)
  server = await startServer({ cryptoChallenge, announceIntervalMs: 400, announceJoinsPerSecond: 0, announceBatchPeers: BATCH })
}

/** The others join after the client did: it learns of them through the rotation only (not its join's reply). */
function othersJoin (): void {
  for (let i = 0; i < OTHERS; i++) server.rendezvous.directory.set(other(i), `elsewhere-${i}`)
}

describe('ws-peer rotation in runs', () => {
  it('the published legacy client reads every ws-peer of windows sent as one packet each', async () => {
    await world(true)
    const sockets: ServerSocket[] = []
    server.io.on('connection', (socket) => { sockets.push(socket) })
    const peer: LegacyPeer = await startLegacyPeer(server.port, (conn: unknown) => { pull(conn, conn) }, { peerId: await legacyPeerId() })
    stops.push(peer.stop)
    await waitFor('its server socket', () => sockets.length === 1)
    const packets = packetsOf(sockets[0] as ServerSocket)
    const events: string[] = []
    peer.listener.io.on(EVENTS.PEER, (addr: string) => { events.push(addr) })
    othersJoin()
    // Every other address, through the rotation alone (no immediate announcements here).
    await waitFor('every address discovered', () => Array.from({ length: OTHERS }, (_, i) => other(i)).every((a) => peer.discovered.has(a)), 20_000)
    expect(peer.discovered.has(peer.addr)).toBe(false)
    await everySentReceived(() => events.length)
    // Several passes: each window of BATCH addresses (less its own) went as one packet of ready-made frames.
    expect(events.length).toBeGreaterThanOrEqual(OTHERS)
    expect(packets.messages).toBeLessThanOrEqual(Math.ceil(events.length / (BATCH - 1)) * 2 + 2)
    for (const addr of events) expect(addr.startsWith('/ip4/')).toBe(true)
  })

  it('a long-polling client gets the same addresses, one packet each', async () => {
    await world(false)
    const sockets: ServerSocket[] = []
    server.io.on('connection', (socket) => { sockets.push(socket) })
    const socket = await connectSocket(server.url(), { transports: ['polling'] })
    stops.push(() => socket.close())
    await waitFor('its server socket', () => sockets.length === 1)
    const packets = packetsOf(sockets[0] as ServerSocket)
    const got = new Set<string>()
    let events = 0
    socket.on(EVENTS.PEER, (addr: string) => { got.add(addr); events++ })
    const own = '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/QmPolling'
    const [err] = await request(socket, EVENTS.JOIN, [own])
    expect(err).toBeNull()
    othersJoin()
    await waitFor('every address over long-polling', () => Array.from({ length: OTHERS }, (_, i) => other(i)).every((a) => got.has(a)), 20_000)
    expect(got.has(own)).toBe(false)
    await everySentReceived(() => events)
    // The join's ack is a packet too.
    expect(packets.messages).toBeGreaterThanOrEqual(events)
  })
})
