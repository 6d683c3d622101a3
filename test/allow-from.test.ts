/**
 * Source allowlists on local listeners (issue 15): a forward resets a TCP client and drops the
 * datagrams of a UDP source that `allowFrom` does not allow, counts them and says so; allowed
 * clients pass. Real server, real peers, real sockets from a second loopback address (127.0.0.2).
 */
import dgram from 'node:dgram'
import net from 'node:net'
import os from 'node:os'
import { describe, expect, it } from 'vitest'
import { LOOPBACK_ONLY } from '../client/sock/allow-from.node.ts'
import { expose, Forward, forward } from '../client/sock/tunnel.node.ts'
import type { SockAddress } from '../shared/mux-frame.ts'
import { useAgents } from './helpers/agents.ts'
import { expectBytes } from './helpers/bytes.ts'
import { testBytes, waitFor, within } from './helpers/server.ts'
import { tcpEcho, tcpRoundTrip, udpEcho } from './helpers/sockets.ts'

/** Connect from `localAddress` to `host:port`; settles with whether the connection was reset and what came. */
async function tryFrom (host: string, port: number, localAddress: string, data: Uint8Array): Promise<{ reset: boolean, data: Buffer }> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host, port, localAddress, allowHalfOpen: true })
    const parts: Buffer[] = []
    let reset = false
    socket.on('data', (c: Buffer) => parts.push(c))
    socket.on('end', () => socket.end())
    socket.on('error', (err: NodeJS.ErrnoException) => { reset = err.code === 'ECONNRESET' || err.code === 'EPIPE' })
    socket.on('close', () => resolve({ reset, data: Buffer.concat(parts) }))
    socket.end(data)
  })
}

/** A UDP socket bound to `ip` that records what it gets. */
async function udpFrom (ip: string): Promise<{ socket: dgram.Socket, got: Buffer[] }> {
  const socket = dgram.createSocket('udp4')
  const got: Buffer[] = []
  socket.on('message', (m) => got.push(m))
  await new Promise<void>((resolve) => socket.bind(0, ip, resolve))
  return { socket, got }
}

/** A non-loopback IPv4 address of this machine, if it has one. */
function nonLoopbackIpv4 (): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  return undefined
}

/** A global (not link-local) non-loopback IPv6 address of this machine, if it has one. */
function nonLoopbackIpv6 (): string | undefined {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv6' && !a.internal && !a.address.startsWith('fe80')) return a.address
  }
  return undefined
}

