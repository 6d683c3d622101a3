import { describe, expect, it } from 'vitest'
import { Channel, DATAGRAM_OVERHEAD_BYTES, datagramCost, MAX_DATAGRAM_WINDOW_BYTES, type ChannelLink } from '../../client/mux/channel.ts'
import { StarsockError } from '../../shared/errors.ts'
import {
  decodeDatagram,
  decodeJson,
  decodeWindow,
  FRAME,
  FrameDecoder,
  MAX_DATA_FRAME_BYTES,
  type Frame,
  type FrameType,
  type SockAddress
} from '../../shared/mux-frame.ts'
import type { OpenHeader } from '../../shared/sock-protocol.ts'
import { expectBytes } from '../helpers/bytes.ts'

const ID = 7
const RELIABLE: OpenHeader = { type: 'sock', sock: 'connect', reliable: true }
const UNRELIABLE: OpenHeader = { type: 'sock', sock: 'connect', reliable: false }

/**
 * A link that decodes and records every frame a channel sends, with a switchable output bound and a
 * budget for growing windows that records what is reserved and released.
 */
class FakeLink implements ChannelLink {
  readonly frames: Frame[] = []
  readonly closed: Channel[] = []
  readonly counts = { in: 0, out: 0, dropped: 0 }
  isFull = false
  /** What is left of the connection's budget for growing windows. */
  budget = Infinity
  /** Every `reserve` call: the bytes asked for, and whether they were granted. */
  readonly reserves: Array<[number, boolean]> = []
  /** Every `release` call. */
  readonly releases: number[] = []
  private readonly decoder = new FrameDecoder()
  private roomWaiters: Array<() => void> = []

  send = (head: Uint8Array, payload?: Uint8Array): void => {
    const frames = this.decoder.push(payload === undefined ? head : concat([head, payload]))
    // A channel hands the link whole frames, one at a time.
    expect(frames).toHaveLength(1)
    expect(this.decoder.bufferedBytes).toBe(0)
    this.frames.push(...frames)
  }

  room = async (): Promise<void> => { await new Promise<void>((resolve) => this.roomWaiters.push(resolve)) }
  full = (): boolean => this.isFull
  done = (channel: Channel): void => { this.closed.push(channel) }
  count = (what: 'in' | 'out' | 'dropped', n: number): void => { this.counts[what] += n }

  reserve = (bytes: number): boolean => {
    const ok = bytes <= this.budget
    if (ok) this.budget -= bytes
    this.reserves.push([bytes, ok])
    return ok
  }

  release = (bytes: number): void => {
    this.releases.push(bytes)
    this.budget += bytes
  }

  /** How many `room()` calls are still waiting. */
  get waitingForRoom (): number {
    return this.roomWaiters.length
  }

  /** The output queue drained: wake every `room()` waiter. */
  openRoom (): void {
    this.isFull = false
    const waiters = this.roomWaiters
    this.roomWaiters = []
    for (const wake of waiters) wake()
  }

  of (type: FrameType): Frame[] {
    return this.frames.filter((f) => f.type === type)
  }

  /** Payload sizes of the DATA frames so far. */
  dataSizes (): number[] {
    return this.of(FRAME.DATA).map((f) => f.payload.byteLength)
  }

  dataBytes (): number {
    return this.dataSizes().reduce((a, b) => a + b, 0)
  }

  /** The credits of the WINDOW frames so far. */
  windows (): number[] {
    return this.of(FRAME.WINDOW).map(decodeWindow)
  }
}

/** A channel on a FakeLink; without `maxWindowBytes` the constructor's default (no growth) applies. */
function channel (header: OpenHeader, windowBytes: number, sendWindowBytes: number, maxWindowBytes?: number, budget = Infinity): { ch: Channel, link: FakeLink } {
  const link = new FakeLink()
  link.budget = budget
  const ch = maxWindowBytes === undefined
    ? new Channel({ id: ID, header, initiator: true, remotePeer: 'peer-b', link, windowBytes, sendWindowBytes })
    : new Channel({ id: ID, header, initiator: true, remotePeer: 'peer-b', link, windowBytes, sendWindowBytes, maxWindowBytes })
  return { ch, link }
}

/** `n` bytes counting up from `seed`, so misplaced bytes show. */
function pattern (n: number, seed = 0): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (seed + i) & 0xff
  return out
}

/** Bytes as hex: compared as a string, fast even for large writes. */
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

function concat (parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.byteLength }
  return out
}

/** Let every pending promise callback run. */
async function settle (): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}

/** The state of a promise, readable at any time (and never an unhandled rejection). */
interface Tracked<T> { state: 'pending' | 'resolved' | 'rejected', value?: T, error?: unknown }
function track<T> (promise: Promise<T>): Tracked<T> {
  const t: Tracked<T> = { state: 'pending' }
  promise.then((value) => { t.state = 'resolved'; t.value = value }, (error: unknown) => { t.state = 'rejected'; t.error = error })
  return t
}

/** `promise`, or a rejection naming `what` did not happen within `ms`. */
async function within<T> (promise: Promise<T>, what: string, ms = 1000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms) })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function expectCode (error: unknown, code: string): void {
  expect(error).toBeInstanceOf(StarsockError)
  expect((error as StarsockError).code).toBe(code)
}

