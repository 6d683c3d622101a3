/**
 * The trunk in one process: two real servers (no Redis), each with a `Trunk` and a static
 * `ClusterView` shared by the test (address -> node, node -> link address), real peers on each,
 * real links between them on loopback.
 */
import { connect as tcpConnect } from 'node:net'
import type { Socket } from 'socket.io-client'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import type { Connection } from '../client/connection.ts'
import { silentLogger } from '../shared/logger.ts'
import type { ServerOptions } from '../server/options.ts'
import type { StarsockServer } from '../server/server.ts'
import { initiateLink, linkProof, newNonce } from '../server/cluster/links.ts'
import type { HelloMessage } from '../server/cluster/link-codec.ts'
import { ServerMetrics } from '../server/metrics.ts'
import { MAX_LINK_CONNECTIONS, MAX_UNAUTHENTICATED_LINKS, MAX_UNAUTHENTICATED_PER_IP, Trunk } from '../server/cluster/trunk.ts'
import type { ClusterView } from '../server/cluster/types.ts'
import { echo, readAll } from './helpers/connections.ts'
import { expectBytes } from './helpers/bytes.ts'
import { chunked, echoIncoming, receiveStream, request, startRawPeer, StreamSink, dialAndEcho, type RawPeer } from './helpers/raw-peer.ts'
import { tcpProxy } from './helpers/proxy.ts'
import { rejected, startServer, testBytes, waitFor, within } from './helpers/server.ts'

const SECRET = 'trunk-test-secret-0123456789'

/** The cluster as every node of the test sees it. */
class StaticCluster {
  readonly owners = new Map<string, string>()
  readonly linkAddresses = new Map<string, string>()
  /** Nodes a node has not learned of yet, by node. */
  readonly unknownTo = new Map<string, Set<string>>()

  view (nodeId: string): ClusterView {
    return {
      nodeId,
      remoteNodeOf: (addr) => { const n = this.owners.get(addr); return n === nodeId ? undefined : n },
      linkAddressOf: (id) => this.unknownTo.get(nodeId)?.has(id) === true ? undefined : this.linkAddresses.get(id)
    }
  }
}

interface Node { id: string, server: StarsockServer & { port: number }, trunk: Trunk }

/** A counter's value for `labels` in `server`'s registry. */
async function counter (server: StarsockServer, name: string, labels: Record<string, string>): Promise<number> {
  const metric = server.metrics.registry.getSingleMetric(name)
  if (metric === undefined) throw new Error(`no metric ${name}`)
  const { values } = await metric.get()
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0)
}

/** The client's own websocket (the `ws` package in Node), to stop reading like a slow receiver. */
function clientWebSocket (socket: Socket): { pause: () => void, resume: () => void } {
  return (socket.io.engine.transport as unknown as { ws: { pause: () => void, resume: () => void } }).ws
}

