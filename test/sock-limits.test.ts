import { createHash } from 'node:crypto'
import net from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Channel } from '../client/mux/channel.ts'
import { LineReader, writeLine } from '../client/mux/lines.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent, type SockAgentOptions } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import type { Mapping } from '../client/sock/mapping.ts'
import { expose } from '../client/sock/tunnel.node.ts'
import { StarsockError } from '../shared/errors.ts'
import type { StarsockServer } from '../server/server.ts'
import { rejection } from './helpers/agents.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'
import { tcpEcho, tcpRoundTrip, udpClient, type Closable } from './helpers/sockets.ts'
import { expectBytes } from './helpers/bytes.ts'

/** Whether something listens on TCP 127.0.0.1:`port` now. */
async function listening (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

/** Send `data` as a file on a granted file channel; settles with the receiver's answer line. */
async function sendOn (channel: Channel, name: string, data: Uint8Array): Promise<unknown> {
  await writeLine(channel, { name, size: data.byteLength, sha256: createHash('sha256').update(data).digest('hex') })
  await channel.write(data)
  await channel.closeWrite()
  return await new LineReader(channel).next()
}

describe('limits of a sock agent over all peers, and files as offers', () => {
  let server: StarsockServer & { port: number }
  const cleanup: Closable[] = []
  /** A peer with a fresh identity running an agent; `close` it to leave. */
  const fresh = async (options: SockAgentOptions = {}): Promise<SockAgent & Closable> => {
    const peer = await createPeer({ server: server.url() })
    const a = createSockAgent(peer, { host: createNodeHost(), ...options })
    let closed = false
    const close = async (): Promise<void> => {
      if (closed) return
      closed = true
      await a.close()
      await peer.close()
    }
    cleanup.push({ close })
    return Object.assign(a, { close })
  }

  beforeEach(async () => { server = await startServer() })
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c.close()
    await server.close()
  })

  it('Sybils: fresh identities together bind no more ports than the agent\'s total; a legitimate peer gets E_LIMIT_TOTAL, and after they leave it works', async () => {
    const target = await fresh({ allow: ['bind/tcp:127.0.0.1:0'], maxBoundPortsTotal: 6, leaseMs: 200 })
    const limits: string[] = []
    target.on('limit', (l) => limits.push(`${l.code} ${l.what}`))
    // 4 identities, 3 binds each (12 asked for), well under the per-peer limit of 64.
    const sybils = await Promise.all(Array.from({ length: 4 }, async () => await fresh()))
    const results = await Promise.allSettled(sybils.flatMap((s) => [1, 2, 3].map(async () => await s.bind(target.peer.peerId, { host: '127.0.0.1', port: 0 }))))
    const bound = results.filter((r): r is PromiseFulfilledResult<Mapping> => r.status === 'fulfilled').map((r) => r.value)
    const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as StarsockError).code)
    expect(bound).toHaveLength(6)
    expect(refused).toEqual(Array(6).fill('E_LIMIT_TOTAL'))
    for (const m of bound) expect(await listening(m.bound?.port ?? 0)).toBe(true)
    expect(target.stats()).toMatchObject({ boundPorts: 6, mappingsGranted: 6, refused: { E_LIMIT_TOTAL: 6 } })

    const legit = await fresh()
    const err = await rejection(legit.bind(target.peer.peerId, { host: '127.0.0.1', port: 0 }))
    expect(err.code).toBe('E_LIMIT_TOTAL')
    expect(err.message).toBe('This peer listens on 6 ports for other peers, its total for all peers together (maxBoundPortsTotal 6); try later')
    expect(limits).toEqual(Array(7).fill('E_LIMIT_TOTAL ports'))

    // They leave (closing, their agents kill their mappings: the ports are freed at once).
    for (const s of sybils) await s.close()
    await waitFor('the Sybils\' ports to be freed', () => target.stats().boundPorts === 0, 5000)
    for (const m of bound) expect(await listening(m.bound?.port ?? 0)).toBe(false)
    const echo = await tcpEcho()
    cleanup.push(echo)
    const mapping = await legit.bind(target.peer.peerId, { host: '127.0.0.1', port: 0 })
    mapping.acceptHandler = (channel) => {
      const s = net.connect({ host: '127.0.0.1', port: echo.port, allowHalfOpen: true })
      s.on('data', (d: Buffer) => { void channel.write(d) })
      s.on('end', () => { void channel.closeWrite() })
      void (async () => { for await (const c of channel) s.write(c); s.end() })()
    }
    const data = testBytes(10_000)
    expectBytes(await within('the echo through the legitimate bind', tcpRoundTrip(mapping.bound?.port ?? 0, data), 10_000), data, 'the echo through the legitimate bind')
  })

  it('the mapping and channel totals hold over several identities too', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await fresh({ allow: [`connect/tcp:127.0.0.1:${echo.port}`], maxMappingsTotal: 2, maxChannelsTotal: 3 })
    const [a, b, c] = await Promise.all([fresh(), fresh(), fresh()])
    const ma = await a.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port })
    const mb = await b.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port })
    const third = await rejection(c.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))
    expect(third.code).toBe('E_LIMIT_TOTAL')
    expect(third.message).toContain('maxMappingsTotal 2')
    await ma.connect()
    await ma.connect()
    await mb.connect()
    const over = await rejection(mb.connect())
    expect(over.code).toBe('E_LIMIT_TOTAL')
    expect(over.message).toContain('maxChannelsTotal 3')
    expect(target.stats().refused).toEqual({ E_LIMIT_TOTAL: 2 })
    // One leaves: the others' room comes back.
    await a.close()
    await waitFor('the first peer\'s mapping and channels to go', () => target.stats().mappingsGranted === 1 && target.stats().channelsOpen === 1)
    await c.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port })
    await mb.connect()
  })

  it('a UDP bind counts what it drops: datagrams from the binder to addresses that never sent to the port', async () => {
    const target = await fresh({ allow: ['bind/udp:127.0.0.1:0'] })
    const binder = await fresh()
    const mapping = await binder.bind(target.peer.peerId, { proto: 'udp', host: '127.0.0.1', port: 0 })
    const channel = mapping.bindChannel as Channel
    for (let i = 0; i < 5; i++) channel.send(new TextEncoder().encode('to nobody who asked'), { ip: '127.0.0.1', port: 9 })
    await waitFor('the five datagrams to be dropped and counted at the bind', () => target.stats().udpBindDrops.unknown === 5)
    expect(target.stats().udpBindDrops).toEqual({ sources: 0, away: 0, unknown: 5 })
  })

  it('UDP binds of several identities together remember no more sources than the host\'s total; the rest are dropped and counted', async () => {
    const target = await fresh({ allow: ['bind/udp:127.0.0.1:0'], host: createNodeHost({ maxUdpBindSourcesTotal: 2 }) })
    const [a, b] = await Promise.all([fresh(), fresh()])
    const binds = [await a.bind(target.peer.peerId, { proto: 'udp', host: '127.0.0.1', port: 0 }), await b.bind(target.peer.peerId, { proto: 'udp', host: '127.0.0.1', port: 0 })]
    const clients = await Promise.all([1, 2, 3].map(async () => await udpClient()))
    cleanup.push(...clients)
    // Two sources to the first bind, one to the second: the third source is one too many.
    const to = [binds[0], binds[0], binds[1]].map((m) => m?.bound?.port ?? 0)
    for (const [i, c] of clients.entries()) {
      c.socket.send(Buffer.from(`from ${i}`), to[i], '127.0.0.1')
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    await waitFor('the third source to be dropped and counted', () => target.stats().udpBindDrops.sources === 1)
    const got = await within('the first datagram on the first bind', (binds[0]?.bindChannel as Channel).receive())
    expect(Buffer.from(got?.data ?? []).toString()).toBe('from 0')
    expect(target.stats().udpBindDrops).toEqual({ sources: 1, away: 0, unknown: 0 })
  })

  it('a file is an offer: no byte flows before it is granted; a rule grants it; size cap and per-peer quota refuse with their codes', async () => {
    const received: Array<{ name: string, data: Buffer }> = []
    const onFile = (channel: Channel, mapping: Mapping): void => {
      void (async () => {
        const reader = new LineReader(channel)
        const header = await reader.next() as { size: number, sha256: string }
        const parts: Uint8Array[] = [reader.rest()]
        for await (const c of channel) parts.push(c)
        const data = Buffer.concat(parts)
        received.push({ name: mapping.offer.name, data })
        await writeLine(channel, { ok: data.byteLength === header.size, sha256: createHash('sha256').update(data).digest('hex') })
        await channel.closeWrite()
      })()
    }
    const noRule = await fresh({ files: { onFile } })
    const noFiles = await fresh()
    const withRule = await fresh({ allow: ['file:*'], files: { onFile, maxFileBytes: 100_000, quotaBytesPerPeer: 150_000 } })
    const sender = await fresh()

    const denied = await rejection(sender.offerFile(noRule.peer.peerId, { name: 'a.bin', size: 10 }))
    expect(denied.code).toBe('E_DENIED')
    expect(denied.message).toBe('No rule allows file "a.bin", 10 bytes')
    expect((await rejection(sender.offerFile(noFiles.peer.peerId, { name: 'a.bin', size: 10 }))).code).toBe('E_UNSUPPORTED')
    expect(noRule.stats()).toMatchObject({ mappings: 0, bytesIn: 0 })

    const data = Buffer.from(testBytes(80_000))
    const channel = await sender.offerFile(withRule.peer.peerId, { name: 'ok.bin', size: data.byteLength })
    expect(await within('the receiver\'s answer', sendOn(channel, 'ok.bin', data), 10_000)).toMatchObject({ ok: true })
    expect(received.map((r) => [r.name, r.data.equals(data)])).toEqual([['ok.bin', true]])
    await waitFor('the file mapping to end on both sides', () => withRule.mappings().length === 0 && sender.mappings().length === 0)

    const big = await rejection(sender.offerFile(withRule.peer.peerId, { name: 'big.bin', size: 100_001 }))
    expect(big.code).toBe('E_LIMIT_FILE_SIZE')
    expect(big.message).toBe('97.7 KiB (100001 bytes) is over the 97.7 KiB (100000 bytes) this peer takes in one file')
    const quota = await rejection(sender.offerFile(withRule.peer.peerId, { name: 'more.bin', size: 80_000 }))
    expect(quota.code).toBe('E_LIMIT_FILE_QUOTA')
    expect(quota.message).toContain('over its quota of 146.5 KiB (150000 bytes)')
    // The quota is the sender's: another identity may still send (within the total).
    const other = await fresh()
    const second = await other.offerFile(withRule.peer.peerId, { name: 'two.bin', size: 10 })
    expect(await within('the second file\'s answer', sendOn(second, 'two.bin', Buffer.alloc(10, 1)), 10_000)).toMatchObject({ ok: true })
    expect(withRule.stats().refused).toEqual({ E_LIMIT_FILE_SIZE: 1, E_LIMIT_FILE_QUOTA: 1 })
  })

  it('a binder takes back its own leased port when the port total is full; a fresh port is still refused', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await fresh({ allow: ['bind/tcp:127.0.0.1:0'], leaseMs: 30_000, maxBoundPortsTotal: 1 })
    const binder = await fresh()
    const tunnel = await expose(binder, { peer: target.peer.peerId, host: '127.0.0.1', port: 0, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(tunnel)
    const port = tunnel.address.port
    const leases: string[] = []
    target.on('lease', (l) => leases.push(`${l.state} ${l.port}`))
    const rebound = new Promise((resolve) => tunnel.on('mapping', resolve))
    // Drop the binder's connection to the server; it reconnects and binds again, on its lease.
    ;(binder.peer as unknown as { link: { dropTransport: () => void } }).link.dropTransport()
    await within('the binder to bind again with the port total full', rebound, 10_000)
    expect(tunnel.address.port).toBe(port)
    expect(leases).toEqual([`held ${port}`, `taken ${port}`])
    expect(target.stats().refused).toEqual({})
    const data = testBytes(10_000)
    expect((await tcpRoundTrip(port, data)).equals(data)).toBe(true)
    // Another binder has no lease to take back: the total holds.
    const other = await fresh()
    const err = await rejection(other.bind(target.peer.peerId, { host: '127.0.0.1', port: 0 }))
    expect(err.code).toBe('E_LIMIT_TOTAL')
  })

  it('a file quota is charged what arrived once the file is over: offers that send nothing do not lock files out for others', async () => {
    const onFile = (channel: Channel): void => { void (async () => { for await (const _ of channel) { /* drain */ } await channel.closeWrite() })().catch(() => {}) }
    const receiver = await fresh({ allow: ['file:*'], files: { onFile, quotaBytesTotal: 300_000 } })
    const idle = await fresh()
    for (const name of ['one.bin', 'two.bin']) {
      const channel = await idle.offerFile(receiver.peer.peerId, { name, size: 120_000 })
      await channel.closeWrite() // not a byte sent
    }
    await waitFor('the idle sender\'s file mappings to end at the receiver', () => receiver.mappings().length === 0, 5000)
    // Charged 64 KiB each now (the minimum), not 120,000 bytes each: 120,000 more fit in 300,000.
    const other = await fresh()
    const data = Buffer.from(testBytes(120_000))
    const channel = await other.offerFile(receiver.peer.peerId, { name: 'real.bin', size: data.byteLength })
    await channel.write(data)
    await channel.closeWrite()
    await waitFor('the real file\'s mapping to end at the receiver', () => receiver.mappings().length === 0, 5000)
    // That one arrived whole: it counts all its bytes, so the total is full for another file of that size.
    const more = await rejection(other.offerFile(receiver.peer.peerId, { name: 'more.bin', size: 120_000 }))
    expect(more.code).toBe('E_LIMIT_FILE_QUOTA')
    expect(receiver.stats().refused).toEqual({ E_LIMIT_FILE_QUOTA: 1 })
  })

  it('a file channel needs its own granted offer: none, another kind\'s, or one used already are refused', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const receiver = await fresh({ allow: ['file:*', `connect/tcp:127.0.0.1:${echo.port}`], files: { onFile: (channel) => { void channel.closeWrite() } } })
    const sender = await fresh()
    const mux = await sender.session(receiver.peer.peerId)
    expect((await rejection(mux.open({ type: 'file', reliable: true }))).code).toBe('E_DENIED')
    const connect = await sender.connect(receiver.peer.peerId, { host: '127.0.0.1', port: echo.port })
    expect((await rejection(mux.open({ type: 'file', reliable: true, mapping: connect.id }))).code).toBe('E_NO_MAPPING')
    const id = await mux.offer({ kind: 'file', proto: 'tcp', host: '', port: 0, name: 'x', size: 1 })
    await mux.open({ type: 'file', reliable: true, mapping: id })
    expect((await rejection(mux.open({ type: 'file', reliable: true, mapping: id }))).code).toBe('E_NO_MAPPING')
  })
})
