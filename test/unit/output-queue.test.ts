import { describe, expect, it } from 'vitest'
import { OutputQueue, SMALL_PART_BYTES } from '../../client/mux/output-queue.ts'
import { encodeFrame, encodeFrameHeader, encodeJsonFrame, FRAME, FRAME_HEADER_BYTES, FrameDecoder } from '../../shared/mux-frame.ts'

function pattern (n: number, seed = 0): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (i * 7 + seed) & 0xff
  return out
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

/** Take every message out of `queue` at `limit`. */
function drain (queue: OutputQueue, limit: number): Uint8Array[] {
  const out: Uint8Array[] = []
  while (queue.length > 0) out.push(queue.take(limit))
  return out
}

describe('OutputQueue', () => {
  // [what, DATA payload sizes queued, limit, the frames in each message]
  it.each<[string, number[], number, number[]]>([
    ['one frame under the limit', [100], 1000, [1]],
    ['frames that fit together', [100, 200, 300], 1000, [3]],
    ['a frame that would cross the limit starts the next message', [500, 500, 10], 1000, [1, 2]],
    ['frames exactly at the limit', [491, 491], 1000, [2]],
    ['one byte over the limit', [491, 492], 1000, [1, 1]],
    ['a first frame over the limit goes alone', [2000, 10, 10], 1000, [1, 2]],
    ['64 KiB DATA frames under a 128 KiB chunk', [65536, 65536, 65536], 128 * 1024, [1, 1, 1]],
    ['empty frames (FIN)', [0, 0, 0], 20, [2, 1]]
  ])('%s', (_, sizes, limit, perMessage) => {
    const queue = new OutputQueue()
    const payloads = sizes.map((n, i) => pattern(n, i))
    for (const [i, p] of payloads.entries()) queue.push(encodeFrameHeader(FRAME.DATA, 2 * i + 1, p.byteLength), p)
    expect(queue.byteLength).toBe(sizes.reduce((a, n) => a + n + FRAME_HEADER_BYTES, 0))
    const messages = drain(queue, limit)
    expect(queue.byteLength).toBe(0)
    const decoder = new FrameDecoder()
    const counts = messages.map((m, i) => {
      if (perMessage[i] !== 1) expect(m.byteLength, `message ${i} size`).toBeLessThanOrEqual(limit)
      const frames = decoder.push(m)
      // Whole frames only: nothing of a frame is left for the next message.
      expect(decoder.bufferedBytes, `bytes of message ${i} left undecoded`).toBe(0)
      return frames.length
    })
    expect(counts).toEqual(perMessage)
    const reference = payloads.map((p, i) => hex(encodeFrame(FRAME.DATA, 2 * i + 1, p))).join('')
    expect(messages.map(hex).join('')).toBe(reference)
  })

  it('hands a lone control frame on as it is, and joins a header and its payload into a new buffer', () => {
    const queue = new OutputQueue()
    const control = encodeJsonFrame(FRAME.REPLY, 3, {})
    queue.push(control)
    expect(queue.take(1000)).toBe(control)
    const payload = pattern(50)
    queue.push(encodeFrameHeader(FRAME.DATA, 5, 50), payload)
    const message = queue.take(1000)
    expect(message.buffer).not.toBe(payload.buffer)
    expect(hex(message)).toBe(hex(encodeFrame(FRAME.DATA, 5, payload)))
  })

  it('gives an empty message when nothing waits', () => {
    expect(new OutputQueue().take(1000).byteLength).toBe(0)
  })
})

