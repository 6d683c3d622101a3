/**
 * The secure channel's framing over an in-memory pair of raw streams, where the test plays the
 * relay: chunk sizes, a relay that re-chunks or coalesces, the sealed end and what may follow it.
 */
import { describe, expect, it } from 'vitest'
import { StarsockError } from '../../shared/errors.ts'
import type { ByteReader, ByteWriter } from '../../client/connection.ts'
import { STREAM_HEADROOM_BYTES } from '../../client/connection.ts'
import { createIdentity } from '../../client/identity.ts'
import { nodeAead, nodeDh } from '../../client/noise/aead.node.ts'
import { MAX_PLAINTEXT_BYTES, secureInbound, secureOutbound, type SecureChannel } from '../../client/noise/secure-channel.ts'
import { testBytes } from '../helpers/server.ts'

/** One direction: what the writer hands over goes through `relay` into the reader's queue. */
class Pipe {
  readonly delivered: Uint8Array[] = []
  private readonly queue: Uint8Array[] = []
  private ended: true | StarsockError | undefined
  private wake: (() => void) | undefined
  relay: (chunk: Uint8Array) => Uint8Array[] = (c) => [c]

  constructor (readonly chunkBytes: number, readonly maxChunkBytes: number) {}

  deliver (chunk: Uint8Array): void {
    for (const c of this.relay(chunk)) { this.delivered.push(c); this.queue.push(c) }
    this.wake?.()
  }

  end (value: true | StarsockError): void { this.ended ??= value; this.wake?.() }

  reader (): ByteReader {
    return readerOf(this)
  }

  writer (): ByteWriter {
    return writerOf(this)
  }

  /** Every `writeParts` call's parts, when the writer takes parts (`gather`). */
  readonly partsWritten: Uint8Array[][] = []
  gather = false

  /** Chunks waiting to be read. */
  get waiting (): Uint8Array[] { return this.queue }
  get state (): true | StarsockError | undefined { return this.ended }
  set waker (fn: (() => void) | undefined) { this.wake = fn }
}

function readerOf (pipe: Pipe): ByteReader {
  return {
    get done () { return pipe.state !== undefined && pipe.waiting.length === 0 },
    receivedBytes: 0,
    get bufferedBytes () { return pipe.waiting.reduce((n, c) => n + c.byteLength, 0) },
    async read () {
      for (;;) {
        const next = pipe.waiting.shift()
        if (next !== undefined) return next
        const state = pipe.state
        if (state === true) return null
        if (state !== undefined) throw state
        await new Promise<void>((resolve) => { pipe.waker = resolve })
      }
    },
    abort: (_reason, local) => { pipe.waiting.length = 0; pipe.end(local) }
  }
}

function writerOf (pipe: Pipe): ByteWriter {
  let chunk = pipe.chunkBytes
  return {
    get chunkBytes () { return chunk },
    widenChunks: (extra) => { chunk = Math.min(chunk + extra, pipe.maxChunkBytes); return chunk },
    done: false,
    sentBytes: 0,
    creditBytes: undefined,
    write: async (data) => { pipe.deliver(data.slice()) },
    writeOwned: async (data, _signal, reserved = 0) => {
      const body = data.subarray(reserved)
      for (let at = 0; at < body.byteLength; at += chunk) pipe.deliver(body.subarray(at, at + chunk)) // a raw stream cuts at its chunk size
    },
    // A raw stream that takes parts (a SendStream) writes them as one message, joined on the wire.
    get writeParts () {
      if (!pipe.gather) return undefined
      return async (parts: readonly Uint8Array[], _signal?: AbortSignal, reserved = 0) => {
        pipe.partsWritten.push([...parts])
        const body = Buffer.concat(parts).subarray(reserved)
        expect(body.byteLength).toBeLessThanOrEqual(chunk) // whole messages within the raw chunk: never cut
        pipe.deliver(body)
      }
    },
    end: async () => { pipe.end(true) },
    error: (wire) => { pipe.end(new StarsockError('E_STREAM_ABORTED', wire)) }
  }
}

