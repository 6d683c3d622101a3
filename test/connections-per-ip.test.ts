/**
 * The cap on connections from one client IP (`maxConnectionsPerIp`): a connection costs memory
 * from its handshake on, joined or not, so one address must not open them without end. Refused
 * handshakes get HTTP 403 with the reason; floods of handshakes (pipelined in one read, or
 * upgrades that fail after the check) never get past the cap nor use up its places.
 */
import net from 'node:net'
import { io, type Socket } from 'socket.io-client'
import { afterEach, describe, expect, it } from 'vitest'
import type { ServerOptions } from '../server/options.ts'
import type { StarsockServer } from '../server/server.ts'
import { startServer, waitFor, within } from './helpers/server.ts'
import { startRawPeer } from './helpers/raw-peer.ts'

const REFUSAL = '{"code":4,"message":"Connection limit of this IP address reached (maxConnectionsPerIp=3) [E_LIMIT_CONNECTIONS_PER_IP]"}'

/** Write `request` on a fresh TCP connection (from `localAddress`) and read the answer to its close. */
async function raw (port: number, request: string, localAddress = '127.0.0.1'): Promise<string> {
  const c = net.connect({ host: '127.0.0.1', port, localAddress })
  let got = ''
  c.on('data', (d: Buffer) => { got += d.toString('latin1') })
  c.on('error', () => {})
  c.write(request)
  await within('the server to answer and close', new Promise((resolve) => c.once('close', resolve)), 10_000)
  return got
}

const handshake = (extra = ''): string => `GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n${extra}\r\n`
const statusLines = (answer: string): string[] => answer.match(/^HTTP\/1\.1 \d{3}/gm) ?? []