describe('Channel: reliable write', () => {
  it.each<[string, number, number, number[], number[]]>([
    ['a write within the credit', 1000, 600, [], [600]],
    ['a write of exactly the credit', 600, 600, [], [600]],
    ['a write of twice the credit', 100, 250, [100, 1000], [100, 100, 50]],
    ['a write with no initial credit', 0, 10, [3, 3, 4], [3, 3, 4]],
    ['a write fed one byte of credit at a time', 1, 5, [1, 1, 1, 1], [1, 1, 1, 1, 1]],
    ['a write over MAX_DATA_FRAME_BYTES', 1 << 20, 150 * 1024, [], [MAX_DATA_FRAME_BYTES, MAX_DATA_FRAME_BYTES, 150 * 1024 - 2 * MAX_DATA_FRAME_BYTES]],
    ['a large write over a credit between frame sizes', 100_000, 200_000, [100_000], [MAX_DATA_FRAME_BYTES, 100_000 - MAX_DATA_FRAME_BYTES, MAX_DATA_FRAME_BYTES, 100_000 - MAX_DATA_FRAME_BYTES]]
  ])('%s never sends more DATA than the credit', async (_, credit, size, grants, frameSizes) => {
    const { ch, link } = channel(RELIABLE, 1000, credit)
    const data = pattern(size, 3)
    const write = track(ch.write(data))
    let granted = credit
    for (let step = 0; ; step++) {
      await settle()
      // As much as the credit allows, and not a byte more.
      expect(link.dataBytes(), `DATA bytes after grant ${step}`).toBe(Math.min(size, granted))
      expect(write.state, `write after grant ${step}`).toBe(granted >= size ? 'resolved' : 'pending')
      const grant = grants[step]
      if (grant === undefined) break
      ch.addCredit(grant)
      granted += grant
    }
    expect(link.dataSizes()).toEqual(frameSizes)
    expect(link.of(FRAME.DATA).every((f) => f.id === ID)).toBe(true)
    expect(hex(concat(link.of(FRAME.DATA).map((f) => f.payload)))).toBe(hex(data))
    expect(ch.stats().sentBytes).toBe(size)
    expect(link.counts.out).toBe(size)
  })

  it('keeps concurrent writes in order while the first waits for credit', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 4)
    const first = track(ch.write(pattern(6, 0)))
    const second = track(ch.write(pattern(3, 100)))
    await settle()
    expect(link.dataSizes()).toEqual([4])
    ch.addCredit(100)
    await settle()
    expect([first.state, second.state]).toEqual(['resolved', 'resolved'])
    expectBytes(concat(link.of(FRAME.DATA).map((f) => f.payload)), concat([pattern(6, 0), pattern(3, 100)]), 'the DATA payloads')
  })

  it('waits for room while the link is full', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 1000)
    link.isFull = true
    const write = track(ch.write(pattern(10)))
    await settle()
    expect(link.dataSizes()).toEqual([])
    expect(write.state).toBe('pending')
    link.openRoom()
    await settle()
    expect(link.dataSizes()).toEqual([10])
    expect(write.state).toBe('resolved')
  })

  it('keeps waiting for room when credit arrives while the link is still full', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 4)
    link.isFull = true
    const write = track(ch.write(pattern(10)))
    await settle()
    ch.addCredit(100) // wakes the write, but the link is still full
    await settle()
    expect(link.dataSizes()).toEqual([])
    expect(write.state).toBe('pending')
    link.openRoom()
    await settle()
    expect(link.dataSizes()).toEqual([10])
    expect(write.state).toBe('resolved')
  })

  it.each<[string, (ch: Channel) => void, string]>([
    ['abort()', (ch) => { ch.abort() }, 'E_STREAM_CLOSED'],
    ['abort(error)', (ch) => { ch.abort(new StarsockError('E_KILLED', 'killed by A')) }, 'E_KILLED'],
    ['fail() (a RESET or the connection going down)', (ch) => { ch.fail(new StarsockError('E_PEER_GONE', 'gone')) }, 'E_PEER_GONE'],
    ['a window overrun', (ch) => { ch.push({ data: pattern(1001) }) }, 'E_LIMIT_BUFFER']
  ])('rejects a write waiting for room on a link that stays full when the channel ends by %s', async (_, end, code) => {
    const { ch, link } = channel(RELIABLE, 1000, 1000)
    link.isFull = true // and room() never settles
    const write = track(ch.write(pattern(10)))
    await settle()
    expect(write.state).toBe('pending')
    expect(link.waitingForRoom).toBe(1)
    end(ch)
    await settle()
    expect(write.state).toBe('rejected')
    expectCode(write.error, code)
    expect(write.error).toBe(ch.error)
    expect(link.isFull).toBe(true)
    expect(link.dataSizes()).toEqual([])
    link.openRoom()
    await settle()
    expect(link.dataSizes()).toEqual([])
  })

  it('rejects a write waiting for credit when its signal aborts, and sends nothing more', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 2)
    const controller = new AbortController()
    const write = track(ch.write(pattern(5), controller.signal))
    await settle()
    controller.abort()
    await settle()
    expect(write.state).toBe('rejected')
    expectCode(write.error, 'E_ABORTED')
    ch.addCredit(10)
    await settle()
    expect(link.dataSizes()).toEqual([2])
  })

  it('refuses write() on an unreliable channel and send() on a reliable one', async () => {
    await expect(channel(UNRELIABLE, 1000, 1000).ch.write(pattern(1))).rejects.toThrow(new TypeError('write() is for reliable channels; use send() for datagrams'))
    expect(() => channel(RELIABLE, 1000, 1000).ch.send(pattern(1))).toThrow(new TypeError('send() is for unreliable channels; use write() for bytes'))
  })
})

