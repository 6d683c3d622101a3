/**
 * A real server for each test of the `describe` that calls `usePeers`, and peers joined to it,
 * closed after each test (peers first, then the server).
 */
import { afterEach, beforeEach } from 'vitest'
import { createPeer, type PeerOptions, type StarsockPeer } from '../../client/peer.ts'
import type { ServerOptions } from '../../server/options.ts'
import type { StarsockServer } from '../../server/server.ts'
import { startServer } from './server.ts'

/** What a test gets: a peer maker, the test's server, and a way to restart it with other options. */
export interface Peers {
  /** A new peer joined to this test's server (closed after the test). */
  peer: (options?: Partial<PeerOptions>) => Promise<StarsockPeer>
  /** This test's server. */
  server: () => StarsockServer & { port: number }
  /** Close this test's server and start another with `options` (its peers stay to be closed after the test). */
  restart: (options: ServerOptions) => Promise<void>
}

/** Call inside a `describe`: registers the hooks that start and stop a server and its peers per test. */
export function usePeers (): Peers {
  let server: (StarsockServer & { port: number }) | undefined
  const peers: StarsockPeer[] = []
  const current = (): StarsockServer & { port: number } => {
    if (server === undefined) throw new Error('no server: usePeers() runs one per test')
    return server
  }
  beforeEach(async () => { server = await startServer() })
  afterEach(async () => {
    for (const p of peers.splice(0)) await p.close()
    await server?.close()
    server = undefined
  })
  return {
    server: current,
    peer: async (options = {}) => {
      const p = await createPeer({ server: current().url(), ...options })
      peers.push(p)
      return p
    },
    restart: async (options) => {
      await current().close()
      server = await startServer(options)
    }
  }
}
