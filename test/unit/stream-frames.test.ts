/** Streams with raw frames, without a network: what the sender hands the transport, and the table's lanes. */
import { describe, expect, it } from 'vitest'
import { SendStream, STREAM_HEADROOM_BYTES, type StreamTransport } from '../../client/stream.ts'
import { StreamTable } from '../../client/stream-table.ts'
import { StarsockError } from '../../shared/errors.ts'
import { streamEvent } from '../../shared/events.ts'
import { FRAME_HEADER_BYTES, frameLane, writeFrameHeader } from '../../shared/raw-frame.ts'

/** A transport recording events and frames (`frames`: the parts of every frame, in order; `calls`: each frame's parts), always with room. */
function transport (): { t: StreamTransport, events: unknown[][], frames: Uint8Array[], calls: Uint8Array[][] } {
  const events: unknown[][] = []
  const frames: Uint8Array[] = []
  const calls: Uint8Array[][] = []
  const t: StreamTransport = {
    emit: (event, ...args) => { events.push([event, ...args]) },
    frame: (parts) => { calls.push([...parts]); frames.push(...parts); return true },
    room: async () => {},
    sent: () => {}
  }
  return { t, events, frames, calls }
}

describe('SendStream with a lane', () => {
  it('fails the stream when the link cannot take a frame, rather than count bytes never sent', async () => {
    const { t } = transport()
    t.frame = () => false
    let done = 0
    const tx = new SendStream(t, 's', 4, () => { done++ })
    tx.onAccept(1000, 7)
    await expect(tx.write(Uint8Array.of(1, 2, 3))).rejects.toMatchObject({ code: 'E_DISCONNECTED' })
    expect(tx.sentBytes).toBe(0)
    expect(done).toBe(1)
    await expect(tx.write(Uint8Array.of(4))).rejects.toMatchObject({ code: 'E_DISCONNECTED' })
  })

  it('sends write as framed copies on the lane, an owned buffer with room as itself, one without as events', async () => {
    const { t, events, frames } = transport()
    const tx = new SendStream(t, 's', 4, () => {})
    tx.onAccept(1000, 0x01020304)
    const data = Uint8Array.of(1, 2, 3, 4, 5, 6)
    await tx.write(data)
    expect(frames.map((f) => Array.from(f))).toEqual([[0, 1, 2, 3, 4, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6]])
    expect(frames.every((f) => f.buffer !== data.buffer)).toBe(true)

    frames.length = 0
    const roomy = Uint8Array.of(9, 9, 9, 9, 9, 9, 7, 8)
    await tx.writeOwned(roomy, undefined, 6)
    expect(frames).toHaveLength(1)
    expect(frames[0]?.buffer).toBe(roomy.buffer)
    expect(Array.from(frames[0] as Uint8Array)).toEqual([0, 1, 2, 3, 4, 7, 8])
    expect(roomy[0]).toBe(9) // only the 5 bytes before the payload were written

    frames.length = 0
    await tx.writeOwned(Uint8Array.of(0, 0, 0, 0, 1, 2), undefined, STREAM_HEADROOM_BYTES - 1) // too little room
    expect(frames).toEqual([])
    expect(events.map(([e]) => e)).toEqual([streamEvent('queue', 's')])
    await tx.end()
    expect(events.at(-1)).toEqual([streamEvent('error', 's'), true])
  })

  it('sends events when the accept carries no lane, or a bad one', async () => {
    for (const lane of [undefined, 0, -1, 2 ** 32, 1.5, '3']) {
      const { t, events, frames } = transport()
      const tx = new SendStream(t, 's', 64, () => {})
      tx.onAccept(1000, lane)
      await tx.write(Uint8Array.of(1))
      expect(frames, `lane ${String(lane)}`).toEqual([])
      expect(events).toHaveLength(1)
    }
  })
})