describe('Channel: receive window', () => {
  it.each<[string, number, number[], number[]]>([
    ['reads just under half the window', 1000, [400, 99], []],
    ['reads of exactly half the window', 1000, [400, 100], [500]],
    ['reads past half the window, then half again', 1000, [400, 200, 499, 1], [600, 500]],
    ['one read of the whole window', 1000, [1000], [1000]],
    ['reads just under half an odd window', 1001, [500], []],
    ['reads just over half an odd window', 1001, [500, 1], [501]],
    ['many small reads', 10, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [5, 5]]
  ])('grants WINDOW credit on %s', async (_, window, chunks, grants) => {
    const { ch, link } = channel(RELIABLE, window, 1000)
    for (const n of chunks) {
      ch.push({ data: pattern(n) })
      expectBytes(await within(ch.read(), `a ${n}-byte chunk`), pattern(n), `the ${n}-byte chunk`)
    }
    expect(link.windows()).toEqual(grants)
    expect(link.of(FRAME.WINDOW).every((f) => f.id === ID)).toBe(true)
  })

  it('grants nothing for bytes that are buffered but not read', () => {
    const { ch, link } = channel(RELIABLE, 1000, 1000)
    ch.push({ data: pattern(900) })
    expect(link.windows()).toEqual([])
    expect(ch.stats()).toEqual({ sentBytes: 0, receivedBytes: 900, bufferedBytes: 900, droppedDatagrams: 0, droppedBy: { credit: 0, queue: 0, window: 0 } })
  })

  it.each<[number, number]>([
    [0, 64],
    [1, 65],
    [100, 164],
    [MAX_DATA_FRAME_BYTES, MAX_DATA_FRAME_BYTES + 64]
  ])('a datagram of %i bytes costs %i bytes of credit', (bytes, cost) => {
    expect(DATAGRAM_OVERHEAD_BYTES).toBe(64)
    expect(datagramCost(bytes)).toBe(cost)
  })

  it('grants a datagram channel its bytes plus the overhead per datagram read, and bounds empty ones', async () => {
    const { ch, link } = channel(UNRELIABLE, 4 * datagramCost(0), 1000)
    for (let i = 0; i < 5; i++) ch.push({ data: new Uint8Array(0) })
    // The window holds four empty datagrams: the fifth is dropped.
    expect(ch.stats()).toEqual({ sentBytes: 0, receivedBytes: 0, bufferedBytes: 4 * DATAGRAM_OVERHEAD_BYTES, droppedDatagrams: 1, droppedBy: { credit: 0, queue: 0, window: 1 } })
    await within(ch.receive(), 'the first empty datagram')
    expect(link.windows()).toEqual([])
    await within(ch.receive(), 'the second empty datagram')
    expect(link.windows()).toEqual([2 * DATAGRAM_OVERHEAD_BYTES])
    ch.push({ data: pattern(100) }) // two empty ones unread: no room for 100 bytes and the overhead
    expect(ch.stats().droppedDatagrams).toBe(2)
    await within(ch.receive(), 'the third empty datagram')
    expect(link.windows()).toEqual([2 * DATAGRAM_OVERHEAD_BYTES])
    ch.push({ data: pattern(100) }) // one empty one unread: room now
    expect(ch.stats().droppedDatagrams).toBe(2)
    await within(ch.receive(), 'the fourth empty datagram')
    expect(link.windows()).toEqual([2 * DATAGRAM_OVERHEAD_BYTES, 2 * DATAGRAM_OVERHEAD_BYTES])
    expectBytes((await within(ch.receive(), 'the 100-byte datagram'))?.data, pattern(100), 'the 100-byte datagram')
    expect(link.windows()).toEqual([2 * DATAGRAM_OVERHEAD_BYTES, 2 * DATAGRAM_OVERHEAD_BYTES, datagramCost(100)])
    expect(ch.stats().bufferedBytes).toBe(0)
  })

  it.each<[string, number[], boolean]>([
    ['up to exactly the window', [60, 40], false],
    ['past the window in one chunk', [101], true],
    ['past the window by one byte', [60, 41], true],
    ['an empty chunk at a full window', [100, 0], false]
  ])('a reliable channel pushed %s is aborted with E_LIMIT_BUFFER (or not)', async (_, chunks, reset) => {
    const { ch, link } = channel(RELIABLE, 100, 1000)
    for (const n of chunks) ch.push({ data: pattern(n) })
    expect(ch.closed).toBe(reset)
    if (!reset) {
      expect(link.of(FRAME.RESET)).toEqual([])
      expect(ch.stats().bufferedBytes).toBe(chunks.reduce((a, b) => a + b, 0))
      return
    }
    const resets = link.of(FRAME.RESET)
    expect(resets).toHaveLength(1)
    expect(resets[0]?.id).toBe(ID)
    expect(decodeJson(resets[0] as Frame)).toEqual({ code: 'E_LIMIT_BUFFER', message: 'The other side wrote past the channel window of 100 bytes' })
    await within(ch.whenClosed, 'whenClosed after the window overrun')
    const read = await ch.read().then(() => undefined, (err: unknown) => err)
    expectCode(read, 'E_LIMIT_BUFFER')
    const write = await ch.write(pattern(1)).then(() => undefined, (err: unknown) => err)
    expectCode(write, 'E_LIMIT_BUFFER')
    expect(link.closed).toEqual([ch])
  })
})

