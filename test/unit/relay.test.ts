import { afterEach, describe, expect, it, vi } from 'vitest'
import { streamEvent } from '../../shared/events.ts'
import { Relay, type RelayLimits } from '../../server/relay.ts'
import { TokenBucket } from '../../server/rate-limit.ts'
import { Session, type Endpoint } from '../../server/session.ts'

const LIMITS: RelayLimits = {
  streamBufferBytes: 1000,
  socketBufferBytes: 4000,
  ipBufferBytes: 1_000_000,
  writeHighWaterBytes: 300,
  streamByteBudget: 0,
  streamIdleTimeoutMs: 0,
  senderStallTimeoutMs: 1_000_000
}

/** A session whose endpoint records emits, pauses and resumes, with a settable unflushed count. */
interface Peer {
  session: Session
  emits: Array<[string, ...unknown[]]>
  /** What `pendingWriteBytes` returns. */
  pending: number
  /** Add each emitted chunk's size to `pending`, like a transport that has not flushed yet. */
  countWrites: boolean
  pauses: number
  resumes: number
}

function peer (id: string, ip = '127.0.0.1', canPause = true): Peer {
  const p: Peer = { session: undefined as unknown as Session, emits: [], pending: 0, countWrites: false, pauses: 0, resumes: 0 }
  const endpoint: Endpoint = {
    emit: (event, ...args) => {
      p.emits.push([event, ...args])
      if (p.countWrites && args[0] instanceof Uint8Array) p.pending += args[0].byteLength
    },
    request: async () => [],
    pendingWriteBytes: () => p.pending,
    pauseReading: () => { p.pauses++; return canPause },
    resumeReading: () => { p.resumes++ }
  }
  p.session = new Session(id, ip, endpoint, new TokenBucket(100, 200))
  return p
}

/** `n` bytes, all equal to `fill`. */
const bytes = (n: number, fill = 1): Uint8Array => new Uint8Array(n).fill(fill)

/** Bytes as hex: compared as strings, with a readable diff. */
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

/** The chunks `p` received on stream `id`, in order. */
const received = (p: Peer, id: string): Uint8Array[] =>
  p.emits.filter(([event]) => event === streamEvent('queue', id)).map(([, chunk]) => chunk as Uint8Array)

/** The `error` values `p` received on stream `id`. */
const errors = (p: Peer, id: string): unknown[] =>
  p.emits.filter(([event]) => event === streamEvent('error', id)).map(([, value]) => value)

const DIAL = '0b9d6f0e-3c1a-4c9e-9d55-7f1b2a3c4d5e'
const OUT = `${DIAL}.dialer`
const BACK = `${DIAL}.listener`