describe('allowFrom on a forward\'s local port', () => {
  const { agent, cleanup } = useAgents()

  it('TCP: a client from 127.0.0.2 is reset and counted (refused), one from 127.0.0.1 passes', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const far = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const near = await agent()
    const tunnel = await forward(near, { peer: far.peer.peerId, to: { ip: '127.0.0.1', port: echo.port }, listen: { ip: '127.0.0.1', port: 0 }, allowFrom: ['127.0.0.1/32'] })
    cleanup.push(tunnel)
    const refused: SockAddress[] = []
    tunnel.on('refused', ({ src }) => refused.push(src))
    const data = testBytes(64 * 1024, 3)
    const denied = await within('a client from 127.0.0.2 to be ended', tryFrom('127.0.0.1', tunnel.address.port, '127.0.0.2', data))
    expect(denied.reset).toBe(true)
    expect(denied.data.byteLength).toBe(0)
    expect(refused.map((s) => s.ip)).toEqual(['127.0.0.2'])
    expect(tunnel.stats().refusedSources).toBe(1)
    expect(tunnel.stats().connections).toBe(0)
    expect(echo.open()).toBe(0)
    const back = await within('a round trip from 127.0.0.1', tcpRoundTrip(tunnel.address.port, data))
    expectBytes(back, data, 'the bytes of the allowed client')
    expect(tunnel.stats().refusedSources).toBe(1)
    // Again from there: reset and counted, not told twice within a minute (a flood must not flood the log).
    expect((await within('a second client from 127.0.0.2 to be ended', tryFrom('127.0.0.1', tunnel.address.port, '127.0.0.2', data))).reset).toBe(true)
    expect(tunnel.stats().refusedSources).toBe(2)
    expect(refused).toHaveLength(1)
  })

  it('UDP: datagrams from 127.0.0.2 are dropped and counted, 127.0.0.1 gets its echo', async () => {
    const echo = await udpEcho()
    cleanup.push(echo)
    const far = await agent({ allow: [`connect/udp:127.0.0.1:${echo.port}`] })
    const near = await agent()
    const tunnel = await forward(near, { peer: far.peer.peerId, proto: 'udp', to: { ip: '127.0.0.1', port: echo.port }, listen: { ip: '127.0.0.1', port: 0 }, allowFrom: ['127.0.0.1/32'] })
    cleanup.push(tunnel)
    let told = 0
    tunnel.on('refused', () => told++)
    const other = await udpFrom('127.0.0.2')
    cleanup.push({ close: () => { other.socket.close() } })
    for (let i = 0; i < 5; i++) other.socket.send(Buffer.from(`refused ${i}`), tunnel.address.port, '127.0.0.1')
    await waitFor('five refused datagrams counted', () => tunnel.stats().refusedSources === 5)
    expect(told).toBe(1) // told once per source, every datagram counted
    const mine = await udpFrom('127.0.0.1')
    cleanup.push({ close: () => { mine.socket.close() } })
    mine.socket.send(Buffer.from('hello'), tunnel.address.port, '127.0.0.1')
    await waitFor('the echo to the allowed source', () => mine.got.length === 1)
    expect(mine.got[0]?.toString()).toBe('hello')
    expect(other.got).toHaveLength(0)
    expect(echo.received()).toBe(1)
    expect(tunnel.stats().refusedSources).toBe(5)
  })

  it('the default is loopback only: a client from a non-loopback address of this machine is reset', async () => {
    expect(LOOPBACK_ONLY).toEqual(['127.0.0.0/8', '::1/128'])
    const ip = nonLoopbackIpv4()
    if (ip === undefined) return // no such address here: the default list above is what is checked
    const echo = await tcpEcho()
    cleanup.push(echo)
    const far = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const near = await agent()
    const tunnel = await forward(near, { peer: far.peer.peerId, to: { ip: '127.0.0.1', port: echo.port }, listen: { ip: '0.0.0.0', port: 0 } })
    cleanup.push(tunnel)
    const data = testBytes(1024, 5)
    const denied = await within(`a client from ${ip} to be ended`, tryFrom(ip, tunnel.address.port, ip, data))
    expect(denied.reset).toBe(true)
    expect(tunnel.stats().refusedSources).toBe(1)
    expectBytes(await tcpRoundTrip(tunnel.address.port, data), data, 'the bytes from 127.0.0.1')
  })

  it('dual stack: a forward on :: takes 127.0.0.1 (IPv4-mapped) and ::1 by default, and resets a non-loopback IPv6 source', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const far = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const near = await agent()
    const tunnel = await forward(near, { peer: far.peer.peerId, to: { ip: '127.0.0.1', port: echo.port }, listen: { ip: '::', port: 0 } })
    cleanup.push(tunnel)
    const data = testBytes(4096, 9)
    expectBytes(await within('a round trip from 127.0.0.1', tcpRoundTrip(tunnel.address.port, data)), data, 'the bytes from 127.0.0.1')
    expectBytes(await within('a round trip from ::1', tcpRoundTrip(tunnel.address.port, data, '::1')), data, 'the bytes from ::1')
    expect(tunnel.stats().refusedSources).toBe(0)
    const ip = nonLoopbackIpv6()
    if (ip === undefined) return // none here: the loopback sources above are what is checked
    const denied = await within(`a client from ${ip} to be ended`, tryFrom(ip, tunnel.address.port, ip, data))
    expect(denied.reset).toBe(true)
    expect(tunnel.stats().refusedSources).toBe(1)
  })

  it('an expose hands allowFrom to the peer: its port resets a client from 127.0.0.2 (counted there), 127.0.0.1 passes', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const far = await agent({ allow: ['bind/tcp:127.0.0.1:*'] })
    const near = await agent()
    const offers: string[] = []
    far.on('offer', (o) => offers.push(o.text))
    const tunnel = await expose(near, { peer: far.peer.peerId, to: { ip: '127.0.0.1', port: echo.port }, host: '127.0.0.1', port: 0, allowFrom: ['127.0.0.1/32'] })
    cleanup.push(tunnel)
    expect(offers[0]).toMatch(/from 127\.0\.0\.1\/32/)
    const data = testBytes(16 * 1024, 6)
    const denied = await within('a client from 127.0.0.2 to be ended', tryFrom('127.0.0.1', tunnel.address.port, '127.0.0.2', data))
    expect(denied.reset).toBe(true)
    expect(far.stats().refusedSources).toBe(1)
    expectBytes(await within('a round trip from 127.0.0.1', tcpRoundTrip(tunnel.address.port, data)), data, 'the bytes of the allowed client')
  })

  it('a bad entry throws a TypeError naming it; a forward needs to or service', async () => {
    const near = await agent()
    expect(() => new Forward(near, { peer: near.peer.peerId, to: { ip: '127.0.0.1', port: 1 }, allowFrom: ['10.0.0.0/33'] })).toThrow(/10\.0\.0\.0\/33/)
    expect(() => new Forward(near, { peer: near.peer.peerId })).toThrow(TypeError)
  })
})
