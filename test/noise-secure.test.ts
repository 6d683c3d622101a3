/**
 * Proof for issue 14: the Noise XX secure channel (`client/noise/`) over two real starsock peers'
 * connections through a real server on 127.0.0.1: each side learns the other's verified peer id,
 * the relay carries only ciphertext, and a tampered byte, a wrong identity, a plaintext dialer and
 * a cut stream each fail with their code.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Connection } from '../client/connection.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { createIdentity } from '../client/identity.ts'
import { Muxer } from '../client/mux/muxer.ts'
import { nodeAead } from '../client/noise/aead.node.ts'
import { PREAMBLE, secureConnection, startsSecure, type RawConnection, type SecureConnection } from '../client/noise/secure-connection.ts'
import type { StarsockServer } from '../server/server.ts'
import { startServer, testBytes, within } from './helpers/server.ts'

/** What `promise` rejected with (fails when it resolves). */
async function rejected (promise: Promise<unknown>): Promise<unknown> {
  try { await promise } catch (err) { return err }
  throw new Error('expected a rejection')
}

/** Read a secure connection to its end. */
async function readAll (conn: SecureConnection): Promise<Buffer> {
  const chunks: Uint8Array[] = []
  for await (const chunk of conn) chunks.push(chunk)
  return Buffer.concat(chunks)
}

/** `conn` with its received chunks recorded, and `tamper(chunk, index)` applied to each on the way in (the relay's view). */
function tap (conn: Connection, tamper?: (chunk: Uint8Array, index: number) => Uint8Array): RawConnection & { received: Uint8Array[] } {
  const received: Uint8Array[] = []
  return {
    received,
    get chunkBytes () { return conn.chunkBytes },
    initiator: conn.initiator,
    remoteAddr: conn.remoteAddr,
    remotePeer: conn.remotePeer,
    read: async (options) => {
      const chunk = await conn.read(options)
      if (chunk === null) return null
      received.push(chunk.slice())
      return tamper === undefined ? chunk : tamper(chunk, received.length - 1)
    },
    writeOwned: async (data, options) => await conn.writeOwned(data, options),
    closeWrite: async () => await conn.closeWrite(),
    close: async () => await conn.close(),
    abort: (err) => conn.abort(err)
  }
}

