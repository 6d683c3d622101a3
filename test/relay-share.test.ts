import dgram from 'node:dgram'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { UdpAllocation } from '../client/peer.ts'
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
    const listen = programs.start(['listen', '--server', server.url(), '--key', join(dir, 'listener'), '--allow', `udp-relay@${sharerId}`, '--udp-relay-local', `127.0.0.1:${b.port}`, '--no-prompt', '--json'])
    const ready = await listen.event('ready', 30_000)
    expect(ready.commands).toEqual([`starsock relay --server ${server.url()} --share ${listenerId}`])
    const relay = programs.start(['relay', '--server', server.url(), '--key', sharerKey, '--share', listenerId, '--local1', `127.0.0.1:${a.port}`, '--json'])
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
})