describe('trunk: cross-node dials and streams in one process', () => {
  let cluster = new StaticCluster()
  const nodes: Node[] = []
  const peers: StarsockPeer[] = []
  const raws: RawPeer[] = []
  const closers: Array<() => void> = []

  afterEach(async () => {
    for (const p of peers.splice(0)) await p.close()
    for (const r of raws.splice(0)) r.close()
    for (const close of closers.splice(0)) close()
    for (const n of nodes.splice(0)) {
      await n.server.close()
      await n.trunk.close()
    }
    cluster = new StaticCluster()
  })

  const node = async (id: string, options: ServerOptions = {}): Promise<Node> => {
    const server = await startServer({ clusterSecret: SECRET, ...options })
    const trunk = new Trunk({ rendezvous: server.rendezvous, view: cluster.view(id), options: server.options, metrics: server.metrics, logger: silentLogger })
    cluster.linkAddresses.set(id, await trunk.listen())
    server.rendezvous.cluster = {
      remoteTarget: (to, dialer) => trunk.remoteTarget(to, dialer),
      remoteHolder: () => undefined,
      remoteProfile: () => undefined,
      joined: () => {},
      left: () => {},
      profileChanged: () => {}
    }
    const n = { id, server, trunk }
    nodes.push(n)
    return n
  }
  const peerOn = async (n: Node, options: { windowBytes?: number } = {}): Promise<StarsockPeer> => {
    const p = await createPeer({ server: n.server.url(), ...options })
    peers.push(p)
    cluster.owners.set(p.addr, n.id)
    return p
  }
  const rawOn = async (n: Node): Promise<RawPeer> => {
    const r = await startRawPeer(n.server.url(), n.server.port)
    raws.push(r)
    cluster.owners.set(r.addr, n.id)
    return r
  }
  const two = async (options: ServerOptions = {}): Promise<[Node, Node]> => [await node('A', options), await node('B', options)]

  it('dials a peer on the other node and echoes 64 MiB byte-exact both ways, then forgets the stand-ins', async () => {
    const [a, b] = await two()
    const pa = await peerOn(a)
    const pb = await peerOn(b)
    pb.handle(echo)
    const data = testBytes(64 * 1024 * 1024)
    const conn = await within('the cross-node dial', pa.dial(pb.addr), 10_000)
    expect(conn.secure).toBe(true) // the listener's kind (starsock) came back with the dial
    const back = readAll(conn)
    await conn.write(data)
    await conn.closeWrite()
    expectBytes(await within('64 MiB echoed across the nodes', back, 60_000), data, '64 MiB echo')
    expect(a.trunk.links() + b.trunk.links()).toBe(2) // one link, seen from both ends
    expect(await counter(a.server, 'starsock_cluster_dials_total', { outcome: 'accepted' })).toBe(1)
    expect(await counter(a.server, 'starsock_cluster_trunk_bytes_total', { direction: 'out' })).toBeGreaterThanOrEqual(data.length)
    expect(await counter(b.server, 'starsock_cluster_trunk_bytes_total', { direction: 'out' })).toBeGreaterThanOrEqual(data.length)
    await waitFor('every stream closed on both nodes', () => a.server.stats().streams === 0 && b.server.stats().streams === 0, 10_000)
    await waitFor('both stand-ins forgotten', () => a.trunk.standIns() === 0 && b.trunk.standIns() === 0)
    // The other way, over the same link (a link carries dials both ways).
    pa.handle(echo)
    const small = testBytes(100_000, 7)
    const conn2 = await pb.dial(pa.addr)
    const back2 = readAll(conn2)
    await conn2.write(small)
    await conn2.closeWrite()
    expectBytes(await within('the echo from B to A', back2, 10_000), small, 'echo B to A')
    expect(a.trunk.links() + b.trunk.links()).toBe(2)
  })

  it('passes every dial outcome across: refused with a string, unknown peer, listener timeout, listener gone, dial id in use, the listener\'s stream limit', async () => {
    const [a, b] = await two({ dialTimeoutMs: 1000 })
    const pa = await peerOn(a)
    const noHandler = await peerOn(b)
    const refused = await rejected(pa.dial(noHandler.addr, { secure: false }))
    expect(refused).toMatchObject({ code: 'E_DIAL_REFUSED', message: 'This peer takes no connections' })

    // In the view but not joined on B: B's word, not a timeout.
    const ghost = noHandler.addr.replace(noHandler.peerId, 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N')
    cluster.owners.set(ghost, 'B')
    expect(await rejected(pa.dial(ghost, { secure: false }))).toMatchObject({ code: 'E_PEER_NOT_FOUND' })

    // A listener that never answers: B's dial timeout, with its code.
    const silent = await rawOn(b)
    const a1 = await rawOn(a)
    const [timeoutErr] = await request(a1.socket, 'ss-dial', [a1.addr, silent.addr, 'silent'], 10_000)
    expect(timeoutErr).toBe('Listener did not answer within 1000 ms [E_DIAL_TIMEOUT]')

    // A listener that disconnects during the dial.
    const leaving = await rawOn(b)
    leaving.socket.on('ss-incomming', () => leaving.socket.disconnect())
    const [goneErr] = await request(a1.socket, 'ss-dial', [a1.addr, leaving.addr, 'leaving'], 10_000)
    expect(goneErr).toBe('Peer disconnected during the dial [E_PEER_GONE]')

    // The same dial id twice toward the same listener: B refuses it as on one node.
    const echoer = await rawOn(b)
    echoIncoming(echoer)
    expect((await request(a1.socket, 'ss-dial', [a1.addr, echoer.addr, 'same']))[0]).toBeUndefined()
    const [inUse] = await request(a1.socket, 'ss-dial', [a1.addr, echoer.addr, 'same'])
    expect(inUse).toBe('Dial id in use [E_DIAL_ID_IN_USE]')

    // The listener's node's limits: C allows 2 streams per socket (one dial).
    const c = await node('C', { maxStreamsPerSocket: 2 })
    const busy = await rawOn(c)
    echoIncoming(busy)
    expect((await request(a1.socket, 'ss-dial', [a1.addr, busy.addr, 'first']))[0]).toBeUndefined()
    const [limit] = await request(a1.socket, 'ss-dial', [a1.addr, busy.addr, 'second'])
    expect(limit).toBe('Stream limit of the dialed peer reached (maxStreamsPerSocket=2) [E_LIMIT_STREAMS]')
    expect(await counter(a.server, 'starsock_cluster_dials_total', { outcome: 'failed' })).toBeGreaterThanOrEqual(4)
    expect(await counter(a.server, 'starsock_cluster_dials_total', { outcome: 'refused' })).toBe(1)
  })

  it('leaves no stand-in, stream or relay party behind after thousands of failed cross-node dials', async () => {
    const [a, b] = await two({ maxDialsPerSecond: 100_000, dialTimeoutMs: 300 })
    const dialer = await rawOn(a)
    const silent = await rawOn(b)
    const refusing = await rawOn(b)
    refusing.socket.on('ss-incomming', (_id: string, _from: string, ack: (err?: string) => void) => ack('no'))
    const ghost = silent.addr.replace(silent.id, 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N')
    cluster.owners.set(ghost, 'B')
    for (let i = 0; i < 2000; i++) expect((await request(dialer.socket, 'ss-dial', [dialer.addr, ghost, `g${i}`], 10_000))[0]).toBe('Peer not found')
    const timedOut = await Promise.all(Array.from({ length: 200 }, async (_, i) => await request(dialer.socket, 'ss-dial', [dialer.addr, silent.addr, `t${i}`], 10_000)))
    expect(timedOut.every(([err]) => String(err).endsWith('[E_DIAL_TIMEOUT]'))).toBe(true)
    for (let i = 0; i < 500; i++) expect((await request(dialer.socket, 'ss-dial', [dialer.addr, refusing.addr, `r${i}`], 10_000))[0]).toBe('no')
    await waitFor('no stand-in, no stream left', () => a.trunk.standIns() + b.trunk.standIns() + a.server.stats().streams + b.server.stats().streams === 0, 10_000)
    // The relay knows only the real sessions that took part: no stand-in session stays.
    const parties = (n: Node): number => (n.server.rendezvous.relay as unknown as { parties: Map<unknown, unknown> }).parties.size
    expect([parties(a), parties(b)]).toEqual([1, 2])
  })

  it('tells the listener\'s node when the dialer disconnects during the dial, and forgets both stand-ins', async () => {
    const [a, b] = await two()
    const dialer = await rawOn(a)
    const listener = await rawOn(b)
    let asked = false
    listener.socket.on('ss-incomming', () => { asked = true }) // never answers
    const errors: unknown[] = []
    listener.socket.onAny((event: string, value: unknown) => { if (event.startsWith('socket.io-pull-stream.error.')) errors.push(value) })
    void request(dialer.socket, 'ss-dial', [dialer.addr, listener.addr, 'gone'], 30_000).catch(() => {})
    await waitFor('the dial to reach the listener', () => asked, 10_000)
    dialer.close()
    await waitFor('the streams closed on both nodes', () => a.server.stats().streams + b.server.stats().streams === 0, 10_000)
    await waitFor('both stand-ins forgotten', () => a.trunk.standIns() + b.trunk.standIns() === 0, 10_000)
    // The listener, which has not accepted, still hears that the dialer's stream failed.
    await waitFor('an error event at the listener', () => errors.length > 0, 10_000)
    expect(String(errors[0])).toContain('[E_PEER_GONE]')
  })

  it('tells the other node when a receiver goes without a word to its sender (dropSession), so no stream stays behind', async () => {
    const [a, b] = await two()
    const dialer = await rawOn(a)
    const listener = await rawOn(b)
    let dialId = ''
    let got: Promise<Buffer> | undefined
    listener.socket.on('ss-incomming', (id: string, _from: string, ack: () => void) => {
      dialId = id
      got = receiveStream(listener.socket, `${id}.dialer`)
      ack()
    })
    // The dialer ends its own stream at once and never accepts the listener's.
    const sending = new StreamSink(dialer.socket, 'quiet.dialer').send([new Uint8Array([1, 2, 3])])
    expect((await request(dialer.socket, 'ss-dial', [dialer.addr, listener.addr, 'quiet']))[0]).toBeUndefined()
    await sending
    expect(await within('the dialer\'s stream at the listener', got as Promise<Buffer>, 10_000)).toEqual(Buffer.from([1, 2, 3]))
    const aborted = new Promise((resolve) => listener.socket.once(`socket.io-pull-stream.abort.${dialId}.listener`, resolve))
    expect(b.server.stats().streams).toBe(1) // the listener's stream, not accepted by the dialer
    dialer.close()
    expect(String(await within('an abort of its stream at the listener', aborted, 10_000))).toContain('[E_PEER_GONE]')
    await waitFor('no stream and no stand-in left on either node', () => a.server.stats().streams + b.server.stats().streams + a.trunk.standIns() + b.trunk.standIns() === 0, 10_000)
  })

  // A legacy listener's accept answers the dial on its node at once; a starsock listener's dial
  // waits for its ack, so the bytes are on their way before the answer.
  it.each([['a legacy listener', false], ['a starsock listener', true]])('carries bytes a dialer sends as soon as the listener accepted, before the dial\'s answer reached its node (%s)', async (_name, starsock) => {
    const [a, b] = await two()
    const dialer = await rawOn(a)
    const listener = await rawOn(b)
    if (starsock) expect((await request(listener.socket, 'starsock:hello', [{}]))[0]).toBeNull()
    let got: Promise<Buffer> | undefined
    listener.socket.on('ss-incomming', (dialId: string, _from: string, ack: () => void) => {
      got = receiveStream(listener.socket, `${dialId}.dialer`) // accepts at once
      setTimeout(ack, 300)
    })
    const data = testBytes(300_000, 4)
    const sending = new StreamSink(dialer.socket, 'early.dialer').send(chunked(data, 64 * 1024))
    const [err] = await request(dialer.socket, 'ss-dial', [dialer.addr, listener.addr, 'early'], 10_000)
    expect(err).toBeUndefined()
    await sending
    await waitFor('the listener to accept', () => got !== undefined)
    expectBytes(await within('the early bytes at the listener', got as Promise<Buffer>, 10_000), data, 'early bytes')
  })

  it('passes on what a dialer does to its stream before the link to the other node is open (accept right behind the dial)', async () => {
    const [a, b] = await two()
    const dialer = await rawOn(a)
    const listener = await rawOn(b)
    echoIncoming(listener)
    const sink = new StreamSink(dialer.socket, 'early.dialer')
    const dialing = request(dialer.socket, 'ss-dial', [dialer.addr, listener.addr, 'early'], 10_000)
    // Accepted before the dial's answer, while A is still opening its link to B.
    const back = receiveStream(dialer.socket, 'early.listener')
    expect((await dialing)[0]).toBeUndefined()
    const data = testBytes(200_000, 4)
    await sink.send(chunked(data, 64 * 1024))
    expectBytes(await within('the echo of a stream accepted early', back, 10_000), data, 'early accept')
  })

  it('holds a slow receiver on the other node within both nodes\' buffers while another stream on the link keeps flowing', async () => {
    const streamBufferBytes = 2_000_000
    const [a, b] = await two({ streamBufferBytes, socketBufferBytes: 4_000_000, senderStallTimeoutMs: 15_000 })
    const sender = await rawOn(a)
    const reader = await rawOn(b)
    let got: Promise<Buffer> | undefined
    reader.socket.on('ss-incomming', (dialId: string, _from: string, ack: () => void) => {
      got = receiveStream(reader.socket, `${dialId}.dialer`)
      got.catch(() => {})
      ack()
    })
    const sink = new StreamSink(sender.socket, 'slow.dialer')
    expect((await request(sender.socket, 'ss-dial', [sender.addr, reader.addr, 'slow']))[0]).toBeUndefined()
    clientWebSocket(reader.socket).pause()
    const data = testBytes(24 * 1024 * 1024, 3)
    void sink.send(chunked(data, 64 * 1024))
    // Backpressure crosses the link: A's relay pauses the sender (legacy flow control: TCP).
    await waitFor('node A to pause the sender', () => [...a.server.rendezvous.sessions.values()].some((s) => a.server.rendezvous.relay.stateOf(s).paused), 20_000)
    let peakA = 0
    let peakB = 0
    const watch = setInterval(() => {
      peakA = Math.max(peakA, a.server.stats().bufferedBytes)
      peakB = Math.max(peakB, b.server.stats().bufferedBytes)
    }, 5)
    try {
      // Another stream on the same link flows meanwhile.
      const c = await rawOn(a)
      const e = await rawOn(b)
      echoIncoming(e)
      const other = testBytes(4 * 1024 * 1024, 5)
      expectBytes(await within('4 MiB echo beside the stalled stream', dialAndEcho(c, e.addr, other), 30_000), other, 'echo beside the stall')
      expect([...a.server.rendezvous.sessions.values()].some((s) => a.server.rendezvous.relay.stateOf(s).paused)).toBe(true)
      clientWebSocket(reader.socket).resume()
      expectBytes(await within('24 MiB at the slow reader', got as Promise<Buffer>, 60_000), data, 'the slow stream')
    } finally {
      clearInterval(watch)
    }
    expect(peakA).toBeLessThanOrEqual(streamBufferBytes + 4 * 1024 * 1024) // the stalled stream's queue, and the echo's
    expect(peakB).toBeLessThanOrEqual(streamBufferBytes)
  })

  it('refuses and counts a wrong secret, an unknown node id, plain HTTP, garbage and silence on the internal port', async () => {
    const [a] = await two()
    const address = cluster.linkAddresses.get('A') as string
    const open = async (localAddress?: string): Promise<WebSocket> => {
      const ws = new WebSocket(`ws://${address}/`, { localAddress })
      ws.on('error', () => {})
      await new Promise((resolve) => ws.once('open', resolve))
      return ws
    }
    const closeCode = async (ws: WebSocket): Promise<unknown> => await within('the refusal', new Promise((resolve) => ws.once('close', resolve)), 10_000)
    // A wrong secret: the handshake by hand, the proof made with another secret.
    const wrong = await open()
    const nonce = newNonce()
    const hello = new Promise<HelloMessage>((resolve) => wrong.once('message', (data: Buffer) => resolve(JSON.parse(data.toString()) as HelloMessage)))
    wrong.send(JSON.stringify({ t: 'hello', node: 'B', nonce }))
    const theirs = await hello
    expect(theirs.proof).toBe(linkProof(SECRET, 'acceptor', { node: 'B', nonce }, { node: 'A', nonce: theirs.nonce }))
    expect(theirs.heads).toBe(true) // it takes chunks as a head and the chunk (link-codec.ts)
    wrong.send(JSON.stringify({ t: 'proof', proof: linkProof('wrong-secret-0123456789', 'initiator', { node: 'B', nonce }, { node: 'A', nonce: theirs.nonce }) }))
    expect(await closeCode(wrong)).toBe(4001)
    // An unknown node id, with the right secret.
    const unknown = await open()
    expect(await rejected(initiateLink(unknown, 'Z', 'A', SECRET))).toMatchObject({ reason: 'unknown-node' })
    unknown.terminate()
    expect(await counter(a.server, 'starsock_cluster_link_refused_total', { reason: 'secret' })).toBe(1)
    expect(await counter(a.server, 'starsock_cluster_link_refused_total', { reason: 'unknown-node' })).toBe(1)

    const res = await fetch(`http://${address}/`)
    expect(res.status).toBe(426)
    const junk = tcpConnect(Number(address.split(':')[1]), '127.0.0.1')
    junk.on('error', () => {})
    junk.write(Buffer.from(testBytes(4096, 9)))
    await new Promise((resolve) => junk.once('close', resolve))
    const binary = await open()
    binary.send(Buffer.from('not a hello'))
    expect(await closeCode(binary)).toBe(4003)
    expect(await counter(a.server, 'starsock_cluster_link_refused_total', { reason: 'bad-message' })).toBe(3)

    // Silence: refused after the handshake time; past MAX_UNAUTHENTICATED_LINKS at once, refused at
    // once (from several source addresses: one address alone may hold only MAX_UNAUTHENTICATED_PER_IP).
    const source = (i: number): string => `127.0.0.${10 + Math.floor(i / MAX_UNAUTHENTICATED_PER_IP)}`
    const quiet = await Promise.all(Array.from({ length: MAX_UNAUTHENTICATED_LINKS }, async (_, i) => await open(source(i))))
    const closes = quiet.map(async (ws) => await closeCode(ws))
    const extra = await open('127.0.0.99')
    expect(await closeCode(extra)).toBe(1013)
    expect(await counter(a.server, 'starsock_cluster_link_refused_total', { reason: 'too-many' })).toBe(1)
    expect(new Set(await Promise.all(closes))).toEqual(new Set([4008]))
    expect(await counter(a.server, 'starsock_cluster_link_refused_total', { reason: 'timeout' })).toBe(MAX_UNAUTHENTICATED_LINKS)
    expect(a.trunk.links()).toBe(0)
  })

  it('cuts a connection that sends more than a handshake before proving the secret, rather than buffering it', async () => {
    const [a] = await two()
    const port = Number((cluster.linkAddresses.get('A') as string).split(':')[1])
    const sock = tcpConnect(port, '127.0.0.1')
    sock.on('error', () => {})
    closers.push(() => sock.destroy())
    const closed = new Promise((resolve) => sock.once('close', resolve))
    sock.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n')
    await new Promise((resolve) => sock.once('data', resolve)) // 101 Switching Protocols
    // One binary message announced at 900 kB (under the links' maxPayload), 200 kB of it sent, then nothing.
    const header = Buffer.alloc(14)
    header[0] = 0x82
    header[1] = 0x80 | 127
    header.writeBigUInt64BE(900_000n, 2)
    sock.write(Buffer.concat([header, Buffer.alloc(200_000)]))
    await within('the connection cut', closed, 10_000)
    expect(await counter(a.server, 'starsock_cluster_link_refused_total', { reason: 'bad-message' })).toBe(1)
    expect(await counter(a.server, 'starsock_cluster_link_refused_total', { reason: 'timeout' })).toBe(0)
  })

  it('keeps the internal port open to other nodes while one address holds silent TCP connections, and cuts them after the handshake time', async () => {
    const [a, b] = await two()
    const port = Number((cluster.linkAddresses.get('A') as string).split(':')[1])
    // More silent connections than the port takes at all, from an address other than B's.
    const silent = Array.from({ length: MAX_LINK_CONNECTIONS + 8 }, () => tcpConnect({ port, host: '127.0.0.1', localAddress: '127.0.0.2' }))
    let closed = 0
    for (const s of silent) {
      s.on('error', () => {})
      s.on('close', () => closed++)
    }
    closers.push(() => { for (const s of silent) s.destroy() })
    await waitFor('all but MAX_UNAUTHENTICATED_PER_IP refused at once', () => closed >= silent.length - MAX_UNAUTHENTICATED_PER_IP, 10_000)
    expect(await counter(a.server, 'starsock_cluster_link_refused_total', { reason: 'too-many' })).toBe(silent.length - MAX_UNAUTHENTICATED_PER_IP)
    const pa = await peerOn(a)
    const pb = await peerOn(b)
    pa.handle(echo)
    const conn = await within('a dial from B to A meanwhile', pb.dial(pa.addr), 10_000)
    const back = readAll(conn)
    await conn.write(testBytes(1000, 3))
    await conn.closeWrite()
    expectBytes(await within('the echo', back, 10_000), testBytes(1000, 3), 'echo')
    await waitFor('the silent connections cut after the handshake time', () => closed === silent.length, 15_000)
  })

  it('fails the streams through a link that goes silent with E_PEER_GONE on both sides, never a clean end; a later dial opens a new link', async () => {
    const [a, b] = await two()
    // B's link address is a proxy: `cut` closes A's end at once and leaves B's end silent.
    const proxy = await tcpProxy(Number((cluster.linkAddresses.get('B') as string).split(':')[1]))
    closers.push(proxy.close)
    cluster.linkAddresses.set('B', proxy.url.replace('http://', ''))
    const pa = await peerOn(a)
    const pb = await peerOn(b)
    let incoming: Connection | undefined
    pb.handle((conn) => { incoming = conn })
    const conn = await pa.dial(pb.addr, { secure: false })
    await conn.write(testBytes(100_000))
    await waitFor('the incoming connection', () => incoming !== undefined)
    const atB = readAll(incoming as Connection)
    const atA = readAll(conn)
    atA.catch(() => {}) // observed below, after the error at B
    proxy.cut()
    // B hears nothing more: its pings go unanswered.
    const errB = await within('the error at B (missed pings)', rejected(atB), 15_000)
    const errA = await within('the error at A', rejected(atA), 10_000)
    expect(errB).toMatchObject({ code: 'E_PEER_GONE' })
    expect(errA).toMatchObject({ code: 'E_PEER_GONE' })
    expect(String((errA as Error).message)).toContain('Server node B')
    expect(String((errB as Error).message)).toContain('Server node A')
    await waitFor('streams failed on both nodes', () => a.server.stats().streams === 0 && b.server.stats().streams === 0, 10_000)
    await waitFor('the link gone on both nodes', () => a.trunk.links() === 0 && b.trunk.links() === 0, 10_000)
    pb.handle(echo)
    const conn2 = await pa.dial(pb.addr, { secure: false })
    const back = readAll(conn2)
    await conn2.write(testBytes(1000))
    await conn2.closeWrite()
    expectBytes(await within('an echo on a new link', back, 10_000), testBytes(1000), 'echo on a new link')
  })

  it('fails a dial waiting on a link that drops with E_PEER_GONE, at once rather than at the dial timeout', async () => {
    const [a, b] = await two({ dialTimeoutMs: 20_000 })
    const proxy = await tcpProxy(Number((cluster.linkAddresses.get('B') as string).split(':')[1]))
    closers.push(proxy.close)
    cluster.linkAddresses.set('B', proxy.url.replace('http://', ''))
    const dialer = await rawOn(a)
    const silent = await rawOn(b)
    let asked = false
    silent.socket.on('ss-incomming', () => { asked = true })
    const dialing = request(dialer.socket, 'ss-dial', [dialer.addr, silent.addr, 'waiting'], 30_000)
    await waitFor('the dial to reach the listener', () => asked, 10_000)
    proxy.drop()
    const [err] = await within('the dial to fail', dialing, 10_000)
    expect(String(err)).toMatch(/^Server node B unreachable .*\[E_PEER_GONE\]$/)
    await waitFor('no stream and no stand-in left on either node', () => a.server.stats().streams + b.server.stats().streams + a.trunk.standIns() + b.trunk.standIns() === 0, 10_000)
  })

  it('refuses to listen on a wildcard address without an address to advertise', async () => {
    const [a] = await two()
    for (const clusterListen of ['0.0.0.0:0', '[::]:0']) {
      const trunk = new Trunk({ rendezvous: a.server.rendezvous, view: cluster.view('X'), options: { ...a.server.options, clusterListen }, metrics: new ServerMetrics(false, () => 0), logger: silentLogger })
      await expect(trunk.listen()).rejects.toThrow(`clusterListen ${clusterListen} is a wildcard address: set clusterAdvertise`)
    }
    const advertised = new Trunk({ rendezvous: a.server.rendezvous, view: cluster.view('Y'), options: { ...a.server.options, clusterListen: '0.0.0.0:0', clusterAdvertise: '10.1.2.3:7000' }, metrics: new ServerMetrics(false, () => 0), logger: silentLogger })
    expect(await advertised.listen()).toBe('10.1.2.3:7000')
    await advertised.close()
  })

  it('sends a node of an earlier version (its hello offers no heads) each chunk as one data message, byte-exact', async () => {
    const [a] = await two()
    const listener = await peerOn(a)
    const data = testBytes(200_000, 21)
    listener.handle((conn) => { void conn.write(data).then(async () => { await conn.closeWrite() }) })
    // The older node B, by hand: the handshake without `heads`, then a dial from a legacy peer of its own.
    const ws = new WebSocket(`ws://${cluster.linkAddresses.get('A') as string}/`, { perMessageDeflate: false })
    closers.push(() => ws.terminate())
    ws.on('error', () => {})
    await new Promise((resolve) => ws.once('open', resolve))
    const texts: Array<Record<string, unknown>> = []
    const binaries: Buffer[] = []
    ws.on('message', (d: Buffer, binary: boolean) => { if (binary) binaries.push(d); else texts.push(JSON.parse(d.toString()) as Record<string, unknown>) })
    const nonce = newNonce()
    ws.send(JSON.stringify({ t: 'hello', node: 'B', nonce }))
    await waitFor('A\'s hello', () => texts.length === 1)
    const theirs = texts[0] as unknown as HelloMessage
    expect(theirs.heads).toBe(true)
    ws.send(JSON.stringify({ t: 'proof', proof: linkProof(SECRET, 'initiator', { node: 'B', nonce }, { node: 'A', nonce: theirs.nonce }) }))
    await waitFor('ok', () => texts.some((m) => m.t === 'ok'))
    const from = listener.addr.replace(listener.peerId, 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N')
    cluster.owners.set(from, 'B')
    ws.send(JSON.stringify({ t: 'dial', k: 2, from, to: listener.addr, id: 'older-node-dial', secure: false, starsock: false, win: 1024 * 1024 }))
    await waitFor('the listener\'s answer', () => texts.some((m) => m.t === 'reply' || m.t === 'fail'), 10_000)
    expect(texts.find((m) => m.t === 'reply' || m.t === 'fail')).toMatchObject({ t: 'reply', k: 2, refusal: null })
    ws.send(JSON.stringify({ t: 'ev', k: 2, s: 1, e: 'accept', a: null })) // its dialer takes the listener's stream
    const total = (): number => binaries.reduce((n, b) => n + b.byteLength - 6, 0)
    await waitFor('the listener\'s bytes at the older node', () => total() >= data.length, 10_000)
    // One message per chunk, `1 | key | stream | payload`, never a head.
    expect(new Set(binaries.map((b) => [b[0], b.readUInt32BE(1), b[5]].join(' ')))).toEqual(new Set(['1 2 1']))
    expectBytes(Buffer.concat(binaries.map((b) => b.subarray(6))), data, 'the listener\'s bytes as old data messages')
  })

  it('asks again a node that did not know this one yet (it just started), and dials through', async () => {
    const [a, b] = await two({ clusterNodeTtlMs: 3000 })
    cluster.unknownTo.set('B', new Set(['A']))
    const pa = await peerOn(a)
    const pb = await peerOn(b)
    pb.handle(echo)
    const dialing = pa.dial(pb.addr, { secure: false })
    await within('B to refuse A as unknown', (async () => { while (await counter(b.server, 'starsock_cluster_link_refused_total', { reason: 'unknown-node' }) === 0) await new Promise((resolve) => setTimeout(resolve, 20)) })(), 5000)
    cluster.unknownTo.delete('B') // B learned of A
    const conn = await within('the dial once B knows A', dialing, 10_000)
    const back = readAll(conn)
    await conn.write(testBytes(1000))
    await conn.closeWrite()
    expectBytes(await within('the echo', back, 10_000), testBytes(1000), 'echo after the second ask')
  })

  it('keeps the streams of a node that left the cluster while its link answers, and closes the link once they are over', async () => {
    const [a, b] = await two()
    const pa = await peerOn(a)
    const pb = await peerOn(b)
    pb.handle(echo)
    const conn = await pa.dial(pb.addr, { secure: false })
    const back = readAll(conn)
    await conn.write(testBytes(50_000))
    a.trunk.nodeGone('B')
    await conn.write(testBytes(50_000, 2))
    await conn.closeWrite()
    expect((await within('the echo after nodeGone', back, 10_000)).length).toBe(100_000)
    await waitFor('the retired link closed on both nodes', () => a.trunk.links() === 0 && b.trunk.links() === 0, 10_000)
  })

  it('ends the cross-node streams of a node that shuts down with E_SHUTDOWN on the other node', async () => {
    const [a, b] = await two()
    const pa = await peerOn(a)
    const pb = await peerOn(b)
    let incoming: Connection | undefined
    pb.handle((conn) => { incoming = conn })
    const conn = await pa.dial(pb.addr, { secure: false })
    await conn.write(testBytes(1000))
    await waitFor('the incoming connection', () => incoming !== undefined)
    const atB = readAll(incoming as Connection)
    atB.catch(() => {})
    await a.server.close()
    await a.trunk.close()
    nodes.splice(nodes.indexOf(a), 1)
    expect(await within('the error at B', rejected(atB), 10_000)).toMatchObject({ code: 'E_SHUTDOWN' })
  })
})
