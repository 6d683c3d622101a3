import { spawn, spawnSync } from 'node:child_process'
import dgram from 'node:dgram'
import { rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import type { Channel } from '../client/mux/channel.ts'
import { io, type Socket } from 'socket.io-client'
import { createIdentity } from '../client/identity.ts'
import { createPeer, type StarsockPeer, type UdpAllocation } from '../client/peer.ts'
import { createSockAgent } from '../client/sock/agent.ts'
import { bridgeUdpEndpoint, registerUdpEndpoint } from '../client/sock/udp-register.node.ts'
import { readUdpHalf, sendUdpHalf, type UdpHalf } from '../client/sock/udp-share.ts'
import type { ServerOptions } from '../server/options.ts'
import type { StarsockServer } from '../server/server.ts'
import { UdpRelay } from '../server/udp-relay.ts'
import { silentLogger } from '../shared/logger.ts'
import { joinWithChallenge, makeIdentity, request } from './helpers/raw-peer.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'
import { udpEcho } from './helpers/sockets.ts'

const BIN = fileURLToPath(new URL('../bin/starsock.js', import.meta.url))

/** A port range of its own for each test file run (vitest runs files in parallel). */
function portRange (size: number): [number, number] {
  const low = 41000 + (process.pid % 400) * 40
  return [low, low + size - 1]
}

/** A plain UDP socket on `host` that records what it gets. */
async function udpSocket (host = '127.0.0.1'): Promise<{ socket: dgram.Socket, got: Buffer[], close: () => void }> {
  const socket = dgram.createSocket('udp4')
  const got: Buffer[] = []
  socket.on('message', (m) => got.push(m))
  await new Promise<void>((resolve) => socket.bind(0, host, resolve))
  return { socket, got, close: () => { try { socket.close() } catch {} } }
}

async function send (s: dgram.Socket, data: Uint8Array, port: number, ip = '127.0.0.1'): Promise<void> {
  await new Promise<void>((resolve, reject) => s.send(data, port, ip, (err) => err != null ? reject(err) : resolve()))
}

/**
 * What a plain UDP program does to register on `port` (the README's steps): send the token, answer
 * the 16-byte cookie with cookie XOR token, wait for the confirmation (the proof XOR 0xff).
 * Forgets the handshake's datagrams.
 */
async function plainRegister (s: { socket: dgram.Socket, got: Buffer[] }, token: string, port: number, ip = '127.0.0.1'): Promise<void> {
  const bytes = Buffer.from(token, 'hex')
  await send(s.socket, bytes, port, ip)
  await waitFor(`the relay's cookie from port ${port}`, () => s.got.length >= 1)
  const cookie = s.got[0] as Buffer
  expect(cookie.byteLength).toBe(16)
  expect(cookie.equals(bytes)).toBe(false)
  const proof = Buffer.from(cookie.map((b, i) => b ^ (bytes[i] ?? 0)))
  await send(s.socket, proof, port, ip)
  await waitFor(`the confirmation from port ${port}`, () => s.got.length >= 2)
  expect(s.got[1]?.equals(Buffer.from(proof.map((b) => b ^ 0xff)))).toBe(true)
  s.got.length = 0
}

/**
 * A UDP NAT on loopback in front of relay port `relayPort`: the inside socket takes one client's
 * datagrams and sends them on from an outside socket; what the relay answers goes back to the
 * client. `rebind()` gives it a new outside port (a NAT whose mapping timed out); with
 * `duplicateMs` set, every datagram from the relay reaches the client twice, the copy that much later.
 */
async function udpNat (relayPort: number): Promise<{ port: number, duplicateMs: number, rebind: () => Promise<void>, close: () => void }> {
  const inside = dgram.createSocket('udp4')
  await new Promise<void>((resolve) => inside.bind(0, '127.0.0.1', resolve))
  let client: dgram.RemoteInfo | undefined
  const nat = {
    port: inside.address().port,
    duplicateMs: 0,
    rebind: async () => {
      const old = outside
      outside = await openOutside()
      old.close()
    },
    close: () => { try { inside.close() } catch {} try { outside.close() } catch {} }
  }
  const openOutside = async (): Promise<dgram.Socket> => {
    const s = dgram.createSocket('udp4')
    s.on('error', () => {})
    s.on('message', (msg, rinfo) => {
      if (rinfo.port !== relayPort || client === undefined) return
      const to = client
      inside.send(msg, to.port, to.address)
      if (nat.duplicateMs > 0) setTimeout(() => { try { inside.send(msg, to.port, to.address) } catch {} }, nat.duplicateMs)
    })
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve))
    return s
  }
  let outside = await openOutside()
  inside.on('message', (msg, rinfo) => {
    client = rinfo
    outside.send(msg, relayPort, '127.0.0.1')
  })
  return nat
}

/** A UDP echo (RFC 862) on `host` that counts what it gets. */
async function echoService (host: string): Promise<{ socket: dgram.Socket, got: Buffer[], close: () => void }> {
  const e = await udpSocket(host)
  e.socket.on('message', (msg, rinfo) => { try { e.socket.send(msg, rinfo.port, rinfo.address) } catch {} })
  return e
}

