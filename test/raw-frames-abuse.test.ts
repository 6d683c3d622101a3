/**
 * Raw frames that a well-behaved client never sends, from real clients crafting them, and the
 * relay's limits holding with frames: each bad frame is dropped and counted, never crashes the
 * server or touches another stream; a sender that ignores credit is paused and, past the stall
 * timeout, its stream fails with `E_LIMIT_BUFFER`.
 */
import type { Socket } from 'socket.io-client'
import { afterEach, describe, expect, it } from 'vitest'
import type { ServerOptions } from '../server/options.ts'
import type { StarsockServer } from '../server/server.ts'
import { MAX_STRAY_STREAM_EVENTS_PER_SECOND, STRAY_HOLD_MS, STRAY_STREAM_EVENTS_BURST } from '../server/constants.ts'
import { MAX_LANE } from '../shared/raw-frame.ts'
import { expectBytes } from './helpers/bytes.ts'
import { craftFrame, FrameSink, receiveFrames, sendRaw, startFramePeer } from './helpers/frame-peer.ts'
import { chunked, connectSocket, request, type RawPeer } from './helpers/raw-peer.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'

/** The client's own websocket (`ws` in Node), to stop reading like a slow receiver. */
function clientWebSocket (socket: Socket): { pause: () => void, resume: () => void } {
  return (socket.io.engine.transport as unknown as { ws: { pause: () => void, resume: () => void } }).ws
}

/** Bad-request counts by event label, from the server's metrics. */
async function badRequests (server: StarsockServer): Promise<Record<string, number>> {
  const text = await (await fetch(`${server.url()}/metrics`)).text()
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/starsock_bad_requests_total\{event="([^"]+)"\} (\d+)/g)) out[m[1] as string] = Number(m[2])
  return out
}

