/**
 * Named services, accept offers and source allowlists on binds, between real agents through a
 * real server, with real TCP and UDP sockets.
 */
import dgram from 'node:dgram'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import type { Channel } from '../client/mux/channel.ts'
import type { OfferRequest } from '../client/sock/agent.ts'
import type { SockAddress } from '../shared/mux-frame.ts'
import { useAgents, rejection } from './helpers/agents.ts'
import { testBytes, waitFor, within } from './helpers/server.ts'
import { tcpEcho, tcpRoundTrip, udpEcho } from './helpers/sockets.ts'
import { expectBytes } from './helpers/bytes.ts'

/** A TCP server on 127.0.0.1 that answers every connection with `who` and closes. */
async function teller (who: string): Promise<{ port: number, close: () => void }> {
  const server = net.createServer((s) => { s.on('error', () => {}); s.end(who) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, close: () => { server.close() } }
}

async function readAll (channel: Channel): Promise<string> {
  const parts: Uint8Array[] = []
  for await (const c of channel) parts.push(c)
  return Buffer.concat(parts).toString()
}

/** Echo every accept channel back (the binder's side of a bind). */
function echoChannel (channel: Channel): void {
  void (async () => {
    for await (const chunk of channel) await channel.write(chunk)
    await channel.closeWrite()
  })().catch(() => {})
}

/** Connect to 127.0.0.1:`port` from `localAddress`; settles with how it ended: `data:...` when it got bytes, else the error code or `end`. */
async function tryFrom (port: number, localAddress: string, payload = 'ping'): Promise<string> {
  return await new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress, allowHalfOpen: true })
    const parts: Buffer[] = []
    let how = 'end'
    socket.on('connect', () => socket.write(payload))
    socket.on('data', (c: Buffer) => {
      parts.push(c)
      if (Buffer.concat(parts).byteLength >= payload.length) socket.end()
    })
    socket.on('error', (err: NodeJS.ErrnoException) => { how = err.code ?? err.message })
    socket.on('close', () => resolve(parts.length > 0 ? `data:${Buffer.concat(parts).toString()}` : how))
  })
}