describe('connections per IP', () => {
  let server: (StarsockServer & { port: number }) | undefined
  const sockets: Socket[] = []
  const start = async (options: ServerOptions): Promise<StarsockServer & { port: number }> => {
    server = await startServer(options)
    return server
  }
  /** A socket.io connection over WebSocket: settles with it, or with the connect error's message. */
  const connect = async (s: StarsockServer, extraHeaders: Record<string, string> = {}): Promise<Socket | string> => {
    const sock = io(s.url(), { transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders })
    sockets.push(sock)
    return await within('a connection or its refusal', new Promise<Socket | string>((resolve) => {
      sock.once('connect', () => resolve(sock))
      sock.once('connect_error', (err: Error & { description?: Error }) => resolve(`${err.message}: ${err.description?.message ?? ''}`))
    }))
  }
  const engineClients = (): number => server?.io.engine.clientsCount ?? -1

  afterEach(async () => {
    for (const s of sockets.splice(0)) s.close()
    await server?.close()
    server = undefined
  })

  it('refuses the handshake past the cap with 403 and the reason; another IP is not counted; a closed connection frees its place', async () => {
    const s = await start({ maxConnectionsPerIp: 3 })
    const held = [await connect(s), await connect(s), await connect(s)]
    for (const h of held) expect(typeof h).not.toBe('string')
    expect(await connect(s)).toBe('websocket error: Unexpected server response: 400')
    const polling = await raw(s.port, handshake('Connection: close\r\n'))
    expect(polling).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/)
    expect(polling).toContain(REFUSAL)
    // Another client IP has places of its own.
    expect(await raw(s.port, handshake('Connection: close\r\n'), '127.0.0.2')).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(engineClients()).toBe(4)
    const metrics = await (await fetch(`${s.url()}/metrics`)).text()
    expect(metrics).toMatch(/starsock_limit_hits_total\{limit="E_LIMIT_CONNECTIONS_PER_IP"\} 2\n/)
    ;(held[0] as Socket).close()
    await waitFor('the closed connection to be gone', () => engineClients() === 3)
    expect(typeof await connect(s)).not.toBe('string')
  })

  it('a flood of handshakes pipelined in one read gets no more than the cap', async () => {
    const s = await start({ maxConnectionsPerIp: 3 })
    const answer = await raw(s.port, handshake().repeat(199) + handshake('Connection: close\r\n'))
    const lines = statusLines(answer)
    // (engine.io answers pipelined handshakes it took out of order or not at all: the count is what matters.)
    expect(lines.filter((l) => l.endsWith('200')).length).toBeLessThanOrEqual(3)
    expect(lines.filter((l) => l.endsWith('403')).length).toBeGreaterThanOrEqual(195)
    expect(engineClients()).toBeLessThanOrEqual(3)
    expect(server?.io.engine.clientsCount).toBeGreaterThan(0)
  })

  it('handshakes that fail after the check (upgrades without a WebSocket key) give their places back', async () => {
    const s = await start({ maxConnectionsPerIp: 3 })
    const badUpgrade = 'GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n'
    const answers = await Promise.all(Array.from({ length: 20 }, async () => await raw(s.port, badUpgrade)))
    for (const a of answers) expect(a).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/)
    expect(answers.some((a) => a.includes('E_LIMIT_CONNECTIONS_PER_IP'))).toBe(false) // each one passed the check
    expect(engineClients()).toBe(0)
    for (let i = 0; i < 3; i++) expect(typeof await connect(s)).not.toBe('string')
    expect(await connect(s)).toBe('websocket error: Unexpected server response: 400')
  })

  it('behind a trusted proxy, counts per forwarded client IP (an IPv6 /64 as one)', async () => {
    const s = await start({ maxConnectionsPerIp: 1, trustProxy: true })
    expect(typeof await connect(s, { 'X-Forwarded-For': '10.1.1.1' })).not.toBe('string')
    expect(typeof await connect(s, { 'X-Forwarded-For': '10.2.2.2' })).not.toBe('string')
    expect(await connect(s, { 'X-Forwarded-For': '10.9.9.9, 10.1.1.1' })).toBe('websocket error: Unexpected server response: 400')
    expect(typeof await connect(s, { 'X-Forwarded-For': '2001:db8:1:2::3' })).not.toBe('string')
    expect(await connect(s, { 'X-Forwarded-For': '2001:db8:1:2:ffff::9' })).toBe('websocket error: Unexpected server response: 400')
  })

  it('an IPv6 /48 holds at most four times the per-IP cap, whatever /64s it uses; the server at most twice maxPeers in all', async () => {
    const s = await start({ maxConnectionsPerIp: 1, maxPeers: 5, trustProxy: true })
    for (let i = 1; i <= 4; i++) expect(typeof await connect(s, { 'X-Forwarded-For': `2001:db8:7:${i}::1` }), `/64 number ${i}`).not.toBe('string')
    const polling = await raw(s.port, handshake('X-Forwarded-For: 2001:db8:7:99::1\r\nConnection: close\r\n'))
    expect(polling).toContain('Connection limit of this IPv6 /48 network reached (4 x maxConnectionsPerIp=4) [E_LIMIT_CONNECTIONS_PER_IP]')
    // Another /48 and IPv4 addresses take the rest of the server's 10.
    for (const ip of ['2001:db8:8::1', '10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5']) expect(typeof await connect(s, { 'X-Forwarded-For': ip }), ip).not.toBe('string')
    const full = await raw(s.port, handshake('X-Forwarded-For: 10.0.0.6\r\nConnection: close\r\n'))
    expect(full).toContain('Connection limit of this server reached (2 x maxPeers=10) [E_LIMIT_PEERS]')
    expect(engineClients()).toBe(10)
  })

  it('a full server makes room for a newcomer by closing the oldest connection that never joined within the challenge\'s lifetime; joined ones and young ones stay', async () => {
    const s = await start({ maxPeers: 2, nonceTtlMs: 300 }) // 4 connections in all
    const joined = [await startRawPeer(s.url(), s.port), await startRawPeer(s.url(), s.port)]
    try {
      const idle = [await connect(s), await connect(s)] as Socket[]
      for (const i of idle) expect(typeof i).not.toBe('string')
      const gone = idle.map(async (i) => await new Promise<string>((resolve) => i.once('disconnect', resolve)))
      await new Promise((resolve) => setTimeout(resolve, 400))
      expect(typeof await connect(s)).not.toBe('string')
      expect(await within('the oldest idle connection to be closed', gone[0] as Promise<string>)).toBe('transport close')
      expect((idle[1] as Socket).connected).toBe(true)
      expect(typeof await connect(s)).not.toBe('string')
      expect(await within('the other idle connection to be closed', gone[1] as Promise<string>)).toBe('transport close')
      // Now two joined and two young: nobody to make room.
      expect(await raw(s.port, handshake('Connection: close\r\n'))).toContain('Connection limit of this server reached (2 x maxPeers=4) [E_LIMIT_PEERS]')
      for (const j of joined) expect(j.socket.connected).toBe(true)
      const metrics = await (await fetch(`${s.url()}/metrics`)).text()
      expect(metrics).toMatch(/starsock_limit_hits_total\{limit="evicted-unjoined"\} 2\n/)
    } finally {
      for (const j of joined) j.close()
    }
  })
})
