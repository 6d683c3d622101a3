/**
 * Forward by service name and accept tunnels (issue 15): a forward asks the far peer for a named
 * service and reaches the target the far side chose; an accept tunnel listens here on behalf of
 * the far peer (no bind) and hands each connection over; both check `allowFrom` and come back
 * after the far peer restarts. Real server, real peers, real sockets.
 */
import { getEventListeners } from 'node:events'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { createIdentity } from '../client/identity.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgentOptions } from '../client/sock/agent.ts'
import { connectChannel, createNodeHost } from '../client/sock/host.node.ts'
import { accept, AcceptTunnel, Expose, Forward, forward } from '../client/sock/tunnel.node.ts'
import type { StarsockError } from '../shared/errors.ts'
import { useAgents } from './helpers/agents.ts'
import { expectBytes } from './helpers/bytes.ts'
import { rejected, testBytes, waitFor, within } from './helpers/server.ts'
import { tcpEcho, tcpRoundTrip, udpClient, udpEcho } from './helpers/sockets.ts'

/** Connect from `localAddress`; settles with whether the connection was reset. */
async function resetFrom (port: number, localAddress: string): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress })
    let reset = false
    socket.on('error', (err: NodeJS.ErrnoException) => { reset = err.code === 'ECONNRESET' || err.code === 'EPIPE' })
    socket.on('close', () => resolve(reset))
    socket.write('hello')
  })
}

/** Whether something listens on 127.0.0.1:`port`. */
async function listening (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port })
    socket.on('connect', () => { socket.destroy(); resolve(true) })
    socket.on('error', () => resolve(false))
  })
}

