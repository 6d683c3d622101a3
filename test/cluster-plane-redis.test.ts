/**
 * The control plane in this process against a real `redis-server`, with a recording stand-in for
 * the rendezvous: what the log carries between two planes, garbage written into Redis by someone
 * else (skipped and counted), a gap in the log (a snapshot re-read), and the same address joined
 * on two nodes while one write is still in flight (the later join in the log wins).
 */
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { Redis } from 'ioredis'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../shared/logger.ts'
import type { PeerProfile } from '../shared/profile.ts'
import { ClusterDirectory } from '../server/cluster/cluster-directory.ts'
import { ControlPlane, KEY_PREFIX, LOG_MAX_ENTRIES } from '../server/cluster/plane.ts'
import { runScript } from '../server/cluster/redis-scripts.ts'
import type { Membership } from '../server/cluster/membership.ts'
import { ServerMetrics } from '../server/metrics.ts'
import { resolveServerOptions } from '../server/options.ts'
import type { Rendezvous } from '../server/rendezvous.ts'
import type { HolderClaim } from '../server/cluster/types.ts'
import { claimJson } from '../server/cluster/plane-entries.ts'
import { REDIS_SERVER, startRedis, type TestRedis } from './helpers/cluster.ts'
import { waitFor, waitForAsync } from './helpers/server.ts'

/** What a local join's row says of its client (the identity rules are not this file's subject). */
const CLAIM: HolderClaim = { starsock: false, credentialHash: undefined, remote: '127.0.0.1:1' }

/** One plane with its directory, metrics and what it told the rendezvous. */
interface TestPlane {
  plane: ControlPlane
  directory: ClusterDirectory
  metrics: ServerMetrics
  calls: string[]
  /** A local session joins `addr` (the rendezvous's part: directory, then the hook). */
  join: (addr: string, session?: string) => void
  leave: (addr: string, session?: string) => void
}

/** A metric's value (summed over labels). */
async function metric (m: ServerMetrics, name: string): Promise<number> {
  const json = await m.registry.getMetricsAsJSON()
  return json.find((x) => x.name === name)?.values.reduce((sum, v) => sum + v.value, 0) ?? 0
}