describe('Relay', () => {
  const relays: Relay[] = []
  afterEach(() => {
    for (const r of relays.splice(0)) r.stop()
    vi.useRealTimers()
  })

  /** A relay with a dialer and a listener and one dial between them. */
  function setup (limits: Partial<RelayLimits> = {}, now?: () => number): { relay: Relay, dialer: Peer, listener: Peer, streamsChanged: number[] } {
    const streamsChanged: number[] = []
    const relay = new Relay({ ...LIMITS, ...limits }, { streamsChanged: (n) => streamsChanged.push(n) }, undefined, now)
    relays.push(relay)
    const dialer = peer('dialer')
    const listener = peer('listener')
    relay.openPair(dialer.session, listener.session, OUT, BACK)
    return { relay, dialer, listener, streamsChanged }
  }

  describe('opening and accepting', () => {
    it('openPair registers both one-way streams and counts them', () => {
      const { relay, dialer, listener, streamsChanged } = setup()
      expect(relay.openStreams).toBe(2)
      expect(streamsChanged).toEqual([1, 2])
      expect([...relay.stateOf(dialer.session).outbound.keys()]).toEqual([OUT])
      expect([...relay.stateOf(dialer.session).inbound.keys()]).toEqual([BACK])
      expect([...relay.stateOf(listener.session).outbound.keys()]).toEqual([BACK])
      expect([...relay.stateOf(listener.session).inbound.keys()]).toEqual([OUT])
      expect(relay.stateOf(dialer.session).streamCount).toBe(2)
    })

    it('accept by the receiver forwards accept to the sender, once', () => {
      const { relay, dialer, listener } = setup()
      expect(relay.accept(listener.session, OUT)).toBe(true)
      expect(dialer.emits).toEqual([[`socket.io-pull-stream.accept.${OUT}`]])
      expect(listener.emits).toEqual([])
      expect(relay.accept(listener.session, OUT)).toBe(false)
      expect(dialer.emits).toHaveLength(1)
    })

    it.each<[string, 'dialer' | 'listener', string]>([
      ['an unknown stream', 'listener', 'nope.dialer'],
      ['the sender of the stream', 'dialer', OUT]
    ])('accept of %s does nothing', (_, who, id) => {
      const ctx = setup()
      expect(ctx.relay.accept(ctx[who].session, id)).toBe(false)
      expect(ctx.dialer.emits).toEqual([])
      expect(ctx.listener.emits).toEqual([])
    })
  })

  describe('forwarding', () => {
    it('queues data sent before accept and forwards it in order after accept', () => {
      const { relay, dialer, listener } = setup()
      const chunks = [bytes(10, 1), bytes(20, 2), bytes(30, 3)]
      for (const chunk of chunks) expect(relay.data(dialer.session, OUT, chunk)).toBe(true)
      expect(listener.emits).toEqual([])
      expect(relay.bufferedBytes).toBe(60)
      relay.accept(listener.session, OUT)
      expect(received(listener, OUT).map(hex)).toEqual(chunks.map(hex))
      expect(relay.bufferedBytes).toBe(0)
    })

    it('forwards data after accept at once', () => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      relay.data(dialer.session, OUT, bytes(5, 7))
      expect(listener.emits.map(([event]) => event)).toEqual([streamEvent('queue', OUT)])
      expect(received(listener, OUT).map(hex)).toEqual([hex(bytes(5, 7))])
      expect(relay.bufferedBytes).toBe(0)
    })

    it('accepts a Node Buffer as binary', () => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      expect(relay.data(dialer.session, OUT, Buffer.from('hi'))).toBe(true)
      expect(received(listener, OUT)).toHaveLength(1)
    })

    it('relays both directions of a dial independently', () => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      relay.accept(dialer.session, BACK)
      relay.data(dialer.session, OUT, bytes(3, 1))
      relay.data(listener.session, BACK, bytes(4, 2))
      expect(received(listener, OUT).map(hex)).toEqual([hex(bytes(3, 1))])
      expect(received(dialer, BACK).map(hex)).toEqual([hex(bytes(4, 2))])
    })

    it('ignores data from the wrong side and on unknown streams', () => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      expect(relay.data(listener.session, OUT, bytes(3))).toBe(false)
      expect(relay.data(dialer.session, 'nope.dialer', bytes(3))).toBe(false)
      expect(listener.emits).toEqual([])
      expect(relay.openStreams).toBe(2)
    })
  })

  describe('ending', () => {
    // [value the sender ends with, value the receiver gets]
    it.each<[string, unknown, unknown]>([
      ['true (clean end)', true, true],
      ['an error string', 'boom', 'boom'],
      ['an empty string', '', 'Stream error'],
      ['a number', 42, 'Stream error'],
      ['false', false, 'Stream error'],
      ['an overlong string', 'x'.repeat(1000), 'x'.repeat(256)]
    ])('end with %s after data delivers the queued chunks, then error', (_, value, delivered) => {
      const { relay, dialer, listener } = setup()
      relay.data(dialer.session, OUT, bytes(10, 1))
      relay.data(dialer.session, OUT, bytes(10, 2))
      expect(relay.end(dialer.session, OUT, value)).toBe(true)
      expect(listener.emits).toEqual([])
      relay.accept(listener.session, OUT)
      expect(listener.emits).toEqual([
        [streamEvent('queue', OUT), bytes(10, 1)],
        [streamEvent('queue', OUT), bytes(10, 2)],
        [streamEvent('error', OUT), delivered]
      ])
      // Only this direction closed; the other stays open.
      expect(relay.openStreams).toBe(1)
      expect(relay.bufferedBytes).toBe(0)
      expect(relay.stateOf(listener.session).inbound.has(OUT)).toBe(false)
      expect(relay.stateOf(dialer.session).inbound.has(BACK)).toBe(true)
    })

    it('ignores data and a second end after end', () => {
      const { relay, dialer, listener } = setup()
      relay.end(dialer.session, OUT, true)
      expect(relay.data(dialer.session, OUT, bytes(3))).toBe(false)
      expect(relay.end(dialer.session, OUT, 'again')).toBe(false)
      relay.accept(listener.session, OUT)
      expect(listener.emits).toEqual([[streamEvent('error', OUT), true]])
    })
  })

  describe('bad chunks', () => {
    it.each<[string, unknown]>([
      ['a string', 'hello'],
      ['a number', 7],
      ['an array of numbers', [1, 2, 3]],
      ['an object', { data: [1] }],
      ['null', null],
      ['an ArrayBuffer', new ArrayBuffer(4)]
    ])('%s fails the stream and its sibling with E_BAD_REQUEST', (_, chunk) => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      relay.data(dialer.session, OUT, bytes(5))
      expect(relay.data(dialer.session, OUT, chunk)).toBe(false)
      const wire = 'stream chunks must be binary [E_BAD_REQUEST]'
      expect(errors(listener, OUT)).toEqual([wire])
      expect(errors(dialer, BACK)).toEqual([wire])
      expect(relay.openStreams).toBe(0)
      expect(relay.bufferedBytes).toBe(0)
      expect(relay.data(dialer.session, OUT, bytes(5))).toBe(false)
    })
  })

  describe('receiver backpressure', () => {
    // [receiver's unflushed bytes, whether a chunk is forwarded at once]
    it.each<[number, boolean]>([
      [0, true],
      [299, true],
      [300, false],
      [10_000, false]
    ])('with %d bytes unflushed at the receiver, forwarding at once is %s', (pending, forwarded) => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      listener.pending = pending
      relay.data(dialer.session, OUT, bytes(10))
      expect(received(listener, OUT)).toHaveLength(forwarded ? 1 : 0)
      expect(relay.bufferedBytes).toBe(forwarded ? 0 : 10)
    })

    it('holds chunks while the receiver is above the high-water mark and forwards them on drained()', () => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      listener.pending = 300
      for (let i = 1; i <= 3; i++) relay.data(dialer.session, OUT, bytes(10, i))
      relay.end(dialer.session, OUT, true)
      relay.drained(listener.session) // still full
      expect(listener.emits).toEqual([])
      listener.pending = 0
      relay.drained(listener.session)
      expect(listener.emits).toEqual([
        [streamEvent('queue', OUT), bytes(10, 1)],
        [streamEvent('queue', OUT), bytes(10, 2)],
        [streamEvent('queue', OUT), bytes(10, 3)],
        [streamEvent('error', OUT), true]
      ])
      expect(relay.bufferedBytes).toBe(0)
    })

    it('stops forwarding mid-queue once the receiver reaches the high-water mark', () => {
      const { relay, dialer, listener } = setup()
      listener.countWrites = true
      for (let i = 1; i <= 5; i++) relay.data(dialer.session, OUT, bytes(100, i))
      relay.accept(listener.session, OUT)
      expect(received(listener, OUT).map(hex)).toEqual([bytes(100, 1), bytes(100, 2), bytes(100, 3)].map(hex))
      expect(relay.bufferedBytes).toBe(200)
      listener.pending = 0
      relay.drained(listener.session)
      expect(received(listener, OUT).map(hex)).toEqual([1, 2, 3, 4, 5].map(i => hex(bytes(100, i))))
      expect(relay.bufferedBytes).toBe(0)
    })

    it('takes turns between ready streams toward one receiver', () => {
      const { relay, dialer, listener } = setup()
      const other = `${DIAL}-2`
      relay.openPair(dialer.session, listener.session, `${other}.dialer`, `${other}.listener`)
      listener.pending = 300
      relay.accept(listener.session, OUT)
      relay.accept(listener.session, `${other}.dialer`)
      for (let i = 1; i <= 3; i++) {
        relay.data(dialer.session, OUT, bytes(1, i))
        relay.data(dialer.session, `${other}.dialer`, bytes(1, 10 + i))
      }
      listener.pending = 0
      relay.drained(listener.session)
      const order = listener.emits.map(([event, chunk]) => `${event.endsWith(OUT) ? 'a' : 'b'}${(chunk as Uint8Array)[0]}`)
      expect(order).toEqual(['a1', 'b11', 'a2', 'b12', 'a3', 'b13'])
    })
  })

  describe('sender backpressure', () => {
    it('pauses a sender whose stream queue passes half its cap and resumes it once the queue drains', () => {
      const { relay, dialer, listener } = setup()
      for (let i = 0; i < 5; i++) relay.data(dialer.session, OUT, bytes(100))
      expect(dialer.pauses).toBe(0) // 500 is not past half of 1000
      relay.data(dialer.session, OUT, bytes(100))
      expect(dialer.pauses).toBe(1)
      expect(relay.stateOf(dialer.session).paused).toBe(true)
      relay.data(dialer.session, OUT, bytes(100))
      expect(dialer.pauses).toBe(1) // not paused twice
      expect(dialer.resumes).toBe(0)
      relay.accept(listener.session, OUT)
      expect(received(listener, OUT)).toHaveLength(7)
      expect(dialer.resumes).toBe(1)
      expect(relay.stateOf(dialer.session).paused).toBe(false)
      expect(relay.bufferedBytes).toBe(0)
    })

    it('keeps the sender paused while its queue is still above three eighths of the cap', () => {
      const { relay, dialer, listener } = setup()
      listener.countWrites = true
      for (let i = 0; i < 8; i++) relay.data(dialer.session, OUT, bytes(100))
      expect(relay.stateOf(dialer.session).paused).toBe(true)
      relay.accept(listener.session, OUT) // forwards 300, 500 left
      expect(relay.bufferedBytes).toBe(500)
      expect(dialer.resumes).toBe(0)
      listener.pending = 0
      relay.drained(listener.session) // forwards 300, 200 left
      expect(relay.bufferedBytes).toBe(200)
      expect(dialer.resumes).toBe(1)
    })

    it('pauses a sender whose streams together pass half the socket cap', () => {
      const { relay, dialer } = setup()
      const ids = [0, 1, 2, 3, 4].map(i => `d${i}`)
      for (const id of ids) relay.openPair(dialer.session, peer(`l-${id}`).session, `${id}.dialer`, `${id}.listener`)
      // 450 per stream stays under each stream's pause threshold; 5 * 450 = 2250 > 2000.
      for (const id of ids.slice(0, 4)) relay.data(dialer.session, `${id}.dialer`, bytes(450))
      expect(dialer.pauses).toBe(0)
      relay.data(dialer.session, 'd4.dialer', bytes(450))
      expect(dialer.pauses).toBe(1)
      expect(relay.bufferedBytes).toBe(2250)
    })

    it('tries again to pause a sender whose transport could not pause', () => {
      const { relay, dialer } = setup()
      let attempts = 0
      dialer.session.endpoint.pauseReading = () => { attempts++; return false }
      for (let i = 0; i < 8; i++) relay.data(dialer.session, OUT, bytes(100))
      expect(attempts).toBe(3) // at 600, 700 and 800 bytes
      expect(relay.stateOf(dialer.session).paused).toBe(false)
    })
  })

  describe('limits', () => {
    it('fails a stream whose queue passes streamBufferBytes with E_LIMIT_BUFFER, on both sides', () => {
      const { relay, dialer, listener } = setup()
      for (let i = 0; i < 10; i++) expect(relay.data(dialer.session, OUT, bytes(100))).toBe(true)
      expect(relay.stateOf(dialer.session).paused).toBe(true)
      expect(relay.data(dialer.session, OUT, bytes(1))).toBe(false)
      const [toListener] = errors(listener, OUT)
      const [toDialer] = errors(dialer, BACK)
      expect(toListener).toMatch(/\[E_LIMIT_BUFFER\]$/)
      expect(toListener).toContain('streamBufferBytes=1000')
      expect(toDialer).toBe(toListener)
      expect(received(listener, OUT)).toEqual([])
      expect(relay.openStreams).toBe(0)
      expect(relay.bufferedBytes).toBe(0)
      expect(relay.stateOf(dialer.session).queuedBytes).toBe(0)
      // The failed stream held the only bytes: the sender reads again.
      expect(relay.stateOf(dialer.session).paused).toBe(false)
      expect(dialer.resumes).toBe(1)
    })

    it('fails the stream that passes socketBufferBytes with E_LIMIT_BUFFER and keeps the others', () => {
      const { relay, dialer } = setup()
      const receivers = [0, 1, 2, 3, 4].map(i => peer(`l${i}`))
      receivers.forEach((r, i) => relay.openPair(dialer.session, r.session, `d${i}.dialer`, `d${i}.listener`))
      for (let i = 0; i < 4; i++) expect(relay.data(dialer.session, `d${i}.dialer`, bytes(900))).toBe(true)
      expect(relay.data(dialer.session, 'd4.dialer', bytes(900))).toBe(false)
      const last = receivers[4] as Peer
      expect(errors(last, 'd4.dialer')).toEqual(['Socket buffer limit reached (socketBufferBytes=4000) [E_LIMIT_BUFFER]'])
      expect(relay.bufferedBytes).toBe(3600)
      expect(relay.openStreams).toBe(2 + 4 * 2)
      expect(receivers.slice(0, 4).every(r => r.emits.length === 0)).toBe(true)
    })

    // [budget, chunk sizes, index of the chunk that fails or -1]
    it.each<[number, number[], number]>([
      [500, [300, 200], -1],
      [500, [300, 201], 1],
      [500, [501], 0],
      [500, [100, 0, 100, 300, 1], 4]
    ])('with streamByteBudget %d, chunks %j fail at index %d with E_LIMIT_BYTES', (budget, sizes, failsAt) => {
      const { relay, dialer, listener } = setup({ streamByteBudget: budget })
      relay.accept(listener.session, OUT)
      const results = sizes.map(n => relay.data(dialer.session, OUT, bytes(n)))
      expect(results.indexOf(false)).toBe(failsAt)
      if (failsAt === -1) {
        expect(errors(listener, OUT)).toEqual([])
        expect(relay.openStreams).toBe(2)
      } else {
        expect(errors(listener, OUT)).toEqual([`Stream byte budget exceeded (streamByteBudget=${budget}) [E_LIMIT_BYTES]`])
        expect(errors(dialer, BACK)).toHaveLength(1)
        expect(relay.openStreams).toBe(0)
      }
      expect(relay.bufferedBytes).toBe(0)
    })

    it('fails the blocking stream of a sender paused longer than senderStallTimeoutMs', () => {
      vi.useFakeTimers()
      const { relay, dialer, listener } = setup({ senderStallTimeoutMs: 2000 }, () => Date.now())
      for (let i = 0; i < 6; i++) relay.data(dialer.session, OUT, bytes(100))
      expect(relay.stateOf(dialer.session).paused).toBe(true)
      vi.advanceTimersByTime(1500)
      expect(errors(listener, OUT)).toEqual([])
      vi.advanceTimersByTime(1000)
      expect(errors(listener, OUT)).toEqual(['Receiver stalled for 2000 ms with a full stream buffer [E_LIMIT_BUFFER]'])
      expect(relay.stateOf(dialer.session).paused).toBe(false)
      expect(relay.bufferedBytes).toBe(0)
    })

    it('fails a dial idle in both directions longer than streamIdleTimeoutMs with E_STREAM_IDLE', () => {
      vi.useFakeTimers()
      const { relay, dialer, listener } = setup({ streamIdleTimeoutMs: 1000 }, () => Date.now())
      relay.accept(listener.session, OUT)
      relay.accept(dialer.session, BACK)
      for (let t = 0; t < 5; t++) {
        vi.advanceTimersByTime(500)
        relay.data(listener.session, BACK, bytes(1)) // only one direction moves
      }
      expect(relay.openStreams).toBe(2)
      vi.advanceTimersByTime(2000)
      expect(errors(listener, OUT)).toEqual(['Stream idle timeout (streamIdleTimeoutMs=1000) [E_STREAM_IDLE]'])
      expect(errors(dialer, BACK)).toHaveLength(1)
      expect(relay.openStreams).toBe(0)
    })
  })

  describe('sessions going away', () => {
    it('dropSession(sender) fails its streams on the receiver with E_PEER_GONE, not a clean end', () => {
      const { relay, dialer, listener, streamsChanged } = setup()
      relay.data(dialer.session, OUT, bytes(50))
      relay.dropSession(dialer.session)
      const delivered = errors(listener, OUT)
      expect(delivered).toHaveLength(1)
      expect(delivered[0]).not.toBe(true)
      expect(delivered[0]).toMatch(/\[E_PEER_GONE\]$/)
      expect(relay.openStreams).toBe(0)
      expect(streamsChanged.at(-1)).toBe(0)
      expect(relay.bufferedBytes).toBe(0)
      expect(relay.stateOf(listener.session).streamCount).toBe(0)
    })

    it('dropSession(receiver) fails the other direction on the remaining peer with E_PEER_GONE', () => {
      const { relay, dialer, listener } = setup()
      relay.data(dialer.session, OUT, bytes(50))
      relay.dropSession(listener.session)
      expect(errors(dialer, BACK)).toEqual(['Peer disconnected [E_PEER_GONE]'])
      expect(relay.openStreams).toBe(0)
      expect(relay.bufferedBytes).toBe(0)
      expect(relay.stateOf(dialer.session).streamCount).toBe(0)
    })

    it('dropSession after a clean end keeps the clean end and drops the stream the session received', () => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      relay.end(dialer.session, OUT, true)
      relay.data(listener.session, BACK, bytes(10))
      relay.dropSession(dialer.session)
      expect(errors(listener, OUT)).toEqual([true])
      expect(relay.openStreams).toBe(0)
      expect(relay.bufferedBytes).toBe(0)
      expect(relay.stateOf(listener.session).streamCount).toBe(0)
      expect(relay.data(listener.session, BACK, bytes(10))).toBe(false)
    })

    it('fail tells each receiver with error and each sender with abort', () => {
      const { relay, dialer, listener } = setup()
      relay.data(dialer.session, OUT, bytes(10))
      relay.fail(relay.openPair(dialer.session, listener.session, 'x.dialer', 'x.listener')[0], 'E_DIAL_TIMEOUT', 'late')
      const wire = 'late [E_DIAL_TIMEOUT]'
      expect(errors(listener, 'x.dialer')).toEqual([wire])
      expect(errors(dialer, 'x.listener')).toEqual([wire])
      expect(dialer.emits).toContainEqual([streamEvent('abort', 'x.dialer'), wire])
      expect(listener.emits).toContainEqual([streamEvent('abort', 'x.listener'), wire])
      expect(relay.openStreams).toBe(2)
    })

    it('failAll fails every open stream with the given code', () => {
      const { relay, dialer, listener } = setup()
      relay.openPair(listener.session, dialer.session, 'y.dialer', 'y.listener')
      relay.data(dialer.session, OUT, bytes(10))
      relay.failAll('E_SHUTDOWN', 'Server shutting down')
      const wire = 'Server shutting down [E_SHUTDOWN]'
      expect(errors(listener, OUT)).toEqual([wire])
      expect(errors(dialer, BACK)).toEqual([wire])
      expect(errors(dialer, 'y.dialer')).toEqual([wire])
      expect(errors(listener, 'y.listener')).toEqual([wire])
      expect(relay.openStreams).toBe(0)
      expect(relay.bufferedBytes).toBe(0)
    })
  })

  describe('starsock extensions: window, credit and abort', () => {
    it('passes the receiver window on with accept, and only a valid one', () => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT, 65536)
      expect(dialer.emits).toContainEqual([streamEvent('accept', OUT), 65536])
      relay.accept(dialer.session, BACK, -5)
      expect(listener.emits).toContainEqual([streamEvent('accept', BACK)])
    })

    it.each([[0], [-1], [1.5], ['10'], [null], [2 ** 40]])('forwards credit only for a positive integer window, not %j', (bad) => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      expect(relay.data(dialer.session, OUT, bytes(1000))).toBe(true)
      expect(relay.credit(listener.session, OUT, bad)).toBe(false)
      expect(relay.credit(listener.session, OUT, 1000)).toBe(true)
      expect(dialer.emits.filter(([e]) => e === streamEvent('credit', OUT))).toEqual([[streamEvent('credit', OUT), 1000]])
    })

    it('refuses credit past the bytes delivered to the receiver (a receiver gives back what it read), and passes none of it on', () => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      expect(relay.credit(listener.session, OUT, 1), 'nothing delivered yet').toBe(false)
      expect(relay.data(dialer.session, OUT, bytes(500))).toBe(true)
      expect(relay.data(dialer.session, OUT, bytes(500))).toBe(true)
      expect(relay.credit(listener.session, OUT, 600)).toBe(true)
      expect(relay.credit(listener.session, OUT, 401), 'one byte past the 1,000 delivered').toBe(false)
      expect(relay.credit(listener.session, OUT, 400)).toBe(true)
      for (let i = 0; i < 1000; i++) expect(relay.credit(listener.session, OUT, 1)).toBe(false)
      expect(dialer.emits.filter(([e]) => e === streamEvent('credit', OUT)).map(([, n]) => n)).toEqual([600, 400])
    })

    it('passes on at most one credit per chunk delivered (a receiver grants as it reads a chunk), and takes no empty chunk', () => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      expect(relay.data(dialer.session, OUT, bytes(0)), 'an empty chunk carries nothing').toBe('empty')
      expect(relay.data(dialer.session, OUT, bytes(500))).toBe(true)
      expect(relay.credit(listener.session, OUT, 100)).toBe(true)
      expect(relay.credit(listener.session, OUT, 100), 'a second credit for the one chunk').toBe(false)
      expect(relay.data(dialer.session, OUT, bytes(10))).toBe(true)
      expect(relay.credit(listener.session, OUT, 100)).toBe(true)
      expect(dialer.emits.filter(([e]) => e === streamEvent('credit', OUT)).map(([, n]) => n)).toEqual([100, 100])
    })

    it('takes credit and abort only from the receiver of a stream', () => {
      const { relay, dialer } = setup()
      relay.accept(dialer.session, BACK)
      expect(relay.credit(dialer.session, OUT, 100)).toBe(false)
      expect(relay.abort(dialer.session, OUT, 'x')).toBe(false)
      expect(relay.openStreams).toBe(2)
    })

    it('drops credit for a stream that is gone without calling it a bad request (the end was on its way)', () => {
      const { relay, dialer, listener } = setup()
      relay.accept(listener.session, OUT)
      relay.end(dialer.session, OUT, true) // delivered at once: the stream closes on the server
      expect(relay.stateOf(listener.session).inbound.has(OUT)).toBe(false)
      expect(relay.credit(listener.session, OUT, 4096)).toBe('gone')
      expect(dialer.emits.filter(([e]) => e === streamEvent('credit', OUT))).toEqual([])
    })

    it('abort drops the queue, closes the stream and tells the sender; later chunks are ignored', () => {
      const { relay, dialer, listener } = setup()
      expect(relay.data(dialer.session, OUT, bytes(100))).toBe(true)
      expect(relay.bufferedBytes).toBe(100)
      expect(relay.abort(listener.session, OUT, 'reader gone')).toBe(true)
      expect(dialer.emits).toContainEqual([streamEvent('abort', OUT), 'reader gone'])
      expect(relay.bufferedBytes).toBe(0)
      expect(relay.openStreams).toBe(1)
      expect(relay.data(dialer.session, OUT, bytes(10))).toBe(false)
      expect(received(listener, OUT)).toEqual([])
    })
  })

  describe('stall timeout measures time without progress', () => {
    it('keeps a paused sender whose receiver drains slowly but steadily', () => {
      let t = 0
      const { relay, dialer, listener } = setup({ senderStallTimeoutMs: 1000 }, () => t)
      listener.countWrites = true
      relay.accept(listener.session, OUT)
      for (let i = 0; i < 10; i++) relay.data(dialer.session, OUT, bytes(100)) // 3 forwarded, 700 queued
      expect(relay.stateOf(dialer.session).paused).toBe(true)
      // every 400 ms the receiver flushes one chunk's worth: progress, though the pause lasts
      for (let step = 0; step < 10; step++) {
        t += 400
        listener.pending = 200
        relay.drained(listener.session)
        relay.data(dialer.session, OUT, bytes(100))
        ;(relay as unknown as { sweep: () => void }).sweep()
      }
      expect(relay.stateOf(dialer.session).paused).toBe(true)
      expect(errors(listener, OUT)).toEqual([])
      expect(relay.openStreams).toBe(2)
    })
  })

  describe('the share of one client IP (ipBufferBytes)', () => {
    /** `n` senders from `ip`, each with a dial to a listener of its own (from another IP); `relay` with `limits`. */
    function senders (relay: Relay, n: number, ip: string, canPause = true): Array<{ sender: Peer, listener: Peer, id: string }> {
      return Array.from({ length: n }, (_, i) => {
        const sender = peer(`${ip}-s${i}`, ip, canPause)
        const listener = peer(`${ip}-l${i}`, '10.9.9.9')
        const id = `${ip}-${i}`
        relay.openPair(sender.session, listener.session, `${id}.dialer`, `${id}.listener`)
        return { sender, listener, id: `${id}.dialer` }
      })
    }
    const make = (limits: Partial<RelayLimits>, now?: () => number): Relay => {
      const relay = new Relay({ ...LIMITS, ...limits }, {}, undefined, now)
      relays.push(relay)
      return relay
    }

    it('pauses every sender of an IP whose share passes half its cap, each under its own marks; resumes them at three eighths; another IP reads on', () => {
      const relay = make({ ipBufferBytes: 3000 })
      const mine = senders(relay, 5, '192.0.2.1')
      const other = senders(relay, 1, '192.0.2.2')
      // 400 each: under a stream's pause mark (500) and a socket's (2000).
      for (const s of mine.slice(0, 3)) relay.data(s.sender.session, s.id, bytes(400))
      expect(mine.map((s) => s.sender.pauses)).toEqual([0, 0, 0, 0, 0]) // 1200
      relay.data((mine[3] as typeof mine[0]).sender.session, (mine[3] as typeof mine[0]).id, bytes(400)) // 1600 > 1500
      expect(mine.map((s) => s.sender.pauses)).toEqual([0, 0, 0, 1, 0])
      // The others of the IP pause at their next chunk.
      relay.data((mine[0] as typeof mine[0]).sender.session, (mine[0] as typeof mine[0]).id, bytes(10))
      relay.data((mine[4] as typeof mine[0]).sender.session, (mine[4] as typeof mine[0]).id, bytes(10))
      expect(mine.map((s) => s.sender.pauses)).toEqual([1, 0, 0, 1, 1])
      // An IPv4-mapped spelling is the same IP.
      const mapped = senders(relay, 1, '::ffff:192.0.2.1')[0] as typeof mine[0]
      relay.data(mapped.sender.session, mapped.id, bytes(10))
      expect(mapped.sender.pauses).toBe(1)
      // Another IP is not held back by it.
      const o = other[0] as typeof other[0]
      relay.data(o.sender.session, o.id, bytes(400))
      expect(o.sender.pauses).toBe(0)
      // Draining down to 1125 (three eighths of 3000) resumes them all at once.
      for (const s of mine.slice(0, 2)) relay.accept(s.listener.session, s.id) // 1620 - 820 = 800
      expect(mine.map((s) => s.sender.resumes)).toEqual([1, 0, 0, 1, 1])
      expect(mine.every((s) => !relay.stateOf(s.sender.session).paused)).toBe(true)
      expect(relay.bufferedBytes).toBe(800 + 400 + 10 + 10)
    })

    it('keeps counting what the others hold when a stream of the IP fails at another cap (the failed chunk is counted before it is dropped)', () => {
      const relay = make({ ipBufferBytes: 2000 })
      const [a] = senders(relay, 1, '192.0.2.1')
      const [b] = senders(relay, 1, '192.0.2.1', false)
      const [c] = senders(relay, 1, '192.0.2.1')
      if (a === undefined || b === undefined || c === undefined) throw new Error('no senders')
      relay.data(a.sender.session, a.id, bytes(450))
      relay.data(a.sender.session, a.id, bytes(450))
      // b cannot be paused: its chunk past the stream's cap (1000) fails its stream.
      relay.data(b.sender.session, b.id, bytes(1100))
      expect(errors(b.listener, b.id)).toEqual(['Stream buffer limit reached (streamBufferBytes=1000) [E_LIMIT_BUFFER]'])
      expect(relay.bufferedBytes).toBe(900)
      // a's 900 still count: with c's 200 (under its own marks) that is past half of 2000, so c pauses.
      relay.data(c.sender.session, c.id, bytes(200))
      expect(c.sender.pauses).toBe(1)
    })

    it('fails first the streams that went longest without a chunk out: many small unread streams do not make a slow reader\'s larger stream the victim', () => {
      let t = 0
      const relay = make({ ipBufferBytes: 3000, senderStallTimeoutMs: 1000 }, () => t)
      const unread = senders(relay, 20, '192.0.2.1')
      for (const u of unread) relay.data(u.sender.session, u.id, bytes(90)) // 1800, never accepted
      const [slow] = senders(relay, 1, '192.0.2.1')
      if (slow === undefined) throw new Error('no sender')
      slow.listener.countWrites = true
      relay.accept(slow.listener.session, slow.id)
      for (let i = 0; i < 6; i++) relay.data(slow.sender.session, slow.id, bytes(100)) // 300 out, 300 held
      const sweep = (): void => { (relay as unknown as { sweep: () => void }).sweep() }
      for (let step = 1; step <= 6; step++) {
        t = step * 200
        slow.listener.pending = 200 // its receiver read a chunk
        relay.drained(slow.listener.session)
        relay.data(slow.sender.session, slow.id, bytes(100))
        sweep()
      }
      expect(errors(slow.listener, slow.id)).toEqual([])
      expect(unread.filter((u) => errors(u.listener, u.id).length > 0).length).toBeGreaterThanOrEqual(11)
    })

    it('holds an IPv6 /48 to four times the share however many /64s it spreads over; another /48 is not held back', () => {
      let t = 0
      const relay = make({ ipBufferBytes: 3000, streamBufferBytes: 4000, socketBufferBytes: 8000, senderStallTimeoutMs: 1000 }, () => t)
      // 1,400 from each of five /64s: under each one's half (1,500), past the /48's (6,000) in all.
      const spread = [1, 2, 3, 4, 5].map((i) => (senders(relay, 1, `2001:db8:7:${i}::1`)[0] as { sender: Peer, listener: Peer, id: string }))
      for (const s of spread) {
        relay.data(s.sender.session, s.id, bytes(700))
        relay.data(s.sender.session, s.id, bytes(700))
      }
      expect(spread.map((s) => s.sender.pauses)).toEqual([0, 0, 0, 0, 1])
      for (const s of spread) relay.data(s.sender.session, s.id, bytes(1))
      expect(spread.map((s) => s.sender.pauses)).toEqual([1, 1, 1, 1, 1])
      const [other] = senders(relay, 1, '2001:db8:8:1::1')
      if (other === undefined) throw new Error('no sender')
      relay.data(other.sender.session, other.id, bytes(700))
      expect(other.sender.pauses).toBe(0)
      // Held past half for the stall timeout: its quietest streams fail until it is low (4,500).
      t = 1100
      ;(relay as unknown as { sweep: () => void }).sweep()
      expect(errors((spread[0] as typeof spread[0]).listener, (spread[0] as typeof spread[0]).id)).toEqual(['Receivers stalled for 1000 ms with the buffer of this IPv6 /48 network full (4 x ipBufferBytes=3000) [E_LIMIT_BUFFER]'])
      expect(spread.filter((s) => errors(s.listener, s.id).length > 0)).toHaveLength(2)
      expect(errors(other.listener, other.id)).toEqual([])
    })

    it('does not pause a neighbour whose chunks go straight on, and a trickle of progress does not put off the share\'s stall timeout', () => {
      let t = 0
      const relay = make({ ipBufferBytes: 3000, senderStallTimeoutMs: 1000 }, () => t)
      const hogs = senders(relay, 4, '192.0.2.1') // receivers that never accept
      for (const h of hogs) relay.data(h.sender.session, h.id, bytes(400)) // 1600: high
      const [d] = senders(relay, 1, '192.0.2.1')
      if (d === undefined) throw new Error('no sender')
      relay.accept(d.listener.session, d.id)
      const sweep = (): void => { (relay as unknown as { sweep: () => void }).sweep() }
      for (let step = 1; step <= 12; step++) {
        t = step * 100
        relay.data(d.sender.session, d.id, bytes(10)) // forwarded at once: progress of the IP
        expect(relay.stateOf(d.sender.session).paused).toBe(false)
        sweep()
      }
      // High since t=0: by t=1200 the fullest streams failed until the share is low.
      expect(hogs.filter((h) => errors(h.listener, h.id).length > 0)).toHaveLength(2)
      expect(received(d.listener, d.id)).toHaveLength(12)
    })

    it('fails the stream that passes the cap when its sender cannot be paused, naming the limit', () => {
      const relay = make({ ipBufferBytes: 3000 })
      const mine = senders(relay, 8, '192.0.2.1', false)
      for (const s of mine) relay.data(s.sender.session, s.id, bytes(400))
      const last = mine[7] as typeof mine[0]
      expect(errors(last.listener, last.id)).toEqual(['Buffer limit of this IP address reached (ipBufferBytes=3000) [E_LIMIT_BUFFER]'])
      expect(mine.slice(0, 7).every((s) => errors(s.listener, s.id).length === 0)).toBe(true)
      expect(relay.bufferedBytes).toBe(2800)
    })

    it('fails the fullest streams of an IP whose receivers made no progress for the stall timeout, until its share is low; not those of another IP', () => {
      let t = 0
      const relay = make({ ipBufferBytes: 3000, senderStallTimeoutMs: 1000 }, () => t)
      const mine = senders(relay, 5, '192.0.2.1')
      const other = senders(relay, 1, '192.0.2.2')
      const sizes = [300, 450, 350, 400, 200] // 1700: high, every sender under its own marks
      mine.forEach((s, i) => relay.data(s.sender.session, s.id, bytes(sizes[i] as number)))
      for (const s of mine) relay.data(s.sender.session, s.id, bytes(1)) // each one's next chunk pauses it
      const o = other[0] as typeof other[0]
      relay.data(o.sender.session, o.id, bytes(450))
      const sweep = (): void => { (relay as unknown as { sweep: () => void }).sweep() }
      t = 900
      sweep()
      expect(mine.flatMap((s) => errors(s.listener, s.id))).toEqual([]) // not yet
      t = 1100
      sweep()
      // 1705 held: failing 451 and 401 leaves 853 <= 1125; the rest and the other IP's stream stay.
      const failed = mine.filter((s) => errors(s.listener, s.id).length > 0).map((s) => s.id)
      expect(failed).toEqual([(mine[1] as typeof mine[0]).id, (mine[3] as typeof mine[0]).id])
      expect(errors((mine[1] as typeof mine[0]).listener, (mine[1] as typeof mine[0]).id)).toEqual(['Receivers stalled for 1000 ms with the buffer of this IP address full (ipBufferBytes=3000) [E_LIMIT_BUFFER]'])
      expect(errors(o.listener, o.id)).toEqual([])
      expect(mine.every((s) => !relay.stateOf(s.sender.session).paused)).toBe(true)
      expect(relay.bufferedBytes).toBe(853 + 450)
    })
  })
})

