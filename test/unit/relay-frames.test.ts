/** The relay with raw frames, without a network: lanes, conversion, no copies, limits, bad frames. */
import { afterEach, describe, expect, it } from 'vitest'
import { Relay, type RelayLimits } from '../../server/relay.ts'
import { TokenBucket } from '../../server/rate-limit.ts'
import { Session, type Endpoint } from '../../server/session.ts'
import { streamEvent } from '../../shared/events.ts'
import { FRAME_HEADER_BYTES, frameLane, MAX_LANE, writeFrameHeader } from '../../shared/raw-frame.ts'

const LIMITS: RelayLimits = { streamBufferBytes: 1000, socketBufferBytes: 4000, ipBufferBytes: 1_000_000, writeHighWaterBytes: 300, streamByteBudget: 0, streamIdleTimeoutMs: 0, senderStallTimeoutMs: 1_000_000 }
const OUT = 'd1.dialer'
const BACK = 'd1.listener'

/** A session recording what the relay sends it; `raw` negotiated frames; unflushed bytes grow with each write. */
interface Peer { session: Session, emits: unknown[][], frames: Uint8Array[], pending: number }
function peer (id: string, raw: boolean): Peer {
  const p: Peer = { session: undefined as unknown as Session, emits: [], frames: [], pending: 0 }
  const endpoint: Endpoint = {
    emit: (event, ...args) => {
      p.emits.push([event, ...args])
      if (args[0] instanceof Uint8Array) p.pending += args[0].byteLength
    },
    sendFrame: (frame) => { p.frames.push(frame); p.pending += frame.byteLength },
    request: async () => [],
    pendingWriteBytes: () => p.pending,
    pauseReading: () => true,
    resumeReading: () => {}
  }
  p.session = new Session(id, '127.0.0.1', endpoint, new TokenBucket(100, 200))
  p.session.rawFrames = raw
  return p
}

/** A data frame on `lane` with `n` payload bytes of `fill`. */
function frame (lane: number, n: number, fill = 1): Uint8Array {
  const f = new Uint8Array(FRAME_HEADER_BYTES + n).fill(fill)
  writeFrameHeader(f, 0, lane)
  return f
}