async function dropped (server: StarsockServer, cause: string): Promise<number> {
  const text = await server.metrics.registry.metrics()
  const m = new RegExp(`^starsock_udp_dropped_total\\{cause="${cause}"\\} (\\d+)$`, 'm').exec(text)
  return Number(m?.[1] ?? 0)
}

/** Settles once `check` holds, polling every 20 ms (bounded by the caller's `within`). */
async function until (check: () => Promise<boolean>): Promise<void> {
  while (!await check()) await new Promise((resolve) => setTimeout(resolve, 20))
}

/** A socket.io client whose TCP connection comes from `localAddress` (another client IP on loopback). */
async function socketFrom (url: string, localAddress: string): Promise<Socket> {
  const socket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true, localAddress } as Parameters<typeof io>[1])
  await within(`a socket.io connection from ${localAddress}`, new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', (err) => reject(err))
  }))
  return socket
}

async function portFree (port: number): Promise<boolean> {
  const s = dgram.createSocket('udp4')
  return await new Promise((resolve) => {
    s.once('error', () => resolve(false))
    s.bind(port, '127.0.0.1', () => { s.close(); resolve(true) })
  })
}

async function rejection (p: Promise<unknown>): Promise<{ code?: string, message: string }> {
  try { await p } catch (err) { return err as { code?: string, message: string } }
  throw new Error('expected a rejection')
}

