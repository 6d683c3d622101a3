/**
 * A client speaking engine.io directly, as an attacker would: leaving the namespace and connecting
 * again on the same connection, and a request that arrives in one read with the disconnect. The
 * server forgets each connection's upgrade request after its first socket, so neither may crash
 * it or leave a peer behind.
 */
import { Socket as EngineSocket } from 'engine.io-client'
import { afterEach, describe, expect, it } from 'vitest'
import { createPeer } from '../client/peer.ts'
import type { StarsockServer } from '../server/server.ts'
import { startServer, waitFor, within } from './helpers/server.ts'

const PEER = '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/QmcgpsyWgH8Y8ajJz1Cu72KnS5uo2Aa2LpzU7kinSupNKC'

describe('one socket per engine.io connection', () => {
  let server: StarsockServer & { port: number }
  let engine: EngineSocket | undefined
  afterEach(async () => {
    engine?.close()
    await server.close()
  })

  /** An engine.io connection to the server; settles once open, then collects the socket.io packets it gets. */
  const open = async (): Promise<string[]> => {
    const got: string[] = []
    engine = new EngineSocket(`ws://127.0.0.1:${server.port}`, { transports: ['websocket'], path: '/socket.io/' })
    engine.on('message', (m) => got.push(String(m)))
    await within('engine.io open', new Promise<void>((resolve) => engine?.on('open', () => resolve())))
    return got
  }

  it('refuses a second namespace connect on the same connection and keeps serving', async () => {
    server = await startServer({ cryptoChallenge: false })
    const got = await open()
    engine?.send('0')
    await waitFor('connected', () => got.some((m) => m.startsWith('0')))
    engine?.send('1')
    await waitFor('the first socket gone', () => server.stats().sockets === 0)
    engine?.send('0')
    await waitFor('the second connect refused', () => got.some((m) => m.startsWith('4') && m.includes('E_BAD_REQUEST')))
    // The server is alive and serves a real client.
    const peer = await createPeer({ server: server.url() })
    try {
      expect(server.stats().peers).toBe(1)
    } finally {
      await peer.close()
    }
  })

  it('does not act on a request that came in one read with the disconnect', async () => {
    server = await startServer({ cryptoChallenge: false })
    const got = await open()
    engine?.send('0')
    await waitFor('connected', () => got.some((m) => m.startsWith('0')))
    // Sent in one turn: ws writes them back to back and the server reads them together.
    engine?.send('1')
    engine?.send('2' + JSON.stringify(['ss-join', PEER, '']))
    await waitFor('the socket gone', () => server.stats().sockets === 0)
    // A join that had run would have answered and registered a peer nobody can remove.
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(server.stats().peers).toBe(0)
    expect(got.some((m) => m.startsWith('3'))).toBe(false)
  })
})
