/**
 * The control plane of a cluster (issue 18) with a real `redis-server` and three real `starsock
 * serve` nodes: discovery, paging and `starsock peers` across nodes, the same address joined on
 * two nodes, `/metrics` and `/status.json`, and the refusal of `--redis` without a secret.
 * One cluster for the file; failures (kill -9, Redis restarts, shutdown) are in
 * cluster-failures.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Socket } from 'socket.io-client'
import type { StarsockPeer } from '../client/peer.ts'
import { TestCluster, type TestNode } from './helpers/cluster.ts'
import { startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { runProgram, runProgramAsync as runAsync } from './helpers/programs.ts'
import { connectSocket, joinWithChallenge, makeIdentity, request } from './helpers/raw-peer.ts'
import { waitFor, within } from './helpers/server.ts'


/** `GET url` as text. */
async function text (url: string): Promise<{ status: number, body: string }> {
  const res = await fetch(url)
  return { status: res.status, body: await res.text() }
}

/** A metric's value in a `/metrics` body (the first row of that name). */
function metric (body: string, name: string): number | undefined {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(body)
  return m?.[1] === undefined ? undefined : Number(m[1])
}

describe('cluster control plane (3 nodes, real Redis)', () => {
  const cluster = new TestCluster()
  let nodes: TestNode[] = []
  const peers = cluster.peers
  const sockets: Socket[] = []
  const legacy: LegacyPeer[] = []

  beforeAll(async () => {
    // Pages of 2 so a few peers make several pages.
    nodes = await cluster.start(3, ['--announce-batch-peers', '2', '--announce-interval-ms', '1000'])
  }, 60_000)

  afterAll(async () => {
    for (const s of sockets) s.close()
    for (const l of legacy) l.stop()
    await cluster.cleanup()
  }, 60_000)

  const peerOn = async (node: TestNode): Promise<StarsockPeer> => await cluster.peer(node)

  it('tells peers on every node of joins and leaves on the others, and lists everyone', async () => {
    const [n1, n2, n3] = nodes as [TestNode, TestNode, TestNode]
    const a = await peerOn(n1)
    const b = await peerOn(n2)
    await waitFor('peer on node 1 to learn of the peer on node 2', () => a.peers().some((p) => p.peerId === b.peerId), 30_000)
    const joined = new Promise<string>((resolve) => a.on('peer:join', (info) => { if (info.peerId !== b.peerId) resolve(info.peerId) }))
    const c = await peerOn(n3)
    expect(await within('peer:join on node 1 for the peer on node 3', joined, 30_000)).toBe(c.peerId)
    await waitFor('peer on node 3 to list both others', () => [a.peerId, b.peerId].every((id) => c.peers().some((p) => p.peerId === id)), 30_000)
    const left = new Promise<string>((resolve) => a.on('peer:leave', (info) => resolve(info.peerId)))
    await c.close()
    expect(await within('peer:leave on node 1 for the peer that left node 3', left, 30_000)).toBe(c.peerId)
    expect(a.peers().some((p) => p.peerId === c.peerId)).toBe(false)
  }, 90_000)

  it('announces a published-client peer on one node as ws-peer on another (and the other way round)', async () => {
    const [n1, n2] = nodes as [TestNode, TestNode]
    const l = await startLegacyPeer(n2.port, () => {})
    legacy.push(l)
    const socket = await connectSocket(n1.url)
    sockets.push(socket)
    const announced: string[] = []
    socket.on('ws-peer', (addr: string) => announced.push(addr))
    const me = await makeIdentity(n1.port)
    await joinWithChallenge(socket, me.key, me.addr)
    await waitFor(`ws-peer for the legacy peer's ${l.addr} on node 1`, () => announced.includes(l.addr), 30_000)
    await waitFor(`the legacy peer on node 2 to discover ${me.addr} on node 1`, () => l.discovered.has(me.addr), 30_000)
  }, 60_000)

  it('pages starsock:peers with a cursor taken on node 1 and continued on node 2, listing everyone', async () => {
    const [n1, n2, n3] = nodes as [TestNode, TestNode, TestNode]
    for (const n of [n1, n2, n3, n1, n2, n3]) await peerOn(n)
    const s1 = await connectSocket(n1.url)
    const s2 = await connectSocket(n2.url)
    sockets.push(s1, s2)
    // One identity under one address on both nodes' sockets would displace: two identities.
    const i1 = await makeIdentity(n1.port)
    const i2 = await makeIdentity(n2.port)
    await joinWithChallenge(s1, i1.key, i1.addr)
    await joinWithChallenge(s2, i2.key, i2.addr)
    const online = peers.filter((p) => p.state !== 'closed').map((p) => p.addr)
    let listed: string[] = []
    await within('a full listing across both nodes', (async () => {
      for (;;) {
        listed = []
        let cursor: number | null = 0
        let page = 0
        while (cursor !== null) {
          // Odd pages from node 1, even pages from node 2: a cursor from one is valid on the other.
          const socket = page++ % 2 === 0 ? s1 : s2
          const [err, reply] = await request(socket, 'starsock:peers', [cursor]) as [unknown, { addrs: string[], next: number | null }]
          expect(err).toBeNull()
          listed.push(...reply.addrs)
          cursor = reply.next
        }
        // Each node leaves out its own socket's address: i1 and i2 may each be on a page or not.
        if (online.every((a) => listed.includes(a))) return
        await new Promise((resolve) => setTimeout(resolve, 500))
      }
    })(), 30_000)
    expect(page2Count(listed)).toBe(listed.length) // no address twice when nothing moved
    for (const a of online) expect(listed).toContain(a)
  }, 90_000)

  it('lists everyone with `starsock peers` against any node', async () => {
    const online = peers.filter((p) => p.state !== 'closed').map((p) => p.peerId).sort()
    for (const node of nodes) {
      const out = await runAsync(['peers', '--server', node.url, '--json'])
      expect(out.status, out.stderr).toBe(0)
      const listed = (JSON.parse(out.stdout) as Array<{ peerId: string }>).map((p) => p.peerId)
      for (const id of online) expect(listed).toContain(id)
    }
  }, 90_000)

  it('moves an address joined on node 2 (takeover) away from the socket holding it on node 1', async () => {
    const [n1, n2, n3] = nodes as [TestNode, TestNode, TestNode]
    // One address through a load balancer: the same string on every node.
    const who = await makeIdentity(40_000)
    const first = await connectSocket(n1.url)
    const second = await connectSocket(n2.url)
    const watcher = await connectSocket(n3.url)
    sockets.push(first, second, watcher)
    const w = await makeIdentity(n3.port)
    await joinWithChallenge(watcher, w.key, w.addr)
    // Starsock clients, the second asking to take over: displaced whether node 2 saw the first's
    // row (the identity rules across nodes) or not yet (the later join in the log wins).
    await request(first, 'starsock:hello', [{}])
    await request(second, 'starsock:hello', [{ takeover: true }])
    await joinWithChallenge(first, who.key, who.addr)
    const displaced = new Promise<{ addr: string, reason: string }>((resolve) => first.on('starsock:displaced', resolve))
    const gone = new Promise<void>((resolve) => first.on('disconnect', () => resolve()))
    await joinWithChallenge(second, who.key, who.addr)
    expect((await within('starsock:displaced on node 1', displaced, 30_000)).addr).toBe(who.addr)
    await within('node 1 to disconnect the socket left with no address', gone, 30_000)
    // Still joined, on node 2: a peer on node 3 lists it.
    const [, page] = await request(watcher, 'starsock:peers', [0]) as [unknown, { addrs: string[], next: number | null }]
    const all: string[] = [...page.addrs]
    let cursor = page.next
    while (cursor !== null) {
      const [, more] = await request(watcher, 'starsock:peers', [cursor]) as [unknown, { addrs: string[], next: number | null }]
      all.push(...more.addrs)
      cursor = more.next
    }
    expect(all).toContain(who.addr)
    expect(second.connected).toBe(true)
  }, 60_000)

  it('shows cluster rows in /metrics and /status.json', async () => {
    const [n1] = nodes as [TestNode]
    let body = ''
    await within('starsock_cluster_nodes 3 on node 1', (async () => {
      for (;;) {
        body = (await text(`${n1.url}/metrics`)).body
        if (metric(body, 'starsock_cluster_nodes') === 3) return
        await new Promise((resolve) => setTimeout(resolve, 300))
      }
    })(), 30_000)
    expect(metric(body, 'starsock_cluster_redis_up')).toBe(1)
    expect(metric(body, 'starsock_cluster_remote_peers')).toBeGreaterThan(0)
    expect(metric(body, 'starsock_cluster_redis_errors_total')).toBe(0)
    expect(body).toMatch(/^starsock_cluster_redis_commands_total\{command="join"\} \d+$/m)
    const status = JSON.parse((await text(`${n1.url}/status.json`)).body) as Record<string, unknown>
    expect(status.clusterNodes).toBe(3)
    expect(status.clusterRedis).toBe('up')
    expect(typeof status.clusterNode).toBe('string')
    expect((await text(`${n1.url}/readyz`)).status).toBe(200)
  }, 60_000)

  it('refuses `serve --redis` without --cluster-secret with one readable line', () => {
    const r = runProgram(['serve', '--port', '0', '--redis', cluster.redis?.socket ?? '/nowhere'], 30_000)
    expect(r.timedOut).toBe(false)
    expect(r.status).not.toBe(0)
    const lines = r.stderr.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/cluster-?secret/i)
  })
})

/** Distinct addresses in `list`. */
function page2Count (list: string[]): number {
  return new Set(list).size
}
