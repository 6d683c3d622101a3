/**
 * Failure semantics of the cluster's control plane (issue 18), with a real `redis-server` and real
 * `starsock serve` nodes: a frozen node (`SIGSTOP`) reaped and back, a `kill -9` node's peers
 * gone from the others, a clean `SIGTERM` removing its peers at once, and Redis stopped and
 * started empty (nodes serve locally, `/readyz` says 503 past the bound, everyone re-registers).
 */
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { TestCluster, type TestNode } from './helpers/cluster.ts'
import { waitFor, waitForAsync, within } from './helpers/server.ts'

/** Settles once `url` answers `status`; rejects after `ms`. */
async function statusBecomes (url: string, status: number, ms = 30_000): Promise<void> {
  await within(`${url} to answer ${status}`, (async () => {
    for (;;) {
      const got = await fetch(url).then((r) => r.status, () => 0)
      if (got === status) return
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  })(), ms)
}

describe('cluster failures (real Redis, real nodes)', () => {
  const cluster = new TestCluster()
  let nodes: TestNode[] = []
  const peers: StarsockPeer[] = []

  beforeAll(async () => {
    nodes = await cluster.start(3)
  }, 60_000)

  afterAll(async () => {
    for (const p of peers) await p.close()
    await cluster.cleanup()
  }, 60_000)

  const peerOn = async (node: TestNode): Promise<StarsockPeer> => {
    const p = await createPeer({ server: node.url, reconnectDelayMs: 200, reconnectDelayMaxMs: 1000 })
    peers.push(p)
    return p
  }
  const lists = (p: StarsockPeer, other: StarsockPeer): boolean => p.peers().some((i) => i.peerId === other.peerId)

  it('reaps a frozen node (its peers leave the others) and takes it back with its peers when it thaws', async () => {
    const [n1] = nodes as [TestNode]
    const frozen = await cluster.node()
    const a = await peerOn(n1)
    const f = await peerOn(frozen)
    await waitFor('the peer on node 1 to list the peer on the node to freeze', () => lists(a, f), 30_000)
    frozen.program.proc.kill('SIGSTOP')
    try {
      await waitFor('the frozen node\'s peer to leave node 1\'s list (key lapsed, node reaped)', () => !lists(a, f), 30_000)
    } finally {
      frozen.program.proc.kill('SIGCONT')
    }
    await waitFor('the thawed node to register its peer again', () => lists(a, f), 30_000)
    expect(f.state).not.toBe('closed')
    // The node itself found its registration gone and wrote it again (not only its client reconnecting).
    await waitFor('the thawed node to say its registration had lapsed', () => (frozen.program.out() + frozen.program.err()).includes('registration had lapsed'), 30_000)
  }, 90_000)

  it('removes a kill -9 node\'s peers from every other node', async () => {
    const [n1, n2] = nodes as [TestNode, TestNode]
    const doomed = await cluster.node()
    const a = await peerOn(n1)
    const b = await peerOn(n2)
    const d = await peerOn(doomed)
    await waitFor('both to list the peer on the node to kill', () => lists(a, d) && lists(b, d), 30_000)
    doomed.program.proc.kill('SIGKILL')
    await waitFor('the killed node\'s peer to leave node 1 and node 2', () => !lists(a, d) && !lists(b, d), 30_000)
    // The others still see each other.
    expect(lists(a, b) && lists(b, a)).toBe(true)
    await d.close()
  }, 90_000)

  it('removes a node\'s peers at once on a clean SIGTERM (long before its key would lapse)', async () => {
    const [n1] = nodes as [TestNode]
    // A 120 s time-to-live: only the node's goodbye can remove its peer within the wait below.
    const leaving = await cluster.node(['--cluster-node-ttl-ms', '120000'])
    const a = await peerOn(n1)
    const l = await peerOn(leaving)
    await waitFor('node 1 to list the peer on the node that will stop', () => lists(a, l), 30_000)
    const left = new Promise<string>((resolve) => a.on('peer:leave', (info) => { if (info.peerId === l.peerId) resolve(info.peerId) }))
    expect(await leaving.program.stop('SIGTERM', 30_000)).toBe(0)
    await within('peer:leave on node 1 for the stopped node\'s peer', left, 30_000)
    await l.close()
  }, 90_000)

  it('keeps serving while Redis is stopped, says 503 past the bound, and re-registers everyone when Redis comes back empty', async () => {
    const [n1, n2, n3] = nodes as [TestNode, TestNode, TestNode]
    const redis = cluster.redis
    if (redis === undefined) throw new Error('no Redis')
    const a = await peerOn(n1)
    const b = await peerOn(n2)
    await waitFor('a and b to list each other', () => lists(a, b) && lists(b, a), 30_000)
    await redis.stop()
    let restarted = false
    try {
      // The bound is the 3 s node time-to-live.
      await statusBecomes(`${n1.url}/readyz`, 503)
      // Joins are served locally meanwhile; the copy of the directory stays.
      const c = await peerOn(n3)
      expect(c.state).toBe('joined')
      expect(lists(a, b) && lists(b, a)).toBe(true)
      const metrics = await (await fetch(`${n1.url}/metrics`)).text()
      expect(metrics).toMatch(/^starsock_cluster_redis_up 0$/m)
      await redis.start()
      restarted = true
      for (const n of [n1, n2, n3]) await statusBecomes(`${n.url}/readyz`, 200)
      await waitFor('the peer joined during the outage (node 3) to reach nodes 1 and 2', () => lists(a, c) && lists(b, c), 30_000)
      await waitFor('node 3 to list the peers of nodes 1 and 2 again', () => lists(c, a) && lists(c, b), 30_000)
      const logs = n1.program.out() + n1.program.err()
      expect(logs).toContain('Redis unreachable')
      expect(logs).toContain('Redis answers again')
      // Redis itself holds everyone again, and every running node (the thawed one too).
      const direct = new Redis({ path: redis.socket, lazyConnect: true })
      try {
        await direct.connect()
        expect((await direct.hkeys('starsock:peers')).sort()).toEqual(expect.arrayContaining([a.addr, b.addr, c.addr]))
        const running = cluster.nodes.filter((n) => n.program.proc.exitCode === null && n.program.proc.signalCode === null)
        // Each re-registers at its next heartbeat (every ttl/3) after Redis answers it: a node
        // thawed by an earlier test may come a beat after the three that serve these peers.
        await waitForAsync('every running node registered again', async () => await direct.hlen('starsock:nodes') === running.length, 10_000)
      } finally {
        direct.disconnect()
      }
    } finally {
      if (!restarted) await redis.start()
    }
  }, 120_000)
})