describe('SendStream.writeParts', () => {
  const bytes = (parts: Uint8Array[]): number[] => parts.flatMap((p) => Array.from(p))

  it('on a lane, hands the parts over as they are, one frame, its header in the room of the first part', async () => {
    const { t, calls, events } = transport()
    const tx = new SendStream(t, 's', 100, () => {})
    tx.onAccept(1000, 0x01020304)
    const first = Uint8Array.of(9, 9, 9, 9, 9, 9, 1, 2)
    const second = Uint8Array.of(3, 4, 5)
    const third = Uint8Array.of(6)
    await tx.writeParts([first, second, third], undefined, 6)
    expect(calls).toHaveLength(1)
    const [head, ...rest] = calls[0] as Uint8Array[]
    expect(head?.buffer).toBe(first.buffer)
    expect(Array.from(head as Uint8Array)).toEqual([0, 1, 2, 3, 4, 1, 2])
    expect(rest[0]).toBe(second) // the very buffers: no copy
    expect(rest[1]).toBe(third)
    expect(first[0]).toBe(9) // only the 5 bytes before the payload were written
    expect(events).toEqual([])
    expect(tx.sentBytes).toBe(6)
    expect(tx.creditBytes).toBe(994)
  })

  it('waits for credit for the whole message, then sends it whole', async () => {
    const { t, calls } = transport()
    const tx = new SendStream(t, 's', 100, () => {})
    tx.onAccept(200, 7)
    await tx.write(new Uint8Array(145)) // 55 of credit left
    calls.length = 0
    const writing = tx.writeParts([new Uint8Array(5 + 10), new Uint8Array(40), new Uint8Array(10)], undefined, 5)
    await new Promise((resolve) => setTimeout(resolve, 10))
    expect(calls).toEqual([]) // 60 bytes, 55 of credit: it waits rather than cut the message
    tx.onCredit(5)
    await writing
    expect(calls).toHaveLength(1)
    expect(calls[0]).toHaveLength(3)
    expect(tx.creditBytes).toBe(0)
  })

  it('joins the parts where they cannot go whole as one frame, and the bytes still arrive in order', async () => {
    const message = (): Uint8Array[] => [Uint8Array.of(0, 0, 0, 0, 0, 1, 2), Uint8Array.of(3, 4, 5, 6), Uint8Array.of(7, 8)]
    // Over the chunk size: split as writeOwned splits (the first chunk in place, the rest as events).
    const chunked = transport()
    const small = new SendStream(chunked.t, 's', 4, () => {})
    small.onAccept(1000, 7)
    await small.writeParts(message(), undefined, 5)
    expect(chunked.calls).toHaveLength(1)
    expect(bytes(chunked.frames)).toEqual([0, 0, 0, 0, 7, 1, 2, 3, 4])
    expect(chunked.events.flatMap(([, chunk]) => Array.from(chunk as Uint8Array))).toEqual([5, 6, 7, 8])
    // Over half the window, or with no lane: joined, as writeOwned.
    for (const [window, lane] of [[10, 7], [1000, undefined]] as const) {
      const { t, calls, events } = transport()
      const tx = new SendStream(t, 's', 100, () => {})
      tx.onAccept(window, lane)
      const writing = tx.writeParts(message(), undefined, 5)
      tx.onCredit(100)
      await writing
      const sent = lane === undefined ? events.flatMap(([, chunk]) => Array.from(chunk as Uint8Array)) : bytes(calls.flat()).slice(5)
      expect(sent, `window ${window}, lane ${String(lane)}`).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
      expect(calls.every((c) => c.length === 1)).toBe(true)
    }
  })

  it('rejects what is not a message of parts, and fails the stream when the link cannot take the frame', async () => {
    const { t } = transport()
    const tx = new SendStream(t, 's', 100, () => {})
    tx.onAccept(1000, 7)
    await expect(tx.writeParts([])).rejects.toThrow(TypeError)
    await expect(tx.writeParts([Uint8Array.of(1), 'x' as unknown as Uint8Array])).rejects.toThrow(TypeError)
    await expect(tx.writeParts([Uint8Array.of(1, 2)], undefined, 3)).rejects.toThrow(RangeError)
    t.frame = () => false
    await expect(tx.writeParts([new Uint8Array(6), Uint8Array.of(1)], undefined, 5)).rejects.toMatchObject({ code: 'E_DISCONNECTED' })
    expect(tx.sentBytes).toBe(0)
    await expect(tx.writeParts([new Uint8Array(6), Uint8Array.of(1)], undefined, 5)).rejects.toMatchObject({ code: 'E_DISCONNECTED' })
  })
})

describe('StreamTable lanes', () => {
  it('gives each receiving stream a new lane in its accept when the server does frames, and routes frames by lane', async () => {
    const { t, events } = transport()
    let raw = true
    const table = new StreamTable(t, { windowBytes: 1000, chunkBytes: 100, receiveLimitBytes: 10_000 }, () => undefined, () => raw)
    const a = table.openReceive('a')
    const b = table.openReceive('b')
    raw = false
    table.openReceive('c')
    expect(events.map((e) => e.slice(2))).toEqual([[1], [2], []])
    const frame = (lane: number, ...bytes: number[]): Uint8Array => {
      const f = new Uint8Array(FRAME_HEADER_BYTES + bytes.length)
      writeFrameHeader(f, 0, lane)
      f.set(bytes, FRAME_HEADER_BYTES)
      return f
    }
    table.dispatchFrame(frame(2, 5, 6))
    table.dispatchFrame(frame(1, 7).buffer) // a browser's ArrayBuffer
    table.dispatchFrame(frame(3, 1)) // no such lane
    table.dispatchFrame(Uint8Array.of(0, 0, 1)) // short
    expect(table.droppedFrames).toBe(2)
    expect(Array.from(await b.read() ?? [])).toEqual([5, 6])
    expect(Array.from(await a.read() ?? [])).toEqual([7])
    a.fail(new StarsockError('E_DISCONNECTED', 'gone'))
    table.dispatchFrame(frame(1, 8)) // its lane left with it
    expect(table.droppedFrames).toBe(3)
    expect(frameLane(frame(0xfffffffe))).toBe(0xfffffffe)
  })
})
