/**
 * A stand-in's window toward the other node counts chunks as well as bytes: the other node's relay
 * cannot pause a stand-in, so a stream of tiny chunks under the byte window would otherwise reach
 * the chunk cap there (`RELAY_MAX_STREAM_CHUNKS`) and fail.
 */
import { describe, expect, it } from 'vitest'
import { SOCKET_WRITE_HIGH_WATER_BYTES } from '../../server/constants.ts'
import { StandIn, STREAM_WINDOW_CHUNKS, type StandInLink } from '../../server/cluster/stand-in.ts'
import { streamEvent } from '../../shared/events.ts'

function standIn (): { s: StandIn, sent: number[] } {
  const sent: number[] = []
  const link: StandInLink = { open: true, congested: () => false, send: () => {}, sendData: (_k, _s, chunk) => { sent.push(chunk.byteLength) }, dials: new Map() }
  const s = new StandIn('B', '/ip4/127.0.0.1/tcp/1/ws/p2p-websocket-star/ipfs/x', '', { dial: async () => [], forget: () => {}, sent: () => {} })
  s.link = link
  s.key = 1
  s.dialId = 'd'
  s.window = 1024 * 1024
  return { s, sent }
}

const queue = (s: StandIn, n: number): void => { s.emit(streamEvent('queue', 'd.dialer'), new Uint8Array(n)) }

describe('StandIn window', () => {
  it('is full at STREAM_WINDOW_CHUNKS unacknowledged chunks however small, and opens as the other node acknowledges them', () => {
    const { s, sent } = standIn()
    for (let i = 0; i < STREAM_WINDOW_CHUNKS - 1; i++) queue(s, 1)
    expect(s.pendingWriteBytes()).toBe(0)
    queue(s, 1)
    expect(sent).toHaveLength(STREAM_WINDOW_CHUNKS)
    expect(s.pendingWriteBytes()).toBeGreaterThanOrEqual(SOCKET_WRITE_HIGH_WATER_BYTES)
    s.acked(1) // one chunk left the other node's queue
    expect(s.pendingWriteBytes()).toBe(0)
  })

  it('takes acknowledgements of several chunks at once, and of part of one, in the order they were sent', () => {
    const { s } = standIn()
    queue(s, 5)
    for (let i = 0; i < STREAM_WINDOW_CHUNKS - 1; i++) queue(s, 3)
    expect(s.pendingWriteBytes()).toBeGreaterThanOrEqual(SOCKET_WRITE_HIGH_WATER_BYTES)
    s.acked(4) // part of the first chunk: still all there
    expect(s.pendingWriteBytes()).toBeGreaterThanOrEqual(SOCKET_WRITE_HIGH_WATER_BYTES)
    s.acked(1 + 3 * 10) // the rest of it and ten more
    expect(s.pendingWriteBytes()).toBe(0)
    for (let i = 0; i < 10; i++) queue(s, 2)
    expect(s.pendingWriteBytes()).toBe(0)
    queue(s, 2)
    expect(s.pendingWriteBytes()).toBeGreaterThanOrEqual(SOCKET_WRITE_HIGH_WATER_BYTES)
  })

  it('is still full at the byte window with few large chunks', () => {
    const { s } = standIn()
    queue(s, 512 * 1024)
    expect(s.pendingWriteBytes()).toBe(0)
    queue(s, 512 * 1024)
    expect(s.pendingWriteBytes()).toBeGreaterThanOrEqual(SOCKET_WRITE_HIGH_WATER_BYTES)
  })
})
