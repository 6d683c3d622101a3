import type dgram from 'node:dgram'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { datagramCost, MAX_DATAGRAM_WINDOW_BYTES, type Channel } from '../client/mux/channel.ts'
import { createIdentity } from '../client/identity.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import { expose, forward } from '../client/sock/tunnel.node.ts'
import { ReceiveStream } from '../client/stream.ts'
import { decodeJson, encodeJsonFrame, FRAME, FrameDecoder } from '../shared/mux-frame.ts'
import { MUX_PROTOCOL, MUX_VERSION } from '../shared/sock-protocol.ts'
import { useAgents, rejection } from './helpers/agents.ts'
import { legacyDial, legacyExchange, pull, startLegacyPeer } from './helpers/legacy.ts'
import { testBytes, waitFor, within } from './helpers/server.ts'
import { httpGet, httpServer, tcpEcho, tcpRoundTrip, udpClient, udpEcho } from './helpers/sockets.ts'
import { expectBytes } from './helpers/bytes.ts'

/** A TCP connection to 127.0.0.1:`port` kept open; `closed` settles when the other end closes it, with the error code (ECONNRESET for a reset, `end` for a FIN). */
async function holdOpen (port: number): Promise<{ socket: net.Socket, closed: Promise<string> }> {
  const socket = net.connect({ host: '127.0.0.1', port })
  let how = 'end'
  socket.on('error', (err: NodeJS.ErrnoException) => { how = err.code ?? err.message })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  return { socket, closed: new Promise((resolve) => socket.once('close', () => resolve(how))) }
}