describe('forward by service name, and accept tunnels', () => {
  const { agent, cleanup, server } = useAgents()

  it('a forward or an expose with bad options throws and leaves no listener on the signal', async () => {
    const a = await agent()
    const signal = new AbortController().signal
    expect(() => new Forward(a, { peer: 'x', signal })).toThrow(/needs `to`/)
    expect(() => new Forward(a, { peer: 'x', signal, to: { ip: '127.0.0.1', port: 1 }, service: 'web' })).toThrow(/not both/)
    expect(() => new Expose(a, { peer: 'x', signal })).toThrow(/needs `to`/)
    expect(getEventListeners(signal, 'abort')).toHaveLength(0)
  })

  it('a forward by service reaches the target the far side chose, TCP and UDP; an unknown name is denied', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const uecho = await udpEcho()
    cleanup.push(uecho)
    const far = await agent({ allow: ['service:web', 'service:dns'], services: { web: { to: { ip: '127.0.0.1', port: echo.port }, proto: 'tcp' }, dns: { to: { ip: '127.0.0.1', port: uecho.port }, proto: 'udp' } } })
    const near = await agent()
    const offers: string[] = []
    far.on('offer', (o) => offers.push(o.text))
    const web = await forward(near, { peer: far.peer.peerId, service: 'web', listen: { ip: '127.0.0.1', port: 0 } })
    cleanup.push(web)
    const data = testBytes(256 * 1024, 41)
    expectBytes(await within('a round trip through the service', tcpRoundTrip(web.address.port, data)), data, 'the bytes through service web')
    expect(offers[0]).toMatch(/web/)
    const dns = await forward(near, { peer: far.peer.peerId, service: 'dns', proto: 'udp', listen: { ip: '127.0.0.1', port: 0 } })
    cleanup.push(dns)
    const client = await udpClient()
    cleanup.push(client)
    client.socket.send(Buffer.from('query'), dns.address.port, '127.0.0.1')
    await waitFor('the UDP service to answer', () => client.got.length === 1)
    expect(client.got[0]?.toString()).toBe('query')
    const err = await rejected(forward(near, { peer: far.peer.peerId, service: 'nope', listen: { ip: '127.0.0.1', port: 0 } })) as StarsockError
    expect(err.code).toBe('E_DENIED')
  })

  it('an accept for a service: each local connection reaches the far side\'s target; allowFrom resets 127.0.0.2', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const far = await agent({ allow: ['service:ssh'], services: { ssh: { to: { ip: '127.0.0.1', port: echo.port }, proto: 'tcp' } } })
    const near = await agent()
    const tunnel = await accept(near, { peer: far.peer.peerId, service: 'ssh', listen: { ip: '127.0.0.1', port: 0 }, allowFrom: ['127.0.0.1/32'] })
    cleanup.push(tunnel)
    expect(tunnel.state).toBe('up')
    const data = testBytes(200 * 1024, 42)
    expectBytes(await within('a round trip through the accept', tcpRoundTrip(tunnel.address.port, data)), data, 'the bytes through the accept')
    expect(await resetFrom(tunnel.address.port, '127.0.0.2')).toBe(true)
    expect(tunnel.stats()).toMatchObject({ refusedSources: 1, connections: 1 })
  })

  it('a UDP accept for a service: datagrams reach the far side\'s target and its answers come back', async () => {
    const uecho = await udpEcho()
    cleanup.push(uecho)
    const far = await agent({ allow: ['service:dns'], services: { dns: { to: { ip: '127.0.0.1', port: uecho.port }, proto: 'udp' } } })
    const near = await agent()
    const tunnel = await accept(near, { peer: far.peer.peerId, service: 'dns', proto: 'udp', listen: { ip: '127.0.0.1', port: 0 } })
    cleanup.push(tunnel)
    const client = await udpClient()
    cleanup.push(client)
    for (let i = 0; i < 3; i++) client.socket.send(Buffer.from(`query ${i}`), tunnel.address.port, '127.0.0.1')
    await waitFor('three answers through the UDP accept', () => client.got.length === 3)
    expect(client.got.map((b) => b.toString()).sort()).toEqual(['query 0', 'query 1', 'query 2'])
  })

  it('an accept without a service goes to the far side\'s onAccept; a far side without one denies it up front and nothing stays listening', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const far = await agent({ ask: () => true, onAccept: (channel) => { void connectChannel(channel, { ip: '127.0.0.1', port: echo.port }, 'tcp').catch(() => channel.abort()) } })
    const near = await agent()
    const tunnel = await accept(near, { peer: far.peer.peerId, listen: { ip: '127.0.0.1', port: 0 } })
    cleanup.push(tunnel)
    const data = testBytes(64 * 1024, 43)
    expectBytes(await within('a round trip through onAccept', tcpRoundTrip(tunnel.address.port, data)), data, 'the bytes through onAccept')

    const plain = await agent({ ask: () => true })
    const refused = new AcceptTunnel(near, { peer: plain.peer.peerId })
    const err = await rejected(refused.start({ ip: '127.0.0.1', port: 0 })) as StarsockError
    expect(err.code).toBe('E_UNSUPPORTED')
    expect(refused.state).toBe('closed')
    expect(await listening(refused.address.port)).toBe(false)
  })

  it('an accept closed while it starts: start() rejects and nothing stays listening on its port', async () => {
    const far = await agent({ ask: () => true, services: { ssh: { to: { ip: '127.0.0.1', port: 22 }, proto: 'tcp' } } })
    const near = await agent()
    const tunnel = new AcceptTunnel(near, { peer: far.peer.peerId, service: 'ssh' })
    const started = tunnel.start({ ip: '127.0.0.1', port: 0 })
    void tunnel.close() // before its port is bound
    expect(await within('start to settle', rejected(started))).toMatchObject({ code: 'E_ABORTED' })
    expect(tunnel.state).toBe('closed')
    expect(tunnel.address.port).not.toBe(0)
    expect(await listening(tunnel.address.port)).toBe(false)
  })

  it('an accept and a forward by service come back after the far peer restarts with the same identity', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const identity = await createIdentity()
    const farOptions: SockAgentOptions = { allow: ['service:web'], services: { web: { to: { ip: '127.0.0.1', port: echo.port }, proto: 'tcp' } } }
    const start = async (): Promise<{ id: string, close: () => Promise<void> }> => {
      const peer = await createPeer({ server: server().url(), identity })
      const a = createSockAgent(peer, { host: createNodeHost(), ...farOptions })
      return { id: peer.peerId, close: async () => { await a.close(); await peer.close() } }
    }
    let far = await start()
    cleanup.push({ close: async () => { await far.close() } })
    const near = await agent()
    const acc = await accept(near, { peer: far.id, service: 'web', listen: { ip: '127.0.0.1', port: 0 } })
    cleanup.push(acc)
    const fwd = await forward(near, { peer: far.id, service: 'web', listen: { ip: '127.0.0.1', port: 0 } })
    cleanup.push(fwd)
    await far.close()
    await waitFor('both tunnels to be away', () => acc.state === 'away' && fwd.state === 'away')
    far = await start()
    await waitFor('both tunnels to be back', () => acc.state === 'up' && fwd.state === 'up', 15_000)
    const data = testBytes(32 * 1024, 44)
    expectBytes(await within('a round trip through the accept after the restart', tcpRoundTrip(acc.address.port, data)), data, 'the bytes through the accept after the restart')
    expectBytes(await within('a round trip through the forward after the restart', tcpRoundTrip(fwd.address.port, data)), data, 'the bytes through the forward after the restart')
  }, 30_000)
})
