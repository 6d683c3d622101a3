import { describe, expect, it } from 'vitest'
import { SendStream, type StreamTransport } from '../../client/stream.ts'

/** A transport that records every chunk a stream emits, always with room. */
function transport (): { t: StreamTransport, chunks: Uint8Array[] } {
  const chunks: Uint8Array[] = []
  const t: StreamTransport = {
    emit: (event, ...args) => { if (event.includes('.queue.')) chunks.push(args[0] as Uint8Array) },
    room: async () => {},
    sent: () => {}
  }
  return { t, chunks }
}

const tick = async (): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, 0)) }

describe('SendStream write and writeOwned', () => {
  it('write copies each chunk; writeOwned hands views of the caller\'s buffer to the transport', async () => {
    const { t, chunks } = transport()
    const tx = new SendStream(t, 's1', 4, () => {})
    tx.onAccept(1000)
    const data = Uint8Array.of(1, 2, 3, 4, 5, 6)
    await tx.write(data)
    await tx.writeOwned(data)
    expect(chunks.map((c) => Array.from(c))).toEqual([[1, 2, 3, 4], [5, 6], [1, 2, 3, 4], [5, 6]])
    expect(chunks.slice(0, 2).every((c) => c.buffer !== data.buffer)).toBe(true)
    expect(chunks.slice(2).every((c) => c.buffer === data.buffer)).toBe(true)
  })

  // [what, chunk size, window, credit left before the write, size, chunks sent before the grant, chunks in all]
  it.each<[string, number, number, number, number, number[], number[]]>([
    ['a whole message waits for credit for all of it', 64, 100, 30, 40, [], [40]],
    ['a message over half the window is split by credit, as write does', 64, 60, 30, 40, [30], [30, 10]],
    ['a message over the chunk size is split by it', 16, 1000, 1000, 40, [16, 16, 8], [16, 16, 8]]
  ])('%s', async (_, chunkBytes, window, credit, size, before, expected) => {
    const { t, chunks } = transport()
    const tx = new SendStream(t, 's2', chunkBytes, () => {})
    tx.onAccept(window)
    if (window > credit) {
      await tx.write(new Uint8Array(window - credit)) // spend the credit down to `credit`
      chunks.length = 0
    }
    const done = tx.writeOwned(new Uint8Array(size).fill(9))
    await tick()
    expect(chunks.map((c) => c.byteLength), 'chunks sent before the grant').toEqual(before)
    tx.onCredit(window - credit)
    await done
    expect(chunks.map((c) => c.byteLength)).toEqual(expected)
  })

  it('a legacy receiver (no window) takes a whole message at once', async () => {
    const { t, chunks } = transport()
    const tx = new SendStream(t, 's3', 64, () => {})
    tx.onAccept(undefined)
    await tx.writeOwned(new Uint8Array(50))
    expect(chunks.map((c) => c.byteLength)).toEqual([50])
  })
})
