/**
 * SOCKS5 and HTTP CONNECT on a local port (issue 15): each request becomes a `connect` offer the
 * far peer decides, a denial is the proper reply code, and the port survives abuse. A real server,
 * real peers, real sockets; the `socks` npm client and raw bytes on the wire.
 */
import { getEventListeners } from 'node:events'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { SocksClient } from 'socks'
import { createIdentity } from '../client/identity.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent, type SockAgentOptions } from '../client/sock/agent.ts'
import { createNodeHost, listenTcp } from '../client/sock/host.node.ts'
import { Socks, type SocksOptions } from '../client/sock/socks.node.ts'
import { useAgents } from './helpers/agents.ts'
import { expectBytes } from './helpers/bytes.ts'
import { testBytes, waitFor, within } from './helpers/server.ts'
import { closedPort, tcpEcho } from './helpers/sockets.ts'

/** Write `data` on a connected socket, half-close, and settle with all it reads back. */
async function roundTrip (socket: net.Socket, data: Uint8Array): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    socket.on('data', (c: Buffer) => parts.push(c))
    socket.on('end', () => { socket.end(); resolve(Buffer.concat(parts)) })
    socket.on('error', reject)
    socket.resume() // paused after an HTTP CONNECT answer: a data listener alone does not resume it
    socket.end(data)
  })
}

/** A raw client: connect, send `bytes`, collect what comes until the proxy closes (FIN or reset). */
async function raw (port: number, bytes: Uint8Array | string, host = '127.0.0.1', localAddress?: string, until = Infinity): Promise<{ data: Buffer, reset: boolean }> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host, port, localAddress })
    const parts: Buffer[] = []
    let reset = false
    let got = 0
    socket.on('data', (c: Buffer) => {
      parts.push(c)
      got += c.byteLength
      if (got >= until) socket.destroy() // a granted request stays open: enough read
    })
    socket.on('error', () => { reset = true })
    socket.on('close', () => resolve({ data: Buffer.concat(parts), reset }))
    socket.write(bytes)
  })
}

/** A raw SOCKS5 CONNECT without auth to 127.0.0.1:`port`: greeting and request in one write. */
function socks5Connect (port: number): Buffer {
  const p = Buffer.alloc(2)
  p.writeUInt16BE(port)
  return Buffer.concat([Buffer.from([0x05, 0x01, 0x00]), Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1]), p])
}

/** Open a socket and keep it, unanswered; settles once connected. */
async function stalled (port: number, first?: Uint8Array): Promise<net.Socket & { closedAt: Promise<void> }> {
  const socket = net.connect({ host: '127.0.0.1', port })
  socket.on('error', () => {})
  const closedAt = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  if (first !== undefined) socket.write(first)
  return Object.assign(socket, { closedAt })
}