describe('control plane against a real Redis', () => {
  let redis: TestRedis
  let direct: Redis
  const planes: ControlPlane[] = []

  beforeAll(async () => {
    redis = await startRedis()
    direct = new Redis({ path: redis.socket })
  }, 30_000)

  afterEach(async () => {
    for (const p of planes.splice(0)) {
      await p.leaving()
      await p.close()
    }
    await direct.flushall()
  })

  afterAll(async () => {
    direct.disconnect()
    await redis.stop()
    rmSync(redis.dir, { recursive: true, force: true })
  })

  /** Drop the Redis connection named `name` (Redis's side), as a network cut would. */
  const killClient = async (name: string): Promise<void> => {
    const list = String(await direct.call('CLIENT', 'LIST'))
    const id = list.split('\n').map((line) => /^id=(\d+) .*\bname=(\S+)/.exec(line)).find((m) => m?.[2] === name)?.[1]
    if (id === undefined) throw new Error(`no Redis client named ${name}`)
    await direct.call('CLIENT', 'KILL', 'ID', id)
  }

  const makePlane = async (url = redis.socket, clusterNodeTtlMs = 1500): Promise<TestPlane> => {
    const options = resolveServerOptions({ redis: url, clusterSecret: 'test-cluster-secret-0123456789', clusterNodeTtlMs })
    const metrics = new ServerMetrics(false, () => 0)
    const directory = new ClusterDirectory()
    const calls: string[] = []
    let plane: ControlPlane | undefined
    const rendezvous = {
      remoteJoined: (addr: string) => calls.push(`join ${addr}`),
      remoteLeft: (addr: string) => calls.push(`leave ${addr}`),
      remoteProfileChanged: (addr: string, p: PeerProfile) => calls.push(`profile ${addr} ${p.name ?? ''}`),
      displacedByNode: (addr: string) => {
        calls.push(`displaced ${addr}`)
        const owner = directory.owner(addr)
        if (owner !== undefined && directory.release(addr, owner)) plane?.left(addr)
      },
      profileAt: () => undefined,
      joinedElsewhere: () => {},
      reservedElsewhere: () => {}
    } as unknown as Rendezvous
    plane = new ControlPlane({ rendezvous, directory, options, metrics, logger: silentLogger, nodeGone: (id) => calls.push(`gone ${id}`) })
    planes.push(plane)
    await plane.start('127.0.0.1:1')
    const p = plane
    return {
      plane,
      directory,
      metrics,
      calls,
      join: (addr, session = 's1') => {
        directory.set(addr, session)
        p.joined(addr, undefined, CLAIM)
      },
      leave: (addr, session = 's1') => {
        if (directory.release(addr, session)) p.left(addr)
      }
    }
  }

  it('carries joins, profile changes and leaves from one plane to another, in one script each', async () => {
    const a = await makePlane()
    const b = await makePlane()
    a.join('/a1')
    await waitFor('plane B to hear of /a1', () => b.calls.includes('join /a1'), 20_000)
    expect(b.directory.nodeOf('/a1')).toBe(a.plane.nodeId)
    a.plane.profileChanged(['/a1'], { name: 'Ann', kind: 'node' })
    await waitFor('plane B to hear the profile of /a1', () => b.calls.includes('profile /a1 Ann'), 20_000)
    expect(b.plane.remoteProfile('/a1')).toEqual({ name: 'Ann', kind: 'node' })
    a.leave('/a1')
    await waitFor('plane B to hear /a1 leave', () => b.calls.includes('leave /a1'), 20_000)
    expect(b.directory.size).toBe(0)
    // One script per join, profile change and leave.
    expect(await metric(a.metrics, 'starsock_cluster_redis_commands_total')).toBeGreaterThan(0)
    const json = await a.metrics.registry.getMetricsAsJSON()
    const commands = json.find((m) => m.name === 'starsock_cluster_redis_commands_total')?.values ?? []
    const of = (name: string): number => commands.find((v) => v.labels.command === name)?.value ?? 0
    expect([of('join'), of('profile'), of('leave')]).toEqual([1, 1, 1])
  }, 40_000)

  it('skips and counts garbage written into the log and the peers hash, and goes on', async () => {
    const a = await makePlane()
    const b = await makePlane()
    // B follows the log now (its start-up snapshots are behind it).
    a.join('/a1')
    await waitFor('plane B to hear of /a1', () => b.directory.nodeOf('/a1') === a.plane.nodeId, 20_000)
    await direct.xadd(`${KEY_PREFIX}log`, '*', 't', 'join', 'a', '/junk', 'n', 'x') // no seq
    await direct.xadd(`${KEY_PREFIX}log`, '*', 'nonsense', 'x'.repeat(5000))
    await direct.xadd(`${KEY_PREFIX}log`, '*', 't', 'join', 'a', 'x'.repeat(5000), 'n', 'x', 's', '1')
    await direct.hset(`${KEY_PREFIX}peers`, '/junk2', '{not json', '/junk3', JSON.stringify({ n: 42, s: 'x' }))
    // A gap makes B re-read the peers hash too, garbage and all.
    await direct.incr(`${KEY_PREFIX}seq`)
    a.join('/a2')
    await waitFor('plane B to hear of /a2 after the garbage', () => b.directory.nodeOf('/a2') === a.plane.nodeId, 20_000)
    expect(await metric(b.metrics, 'starsock_cluster_bad_entries_total')).toBeGreaterThanOrEqual(5)
    expect(b.calls.some((c) => c.includes('junk'))).toBe(false)
    expect(b.directory.size).toBe(2)
  }, 40_000)

  it('re-reads a snapshot after a gap in the log and holds what Redis holds', async () => {
    const a = await makePlane()
    const b = await makePlane()
    a.join('/g1')
    await waitFor('plane B to hear of /g1', () => b.calls.includes('join /g1'), 20_000)
    const before = await metric(b.metrics, 'starsock_cluster_resyncs_total')
    // A number with no entry (as if entries had been trimmed), and an entry Redis holds but the log lost.
    await direct.incr(`${KEY_PREFIX}seq`)
    await direct.hset(`${KEY_PREFIX}peers`, '/lost', JSON.stringify({ n: a.plane.nodeId, s: 1, p: null }))
    a.join('/g2')
    await waitFor('plane B to re-read a snapshot', () => b.directory.nodeOf('/lost') === a.plane.nodeId, 20_000)
    expect(await metric(b.metrics, 'starsock_cluster_resyncs_total')).toBeGreaterThan(before)
    expect(b.directory.nodeOf('/g2')).toBe(a.plane.nodeId)
  }, 40_000)

  it('decides a contest when the local write returns: the later join in the log wins', async () => {
    const a = await makePlane()
    const b = await makePlane()
    // On A the address is joined locally but not written yet (its write is in flight).
    a.directory.set('/x', 'sa')
    b.join('/x', 'sb')
    await waitFor('B\'s join of /x to be numbered and read by A', () => {
      const seq = b.directory.entry('/x')?.seq ?? 0
      return seq > 0 && a.directory.highestSeq >= seq
    }, 20_000)
    expect(a.calls).not.toContain('displaced /x') // undecided while A's own write is in flight
    a.plane.joined('/x', undefined, CLAIM) // A's write: later in the log than B's
    await waitFor('B to give /x up to the later join on A', () => b.calls.includes('displaced /x'), 20_000)
    expect(b.directory.nodeOf('/x')).toBe(a.plane.nodeId)
    expect(a.directory.owner('/x')).toBe('sa')
    expect(a.calls).not.toContain('displaced /x')
    expect(await direct.hget(`${KEY_PREFIX}peers`, '/x')).toContain(a.plane.nodeId)
  }, 40_000)

  it('decides a contest when an address changed hands locally and the new holder\'s write is in flight', async () => {
    const a = await makePlane()
    const b = await makePlane()
    a.join('/h', 'sa')
    await waitFor('A\'s first join of /h to be numbered', () => (a.directory.entry('/h')?.seq ?? 0) > 0, 20_000)
    // A second session on A takes /h over (its join is not written yet), then B joins /h.
    a.directory.set('/h', 'sa2')
    b.join('/h', 'sb')
    await waitFor('B\'s join of /h to be numbered and read by A', () => {
      const seq = b.directory.entry('/h')?.seq ?? 0
      return seq > 0 && a.directory.highestSeq >= seq
    }, 20_000)
    expect(a.calls).not.toContain('displaced /h') // A's new holder's join is later than B's: undecided until numbered
    a.plane.joined('/h', undefined, CLAIM)
    await waitFor('B to give /h up to the later join on A', () => b.calls.includes('displaced /h'), 20_000)
    expect(a.directory.owner('/h')).toBe('sa2')
    expect(a.calls).not.toContain('displaced /h')
    expect(await direct.hget(`${KEY_PREFIX}peers`, '/h')).toContain(a.plane.nodeId)
  }, 40_000)

  it('keeps the other nodes\' peers when it reads a Redis that lost its data before it wrote itself back', async () => {
    // Heartbeats far apart: nothing re-registers on its own during the test.
    const a = await makePlane(redis.socket, 60_000)
    const b = await makePlane(redis.socket, 60_000)
    a.join('/r1')
    await waitFor('plane B to hear of /r1', () => b.directory.nodeOf('/r1') === a.plane.nodeId, 20_000)
    const before = await metric(b.metrics, 'starsock_cluster_resyncs_total')
    // Long after start: B's start-up grace for absent nodes is over.
    const membersOfB = (b.plane as unknown as { members: Membership }).members
    membersOfB.graceUntil(0)
    // Redis loses everything, and B's log reader reconnects first (its command connection has not noticed).
    await direct.flushall()
    await killClient(`starsock-${b.plane.nodeId}-log`)
    await waitForAsync('plane B to re-read a snapshot', async () => await metric(b.metrics, 'starsock_cluster_resyncs_total') > before, 20_000)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(b.calls).not.toContain('leave /r1')
    expect(b.directory.nodeOf('/r1')).toBe(a.plane.nodeId)
    // A's command connection drops and comes back: A writes itself back, B reads /r1 in Redis again.
    await killClient(`starsock-${a.plane.nodeId}`)
    await waitForAsync('A to write /r1 back', async () => (await direct.hget(`${KEY_PREFIX}peers`, '/r1'))?.includes(a.plane.nodeId) === true, 20_000)
    expect(b.directory.nodeOf('/r1')).toBe(a.plane.nodeId)
    // With its holder's claim (the identity rules across nodes need it after such a loss too).
    expect(JSON.parse(await direct.hget(`${KEY_PREFIX}peers`, '/r1') ?? '{}')).toMatchObject({ c: claimJson(CLAIM) })
    expect(b.calls).not.toContain('leave /r1')
  }, 40_000)

  it('is not ready while Redis answers but refuses its writes longer than the time-to-live, and ready again after', async () => {
    const a = await makePlane()
    expect(a.plane.ready()).toBe(true)
    await direct.config('SET', 'maxmemory', '1')
    try {
      a.join('/m1') // refused (out of memory): written when Redis takes writes again
      await waitFor('the plane to say it is not ready', () => !a.plane.ready(), 20_000)
      expect(await metric(a.metrics, 'starsock_cluster_redis_errors_total')).toBeGreaterThan(0)
    } finally {
      await direct.config('SET', 'maxmemory', '0')
    }
    await waitFor('the plane to be ready again', () => a.plane.ready(), 20_000)
    await waitForAsync('/m1 to be written', async () => (await direct.hget(`${KEY_PREFIX}peers`, '/m1'))?.includes(a.plane.nodeId) === true, 20_000)
  }, 40_000)

  it('reaps a lapsed node once, removing only the entries that still name it, and logs their leaves', async () => {
    // No plane runs here: none of their heartbeats may reap the node first.
    const entry = (n: string, s: number): string => JSON.stringify({ n, s, p: null })
    // A node whose key lapsed: registered, two addresses in its set, one of them since joined on another node (later).
    await direct.hset(`${KEY_PREFIX}nodes`, 'ghost', '127.0.0.1:9')
    await direct.sadd(`${KEY_PREFIX}nodepeers:ghost`, '/g1', '/g2')
    await direct.hset(`${KEY_PREFIX}peers`, '/g1', entry('ghost', 1), '/g2', entry('other', 2))
    const reap = async (): Promise<unknown> => await runScript(direct, KEY_PREFIX, LOG_MAX_ENTRIES, 'reap', ['ghost'])
    const [first, second] = await Promise.all([reap(), reap()])
    expect([first, second]).toEqual([1, -1])
    expect(await direct.hget(`${KEY_PREFIX}peers`, '/g1')).toBeNull()
    expect(await direct.hget(`${KEY_PREFIX}peers`, '/g2')).toBe(entry('other', 2))
    expect(await direct.hexists(`${KEY_PREFIX}nodes`, 'ghost')).toBe(0)
    expect(await direct.exists(`${KEY_PREFIX}nodepeers:ghost`)).toBe(0)
    const log = await direct.xrange(`${KEY_PREFIX}log`, '-', '+')
    expect(log.filter(([, f]) => f[1] === 'leave').map(([, f]) => f[3])).toEqual(['/g1'])
    // A node alive again (its key is back) is not reaped.
    await direct.hset(`${KEY_PREFIX}nodes`, 'ghost', '127.0.0.1:9')
    await direct.set(`${KEY_PREFIX}node:ghost`, '{}')
    expect(await reap()).toBe(-1)
    expect(await direct.hexists(`${KEY_PREFIX}nodes`, 'ghost')).toBe(1)
    await direct.del(`${KEY_PREFIX}node:ghost`)
    await direct.hdel(`${KEY_PREFIX}nodes`, 'ghost')
  }, 40_000)

  it('registers itself again before a join when Redis no longer holds its registration (reaped while frozen)', async () => {
    // Heartbeats far apart: only the join can find out.
    const a = await makePlane(redis.socket, 60_000)
    await direct.del(`${KEY_PREFIX}node:${a.plane.nodeId}`)
    await direct.hdel(`${KEY_PREFIX}nodes`, a.plane.nodeId)
    a.join('/o1')
    await waitForAsync('the node to be registered again with /o1', async () =>
      await direct.hexists(`${KEY_PREFIX}nodes`, a.plane.nodeId) === 1 &&
      (await direct.hget(`${KEY_PREFIX}peers`, '/o1'))?.includes(a.plane.nodeId) === true, 10_000) // its first heartbeat is 20 s away
    expect(await direct.exists(`${KEY_PREFIX}node:${a.plane.nodeId}`)).toBe(1)
    await waitFor('the join to be numbered', () => (a.directory.entry('/o1')?.seq ?? 0) > 0, 20_000)
  }, 40_000)

  it('leaves Redis without an owner when the later join left before its number came back', async () => {
    const a = await makePlane()
    const b = await makePlane()
    a.directory.set('/y', 'sa')
    b.join('/y', 'sb')
    await waitFor('B\'s join of /y to be numbered and read by A', () => {
      const seq = b.directory.entry('/y')?.seq ?? 0
      return seq > 0 && a.directory.highestSeq >= seq
    }, 20_000)
    a.plane.joined('/y', undefined, CLAIM)
    a.leave('/y', 'sa') // before the join's reply: the leave is written after it
    await waitFor('B to give /y up to the later join on A, then hear it leave', () => b.calls.includes('displaced /y') && b.calls.includes('leave /y'), 20_000)
    expect(await direct.hexists(`${KEY_PREFIX}peers`, '/y')).toBe(0)
    expect(a.directory.entry('/y')).toBeUndefined()
    expect(b.directory.entry('/y')).toBeUndefined()
  }, 40_000)

  it('connects with a redis:// URL as well as a Unix socket path', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createNetServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo
        probe.close(() => resolve(port))
      })
    })
    const proc = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    try {
      const a = await makePlane(`redis://127.0.0.1:${port}`)
      const b = await makePlane(`redis://127.0.0.1:${port}`)
      a.join('/u1')
      await waitFor('plane B to hear of /u1 over TCP', () => b.calls.includes('join /u1'), 20_000)
      expect(b.plane.nodeCount).toBeGreaterThanOrEqual(1)
    } finally {
      for (const p of planes.splice(0)) await p.close()
      proc.kill('SIGKILL')
    }
  }, 40_000)

  it('writes nothing back after its goodbye, even with a sync due behind one in flight', async () => {
    const a = await makePlane()
    a.join('/s1')
    await waitFor('/s1 to be numbered', () => (a.directory.entry('/s1')?.seq ?? 0) > 0, 20_000)
    // A reconnection's sync in flight and another one due (as two 'ready' events make), then the goodbye.
    const recover = (a.plane as unknown as { recover: () => void }).recover.bind(a.plane)
    recover()
    recover()
    await a.plane.leaving()
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(await direct.hexists(`${KEY_PREFIX}nodes`, a.plane.nodeId)).toBe(0)
    expect(await direct.hexists(`${KEY_PREFIX}peers`, '/s1')).toBe(0)
  }, 40_000)

  it('removes its peers and its registration on leaving, at once', async () => {
    const a = await makePlane()
    const b = await makePlane()
    a.join('/l1')
    a.join('/l2', 's2')
    await waitFor('plane B to hear of both', () => b.directory.size === 2, 20_000)
    await a.plane.leaving()
    await waitFor('plane B to hear both leave', () => b.calls.includes('leave /l1') && b.calls.includes('leave /l2'), 20_000)
    expect(await direct.hlen(`${KEY_PREFIX}peers`)).toBe(0)
    expect(await direct.hexists(`${KEY_PREFIX}nodes`, a.plane.nodeId)).toBe(0)
    expect(await direct.exists(`${KEY_PREFIX}node:${a.plane.nodeId}`)).toBe(0)
  }, 40_000)
})