describe('Noise secure channel over real starsock connections (proof for issue 14)', () => {
  let server: StarsockServer & { port: number }
  const peers: StarsockPeer[] = []
  const peer = async (): Promise<StarsockPeer> => {
    const p = await createPeer({ server: server.url() })
    peers.push(p)
    return p
  }
  /** The next connection `p` accepts, raw. */
  const nextIncoming = (p: StarsockPeer): Promise<Connection> => new Promise((resolve) => p.handle(resolve))

  beforeEach(async () => { server = await startServer() })
  afterEach(async () => {
    for (const p of peers.splice(0)) await p.close()
    await server.close()
  })

  it('both sides learn the verified peer id; 2 MiB cross each way byte-exact, as ciphertext only', async () => {
    const [a, b] = [await peer(), await peer()]
    const incoming = nextIncoming(b)
    const rawA = tap(await a.dial(b.peerId))
    const rawB = tap(await within('B accepting the dial', incoming))
    const [secA, secB] = await within('both handshakes', Promise.all([
      secureConnection(rawA, { privateKey: a.identity.privateKey, aead: nodeAead }),
      secureConnection(rawB, { privateKey: b.identity.privateKey, aead: nodeAead })
    ]))
    expect(secA.remotePeer).toBe(b.peerId) // the dialer reached exactly the peer it dialed
    expect(secB.remotePeer).toBe(a.peerId) // the listener learned who dialed from the handshake
    expect(Buffer.from(secA.handshakeHash).equals(Buffer.from(secB.handshakeHash))).toBe(true)
    expect(startsSecure(rawB.received[0] as Uint8Array)).toBe(true)

    const fromA = testBytes(2 * 1024 * 1024, 7)
    const fromB = testBytes(2 * 1024 * 1024, 8)
    const [gotB, gotA] = await within('2 MiB each way', Promise.all([
      readAll(secB), readAll(secA),
      (async () => { await secA.write(fromA); await secA.closeWrite() })(),
      (async () => { await secB.write(fromB); await secB.closeWrite() })()
    ]), 20_000)
    expect(Buffer.compare(gotB, fromA)).toBe(0)
    expect(Buffer.compare(gotA, fromB)).toBe(0)
    // What crossed the relay: none of 100 32-byte samples of either plaintext.
    const wire = Buffer.concat([...rawA.received, ...rawB.received])
    for (let i = 0; i < 100; i++) {
      const at = Math.floor((i * (fromA.byteLength - 32)) / 100)
      expect(wire.includes(Buffer.from(fromA.subarray(at, at + 32)))).toBe(false)
      expect(wire.includes(Buffer.from(fromB.subarray(at, at + 32)))).toBe(false)
    }
    // Whole Noise messages fill each stream chunk: at most the stream's chunk size.
    expect(Math.max(...rawB.received.map((c) => c.byteLength))).toBeLessThanOrEqual(rawA.chunkBytes)
  })

  it('a byte flipped in transit fails the connection on both sides with nothing forged delivered', async () => {
    const [a, b] = [await peer(), await peer()]
    const incoming = nextIncoming(b)
    const rawA = await a.dial(b.peerId)
    // B's third chunk (after preamble+msg1 and msg3) is the first transport chunk: flip one bit in its ciphertext.
    const rawB = tap(await incoming, (chunk, index) => {
      if (index !== 2) return chunk
      const bad = chunk.slice()
      bad[100] = (bad[100] as number) ^ 0x01
      return bad
    })
    const [secA, secB] = await Promise.all([
      secureConnection(rawA, { privateKey: a.identity.privateKey, aead: nodeAead }),
      secureConnection(rawB, { privateKey: b.identity.privateKey, aead: nodeAead })
    ])
    const reading = rejected(secB.read())
    await secA.write(testBytes(1000, 3))
    expect(await within('B failing the tampered message', reading)).toMatchObject({ code: 'E_SECURE_AUTH' })
    // The dialer learns it too: its reads fail with the listener's reason.
    const err = await within('A learning of the failure', rejected(secA.read()))
    expect(err).toMatchObject({ code: 'E_STREAM_ABORTED' })
    expect((err as Error).message).toMatch(/failed authentication/)
  })

  it('a dialer that reaches another identity than it expected fails with E_PEER_ID_MISMATCH (a relay swapping the listener)', async () => {
    const [a, b] = [await peer(), await peer()]
    const someoneElse = (await createIdentity()).peerId
    const incoming = nextIncoming(b)
    const rawA = await a.dial(b.peerId)
    const rawB = await incoming
    const [errA, errB] = await Promise.all([
      rejected(secureConnection(rawA, { privateKey: a.identity.privateKey, aead: nodeAead, expectedPeer: someoneElse })),
      rejected(secureConnection(rawB, { privateKey: b.identity.privateKey, aead: nodeAead, timeoutMs: 3000 }))
    ])
    expect(errA).toMatchObject({ code: 'E_PEER_ID_MISMATCH' })
    expect((errA as Error).message).toContain(b.peerId)
    // The listener never completes: the dialer aborted before sending its identity.
    expect(errB).toMatchObject({ code: expect.stringMatching(/^E_(STREAM_ABORTED|SECURE_HANDSHAKE)$/) })
  })

  it('a listener that requires the secure channel refuses a plaintext dialer (E_SECURE_REQUIRED)', async () => {
    const [a, b] = [await peer(), await peer()]
    const incoming = nextIncoming(b)
    const rawA = await a.dial(b.peerId)
    await rawA.write(new TextEncoder().encode('hello in the clear'))
    const errB = await rejected(secureConnection(await incoming, { privateKey: b.identity.privateKey, aead: nodeAead }))
    expect(errB).toMatchObject({ code: 'E_SECURE_REQUIRED' })
    expect(await rejected(rawA.read())).toMatchObject({ code: 'E_STREAM_ABORTED' })
    expect(PREAMBLE.byteLength).toBe(23)
  })

  it('a stream cut short with a clean end (no sealed end) fails the reader with E_SECURE_AUTH', async () => {
    const [a, b] = [await peer(), await peer()]
    const incoming = nextIncoming(b)
    const rawA = await a.dial(b.peerId)
    const rawB = await incoming
    const [secA, secB] = await Promise.all([
      secureConnection(rawA, { privateKey: a.identity.privateKey, aead: nodeAead }),
      secureConnection(rawB, { privateKey: b.identity.privateKey, aead: nodeAead })
    ])
    await secA.write(testBytes(5000, 4))
    await rawA.closeWrite() // under the secure channel: what a relay forging an end looks like
    expect((await secB.read())?.byteLength).toBe(5000)
    expect(await within('B noticing the cut', rejected(secB.read()))).toMatchObject({ code: 'E_SECURE_AUTH' })
  })

  it('the multiplexer runs inside unchanged: two channels with their own windows carry 1 MiB each, byte-exact', async () => {
    const [a, b] = [await peer(), await peer()]
    const incoming = nextIncoming(b)
    const rawA = await a.dial(b.peerId)
    const [secA, secB] = await Promise.all([
      secureConnection(rawA, { privateKey: a.identity.privateKey, aead: nodeAead }),
      secureConnection(await incoming, { privateKey: b.identity.privateKey, aead: nodeAead })
    ])
    // TODO(#14): Muxer takes the Connection class; with an interface both implement, no cast.
    const muxA = new Muxer(secA as unknown as Connection, {}, { windowBytes: 64 * 1024 })
    const muxB = new Muxer(secB as unknown as Connection, {
      onOpen: async (channel) => {
        void (async () => { for (;;) { const chunk = await channel.read(); if (chunk === null) break; await channel.write(chunk) } await channel.closeWrite() })()
        return undefined
      }
    }, { windowBytes: 64 * 1024 })
    expect(muxB.remotePeer).toBe(a.peerId) // what consent rules (`@PEERID`) would see: the verified id
    const echoOver = async (seed: number): Promise<void> => {
      const channel = await muxA.open({ type: 'test-echo', reliable: true })
      const data = testBytes(1024 * 1024, seed)
      const reading = (async () => { const parts: Uint8Array[] = []; for (;;) { const c = await channel.read(); if (c === null) return Buffer.concat(parts); parts.push(c) } })()
      await channel.write(data)
      await channel.closeWrite()
      expect(Buffer.compare(await reading, data)).toBe(0)
    }
    await within('two channels echoing 1 MiB each', Promise.all([echoOver(21), echoOver(22)]), 20_000)
    await muxA.close()
    await muxB.close()
  })
})