describe('named services', () => {
  const { agent, cleanup } = useAgents()

  it('a service by name reaches the target the far side chose, not one the requester names', async () => {
    const chosen = await teller('chosen')
    const other = await teller('other')
    cleanup.push(chosen, other)
    const target = await agent({ allow: ['service:web'], services: { web: { to: { ip: '127.0.0.1', port: chosen.port }, proto: 'tcp' } } })
    const client = await agent()
    const mapping = await within('the service grant', client.connectService(target.peer.peerId, { service: 'web', name: 'the web' }))
    expect(mapping.offer).toMatchObject({ kind: 'service', service: 'web', host: '', port: 0 })
    expect(await within('the answer of the service', readAll(await mapping.connect()))).toBe('chosen')
    // A channel naming another destination under the service mapping still goes where the far side chose.
    const forged = await mapping.mux.open({ type: 'sock', sock: 'connect', reliable: true, mapping: mapping.id, dst: { ip: '127.0.0.1', port: other.port } })
    expect(await within('the answer on the forged channel', readAll(forged))).toBe('chosen')
    await waitFor('the granting side to show the service mapping', () => target.mappings().some((m) => m.offer.kind === 'service' && m.target?.to.port === chosen.port))
  })

  it('a UDP service carries datagrams to its target', async () => {
    const echo = await udpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: ['service:*'], services: { dns: { to: { ip: '127.0.0.1', port: echo.port }, proto: 'udp' } } })
    const client = await agent()
    const mapping = await within('the grant', client.connectService(target.peer.peerId, { service: 'dns', proto: 'udp' }))
    const channel = await mapping.connect()
    channel.send(new TextEncoder().encode('query'))
    const item = await within('the datagram back', channel.receive())
    expect(new TextDecoder().decode(item?.data)).toBe('query')
  })

  it('an unknown name and a wrong proto are denied with their own messages, before anyone is asked', async () => {
    let asked = 0
    const target = await agent({ ask: () => { asked++; return true }, services: { web: { to: { ip: '127.0.0.1', port: 1 }, proto: 'tcp' } } })
    const client = await agent()
    const unknown = await rejection(client.connectService(target.peer.peerId, { service: 'nope' }))
    expect([unknown.code, unknown.message]).toEqual(['E_DENIED', 'This peer offers no service named "nope"'])
    const wrong = await rejection(client.connectService(target.peer.peerId, { service: 'web', proto: 'udp' }))
    expect([wrong.code, wrong.message]).toEqual(['E_DENIED', 'Service web is tcp, not udp'])
    expect(asked).toBe(0)
    // No rule and nobody to ask: denied too.
    const noAsk = await agent({ services: { web: { to: { ip: '127.0.0.1', port: 1 }, proto: 'tcp' } } })
    expect((await rejection(client.connectService(noAsk.peer.peerId, { service: 'web' }))).code).toBe('E_DENIED')
    await expect(client.connectService(target.peer.peerId, { service: 'bad name' })).rejects.toThrow(TypeError)
  })

  it('the person asked sees the service name and its target', async () => {
    const chosen = await teller('chosen')
    cleanup.push(chosen)
    const requests: OfferRequest[] = []
    const target = await agent({ ask: (r) => { requests.push(r); return true }, services: { web: { to: { ip: '127.0.0.1', port: chosen.port }, proto: 'tcp' } } })
    const client = await agent()
    await within('the grant', client.connectService(target.peer.peerId, { service: 'web', name: 'my browser' }))
    expect(requests.map((r) => r.text)).toEqual([`service/tcp web "my browser" -> 127.0.0.1:${chosen.port}`])
    expect(requests[0]?.service).toEqual({ name: 'web', to: { ip: '127.0.0.1', port: chosen.port }, proto: 'tcp' })
    // The answer is remembered for this service and this target only: pointed elsewhere, it is asked again.
    await within('the second grant', client.connectService(target.peer.peerId, { service: 'web', name: 'my browser' }))
    expect(requests).toHaveLength(1)
    target.setServices({ web: { to: { ip: '127.0.0.1', port: 1 }, proto: 'tcp' } })
    await within('the grant for the new target', client.connectService(target.peer.peerId, { service: 'web', name: 'my browser' }))
    expect(requests.map((r) => r.text)).toEqual([`service/tcp web "my browser" -> 127.0.0.1:${chosen.port}`, 'service/tcp web "my browser" -> 127.0.0.1:1'])
  })

  it('a denial never tells the requester the service\'s target: no rule, the person says no, nobody answers in time', async () => {
    const services = { web: { to: { ip: '127.0.0.77', port: 45678 }, proto: 'tcp' as const } }
    const prompts: string[] = []
    const noRule = await agent({ services })
    const says = await agent({ services, ask: (r) => { prompts.push(r.text); return false } })
    const silent = await agent({ services, askTimeoutMs: 200, ask: async (r) => { prompts.push(r.text); return await new Promise<boolean>(() => {}) } })
    const client = await agent()
    const errors = [
      await rejection(client.connectService(noRule.peer.peerId, { service: 'web' })),
      await rejection(client.connectService(says.peer.peerId, { service: 'web' })),
      await rejection(client.connectService(silent.peer.peerId, { service: 'web' })),
      await rejection(client.offerAccept(says.peer.peerId, { host: '127.0.0.1', port: 2222, service: 'web' }))
    ]
    expect(errors.map((e) => [e.code, e.message])).toEqual([
      ['E_DENIED', 'No rule allows service/tcp web'],
      ['E_DENIED', 'Peer denied service/tcp web'],
      ['E_DENIED', 'Nobody answered about service/tcp web in time'],
      ['E_DENIED', 'Peer denied accept/tcp 127.0.0.1:2222 to service web']
    ])
    for (const e of errors) expect(e.message).not.toMatch(/127\.0\.0\.77|45678/)
    // The person, on the granting side, sees the target.
    expect(prompts).toEqual(['service/tcp web -> 127.0.0.77:45678', 'service/tcp web -> 127.0.0.77:45678', 'accept/tcp 127.0.0.1:2222 to service web -> 127.0.0.77:45678'])
  })

  it('a service whose target fails: the requester gets the code, not the target\'s address', async () => {
    const probe = net.createServer()
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
    const closed = (probe.address() as net.AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    const target = await agent({ allow: ['service:web'], services: { web: { to: { ip: '127.0.0.1', port: closed }, proto: 'tcp' } } })
    const client = await agent()
    const mapping = await within('the grant', client.connectService(target.peer.peerId, { service: 'web' }))
    const viaConnect = await rejection(mapping.connect())
    const accept = await within('the accept grant', client.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 2222, service: 'web' }))
    const viaAccept = await rejection(client.sendAccept(accept, { ip: '127.0.0.1', port: 50002 }))
    for (const err of [viaConnect, viaAccept]) {
      expect([err.code, err.message]).toEqual(['E_CONNECT_REFUSED', 'Service web failed: the target host refused the connection'])
      expect(err.message).not.toContain(String(closed))
    }
  })

  it('a service removed or changed while the person answers is denied, not granted with the old target', async () => {
    const chosen = await teller('chosen')
    cleanup.push(chosen)
    const web = { to: { ip: '127.0.0.1', port: chosen.port }, proto: 'tcp' as const }
    let change: () => void = () => {}
    const target = await agent({ ask: () => { change(); return true }, services: { web } })
    const granted: unknown[] = []
    target.on('mapping', (m) => granted.push(m))
    const client = await agent()
    change = () => target.setServices({})
    const removed = await rejection(client.connectService(target.peer.peerId, { service: 'web' }))
    expect([removed.code, removed.message]).toEqual(['E_DENIED', 'Service web was removed while a person was asked'])
    target.setServices({ web })
    change = () => target.setServices({ web: { to: { ip: '127.0.0.1', port: 1 }, proto: 'tcp' } })
    const changed = await rejection(client.connectService(target.peer.peerId, { service: 'web' }))
    expect([changed.code, changed.message]).toEqual(['E_DENIED', 'Service web changed while a person was asked; ask again'])
    expect(granted).toEqual([])
    expect(target.mappings()).toEqual([])
    // Unchanged: granted.
    change = () => {}
    await within('the grant for the unchanged service', client.connectService(target.peer.peerId, { service: 'web' }))
  })

  it('setServices: a removed service is denied to new offers, a live mapping keeps its target', async () => {
    const chosen = await teller('chosen')
    cleanup.push(chosen)
    const target = await agent({ allow: ['service:*'], services: { web: { to: { ip: '127.0.0.1', port: chosen.port }, proto: 'tcp' } } })
    const client = await agent()
    const live = await client.connectService(target.peer.peerId, { service: 'web' })
    expect(() => target.setServices({ 'bad name': { to: { ip: '127.0.0.1', port: 1 }, proto: 'tcp' } })).toThrow(TypeError)
    expect(Object.keys(target.services())).toEqual(['web'])
    target.setServices({})
    expect((await rejection(client.connectService(target.peer.peerId, { service: 'web' }))).message).toBe('This peer offers no service named "web"')
    expect(await within('the live mapping', readAll(await live.connect()))).toBe('chosen')
  })
})