describe('Channel: datagrams', () => {
  it('send() drops and counts what the credit or the link cannot take', async () => {
    const { ch, link } = channel(UNRELIABLE, 1000, datagramCost(4) + datagramCost(6))
    const steps: Array<[string, number, number, boolean, boolean]> = [
      // [what, credit granted first, datagram bytes, link full, sent]
      ['4 bytes of the credit for 4 and 6', 0, 4, false, true],
      ['7 bytes with the credit for 6 left', 0, 7, false, false],
      ['1 byte while the link is full', 0, 1, true, false],
      ['6 bytes, the last credit', 0, 6, false, true],
      ['an empty datagram with no credit left', 0, 0, false, false],
      ['an empty datagram with one byte less than the overhead', DATAGRAM_OVERHEAD_BYTES - 1, 0, false, false],
      ['an empty datagram with exactly the overhead', 1, 0, false, true],
      ['an empty datagram with the credit used', 0, 0, false, false],
      ['6 bytes with 6 credit but none for the overhead', 6, 6, false, false],
      ['6 bytes with the rest of the overhead', DATAGRAM_OVERHEAD_BYTES, 6, false, true]
    ]
    let dropped = 0
    for (const [what, credit, n, full, sent] of steps) {
      ch.addCredit(credit)
      link.isFull = full
      expect(ch.send(pattern(n)), what).toBe(sent)
      if (!sent) dropped++
      expect(ch.stats().droppedDatagrams, what).toBe(dropped)
      expect(link.counts.dropped, what).toBe(dropped)
    }
    // Every drop but the one while the link was full (with credit for it) was for want of credit.
    expect(ch.stats().droppedBy).toEqual({ credit: dropped - 1, queue: 1, window: 0 })
    expect(link.of(FRAME.DATAGRAM).map((f) => decodeDatagram(f).data.byteLength)).toEqual([4, 6, 0, 6])
    expect(ch.stats().sentBytes).toBe(16)
    expect(link.counts.out).toBe(16)
  })

  it('send() keeps datagram boundaries and addresses', () => {
    const { ch, link } = channel(UNRELIABLE, 1000, 1000)
    const sent: Array<[Uint8Array, SockAddress | undefined]> = [
      [pattern(3, 1), { ip: '127.0.0.1', port: 5000 }],
      [new Uint8Array(0), { ip: '::1', port: 53 }],
      [pattern(5, 2), undefined]
    ]
    for (const [data, addr] of sent) expect(ch.send(data, addr)).toBe(true)
    const frames = link.of(FRAME.DATAGRAM)
    expect(frames.map((f) => f.id)).toEqual([ID, ID, ID])
    expect(frames.map(decodeDatagram).map(({ data, addr }) => ({ data: hex(data), addr }))).toEqual(sent.map(([data, addr]) => ({ data: hex(data), addr })))
  })

  it('receive() keeps datagram boundaries and addresses', async () => {
    const { ch } = channel(UNRELIABLE, 1000, 1000)
    const pushed = [
      { data: pattern(3, 1), addr: { ip: '10.0.0.1', port: 1 } },
      { data: new Uint8Array(0), addr: { ip: '10.0.0.2', port: 2 } },
      { data: pattern(5, 2) }
    ]
    for (const d of pushed) ch.push(d)
    for (const d of pushed) {
      const got = await within(ch.receive(), 'a datagram')
      expect({ data: hex(got?.data ?? new Uint8Array()), addr: got?.addr }).toEqual({ data: hex(d.data), addr: d.addr })
    }
    ch.push({ data: pattern(2, 9) })
    expectBytes(await within(ch.read(), 'a datagram through read()'), pattern(2, 9), 'the datagram through read()')
  })

  it.each<[string, number, number[], number[]]>([
    // [what, window, datagram sizes pushed, sizes kept]
    ['a datagram past the window', datagramCost(6) + datagramCost(4), [6, 5, 4], [6, 4]],
    ['a datagram of the whole window after others', datagramCost(10), [1, 10], [1]],
    ['empty datagrams past the window', 2 * datagramCost(0), [0, 0, 0], [0, 0]],
    ['a datagram larger than the window', datagramCost(10), [11, 10], [10]],
    ['a datagram whose bytes fit but not with the overhead', 100, [40, 100 - DATAGRAM_OVERHEAD_BYTES], [100 - DATAGRAM_OVERHEAD_BYTES]],
    ['a 1-byte datagram one byte past the window, then an empty one that fits', datagramCost(10) + datagramCost(0), [10, 1, 0], [10, 0]]
  ])('drops and counts %s instead of failing', async (_, window, sizes, kept) => {
    const { ch, link } = channel(UNRELIABLE, window, 1000)
    for (const n of sizes) ch.push({ data: pattern(n) })
    expect(ch.closed).toBe(false)
    expect(link.of(FRAME.RESET)).toEqual([])
    expect(ch.stats().droppedDatagrams).toBe(sizes.length - kept.length)
    expect(link.counts.dropped).toBe(sizes.length - kept.length)
    expect(ch.stats().droppedBy).toEqual({ credit: 0, queue: 0, window: sizes.length - kept.length })
    for (const n of kept) expectBytes((await within(ch.receive(), `a ${n}-byte datagram`))?.data, pattern(n), `the ${n}-byte datagram`)
    expect(ch.stats().bufferedBytes).toBe(0)
  })
})

