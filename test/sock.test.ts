import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent, type SockAgentOptions } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import { expose, forward } from '../client/sock/tunnel.node.ts'
import type { StarsockServer } from '../server/server.ts'
import { startServer, testBytes, within } from './helpers/server.ts'
import { httpGet, httpServer, tcpEcho, tcpRoundTrip, type Closable } from './helpers/sockets.ts'

describe('sock channels and tunnels through a real server', () => {
  let server: StarsockServer & { port: number }
  const cleanup: Closable[] = []
  const agent = async (options: SockAgentOptions = {}): Promise<SockAgent> => {
    const peer: StarsockPeer = await createPeer({ server: server.url() })
    const a = createSockAgent(peer, { host: createNodeHost(), ...options })
    cleanup.push({ close: async () => { await a.close(); await peer.close() } })
    return a
  }

  beforeEach(async () => { server = await startServer() })
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c.close()
    await server.close()
  })

  it('forward: 10 MiB over HTTP from a local server through the tunnel, byte-exact', async () => {
    const body = testBytes(10 * 1024 * 1024)
    const web = await httpServer(body)
    cleanup.push(web)
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${web.port}`] })
    const client = await agent()
    const tunnel = await forward(client, { peer: target.peer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: web.port } })
    cleanup.push(tunnel)
    const res = await within('the HTTP body through the tunnel', httpGet(`http://127.0.0.1:${tunnel.address.port}/`), 20_000)
    expect(res.status).toBe(200)
    expect(res.body.equals(body)).toBe(true)
  })

  it('expose: a TCP client connecting to the bound port reaches the local service', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: ['bind/tcp:127.0.0.1:0'] })
    const client = await agent()
    const tunnel = await expose(client, { peer: target.peer.peerId, host: '127.0.0.1', port: 0, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(tunnel)
    expect(tunnel.address.port).toBeGreaterThan(0)
    const data = testBytes(1024 * 1024)
    const back = await within('the echo through the bound port', tcpRoundTrip(tunnel.address.port, data), 10_000)
    expect(back.equals(data)).toBe(true)
  })
})