/** Two peers' secure channels over two pipes (`ab`: dialer to listener). */
async function pair (chunkBytes = 512 * 1024, maxChunkBytes = 700_000): Promise<{ a: SecureChannel, b: SecureChannel, ab: Pipe, ba: Pipe }> {
  const [ia, ib] = [await createIdentity(), await createIdentity()]
  const ab = new Pipe(chunkBytes, maxChunkBytes)
  const ba = new Pipe(chunkBytes, maxChunkBytes)
  const bReader = ab.reader()
  const outbound = secureOutbound(ba.reader(), ab.writer(), { privateKey: ia.privateKey, aead: nodeAead, dh: nodeDh, expectedPeer: ib.peerId, remote: 'b' })
  const first = await bReader.read() as Uint8Array
  const [a, b] = await Promise.all([outbound, secureInbound(bReader, ba.writer(), first, { privateKey: ib.privateKey, aead: nodeAead, dh: nodeDh, expectedPeer: ia.peerId, remote: 'a' })])
  ab.delivered.length = 0
  ba.delivered.length = 0
  return { a, b, ab, ba }
}

async function readAll (reader: ByteReader): Promise<Uint8Array[]> {
  const out: Uint8Array[] = []
  for (;;) {
    const c = await reader.read()
    if (c === null) return out
    out.push(c)
  }
}

const joined = (chunks: Uint8Array[]): Buffer => Buffer.concat(chunks)

