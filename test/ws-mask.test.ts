/**
 * The masking key of a Node peer's WebSocket frames (`wsMask`), read off the wire: a TCP tap
 * between the peer and a real server parses what the peer sends after its upgrade request.
 */
import net from 'node:net'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { Connection } from '../client/connection.ts'
import { Muxer } from '../client/mux/muxer.ts'
import { createPeer, type PeerOptions, type StarsockPeer } from '../client/peer.ts'
import { ZeroMaskWebSocket } from '../client/ws-mask.ts'
import { expectBytes } from './helpers/bytes.ts'
import { echo, readAll } from './helpers/connections.ts'
import { startServer, testBytes, within } from './helpers/server.ts'

/** One WebSocket frame a client sent, as the tap read it. */
interface SeenFrame {
  masked: boolean
  /** The 4-byte masking key as a number (0 for a zero key). */
  key: number
  length: number
}

/**
 * A TCP proxy on 127.0.0.1 to `port` that parses the client's side of every connection that
 * starts with a WebSocket upgrade request into frames (and passes every byte on unchanged).
 */
async function frameTap (port: number): Promise<{ url: string, frames: SeenFrame[], close: () => void }> {
  const frames: SeenFrame[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1')
    for (const s of [client, upstream]) { sockets.add(s); s.on('error', () => {}); s.on('close', () => sockets.delete(s)) }
    let pending = Buffer.alloc(0)
    let state: 'request' | 'frames' | 'other' = 'request'
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk)
      if (state === 'other') return
      pending = Buffer.concat([pending, chunk])
      if (state === 'request') {
        const end = pending.indexOf('\r\n\r\n')
        if (end < 0) return
        state = /^upgrade: *websocket/im.test(pending.subarray(0, end).toString('latin1')) ? 'frames' : 'other'
        pending = pending.subarray(end + 4)
      }
      while (state === 'frames' && pending.length >= 2) {
        const masked = ((pending[1] as number) & 0x80) !== 0
        let length = (pending[1] as number) & 0x7f
        let at = 2
        if (length === 126) {
          if (pending.length < 4) return
          length = pending.readUInt16BE(2)
          at = 4
        } else if (length === 127) {
          if (pending.length < 10) return
          length = Number(pending.readBigUInt64BE(2))
          at = 10
        }
        const keyBytes = masked ? 4 : 0
        if (pending.length < at + keyBytes + length) return
        frames.push({ masked, key: masked ? pending.readUInt32BE(at) : 0, length })
        pending = pending.subarray(at + keyBytes + length)
      }
    })
    upstream.on('data', (chunk: Buffer) => client.write(chunk))
    client.on('end', () => upstream.end())
    upstream.on('end', () => client.end())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    frames,
    close: () => { server.close(); for (const s of sockets) s.destroy() }
  }
}

