import dgram from 'node:dgram'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createPeer, type UdpAllocation } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import { sendUdpHalf } from '../client/sock/udp-share.ts'
import { parseRule } from '../shared/sock-rules.ts'
import { MAX_UDP_RELAY_SHARES, takeUdpRelay, type UdpRelayEvent } from '../cli/udp-relay-take.ts'
import type { StarsockError } from '../shared/errors.ts'
import type { StarsockServer } from '../server/server.ts'
import { peerIdOf, Programs, type Program } from './helpers/programs.ts'
import { startServer, waitFor, within } from './helpers/server.ts'

/** A port range of its own for each run of this file (other files use 41000-57000). */
function portRange (size: number): [number, number] {
  const low = 58000 + (process.pid % 100) * 40
  return [low, low + size - 1]
}

/** A plain UDP program on 127.0.0.1 that records what it gets (it knows nothing of tokens). */
async function udpProgram (): Promise<{ socket: dgram.Socket, port: number, got: Buffer[], close: () => void }> {
  const socket = dgram.createSocket('udp4')
  const got: Buffer[] = []
  socket.on('message', (m) => got.push(m))
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  return { socket, port: socket.address().port, got, close: () => { try { socket.close() } catch {} } }
}

async function send (s: dgram.Socket, data: Uint8Array, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => s.send(data, port, '127.0.0.1', (err) => err != null ? reject(err) : resolve()))
}

async function portFree (port: number): Promise<boolean> {
  const s = dgram.createSocket('udp4')
  return await new Promise((resolve) => {
    s.once('error', () => resolve(false))
    s.bind(port, '127.0.0.1', () => { s.close(); resolve(true) })
  })
}

/** The JSON lines `p` printed on stdout. */
function jsonLines (p: Program): Array<Record<string, unknown>> {
  return p.out().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
}

/** Datagram `i` of `who`: a size of its own (1 to ~1200 bytes), content that says who and which. */
function datagram (who: string, i: number): Buffer {
  const head = Buffer.from(`${who} ${i} `)
  return Buffer.concat([head, Buffer.alloc((i * 37) % 1200, i % 251)])
}