describe('accept offers', () => {
  const { agent, cleanup } = useAgents()

  it('an accept for a service: the far side connects each accept channel to the service\'s target', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: ['service:ssh'], services: { ssh: { to: { ip: '127.0.0.1', port: echo.port }, proto: 'tcp' } } })
    const client = await agent()
    const mapping = await within('the accept grant', client.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 2222, service: 'ssh' }))
    const channel = await client.sendAccept(mapping, { ip: '127.0.0.1', port: 50000 })
    const data = testBytes(200_000)
    const back: Uint8Array[] = []
    const reading = (async () => { for await (const c of channel) back.push(c) })()
    await channel.write(data)
    await channel.closeWrite()
    await within('the echo through the service', reading)
    expectBytes(Buffer.concat(back), data, 'the echo through the service')
    expect((await rejection(client.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 2222, service: 'nope' }))).message).toBe('This peer offers no service named "nope"')
  })

  it('an accept without a service to an agent without onAccept is denied up front (E_UNSUPPORTED), nobody asked, nothing granted', async () => {
    let asked = 0
    const target = await agent({ ask: () => { asked++; return true } })
    const granted: unknown[] = []
    target.on('mapping', (m) => granted.push(m))
    const client = await agent()
    const err = await rejection(client.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 2222 }))
    expect([err.code, err.message]).toEqual(['E_UNSUPPORTED', 'This peer takes no accept channels (offer an accept for one of its services, or ask it to bind)'])
    expect(asked).toBe(0)
    expect(granted).toEqual([])
  })

  it('an accept without a service goes to onAccept', async () => {
    const seen: number[] = []
    const target = await agent({ ask: () => true, onAccept: (channel, mapping) => { seen.push(mapping.id); echoChannel(channel) } })
    const client = await agent()
    const mapping = await client.offerAccept(target.peer.peerId, { host: '127.0.0.1', port: 2222 })
    const channel = await client.sendAccept(mapping, { ip: '127.0.0.1', port: 50001 })
    await channel.write(new TextEncoder().encode('hello'))
    await channel.closeWrite()
    expect(await within('the echo from onAccept', readAll(channel))).toBe('hello')
    expect(seen).toEqual([mapping.id])
  })
})