describe('WebSocket masking of a Node peer', () => {
  const stops: Array<() => unknown> = []
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop()
  })

  /** A peer behind the tap dials a peer on the server and gets `size` bytes echoed; the tap's frames from the first. */
  const echoThroughTap = async (options: Partial<PeerOptions>, size: number): Promise<SeenFrame[]> => {
    const server = await startServer()
    stops.push(async () => await server.close())
    const tap = await frameTap(server.port)
    stops.push(tap.close)
    const a = await createPeer({ server: tap.url, transports: ['websocket'], ...options })
    stops.push(async () => await a.close())
    const b: StarsockPeer = await createPeer({ server: server.url() })
    stops.push(async () => await b.close())
    b.handle(echo)
    const data = testBytes(size, 7)
    const conn = await a.dial(b.addr) // by address: b may not be in a's list yet
    const back = readAll(conn)
    await conn.write(data)
    await conn.closeWrite()
    expectBytes(await within('the echo', back, 30_000), data, 'echo')
    return tap.frames
  }

  it('sends every frame with a zero masking key by default, and the data arrives intact', async () => {
    const size = 2 * 1024 * 1024
    const frames = await echoThroughTap({}, size)
    // The join, the dial and the data: many frames, together at least the bytes sent.
    expect(frames.length).toBeGreaterThan(4)
    expect(frames.reduce((n, f) => n + f.length, 0)).toBeGreaterThanOrEqual(size)
    // Still masked frames as RFC 6455 requires of a client (the bit set, a key present): the key is zero.
    expect(frames.filter((f) => !f.masked)).toEqual([])
    expect(frames.filter((f) => f.key !== 0)).toEqual([])
  })

  it('upgrades from long-polling to a WebSocket with a zero key too', async () => {
    const size = 512 * 1024
    const frames = await echoThroughTap({ transports: ['polling', 'websocket'] }, size)
    // The upgrade's probe and what follows on the WebSocket; the data may have gone either way.
    expect(frames.length).toBeGreaterThan(1)
    expect(frames.filter((f) => !f.masked || f.key !== 0)).toEqual([])
  })

  it("masks every frame with a random key with wsMask 'random'", async () => {
    const frames = await echoThroughTap({ wsMask: 'random' }, 1024 * 1024)
    expect(frames.length).toBeGreaterThan(4)
    expect(frames.filter((f) => !f.masked)).toEqual([])
    // A random key is zero once in 2^32 frames.
    expect(frames.filter((f) => f.key === 0)).toEqual([])
    expect(new Set(frames.map((f) => f.key)).size).toBeGreaterThan(frames.length / 2)
  })

  /**
   * A multiplexer on a plaintext connection from a peer behind the tap echoes 4 MiB on each of two
   * channels; the calls to `writeParts` and the tap's frames.
   */
  const muxEchoThroughTap = async (options: Partial<PeerOptions>): Promise<{ frames: SeenFrame[], gathered: unknown[] }> => {
    const server = await startServer()
    stops.push(async () => await server.close())
    const tap = await frameTap(server.port)
    stops.push(tap.close)
    const writeParts = vi.spyOn(ZeroMaskWebSocket.prototype, 'writeParts')
    stops.push(() => { writeParts.mockRestore() })
    const a = await createPeer({ server: tap.url, transports: ['websocket'], ...options })
    stops.push(async () => await a.close())
    const b = await createPeer({ server: server.url(), wsMask: 'random' }) // so that every call to writeParts is the tapped peer's
    stops.push(async () => await b.close())
    b.handle((conn: Connection) => {
      const mux = new Muxer(conn, {
        onOpen: async (channel) => {
          void (async () => { for (;;) { const chunk = await channel.read(); if (chunk === null) break; await channel.write(chunk) } await channel.closeWrite() })()
          return undefined
        }
      })
      stops.push(async () => await mux.close())
    })
    const mux = new Muxer(await a.dial(b.addr, { secure: false }), {})
    stops.push(async () => await mux.close())
    const echoOver = async (seed: number): Promise<void> => {
      const channel = await mux.open({ type: 'test-echo', reliable: true })
      const data = testBytes(4 * 1024 * 1024, seed)
      const back = readAll(channel)
      for (let at = 0; at < data.byteLength; at += 256 * 1024) await channel.write(data.subarray(at, at + 256 * 1024))
      await channel.closeWrite()
      expectBytes(await back, data, `channel ${seed}`)
    }
    await within('two channels echoing 4 MiB each', Promise.all([echoOver(31), echoOver(32)]), 60_000)
    return { frames: tap.frames, gathered: writeParts.mock.results.map((r) => r.value) }
  }

  it('writes a multiplexer\'s batch of frames as one WebSocket frame, its parts not joined, with the key 0', async () => {
    const { frames, gathered } = await muxEchoThroughTap({})
    // Most batches go straight to the socket (the rest waited behind a packet in the engine).
    expect(gathered.filter((v) => v === true).length).toBeGreaterThan(8)
    // Batches of several channel frames arrived as single WebSocket frames.
    expect(frames.filter((f) => f.length > 128 * 1024).length).toBeGreaterThan(4)
    expect(frames.filter((f) => !f.masked || f.key !== 0)).toEqual([])
  })

  it("joins the batches with wsMask 'random' (ws masks each), and they arrive the same", async () => {
    const { frames, gathered } = await muxEchoThroughTap({ wsMask: 'random' })
    expect(gathered).toEqual([])
    expect(frames.filter((f) => f.length > 128 * 1024).length).toBeGreaterThan(4)
    expect(frames.filter((f) => f.key === 0)).toEqual([])
  })
})