describe('secure channel framing (in memory)', () => {
  it('a full chunk of plaintext (512 KiB, like a plaintext connection\'s) goes as one raw chunk, widened by its framing, and arrives as its messages, each opened into a chunk of its own (never joined)', async () => {
    const { a, b, ab } = await pair()
    expect(a.writer.chunkBytes).toBe(512 * 1024)
    const data = testBytes(512 * 1024, 1)
    await a.writer.writeOwned(data)
    await a.writer.end()
    expect(ab.delivered.map((c) => c.byteLength)).toEqual([512 * 1024 + 9 * 18, 18]) // 9 Noise messages, then the sealed end
    const got = await readAll(b.reader)
    expect(got.map((c) => c.byteLength)).toEqual([...Array<number>(8).fill(MAX_PLAINTEXT_BYTES), 512 * 1024 - 8 * MAX_PLAINTEXT_BYTES])
    // Each chunk is the cipher's own output for its message: nine buffers, not views into one joined copy.
    expect(new Set(got.map((c) => c.buffer)).size).toBe(got.length)
    expect(joined(got).equals(Buffer.from(data))).toBe(true)
  })

  it('the messages of a raw chunk opened by one read are all ready at once (readReady), and nothing once they are taken', async () => {
    const { a, b } = await pair()
    const data = testBytes(200_000, 5)
    await a.writer.write(data)
    const got = [await b.reader.read() as Uint8Array]
    for (let c = b.reader.readReady?.(); c !== undefined; c = b.reader.readReady?.()) got.push(c)
    expect(got.map((c) => c.byteLength)).toEqual([MAX_PLAINTEXT_BYTES, MAX_PLAINTEXT_BYTES, MAX_PLAINTEXT_BYTES, 200_000 - 3 * MAX_PLAINTEXT_BYTES])
    expect(b.reader.bufferedBytes).toBe(0)
    expect(joined(got).equals(Buffer.from(data))).toBe(true)
    expect(b.reader.readReady?.(), 'none left: the next read waits').toBeUndefined()
  })

  it('without room to widen, the plaintext chunk shrinks so each raw chunk stays whole', async () => {
    const { a, ab } = await pair(100_000, 100_000)
    expect(a.writer.chunkBytes).toBe(100_000 - 2 * 18)
    await a.writer.write(testBytes(250_000, 2))
    expect(ab.delivered.every((c) => c.byteLength <= 100_000)).toBe(true)
  })

  it('skips the reserved room of an owned buffer (the multiplexer\'s raw-frame headroom)', async () => {
    const { a, b } = await pair()
    const data = testBytes(1000, 3)
    const owned = new Uint8Array(STREAM_HEADROOM_BYTES + 1000)
    owned.set(data, STREAM_HEADROOM_BYTES)
    await a.writer.writeOwned(owned, undefined, STREAM_HEADROOM_BYTES)
    await a.writer.end()
    expect(joined(await readAll(b.reader)).equals(Buffer.from(data))).toBe(true)
  })

  it('seals a message given as its parts (the multiplexer\'s batch) across their boundaries, never joined first, and the bytes arrive as written', async () => {
    const { a, b, ab } = await pair()
    const data = testBytes(300_000, 4)
    // Room first, then parts that cut the Noise messages (65,519 bytes of plaintext each) anywhere.
    const first = new Uint8Array(STREAM_HEADROOM_BYTES + 10)
    first.set(data.subarray(0, 10), STREAM_HEADROOM_BYTES)
    const cuts = [10, 11, 65_530, 65_531, 140_000, 299_999, 300_000]
    const parts = [first, ...cuts.slice(1).map((end, i) => data.subarray(cuts[i], end))]
    const joins: number[] = []
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with its own `this`, and put back
    const set = Uint8Array.prototype.set
    // Count copies out of the caller's parts: sealing reads them, only OpenSSL's output is copied.
    Uint8Array.prototype.set = function (this: Uint8Array, source: ArrayLike<number>, offset?: number) {
      if (parts.some((p) => ArrayBuffer.isView(source) && (source as Uint8Array).buffer === p.buffer)) joins.push((source as Uint8Array).byteLength)
      return set.call(this, source, offset)
    }
    try {
      await a.writer.writeParts?.(parts, undefined, STREAM_HEADROOM_BYTES)
    } finally {
      Uint8Array.prototype.set = set
    }
    await a.writer.end()
    expect(joins).toEqual([])
    expect(ab.delivered.map((c) => c.byteLength)).toEqual([300_000 + 5 * 18, 18]) // one raw chunk of 5 Noise messages, then the sealed end
    expect(joined(await readAll(b.reader)).equals(Buffer.from(data))).toBe(true)
    await expect(a.writer.writeParts?.([new Uint8Array(1)], undefined, 2)).rejects.toThrow(RangeError)
  })

  it('hands the raw stream the cipher\'s output as it is, after each message\'s length prefix, when the stream takes parts', async () => {
    const { a, b, ab } = await pair()
    ab.gather = true
    const data = testBytes(200_000, 5)
    await a.writer.write(data)
    await a.writer.end()
    // 200,000 bytes: four Noise messages (a prefix, the ciphertext, the tag each), then the sealed end (a prefix and a tag).
    expect(ab.partsWritten.map((parts) => parts.map((p) => p.byteLength))).toEqual([
      [STREAM_HEADROOM_BYTES + 2, 65_519, 16, 2, 65_519, 16, 2, 65_519, 16, 2, 3443, 16],
      [STREAM_HEADROOM_BYTES + 2, 16]
    ])
    expect(joined(await readAll(b.reader)).equals(Buffer.from(data))).toBe(true)
  })

  it.each([
    ['re-chunks every 1,000 bytes', (c: Uint8Array) => Array.from({ length: Math.ceil(c.byteLength / 1000) }, (_, i) => c.subarray(i * 1000, (i + 1) * 1000))],
    ['cuts each chunk at every odd offset in two', (c: Uint8Array) => [c.subarray(0, c.byteLength >> 1 | 1), c.subarray(c.byteLength >> 1 | 1)]]
  ])('a relay that %s still delivers every byte in order', async (_name, relay) => {
    const { a, b, ab } = await pair()
    ab.relay = relay
    const data = testBytes(700_000, 4)
    await a.writer.write(data)
    await a.writer.end()
    expect(joined(await readAll(b.reader)).equals(Buffer.from(data))).toBe(true)
  })

  it('a relay that coalesces chunks (two writes and the sealed end in one) delivers both, then the end', async () => {
    const { a, b, ab } = await pair()
    const held: Uint8Array[] = []
    ab.relay = (c) => { held.push(c); return held.length === 3 ? [Uint8Array.from(Buffer.concat(held))] : [] }
    const [x, y] = [testBytes(3000, 5), testBytes(4000, 6)]
    await a.writer.write(x)
    await a.writer.write(y)
    await a.writer.end()
    const got = await readAll(b.reader)
    expect(joined(got).equals(Buffer.concat([x, y]))).toBe(true)
  })

  it('a sealed end that came with data counts (done) only once that data is read; readReady gives what is left of the batch', async () => {
    const { a, b, ab } = await pair()
    const held: Uint8Array[] = []
    ab.relay = (c) => { held.push(c); return held.length === 3 ? [Uint8Array.from(Buffer.concat(held))] : [] }
    ab.end = () => {} // the raw stream stays open: only the sealed end says the stream is over
    const [x, y] = [testBytes(3000, 8), testBytes(4000, 9)]
    await a.writer.write(x)
    await a.writer.write(y)
    await a.writer.end()
    const got = [await b.reader.read() as Uint8Array]
    expect(b.reader.done, 'the end is in, but data before it is unread').toBe(false)
    for (let c = b.reader.readReady?.(); c !== undefined; c = b.reader.readReady?.()) got.push(c)
    expect(joined(got).equals(Buffer.concat([x, y]))).toBe(true)
    expect(b.reader.done).toBe(true)
    expect(await b.reader.read()).toBeNull()
  })

  it('a batch whose last message fails authentication delivers none of it, counts none of it, and has nothing ready', async () => {
    const { a, b, ab } = await pair()
    ab.relay = (c) => { const t = Uint8Array.from(c); t[t.byteLength - 1] = (t[t.byteLength - 1] as number) ^ 1; return [t] } // the last message's tag
    await a.writer.write(testBytes(200_000, 10)) // four messages in one raw chunk
    await expect(b.reader.read()).rejects.toMatchObject({ code: 'E_SECURE_AUTH' })
    expect(b.reader.readReady?.()).toBeUndefined()
    expect(b.reader.receivedBytes).toBe(0)
  })

  it('bytes after the sealed end are ignored; a bare end, or one inside a message, fails with E_SECURE_AUTH', async () => {
    const one = await pair()
    one.ab.relay = (c) => c.byteLength === 18 ? [Uint8Array.from([...c, 0, 16, ...new Uint8Array(16).fill(7)])] : [c] // junk behind the end (framed: a frame under 16 bytes fails at once)
    await one.a.writer.write(testBytes(10, 7))
    await one.a.writer.end()
    expect(joined(await readAll(one.b.reader)).byteLength).toBe(10)

    const two = await pair()
    two.ab.relay = (c) => c.byteLength === 18 ? [] : [c] // the sealed end dropped
    await two.a.writer.write(testBytes(10, 8))
    await two.a.writer.end()
    expect(await two.b.reader.read()).toHaveLength(10)
    await expect(two.b.reader.read()).rejects.toMatchObject({ code: 'E_SECURE_AUTH' })

    const three = await pair()
    three.ab.relay = (c) => c.byteLength === 18 ? [] : [c.subarray(0, c.byteLength - 5)] // cut inside the message, then ended
    await three.a.writer.write(testBytes(100, 9))
    await three.a.writer.end()
    await expect(three.b.reader.read()).rejects.toMatchObject({ code: 'E_SECURE_AUTH' })
  })

  it.each([
    ['512 KiB of zeros (128k empty frames)', (): Uint8Array => new Uint8Array(512 * 1024), /under the minimum of 16/],
    ['30,000 messages of 17 bytes in one chunk', (): Uint8Array => { const c = new Uint8Array(30_000 * 19); for (let at = 0; at < c.byteLength; at += 19) c[at + 1] = 17; return c }, /more than \d+ messages in a chunk/]
  ])('a relay that sends %s fails the reader with E_SECURE_AUTH (as malformed framing, before any message is opened) and aborts the other side with that code', async (_name, junk, why) => {
    const { b, ab, ba } = await pair()
    ab.deliver(junk())
    await expect(b.reader.read()).rejects.toMatchObject({ code: 'E_SECURE_AUTH', message: expect.stringMatching(why) as unknown })
    expect(ba.state).toMatchObject({ message: expect.stringContaining('[E_SECURE_AUTH]') as unknown }) // what b sent a
  })

  it('a flipped bit in the second message of a chunk fails the whole chunk: nothing of it is delivered', async () => {
    const { a, b, ab } = await pair()
    ab.relay = (c) => { if (c.byteLength < 100_000) return [c]; const bad = c.slice(); bad[70_000] = (bad[70_000] as number) ^ 1; return [bad] }
    await a.writer.write(testBytes(200_000, 10))
    await expect(b.reader.read()).rejects.toMatchObject({ code: 'E_SECURE_AUTH' })
  })

  it('an empty write is a no-op (it cannot forge the sealed end); a write after the end fails with E_STREAM_CLOSED', async () => {
    const { a, b, ab } = await pair()
    await a.writer.write(new Uint8Array(0))
    expect(ab.delivered).toHaveLength(0)
    await a.writer.write(testBytes(5, 11))
    await a.writer.end()
    await expect(a.writer.write(testBytes(5, 12))).rejects.toMatchObject({ code: 'E_STREAM_CLOSED' })
    expect(joined(await readAll(b.reader)).byteLength).toBe(5)
  })
})
