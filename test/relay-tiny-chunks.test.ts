/**
 * A flood of one-byte chunks on a stream its receiver has not accepted: the byte limits count
 * payload, so before, 4 million of them (about 1 GB of server memory) stayed under every limit, and
 * draining a queue that long (`Array.shift`) blocked the event loop for minutes. Now reading from
 * the sender pauses once `RELAY_PAUSE_CHUNKS` chunks are held, and every chunk still arrives, in
 * order, once the stream is accepted. A real server and a socket.io client speaking the legacy events.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { streamEvent } from '../shared/events.ts'
import { ChunkQueue, type QueuedChunk } from '../server/relay-stream.ts'
import { PACKET_COST_BYTES, RELAY_PAUSE_CHUNKS, SOCKET_WRITE_HIGH_WATER_BYTES } from '../server/constants.ts'
import type { StarsockServer } from '../server/server.ts'
import { receiveStream, request, startRawPeer } from './helpers/raw-peer.ts'
import { startServer, waitForAsync, within } from './helpers/server.ts'

/** The server's `starsock_buffered_bytes`. */
async function bufferedBytes (server: StarsockServer): Promise<number> {
  const text = await (await fetch(`${server.url()}/metrics`)).text()
  return Number(/^starsock_buffered_bytes (\d+)$/m.exec(text)?.[1] ?? NaN)
}

describe('ChunkQueue', () => {
  it('is first in, first out through growth, draining and compaction, and says its length', () => {
    const q = new ChunkQueue()
    const chunk = (i: number): QueuedChunk => ({ bytes: Uint8Array.of(i & 0xff, i >> 8), raw: false })
    const taken: number[] = []
    let next = 0
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < 3000; i++) q.push(chunk(next++))
      for (let i = 0; i < 2000 + round * 300; i++) {
        const c = q.shift() as QueuedChunk
        taken.push((c.bytes[0] as number) | ((c.bytes[1] as number) << 8))
      }
    }
    expect(q.length).toBe(next - taken.length)
    for (let c = q.shift(); c !== undefined; c = q.shift()) taken.push((c.bytes[0] as number) | ((c.bytes[1] as number) << 8))
    expect(taken).toEqual(Array.from({ length: next }, (_, i) => i & 0xffff))
    expect(q.length).toBe(0)
    expect(q.shift()).toBeUndefined()
    q.push(chunk(1))
    q.clear()
    expect(q.length).toBe(0)
  })
})

describe('a flood of one-byte chunks on a stream not accepted yet', () => {
  let server: StarsockServer & { port: number }
  afterEach(async () => { await server?.close() })

  it('pauses the sender once RELAY_PAUSE_CHUNKS are held, and delivers every chunk in order once accepted', async () => {
    // The stall timeout (a paused sender whose receiver does not drain) at its longest: this receiver accepts late on purpose.
    server = await startServer({ senderStallTimeoutMs: 15_000 })
    const sender = await startRawPeer(server.url(), server.port)
    const receiver = await startRawPeer(server.url(), server.port)
    try {
      receiver.socket.on('ss-incomming', (_dialId: string, _from: string, ack: () => void) => { ack() })
      const [err] = await request(sender.socket, 'ss-dial', [sender.addr, receiver.addr, 'x'])
      expect(err ?? null).toBe(null)
      const chunks = 40_000
      for (let i = 0; i < chunks; i++) sender.socket.emit(streamEvent('queue', 'x.dialer'), Buffer.of(i & 0xff))
      sender.socket.emit(streamEvent('error', 'x.dialer'), true)
      // What the server holds stops growing at the pause (plus what one read had brought in).
      let held = -1
      await waitForAsync('the server to stop taking chunks', async () => {
        const now = await bufferedBytes(server)
        const settled = now === held && now > 0
        held = now
        if (!settled) await new Promise((resolve) => setTimeout(resolve, 300))
        return settled
      }, 30_000)
      expect(held).toBeGreaterThanOrEqual(RELAY_PAUSE_CHUNKS)
      expect(held).toBeLessThan(RELAY_PAUSE_CHUNKS + 4096)
      // Accepted: everything comes, in order, and the sender is read again.
      const got = await within('the whole stream', receiveStream(receiver.socket, 'x.dialer'), 60_000)
      expect(got).toEqual(Buffer.from(Array.from({ length: chunks }, (_, i) => i & 0xff)))
      expect(await bufferedBytes(server)).toBe(0)
    } finally {
      sender.close()
      receiver.close()
    }
  }, 90_000)

  it('counts each chunk toward a receiver with its packet\'s cost: one-byte chunks fill the 1 MiB mark after about 2,000 packets, not a million', async () => {
    server = await startServer()
    const receiver = await startRawPeer(server.url(), server.port)
    try {
      const session = [...server.rendezvous.sessions.values()][0]
      if (session === undefined) throw new Error('no session')
      const endpoint = session.endpoint
      const before = endpoint.pendingWriteBytes()
      for (let i = 0; i < 10; i++) endpoint.emit(streamEvent('queue', 'none.dialer'), Buffer.of(i))
      expect(endpoint.pendingWriteBytes() - before).toBe(10 * (1 + PACKET_COST_BYTES))
      expect(Math.ceil(SOCKET_WRITE_HIGH_WATER_BYTES / (1 + PACKET_COST_BYTES))).toBe(2045)
    } finally {
      receiver.close()
    }
  })
})