describe('source allowlists on binds (allowFrom)', () => {
  const { agent } = useAgents()

  it.each([
    ['127.0.0.1', '127.0.0.2'],
    ['::', '::ffff:127.0.0.2'] // dual-stack: IPv4 clients arrive IPv4-mapped, and the IPv4 entry still matches
  ])('TCP bound on %s: a client from a source not allowed is reset and counted; one from an allowed source passes', async (bindHost, refusedIp) => {
    const target = await agent({ allow: ['bind/tcp:*:0'] })
    const refused: Array<{ peerId: string, src: SockAddress, mapping: number }> = []
    target.on('refused-source', (r) => refused.push({ peerId: r.peerId, src: r.src, mapping: r.mapping.id }))
    const texts: string[] = []
    target.on('offer', (d) => texts.push(d.text))
    const client = await agent()
    const mapping = await within('the bind', client.bind(target.peer.peerId, { host: bindHost, port: 0, allowFrom: ['127.0.0.1/32'] }))
    mapping.acceptHandler = echoChannel
    const port = (mapping.bound as SockAddress).port
    expect(texts).toEqual([`bind/tcp ${bindHost.includes(':') ? `[${bindHost}]` : bindHost}:0 from 127.0.0.1/32`])
    expect(await within('a client from 127.0.0.2', tryFrom(port, '127.0.0.2'))).toBe('ECONNRESET')
    expect(target.stats().refusedSources).toBe(1)
    expect(refused).toEqual([{ peerId: client.peer.peerId, src: { ip: refusedIp, port: expect.any(Number) as number }, mapping: mapping.id }])
    expect(mapping.stats().channelsTotal).toBe(0)
    expect(await within('a client from 127.0.0.1', tryFrom(port, '127.0.0.1'))).toBe('data:ping')
    expect(target.stats().refusedSources).toBe(1)
  })

  it('while the port is on lease (the binder dropped), its allowFrom still holds: a client from elsewhere is counted as refused', async () => {
    const target = await agent({ allow: ['bind/tcp:127.0.0.1:0'] })
    const client = await agent()
    const mapping = await within('the bind', client.bind(target.peer.peerId, { host: '127.0.0.1', port: 0, allowFrom: ['127.0.0.1/32'] }))
    const port = (mapping.bound as SockAddress).port
    const held = new Promise((resolve) => target.on('lease', (l) => { if (l.state === 'held') resolve(l.port) }))
    await client.peer.close() // the binder vanishes; its port stays on lease
    expect(await within('the lease', held)).toBe(port)
    expect(await within('a client from 127.0.0.2', tryFrom(port, '127.0.0.2'))).toBe('ECONNRESET')
    expect(target.stats().refusedSources).toBe(1)
    expect(await within('a client from 127.0.0.1 (reset too: nobody is attached)', tryFrom(port, '127.0.0.1'))).toBe('ECONNRESET')
    expect(target.stats().refusedSources).toBe(1)
  })

  it('UDP: a datagram from a source not allowed is dropped and counted; one from an allowed source arrives', async () => {
    const target = await agent({ allow: ['bind/udp:127.0.0.1:0'] })
    const client = await agent()
    const mapping = await within('the bind', client.bind(target.peer.peerId, { proto: 'udp', host: '127.0.0.1', port: 0, allowFrom: ['127.0.0.1'] }))
    const port = (mapping.bound as SockAddress).port
    const send = async (from: string, text: string): Promise<void> => {
      const socket = dgram.createSocket('udp4')
      await new Promise<void>((resolve) => socket.bind(0, from, resolve))
      await new Promise<void>((resolve, reject) => socket.send(text, port, '127.0.0.1', (err) => { if (err !== null) reject(err); else resolve() }))
      socket.close()
    }
    const told: string[] = []
    target.on('refused-source', (r) => told.push(r.src.ip))
    for (let i = 0; i < 3; i++) await send('127.0.0.2', 'refused')
    await waitFor('the datagrams from 127.0.0.2 to be counted', () => target.stats().refusedSources === 3)
    expect(told).toEqual(['127.0.0.2']) // a flood is counted in full, told once
    await send('127.0.0.1', 'allowed')
    const item = await within('the allowed datagram on the bind channel', (mapping.bindChannel as Channel).receive())
    expect(new TextDecoder().decode(item?.data)).toBe('allowed')
    expect(item?.addr?.ip).toBe('127.0.0.1')
    expect(target.stats().refusedSources).toBe(3)
  })

  it('UDP from many spoofed sources: every datagram is counted, a bounded number told (rate-limited per mapping), nothing told twice', async () => {
    const target = await agent({ allow: ['bind/udp:127.0.0.1:0'] })
    const client = await agent()
    const mapping = await within('the bind', client.bind(target.peer.peerId, { proto: 'udp', host: '127.0.0.1', port: 0, allowFrom: ['127.0.0.1'] }))
    const port = (mapping.bound as SockAddress).port
    const told: Array<{ ip: string, untold?: number }> = []
    target.on('refused-source', (r) => told.push({ ip: r.src.ip, ...(r.untold !== undefined ? { untold: r.untold } : {}) }))
    const started = Date.now()
    const total = 1500
    for (let batch = 0; batch < total / 100; batch++) {
      await Promise.all(Array.from({ length: 100 }, async (_, k) => {
        const i = batch * 100 + k
        const socket = dgram.createSocket('udp4')
        await new Promise<void>((resolve) => socket.bind(0, `127.${10 + Math.floor(i / 250)}.${i % 250}.1`, resolve))
        await new Promise<void>((resolve, reject) => socket.send('spoofed', port, '127.0.0.1', (err) => { if (err !== null) reject(err); else resolve() }))
        socket.close()
      }))
      await waitFor('the batch to be counted', () => target.stats().refusedSources === (batch + 1) * 100)
    }
    const seconds = (Date.now() - started) / 1000
    expect(target.stats().refusedSources).toBe(total)
    // A burst of 20, then 10 a second: far fewer than the sources.
    expect(told.length).toBeLessThanOrEqual(20 + Math.ceil(seconds * 10))
    expect(told.length).toBeLessThan(total / 2)
    expect(new Set(told.map((t) => t.ip)).size).toBe(told.length)
    // What was not told is summed up in the ones told after it.
    const summed = told.reduce((n, t) => n + (t.untold ?? 0), 0)
    expect(summed + told.length).toBeLessThanOrEqual(total)
    if (told.length > 20) expect(summed).toBeGreaterThan(0)
  })

  it('a bad allowFrom entry, too many entries or badly shaped ones are a TypeError here naming it: no offer is sent', async () => {
    const target = await agent({ allow: ['bind/tcp:127.0.0.1:0'] })
    const offers: string[] = []
    target.on('offer', (d) => offers.push(d.text))
    const client = await agent()
    for (const entry of ['999.1.2.3/8', '10.0.0.0/33', '::1/129', '1:2:3:4:5:6:7:8:9', '01.2.3.4']) {
      const err = await rejection(client.bind(target.peer.peerId, { host: '127.0.0.1', port: 0, allowFrom: ['127.0.0.1', entry] }))
      expect(err).toBeInstanceOf(TypeError)
      expect(err.message).toContain(JSON.stringify(entry))
    }
    expect(offers).toEqual([])
    expect(target.stats()).toMatchObject({ boundPorts: 0, mappingsGranted: 0 })
    await expect(client.bind(target.peer.peerId, { host: '127.0.0.1', port: 0, allowFrom: Array.from({ length: 65 }, () => '10.0.0.1') })).rejects.toThrow(TypeError)
    await expect(client.bind(target.peer.peerId, { host: '127.0.0.1', port: 0, allowFrom: ['example.com'] })).rejects.toThrow(TypeError)
  })

  it('a peer without allow-from (an older one) is not offered the bind: E_UNSUPPORTED, nothing bound', async () => {
    const older = await agent({ allow: ['bind/tcp:127.0.0.1:0'], mux: { features: ['ack'] } })
    const offers: string[] = []
    older.on('offer', (d) => offers.push(d.text))
    const client = await agent()
    const err = await rejection(client.bind(older.peer.peerId, { host: '127.0.0.1', port: 0, allowFrom: ['127.0.0.1/32'] }))
    expect([err.code, err.message]).toEqual(['E_UNSUPPORTED', `${older.peer.peerId} cannot limit the sources of a bind (allowFrom): an older starsock?`])
    expect(offers).toEqual([])
    expect(older.stats().boundPorts).toBe(0)
  })
})

