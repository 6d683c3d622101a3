/**
 * The socket.io internals raw frames rely on (shared/raw-parser.ts, server/socket-endpoint.ts,
 * client/server-link.ts, server/socket-wiring.ts). These fail when an upgrade of socket.io,
 * socket.io-client, socket.io-parser, engine.io or engine.io-client moves them: then re-read
 * those modules against the new versions before moving the pins in package.json.
 */
import { readFileSync } from 'node:fs'
import { io as connect, type Socket as ClientSocket } from 'socket.io-client'
import { Decoder, PacketType, type Packet } from 'socket.io-parser'
import { afterEach, describe, expect, it } from 'vitest'
import type { StarsockServer } from '../server/server.ts'
import { FRAME_EVENT } from '../shared/raw-frame.ts'
import { FrameDecoder, rawFrameParser, SERVER_MAX_ATTACHMENTS, SERVER_MAX_BINARY_HEADER_CHARS } from '../shared/raw-parser.ts'
import { startServer, waitFor, within } from './helpers/server.ts'

/** Packets `decoder` emits for `messages`. */
function decodeAll (decoder: Decoder, messages: Array<string | Uint8Array>): Packet[] {
  const out: Packet[] = []
  decoder.on('decoded', (p: Packet) => out.push(p))
  for (const m of messages) decoder.add(m)
  return out
}

/** socket.io-parser's encoding of a binary event `[name, <attachment>]`: header then attachment. */
const BINARY_EVENT = '51-["ev",{"_placeholder":true,"num":0}]'

