import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Socket as ServerSocket } from 'socket.io'
import { io as ioV4 } from 'socket.io-client'
import { legacyDial, legacyExchange, legacyPeerId, pull, startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'
import type { StarsockServer } from '../server/server.ts'
import { expectBytes } from './helpers/bytes.ts'
import type { Connection } from '../client/connection.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { readAll } from './helpers/connections.ts'

const echo = (conn: unknown): void => { pull(conn, conn) }

describe('published libp2p-websocket-star@0.10.2 client', () => {
  let server: StarsockServer & { port: number }
  const peers: LegacyPeer[] = []
  const peer = async (...args: Parameters<typeof startLegacyPeer>): Promise<LegacyPeer> => {
    const p = await startLegacyPeer(...args)
    peers.push(p)
    return p
  }

  const modernClients: Array<ReturnType<typeof ioV4>> = []

  /** A published legacy peer and a socket.io-client 4 socket, and their server sockets (engine.io 3 and 4). */
  const legacyAndModern = async (): Promise<{ p: LegacyPeer, v4: ReturnType<typeof ioV4>, legacy: ServerSocket, modern: ServerSocket }> => {
    const sockets: ServerSocket[] = []
    server.io.on('connection', (socket) => { sockets.push(socket) })
    const p = await peer(server.port, echo)
    const v4 = ioV4(server.url(), { transports: ['websocket'], forceNew: true, reconnection: false })
    modernClients.push(v4)
    await waitFor('two server sockets', () => sockets.length === 2)
    const protocol = (socket: ServerSocket): number => (socket.conn as unknown as { protocol: number }).protocol
    const legacy = sockets.find((socket) => protocol(socket) === 3)
    const modern = sockets.find((socket) => protocol(socket) === 4)
    if (legacy === undefined || modern === undefined) throw new Error(`expected one engine.io 3 and one engine.io 4 socket, got ${sockets.map(protocol).join(', ')}`)
    return { p, v4, legacy, modern }
  }

  beforeEach(async () => { server = await startServer() })
  afterEach(async () => {
    for (const v4 of modernClients.splice(0)) v4.close()
    for (const p of peers.splice(0)) p.stop()
    await server.close()
  })

  it('joins through the challenge (RSA and Ed25519), discovers, and echoes 1 MiB both ways', async () => {
    const a = await peer(server.port, echo, { peerId: await legacyPeerId('RSA') })
    const b = await peer(server.port, echo)
    expect(a.id.startsWith('Qm')).toBe(true)
    await waitFor(`ws-peer for B at A`, () => a.discovered.has(b.addr))
    await waitFor(`B to know A`, () => b.discovered.has(a.addr))
    const data = testBytes(1024 * 1024)
    const ab = await within('A dials B', legacyDial(a, b.addr))
    expectBytes(await within('echo A->B->A', legacyExchange(ab, data), 15_000), data, 'echo A->B->A')
    const ba = await within('B dials A', legacyDial(b, a.addr))
    expectBytes(await within('echo B->A->B', legacyExchange(ba, data), 15_000), data, 'echo B->A->B')
    expect(server.stats().bufferedBytes).toBe(0)
  })

  it('runs 20 concurrent dials', async () => {
    const a = await peer(server.port, echo)
    const b = await peer(server.port, echo)
    const results = await within('20 dials and echoes', Promise.all(Array.from({ length: 20 }, async (_, i) => {
      const conn = await legacyDial(a, b.addr)
      const data = testBytes(10_000 + i, i + 1)
      return Buffer.compare(await legacyExchange(conn, data, 4096), Buffer.from(data))
    })), 20_000)
    expect(results).toEqual(new Array(20).fill(0))
  })

  it('takes the quick paths for legacy clients only, with the answers socket.io would give (fails if the internals move)', async () => {
    const { p, legacy, modern } = await legacyAndModern()
    type Parse = (packet: { nsp: string }) => unknown
    const own = (socket: ServerSocket): Parse | undefined => Object.hasOwn(socket.client, '_parseNamespace') ? (socket.client as unknown as { _parseNamespace: Parse })._parseNamespace : undefined
    // The namespace: the same answers as socket.io's URL parse.
    expect(own(modern)).toBeUndefined() // engine.io 4 clients need nothing
    const quick = own(legacy)
    expect(quick).toBeTypeOf('function')
    const slow = (Object.getPrototypeOf(legacy.client) as { _parseNamespace: Parse })._parseNamespace
    expect(slow).toBeTypeOf('function')
    for (const nsp of ['/', '/?token=abc&x=1', '/other', '/other?x=1']) {
      expect(quick?.call(legacy.client, { nsp })).toEqual(slow.call(legacy.client, { nsp }))
    }
    // Binary messages: ready-made frames to the legacy client only, read right by it at each
    // WebSocket length encoding (7, 16 and 64 bits).
    const frames = (socket: ServerSocket): unknown[] => {
      const seen: unknown[] = []
      ;(socket.conn as unknown as { on: (e: string, fn: (p: { type: string, options?: { wsPreEncodedFrame?: unknown } }) => void) => void })
        .on('packetCreate', (packet) => { if (packet.type === 'message') seen.push(packet.options?.wsPreEncodedFrame) })
      return seen
    }
    const legacyFrames = frames(legacy)
    const modernFrames = frames(modern)
    const got: Buffer[] = []
    p.listener.io.on('bytes', (b: Buffer) => { got.push(b) })
    const sent = [1, 200, 70_000].map((n, i) => Buffer.from(testBytes(n, i + 1)))
    for (const b of sent) {
      legacy.emit('bytes', b)
      modern.emit('bytes', b)
    }
    await waitFor('three binary events at the legacy client', () => got.length === 3)
    got.forEach((b, i) => { expectBytes(b, sent[i] as Buffer, `binary event ${i}`) })
    expect(legacyFrames).toHaveLength(6) // each event: the placeholder, then the bytes
    expect(legacyFrames.filter((f) => f !== undefined)).toHaveLength(3)
    expect(modernFrames.filter((f) => f !== undefined)).toHaveLength(0)
  })

  it('corks a legacy socket for a batch of packets only: one packet is one write already', async () => {
    const { p, v4, legacy, modern } = await legacyAndModern()
    /** Counts the corks of `socket`'s TCP socket: ws corks each frame it writes in two buffers, `batchLegacyWrites` a batch. */
    const corks = (socket: ServerSocket): { n: number } => {
      const tcp = (socket.conn as unknown as { transport: { socket: { _socket: { cork: () => void } } } }).transport.socket._socket
      const count = { n: 0 }
      const cork = tcp.cork.bind(tcp)
      tcp.cork = () => { count.n++; cork() }
      return count
    }
    const legacyCorks = corks(legacy)
    // The reference: the same events to an engine.io 4 socket, which only ws corks.
    const modernCorks = corks(modern)
    const got: number[] = []
    const gotModern: number[] = []
    p.listener.io.on('n', (n: number) => { got.push(n) })
    v4.on('n', (n: number) => { gotModern.push(n) })
    const send = (n: number): void => { legacy.emit('n', n); modern.emit('n', n) }
    send(1)
    await waitFor('one event at each client', () => got.length === 1 && gotModern.length === 1)
    expect(legacyCorks.n - modernCorks.n).toBe(0)
    // The first of a burst goes alone (the transport is free); the rest wait for it, then go as one batch.
    for (let i = 2; i <= 5; i++) send(i)
    await waitFor('five events at each client', () => got.length === 5 && gotModern.length === 5)
    expect(got).toEqual([1, 2, 3, 4, 5])
    expect(legacyCorks.n - modernCorks.n).toBe(1)
  })

  it('delivers every byte in order while the server pauses the sender for a receiver that stopped reading', async () => {
    let settle: (data: Buffer) => void = () => {}
    const received = new Promise<Buffer>((resolve) => { settle = resolve })
    const b = await peer(server.port, (conn: unknown) => {
      pull(conn, pull.collect((_err: unknown, chunks: Buffer[]) => settle(Buffer.concat(chunks))))
      pull(pull.empty(), conn)
    })
    const a = await peer(server.port, echo)
    const conn = await within('A dials B', legacyDial(a, b.addr))
    // B's TCP socket under socket.io-client 2 and engine.io-client 3.
    const bSocket = b.listener.io.io.engine.transport.ws._socket as { pause: () => void, resume: () => void }
    bSocket.pause()
    const data = testBytes(32 * 1024 * 1024)
    const chunks: Buffer[] = []
    for (let i = 0; i < data.length; i += 64 * 1024) chunks.push(Buffer.from(data.subarray(i, i + 64 * 1024)))
    pull(pull.values(chunks), conn, pull.drain(() => {}, () => {}))
    const relay = server.rendezvous.relay
    await waitFor('the server to pause A', () => [...server.rendezvous.sessions.values()].some((x) => relay.stateOf(x).paused), 15_000)
    expect(server.stats().bufferedBytes).toBeLessThanOrEqual(server.options.streamBufferBytes)
    bSocket.resume()
    expectBytes(await within('32 MiB at B', received, 30_000), data, '32 MiB at B')
    expect(server.stats().bufferedBytes).toBe(0)
  })

  it('fails a dial to an offline peer', async () => {
    const a = await peer(server.port, echo)
    const ghost = `/ip4/127.0.0.1/tcp/${server.port}/ws/p2p-websocket-star/ipfs/${(await legacyPeerId()).toB58String()}`
    await expect(legacyDial(a, ghost)).rejects.toThrow('Peer not found')
  })

  it('refuses a key that does not match the id in the address', async () => {
    const other = (await legacyPeerId()).toB58String()
    await expect(peer(server.port, echo, { addrId: other })).rejects.toThrow('Id is not matching')
    expect(server.stats().peers).toBe(0)
  })

  it('stops announcing a closed peer and fails dials to it', async () => {
    const a = await peer(server.port, echo)
    const b = await peer(server.port, echo)
    await waitFor('A to discover B', () => a.discovered.has(b.addr))
    b.stop()
    await waitFor('B to leave the server', () => server.stats().peers === 1)
    await expect(legacyDial(a, b.addr)).rejects.toThrow('Peer not found')
    const c = await peer(server.port, echo)
    await waitFor('C to learn about A', () => c.discovered.has(a.addr))
    expect(c.discovered.has(b.addr)).toBe(false)
  })

  describe('with a starsock peer (issue 14: plaintext, flagged; a secure dial fails fast, never falls back)', () => {
    const ours: StarsockPeer[] = []
    afterEach(async () => { for (const p of ours.splice(0)) await p.close() })

    it('a legacy dialer gets a plaintext connection, flagged secure: false, even when it waits for the listener to speak first', async () => {
      const starsock = await createPeer({ server: server.url() })
      ours.push(starsock)
      const accepted: Connection[] = []
      starsock.handle((conn) => {
        accepted.push(conn)
        void (async () => { await conn.write(new TextEncoder().encode('greeting from the listener')); await conn.closeWrite() })()
      })
      const legacy = await peer(server.port, echo)
      await waitFor('the legacy peer to hear of ours', () => legacy.discovered.has(starsock.addr))
      const conn = await within('legacy dial', legacyDial(legacy, starsock.addr))
      // The legacy dialer sends nothing: it only reads what the listener says first.
      const got = await within('the greeting', new Promise<Buffer>((resolve, reject) => {
        pull(pull.empty(), conn, pull.collect((err: unknown, parts: Buffer[]) => err != null ? reject(err instanceof Error ? err : new Error(String(err))) : resolve(Buffer.concat(parts))))
      }))
      expect(got.toString()).toBe('greeting from the listener')
      expect(accepted.map((c) => [c.secure, c.remotePeer])).toEqual([[false, legacy.id]])
    })

    it('a starsock dial to a legacy peer is secure by default and fails fast with E_SECURE_REQUIRED; with secure: false it is plaintext, flagged', async () => {
      const legacy = await peer(server.port, echo)
      const starsock = await createPeer({ server: server.url() })
      ours.push(starsock)
      await waitFor('ours to know the legacy peer', () => starsock.peers().some((p) => p.addr === legacy.addr))
      // Fast: the server's hint, not the 10 s handshake timeout.
      const err = await within('the secure dial failing', starsock.dial(legacy.id).then(() => undefined, (e: unknown) => e), 8000)
      expect(err).toMatchObject({ code: 'E_SECURE_REQUIRED' })
      expect((err as Error).message).toContain('secure: false')
      const conn = await starsock.dial(legacy.id, { secure: false })
      expect(conn.secure).toBe(false)
      const data = testBytes(200_000, 5)
      const back = readAll(conn)
      await conn.write(data)
      await conn.closeWrite()
      expectBytes(await within('ours -> legacy -> ours', back, 15_000), data, 'ours -> legacy -> ours')
    })
  })
})