describe('raw frames: abuse and limits', () => {
  let server: StarsockServer & { port: number }
  const closers: Array<() => unknown> = []
  const start = async (options: ServerOptions = {}): Promise<void> => {
    server = await startServer(options)
    closers.push(async () => await server.close())
  }
  const framePeer = async (rawFrames = true): Promise<RawPeer> => {
    const p = await startFramePeer(server.url(), server.port, { rawFrames })
    closers.push(() => p.close())
    return p
  }
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close()
  })

  /** Answer dials on `peer` by receiving the dialer stream on the next lane of its own; `got(dialId)` has it. */
  function listen (peer: RawPeer): (dialId: string) => { done: Promise<Buffer>, frames: () => number } {
    const streams = new Map<string, ReturnType<typeof receiveFrames>>()
    let lane = 100
    peer.socket.on('ss-incomming', (dialId: string, _from: string, ack: () => void) => {
      const s = receiveFrames(peer.socket, `${dialId}.dialer`, ++lane)
      s.done.catch(() => {}) // observed through `got`
      streams.set(dialId, s)
      ack()
    })
    return (dialId) => {
      const s = streams.get(dialId)
      if (s === undefined) throw new Error(`no incoming dial ${dialId}`)
      return s
    }
  }

  /** Dial `to` from `from` as `dialId`; settles with a sink for the dialer stream, once the server gave its lane. */
  const dial = async (from: RawPeer, to: RawPeer, dialId: string): Promise<{ sink: FrameSink, lane: number }> => {
    const sink = new FrameSink(from.socket, `${dialId}.dialer`)
    const [err] = await request(from.socket, 'ss-dial', [from.addr, to.addr, dialId])
    if (err != null) throw new Error(String(err))
    const lane = await within(`the lane of ${dialId}`, sink.lane)
    if (lane === undefined) throw new Error('no lane')
    return { sink, lane }
  }

  it('drops and counts bad frames; the streams they aimed at, and the others, carry on', async () => {
    await start()
    const x = await framePeer()
    const y = await framePeer()
    const z = await framePeer()
    const got = listen(y)
    const ok = await dial(x, y, 'ok')
    const zOne = await dial(z, y, 'z1')
    const zTwo = await dial(z, y, 'z2')
    expect([ok.lane, zOne.lane, zTwo.lane], 'lanes count per connection').toEqual([1, 1, 2])
    const before = testBytes(10_000, 1)
    const after = testBytes(10_000, 2)
    await ok.sink.send('ok.dialer', [before], false)

    const junk = testBytes(100, 3)
    sendRaw(x.socket, Uint8Array.of(0, 0, 1)) // shorter than a header
    sendRaw(x.socket, craftFrame(ok.lane, junk, 9)) // a kind nobody knows
    sendRaw(x.socket, craftFrame(ok.lane + 1, junk)) // the next lane, not given yet
    sendRaw(x.socket, craftFrame(MAX_LANE, junk)) // far past the counter
    sendRaw(x.socket, craftFrame(0, junk)) // never a lane
    sendRaw(x.socket, craftFrame(zTwo.lane, junk)) // a lane of another session, not of this one
    sendRaw(x.socket, craftFrame(ok.lane, new Uint8Array(0))) // empty: carries nothing, counted against the stray budget
    const unasked = await framePeer(false)
    sendRaw(unasked.socket, craftFrame(1, junk)) // negotiated nothing
    const plain = await connectSocket(server.url()) // socket.io's own parser on the client side
    closers.push(() => plain.close())
    sendRaw(plain, craftFrame(1, junk))

    await ok.sink.send('ok.dialer', [after])
    expectBytes(await within('the good stream', got('ok').done), Buffer.concat([before, after]), 'the good stream')
    const zData = testBytes(50_000, 4)
    await zOne.sink.send('z1.dialer', chunked(zData, 8000))
    await zTwo.sink.send('z2.dialer', [zData])
    expectBytes(await within('z1', got('z1').done), zData, 'z1')
    expectBytes(await within('z2', got('z2').done), zData, 'z2')
    expect(got('ok').frames(), 'frames the receiver got on its lane').toBe(2)

    sendRaw(x.socket, craftFrame(ok.lane, junk)) // the lane of a stream that ended
    // The server handles a socket's messages in order: once a request is answered, the frames before it were handled.
    for (const socket of [x.socket, unasked.socket, plain]) await request(socket, 'starsock:ping', [])
    expect(await badRequests(server)).toMatchObject({ 'frame-short': 1, 'frame-kind': 1, 'frame-lane': 1, 'frame-lane-unknown': 4, 'frame-unasked': 2, 'frame-empty': 1 })
    expect(x.socket.connected && y.socket.connected && z.socket.connected && unasked.socket.connected && plain.connected).toBe(true)
    expect(server.stats().bufferedBytes).toBe(0)
  })

  it('disconnects a socket that floods frames on lanes it was never given (a lane that closed is not held against it: above)', async () => {
    await start()
    const flooder = await framePeer()
    const gone = new Promise<string>((resolve) => flooder.socket.once('disconnect', resolve))
    for (let i = 0; i < 300; i++) sendRaw(flooder.socket, craftFrame(1000 + i, testBytes(10, i)))
    expect(await within('the flooder to be disconnected', gone, 10_000)).toBe('io server disconnect')
    expect(await badRequests(server)).toMatchObject({ 'frame-lane-unknown': expect.any(Number) })
  })

  it('holds frames on the lane of a stream that ended to the stray budget: past it the socket is read slower, not closed', async () => {
    await start()
    const x = await framePeer()
    const y = await framePeer()
    const got = listen(y)
    const ended = await dial(x, y, 'ended')
    await ended.sink.send('ended.dialer', [testBytes(1000, 1)])
    await within('the stream', got('ended').done)
    const before = await badRequests(server)
    const t0 = performance.now()
    for (let i = 0; i < 50_000; i++) sendRaw(x.socket, craftFrame(ended.lane, testBytes(10, i)))
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect(await request(y.socket, 'starsock:ping', [])).toEqual([null])
    const handled = ((await badRequests(server))['frame-lane'] ?? 0) - (before['frame-lane'] ?? 0)
    const seconds = (performance.now() - t0) / 1000 // after the count: the bound grows with all the time the server had
    expect(handled, 'the burst was handled').toBeGreaterThanOrEqual(STRAY_STREAM_EVENTS_BURST)
    // The burst, the budget's rate, and per hold the frames of the reads already made (generous).
    expect(handled, `frames on a closed lane handled in ${seconds.toFixed(1)} s`).toBeLessThanOrEqual(STRAY_STREAM_EVENTS_BURST + MAX_STRAY_STREAM_EVENTS_PER_SECOND * seconds + 5000 * (Math.ceil(seconds * 1000 / STRAY_HOLD_MS) + 1))
    expect(x.socket.connected && y.socket.connected).toBe(true)
  })

  it('holds a slow receiver of frames to the buffer cap without losing a byte, and pauses the sender', async () => {
    const streamBufferBytes = 4 * 1024 * 1024
    await start({ streamBufferBytes })
    const a = await framePeer()
    const b = await framePeer()
    const got = listen(b)
    const { sink } = await dial(a, b, 'slow')
    const data = testBytes(48 * 1024 * 1024)
    clientWebSocket(b.socket).pause()
    let maxBuffered = 0
    const sampler = setInterval(() => { maxBuffered = Math.max(maxBuffered, server.stats().bufferedBytes) }, 2)
    // A ignores the window and sends everything at once, as frames.
    await sink.send('slow.dialer', chunked(data, 64 * 1024))
    const relay = server.rendezvous.relay
    await waitFor('the server to pause A', () => [...server.rendezvous.sessions.values()].some((s) => relay.stateOf(s).paused))
    await new Promise((resolve) => setTimeout(resolve, 500))
    clientWebSocket(b.socket).resume()
    const all = await within('48 MiB at B', got('slow').done, 30_000)
    clearInterval(sampler)
    expectBytes(all, data, '48 MiB at B')
    expect(got('slow').frames()).toBe(768)
    expect(maxBuffered).toBeGreaterThan(0)
    expect(maxBuffered).toBeLessThanOrEqual(streamBufferBytes)
    expect(server.stats().bufferedBytes).toBe(0)
  })

  it('fails the stream of a receiver that stalls with E_LIMIT_BUFFER, and lets the sender go on', async () => {
    await start({ senderStallTimeoutMs: 300 })
    const a = await framePeer()
    const c = await framePeer()
    const got = listen(c)
    const stalled = await dial(a, c, 'stall')
    clientWebSocket(c.socket).pause()
    await stalled.sink.send('stall.dialer', chunked(testBytes(24 * 1024 * 1024), 64 * 1024))
    await waitFor('the stalled stream to fail', () => server.stats().streams === 0, 10_000)
    clientWebSocket(c.socket).resume()
    await expect(within('error at C', got('stall').done)).rejects.toThrow('[E_LIMIT_BUFFER]')
    expect(server.stats().bufferedBytes).toBe(0)
    // A was resumed: a new stream's frames go through.
    const next = await dial(a, c, 'next')
    const data = testBytes(100_000)
    await next.sink.send('next.dialer', chunked(data, 30_000))
    expectBytes(await within('a stream after the stall', got('next').done), data, 'a stream after the stall')
  })
})