describe('starsock relay --share and --release, listen --allow udp-relay (the programs)', () => {
  let server: StarsockServer & { port: number }
  let dir: string
  const programs = new Programs()
  const cleanup: Array<{ close: () => void }> = []

  beforeEach(async () => {
    server = await startServer({ udpRelay: true, udpPorts: portRange(8) })
    dir = mkdtempSync(join(tmpdir(), 'starsock-relay-share-'))
  })
  afterEach(async () => {
    await programs.cleanup()
    for (const c of cleanup.splice(0)) c.close()
    await server.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('relay --share hands endpoint 2 to a peer whose udp-relay rule names it; two plain UDP programs swap datagrams exact; SIGTERM ends both sides', async () => {
    const a = await udpProgram()
    const b = await udpProgram()
    cleanup.push(a, b)
    const sharerKey = join(dir, 'sharer')
    const sharerId = peerIdOf(sharerKey)
    const listenerId = peerIdOf(join(dir, 'listener'))
    // The sharer starts first: it waits for the peer to come online.
    const relay = programs.start(['relay', '--server', server.url(), '--key', sharerKey, '--share', listenerId, '--local1', `127.0.0.1:${a.port}`, '--json'])
    await waitFor('the sharer waiting for its peer', () => relay.err().includes(`starsock relay: waiting for ${listenerId} to come online (up to 60 s)\n`), 30_000)
    const listen = programs.start(['listen', '--server', server.url(), '--key', join(dir, 'listener'), '--allow', `udp-relay@${sharerId}`, '--udp-relay-local', `127.0.0.1:${b.port}`, '--no-prompt', '--json'])
    const ready = await listen.event('ready', 30_000)
    expect(ready.commands).toEqual([`starsock relay --server ${server.url()} --share ${listenerId}`])
    await waitFor('the share taken', () => jsonLines(relay).some((l) => l.shared !== undefined), 30_000)
    const [allocation, bridge1, shared] = jsonLines(relay) as [UdpAllocation, { endpoint: number, via: number }, { shared: string, taken: string, via: number }]
    expect(bridge1).toMatchObject({ endpoint: 1, local: `127.0.0.1:${a.port}` })
    expect(shared).toMatchObject({ shared: listenerId, endpoint: 2, taken: 'bridged' })
    const taken = await listen.event('udp-relay')
    expect(taken).toMatchObject({ peerId: sharerId, rule: `udp-relay@${sharerId}`, relay: { ip: allocation.ip, port: allocation.port2 }, local: { ip: '127.0.0.1', port: b.port }, via: shared.via })
    // Each program sends to its bridge's port, as to any UDP peer; in rounds of 20 each way (the
    // relay's packet-rate quota drops bursts past it).
    const n = 200
    for (let i = 0; i < n; i += 20) {
      for (let j = i; j < i + 20; j++) {
        await send(a.socket, datagram('a', j), bridge1.via)
        await send(b.socket, datagram('b', j), shared.via)
      }
      await waitFor(`datagrams ${i} to ${i + 19} at both programs`, () => a.got.length >= i + 20 && b.got.length >= i + 20, 20_000)
        .catch((err: Error) => { throw new Error(`${err.message}: a got ${a.got.length}, b got ${b.got.length}`) })
    }
    const sorted = (list: Buffer[]): string[] => list.map((d) => d.toString('hex')).sort()
    expect(sorted(b.got)).toEqual(sorted(Array.from({ length: n }, (_, i) => datagram('a', i))))
    expect(sorted(a.got)).toEqual(sorted(Array.from({ length: n }, (_, i) => datagram('b', i))))
    expect(await relay.stop()).toBe(0)
    const ended = await listen.event('udp-relay:end')
    expect(ended).toMatchObject({ peerId: sharerId, relay: { port: allocation.port2 }, counts: { toLocal: n, toRelay: n } })
    await within('the released ports to be free', (async () => { while (!await portFree(allocation.port2)) await new Promise((resolve) => setTimeout(resolve, 50)) })(), 10_000)
  }, 90_000)

  it('a share to a peer without a matching rule is refused and said so on both sides; the allocation is released', async () => {
    const sharerKey = join(dir, 'sharer')
    const sharerId = peerIdOf(sharerKey)
    const otherId = peerIdOf(join(dir, 'other'))
    const listenerId = peerIdOf(join(dir, 'listener'))
    // A rule for another peer, and a connect rule: neither lets the sharer hand over a half.
    const listen = programs.start(['listen', '--server', server.url(), '--key', join(dir, 'listener'), '--allow', `udp-relay@${otherId}`, '--allow', 'connect/tcp:127.0.0.1:9', '--no-prompt', '--json'])
    await listen.event('ready', 30_000)
    const relay = programs.start(['relay', '--server', server.url(), '--key', sharerKey, '--share', listenerId, '--json'])
    expect(await within('relay --share to exit', relay.exited, 30_000)).toBe(1)
    const lines = relay.err().trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(new RegExp(`^starsock relay: ${listenerId} did not take endpoint 2: No udp-relay rule allows this peer .*\\(it needs --allow udp-relay@${sharerId}\\) \\(E_DENIED\\); allocation [0-9a-f]+ released$`))
    expect(await listen.event('udp-relay:refused')).toMatchObject({ peerId: sharerId, secure: true, code: 'E_DENIED' })
    const allocation = jsonLines(relay)[0] as unknown as UdpAllocation
    expect(await portFree(allocation.port2)).toBe(true)
    expect(await portFree(allocation.port1)).toBe(true)
  }, 60_000)

  it('relay --release frees an allocation made with --once (its ports stop forwarding); one that is gone is one clear line', async () => {
    const key = join(dir, 'owner')
    const once = programs.start(['relay', '--server', server.url(), '--key', key, '--once', '--json'])
    expect(await within('relay --once to exit', once.exited, 30_000)).toBe(0)
    const allocation = jsonLines(once)[0] as unknown as UdpAllocation
    // Outlives its process (the owner's grace): its ports are still held.
    expect(await portFree(allocation.port1)).toBe(false)
    const stranger = programs.start(['relay', '--server', server.url(), '--key', join(dir, 'stranger'), '--release', allocation.id])
    expect(await within('relay --release by another key to exit', stranger.exited, 30_000)).toBe(1)
    expect(stranger.err()).toMatch(new RegExp(`^starsock relay: allocation ${allocation.id} is gone: .*\\(E_UDP_NOT_FOUND\\)\\n$`))
    expect(await portFree(allocation.port1)).toBe(false)
    const release = programs.start(['relay', '--server', server.url(), '--key', key, '--release', allocation.id])
    expect(await within('relay --release to exit', release.exited, 30_000)).toBe(0)
    expect(release.out()).toBe(`released allocation ${allocation.id}\n`)
    expect([await portFree(allocation.port1), await portFree(allocation.port2)]).toEqual([true, true])
    const again = programs.start(['relay', '--server', server.url(), '--key', key, '--release', allocation.id])
    expect(await within('a second relay --release to exit', again.exited, 30_000)).toBe(1)
    expect(again.err().trim().split('\n')).toHaveLength(1)
    expect(again.err()).toContain(`allocation ${allocation.id} is gone`)
    const bad = programs.start(['relay', '--server', server.url(), '--key', key, '--release', allocation.id, '--share', peerIdOf(join(dir, 'x'))])
    expect(await within('relay --release --share to exit', bad.exited, 30_000)).toBe(1)
    expect(bad.err()).toBe('starsock relay: --release takes no --share, --once, --local1 or --local2\n')
  }, 90_000)

  it('takeUdpRelay: a half is taken only under a rule; bad halves and too many at once are refused with a code, on both sides', async () => {
    const agents: SockAgent[] = []
    const agent = async (options: Parameters<typeof createSockAgent>[1] = {}): Promise<SockAgent> => {
      const a = createSockAgent(await createPeer({ server: server.url() }), options)
      agents.push(a)
      return a
    }
    try {
      const sharer = await agent()
      const stranger = await agent()
      const events: UdpRelayEvent[] = []
      const taker = await agent({ onChannel: async (channel, _body, mux) => await takeUdpRelay(channel, mux, { rules: [parseRule(`udp-relay@${sharer.peer.peerId}`)], server: server.url(), onEvent: (e) => events.push(e) }) })
      const id = taker.peer.peerId
      const half = { ip: '127.0.0.1', port: 40000, token: 'ab'.repeat(16), expiresAt: 1 }
      const share = await within('a half taken', sendUdpHalf(sharer, id, half))
      expect(share.taken).toBe('printed')
      expect(events.at(-1)).toMatchObject({ type: 'taken', peerId: sharer.peer.peerId, rule: `udp-relay@${sharer.peer.peerId}`, half })
      const refused = await sendUdpHalf(stranger, id, half).then(() => undefined, (err: StarsockError) => err)
      expect(refused?.code).toBe('E_DENIED')
      expect(events.at(-1)).toMatchObject({ type: 'refused', peerId: stranger.peer.peerId, code: 'E_DENIED' })
      /** Open a udp-relay channel with `body`, end it, and settle with the error it ends with. */
      const raw = async (body: Uint8Array): Promise<StarsockError | undefined> => {
        const mux = await sharer.session(id)
        try {
          const channel = await mux.open({ type: 'udp-relay', reliable: true }, { body })
          await channel.closeWrite()
          await channel.read()
          return undefined
        } catch (err) {
          return err as StarsockError
        }
      }
      const text = (t: string): Uint8Array => new TextEncoder().encode(t)
      for (const [what, body] of [
        ['not JSON', text('hello\n')],
        ['a host name', text(JSON.stringify({ ...half, ip: 'localhost' }))],
        ['port 0', text(JSON.stringify({ ...half, port: 0 }))],
        ['a token not hex', text(JSON.stringify({ ...half, token: 'zz' }))],
        ['too long', text(JSON.stringify({ ...half, pad: 'x'.repeat(5000) }))]
      ] as const) {
        const err = await within(`the refusal of ${what}`, raw(body))
        expect(err?.code, what).toBe('E_BAD_REQUEST')
        expect(events.at(-1), what).toMatchObject({ type: 'failed', peerId: sharer.peer.peerId, code: 'E_BAD_REQUEST' })
      }
      // Halves still arriving (no end yet) count: past the limit, the next is refused at once.
      const mux = await sharer.session(id)
      const held = await Promise.all(Array.from({ length: MAX_UDP_RELAY_SHARES }, async () => await mux.open({ type: 'udp-relay', reliable: true }, { body: text('{') })))
      const over = await sendUdpHalf(sharer, id, half).then(() => undefined, (err: StarsockError) => err)
      expect(over?.code).toBe('E_LIMIT_TOTAL')
      for (const c of held) c.abort()
      await waitFor('the held halves to end', () => events.filter((e) => e.type === 'failed').length >= 5 + MAX_UDP_RELAY_SHARES)
      expect((await within('a half taken again', sendUdpHalf(sharer, id, half))).taken).toBe('printed')
    } finally {
      for (const a of agents) { await a.close(); await a.peer.close() }
    }
  }, 60_000)

  it('takeUdpRelay: a half naming an address that is not the relay of this peer\'s server is refused (E_BAD_REQUEST, both sides) before a datagram is sent; --udp-relay-ip / relayIps adds one', async () => {
    const agents: SockAgent[] = []
    const agent = async (options: Parameters<typeof createSockAgent>[1] = {}): Promise<SockAgent> => {
      const a = createSockAgent(await createPeer({ server: server.url() }), options)
      agents.push(a)
      return a
    }
    // A UDP program the sharer would like datagrams sent to: 127.0.0.3, while the server is 127.0.0.1.
    const victim = dgram.createSocket('udp4')
    const got: Buffer[] = []
    victim.on('message', (m) => got.push(m))
    await new Promise<void>((resolve) => victim.bind(0, '127.0.0.3', resolve))
    cleanup.push({ close: () => { try { victim.close() } catch {} } })
    const local = await udpProgram()
    cleanup.push(local)
    try {
      expect(new URL(server.url()).hostname).toBe('127.0.0.1')
      const sharer = await agent()
      const rules = [parseRule(`udp-relay@${sharer.peer.peerId}`)]
      const events: UdpRelayEvent[] = []
      const taker = await agent({ onChannel: async (channel, _body, mux) => await takeUdpRelay(channel, mux, { rules, server: server.url(), local: { ip: '127.0.0.1', port: local.port }, registerTimeoutMs: 1000, onEvent: (e) => events.push(e) }) })
      const half = { ip: '127.0.0.3', port: victim.address().port, token: 'ab'.repeat(16), expiresAt: 1 }
      const refused = await within('the refusal', sendUdpHalf(sharer, taker.peer.peerId, half).then(() => undefined, (err: StarsockError) => err))
      expect(refused?.code).toBe('E_BAD_REQUEST')
      expect(refused?.message).toContain('The half names 127.0.0.3, not the UDP relay of this peer\'s server (127.0.0.1')
      expect(refused?.message).toContain('more with --udp-relay-ip, or relay_ips in [udp_relay])')
      expect(events.at(-1)).toMatchObject({ type: 'refused', peerId: sharer.peer.peerId, code: 'E_BAD_REQUEST' })
      // Nothing was sent to the address the half named (a bridge would send the token there first).
      await new Promise((resolve) => setTimeout(resolve, 300))
      expect(got).toEqual([])
      // The same half, to a taker told that 127.0.0.3 is a relay address too (printed: nothing is sent).
      const told: UdpRelayEvent[] = []
      const other = await agent({ onChannel: async (channel, _body, mux) => await takeUdpRelay(channel, mux, { rules, server: server.url(), relayIps: ['127.0.0.3'], onEvent: (e) => told.push(e) }) })
      expect((await within('the half taken', sendUdpHalf(sharer, other.peer.peerId, half))).taken).toBe('printed')
      expect(told.at(-1)).toMatchObject({ type: 'taken', half })
      // The server's own address, in another spelling (IPv4-mapped IPv6), is the relay's.
      expect((await within('a mapped half taken', sendUdpHalf(sharer, other.peer.peerId, { ...half, ip: '::ffff:127.0.0.1' }))).taken).toBe('printed')
      // A taker that knows no relay address takes nothing.
      const blind = await agent({ onChannel: async (channel, _body, mux) => await takeUdpRelay(channel, mux, { rules, onEvent: () => {} }) })
      expect((await sendUdpHalf(sharer, blind.peer.peerId, { ...half, ip: '127.0.0.1' }).then(() => undefined, (err: StarsockError) => err))?.code).toBe('E_BAD_REQUEST')
    } finally {
      for (const a of agents) { await a.close(); await a.peer.close() }
    }
  }, 60_000)
})