describe('Channel: ends', () => {
  it('closeWrite() sends FIN only after pending writes', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 10)
    const write = track(ch.write(pattern(25)))
    const close = track(ch.closeWrite())
    await settle()
    expect(link.frames.map((f) => f.type)).toEqual([FRAME.DATA])
    expect(close.state).toBe('pending')
    ch.addCredit(10)
    await settle()
    expect(link.frames.map((f) => f.type)).toEqual([FRAME.DATA, FRAME.DATA])
    ch.addCredit(10)
    await settle()
    expect([write.state, close.state]).toEqual(['resolved', 'resolved'])
    expect(link.frames.map((f) => f.type)).toEqual([FRAME.DATA, FRAME.DATA, FRAME.DATA, FRAME.FIN])
    expect(link.frames.at(-1)).toMatchObject({ id: ID, payload: new Uint8Array(0) })
    const later = await ch.write(pattern(1)).then(() => undefined, (err: unknown) => err)
    expectCode(later, 'E_STREAM_CLOSED')
    await within(ch.closeWrite(), 'a second closeWrite()')
    expect(link.of(FRAME.FIN)).toHaveLength(1)
  })

  it('remoteFin() ends reads after the queued data', async () => {
    const { ch } = channel(RELIABLE, 1000, 1000)
    ch.push({ data: pattern(3, 1) })
    ch.push({ data: pattern(4, 2) })
    ch.remoteFin()
    expectBytes(await within(ch.read(), 'the first chunk'), pattern(3, 1), 'the first chunk')
    expectBytes(await within(ch.read(), 'the second chunk'), pattern(4, 2), 'the second chunk')
    expect(await within(ch.read(), 'the end')).toBeNull()
    expect(await within(ch.read(), 'the end again')).toBeNull()
  })

  it('fail() after remoteFin() keeps the complete data readable; abort() here discards it', async () => {
    const kept = channel(RELIABLE, 1000, 1000).ch
    kept.push({ data: pattern(3, 1) })
    kept.remoteFin()
    kept.fail(new StarsockError('E_PEER_GONE'))
    expectBytes(await within(kept.read(), 'the data'), pattern(3, 1), 'the data kept after the FIN')
    expect(await within(kept.read(), 'the end')).toBeNull()
    const dropped = channel(RELIABLE, 1000, 1000).ch
    dropped.push({ data: pattern(3, 1) })
    dropped.remoteFin()
    dropped.abort(new StarsockError('E_STREAM_ABORTED', 'no more'))
    expectCode(await dropped.read().then(() => undefined, (err: unknown) => err), 'E_STREAM_ABORTED')
  })

  it('remoteFin() ends a read that is waiting', async () => {
    const { ch } = channel(RELIABLE, 1000, 1000)
    const read = track(ch.read())
    await settle()
    expect(read.state).toBe('pending')
    ch.remoteFin()
    await settle()
    expect(read).toEqual({ state: 'resolved', value: null })
  })

  it('iterates every chunk until the FIN', async () => {
    const { ch } = channel(RELIABLE, 1000, 1000)
    const chunks: Uint8Array[] = []
    const done = (async () => { for await (const chunk of ch) chunks.push(chunk) })()
    ch.push({ data: pattern(2, 1) })
    await settle()
    ch.push({ data: pattern(3, 2) })
    ch.remoteFin()
    await within(done, 'the end of the iteration')
    expect(chunks.map(hex)).toEqual([pattern(2, 1), pattern(3, 2)].map(hex))
  })

  it('fail() rejects pending reads and writes with its error', async () => {
    const { ch: reader } = channel(RELIABLE, 1000, 0)
    const read = track(reader.read())
    const write = track(reader.write(pattern(5)))
    await settle()
    expect([read.state, write.state]).toEqual(['pending', 'pending'])
    const error = new StarsockError('E_PEER_GONE', 'gone')
    reader.fail(error)
    await settle()
    expect(read).toEqual({ state: 'rejected', error })
    expect(write).toEqual({ state: 'rejected', error })
    expect(read.error).toBe(error)
    expect(write.error).toBe(error)
  })

  it('fail() rejects later reads and writes, drops queued data and datagram sends', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 1000)
    ch.push({ data: pattern(10) })
    const error = new StarsockError('E_KILLED', 'killed')
    ch.fail(error)
    await expect(ch.read()).rejects.toBe(error)
    await expect(ch.read()).rejects.toBe(error)
    await expect(ch.write(pattern(1))).rejects.toBe(error)
    expect(ch.stats().bufferedBytes).toBe(0)
    expect(link.dataSizes()).toEqual([])
    expect(link.of(FRAME.RESET)).toEqual([]) // fail() is the other side's RESET: no answer

    const { ch: datagrams, link: dlink } = channel(UNRELIABLE, 1000, 1000)
    datagrams.fail(error)
    expect(datagrams.send(pattern(1))).toBe(false)
    await expect(datagrams.receive()).rejects.toBe(error)
    expect(dlink.of(FRAME.DATAGRAM)).toEqual([])
  })

  type Step = 'closeWrite' | 'remoteFin' | 'abort' | 'fail' | 'overrun'
  /** Take one step towards the end of `ch` (a window of 1000 bytes). */
  async function step (ch: Channel, what: Step): Promise<void> {
    if (what === 'closeWrite') await within(ch.closeWrite(), 'closeWrite()')
    else if (what === 'remoteFin') ch.remoteFin()
    else if (what === 'abort') ch.abort()
    else if (what === 'fail') ch.fail(new StarsockError('E_PEER_GONE'))
    else ch.push({ data: pattern(1001) })
  }

  it.each<[string, Step[], boolean]>([
    ['nothing', [], false],
    ['only closeWrite', ['closeWrite'], false],
    ['only remoteFin', ['remoteFin'], false],
    ['closeWrite then remoteFin', ['closeWrite', 'remoteFin'], true],
    ['remoteFin then closeWrite', ['remoteFin', 'closeWrite'], true],
    ['abort', ['abort'], true],
    ['fail', ['fail'], true],
    ['closeWrite then fail', ['closeWrite', 'fail'], true],
    ['remoteFin then abort', ['remoteFin', 'abort'], true],
    ['both ends, then abort and fail', ['closeWrite', 'remoteFin', 'abort', 'fail'], true]
  ])('whenClosed after %s: %s', async (_, steps, closes) => {
    const { ch, link } = channel(RELIABLE, 1000, 1000)
    const closed = track(ch.whenClosed)
    for (const what of steps) await step(ch, what)
    await settle()
    expect(closed.state).toBe(closes ? 'resolved' : 'pending')
    expect(ch.closed).toBe(closes)
    expect(link.closed).toEqual(closes ? [ch] : [])
    // Once finished, the (here ungrown) window goes back to the connection's budget, once.
    expect(link.releases).toEqual(closes ? [0] : [])
    expect(link.reserves).toEqual([])
  })

  it.each<[string, Step[], string | undefined]>([
    ['nothing', [], undefined],
    ['only closeWrite', ['closeWrite'], undefined],
    ['only remoteFin', ['remoteFin'], undefined],
    ['a clean close', ['closeWrite', 'remoteFin'], undefined],
    ['a clean close, then fail', ['closeWrite', 'remoteFin', 'fail'], undefined],
    ['a clean close, then abort', ['remoteFin', 'closeWrite', 'abort'], undefined],
    ['abort', ['abort'], 'E_STREAM_CLOSED'],
    ['fail', ['fail'], 'E_PEER_GONE'],
    ['a window overrun', ['overrun'], 'E_LIMIT_BUFFER'],
    ['closeWrite then abort', ['closeWrite', 'abort'], 'E_STREAM_CLOSED'],
    ['remoteFin then fail (the data stays readable)', ['remoteFin', 'fail'], 'E_PEER_GONE'],
    ['fail then abort (the first error stays)', ['fail', 'abort'], 'E_PEER_GONE'],
    ['abort then fail (the first error stays)', ['abort', 'fail'], 'E_STREAM_CLOSED']
  ])('error after %s', async (_, steps, code) => {
    const { ch } = channel(RELIABLE, 1000, 1000)
    for (const what of steps) await step(ch, what)
    if (code === undefined) expect(ch.error).toBeUndefined()
    else expectCode(ch.error, code)
  })

  it('error is the very error of fail() or abort(), and what reads and writes reject with', async () => {
    const gone = new StarsockError('E_PEER_GONE', 'gone')
    const { ch: failed } = channel(RELIABLE, 1000, 1000)
    failed.fail(gone)
    expect(failed.error).toBe(gone)
    await expect(failed.read()).rejects.toBe(gone)
    const killed = new StarsockError('E_KILLED', 'killed by A')
    const { ch: aborted } = channel(UNRELIABLE, 1000, 1000)
    aborted.abort(killed)
    expect(aborted.error).toBe(killed)
    await expect(aborted.receive()).rejects.toBe(killed)
    const { ch: overrun } = channel(RELIABLE, 1000, 1000)
    overrun.push({ data: pattern(1001) })
    expect(overrun.error?.message).toBe('The other side wrote past the channel window of 1000 bytes')
    await expect(overrun.read()).rejects.toBe(overrun.error)
  })

  it.each<[string, unknown, string, string]>([
    ['nothing', undefined, 'E_STREAM_CLOSED', 'Channel closed'],
    ['an Error', new Error('boom'), 'E_STREAM_ABORTED', 'boom'],
    ['a string', 'why not', 'E_STREAM_ABORTED', 'why not'],
    ['a StarsockError', new StarsockError('E_KILLED', 'killed by A'), 'E_KILLED', 'killed by A']
  ])('abort() with %s sends RESET { code, message } and fails both ways', async (_, reason, code, message) => {
    const { ch, link } = channel(RELIABLE, 1000, 1000)
    const read = track(ch.read())
    ch.abort(reason)
    await settle()
    const resets = link.of(FRAME.RESET)
    expect(resets).toHaveLength(1)
    expect(resets[0]?.id).toBe(ID)
    expect(decodeJson(resets[0] as Frame)).toEqual({ code, message })
    expect(read.state).toBe('rejected')
    expectCode(read.error, code)
    expect((read.error as StarsockError).message).toBe(message)
    ch.abort('again')
    expect(link.of(FRAME.RESET)).toHaveLength(1)
  })
})

