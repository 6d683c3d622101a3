/**
 * The trunk's failure semantics with real processes: a real `redis-server` and `starsock serve
 * --redis` nodes (`TestCluster`), real `kill -9`, `SIGSTOP` and `SIGTERM`. Nodes 1 and 3 stay up
 * for the whole file; each failure gets a node of its own.
 */
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import type { Connection } from '../client/connection.ts'
import { TestCluster, type TestNode } from './helpers/cluster.ts'
import { echo, readAll } from './helpers/connections.ts'
import { expectBytes } from './helpers/bytes.ts'
import { legacyDial, legacyExchange, startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { rejected, testBytes, waitFor, within } from './helpers/server.ts'

/** A TCP balancer on 127.0.0.1: each new connection goes to the port `target` names then. */
async function balancer (target: number): Promise<{ port: number, target: number, close: () => void }> {
  const sockets = new Set<net.Socket>()
  const state = { port: 0, target, close: () => {} }
  const server = net.createServer((client) => {
    const upstream = net.connect(state.target, '127.0.0.1')
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => { sockets.delete(s); client.destroy(); upstream.destroy() })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  state.port = (server.address() as net.AddressInfo).port
  state.close = () => {
    server.close()
    for (const s of sockets) s.destroy()
  }
  return state
}

/** A row of a node's `/metrics` (exact name with labels); `undefined` when absent. */
async function metricOf (node: TestNode, row: string): Promise<number | undefined> {
  const body = await (await fetch(`${node.url}/metrics`)).text()
  const line = body.split('\n').find((l) => l.startsWith(`${row} `))
  return line === undefined ? undefined : Number(line.slice(row.length + 1))
}

describe('trunk failures (real Redis, real nodes)', () => {
  const cluster = new TestCluster()
  let n1: TestNode
  let n3: TestNode
  const legacy: LegacyPeer[] = []
  const closers: Array<() => void> = []

  beforeAll(async () => {
    [n1, n3] = await cluster.start(2) as [TestNode, TestNode]
  }, 60_000)

  afterAll(async () => {
    for (const l of legacy) l.stop()
    for (const close of closers) close()
    await cluster.cleanup()
  }, 60_000)

  const peerOn = async (node: TestNode): Promise<StarsockPeer> => await cluster.peer(node)
  /** Wait until `from` knows `to` (the directory reached its node). */
  const knows = async (from: StarsockPeer, to: StarsockPeer): Promise<void> => {
    await waitFor(`${from.peerId} to know ${to.peerId}`, () => from.peers().some((p) => p.addr === to.addr), 30_000)
  }
  /** An echo of `size` bytes on a new dial from `from` to `to`; byte-exact. */
  const echoThrough = async (from: StarsockPeer, to: StarsockPeer, size: number, what: string): Promise<void> => {
    const data = testBytes(size, size % 251)
    const conn = await within(`the dial for ${what}`, from.dial(to.addr), 20_000)
    const back = readAll(conn)
    await conn.write(data)
    await conn.closeWrite()
    expectBytes(await within(what, back, 30_000), data, what)
  }
  /** A dial from `from` to `to` (which keeps what it gets unread), its receiving end, and some bytes sent. */
  const openStream = async (from: StarsockPeer, to: StarsockPeer): Promise<{ conn: Connection, atDialer: Promise<Buffer> }> => {
    const conn = await within('a cross-node dial', from.dial(to.addr, { secure: false }), 20_000)
    await conn.write(testBytes(10_000))
    const atDialer = readAll(conn)
    atDialer.catch(() => {}) // observed by the test
    return { conn, atDialer }
  }

  it('keeps a stream between nodes 1 and 3 going while node 2 is killed (kill -9), and fails the stream through node 2 with an error within seconds', async () => {
    const n2 = await cluster.node()
    const p1 = await peerOn(n1)
    const p2 = await peerOn(n2)
    const p3 = await peerOn(n3)
    p2.handle(() => {})
    p3.handle(echo)
    await knows(p1, p2)
    await knows(p1, p3)
    const through2 = await openStream(p1, p2)
    // A stream 1 <-> 3 open across the kill.
    const data = testBytes(8 * 1024 * 1024, 11)
    const conn13 = await p1.dial(p3.addr)
    const back13 = readAll(conn13)
    await conn13.write(data.subarray(0, 1024 * 1024))
    n2.program.proc.kill('SIGKILL')
    const err = await within('the error on node 1 for the stream through the killed node', rejected(through2.atDialer), 15_000)
    expect(err).toMatchObject({ code: 'E_PEER_GONE' })
    await conn13.write(data.subarray(1024 * 1024))
    await conn13.closeWrite()
    expectBytes(await within('8 MiB echoed between nodes 1 and 3 across the kill', back13, 30_000), data, 'echo 1 <-> 3')
    p1.handle(echo)
    await echoThrough(p3, p1, 256 * 1024, 'a new dial from node 3 to node 1 after the kill')
  }, 90_000)

  it('does not let a frozen node (SIGSTOP) disturb dials and streams between the others; the stream to it fails', async () => {
    const n4 = await cluster.node()
    const p1 = await peerOn(n1)
    const p3 = await peerOn(n3)
    const p4 = await peerOn(n4)
    p3.handle(echo)
    p4.handle(() => {})
    await knows(p1, p4)
    await knows(p1, p3)
    const to4 = await openStream(p1, p4)
    n4.program.proc.kill('SIGSTOP')
    try {
      await echoThrough(p1, p3, 4 * 1024 * 1024, 'an echo from node 1 to node 3 while node 4 is frozen')
      await echoThrough(p1, p3, 64 * 1024, 'another dial from node 1 to node 3 while node 4 is frozen')
      const err = await within('the error on node 1 for the stream to the frozen node', rejected(to4.atDialer), 20_000)
      expect(err).toMatchObject({ code: 'E_PEER_GONE' })
    } finally {
      n4.program.proc.kill('SIGCONT')
    }
  }, 90_000)

  it('carries a published-client (legacy) dial from node 1 to a starsock peer on node 3, byte-exact', async () => {
    // Behind one address, as behind a load balancer: the legacy client dials only addresses of
    // the server it joined, so both peers join under the balancer's address.
    const lb = await balancer(n1.port)
    closers.push(lb.close)
    const l = await startLegacyPeer(lb.port, () => {})
    legacy.push(l)
    lb.target = n3.port
    const p3 = await createPeer({ server: `http://127.0.0.1:${lb.port}` })
    cluster.peers.push(p3)
    p3.handle(echo)
    await waitFor(`the legacy peer to discover ${p3.addr}`, () => l.discovered.has(p3.addr), 30_000)
    const conn = await within('the legacy dial across nodes', legacyDial(l, p3.addr), 20_000)
    const data = testBytes(2 * 1024 * 1024, 13)
    expectBytes(Buffer.from(await within('the legacy exchange', legacyExchange(conn, data), 30_000)), data, 'legacy echo across nodes')
    expect(await metricOf(n1, 'starsock_cluster_dials_total{outcome="accepted"}')).toBeGreaterThanOrEqual(1)
  }, 60_000)

  it('keeps a cross-node stream and cross-node dials working while Redis is stopped and after it comes back empty', async () => {
    const p1 = await peerOn(n1)
    const p3 = await peerOn(n3)
    p3.handle(echo)
    await knows(p1, p3)
    const data = testBytes(4 * 1024 * 1024, 17)
    const conn = await within('a dial from node 1 to node 3', p1.dial(p3.addr), 20_000)
    const back = readAll(conn)
    await conn.write(data.subarray(0, 1024 * 1024))
    const redis = cluster.redis
    if (redis === undefined) throw new Error('no Redis')
    await redis.stop()
    try {
      await conn.write(data.subarray(1024 * 1024, 2 * 1024 * 1024))
      await echoThrough(p1, p3, 512 * 1024, 'a new dial from node 1 to node 3 while Redis is down')
    } finally {
      await redis.start()
    }
    p1.handle(echo)
    // Redis came back empty: node 3 may drop node 1's peers from its copy until node 1 registered
    // them again (the plane's resync; E_PEER_NOT_FOUND meanwhile). The trunk is not in that path.
    const deadline = Date.now() + 20_000
    for (;;) {
      try {
        await echoThrough(p3, p1, 512 * 1024, 'a dial from node 3 to node 1 once Redis is back (empty)')
        break
      } catch (err) {
        if ((err as { code?: string }).code !== 'E_PEER_NOT_FOUND' || Date.now() > deadline) throw err
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }
    await conn.write(data.subarray(2 * 1024 * 1024))
    await conn.closeWrite()
    expectBytes(await within('the stream across the Redis outage', back, 30_000), data, 'stream across the outage')
  }, 60_000)

  it('ends the cross-node streams of a node that shuts down (SIGTERM) with an error code on the other node', async () => {
    const n5 = await cluster.node(['--shutdown-grace-ms', '200'])
    const p1 = await peerOn(n1)
    const p5 = await peerOn(n5)
    let incoming: Connection | undefined
    p1.handle((conn) => { incoming = conn })
    await knows(p5, p1)
    // Both ways: a dial from node 5 to node 1, and one from node 1 to node 5.
    const from5 = await within('a dial from node 5', p5.dial(p1.addr, { secure: false }), 20_000)
    await from5.write(testBytes(1000))
    await waitFor('the incoming connection on node 1', () => incoming !== undefined, 10_000)
    const atListener = readAll(incoming as Connection)
    atListener.catch(() => {})
    p5.handle(() => {})
    await knows(p1, p5)
    const to5 = await openStream(p1, p5)
    await n5.program.stop('SIGTERM', 20_000)
    for (const [what, reading] of [['listener', atListener], ['dialer', to5.atDialer]] as const) {
      const err = await within(`the error at the ${what} on node 1`, rejected(reading), 15_000)
      expect(err).toMatchObject({ code: 'E_SHUTDOWN' })
    }
  }, 60_000)
})