describe('SOCKS5 and HTTP CONNECT through a peer', () => {
  const { agent, cleanup, server } = useAgents()

  /** A far agent with `farOptions`, a near agent, and a proxy on 127.0.0.1 through the far one. */
  async function setup (farOptions: SockAgentOptions, options: Partial<SocksOptions> = {}): Promise<{ far: SockAgent, near: SockAgent, socks: Socks, port: number }> {
    const far = await agent(farOptions)
    const near = await agent()
    const socks = new Socks(near, { peer: far.peer.peerId, timeoutMs: 10_000, ...options })
    cleanup.push({ close: async () => { await socks.close() } })
    await socks.start({ ip: '127.0.0.1', port: 0 })
    return { far, near, socks, port: socks.address.port }
  }

  /** A CONNECT to `port` granted (0x00), then its mapping killed at the far side, as a person's "stop". */
  async function grantThenKill (far: SockAgent, socks: Socks, proxy: number, port: number): Promise<void> {
    const first = await raw(proxy, socks5Connect(port), '127.0.0.1', undefined, 12)
    expect(first.data[3]).toBe(0x00)
    await waitFor('the far side to hold the mapping', () => far.mappings().length === 1)
    far.mappings()[0]?.kill('the person said stop')
    await waitFor('the proxy to see the kill', () => socks.stats().channelsOpen === 0 && far.mappings().length === 0)
  }

  async function echo (): Promise<number> {
    const e = await tcpEcho({ dualStack: true })
    cleanup.push(e)
    return e.port
  }

  it('CONNECT by IPv4, IPv6 (::1) and domain name (localhost) moves bytes exact both ways; one mapping per target, reused', async () => {
    const port = await echo()
    const { far, socks, port: proxy } = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`, `connect/tcp:[::1]:${port}`, `connect/tcp:localhost:${port}`] })
    const offers: string[] = []
    far.on('offer', (o) => offers.push(o.text))
    let seed = 1
    for (const host of ['127.0.0.1', '::1', 'localhost', '127.0.0.1']) {
      const { socket } = await within(`a SOCKS5 CONNECT to ${host}`, SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy, type: 5 }, command: 'connect', destination: { host, port } }))
      const data = testBytes(300 * 1024, seed++)
      expectBytes(await within(`bytes through ${host}`, roundTrip(socket, data)), data, `the bytes through the proxy to ${host}`)
    }
    const s = socks.stats()
    expect(s.connections).toBe(4)
    expect(s.failures).toBe(0)
    expect(s.bytesOut).toBeGreaterThanOrEqual(4 * 300 * 1024)
    // The second request to 127.0.0.1 took the live mapping: three offers, not four.
    expect(offers).toEqual([`connect/tcp 127.0.0.1:${port}`, `connect/tcp [::1]:${port}`, `connect/tcp localhost:${port}`])
    expect(socks.state).toBe('up')
  })

  it('targets in their canonical form: [0::1] and ::1, LOCALHOST and localhost. are one offer each; an IPv4-mapped IPv6 address is offered as IPv4 (an IPv4 rule matches)', async () => {
    const port = await echo()
    const { far, socks, port: proxy } = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`, `connect/tcp:[::1]:${port}`, `connect/tcp:localhost:${port}`] })
    const offers: string[] = []
    far.on('offer', (o) => offers.push(o.text))
    const viaSocks = async (host: string): Promise<void> => {
      const { socket } = await within(`a SOCKS5 CONNECT to ${host}`, SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy, type: 5 }, command: 'connect', destination: { host, port } }))
      const data = testBytes(4096, host.length)
      expectBytes(await roundTrip(socket, data), data, `the bytes to ${host}`)
    }
    await viaSocks('::1')
    expectBytes(await roundTrip(await httpConnect(proxy, `[0::1]:${port}`), testBytes(100, 1)), testBytes(100, 1), 'the bytes to [0::1]')
    await viaSocks('LOCALHOST')
    await viaSocks('localhost.')
    // A domain that is an address is that address; ::ffff:127.0.0.1 (atyp 4) is 127.0.0.1.
    const mapped = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1])
    const p = Buffer.from([port >> 8, port & 0xff])
    const r = await raw(proxy, Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x04]), mapped, p]), '127.0.0.1', undefined, 12)
    expect(r.data[3]).toBe(0x00)
    const name = Buffer.from('127.0.0.1')
    const d = await raw(proxy, Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03, name.byteLength]), name, p]), '127.0.0.1', undefined, 12)
    expect(d.data[3]).toBe(0x00)
    expect(offers).toEqual([`connect/tcp [::1]:${port}`, `connect/tcp localhost:${port}`, `connect/tcp 127.0.0.1:${port}`])
    expect(socks.stats().failures).toBe(0)
  })

  it('a SOCKS5 domain or HTTP CONNECT host that is not a host name (a port, brackets, a zone, an empty label, an address in another spelling) gets 0x04 / 400 and no offer', async () => {
    const port = await echo()
    const { far, port: proxy } = await setup({ ask: () => true })
    let offers = 0
    far.on('offer', () => offers++)
    for (const host of ['127.0.0.1:22', '[127.0.0.1:22]', '[::1]', 'fe80::1%eth0', 'a..b', 'a b', `${'a'.repeat(64)}.com`, '.', '127.1', '2130706433', '0x7f000001', '0177.0.0.1']) {
      const name = Buffer.from(host, 'latin1')
      const r = await raw(proxy, Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03, name.byteLength]), name, Buffer.from([port >> 8, port & 0xff])]), '127.0.0.1', undefined, 12)
      expect(r.data[3], `the SOCKS5 reply for ${host}`).toBe(0x04)
    }
    for (const target of [`a%b:${port}`, `[127.0.0.1]:${port}`, `a..b:${port}`, `[fe80::1%25eth0]:${port}`, `2130706433:${port}`]) {
      const h = await raw(proxy, `CONNECT ${target} HTTP/1.1\r\n\r\n`)
      expect(h.data.toString('latin1'), `the HTTP answer for ${target}`).toMatch(/^HTTP\/1\.1 400 /)
    }
    expect(offers).toBe(0)
  })

  it('a target the far side denies: SOCKS5 reply 0x02 and HTTP 403; the denial is remembered, so the person is asked once', async () => {
    const port = await echo()
    let asked = 0
    const { socks, port: proxy } = await setup({ ask: () => { asked++; return false } })
    const errors: string[] = []
    socks.on('error', (e) => errors.push(e.code))
    const first = await raw(proxy, socks5Connect(port))
    expect([...first.data]).toEqual([0x05, 0x00, 0x05, 0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0])
    const again = await raw(proxy, socks5Connect(port))
    expect(again.data[3]).toBe(0x02)
    const http = await raw(proxy, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
    expect(http.data.toString('latin1')).toMatch(/^HTTP\/1\.1 403 Forbidden\r\n/)
    expect(asked).toBe(1)
    // The socks client reports it as the ruleset refusal.
    await expect(SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy, type: 5 }, command: 'connect', destination: { host: '127.0.0.1', port } }))
      .rejects.toThrow(/NotAllowed/)
    // Told once (the denial), every request counted.
    expect(errors).toEqual(['E_DENIED'])
    expect(socks.stats().failures).toBe(4)
  })

  it('a kill (a person\'s no) is not pushed out of memory by rule denials of other targets: the target is not asked for again', async () => {
    const port = await echo()
    const { far, socks, port: proxy } = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`] }, { maxDenials: 2 })
    let offers = 0
    far.on('offer', () => offers++)
    await grantThenKill(far, socks, proxy, port)
    // Rule denials (no rule for these ports, nobody to ask) past the memory's size.
    for (const other of [1, 2, 3]) {
      const r = await raw(proxy, socks5Connect(other))
      expect(r.data[3], `the rule's answer for port ${other}`).toBe(0x02)
    }
    expect(offers).toBe(4)
    const again = await within('the answer for the killed target', raw(proxy, socks5Connect(port), '127.0.0.1', undefined, 12))
    expect(again.data[3]).toBe(0x02)
    expect(offers).toBe(4) // not asked again
  })

  it('a kill at the far side denies that target (0x02, not asked again for a while) and nothing else: the proxy stays up', async () => {
    const port = await echo()
    const other = await echo()
    const { far, socks, port: proxy } = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`, `connect/tcp:127.0.0.1:${other}`] })
    let offers = 0
    far.on('offer', () => offers++)
    await grantThenKill(far, socks, proxy, port)
    const again = await within('the refusal of the killed target', raw(proxy, socks5Connect(port)))
    expect(again.data[3]).toBe(0x02)
    expect(offers).toBe(1) // not asked again
    const elsewhere = await raw(proxy, socks5Connect(other), '127.0.0.1', undefined, 12)
    expect(elsewhere.data[3]).toBe(0x00)
    expect(socks.state).toBe('up')
  })

  it('nobody answers at the far side in time: 0x06 (TTL expired), then the target is not asked again for a while (0x02 / 403)', async () => {
    const port = await echo()
    let asked = 0
    const { port: proxy } = await setup({ ask: async () => { asked++; return await new Promise<boolean>(() => {}) } }, { timeoutMs: 500 })
    const first = await within('the answer after the offer timed out', raw(proxy, socks5Connect(port)))
    expect(first.data[3]).toBe(0x06)
    const again = await within('the remembered answer', raw(proxy, socks5Connect(port)))
    expect(again.data[3]).toBe(0x02)
    const http = await within('the remembered answer over HTTP', raw(proxy, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`))
    expect(http.data.toString('latin1')).toMatch(/^HTTP\/1\.1 403 /)
    expect(asked).toBe(1)
  })

  it('a limit is not a refusal: past the peer\'s mappings or the proxy\'s 32 targets in use, 0x01 and HTTP 503 with Retry-After (not 0x02 / 403)', async () => {
    const port = await echo()
    // The peer's limit: one mapping for this peer.
    const tight = await setup({ ask: () => true, maxMappingsPerPeer: 1 })
    const held = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: tight.port, type: 5 }, command: 'connect', destination: { host: '127.0.0.1', port } })
    cleanup.push({ close: () => { held.socket.destroy() } })
    const over = await raw(tight.port, Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 2]), Buffer.from([port >> 8, port & 0xff])]))
    expect(over.data[3]).toBe(0x01)
    const overHttp = await raw(tight.port, `CONNECT 127.0.0.3:${port} HTTP/1.1\r\n\r\n`)
    expect(overHttp.data.toString('latin1')).toMatch(/^HTTP\/1\.1 503 [^]*\r\nRetry-After: \d+\r\n/)
    // The proxy's own limit: 32 targets (127.0.0.1 to .32, all this host) each with a connection open.
    const { port: proxy } = await setup({ ask: () => true })
    const sockets = await within('32 targets in use', Promise.all(Array.from({ length: 32 }, async (_, i) =>
      (await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy, type: 5 }, command: 'connect', destination: { host: `127.0.0.${i + 1}`, port } })).socket)), 20_000)
    cleanup.push({ close: () => { for (const s of sockets) s.destroy() } })
    const full = await raw(proxy, `CONNECT 127.0.0.33:${port} HTTP/1.1\r\n\r\n`)
    expect(full.data.toString('latin1')).toMatch(/^HTTP\/1\.1 503 [^]*\r\nRetry-After: \d+\r\n[^]*E_LIMIT_MAPPINGS/)
    const fullSocks = await raw(proxy, Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x01, 127, 0, 0, 34]), Buffer.from([port >> 8, port & 0xff])]))
    expect(fullSocks.data[3]).toBe(0x01)
  }, 30_000)

  it('a target with a connect under way is not released to make room: the 33rd target gets the limit, the slow connect goes through', async () => {
    const port = await echo()
    // The far side's connects to 127.0.0.2 wait for a gate (a slow target).
    let open!: () => void
    const gate = new Promise<void>((resolve) => { open = resolve })
    const nodeHost = createNodeHost()
    const host = { ...nodeHost, connect: async (...args: Parameters<typeof nodeHost.connect>) => { if (args[1].ip === '127.0.0.2') await gate; await nodeHost.connect(...args) } }
    const { far, port: proxy } = await setup({ ask: () => true, host })
    const slow = raw(proxy, socks5Connect(port).fill(2, 10, 11), '127.0.0.1', undefined, 12)
    await waitFor('the slow target\'s mapping', () => far.mappings().length === 1)
    const sockets = await within('31 more targets in use', Promise.all(Array.from({ length: 31 }, async (_, i) =>
      (await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy, type: 5 }, command: 'connect', destination: { host: `127.0.0.${i + 3}`, port } })).socket)), 20_000)
    cleanup.push({ close: () => { for (const s of sockets) s.destroy() } })
    const full = await within('the 33rd target', raw(proxy, socks5Connect(port).fill(40, 10, 11), '127.0.0.1', undefined, 12))
    expect(full.data[3]).toBe(0x01) // no room: the slow target was not released for it
    open()
    const r = await within('the slow connect to be answered', slow)
    expect(r.data[3]).toBe(0x00)
  }, 30_000)

  it('a refused port: 0x05 (SOCKS5) and 502 (HTTP)', async () => {
    const port = await closedPort()
    const { port: proxy } = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`] })
    const r = await raw(proxy, socks5Connect(port))
    expect(r.data[3]).toBe(0x05)
    const http = await raw(proxy, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`)
    expect(http.data.toString('latin1')).toMatch(/^HTTP\/1\.1 502 Bad Gateway\r\n/)
  })

  it('a name the far side cannot resolve: 0x04 (host unreachable) and HTTP 502', async () => {
    const { port: proxy } = await setup({ allow: ['connect/tcp:no-such-host.invalid:80'] })
    const name = Buffer.from('no-such-host.invalid')
    const r = await within('the answer for an unresolvable name', raw(proxy, Buffer.concat([Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x03, name.byteLength]), name, Buffer.from([0, 80])])), 15_000)
    expect(r.data[3]).toBe(0x04)
    const http = await within('the HTTP answer for an unresolvable name', raw(proxy, 'CONNECT no-such-host.invalid:80 HTTP/1.1\r\n\r\n'), 15_000)
    expect(http.data.toString('latin1')).toMatch(/^HTTP\/1\.1 502 /)
  })

  it('requests to one target at once while a person decides: the person is asked once, every request is served', async () => {
    const port = await echo()
    let asked = 0
    const { port: proxy } = await setup({ ask: async () => { asked++; await new Promise((resolve) => setTimeout(resolve, 200)); return true } })
    const sockets = await within('five CONNECTs at once', Promise.all([1, 2, 3, 4, 5].map(async () => (await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy, type: 5 }, command: 'connect', destination: { host: '127.0.0.1', port } })).socket)), 10_000)
    const backs = await Promise.all(sockets.map(async (socket, i) => await roundTrip(socket, testBytes(8 * 1024, 50 + i))))
    backs.forEach((back, i) => expectBytes(back, testBytes(8 * 1024, 50 + i), `the bytes of request ${i + 1}`))
    expect(asked).toBe(1)
  })

  it('a target\'s mapping without connections is released (the proxy stays up), and asking again does not ask the person again', async () => {
    const port = await echo()
    let asked = 0
    const { far, socks, port: proxy } = await setup({ ask: () => { asked++; return true } }, { mappingIdleMs: 200 })
    const connect = async (seed: number): Promise<void> => {
      const { socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy, type: 5 }, command: 'connect', destination: { host: '127.0.0.1', port } })
      const data = testBytes(4096, seed)
      expectBytes(await roundTrip(socket, data), data, `the bytes of request ${seed}`)
    }
    let away = 0
    socks.on('away', () => away++) // a release mistaken for the peer going away would show here
    await connect(61)
    expect(far.mappings()).toHaveLength(1)
    await waitFor('the idle mapping to be released on both sides', () => far.mappings().length === 0 && socks.stats().channelsOpen === 0)
    expect(socks.state).toBe('up')
    expect(away).toBe(0)
    await connect(62)
    expect(asked).toBe(1)
  })

  it('username/password (RFC 1929): the right pair passes, a wrong one gets 0x01 0x01, no acceptable method 0xFF; HTTP: 407 then 200', async () => {
    const port = await echo()
    const { port: proxy } = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`] }, { users: [{ user: 'ann', pass: 's3cret' }, { user: 'bob', pass: 'hunter2' }] })
    const { socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy, type: 5, userId: 'bob', password: 'hunter2' }, command: 'connect', destination: { host: '127.0.0.1', port } })
    const data = testBytes(64 * 1024, 7)
    expectBytes(await roundTrip(socket, data), data, 'the bytes with auth')
    await expect(SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: proxy, type: 5, userId: 'bob', password: 's3cret' }, command: 'connect', destination: { host: '127.0.0.1', port } }))
      .rejects.toThrow(/Authentication/i)
    const wrong = await raw(proxy, Buffer.concat([Buffer.from([0x05, 0x01, 0x02, 0x01, 3]), Buffer.from('ann'), Buffer.from([6]), Buffer.from('s3cre7')]))
    expect([...wrong.data]).toEqual([0x05, 0x02, 0x01, 0x01])
    const none = await raw(proxy, Buffer.from([0x05, 0x01, 0x00]))
    expect([...none.data]).toEqual([0x05, 0xff])
    const noAuth = await raw(proxy, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`)
    expect(noAuth.data.toString('latin1')).toMatch(/^HTTP\/1\.1 407 Proxy Authentication Required\r\n[^]*Proxy-Authenticate: Basic/)
    const badAuth = await raw(proxy, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nProxy-Authorization: Basic ${Buffer.from('ann:nope').toString('base64')}\r\n\r\n`)
    expect(badAuth.data.toString('latin1')).toMatch(/^HTTP\/1\.1 407 /)
    const ok = await httpConnect(proxy, `127.0.0.1:${port}`, `Proxy-Authorization: Basic ${Buffer.from('ann:s3cret').toString('base64')}\r\n`)
    const more = testBytes(32 * 1024, 8)
    expectBytes(await roundTrip(ok, more), more, 'the bytes through HTTP CONNECT with auth')
  })

  /** HTTP CONNECT to `target`; settles with the socket once `200 Connection established` came (nothing read past it). */
  async function httpConnect (proxy: number, target: string, headers = ''): Promise<net.Socket> {
    const socket = net.connect({ host: '127.0.0.1', port: proxy, allowHalfOpen: true })
    socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${headers}\r\n`)
    const head = await within('the answer to HTTP CONNECT', new Promise<string>((resolve, reject) => {
      let got = Buffer.alloc(0)
      const onData = (c: Buffer): void => {
        got = Buffer.concat([got, c])
        const end = got.indexOf('\r\n\r\n')
        if (end < 0) return
        socket.off('data', onData)
        socket.pause()
        if (end + 4 < got.byteLength) socket.unshift(got.subarray(end + 4))
        resolve(got.subarray(0, end).toString('latin1'))
      }
      socket.on('data', onData)
      socket.on('error', reject)
    }))
    expect(head).toMatch(/^HTTP\/1\.1 200 Connection established/)
    return socket
  }

  it('HTTP CONNECT: 200 and bytes exact both ways (IPv6 in brackets too); other methods 405, a bad target 400', async () => {
    const port = await echo()
    const { port: proxy } = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`, `connect/tcp:[::1]:${port}`] })
    for (const [target, seed] of [[`127.0.0.1:${port}`, 11], [`[::1]:${port}`, 12]] as const) {
      const socket = await httpConnect(proxy, target)
      const data = testBytes(200 * 1024, seed)
      expectBytes(await roundTrip(socket, data), data, `the bytes through HTTP CONNECT to ${target}`)
    }
    const get = await raw(proxy, `GET http://127.0.0.1:${port}/ HTTP/1.1\r\n\r\n`)
    expect(get.data.toString('latin1')).toMatch(/^HTTP\/1\.1 405 Method Not Allowed\r\n[^]*Allow: CONNECT/)
    const bad = await raw(proxy, 'CONNECT nowhere HTTP/1.1\r\n\r\n')
    expect(bad.data.toString('latin1')).toMatch(/^HTTP\/1\.1 400 /)
  })

  it('unsupported command (BIND, UDP ASSOCIATE) 0x07, unsupported address type 0x08', async () => {
    const { port: proxy } = await setup({})
    for (const cmd of [0x02, 0x03]) {
      const r = await raw(proxy, Buffer.from([0x05, 0x01, 0x00, 0x05, cmd, 0x00, 0x01, 127, 0, 0, 1, 0, 80]))
      expect(r.data[3], `command ${cmd}`).toBe(0x07)
    }
    const r = await raw(proxy, Buffer.from([0x05, 0x01, 0x00, 0x05, 0x01, 0x00, 0x07, 1, 2, 3]))
    expect(r.data[3]).toBe(0x08)
  })

  it('abuse: a garbage first byte is cut, a stalled handshake times out, an oversized header gets 431, handshakes at once are bounded; the proxy goes on', async () => {
    const port = await echo()
    const { socks, port: proxy } = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`] }, { handshakeTimeoutMs: 300, maxHandshakesPerIp: 4 })
    const garbage = await within('the proxy to cut a garbage first byte', raw(proxy, Buffer.from([0x00, 0xde, 0xad])))
    expect(garbage.data.byteLength).toBe(0)
    const stall = await stalled(proxy, Buffer.from([0x05, 0x02])) // says two methods, sends one... never
    await within('a stalled handshake to be closed by the proxy', stall.closedAt)
    const huge = await within('the answer to an oversized header', raw(proxy, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nX-Pad: ${'a'.repeat(9000)}\r\n\r\n`))
    expect(huge.data.toString('latin1')).toMatch(/^HTTP\/1\.1 431 /)

    // Bounded: four handshakes from 127.0.0.1 at once, the fifth is reset before any answer.
    const slow = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`] }, { handshakeTimeoutMs: 60_000, maxHandshakesPerIp: 4 })
    const held = await Promise.all([1, 2, 3, 4].map(async () => await stalled(slow.port, Buffer.from([0x05]))))
    const fifth = await within('the fifth handshake to be refused', raw(slow.port, socks5Connect(port)))
    expect(fifth.data.byteLength).toBe(0)
    expect(fifth.reset).toBe(true)
    for (const s of held) s.destroy()
    await waitFor('the proxy to let the stalled handshakes go', () => slow.socks.stats().failures >= 5)
    const { socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: slow.port, type: 5 }, command: 'connect', destination: { host: '127.0.0.1', port } })
    const data = testBytes(16 * 1024, 21)
    expectBytes(await roundTrip(socket, data), data, 'the bytes after the abuse')
    expect(socks.state).toBe('up')
    expect(slow.socks.state).toBe('up')
  })

  it('only the unparsed part is capped: a 20 KiB header in one write gets 431 (not a reset); 20 KiB of data sent with the SOCKS5 request goes through', async () => {
    const port = await echo()
    const { port: proxy } = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`] })
    const huge = await within('the answer to a 20 KiB header', raw(proxy, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\nX-Pad: ${'a'.repeat(20 * 1024)}\r\n\r\n`))
    expect(huge.data.toString('latin1')).toMatch(/^HTTP\/1\.1 431 /)
    const data = testBytes(20 * 1024, 71)
    const r = await within('the data sent with the request to come back', raw(proxy, Buffer.concat([socks5Connect(port), data]), '127.0.0.1', undefined, 12 + data.byteLength))
    expect(r.reset).toBe(false)
    expect([...r.data.subarray(0, 4)]).toEqual([0x05, 0x00, 0x05, 0x00])
    expectBytes(r.data.subarray(12), data, 'the data pipelined after the request')
  })

  it('a bad RFC 1929 version gets 0x01 0xFF then a close; a client still reading a refusal is reset when the proxy closes', async () => {
    const port = await echo()
    const { socks, port: proxy } = await setup({}, { users: [{ user: 'ann', pass: 's3cret' }] })
    const badVersion = await within('the answer to a bad auth version', raw(proxy, Buffer.concat([Buffer.from([0x05, 0x01, 0x02, 0x05, 3]), Buffer.from('ann'), Buffer.from([6]), Buffer.from('s3cret')])))
    expect([...badVersion.data]).toEqual([0x05, 0x02, 0x01, 0xff])
    expect(badVersion.reset).toBe(false)
    // Denied (no rule, nobody to ask); the client keeps its side open and has read the answer.
    const socket = net.connect({ host: '127.0.0.1', port: proxy, allowHalfOpen: true })
    let reset = false
    socket.on('error', () => { reset = true })
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
    const ended = new Promise<void>((resolve) => socket.on('end', () => resolve()))
    socket.on('data', () => {})
    const user = Buffer.concat([Buffer.from([0x01, 3]), Buffer.from('ann'), Buffer.from([6]), Buffer.from('s3cret')])
    socket.write(Buffer.concat([Buffer.from([0x05, 0x01, 0x02]), user, socks5Connect(port).subarray(3)]))
    await within('the refusal', ended)
    await socks.close()
    // The reset shows at the next write (EOF was read already); without it the proxy's socket
    // stays open until its linger (5 s after the refusal), taking what is written.
    socket.write('more')
    await within('the client to be reset by the close', closed, 2500)
    expect(reset).toBe(true)
  })

  it('a source not in allowFrom is reset and counted (refused)', async () => {
    const port = await echo()
    const { socks, port: proxy } = await setup({ allow: [`connect/tcp:127.0.0.1:${port}`] }, { allowFrom: ['127.0.0.1/32'] })
    const refused: string[] = []
    socks.on('refused', ({ src }) => refused.push(src.ip))
    const r = await within('a client from 127.0.0.2 to be ended', raw(proxy, socks5Connect(port), '127.0.0.1', '127.0.0.2'))
    expect(r.reset).toBe(true)
    expect(r.data.byteLength).toBe(0)
    expect(refused).toEqual(['127.0.0.2'])
    expect(socks.stats().refusedSources).toBe(1)
    const ok = await raw(proxy, socks5Connect(port), '127.0.0.1', undefined, 12)
    expect([...ok.data.subarray(0, 4)]).toEqual([0x05, 0x00, 0x05, 0x00])
  })

  it('bad options throw and leave no listener on the signal', async () => {
    const near = await agent()
    const signal = new AbortController().signal
    expect(() => new Socks(near, { peer: 'x', signal, users: [] })).toThrow(/users/)
    expect(() => new Socks(near, { peer: 'x', signal, users: [{ user: '', pass: 'p' }] })).toThrow(/RFC 1929/)
    expect(() => new Socks(near, { peer: 'x', signal, maxHandshakes: 0 })).toThrow(/maxHandshakes/)
    expect(getEventListeners(signal, 'abort')).toHaveLength(0)
  })

  it('a listening port survives accept errors (EMFILE, twice): listenTcp keeps an error listener', async () => {
    const listener = net.createServer((s) => s.end('ok'))
    cleanup.push({ close: () => { listener.close() } })
    const { port } = await listenTcp(listener, '127.0.0.1', 0)
    const emfile = (): Error => Object.assign(new Error('accept EMFILE'), { code: 'EMFILE' })
    expect(() => { listener.emit('error', emfile()); listener.emit('error', emfile()) }).not.toThrow()
    const r = await raw(port, '')
    expect(r.data.toString()).toBe('ok')
  })

  it('closed while it starts: start() rejects with E_ABORTED and the port is free (bound again here)', async () => {
    const far = await agent()
    const near = await agent()
    const port = await closedPort()
    const socks = new Socks(near, { peer: far.peer.peerId, timeoutMs: 10_000 })
    const started = socks.start({ ip: '127.0.0.1', port })
    void socks.close() // while the peer is dialed
    await expect(within('start to settle', started)).rejects.toMatchObject({ code: 'E_ABORTED' })
    expect(socks.state).toBe('closed')
    const again = net.createServer()
    await within('the port to be bound again', new Promise<void>((resolve, reject) => { again.once('error', reject); again.listen(port, '127.0.0.1', resolve) }))
    await new Promise((resolve) => again.close(resolve))
  })

  it('a peer not online yet: with waitForPeer the proxy listens away (0x01) and serves once it joins; without, start fails and nothing listens', async () => {
    const port = await echo()
    const identity = await createIdentity()
    const near = await agent()
    const lone = await createPeer({ server: server().url(), identity })
    const farId = lone.peerId
    await lone.close() // its id, not online
    const early = new Socks(near, { peer: farId, timeoutMs: 5000 })
    await expect(early.start({ ip: '127.0.0.1', port: 0 })).rejects.toMatchObject({ code: 'E_PEER_NOT_FOUND' })
    expect(early.state).toBe('closed')
    const socks = new Socks(near, { peer: farId, timeoutMs: 5000, waitForPeer: true })
    cleanup.push({ close: async () => { await socks.close() } })
    await socks.start({ ip: '127.0.0.1', port: 0 })
    expect(socks.state).toBe('away')
    const r = await within('a request while the peer is not online', raw(socks.address.port, socks5Connect(port)), 3000)
    expect(r.data[3]).toBe(0x01)
    const peer = await createPeer({ server: server().url(), identity })
    const far = createSockAgent(peer, { host: createNodeHost(), allow: [`connect/tcp:127.0.0.1:${port}`] })
    cleanup.push({ close: async () => { await far.close(); await peer.close() } })
    await waitFor('the proxy to be up once the peer joined', () => socks.state === 'up', 15_000)
    const { socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: socks.address.port, type: 5 }, command: 'connect', destination: { host: '127.0.0.1', port } })
    const data = testBytes(4096, 33)
    expectBytes(await roundTrip(socket, data), data, 'the bytes once the peer joined')
  }, 30_000)

  it('the far peer away: requests fail at once with 0x01 / 503; once it is back (same identity) the next request works', async () => {
    const port = await echo()
    const identity = await createIdentity()
    const url = server().url()
    const start = async (): Promise<{ close: () => Promise<void>, id: string }> => {
      const peer = await createPeer({ server: url, identity })
      const a = createSockAgent(peer, { host: createNodeHost(), allow: [`connect/tcp:127.0.0.1:${port}`] })
      return { id: peer.peerId, close: async () => { await a.close(); await peer.close() } }
    }
    let far = await start()
    cleanup.push({ close: async () => { await far.close() } })
    const near = await agent()
    const socks = new Socks(near, { peer: far.id, timeoutMs: 10_000 })
    cleanup.push({ close: async () => { await socks.close() } })
    await socks.start({ ip: '127.0.0.1', port: 0 })
    const { socket } = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: socks.address.port, type: 5 }, command: 'connect', destination: { host: '127.0.0.1', port } })
    const data = testBytes(8 * 1024, 31)
    expectBytes(await roundTrip(socket, data), data, 'the bytes before')
    await far.close()
    await waitFor('the proxy to be away', () => socks.state === 'away')
    const failures = socks.stats().failures
    let errors = 0
    socks.on('error', () => errors++)
    const r = await within('a request while away to fail at once', raw(socks.address.port, socks5Connect(port)), 3000)
    expect(r.data[3]).toBe(0x01)
    const h = await raw(socks.address.port, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`)
    expect(h.data.toString('latin1')).toMatch(/^HTTP\/1\.1 503 /)
    expect(errors).toBe(1) // told once while away, both counted
    expect(socks.stats().failures).toBe(failures + 2)
    far = await start()
    await waitFor('the proxy to be back', () => socks.state === 'up', 15_000)
    const again = await SocksClient.createConnection({ proxy: { host: '127.0.0.1', port: socks.address.port, type: 5 }, command: 'connect', destination: { host: '127.0.0.1', port } })
    const more = testBytes(8 * 1024, 32)
    expectBytes(await roundTrip(again.socket, more), more, 'the bytes after the peer came back')
  }, 30_000)
})