/** Whether a TCP port on 127.0.0.1 can be listened on now. */
async function portFree (port: number): Promise<boolean> {
  const server = net.createServer()
  return await new Promise((resolve) => {
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

describe('sock channels and tunnels through a real server', () => {
  const { agent, cleanup, server } = useAgents()

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
    expectBytes(res.body, body, 'the HTTP body through the tunnel')
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
    expectBytes(back, data, 'the echo through the bound port')
  })

  it('forward: 200 concurrent connections through one peer pair, each byte-exact', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const client = await agent()
    const tunnel = await forward(client, { peer: target.peer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(tunnel)
    const results = await within('200 round trips', Promise.all(Array.from({ length: 200 }, async (_, i) => {
      const data = testBytes(32 * 1024, i + 1)
      return (await tcpRoundTrip(tunnel.address.port, data)).equals(data)
    })), 30_000)
    expect(results.filter((ok) => ok)).toHaveLength(200)
    expect(tunnel.stats().connections).toBe(200)
    await waitFor('every channel to close', () => target.stats().channelsOpen === 0)
  })

  it('a slow reader on one channel does not stall another; its buffered bytes stay under the window', async () => {
    const windowBytes = 64 * 1024
    const incoming: Channel[] = []
    const target = await agent({ mux: { windowBytes }, onChannel: async (channel) => { incoming.push(channel); return undefined } })
    const client = await agent({ mux: { windowBytes } })
    const mux = await client.session(target.peer.peerId)
    const slow = await mux.open({ type: 'test', reliable: true })
    const fast = await mux.open({ type: 'test', reliable: true })
    let slowWritten = 0
    const filling = (async () => { for (;;) { await slow.write(new Uint8Array(16 * 1024)); slowWritten += 16 * 1024 } })()
    filling.catch(() => {})
    await waitFor('the slow channel to run out of credit', () => slowWritten >= windowBytes)
    const data = testBytes(4 * 1024 * 1024)
    const [, fastIn] = [incoming[0] as Channel, incoming[1] as Channel]
    const got: Uint8Array[] = []
    const reading = (async () => { for await (const c of fastIn) got.push(c) })()
    await within('4 MiB on the fast channel while the slow one is stuck', (async () => { await fast.write(data); await fast.closeWrite(); await reading })(), 20_000)
    expectBytes(Buffer.concat(got), data, '4 MiB on the fast channel')
    const slowIn = incoming[0] as Channel
    // The slow side never reads, so its window never grows: the writer got exactly one window of
    // credit (four 16 KiB writes; the fifth waits), and all of it is held unread at the receiver.
    expect(slowWritten).toBe(windowBytes)
    expect(slowIn.stats().bufferedBytes).toBe(windowBytes)
    slow.abort()
  })

  it('connect: a refused target comes back as E_CONNECT_REFUSED, a channel outside the mapping as E_NO_MAPPING', async () => {
    const closed = net.createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const port = (closed.address() as net.AddressInfo).port
    await new Promise((resolve) => closed.close(resolve))
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${port}`] })
    const client = await agent()
    const mapping = await client.connect(target.peer.peerId, { host: '127.0.0.1', port })
    expect((await rejection(mapping.connect())).code).toBe('E_CONNECT_REFUSED')
    const mux = await client.session(target.peer.peerId)
    const err = await rejection(mux.open({ type: 'sock', sock: 'connect', reliable: true, mapping: mapping.id, dst: { ip: '127.0.0.1', port: port + 1 } }))
    expect(err.code).toBe('E_NO_MAPPING')
  })

  it('consent: a denied offer opens nothing on the target and the requester gets E_DENIED; a person can allow', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const asked: string[] = []
    let answer = false
    const target = await agent({ ask: (request) => { asked.push(request.text); return answer } })
    const client = await agent()
    const denied = await rejection(client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port, name: 'echo' }))
    expect(denied.code).toBe('E_DENIED')
    expect(asked).toEqual([`connect/tcp 127.0.0.1:${echo.port} "echo"`])
    expect(target.mappings()).toHaveLength(0)
    expect(echo.open()).toBe(0)
    const tunnelDenied = await rejection(forward(client, { peer: target.peer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } }))
    expect(tunnelDenied.code).toBe('E_DENIED')
    answer = true
    const mapping = await client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port })
    const channel = await mapping.connect()
    await channel.write(new TextEncoder().encode('hi'))
    expect(new TextDecoder().decode(await within('the echo of hi', channel.read()) ?? new Uint8Array())).toBe('hi')
    const noRules = await agent()
    expect((await rejection(client.connect(noRules.peer.peerId, { host: '127.0.0.1', port: echo.port }))).code).toBe('E_DENIED')
  })

  it('a person is asked: the requester hears it once; a peer whose HELLO has no interim flag (an older one) only ever gets the final answer', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    let release!: (allowed: boolean) => void
    let asks = 0
    const target = await agent({ askTimeoutMs: 30_000, ask: async () => await new Promise<boolean>((resolve) => { asks++; release = resolve }) })
    const client = await agent()
    const heard: Array<{ timeoutMs: number }> = []
    const granted = client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port, onAsking: (info) => heard.push(info) })
    await waitFor('the requester to hear that a person is asked', () => heard.length === 1)
    expect(heard).toEqual([{ timeoutMs: 30_000 }])
    release(true)
    await within('the grant', granted)
    expect(heard).toHaveLength(1)

    // An older peer: its HELLO has no `interim`, so a `{ asking }` reply would read as a grant.
    const older = await createPeer({ server: server().url() })
    cleanup.push({ close: async () => await older.close() })
    await waitFor('the older peer to know the target', () => older.peers().some((p) => p.peerId === target.peer.peerId))
    const conn = await older.dial(target.peer.peerId)
    await conn.write(encodeJsonFrame(FRAME.HELLO, 0, { protocol: MUX_PROTOCOL, version: MUX_VERSION, window: 256 * 1024 }))
    await conn.write(encodeJsonFrame(FRAME.OFFER, 1, { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: echo.port, name: 'older' }))
    const replies: unknown[] = []
    const decoder = new FrameDecoder()
    const reading = (async () => {
      for await (const chunk of conn) {
        for (const frame of decoder.push(chunk)) if (frame.type === FRAME.OFFER_REPLY) replies.push(decodeJson(frame))
        if (replies.length > 0) return
      }
    })()
    await waitFor('the person to be asked about the older peer\'s offer', () => asks === 2)
    release(false)
    await within('the final answer to the older peer', reading)
    expect(replies).toEqual([{ error: { code: 'E_DENIED', message: `Peer denied connect/tcp 127.0.0.1:${echo.port} "older"` } }])
    conn.abort()
  })

  it('an offer the peer does not understand is refused alone (E_UNSUPPORTED); the connection and the next offer on it go on', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const newer = await createPeer({ server: server().url() })
    cleanup.push({ close: async () => await newer.close() })
    await waitFor('the newer peer to know the target', () => newer.peers().some((p) => p.peerId === target.peer.peerId))
    const conn = await newer.dial(target.peer.peerId)
    await conn.write(encodeJsonFrame(FRAME.HELLO, 0, { protocol: MUX_PROTOCOL, version: MUX_VERSION, window: 256 * 1024, offers: ['connect', 'teleport'] }))
    await conn.write(encodeJsonFrame(FRAME.OFFER, 1, { kind: 'teleport', proto: 'tcp', host: '127.0.0.1', port: 1, name: 'newer' }))
    await conn.write(encodeJsonFrame(FRAME.OFFER, 3, { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: echo.port, name: 'after' }))
    const replies = new Map<number, unknown>()
    const decoder = new FrameDecoder()
    const reading = (async () => {
      for await (const chunk of conn) {
        for (const frame of decoder.push(chunk)) if (frame.type === FRAME.OFFER_REPLY) replies.set(frame.id, decodeJson(frame))
        if (replies.size === 2) return
      }
    })()
    await within('answers to both offers', reading, 5000)
    expect(replies.get(1)).toEqual({ error: { code: 'E_UNSUPPORTED', message: 'offer not understood: offer kind must be connect, bind, accept, file or service' } })
    expect(replies.get(3)).toEqual({})
    conn.abort()
  })

  it('offerFile to a peer whose HELLO does not list file offers (an older one) is refused here with E_UNSUPPORTED; no offer is sent', async () => {
    const sender = await agent()
    const older = await createPeer({ server: server().url() })
    cleanup.push({ close: async () => await older.close() })
    const seen: number[] = []
    older.handle((conn) => {
      void conn.write(encodeJsonFrame(FRAME.HELLO, 0, { protocol: MUX_PROTOCOL, version: MUX_VERSION, window: 256 * 1024 }))
      const decoder = new FrameDecoder()
      void (async () => { for await (const chunk of conn) for (const frame of decoder.push(chunk)) seen.push(frame.type) })().catch(() => {})
    })
    await waitFor('the sender to know the older peer', () => sender.peer.peers().some((p) => p.peerId === older.peerId))
    const err = await rejection(sender.offerFile(older.peerId, { name: 'a.txt', size: 10, timeoutMs: 5000 }))
    expect(err.code).toBe('E_UNSUPPORTED')
    expect(err.message).toBe(`${older.peerId} does not take file offers (an older starsock?)`)
    await new Promise((resolve) => setTimeout(resolve, 200)) // a frame sent anyway would have arrived
    expect(seen).toEqual([FRAME.HELLO])
  })

  it.each(['target', 'requester'] as const)('a kill from the %s closes every connection of the mapping', async (killer) => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const client = await agent()
    const tunnel = await forward(client, { peer: target.peer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(tunnel)
    const held = await Promise.all([1, 2, 3].map(async () => await holdOpen(tunnel.address.port)))
    await waitFor('three connections at the echo server', () => echo.open() === 3)
    if (killer === 'target') {
      const [mapping] = target.mappings()
      mapping?.kill('test')
      expect((await within('the tunnel to stop', tunnel.done))?.code).toBe('E_KILLED')
    } else {
      await tunnel.close()
      await waitFor('the target to drop the mapping', () => target.mappings().length === 0)
    }
    // The tunnel broke under them: reset, not ended.
    expect(await within('every local connection to close', Promise.all(held.map(async (h) => await h.closed)))).toEqual(['ECONNRESET', 'ECONNRESET', 'ECONNRESET'])
    await waitFor('the echo server to see every connection close', () => echo.open() === 0)
  })

  it('UDP forward and expose with a real UDP echo keep datagram boundaries', async () => {
    const echo = await udpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: [`connect/udp:127.0.0.1:${echo.port}`, 'bind/udp:127.0.0.1:0'] })
    const client = await agent()
    const fwd = await forward(client, { peer: target.peer.peerId, proto: 'udp', listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } })
    const exp = await expose(client, { peer: target.peer.peerId, proto: 'udp', host: '127.0.0.1', port: 0, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(fwd, exp)
    for (const port of [fwd.address.port, exp.address.port]) {
      const c = await udpClient()
      cleanup.push(c)
      const sent = Array.from({ length: 200 }, (_, i) => Buffer.from(testBytes(1 + (i * 37) % 1400, i + 1)))
      for (const d of sent) {
        c.socket.send(d, port, '127.0.0.1')
        await new Promise((resolve) => setTimeout(resolve, 1))
      }
      await waitFor(`the echoes through port ${port}`, () => c.got.length >= 190, 10_000)
      const expected = new Set(sent.map((d) => d.toString('hex')))
      for (const d of c.got) expect(expected.has(d.toString('hex'))).toBe(true)
    }
  })

  it('a UDP forward whose peer is away drops datagrams at once (counted as open), asks only by its recovery loop, tells one error; back when the peer is', async () => {
    const echo = await udpEcho()
    cleanup.push(echo)
    const identity = await createIdentity()
    const targetPeer = await createPeer({ server: server().url(), identity })
    const target = createSockAgent(targetPeer, { host: createNodeHost(), allow: [`connect/udp:127.0.0.1:${echo.port}`] })
    const client = await agent()
    const fwd = await forward(client, { peer: targetPeer.peerId, proto: 'udp', listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(fwd)
    const c = await udpClient()
    cleanup.push(c)
    c.socket.send(Buffer.from('before'), fwd.address.port, '127.0.0.1')
    await waitFor('the first echo', () => c.got.length === 1)
    let asked = 0
    const connect = client.connect.bind(client)
    client.connect = async (...args) => { asked++; return await connect(...args) } // counts the offers, then asks for real
    const errors: string[] = []
    fwd.on('error', (e) => errors.push(e.code))
    await target.close()
    await targetPeer.close()
    await waitFor('the forward to be away', () => fwd.state === 'away')
    const sent = 1000
    for (let i = 0; i < sent; i++) {
      c.socket.send(Buffer.from(`away ${i}`), fwd.address.port, '127.0.0.1')
      if (i % 10 === 0) await new Promise((resolve) => setTimeout(resolve, 10))
    }
    await waitFor('every datagram sent while away to be dropped and counted', () => fwd.stats().droppedBy.open === sent, 5000)
    // Only the recovery loop asks (with backoff, about once per 5 s at most): not once per datagram.
    expect(asked).toBeLessThanOrEqual(8)
    expect(errors.length).toBe(1)

    // The peer comes back with the same identity: the tunnel recovers, and the source sends at once.
    const backPeer = await createPeer({ server: server().url(), identity })
    const back = createSockAgent(backPeer, { host: createNodeHost(), allow: [`connect/udp:127.0.0.1:${echo.port}`] })
    cleanup.push({ close: async () => { await back.close(); await backPeer.close() } })
    await waitFor('the forward to be up again', () => fwd.state === 'up', 10_000)
    c.socket.send(Buffer.from('after'), fwd.address.port, '127.0.0.1')
    await waitFor('an echo after the peer is back', () => c.got.some((d) => d.toString() === 'after'), 5000)
  })

  it('a relay that forges E_SECURE_REQUIRED or E_DENIED in the error frame of a secure redial does not stop the tunnel: a code from the wire is retried, not final', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const identity = await createIdentity()
    const targetPeer = await createPeer({ server: server().url(), identity })
    const target = createSockAgent(targetPeer, { host: createNodeHost(), allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const client = await agent()
    const fwd = await forward(client, { peer: targetPeer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(fwd)
    await target.close()
    await targetPeer.close()
    await waitFor('the forward to be away', () => fwd.state === 'away')
    // What the relay can do: end the listener's answer to the next secure dials with its own error
    // strings (stream error frames are not authenticated): a refusal, then a denial.
    let forged = 0
    const push = Object.getOwnPropertyDescriptor(ReceiveStream.prototype, 'push')?.value as (this: ReceiveStream, chunk: unknown) => void
    ReceiveStream.prototype.push = function (this: ReceiveStream, chunk: unknown) {
      if (forged < 2 && !this.done && this.receivedBytes === 0 && this.id.endsWith('.listener')) {
        return this.finish(forged++ === 0 ? 'Use --insecure to talk to this peer [E_SECURE_REQUIRED]' : 'Denied [E_DENIED]')
      }
      push.call(this, chunk)
    }
    cleanup.push({ close: () => { ReceiveStream.prototype.push = push } })
    const backPeer = await createPeer({ server: server().url(), identity })
    const back = createSockAgent(backPeer, { host: createNodeHost(), allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    cleanup.push({ close: async () => { await back.close(); await backPeer.close() } })
    await waitFor('the forged errors to be delivered', () => forged === 2, 15_000)
    await waitFor('the forward to be up again', () => fwd.state === 'up' || fwd.state === 'closed', 15_000)
    expect(fwd.state).toBe('up')
    expect(fwd.stats().secure).toBe(true)
    const data = testBytes(64 * 1024)
    expectBytes(await within('the echo after the forged refusal', tcpRoundTrip(fwd.address.port, data), 10_000), data, 'the echo after the forged refusal')
  })

  it('a tunnel whose peer is away stops when its agent closes or its signal aborts (no recovery loop left running)', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const targetPeer = await createPeer({ server: server().url() })
    const target = createSockAgent(targetPeer, { host: createNodeHost(), allow: [`connect/tcp:127.0.0.1:${echo.port}`, 'bind/tcp:127.0.0.1:0'] })
    const client = await agent()
    const ac = new AbortController()
    const bySignal = await forward(client, { peer: targetPeer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port }, signal: ac.signal })
    const byClose = await forward(client, { peer: targetPeer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } })
    const exposed = await expose(client, { peer: targetPeer.peerId, host: '127.0.0.1', port: 0, to: { ip: '127.0.0.1', port: echo.port } })
    await target.close()
    await targetPeer.close()
    await waitFor('the tunnels to be away', () => [bySignal, byClose, exposed].every((t) => t.state === 'away'))
    ac.abort()
    expect((await within('the forward to stop on its signal', bySignal.done, 2000))?.code).toBe('E_ABORTED')
    expect(byClose.state).toBe('away')
    await client.close()
    for (const t of [byClose, exposed]) expect((await within('the tunnel to stop with its agent', t.done, 2000))?.code).toBe('E_ABORTED')
    expect([bySignal, byClose, exposed].map((t) => t.state)).toEqual(['closed', 'closed', 'closed'])
  })

  it('after a restart of the far peer, a person who does not answer the new prompt ends the tunnel (E_DENIED): no new prompt every timeout', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const identity = await createIdentity()
    const firstPeer = await createPeer({ server: server().url(), identity })
    const first = createSockAgent(firstPeer, { host: createNodeHost(), ask: async () => true })
    const client = await agent()
    const fwd = await forward(client, { peer: firstPeer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port }, timeoutMs: 700 })
    cleanup.push(fwd)
    await first.close()
    await firstPeer.close()
    await waitFor('the forward to be away', () => fwd.state === 'away')
    // Back with nobody at the prompt; its ask timeout a little longer than the requester's.
    let prompts = 0
    const againPeer = await createPeer({ server: server().url(), identity })
    const again = createSockAgent(againPeer, { host: createNodeHost(), askTimeoutMs: 800, ask: async (_request, signal) => { prompts++; return await new Promise<boolean>((resolve) => signal.addEventListener('abort', () => resolve(false))) } })
    cleanup.push({ close: async () => { await again.close(); await againPeer.close() } })
    const stopped = await within('the forward to stop after the unanswered prompt', fwd.done, 8000)
    expect(stopped?.code).toBe('E_DENIED')
    expect(prompts).toBe(1)
  })

  it('UDP under overload: datagrams that do not fit are dropped and counted, never queued without bound', async () => {
    const echo = await udpEcho()
    cleanup.push(echo)
    const target = await agent({ allow: [`connect/udp:127.0.0.1:${echo.port}`], mux: { windowBytes: 32 * 1024 } })
    const client = await agent({ mux: { windowBytes: 32 * 1024 } })
    const fwd = await forward(client, { peer: target.peer.peerId, proto: 'udp', listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(fwd)
    const c = await udpClient()
    cleanup.push(c)
    const size = 8000
    const payload = Buffer.from(testBytes(size))
    c.socket.send(payload, fwd.address.port, '127.0.0.1')
    await waitFor('the first echo', () => c.got.length === 1)
    const out = client.mappings()[0]?.channels()[0] as Channel // the forward's channel for this source
    const into = target.mappings()[0]?.channels()[0] as Channel // the same channel at the target
    expect([out?.datagrams, into?.datagrams]).toEqual([true, true])
    // Every datagram that reaches the forward's socket is either sent on the channel or dropped and counted.
    let arrived = 1
    let lastArrival = Date.now()
    ;(fwd as unknown as { udp: dgram.Socket }).udp.on('message', () => { arrived++; lastArrival = Date.now() })
    // Sent by the forward and not yet read at the target (on the way, or buffered there): the
    // target's window bounds it, and that window never grows past MAX_DATAGRAM_WINDOW_BYTES: 130 datagrams of 8,000 bytes.
    const bound = Math.floor(MAX_DATAGRAM_WINDOW_BYTES / datagramCost(size))
    const inFlight = (): number => out.stats().sentBytes / size - into.stats().receivedBytes / size + into.stats().bufferedBytes / datagramCost(size)
    let most = 0
    const sample = (): void => { most = Math.max(most, inFlight()) }
    const sampler = setInterval(sample, 1)
    c.socket.on('message', sample)
    try {
      for (let i = 0; i < 2000; i++) c.socket.send(payload, fwd.address.port, '127.0.0.1')
      await waitFor('drops to be counted', () => fwd.stats().droppedDatagrams + into.stats().droppedDatagrams > 0, 10_000)
      await waitFor('the forward\'s socket to go quiet for 200 ms and the target to read all it was sent', () => {
        sample()
        return Date.now() - lastArrival > 200 && inFlight() === 0
      }, 10_000)
    } finally {
      clearInterval(sampler)
    }
    expect(most, `datagrams of ${size} bytes in flight at most`).toBeLessThanOrEqual(bound)
    const s = fwd.stats()
    expect(s.droppedDatagrams, `drops by cause: ${JSON.stringify(s.droppedBy)}`).toBe(s.droppedBy.credit + s.droppedBy.queue)
    expect(out.stats().sentBytes / size + s.droppedDatagrams, 'datagrams sent plus dropped at the forward').toBe(arrived)
    expect(into.stats().droppedBy.window, 'datagrams past the window at the target (the forward sent without credit)').toBe(0)
    for (const [i, d] of c.got.entries()) expectBytes(d, payload, `echo ${i}`)
    expect(c.got.length).toBeLessThanOrEqual(out.stats().sentBytes / size)
  })

  it('a bind survives a reconnect of the binder within its lease; an expired lease frees the port', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    // A port-0 rule: the binder gets its port back by its lease, not by asking for that port.
    const target = await agent({ allow: ['bind/tcp:127.0.0.1:0'], leaseMs: 10_000 })
    const client = await agent()
    const tunnel = await expose(client, { peer: target.peer.peerId, host: '127.0.0.1', port: 0, to: { ip: '127.0.0.1', port: echo.port } })
    cleanup.push(tunnel)
    const port = tunnel.address.port
    const leases: string[] = []
    target.on('lease', (l) => leases.push(`${l.state} ${l.port}`))
    const rebound = new Promise((resolve) => tunnel.on('mapping', resolve))
    // Drop the binder's connection to the server; it reconnects, rejoins and binds again.
    ;(client.peer as unknown as { link: { dropTransport: () => void } }).link.dropTransport()
    await within('the binder to bind again', rebound, 15_000)
    expect(tunnel.address.port).toBe(port)
    expect(leases).toEqual([`held ${port}`, `taken ${port}`])
    const data = testBytes(100_000)
    expectBytes(await within('the echo through the port bound again', tcpRoundTrip(port, data)), data, 'the echo through the port bound again')

    const shortLease = await agent({ allow: ['bind/tcp:127.0.0.1:*'], leaseMs: 300 })
    const binder = await agent()
    const t2 = await expose(binder, { peer: shortLease.peer.peerId, host: '127.0.0.1', port: 0, to: { ip: '127.0.0.1', port: echo.port } })
    const p2 = t2.address.port
    const expired = new Promise((resolve) => shortLease.on('lease', (l) => { if (l.state === 'expired') resolve(l.port) }))
    await binder.peer.close() // the binder vanishes without releasing
    expect(await portFree(p2)).toBe(false)
    expect(await within('the lease to expire', expired, 5000)).toBe(p2)
    await within('the port to be free once the lease expired', (async () => { while (!await portFree(p2)) await new Promise((resolve) => setTimeout(resolve, 50)) })(), 5000)
    await t2.close()
  })

  it('accept without a bind: a peer listening on the other side\'s behalf sends accept channels once it agreed', async () => {
    const receiver = await agent({
      ask: ({ offer }) => offer.kind === 'accept',
      onAccept: (channel) => { void (async () => { for await (const chunk of channel) await channel.write(chunk); await channel.closeWrite() })() }
    })
    const sender = await agent()
    const mapping = await sender.offerAccept(receiver.peer.peerId, { host: '127.0.0.1', port: 2222, name: 'my listener' })
    const channel = await sender.sendAccept(mapping, { ip: '127.0.0.1', port: 50000 })
    expect(channel.header).toMatchObject({ sock: 'accept', src: { ip: '127.0.0.1', port: 50000 }, dst: { ip: '127.0.0.1', port: 2222 } })
    const data = testBytes(300_000)
    const back: Uint8Array[] = []
    const reading = (async () => { for await (const c of channel) back.push(c) })()
    await channel.write(data)
    await channel.closeWrite()
    await within('the echo on the accept channel', reading)
    expectBytes(Buffer.concat(back), data, 'the echo on the accept channel')
    // A peer that offered no accept mapping cannot push accept channels.
    const mux = await sender.session(receiver.peer.peerId)
    expect((await rejection(mux.open({ type: 'sock', sock: 'accept', reliable: true, mapping: 999 }))).code).toBe('E_NO_MAPPING')
  })

  it('a UDP bind answers only sources that sent to it: the binder cannot reach another host through it', async () => {
    const privateService = await udpEcho()
    cleanup.push(privateService)
    const target = await agent({ allow: ['bind/udp:127.0.0.1:0'] })
    const binder = await agent()
    const mapping = await binder.bind(target.peer.peerId, { proto: 'udp', host: '127.0.0.1', port: 0 })
    const channel = mapping.bindChannel as Channel
    for (let i = 0; i < 20; i++) channel.send(new TextEncoder().encode('hello internal service'), { ip: '127.0.0.1', port: privateService.port })
    // A real source may be answered.
    const c = await udpClient()
    cleanup.push(c)
    c.socket.send(Buffer.from('ping'), mapping.bound?.port ?? 0, '127.0.0.1')
    const first = await within('the datagram from the source on the bind channel', channel.receive())
    expect(Buffer.from(first?.data ?? []).toString()).toBe('ping')
    channel.send(new TextEncoder().encode('pong'), first?.addr)
    await waitFor('the answer at the source', () => c.got.length === 1)
    expect(c.got[0]?.toString()).toBe('pong')
    expect(privateService.received()).toBe(0)
  })

  it('a kill closes the target-side connection even when the service does not read', async () => {
    const accepted: net.Socket[] = []
    const stuck = net.createServer((s) => { s.pause(); accepted.push(s) }) // never reads
    await new Promise<void>((resolve) => stuck.listen(0, '127.0.0.1', resolve))
    const port = (stuck.address() as net.AddressInfo).port
    cleanup.push({ close: () => { for (const s of accepted) s.destroy(); stuck.close() } })
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${port}`] })
    const client = await agent()
    const mapping = await client.connect(target.peer.peerId, { host: '127.0.0.1', port })
    const channel = await mapping.connect()
    const writing = (async () => { for (;;) await channel.write(new Uint8Array(64 * 1024)) })()
    writing.catch(() => {})
    await waitFor('the service to have a connection', () => accepted.length === 1)
    await new Promise((resolve) => setTimeout(resolve, 300)) // let the buffers fill up
    const closed = new Promise((resolve) => accepted[0]?.once('close', resolve))
    accepted[0]?.resume() // read from now on, so the close is seen
    target.mappings()[0]?.kill('test')
    await within('the service-side connection to close after the kill', closed)
    expect((await rejection(writing)).code).toBe('E_KILLED')
  })
})

