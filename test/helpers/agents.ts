/**
 * A real server for each test of the `describe` that calls `useAgents`, and sock agents on it (each
 * with its own peer), closed after each test in reverse order, then the server.
 */
import { afterEach, beforeEach } from 'vitest'
import { createPeer } from '../../client/peer.ts'
import { createSockAgent, type SockAgent, type SockAgentOptions } from '../../client/sock/agent.ts'
import { createNodeHost } from '../../client/sock/host.node.ts'
import type { StarsockError } from '../../shared/errors.ts'
import type { StarsockServer } from '../../server/server.ts'
import { startServer } from './server.ts'
import type { Closable } from './sockets.ts'

/** What a test gets: an agent maker, the list closed after the test, and the test's server. */
export interface Agents {
  /** A new peer joined to this test's server with a sock agent on it (a Node host). */
  agent: (options?: SockAgentOptions) => Promise<SockAgent>
  /** Closed after the test, last first, before the server. */
  cleanup: Closable[]
  /** This test's server. */
  server: () => StarsockServer & { port: number }
}

/** Call inside a `describe`: registers the hooks that start and stop a server per test. */
export function useAgents (): Agents {
  let server: (StarsockServer & { port: number }) | undefined
  const cleanup: Closable[] = []
  const current = (): StarsockServer & { port: number } => {
    if (server === undefined) throw new Error('no server: useAgents() runs one per test')
    return server
  }
  beforeEach(async () => { server = await startServer() })
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c.close()
    await server?.close()
    server = undefined
  })
  return {
    cleanup,
    server: current,
    agent: async (options = {}) => {
      const peer = await createPeer({ server: current().url() })
      const a = createSockAgent(peer, { host: createNodeHost(), ...options })
      cleanup.push({ close: async () => { await a.close(); await peer.close() } })
      return a
    }
  }
}

/** The error `promise` rejects with (a sock agent's `StarsockError`); throws when it resolves. */
export async function rejection (promise: Promise<unknown>): Promise<StarsockError> {
  try {
    await promise
  } catch (err) {
    return err as StarsockError
  }
  throw new Error('expected a rejection')
}