describe('Channel: window auto-tuning', () => {
  /** A number pushes that many bytes; `read` reads one chunk. */
  type Step = number | 'read'
  async function run (ch: Channel, steps: readonly Step[]): Promise<void> {
    for (const step of steps) {
      if (step === 'read') expect(await within(ch.read(), 'a chunk')).not.toBeNull()
      else ch.push({ data: pattern(step) })
    }
  }

  const KEEP_UP: Step[] = [500, 'read', 1000, 'read', 2000, 'read']
  it.each<[string, number, number | undefined, number, Step[], number[], Array<[number, boolean]>, number]>([
    // [what, window, max window, budget, steps, WINDOW credits, reserve calls, window after]
    ['a reader that keeps up: the window doubles up to the max', 1000, 4000, Infinity, KEEP_UP,
      [500 + 1000, 1000 + 2000, 2000], [[1000, true], [2000, true]], 4000],
    ['a reader that keeps up, max short of a doubling', 1000, 3999, Infinity, KEEP_UP,
      [1500, 1000, 2000], [[1000, true]], 2000],
    ['a reader that keeps up, max just under double the window', 1000, 1999, Infinity, [500, 'read', 500, 'read'],
      [500, 500], [], 1000],
    ['a reader that keeps up, no max (the default)', 1000, undefined, Infinity, [500, 'read', 500, 'read'],
      [500, 500], [], 1000],
    ['a reader that keeps up, a budget one byte short', 1000, 4000, 999, [500, 'read', 500, 'read'],
      [500, 500], [[1000, false], [1000, false]], 1000],
    ['a reader that keeps up, a budget spent after one doubling', 1000, 8000, 1000, [500, 'read', 1000, 'read', 1000, 'read'],
      [1500, 1000, 1000], [[1000, true], [2000, false], [2000, false]], 2000],
    // Never empty between two grants: more arrives before it has read what it held.
    ['a slow reader (bytes unread at every read up to each grant)', 1000, 4000, Infinity, [500, 100, 'read', 400, 'read', 10, 'read', 'read'],
      [500, 500], [], 1000],
    ['a reader that caught up between grants (bytes unread at the grant): the window doubles', 1000, 4000, Infinity, [300, 'read', 400, 100, 'read', 'read'],
      [700 + 1000], [[1000, true]], 2000],
    ['a slow reader whose last chunk is one byte', 1000, 4000, Infinity, [999, 1, 'read', 'read'],
      [999], [], 1000],
    ['a slow reader that catches up', 1000, 4000, Infinity, [500, 100, 'read', 'read', 500, 'read'],
      [500, 100 + 500 + 1000], [[1000, true]], 2000]
  ])('%s', async (_, window, max, budget, steps, grants, reserves, after) => {
    const { ch, link } = channel(RELIABLE, window, 1000, max, budget)
    await run(ch, steps)
    expect(link.windows()).toEqual(grants)
    expect(link.of(FRAME.WINDOW).every((f) => f.id === ID)).toBe(true)
    expect(link.reserves).toEqual(reserves)
    expect(link.releases).toEqual([])
    expect(ch.stats().bufferedBytes).toBe(0)
    // The other side may now have up to `after` bytes in flight: all of them are taken...
    ch.push({ data: pattern(after) })
    expect(ch.closed).toBe(false)
    expect(link.of(FRAME.RESET)).toEqual([])
    expect(ch.stats().bufferedBytes).toBe(after)
    // ...and a byte more is still an overrun.
    ch.push({ data: pattern(1) })
    expect(ch.closed).toBe(true)
    const resets = link.of(FRAME.RESET)
    expect(resets).toHaveLength(1)
    expect(decodeJson(resets[0] as Frame)).toEqual({ code: 'E_LIMIT_BUFFER', message: `The other side wrote past the channel window of ${after} bytes` })
    // Finishing gives back all the growth, once.
    const grown = reserves.reduce((n, [bytes, ok]) => ok ? n + bytes : n, 0)
    expect(grown).toBe(after - window)
    expect(link.releases).toEqual([grown])
    expect(link.budget).toBe(budget)
  })

  it('a datagram channel whose reader keeps up grows its window, up to MAX_DATAGRAM_WINDOW_BYTES only', async () => {
    const { ch, link } = channel(UNRELIABLE, 256 * 1024, 1000, 4 * 1024 * 1024)
    // Read each datagram as it comes, as a tunnel does: 16 KiB minus the overhead each.
    const size = 16 * 1024 - DATAGRAM_OVERHEAD_BYTES
    for (let i = 0; i < 200; i++) {
      ch.push({ data: pattern(size) })
      await within(ch.receive(), 'a datagram')
    }
    expect(link.reserves).toEqual([[256 * 1024, true], [512 * 1024, true]])
    expect(ch.stats().droppedDatagrams).toBe(0)
    // The other side may have the whole grown window in flight: all of it is taken, a datagram more is dropped.
    for (let i = 0; i < MAX_DATAGRAM_WINDOW_BYTES / (16 * 1024); i++) ch.push({ data: pattern(size) })
    expect(ch.stats().droppedDatagrams).toBe(0)
    ch.push({ data: pattern(0) })
    expect(ch.stats().droppedBy).toEqual({ credit: 0, queue: 0, window: 1 })
    ch.fail(new StarsockError('E_PEER_GONE'))
    expect(link.releases).toEqual([768 * 1024])
  })

  it('a socket writer reading in batches grows its window once it caught up, though a batch was left at the grant', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 1000, 4000)
    // Messages of frames arrive; the writer takes two frames at a time (its write bound).
    for (let i = 0; i < 2; i++) ch.push({ data: pattern(125) })
    expect((await within(ch.readBatch(250), 'a batch'))?.length).toBe(2) // caught up: nothing unread
    for (let i = 0; i < 4; i++) ch.push({ data: pattern(125) })
    expect((await within(ch.readBatch(250), 'a batch'))?.length).toBe(2) // credit due, 250 bytes still unread
    expect(link.windows()).toEqual([500 + 1000])
    expect(link.reserves).toEqual([[1000, true]])
  })

  it('a socket writer that never catches up keeps its window', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 1000, 4000)
    for (let i = 0; i < 8; i++) ch.push({ data: pattern(125) })
    for (let round = 0; round < 6; round++) {
      expect((await within(ch.readBatch(250), 'a batch'))?.length).toBe(2)
      for (let i = 0; i < 2; i++) ch.push({ data: pattern(125) }) // the sender refills what was read
    }
    expect(link.windows()).toEqual([500, 500, 500])
    expect(link.reserves).toEqual([])
    expect(ch.stats().bufferedBytes).toBe(1000)
  })

  it('reads grown chunks in full: the bytes are not mixed up', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 1000, 8000)
    const chunks = [pattern(500, 1), pattern(1000, 2), pattern(2000, 3), pattern(4000, 4)]
    for (const chunk of chunks) {
      ch.push({ data: chunk })
      expect(hex(await within(ch.read(), 'a chunk') as Uint8Array)).toBe(hex(chunk))
    }
    expect(link.windows()).toEqual([1500, 3000, 6000, 4000])
    expect(link.reserves).toEqual([[1000, true], [2000, true], [4000, true]])
    expect(ch.stats()).toEqual({ sentBytes: 0, receivedBytes: 7500, bufferedBytes: 0, droppedDatagrams: 0, droppedBy: { credit: 0, queue: 0, window: 0 } })
  })

  it.each<[string, (ch: Channel) => Promise<void> | void]>([
    ['a clean close', async (ch) => { ch.remoteFin(); await within(ch.closeWrite(), 'closeWrite()') }],
    ['abort', (ch) => { ch.abort() }],
    ['fail', (ch) => { ch.fail(new StarsockError('E_PEER_GONE')) }]
  ])('gives the growth back once on %s', async (_, end) => {
    const { ch, link } = channel(RELIABLE, 1000, 1000, 4000, 5000)
    await run(ch, [500, 'read', 1000, 'read'])
    expect(link.budget).toBe(5000 - 1000 - 2000)
    expect(link.releases).toEqual([])
    await end(ch)
    expect(ch.closed).toBe(true)
    expect(link.releases).toEqual([3000])
    expect(link.budget).toBe(5000)
    ch.abort()
    ch.fail(new StarsockError('E_PEER_GONE'))
    ch.remoteFin()
    expect(link.releases).toEqual([3000])
    expect(link.closed).toEqual([ch])
  })

  it('grants nothing, and grows nothing, after the other side\'s FIN', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 1000, 4000)
    ch.push({ data: pattern(600) })
    ch.remoteFin()
    expectBytes(await within(ch.read(), 'the chunk'), pattern(600), 'the 600-byte chunk')
    expect(await within(ch.read(), 'the end')).toBeNull()
    expect(link.windows()).toEqual([])
    expect(link.reserves).toEqual([])
  })
})