describe('socket.io internals used by raw frames', () => {
  it('pins the versions the code was read against', () => {
    // Read from the file: some of these packages do not export their package.json.
    const version = (name: string): string => (JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string }).version
    expect(version('socket.io')).toMatch(/^4\.8\./)
    expect(version('socket.io-client')).toMatch(/^4\.8\./)
    expect(version('socket.io-parser')).toMatch(/^4\.2\./)
    expect(version('engine.io')).toMatch(/^6\.6\./)
    expect(version('engine.io-client')).toMatch(/^6\.6\./)
  })

  it('socket.io-parser rejects a binary message outside an event, and keeps `reconstructor` while it waits for one', () => {
    expect(() => new Decoder().add(Uint8Array.of(1))).toThrow('got binary data when not reconstructing a packet')
    const decoder = new Decoder()
    const packets = decodeAll(decoder, [BINARY_EVENT])
    expect(packets).toEqual([])
    expect((decoder as unknown as { reconstructor: unknown }).reconstructor).not.toBeNull()
    decoder.add(Uint8Array.of(7))
    expect((decoder as unknown as { reconstructor: unknown }).reconstructor).toBeNull()
  })

  it('FrameDecoder makes a lone binary message a frame event and leaves attachments to the event', () => {
    const frame = Uint8Array.of(0, 0, 0, 0, 1, 42)
    const attachment = Uint8Array.of(7)
    const packets = decodeAll(new FrameDecoder(), [frame, BINARY_EVENT, attachment, '2["plain"]', new Uint8Array(0).buffer as unknown as Uint8Array])
    expect(packets.map((p) => p.data[0])).toEqual([FRAME_EVENT, 'ev', 'plain', FRAME_EVENT])
    expect(packets[0]).toMatchObject({ type: PacketType.EVENT, nsp: '/' })
    expect(packets[0]?.data[1]).toBe(frame) // the very buffer, no copy
    expect(packets[1]?.data[1]).toEqual(attachment)
  })

  describe('through a real server', () => {
    let server: StarsockServer & { port: number }
    let client: ClientSocket | undefined
    afterEach(async () => {
      client?.close()
      await server.close()
    })

    it('both ends build their decoders from the `parser` option; engine.io sends and writes raw messages in order with events', async () => {
      server = await startServer()
      const seen: unknown[] = []
      server.io.on('connection', (s) => {
        s.onAny((event: string, value: unknown) => seen.push(event === FRAME_EVENT ? Array.from(value as Uint8Array) : event))
        const conn = s.conn as unknown as { send: (b: Uint8Array) => void, writeBuffer: unknown[], on: (e: string, fn: () => void) => void }
        expect(typeof conn.send).toBe('function')
        expect(Array.isArray(conn.writeBuffer)).toBe(true)
        expect((s.client as unknown as { decoder: unknown }).decoder).toBeInstanceOf(FrameDecoder)
        s.emit('before')
        conn.send(Uint8Array.of(0, 0, 0, 0, 9, 1))
        s.emit('after')
      })
      client = connect(server.url(), { transports: ['websocket'], forceNew: true, reconnection: false, parser: rawFrameParser })
      const got: unknown[] = []
      client.onAny((event: string, value: unknown) => got.push(event === FRAME_EVENT ? Array.from(value as Uint8Array) : event))
      await within('the client to connect', new Promise((resolve) => client?.once('connect', () => resolve(undefined))))
      expect((client.io as unknown as { decoder: unknown }).decoder).toBeInstanceOf(FrameDecoder)
      await waitFor('the server\'s events and frame at the client', () => got.length === 3)
      expect(got).toEqual(['before', [0, 0, 0, 0, 9, 1], 'after'])

      // Client side: engine.write(bytes) is one binary message after the events emitted before it.
      client.emit('one')
      client.io.engine.write(Uint8Array.of(0, 0, 0, 0, 3, 2))
      client.emit('two')
      await waitFor('the client\'s events and frame at the server', () => seen.length === 3)
      expect(seen).toEqual(['one', [0, 0, 0, 0, 3, 2], 'two'])
    })

    it('the server takes one attachment per event: an event announcing more closes that socket, and nothing waits for the rest', async () => {
      server = await startServer()
      const decoders: unknown[] = []
      server.io.on('connection', (s) => { decoders.push((s.client as unknown as { decoder: { opts: unknown } }).decoder.opts) })
      client = connect(server.url(), { transports: ['websocket'], forceNew: true, reconnection: false, parser: rawFrameParser })
      await within('the client to connect', new Promise((resolve) => client?.once('connect', () => resolve(undefined))))
      await waitFor('the server\'s side of the socket', () => decoders.length === 1)
      expect(decoders[0]).toMatchObject({ maxAttachments: SERVER_MAX_ATTACHMENTS })
      expect(SERVER_MAX_ATTACHMENTS).toBe(1)
      const closed = new Promise<string>((resolve) => client?.once('disconnect', (reason: string) => resolve(reason)))
      // Ten attachments announced (socket.io-parser's default allowed them, holding each until the last).
      client.io.engine.write('510-["x",' + Array.from({ length: 10 }, (_, i) => `{"_placeholder":true,"num":${i}}`).join(',') + ']')
      client.io.engine.write(new Uint8Array(1000))
      expect(await within('the server to close the socket', closed, 5000)).toBe('transport close')

      // One attachment, announced by a text over the bound that would wait, parsed, for it (1 MB held 12.8 MB of heap): refused too.
      const second = connect(server.url(), { transports: ['websocket'], forceNew: true, reconnection: false, parser: rawFrameParser })
      client = second
      await within('the second client to connect', new Promise((resolve) => second.once('connect', () => resolve(undefined))))
      const closedToo = new Promise<string>((resolve) => second.once('disconnect', (reason: string) => resolve(reason)))
      const huge = '51-["x",{"_placeholder":true,"num":0}' + ',[]'.repeat(Math.ceil(SERVER_MAX_BINARY_HEADER_CHARS / 3)) + ']'
      expect(huge.length).toBeGreaterThan(SERVER_MAX_BINARY_HEADER_CHARS)
      second.io.engine.write(huge)
      expect(await within('the server to close the second socket', closedToo, 5000)).toBe('transport close')
    })
  })
})