describe('OutputQueue: headroom', () => {
  it.each<[string, number[], number]>([
    ['a header and its payload', [50], 5],
    ['several frames', [100, 200, 300], 5],
    ['a lone control frame', [], 5],
    ['no headroom', [100, 200], 0]
  ])('leaves the first bytes free, the frames after them: %s', (_, sizes, headroom) => {
    const queue = new OutputQueue()
    const control = encodeJsonFrame(FRAME.REPLY, 3, {})
    if (sizes.length === 0) queue.push(control)
    const payloads = sizes.map((n, i) => pattern(n, i))
    for (const [i, p] of payloads.entries()) queue.push(encodeFrameHeader(FRAME.DATA, 2 * i + 1, p.byteLength), p)
    const message = queue.take(10_000, headroom)
    const frames = sizes.length === 0 ? hex(control) : payloads.map((p, i) => hex(encodeFrame(FRAME.DATA, 2 * i + 1, p))).join('')
    expect(message.byteLength).toBe(headroom + frames.length / 2)
    expect(hex(message.subarray(0, headroom))).toBe('00'.repeat(headroom))
    expect(hex(message.subarray(headroom))).toBe(frames)
    if (headroom > 0) expect(message).not.toBe(control)
  })

  it('counts the frames only against the limit', () => {
    const queue = new OutputQueue()
    for (const i of [0, 1]) queue.push(encodeFrameHeader(FRAME.DATA, 1, 491), pattern(491, i))
    expect(queue.take(1000, 64).byteLength).toBe(1064)
  })
})

describe('OutputQueue: takeParts', () => {
  // The same cases as `take`: the parts of each message, joined, are exactly the message `take` gives.
  it.each<[string, number[], number, number]>([
    ['frames that fit together', [100, 200, 300], 1000, 5],
    ['a frame that would cross the limit starts the next message', [500, 500, 10], 1000, 5],
    ['a first frame over the limit goes alone', [2000, 10, 10], 1000, 5],
    ['empty frames (FIN)', [0, 0, 0], 20, 5],
    ['no headroom', [100, 200], 1000, 0],
    ['large payloads between small frames', [70_000, 100, 0, 65_536, 4095, 4096, 30], 512 * 1024, 5],
    ['a first frame over the limit, large', [200_000, 10], 128 * 1024, 5]
  ])('gives the message take gives, as parts: %s', (_, sizes, limit, headroom) => {
    const fill = (): { queue: OutputQueue, payloads: Uint8Array[] } => {
      const queue = new OutputQueue()
      const payloads = sizes.map((n, i) => pattern(n, i))
      for (const [i, p] of payloads.entries()) queue.push(encodeFrameHeader(FRAME.DATA, 2 * i + 1, p.byteLength), p)
      return { queue, payloads }
    }
    const byTake = fill().queue
    const { queue, payloads } = fill()
    const given: Uint8Array[] = []
    while (queue.length > 0) {
      const before = queue.byteLength
      const parts = queue.takeParts(limit, headroom)
      const joined = Buffer.concat(parts)
      expect(before - queue.byteLength, 'bytes counted out').toBe(joined.byteLength - headroom)
      expect(hex(joined)).toBe(hex(byTake.take(limit, headroom)))
      expect(hex((parts[0] as Uint8Array).subarray(0, headroom))).toBe('00'.repeat(headroom))
      given.push(...parts)
    }
    expect(byTake.length).toBe(0)
    // No copies of large payloads: each is handed on as the very buffer queued; small ones are joined with the headers around them.
    for (const p of payloads) {
      if (p.byteLength >= SMALL_PART_BYTES) expect(given).toContain(p)
      else expect(given).not.toContain(p)
    }
  })

  it('joins the headers and small frames between large payloads: 5,000 datagram-sized frames are one part', () => {
    const queue = new OutputQueue()
    for (let i = 0; i < 5000; i++) queue.push(encodeFrameHeader(FRAME.DATA, 1, 100), pattern(100, i))
    const big = pattern(65_536, 9)
    queue.push(encodeFrameHeader(FRAME.DATA, 3, big.byteLength), big)
    queue.push(encodeFrameHeader(FRAME.DATA, 3, 0))
    const parts = queue.takeParts(1024 * 1024, 5)
    expect(parts).toHaveLength(3) // the room, 5,000 frames and a header; the large payload; the last header
    expect(parts[1]).toBe(big)
    expect(parts[0]?.byteLength).toBe(5 + 5000 * (FRAME_HEADER_BYTES + 100) + FRAME_HEADER_BYTES)
  })

  it('gives no parts when nothing waits', () => {
    expect(new OutputQueue().takeParts(1000, 5)).toEqual([])
  })
})