describe('Channel: readBatch', () => {
  // [what, chunk sizes pushed, maxBytes, chunks per batch]
  it.each<[string, number[], number, number[]]>([
    ['one chunk', [100], 1000, [1]],
    ['chunks that fit together', [100, 200, 300], 1000, [3]],
    ['chunks exactly at the bound', [500, 500], 1000, [2]],
    ['one byte over the bound starts the next batch', [500, 501], 1000, [1, 1]],
    ['a first chunk over the bound goes alone', [1500, 10, 10], 1000, [1, 2]]
  ])('%s', async (_, sizes, maxBytes, perBatch) => {
    const { ch, link } = channel(RELIABLE, 4000, 1000)
    for (const [i, n] of sizes.entries()) ch.push({ data: pattern(n, i) })
    const batches: Uint8Array[][] = []
    for (const _ of perBatch) batches.push(await within(ch.readBatch(maxBytes), 'a batch') ?? [])
    expect(batches.map((b) => b.length)).toEqual(perBatch)
    // Every chunk as it came, in order.
    expect(hex(concat(batches.flat()))).toBe(hex(concat(sizes.map((n, i) => pattern(n, i)))))
    expect(ch.stats().bufferedBytes).toBe(0)
    // Credit for all that was read, granted as for reads one by one (half the window at a time).
    const read = sizes.reduce((a, n) => a + n, 0)
    expect(link.windows().reduce((a, n) => a + n, 0)).toBe(read >= 2000 ? read : 0)
  })

  it('grants credit once for a batch, not once per chunk', async () => {
    const { ch, link } = channel(RELIABLE, 1000, 1000)
    for (let i = 0; i < 10; i++) ch.push({ data: pattern(100, i) })
    expect(await within(ch.readBatch(1000), 'the batch')).toHaveLength(10)
    expect(link.windows()).toEqual([1000])
  })

  it('waits for a chunk, gives null at the FIN, rejects on a reset', async () => {
    const { ch } = channel(RELIABLE, 1000, 1000)
    const waiting = track(ch.readBatch(1000))
    await settle()
    expect(waiting.state).toBe('pending')
    ch.push({ data: pattern(5) })
    await settle()
    expect(waiting.value?.map((c) => c.byteLength)).toEqual([5])
    ch.remoteFin()
    expect(await within(ch.readBatch(1000), 'the end')).toBeNull()
    const reset = channel(RELIABLE, 1000, 1000).ch
    const pending = track(reset.readBatch(1000))
    reset.fail(new StarsockError('E_STREAM_ABORTED', 'reset'))
    await settle()
    expect(pending.state).toBe('rejected')
    expectCode(pending.error, 'E_STREAM_ABORTED')
  })

  it('is for reliable channels only', async () => {
    await expect(channel(UNRELIABLE, 1000, 1000).ch.readBatch(1000)).rejects.toThrow(TypeError)
  })
})
