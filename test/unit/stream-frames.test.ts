/** Streams with raw frames, without a network: what the sender hands the transport, and the table's lanes. */
import { describe, expect, it } from 'vitest'
import { SendStream, STREAM_HEADROOM_BYTES, type StreamTransport } from '../../client/stream.ts'
import { StreamTable } from '../../client/stream-table.ts'
import { StarsockError } from '../../shared/errors.ts'
import { streamEvent } from '../../shared/events.ts'
import { FRAME_HEADER_BYTES, frameLane, writeFrameHeader } from '../../shared/raw-frame.ts'

/** A transport recording events and frames, always with room. */
function transport (): { t: StreamTransport, events: unknown[][], frames: Uint8Array[] } {
  const events: unknown[][] = []
  const frames: Uint8Array[] = []
  const t: StreamTransport = {
    emit: (event, ...args) => { events.push([event, ...args]) },
    frame: (f) => { frames.push(f); return true },
    room: async () => {},
    sent: () => {}
  }
  return { t, events, frames }
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
