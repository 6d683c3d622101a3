import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { legacyDial, legacyExchange, legacyPeerId, pull, startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'
import type { StarsockServer } from '../server/server.ts'
import { expectBytes } from './helpers/bytes.ts'

const echo = (conn: unknown): void => { pull(conn, conn) }

describe('published libp2p-websocket-star@0.10.2 client', () => {
  let server: StarsockServer & { port: number }
  const peers: LegacyPeer[] = []
  const peer = async (...args: Parameters<typeof startLegacyPeer>): Promise<LegacyPeer> => {
    const p = await startLegacyPeer(...args)
    peers.push(p)
    return p
  }

  beforeEach(async () => { server = await startServer() })
  afterEach(async () => {
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
})
