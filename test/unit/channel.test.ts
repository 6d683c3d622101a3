import { describe, expect, it } from 'vitest'
import { Channel, datagramCost, type ChannelLink } from '../../client/mux/channel.ts'
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

const ID = 7
const RELIABLE: OpenHeader = { type: 'sock', sock: 'connect', reliable: true }
const UNRELIABLE: OpenHeader = { type: 'sock', sock: 'connect', reliable: false }

/** A link that decodes and records every frame a channel sends, with a switchable output bound. */
class FakeLink implements ChannelLink {
  readonly frames: Frame[] = []
  readonly closed: Channel[] = []
  readonly counts = { in: 0, out: 0, dropped: 0 }
  isFull = false
  private readonly decoder = new FrameDecoder()
  private roomWaiters: Array<() => void> = []

  send = (bytes: Uint8Array): void => {
    const frames = this.decoder.push(bytes)
    // A channel hands the link whole frames, one at a time.
    expect(frames).toHaveLength(1)
    expect(this.decoder.bufferedBytes).toBe(0)
    this.frames.push(...frames)
  }

  room = async (): Promise<void> => { await new Promise<void>((resolve) => this.roomWaiters.push(resolve)) }
  full = (): boolean => this.isFull
  done = (channel: Channel): void => { this.closed.push(channel) }
  count = (what: 'in' | 'out' | 'dropped', n: number): void => { this.counts[what] += n }

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

function channel (header: OpenHeader, windowBytes: number, sendWindowBytes: number): { ch: Channel, link: FakeLink } {
  const link = new FakeLink()
  return { ch: new Channel(ID, header, true, 'peer-b', link, windowBytes, sendWindowBytes), link }
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
    expect(concat(link.of(FRAME.DATA).map((f) => f.payload))).toEqual(concat([pattern(6, 0), pattern(3, 100)]))
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
      expect(await within(ch.read(), `a ${n}-byte chunk`)).toEqual(pattern(n))
    }
    expect(link.windows()).toEqual(grants)
    expect(link.of(FRAME.WINDOW).every((f) => f.id === ID)).toBe(true)
  })

  it('grants nothing for bytes that are buffered but not read', () => {
    const { ch, link } = channel(RELIABLE, 1000, 1000)
    ch.push({ data: pattern(900) })
    expect(link.windows()).toEqual([])
    expect(ch.stats()).toEqual({ sentBytes: 0, receivedBytes: 900, bufferedBytes: 900, droppedDatagrams: 0 })
  })

  it('grants a datagram channel at least one byte per datagram read', async () => {
    const { ch, link } = channel(UNRELIABLE, 4, 1000)
    for (let i = 0; i < 4; i++) ch.push({ data: new Uint8Array(0) })
    expect(ch.stats().bufferedBytes).toBe(4 * datagramCost(0))
    await within(ch.receive(), 'the first empty datagram')
    expect(link.windows()).toEqual([])
    await within(ch.receive(), 'the second empty datagram')
    expect(link.windows()).toEqual([2])
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
    const { ch, link } = channel(UNRELIABLE, 1000, 10)
    const steps: Array<[string, number, boolean, boolean]> = [
      // [what, datagram bytes, link full, sent]
      ['4 bytes of 10 credit', 4, false, true],
      ['7 bytes with 6 credit left', 7, false, false],
      ['1 byte while the link is full', 1, true, false],
      ['6 bytes, the last credit', 6, false, true],
      ['an empty datagram with no credit left', 0, false, false]
    ]
    let dropped = 0
    for (const [what, n, full, sent] of steps) {
      link.isFull = full
      expect(ch.send(pattern(n)), what).toBe(sent)
      if (!sent) dropped++
      expect(ch.stats().droppedDatagrams, what).toBe(dropped)
      expect(link.counts.dropped, what).toBe(dropped)
    }
    ch.addCredit(1)
    expect(ch.send(new Uint8Array(0)), 'an empty datagram with 1 credit').toBe(true)
    expect(ch.send(new Uint8Array(0)), 'an empty datagram with the credit used').toBe(false)
    expect(link.of(FRAME.DATAGRAM).map((f) => decodeDatagram(f).data.byteLength)).toEqual([4, 6, 0])
    expect(ch.stats().sentBytes).toBe(10)
    expect(link.counts.out).toBe(10)
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
    expect(frames.map(decodeDatagram)).toEqual(sent.map(([data, addr]) => ({ data, addr })))
  })

  it('receive() keeps datagram boundaries and addresses', async () => {
    const { ch } = channel(UNRELIABLE, 1000, 1000)
    const pushed = [
      { data: pattern(3, 1), addr: { ip: '10.0.0.1', port: 1 } },
      { data: new Uint8Array(0), addr: { ip: '10.0.0.2', port: 2 } },
      { data: pattern(5, 2) }
    ]
    for (const d of pushed) ch.push(d)
    for (const d of pushed) expect(await within(ch.receive(), 'a datagram')).toEqual(d)
    ch.push({ data: pattern(2, 9) })
    expect(await within(ch.read(), 'a datagram through read()')).toEqual(pattern(2, 9))
  })

  it.each<[string, number, number[], number[]]>([
    // [what, window, datagram sizes pushed, sizes kept]
    ['a datagram past the window', 10, [6, 5, 4], [6, 4]],
    ['a datagram of the whole window after others', 10, [1, 10], [1]],
    ['empty datagrams past the window', 2, [0, 0, 0], [0, 0]],
    ['a datagram larger than the window', 10, [11, 10], [10]]
  ])('drops and counts %s instead of failing', async (_, window, sizes, kept) => {
    const { ch, link } = channel(UNRELIABLE, window, 1000)
    for (const n of sizes) ch.push({ data: pattern(n) })
    expect(ch.closed).toBe(false)
    expect(link.of(FRAME.RESET)).toEqual([])
    expect(ch.stats().droppedDatagrams).toBe(sizes.length - kept.length)
    expect(link.counts.dropped).toBe(sizes.length - kept.length)
    for (const n of kept) expect((await within(ch.receive(), `a ${n}-byte datagram`))?.data).toEqual(pattern(n))
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
    expect(await within(ch.read(), 'the first chunk')).toEqual(pattern(3, 1))
    expect(await within(ch.read(), 'the second chunk')).toEqual(pattern(4, 2))
    expect(await within(ch.read(), 'the end')).toBeNull()
    expect(await within(ch.read(), 'the end again')).toBeNull()
  })

  it('fail() after remoteFin() keeps the complete data readable; abort() here discards it', async () => {
    const kept = channel(RELIABLE, 1000, 1000).ch
    kept.push({ data: pattern(3, 1) })
    kept.remoteFin()
    kept.fail(new StarsockError('E_PEER_GONE'))
    expect(await within(kept.read(), 'the data')).toEqual(pattern(3, 1))
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
    expect(chunks).toEqual([pattern(2, 1), pattern(3, 2)])
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

  type Step = 'closeWrite' | 'remoteFin' | 'abort' | 'fail'
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
    for (const step of steps) {
      if (step === 'closeWrite') await within(ch.closeWrite(), 'closeWrite()')
      else if (step === 'remoteFin') ch.remoteFin()
      else if (step === 'abort') ch.abort()
      else ch.fail(new StarsockError('E_PEER_GONE'))
    }
    await settle()
    expect(closed.state).toBe(closes ? 'resolved' : 'pending')
    expect(ch.closed).toBe(closes)
    expect(link.closed).toEqual(closes ? [ch] : [])
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