describe('UDP relay allocations', () => {
  let server: StarsockServer & { port: number }
  const cleanup: Array<{ close: () => unknown }> = []
  const start = async (options: ServerOptions = {}): Promise<StarsockPeer> => {
    server = await startServer({ udpRelay: true, udpPorts: portRange(8), ...options })
    return await peer()
  }
  const peer = async (): Promise<StarsockPeer> => {
    const p = await createPeer({ server: server.url() })
    cleanup.push({ close: async () => await p.close() })
    return p
  }
  /** Register both ends of `a` with their tokens. */
  const register = async (a: UdpAllocation): Promise<[Awaited<ReturnType<typeof udpSocket>>, Awaited<ReturnType<typeof udpSocket>>]> => {
    const one = await udpSocket()
    const two = await udpSocket()
    cleanup.push(one, two)
    await plainRegister(one, a.token1, a.port1)
    await plainRegister(two, a.token2, a.port2)
    expect(await server.metrics.registry.metrics()).toMatch(/^starsock_udp_endpoints [2-9]/m)
    return [one, two]
  }

  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c.close()
    await server?.close()
  })

  it('two plain UDP sockets register with their tokens and swap 10,000 datagrams each way, intact', async () => {
    const p = await start({ udpMaxPacketsPerSecond: 1_000_000 })
    const a = await p.udpAllocate()
    expect(a).toMatchObject({ ip: '127.0.0.1', mode: 'token' })
    expect(a.token1).toMatch(/^[0-9a-f]{32}$/)
    const [one, two] = await register(a)
    const N = 10_000
    const payload = (from: number, i: number): Buffer => Buffer.from(testBytes(1 + (i * 131) % 1200, from * 100_000 + i + 1))
    // Paced in bursts, so the kernel's socket buffers on loopback do not overflow.
    for (let i = 0; i < N; i += 100) {
      for (let j = i; j < i + 100; j++) {
        one.socket.send(payload(1, j), a.port1, '127.0.0.1')
        two.socket.send(payload(2, j), a.port2, '127.0.0.1')
      }
      await waitFor(`datagrams up to ${i + 100} through the relay`, () => two.got.length >= i + 100 && one.got.length >= i + 100, 5000)
    }
    expect(two.got).toHaveLength(N)
    expect(one.got).toHaveLength(N)
    // Boundaries and bytes intact, and the tokens were not forwarded.
    const want1 = new Set(Array.from({ length: N }, (_, i) => payload(1, i).toString('hex')))
    const want2 = new Set(Array.from({ length: N }, (_, i) => payload(2, i).toString('hex')))
    expect(two.got.every((d) => want1.has(d.toString('hex')))).toBe(true)
    expect(one.got.every((d) => want2.has(d.toString('hex')))).toBe(true)
    expect(new Set(two.got.map((d) => d.toString('hex'))).size).toBe(N)
    const metrics = await server.metrics.registry.metrics()
    expect(metrics).toMatch(/^starsock_udp_packets_total 20000$/m)
    expect(metrics).toMatch(/^starsock_udp_allocations 1$/m)
    expect(metrics).toMatch(/^starsock_udp_endpoints 2$/m)
  }, 60_000)

  it('drops a third socket\'s packets and a wrong token, counted; address mode admits only the named source', async () => {
    const p = await start()
    const a = await p.udpAllocate()
    const wrong = await udpSocket()
    cleanup.push(wrong)
    await send(wrong.socket, Buffer.alloc(16, 7), a.port1) // 16 bytes but not the token
    await send(wrong.socket, Buffer.from('hello'), a.port1)
    const [one, two] = await register(a)
    await within('the bad token counted', (async () => { while (await dropped(server, 'bad_token') < 1) await new Promise((resolve) => setTimeout(resolve, 20)) })())
    expect(await dropped(server, 'unregistered')).toBe(1)
    // The wrong socket did not register: the real endpoints did, and the third is foreign now.
    await send(one.socket, Buffer.from('ping'), a.port1)
    await waitFor('ping at endpoint 2', () => two.got.length === 1)
    await send(wrong.socket, Buffer.from('intruder'), a.port1)
    await send(wrong.socket, Buffer.from('intruder'), a.port2)
    await within('two foreign packets counted', (async () => { while (await dropped(server, 'foreign') < 2) await new Promise((resolve) => setTimeout(resolve, 20)) })())
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(two.got.map(String)).toEqual(['ping'])
    expect(one.got).toHaveLength(0)
    expect(wrong.got).toHaveLength(0)

    // address mode: only 127.0.0.1 may register; a socket on 127.0.0.2 may not.
    const b = await p.udpAllocate({ mode: 'address', addresses: ['127.0.0.1'] })
    const other = await udpSocket('127.0.0.2')
    const ok1 = await udpSocket()
    const ok2 = await udpSocket()
    cleanup.push(other, ok1, ok2)
    await send(other.socket, Buffer.from('let me in'), b.port1)
    await within('the other address refused', (async () => { while (await dropped(server, 'address_not_allowed') < 1) await new Promise((resolve) => setTimeout(resolve, 20)) })())
    await send(ok1.socket, Buffer.from('first'), b.port1) // registers; nobody on port 2 yet
    await send(ok2.socket, Buffer.from('second'), b.port2) // registers and is forwarded to ok1
    await waitFor('the second packet at endpoint 1', () => ok1.got.length === 1)
    expect(ok1.got[0]?.toString()).toBe('second')
    await send(other.socket, Buffer.from('still not'), b.port1)
    await within('the other address is foreign now', (async () => { while (await dropped(server, 'foreign') < 3) await new Promise((resolve) => setTimeout(resolve, 20)) })())
    expect(ok2.got).toHaveLength(0)
  }, 30_000)

  it('idle expiry and release free the ports; quotas cut off with a counted cause; an exhausted range is a clear error', async () => {
    const p = await start({ udpIdleMs: 300, udpPorts: portRange(4), udpMaxBytes: 1000, udpMaxPacketsPerSecond: 50 })
    const a = await p.udpAllocate()
    const b = await p.udpAllocate()
    const err = await rejection(p.udpAllocate())
    expect(err.code).toBe('E_UDP_NO_PORTS')
    expect(err.message).toMatch(/No free pair of UDP ports in \d+-\d+/)
    // Release frees at once.
    expect(await portFree(b.port1)).toBe(false)
    await p.udpRelease(b.id)
    expect(await portFree(b.port1)).toBe(true)
    expect(await portFree(b.port2)).toBe(true)
    expect((await rejection(p.udpRefresh(b.id))).code).toBe('E_UDP_NOT_FOUND')
    // Quotas: bytes, then packet rate.
    const [one, two] = await register(a)
    for (let i = 0; i < 15; i++) await send(one.socket, Buffer.alloc(100, i), a.port1)
    await within('the byte quota counted', (async () => { while (await dropped(server, 'quota_bytes') < 5) await new Promise((resolve) => setTimeout(resolve, 20)) })())
    expect(two.got).toHaveLength(10)
    // Idle expiry: nothing for 300 ms and the ports are free.
    await within('the idle allocation to expire', (async () => { while (!await portFree(a.port1)) await new Promise((resolve) => setTimeout(resolve, 50)) })(), 5000)
    expect(await portFree(a.port2)).toBe(true)
    const c = await p.udpAllocate()
    const [x, y] = await register(c)
    const rateDropsBefore = await dropped(server, 'quota_rate')
    for (let i = 0; i < 200; i++) x.socket.send(Buffer.from([i]), c.port1, '127.0.0.1')
    await within('the rate quota counted', (async () => { while (await dropped(server, 'quota_rate') < rateDropsBefore + 1) await new Promise((resolve) => setTimeout(resolve, 20)) })())
    // Every datagram is either delivered or dropped and counted for the rate; the bucket's burst
    // (2 x udpMaxPacketsPerSecond = 100) always gets through.
    await within('each of the 200 datagrams delivered or counted', until(async () => y.got.length + await dropped(server, 'quota_rate') - rateDropsBefore === 200))
    expect(y.got.length).toBeGreaterThanOrEqual(100)
  }, 30_000)

  it('refuses without a join, on a server without the relay, past the per-peer limit, and someone else\'s allocation', async () => {
    const p = await start({ udpMaxAllocationsPerPeer: 2 })
    await p.udpAllocate()
    const mine = await p.udpAllocate()
    expect((await rejection(p.udpAllocate())).code).toBe('E_LIMIT_ALLOCATIONS')
    const q = await peer()
    expect((await rejection(q.udpRelease(mine.id))).code).toBe('E_UDP_NOT_FOUND')
    // Requests in flight count too: a burst cannot get past the limit.
    const burst = await Promise.allSettled(Array.from({ length: 6 }, async () => await q.udpAllocate()))
    expect(burst.filter((r) => r.status === 'fulfilled')).toHaveLength(2)
    const refreshed = await p.udpRefresh(mine.id)
    expect(refreshed.expiresAt).toBeGreaterThanOrEqual(mine.expiresAt)
    await server.close()
    server = await startServer()
    const r = await peer()
    expect((await rejection(r.udpAllocate())).code).toBe('E_UDP_DISABLED')
  }, 30_000)

  it('shares one half with another peer over a sock channel; the other registers with registerUdpEndpoint', async () => {
    const owner = await start()
    let received: Promise<UdpHalf> | undefined
    const other = await peer()
    createSockAgent(other, {
      onChannel: async (channel: Channel) => {
        if (channel.header.type === 'udp-relay') received = readUdpHalf(channel)
        return undefined
      }
    })
    const ownerAgent = createSockAgent(owner)
    cleanup.push({ close: async () => await ownerAgent.close() })
    const a = await owner.udpAllocate()
    await sendUdpHalf(ownerAgent, other.peerId, { ip: a.ip, port: a.port2, token: a.token2, expiresAt: a.expiresAt })
    await waitFor('the half at the other peer', () => received !== undefined)
    const half = await (received as Promise<UdpHalf>)
    expect(half).toEqual({ ip: a.ip, port: a.port2, token: a.token2, expiresAt: a.expiresAt })
    // The owner's side and the other's plain UDP program.
    const mine = await udpSocket()
    const theirs = await udpSocket()
    cleanup.push(mine, theirs)
    await plainRegister(mine, a.token1, a.port1)
    await within('registerUdpEndpoint to settle', registerUdpEndpoint(theirs.socket, half))
    theirs.got.length = 0
    await send(theirs.socket, Buffer.from('voice frame'), half.port, half.ip)
    await waitFor('the frame at the owner', () => mine.got.length === 1)
    await send(mine.socket, Buffer.from('reply'), a.port1)
    await waitFor('the reply at the other', () => theirs.got.length === 1)
    expect([mine.got[0]?.toString(), theirs.got[0]?.toString()]).toEqual(['voice frame', 'reply'])
  }, 30_000)

  it('addresses that are not IPs are refused by name; `starsock relay` checks --allow-ip and --mode address against each other before it joins (one line, exit 1)', async () => {
    const p = await start()
    const err = await rejection(p.udpAllocate({ mode: 'address', addresses: ['127.0.0.1', '999.1.1.1'] }))
    expect(err).toMatchObject({ code: 'E_BAD_REQUEST', message: 'addresses must be IP addresses: "999.1.1.1" is not one' })
    // The server is not asked: a server URL nothing listens on still gives the line about the flags.
    const url = 'http://127.0.0.1:1'
    const cases: Array<[string[], string]> = [
      [['--mode', 'address', '--allow-ip', '999.1.1.1'], "error: option '--allow-ip <ip>' argument '999.1.1.1' is invalid. 999.1.1.1 is not an IP address"],
      [['--allow-ip', '127.0.0.1'], 'starsock relay: --allow-ip is for --mode address (token mode registers by the token handshake only)'],
      [['--mode', 'open', '--allow-ip', '127.0.0.1'], 'starsock relay: --allow-ip is for --mode address (open mode takes a first packet from anywhere)'],
      [['--mode', 'address'], 'starsock relay: --mode address needs --allow-ip: the source IPs whose first packet may register']
    ]
    for (const [flags, line] of cases) {
      const r = spawnSync(process.execPath, [BIN, 'relay', '--server', url, '--key', `/tmp/starsock-relay-test-${process.pid}`, '--once', ...flags], { encoding: 'utf8', timeout: 20_000 })
      expect(r.status, flags.join(' ')).toBe(1)
      expect(r.stderr.trim(), flags.join(' ')).toBe(line)
    }
  }, 30_000)

  it('`starsock relay --once --json` prints an allocation; a bad range is one line and exit 1', async () => {
    await start()
    // Not spawnSync: the server runs in this process and must answer meanwhile.
    const r = await within('starsock relay to exit', new Promise<{ status: number | null, stdout: string, stderr: string }>((resolve) => {
      const proc = spawn(process.execPath, [BIN, 'relay', '--server', server.url(), '--key', `/tmp/starsock-relay-test-${process.pid}`, '--once', '--json'])
      let stdout = ''
      let stderr = ''
      proc.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
      proc.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
      proc.once('exit', (status) => resolve({ status, stdout, stderr }))
    }), 20_000)
    expect(r.stderr).toBe('')
    expect(r.status).toBe(0)
    const a = JSON.parse(r.stdout) as UdpAllocation
    expect(a).toMatchObject({ ip: '127.0.0.1', mode: 'token' })
    const [low, high] = portRange(8)
    expect([a.port1, a.port2].map((port) => port >= low && port <= high), `ports ${a.port1} and ${a.port2} within the relay's ${low}-${high}`).toEqual([true, true])
    expect(a.port2).not.toBe(a.port1)
    const bad = spawnSync(process.execPath, [BIN, 'serve', '--udp-relay', '--udp-ports', '5-3'], { encoding: 'utf8', timeout: 20_000 })
    expect(bad.status).not.toBe(0)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
    expect(bad.stderr).toContain('--udp-ports')
  }, 30_000)

  it('`starsock relay --local1` registers for an unmodified UDP program and carries its datagrams; SIGTERM releases', async () => {
    await start()
    const echo = await udpEcho() // knows nothing of tokens or cookies
    cleanup.push(echo)
    const proc = spawn(process.execPath, [BIN, 'relay', '--server', server.url(), '--key', `/tmp/starsock-relay-test-${process.pid}`, '--json', '--local1', `127.0.0.1:${echo.port}`])
    let stdout = ''
    let stderr = ''
    proc.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve))
    cleanup.push({ close: () => { proc.kill('SIGKILL'); rmSync(`/tmp/starsock-relay-test-${process.pid}`, { force: true }) } })
    await waitFor('the allocation and the bridge of endpoint 1 printed', () => stdout.split('\n').length >= 3, 20_000)
    const [a, bridge] = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>) as [UdpAllocation, { endpoint: number, local: string }]
    expect(bridge).toMatchObject({ endpoint: 1, local: `127.0.0.1:${echo.port}` })
    const me = await udpSocket()
    cleanup.push(me)
    await plainRegister(me, a.token2, a.port2)
    for (let i = 0; i < 5; i++) await send(me.socket, Buffer.from(`ping ${i}`), a.port2)
    await waitFor('5 echoes through the relay and the bridge', () => me.got.length === 5)
    expect(me.got.map(String)).toEqual(['ping 0', 'ping 1', 'ping 2', 'ping 3', 'ping 4'])
    expect(echo.received()).toBe(5)
    proc.kill('SIGTERM')
    expect(await within('starsock relay to exit after SIGTERM', exited, 10_000)).toBe(0)
    expect(stderr).toBe('')
    await within('the released ports to be free', until(async () => await portFree(a.port2)))
  }, 40_000)

  it('expires at its hard lifetime even with traffic, unless refreshed', async () => {
    const p = await start({ udpLifetimeMs: 600, udpIdleMs: 10_000 })
    const kept = await p.udpAllocate()
    const lapsed = await p.udpAllocate()
    const [one] = await register(lapsed)
    const refresher = setInterval(() => { void p.udpRefresh(kept.id).catch(() => {}) }, 150)
    cleanup.push({ close: () => clearInterval(refresher) })
    const traffic = setInterval(() => one.socket.send(Buffer.from('x'), lapsed.port1, '127.0.0.1'), 50)
    cleanup.push({ close: () => clearInterval(traffic) })
    await within('the unrefreshed allocation to reach its lifetime', (async () => { while (!await portFree(lapsed.port1)) await new Promise((resolve) => setTimeout(resolve, 50)) })(), 5000)
    expect(await portFree(kept.port1)).toBe(false) // refreshed: still held
    expect((await p.udpRefresh(kept.id)).id).toBe(kept.id)
  }, 30_000)

  it('a registration with a forged source (the victim\'s) gets the victim one cookie and none of the traffic', async () => {
    const p = await start()
    const a = await p.udpAllocate()
    const victim = await udpSocket('127.0.0.2')
    const attacker = await udpSocket()
    cleanup.push(victim, attacker)
    // A packet with a forged source looks to the relay exactly like this one: the token, once,
    // from the victim's address. The victim never echoes the cookie; from now on only the attacker sends.
    await send(victim.socket, Buffer.from(a.token1, 'hex'), a.port1)
    await waitFor('the cookie at the victim', () => victim.got.length === 1)
    await plainRegister(attacker, a.token2, a.port2)
    for (let i = 0; i < 100; i++) attacker.socket.send(Buffer.from(`flood ${i}`), a.port2, '127.0.0.1')
    await within('100 datagrams dropped for want of a registered endpoint 1', until(async () => await dropped(server, 'no_peer') >= 100))
    expect(victim.got).toHaveLength(1)
    expect(victim.got[0]?.byteLength).toBe(16)
    // Forged tokens again and again: the relay answers only a few per second per port.
    for (let i = 0; i < 40; i++) victim.socket.send(Buffer.from(a.token1, 'hex'), a.port1, '127.0.0.1')
    await within('tokens over the rate dropped', until(async () => await dropped(server, 'challenge_rate') >= 20))
    // Each of the 40 is answered (a cookie at the victim, after the first one) or dropped and counted.
    await within('each of the 40 tokens answered or counted', until(async () => victim.got.length - 1 + await dropped(server, 'challenge_rate') === 40))
    expect(victim.got.length).toBeLessThan(20)

    // Address mode registers without the handshake: the victim gets at most 8 datagrams.
    const b = await p.udpAllocate({ mode: 'address', addresses: ['127.0.0.2', '127.0.0.1'] })
    victim.got.length = 0
    await send(victim.socket, Buffer.from('forged first packet'), b.port1)
    for (let i = 0; i < 100; i++) attacker.socket.send(Buffer.from(`flood ${i}`), b.port2, '127.0.0.1')
    await within('92 datagrams dropped as unverified', until(async () => await dropped(server, 'unverified') >= 92))
    await waitFor('the budget of 8 at the victim', () => victim.got.length >= 8)
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(victim.got.map(String)).toEqual(Array.from({ length: 8 }, (_, i) => `flood ${i}`))
    // The real endpoint proves its address with the handshake and then gets everything.
    victim.got.length = 0
    await plainRegister(victim, b.token1, b.port1)
    for (let i = 0; i < 20; i++) await send(attacker.socket, Buffer.from(`after ${i}`), b.port2)
    await waitFor('20 datagrams at the verified endpoint', () => victim.got.length === 20)
  }, 30_000)

  it('a source that is one of the server\'s own ports never registers and gets nothing (no loops)', async () => {
    const p = await start()
    const open = await p.udpAllocate({ mode: 'open' })
    const tokened = await p.udpAllocate()
    // UDP on the server's own (TCP) port number: what a packet forged from the server looks like.
    const own = dgram.createSocket('udp4')
    const ownGot: Buffer[] = []
    own.on('message', (m) => ownGot.push(m))
    await new Promise<void>((resolve) => own.bind(server.port, '127.0.0.1', resolve))
    cleanup.push({ close: () => own.close() })
    await send(own, Buffer.from('register me'), open.port1)
    await send(own, Buffer.from(tokened.token1, 'hex'), tokened.port1)
    await within('two loop packets counted', until(async () => await dropped(server, 'loop') >= 2))
    const other = await udpSocket()
    cleanup.push(other)
    await plainRegister(other, tokened.token2, tokened.port2)
    for (let i = 0; i < 10; i++) await send(other.socket, Buffer.from(`x${i}`), open.port2)
    for (let i = 0; i < 10; i++) await send(other.socket, Buffer.from(`y${i}`), tokened.port2)
    await within('20 datagrams dropped with nobody on port 1', until(async () => await dropped(server, 'no_peer') >= 20))
    expect(ownGot).toHaveLength(0)
    expect(await server.metrics.registry.metrics()).toMatch(/^starsock_udp_endpoints 2$/m)
  }, 30_000)

  it('25 identities from one IP hold at most udpMaxAllocationsPerIp; a peer from another IP still gets a pair', async () => {
    await start({ udpPorts: portRange(16), udpMaxAllocationsPerIp: 6 })
    const replies: unknown[] = []
    const join = async (from: string): Promise<Socket> => {
      const socket = await socketFrom(server.url(), from)
      cleanup.push({ close: () => socket.close() })
      const me = await makeIdentity(server.port)
      await joinWithChallenge(socket, me.key, me.addr)
      return socket
    }
    for (let i = 0; i < 25; i++) {
      const socket = await join('127.0.0.1')
      for (let j = 0; j < 4; j++) replies.push((await request(socket, 'starsock:udp-allocate', [{}]))[0])
    }
    expect(replies.filter((err) => err === null)).toHaveLength(6)
    const refusals = replies.filter((err) => typeof err === 'string' && err.endsWith('[E_LIMIT_ALLOCATIONS_PER_IP]'))
    expect(refusals).toHaveLength(94) // the first identity hit its own limit of 4 first
    expect(refusals[0]).toBe('Peers from this IP address hold 6 allocations already (udpMaxAllocationsPerIp=6) [E_LIMIT_ALLOCATIONS_PER_IP]')
    const other = await join('127.0.0.2')
    expect([...server.rendezvous.sessions.values()].map((s) => s.ip)).toContain('127.0.0.2')
    const [err, allocation] = await request(other, 'starsock:udp-allocate', [{}])
    expect(err).toBeNull()
    const { port1, port2 } = allocation as UdpAllocation
    const [low, high] = portRange(16)
    // A pair of the range's free ports: the six held take 12 of its 16.
    expect([port1, port2].map((port) => port >= low && port <= high), `ports ${port1} and ${port2} within the relay's ${low}-${high}`).toEqual([true, true])
    expect(port2).not.toBe(port1)
    expect(await server.metrics.registry.metrics()).toMatch(/^starsock_limit_hits_total\{limit="E_LIMIT_ALLOCATIONS_PER_IP"\} 94$/m)
  }, 30_000)

  it('allocations end a grace after their owner left, and are kept when the owner joins again in time', async () => {
    await start({ udpOwnerGraceMs: 2500 })
    const stayer = await createIdentity()
    const first = await createPeer({ server: server.url(), identity: stayer })
    const leaver = await peer()
    const kept = await first.udpAllocate()
    const ended = await leaver.udpAllocate()
    const [one, two] = await register(kept)
    await first.close()
    await leaver.close()
    // The same identity comes back (a reconnect) well within the grace.
    const again = await createPeer({ server: server.url(), identity: stayer })
    cleanup.push({ close: async () => await again.close() })
    await within('the left owner\'s allocation to end after the grace', until(async () => await portFree(ended.port1)), 10_000)
    expect(await portFree(ended.port2)).toBe(true)
    expect(await server.metrics.registry.metrics()).toMatch(/^starsock_udp_allocations_ended_total\{cause="owner_left"\} 1$/m)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(await portFree(kept.port1)).toBe(false)
    expect((await again.udpRefresh(kept.id)).id).toBe(kept.id)
    await send(one.socket, Buffer.from('still here'), kept.port1)
    await waitFor('a datagram through the kept allocation', () => two.got.length === 1)
  }, 30_000)

  it('a completed handshake from a new socket (a NAT rebinding) moves the endpoint there; it gets every datagram', async () => {
    const p = await start()
    const a = await p.udpAllocate()
    const [one, two] = await register(a)
    await send(two.socket, Buffer.from('before'), a.port2)
    await waitFor('a datagram at endpoint 1 before the rebinding', () => one.got.length === 1)
    // The same program, seen from a new source port (its NAT mapping changed).
    const rebound = await udpSocket()
    cleanup.push(rebound)
    await within('the handshake from the new source to be confirmed', registerUdpEndpoint(rebound.socket, { ip: '127.0.0.1', port: a.port1, token: a.token1 }, { timeoutMs: 3000 }))
    rebound.got.length = 0
    for (let i = 0; i < 50; i++) await send(two.socket, Buffer.from(`after ${i}`), a.port2)
    await waitFor('50 datagrams at the moved endpoint', () => rebound.got.length === 50)
    expect(rebound.got.map(String)).toEqual(Array.from({ length: 50 }, (_, i) => `after ${i}`))
    expect(one.got.map(String)).toEqual(['before'])
    // The old source is foreign now; the new one sends.
    await send(one.socket, Buffer.from('stale'), a.port1)
    await send(rebound.socket, Buffer.from('from the new port'), a.port1)
    await waitFor('the moved endpoint\'s datagram at endpoint 2', () => two.got.length === 1)
    expect(two.got.map(String)).toEqual(['from the new port'])
    expect(await dropped(server, 'foreign')).toBe(1)
  }, 30_000)

  it('open mode: a stranger\'s first datagram does not lock out the real program\'s handshake, and no first packet displaces it', async () => {
    const p = await start()
    const a = await p.udpAllocate({ mode: 'open' })
    const stranger = await udpSocket('127.0.0.3')
    const late = await udpSocket('127.0.0.4')
    const real = await udpSocket()
    const other = await udpSocket()
    cleanup.push(stranger, late, real, other)
    await send(stranger.socket, Buffer.from('x'), a.port1) // takes port 1 by a first packet, unverified
    await within('the stranger\'s packet to reach the relay', until(async () => await dropped(server, 'no_peer') >= 1))
    await plainRegister(other, a.token2, a.port2)
    await within('the real program\'s handshake on port 1', registerUdpEndpoint(real.socket, { ip: '127.0.0.1', port: a.port1, token: a.token1 }, { timeoutMs: 3000 }))
    real.got.length = 0
    await send(late.socket, Buffer.from('me too'), a.port1) // a first packet: never displaces the endpoint
    for (let i = 0; i < 20; i++) await send(other.socket, Buffer.from(`d${i}`), a.port2)
    await waitFor('20 datagrams at the real program', () => real.got.length === 20)
    await within('the later first packet dropped as foreign', until(async () => await dropped(server, 'foreign') >= 1))
    expect(stranger.got).toHaveLength(0)
    expect(late.got).toHaveLength(0)
    expect(await dropped(server, 'unverified')).toBe(0)
  }, 30_000)

  it('an echo service registered through forged tokens gets only the rate-limited cookies, never registers, and nothing loops', async () => {
    const p = await start({ udpMaxPacketsPerSecond: 100_000 })
    const a = await p.udpAllocate()
    const e1 = await echoService('127.0.0.2')
    const e2 = await echoService('127.0.0.3')
    cleanup.push(e1, e2)
    // A packet with a forged source (the echo's) looks to the relay like one from the echo itself.
    await send(e1.socket, Buffer.from(a.token1, 'hex'), a.port1)
    await send(e2.socket, Buffer.from(a.token2, 'hex'), a.port2)
    await within('both echoed cookies dropped as reflected', until(async () => await dropped(server, 'reflected') >= 2))
    await send(e1.socket, Buffer.from('one forged datagram'), a.port1)
    await within('the forged datagram dropped as unregistered', until(async () => await dropped(server, 'unregistered') >= 1))
    for (let i = 0; i < 40; i++) e1.socket.send(Buffer.from(a.token1, 'hex'), a.port1, '127.0.0.1')
    await within('forged tokens over the rate dropped', until(async () => await dropped(server, 'challenge_rate') >= 20))
    await new Promise((resolve) => setTimeout(resolve, 1000))
    const metrics = await server.metrics.registry.metrics()
    expect(metrics).toMatch(/^starsock_udp_endpoints 0$/m)
    expect(metrics).toMatch(/^starsock_udp_packets_total 0$/m)
    expect(e2.got).toHaveLength(1)
    expect(e1.got.length).toBeLessThanOrEqual(12) // cookies only: a burst of 8, then 4 a second
    expect(e1.got.every((d) => d.byteLength === 16)).toBe(true)
    const echoedCookies = e1.got.length + e2.got.length
    expect(await dropped(server, 'reflected')).toBe(echoedCookies)

    // Open mode registers echoes by a first packet: they still get at most the unverified budget.
    const b = await p.udpAllocate({ mode: 'open' })
    await send(e1.socket, Buffer.from('register me'), b.port1)
    await within('the first packet with nobody on port 2', until(async () => await dropped(server, 'no_peer') >= 1))
    await send(e2.socket, Buffer.from('ping-pong'), b.port2)
    await within('the ping-pong cut by the budget of unverified endpoints', until(async () => await dropped(server, 'unverified') >= 1))
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect((await server.metrics.registry.metrics())).toMatch(/^starsock_udp_packets_total (1[0-6]|[0-9])$/m)
  }, 30_000)

  it('registerUdpEndpoint starts again with the token after a 16-byte reply that was not the cookie', async () => {
    const p = await start()
    const a = await p.udpAllocate()
    const [one, two] = await register(a)
    // Use up port 1's answers to tokens, so the next token gets no cookie at once.
    const other = await udpSocket()
    cleanup.push(other)
    for (let i = 0; i < 12; i++) other.socket.send(Buffer.from(a.token1, 'hex'), a.port1, '127.0.0.1')
    await within('tokens over the rate dropped', until(async () => await dropped(server, 'challenge_rate') >= 1))
    // Endpoint 1 registers again; the first 16 bytes it gets from the port are endpoint 2's data.
    const again = registerUdpEndpoint(one.socket, { ip: '127.0.0.1', port: a.port1, token: a.token1 }, { timeoutMs: 4000, retryMs: 200 })
    await send(two.socket, Buffer.alloc(16, 0x5a), a.port2)
    await within('the registration to be confirmed after all', again, 6000)
  }, 30_000)

  it('the bridge passes no late duplicate of the handshake to the program, and registers again after a NAT rebinding', async () => {
    const p = await start()
    const a = await p.udpAllocate()
    const echo = await udpEcho()
    const nat = await udpNat(a.port1)
    cleanup.push(echo, nat)
    nat.duplicateMs = 50 // the network repeats the cookie and the confirmation, late
    const bridge = await bridgeUdpEndpoint({ ip: '127.0.0.1', port: nat.port, token: a.token1 }, { ip: '127.0.0.1', port: echo.port }, { reregisterIdleMs: 300 })
    cleanup.push(bridge)
    const me = await udpSocket()
    cleanup.push(me)
    await plainRegister(me, a.token2, a.port2)
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(echo.received()).toBe(0)
    nat.duplicateMs = 0
    for (let i = 0; i < 5; i++) await send(me.socket, Buffer.from(`ping ${i}`), a.port2)
    await waitFor('5 echoes through the bridge', () => me.got.length === 5)
    await nat.rebind()
    // The relay still sends to the old mapping; the bridge hears nothing, registers again.
    let n = 0
    const pinger = setInterval(() => me.socket.send(Buffer.from(`again ${n++}`), a.port2, '127.0.0.1'), 100)
    cleanup.push({ close: () => clearInterval(pinger) })
    await waitFor('an echo through the new mapping', () => me.got.some((d) => String(d).startsWith('again')), 5000)
    clearInterval(pinger)
    expect(bridge.counts.registrations).toBeGreaterThanOrEqual(2)
    expect(me.got.every((d) => /^(ping|again) \d+$/.test(String(d)))).toBe(true)
    expect(await dropped(server, 'foreign')).toBe(0) // the old mapping is gone; nothing came from it
  }, 30_000)

  it('the relay refuses a bad maxAllocationsPerIp or ownerGraceMs with an exact RangeError', () => {
    const base = { ports: portRange(6), bindHost: '127.0.0.1', publicIp: '127.0.0.1', maxAllocationsPerPeer: 4, idleMs: 60_000, lifetimeMs: 60_000, maxBytes: 1e9, maxPacketsPerSecond: 1000, logger: silentLogger }
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => new UdpRelay({ ...base, maxAllocationsPerIp: bad })).toThrow(new RangeError(`maxAllocationsPerIp must be an integer of at least 1 or Infinity, got ${bad}`))
    for (const bad of [-1, 0.5, Infinity, Number.NaN]) expect(() => new UdpRelay({ ...base, ownerGraceMs: bad })).toThrow(new RangeError(`ownerGraceMs must be an integer number of milliseconds of at least 0, got ${bad}`))
    void new UdpRelay({ ...base, maxAllocationsPerIp: Infinity, ownerGraceMs: 0 }).close()
  })

  it('an allocation still binding when the relay closes is refused and leaves no port taken', async () => {
    const relay = new UdpRelay({ ports: portRange(6), bindHost: '127.0.0.1', publicIp: '127.0.0.1', maxAllocationsPerPeer: 4, idleMs: 60_000, lifetimeMs: 60_000, maxBytes: 1e9, maxPacketsPerSecond: 1000, logger: silentLogger })
    const pending = relay.allocate('peer')
    void relay.close()
    expect((await rejection(pending)).code).toBe('E_SHUTDOWN')
    for (let port = portRange(6)[0]; port <= portRange(6)[1]; port++) expect(await portFree(port)).toBe(true)
    expect(relay.size).toBe(0)
  })
})