describe('bind addresses', () => {
  const { agent } = useAgents()

  it('a bind to 0.0.0.0 reports usable addresses on both sides (not internal first, then loopback); a bind to one address reports none', async () => {
    const target = await agent({ allow: ['bind/tcp:*:0'] })
    const client = await agent()
    const mapping = await within('the wildcard bind', client.bind(target.peer.peerId, { host: '0.0.0.0', port: 0 }))
    mapping.acceptHandler = echoChannel
    const port = (mapping.bound as SockAddress).port
    const addresses = mapping.addresses ?? []
    expect(addresses.length).toBeGreaterThan(0)
    expect(addresses.every((a) => a.port === port && a.ip !== '0.0.0.0' && net.isIPv4(a.ip))).toBe(true)
    const loop = addresses.findIndex((a) => a.ip.startsWith('127.'))
    expect(loop).toBeGreaterThanOrEqual(0)
    expect(addresses.slice(loop).every((a) => a.ip.startsWith('127.'))).toBe(true)
    await waitFor('the granting side to know the addresses', () => target.mappings().some((m) => !m.local && m.addresses !== undefined))
    expect(target.mappings().find((m) => !m.local)?.addresses).toEqual(addresses)
    const data = testBytes(1000)
    expectBytes(await within('an echo through a reported address', tcpRoundTrip(port, data, (addresses[loop] as SockAddress).ip)), data, 'an echo through a reported address')
    const one = await client.bind(target.peer.peerId, { host: '127.0.0.1', port: 0 })
    expect(one.addresses).toBeUndefined()
  })
})