describe('sock agents and end-to-end encryption (issue 14)', () => {
  const { agent, cleanup, server } = useAgents()

  /** A sock agent on a new peer with `identity` (a second one takes over an id that left). */
  const agentWith = async (identity: Awaited<ReturnType<typeof createIdentity>>, options: Parameters<typeof agent>[0] = {}): Promise<ReturnType<typeof createSockAgent>> => {
    const peer = await createPeer({ server: server().url(), identity })
    const a = createSockAgent(peer, { host: createNodeHost(), ...options })
    cleanup.push({ close: async () => { await a.close(); await peer.close() } })
    return a
  }
  const leave = async (a: ReturnType<typeof createSockAgent>): Promise<void> => {
    await a.close()
    await a.peer.close()
  }

  it('agents are end-to-end encrypted by default: the mapping, its stats, the session and the offer say so', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const requests: boolean[] = []
    const target = await agent({ ask: (request) => { requests.push(request.secure); return true } })
    const client = await agent()
    const mapping = await client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port })
    expect([mapping.secure, mapping.stats().secure, requests]).toEqual([true, true, [true]])
    expect(client.sessions()).toMatchObject([{ peerId: target.peer.peerId, secure: true, initiator: true }])
    expect(target.sessions()).toMatchObject([{ peerId: client.peer.peerId, secure: true, initiator: false }])
    const data = testBytes(200_000)
    const channel = await mapping.connect()
    await channel.write(data)
    const got: Uint8Array[] = []
    let n = 0
    while (n < data.byteLength) {
      const chunk = await within('the echo', channel.read())
      if (chunk === null) break
      got.push(chunk)
      n += chunk.byteLength
    }
    expectBytes(Buffer.concat(got), data, 'the echo over the secure connection')
    // An insecure agent allows plaintext; a dialer that did not opt out still gets encryption.
    const lax = await agent({ insecure: true, allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    expect((await client.connect(lax.peer.peerId, { host: '127.0.0.1', port: echo.port })).secure).toBe(true)
    expect(lax.sessions()).toMatchObject([{ peerId: client.peer.peerId, secure: true }])
  })

  it('a plaintext dialer (insecure) is refused by an agent that requires encryption: E_SECURE_REQUIRED both sides, nothing offered, never a downgrade', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const offers: string[] = []
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    target.on('offer', (d) => offers.push(d.text))
    const refused: Array<{ peerId: string, initiator: boolean, code: string }> = []
    target.on('refused', ({ peerId, initiator, error }) => refused.push({ peerId, initiator, code: error.code }))
    const client = await agent({ insecure: true })
    const err = await rejection(client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))
    expect(err.code).toBe('E_SECURE_REQUIRED')
    expect(err.message).toContain('is not end-to-end encrypted; both sides must use --insecure to allow plaintext')
    expect(refused).toEqual([{ peerId: client.peer.peerId, initiator: false, code: 'E_SECURE_REQUIRED' }])
    expect([offers, target.sessions(), echo.open()]).toEqual([[], [], 0])
    // A tunnel takes it as final: it does not ask again for ever.
    const tunnelErr = await rejection(forward(client, { peer: target.peer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: echo.port } }))
    expect(tunnelErr.code).toBe('E_SECURE_REQUIRED')
  })

  it('as dialer too: a plaintext connection an agent that requires encryption dialed (its peer forced to plaintext) is aborted, and the other side sees E_SECURE_REQUIRED', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const target = await agent({ insecure: true, allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const closed: string[] = []
    target.on('session', (mux) => { mux.on('close', (e) => closed.push(e.code)) })
    const client = await agent()
    // What a caller's own `dial` wrapper (or a bug) could do: the agent must not take it.
    const dial = client.peer.dial.bind(client.peer)
    client.peer.dial = async (to, options = {}) => await dial(to, { ...options, secure: false })
    const refused: boolean[] = []
    client.on('refused', ({ initiator }) => refused.push(initiator))
    const err = await rejection(client.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port }))
    expect([err.code, refused]).toEqual(['E_SECURE_REQUIRED', [true]])
    expect(target.mappings()).toHaveLength(0)
    expect(echo.open()).toBe(0)
  })

  it('plaintext between two insecure agents: flagged everywhere; a @PEERID rule does not match it; a person\'s answers are not carried across it either way', async () => {
    const echo = await tcpEcho()
    const other = await tcpEcho()
    cleanup.push(echo, other)
    const identity = await createIdentity()
    const peerId = identity.peerId
    const decisions: string[] = []
    const asked: boolean[] = []
    const target = await agent({ insecure: true, allow: [`connect/tcp:127.0.0.1:${echo.port}@${peerId}`], ask: (request) => { asked.push(request.secure); return true } })
    target.on('offer', (d) => decisions.push(`${d.by} ${d.secure ? 'secure' : 'plaintext'} ${d.offer.port === echo.port ? 'echo' : 'other'}`))
    const to = (port: number): { host: string, port: number } => ({ host: '127.0.0.1', port })

    // End-to-end encrypted: the rule naming the peer matches; a person allows the other port once.
    const secure = await agentWith(identity)
    expect((await secure.connect(target.peer.peerId, to(echo.port))).secure).toBe(true)
    await secure.connect(target.peer.peerId, to(other.port))
    await leave(secure)

    // The same id over plaintext (the server's word only): the rule does not match, the secure
    // answer is not taken, and an answer given here holds on this connection only.
    const plain = await agentWith(identity, { insecure: true })
    const m = await plain.connect(target.peer.peerId, to(echo.port))
    expect([m.secure, m.stats().secure]).toEqual([false, false])
    expect(plain.sessions()).toMatchObject([{ secure: false, initiator: true }])
    expect(target.sessions()).toMatchObject([{ peerId, secure: false, initiator: false }])
    await plain.connect(target.peer.peerId, to(other.port))
    await plain.connect(target.peer.peerId, to(other.port))
    await leave(plain)

    // Encrypted again: the answer given over plaintext is not taken; the secure one still is.
    const again = await agentWith(identity, { insecure: true }) // an insecure agent dials plaintext...
    await again.connect(target.peer.peerId, to(other.port))
    await leave(again)
    const back = await agentWith(identity)
    await back.connect(target.peer.peerId, to(other.port))

    expect(decisions).toEqual([
      'rule secure echo', 'person secure other',
      'person plaintext echo', 'person plaintext other', 'remembered plaintext other',
      'person plaintext other',
      'remembered secure other'
    ])
    expect(asked).toEqual([true, false, false, false])
  })

  it('a plaintext connection that claims an id spends its own budget, never the budget of the peer that proved the id (file quota, mappings and leases)', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const identity = await createIdentity()
    const onFile = (channel: Channel): void => { void (async () => { for await (const c of channel) void c; await channel.closeWrite() })() }
    const target = await agent({ insecure: true, allow: ['file:*', `connect/tcp:127.0.0.1:${echo.port}`, 'bind/tcp:127.0.0.1:*'], maxMappingsPerPeer: 1, files: { onFile, quotaBytesPerPeer: 150_000 } })
    const leases: string[] = []
    target.on('lease', ({ state }) => leases.push(state))
    const sendFile = async (from: ReturnType<typeof createSockAgent>, name: string): Promise<void> => {
      const channel = await from.offerFile(target.peer.peerId, { name, size: 100_000 })
      await channel.write(new Uint8Array(100_000))
      await channel.closeWrite()
      await waitFor(`${name} to be over`, () => target.mappings().length === 0)
    }
    // The id over plaintext (the server's word): a file of 100,000 bytes of a quota of 150,000,
    // then a bound port, left on lease (the one mapping a peer may hold here).
    const plain = await agentWith(identity, { insecure: true })
    await sendFile(plain, 'claimed.bin')
    await plain.bind(target.peer.peerId, { host: '127.0.0.1', port: 0 })
    await leave(plain)
    await waitFor('the plaintext binder\'s port on lease', () => leases.includes('held'))
    // The peer that proves the id still has its whole quota and its own mapping.
    const secure = await agentWith(identity)
    await sendFile(secure, 'proved.bin')
    expect((await secure.connect(target.peer.peerId, { host: '127.0.0.1', port: echo.port })).secure).toBe(true)
  })

  it('a legacy websocket-star peer: a sock agent\'s offer to it fails fast with E_SECURE_REQUIRED (never plaintext by itself), and its dial to the agent is refused', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const legacy = await startLegacyPeer(server().port, (conn: unknown) => pull(conn, conn)) // an echo
    cleanup.push({ close: () => legacy.stop() })
    const client = await agent()
    await waitFor('the agent to know the legacy peer', () => client.peer.peers().some((p) => p.addr === legacy.addr))
    const err = await within('the offer to the legacy peer failing', rejection(client.connect(legacy.id, { host: '127.0.0.1', port: echo.port })), 5000)
    expect(err.code).toBe('E_SECURE_REQUIRED')
    const target = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const refused: Array<{ peerId: string, code: string }> = []
    target.on('refused', ({ peerId, error }) => refused.push({ peerId, code: error.code }))
    await waitFor('the legacy peer to know the agent', () => legacy.discovered.has(target.peer.addr))
    const conn = await within('the legacy dial', legacyDial(legacy, target.peer.addr))
    const ended = await within('the legacy side to see the refusal', legacyExchange(conn, new TextEncoder().encode('hello?')).then(() => 'clean end', (e: Error) => e.message), 10_000)
    expect(ended).not.toBe('clean end')
    expect(refused).toEqual([{ peerId: legacy.id, code: 'E_SECURE_REQUIRED' }])
    expect(target.sessions()).toEqual([])
  })

  it('a port on lease to a verified binder is not handed to a plaintext connection that claims its id; the binder itself takes it back', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const identity = await createIdentity()
    const target = await agent({ insecure: true, allow: ['bind/tcp:127.0.0.1:*'], leaseMs: 10_000 })
    const leases: string[] = []
    target.on('lease', (l) => leases.push(l.state))
    const binder = await agentWith(identity)
    const port = (await binder.bind(target.peer.peerId, { host: '127.0.0.1', port: 0 })).bound?.port as number
    expect(port).toBeGreaterThan(0)
    await binder.peer.close() // dropped, not released: the port goes on lease
    await waitFor('the port to be on lease', () => leases.includes('held'), 5000)
    const impostor = await agentWith(identity, { insecure: true })
    const err = await rejection(impostor.bind(target.peer.peerId, { host: '127.0.0.1', port }))
    expect(err.code).toBe('E_BIND_FAILED')
    expect(err.message).toContain('a plaintext connection cannot take it back')
    await leave(impostor)
    const verified = await agentWith(identity)
    expect((await verified.bind(target.peer.peerId, { host: '127.0.0.1', port })).bound?.port).toBe(port)
    expect(leases).toEqual(['held', 'taken'])
  })
})
