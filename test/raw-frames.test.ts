/**
 * Stream data as raw engine.io frames between starsock peers, through a real server: both ways,
 * interleaved streams, websocket and polling, conversion for peers without frames (a starsock peer
 * with them off, the published legacy client), and ends that never overtake data.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { Connection } from '../client/connection.ts'
import { createPeer, type PeerOptions, type StarsockPeer } from '../client/peer.ts'
import type { StarsockServer } from '../server/server.ts'
import { expectBytes } from './helpers/bytes.ts'
import { echo, readAll } from './helpers/connections.ts'
import { legacyDial, legacyExchange, pull, startLegacyPeer } from './helpers/legacy.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'

describe('raw frames between peers', () => {
  let server: StarsockServer & { port: number }
  const stops: Array<() => unknown> = []
  const peer = async (options: Partial<PeerOptions> = {}): Promise<StarsockPeer> => {
    const p = await createPeer({ server: server.url(), ...options })
    stops.push(async () => await p.close())
    return p
  }
  const start = async (): Promise<void> => {
    server = await startServer()
    stops.push(async () => await server.close())
  }
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop()
  })

  /** Dial `to` from `from`, send `data` and close; settles with what the echo sent back. */
  const roundTrip = async (from: StarsockPeer, to: StarsockPeer, data: Uint8Array): Promise<Buffer> => {
    const conn = await from.dial(to.peerId)
    const back = readAll(conn)
    await conn.write(data)
    await conn.closeWrite()
    return await back
  }

  it.each<[string, Array<'websocket' | 'polling'>, number]>([
    ['websocket', ['websocket'], 4 * 1024 * 1024],
    ['long-polling only', ['polling'], 512 * 1024]
  ])('carries interleaved streams both ways as frames over %s', async (_, transports, size) => {
    await start()
    const a = await peer({ transports })
    const b = await peer({ transports })
    a.handle(echo)
    b.handle(echo)
    // Four dials at once, two each way, each with its own bytes: frames of all of them interleave.
    const data = [1, 2, 3, 4].map((seed) => testBytes(size + seed * 1000, seed))
    const results = await within('four echoes', Promise.all([
      roundTrip(a, b, data[0] as Uint8Array),
      roundTrip(b, a, data[1] as Uint8Array),
      roundTrip(a, b, data[2] as Uint8Array),
      roundTrip(b, a, data[3] as Uint8Array)
    ]), 60_000)
    results.forEach((got, i) => expectBytes(got, data[i] as Uint8Array, `echo ${i}`))
    const { frames } = server.rendezvous.relay
    // Each way, at least one frame per 512 KiB chunk (the default chunk size) of every stream.
    const chunks = data.reduce((n, d) => n + Math.ceil(d.byteLength / (512 * 1024)), 0)
    expect(frames.in, 'frames taken from the senders').toBeGreaterThanOrEqual(2 * chunks)
    expect(frames.out, 'every frame went out as a frame').toBe(frames.in)
    expect(await (await fetch(`${server.url()}/metrics`)).text()).not.toMatch(/starsock_bad_requests_total\{event="(frame|stream)-/)
    await waitFor('every stream closed on the server', () => server.stats().streams === 0)
  })

  it('converts for a starsock peer that asked for no frames, both ways', async () => {
    await start()
    const framed = await peer()
    const plain = await peer({ rawFrames: false })
    framed.handle(echo)
    plain.handle(echo)
    const data = testBytes(2 * 1024 * 1024, 7)
    expectBytes(await within('framed -> plain -> framed', roundTrip(framed, plain, data), 30_000), data, 'framed -> plain -> framed')
    const { frames } = server.rendezvous.relay
    expect(frames.in, 'the framed sender sent frames').toBeGreaterThan(0)
    expect(frames.out, 'none to the plain receiver, which echoed with events').toBe(0)
    expectBytes(await within('plain -> framed -> plain', roundTrip(plain, framed, data), 30_000), data, 'plain -> framed -> plain')
    expect(frames.out, 'events from a plain sender reach the framed peer as events').toBe(0)
  })

  it('converts both ways for the published legacy client', async () => {
    await start()
    const ours = await peer()
    const accepted: Connection[] = []
    ours.handle((c) => { accepted.push(c); echo(c) })
    const legacy = await startLegacyPeer(server.port, (conn: unknown) => { pull(conn, conn) })
    stops.push(() => legacy.stop())
    await waitFor('the legacy peer to hear of ours', () => legacy.discovered.has(ours.addr))
    const data = testBytes(1024 * 1024, 3)
    const conn = await within('legacy dial', legacyDial(legacy, ours.addr))
    expectBytes(await within('legacy -> ours -> legacy', legacyExchange(conn, data), 15_000), data, 'legacy -> ours -> legacy')
    expect(accepted.map((c) => c.secure), 'a legacy dialer is plaintext, flagged').toEqual([false])
    const framesFromOurs = server.rendezvous.relay.frames.in
    expect(framesFromOurs, 'our echo went as frames to the server').toBeGreaterThan(0)

    await waitFor('ours to know the legacy peer', () => ours.peers().some((p) => p.addr === legacy.addr))
    const out = await ours.dial(legacy.id, { secure: false }) // a legacy peer speaks no Noise: plaintext, by choice
    expect(out.secure).toBe(false)
    const back = readAll(out)
    await out.write(data)
    await out.closeWrite()
    expectBytes(await within('ours -> legacy -> ours', back, 15_000), data, 'ours -> legacy -> ours')
    expect(server.rendezvous.relay.frames.in).toBeGreaterThan(framesFromOurs)
    expect(server.rendezvous.relay.frames.out, 'no frame ever reached the legacy client').toBe(0)
  })

  it('delivers all raw data before a clean end and before an error end', async () => {
    await start()
    const a = await peer()
    const b = await peer()
    const incoming: Connection[] = []
    b.handle((conn) => { incoming.push(conn) })
    const data = testBytes(1536 * 1024, 5)

    const clean = await a.dial(b.peerId)
    await clean.write(data)
    await clean.closeWrite()
    await waitFor('the first incoming connection', () => incoming.length === 1)
    expectBytes(await within('data then a clean end', readAll(incoming[0] as Connection)), data, 'data then a clean end')

    const failing = await a.dial(b.peerId)
    await failing.write(data)
    failing.abort(new Error('boom'))
    await waitFor('the second incoming connection', () => incoming.length === 2)
    const got: Uint8Array[] = []
    const ended = (async () => { for await (const chunk of incoming[1] as Connection) got.push(chunk) })()
    await expect(within('data then an error end', ended)).rejects.toThrow('boom')
    expectBytes(Buffer.concat(got), data, 'every byte before the error')
    expect(server.rendezvous.relay.frames.in).toBeGreaterThan(0)
  })

  it('sends an owned buffer with reserved room as a frame, the header in that room; one without as an event, in order', async () => {
    await start()
    const a = await peer()
    const b = await peer()
    const incoming: Connection[] = []
    b.handle((conn) => { incoming.push(conn) })
    const conn = await a.dial(b.peerId, { secure: false }) // the plain streams' own data path
    const parts = [1, 2, 3, 4].map((seed) => testBytes(30_000, seed))
    const roomy = new Uint8Array(8 + 30_000)
    roomy.set(parts[1] as Uint8Array, 8)
    await conn.writeOwned(new Uint8Array(parts[0] as Uint8Array)) // no room: an event
    await conn.writeOwned(roomy, { reservedBytes: 8 }) // a frame, without a copy
    await conn.write(parts[2] as Uint8Array) // a frame with a copy
    await conn.writeOwned(new Uint8Array(parts[3] as Uint8Array), { reservedBytes: 0 })
    await conn.closeWrite()
    expect(roomy.subarray(3, 8), 'the header went into the reserved room').toEqual(Uint8Array.of(0, 0, 0, 0, 1))
    await waitFor('the incoming connection', () => incoming.length === 1)
    expectBytes(await within('the owned writes', readAll(incoming[0] as Connection)), Buffer.concat(parts), 'the writes, in order')
    expect(server.rendezvous.relay.frames.in).toBe(2)
    await expect(conn.writeOwned(new Uint8Array(4), { reservedBytes: 5 })).rejects.toThrow(RangeError)
  })
})