describe('Relay with raw frames', () => {
  const relays: Relay[] = []
  afterEach(() => { for (const r of relays.splice(0)) r.stop() })
  function setup (dialerRaw: boolean, listenerRaw: boolean, limits: Partial<RelayLimits> = {}): { relay: Relay, dialer: Peer, listener: Peer } {
    const relay = new Relay({ ...LIMITS, ...limits })
    relays.push(relay)
    const dialer = peer('dialer', dialerRaw)
    const listener = peer('listener', listenerRaw)
    relay.openPair(dialer.session, listener.session, OUT, BACK)
    return { relay, dialer, listener }
  }

  it('gives the sender its lane with the accept and forwards its frames as the same buffers on the receiver\'s lane', () => {
    const { relay, dialer, listener } = setup(true, true)
    relay.accept(listener.session, OUT, 5000, 77)
    expect(dialer.emits).toEqual([[streamEvent('accept', OUT), 5000, 1]])
    const sent = [frame(1, 10, 1), frame(1, 20, 2)]
    for (const f of sent) expect(relay.frame(dialer.session, f)).toBeUndefined()
    expect(listener.frames).toHaveLength(2)
    expect(listener.frames[0]).toBe(sent[0]) // no copy
    expect(listener.frames.map(frameLane)).toEqual([77, 77])
    expect(listener.emits).toEqual([])
    expect(relay.frames).toEqual({ in: 2, out: 2 })
    expect(relay.relayedBytes).toBe(30)
  })

  it('sends a frame\'s payload as a queue event (a view) to a receiver without a lane, and events on as events', () => {
    const { relay, dialer, listener } = setup(true, false)
    relay.accept(listener.session, OUT)
    expect(dialer.emits).toEqual([[streamEvent('accept', OUT), null, 1]])
    const f = frame(1, 10, 3)
    relay.frame(dialer.session, f)
    const [[event, chunk]] = listener.emits as [[string, Uint8Array]]
    expect(event).toBe(streamEvent('queue', OUT))
    expect(chunk.buffer).toBe(f.buffer)
    expect([chunk.byteOffset, chunk.byteLength]).toEqual([f.byteOffset + FRAME_HEADER_BYTES, 10])

    relay.accept(dialer.session, BACK, 5000, 4) // the legacy listener sends events to a framed dialer
    expect(listener.emits[1]).toEqual([streamEvent('accept', BACK), 5000])
    relay.data(listener.session, BACK, new Uint8Array(6))
    expect(dialer.emits[1]?.[0]).toBe(streamEvent('queue', BACK))
    expect(dialer.frames).toEqual([])
  })

  it('queues frames before accept and under backpressure, counting payload bytes, and fails past the cap with E_LIMIT_BUFFER', () => {
    const { relay, dialer, listener } = setup(true, true)
    relay.accept(listener.session, OUT, 5000, 9)
    listener.pending = 10_000 // the receiver's transport is full
    for (let i = 0; i < 9; i++) expect(relay.frame(dialer.session, frame(1, 100))).toBeUndefined()
    expect(relay.bufferedBytes).toBe(900)
    expect(relay.stateOf(dialer.session).paused).toBe(true)
    relay.frame(dialer.session, frame(1, 200))
    expect(String((listener.emits.at(-1) as unknown[])[1])).toMatch(/\[E_LIMIT_BUFFER\]$/)
    expect(relay.bufferedBytes).toBe(0)
    expect(relay.frame(dialer.session, frame(1, 10))).toBe('frame-lane') // its lane closed with it
  })

  it('delivers the end after the frames before it', () => {
    const { relay, dialer, listener } = setup(true, true)
    relay.accept(listener.session, OUT, 5000, 3)
    listener.pending = 10_000
    relay.frame(dialer.session, frame(1, 10))
    relay.end(dialer.session, OUT, true)
    expect(listener.emits).toEqual([])
    listener.pending = 0
    relay.drained(listener.session)
    expect(listener.frames).toHaveLength(1)
    expect(listener.emits).toEqual([[streamEvent('error', OUT), true]])
  })

  it.each<[string, boolean, Uint8Array | string, string | undefined]>([
    ['a frame from a client that did not ask for frames', false, frame(1, 4), 'frame-unasked'],
    ['a string', true, 'abc', 'frame-unasked'],
    ['four bytes', true, Uint8Array.of(0, 0, 0, 1), 'frame-short'],
    ['an unknown kind', true, Uint8Array.of(2, 0, 0, 0, 1, 9), 'frame-kind'],
    ['lane 0', true, frame(0, 4), 'frame-lane-unknown'],
    ['the next lane, not given yet', true, frame(2, 4), 'frame-lane-unknown'],
    ['the last lane', true, frame(MAX_LANE, 4), 'frame-lane-unknown'],
    ['an empty payload on the lane (it carries nothing: a stray)', true, frame(1, 0), 'frame-empty']
  ])('%s', (_, raw, data, wrong) => {
    const { relay, dialer, listener } = setup(raw, true)
    relay.accept(listener.session, OUT, 5000, 3)
    expect(relay.frame(dialer.session, data)).toBe(wrong)
    expect(listener.frames).toEqual([])
    expect(relay.openStreams).toBe(2)
  })

  it('never gives a lane twice on a connection', () => {
    const { relay, dialer, listener } = setup(true, true)
    relay.accept(listener.session, OUT, 5000, 3)
    relay.end(dialer.session, OUT, true)
    relay.openPair(dialer.session, listener.session, 'd2.dialer', 'd2.listener')
    relay.accept(listener.session, 'd2.dialer', 5000, 4)
    expect(dialer.emits.filter(([e]) => String(e).startsWith(streamEvent('accept', ''))).map((a) => a[2])).toEqual([1, 2])
  })
})
