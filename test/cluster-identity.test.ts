/**
 * One identity, one place across the nodes of a cluster (issue 18): the joining node applies the
 * rules to a holder on another node (refusal, takeover, resume, legacy), the holder's node applies
 * the outcome, a dropped client's identity is reserved on every node, and Redis never holds a
 * resume credential. Real `redis-server`, real `starsock serve` nodes, real clients.
 */
import { createHash } from 'node:crypto'
import { Redis } from 'ioredis'
import type { Socket } from 'socket.io-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createIdentity, identityFromBytes, publicKeyHex, signNonce, type Identity } from '../client/identity.ts'
import { createPeer, type PeerOptions, type StarsockPeer } from '../client/peer.ts'
import type { StarsockError } from '../shared/errors.ts'
import { claimJson, reservationJson } from '../server/cluster/plane-entries.ts'
import { KEY_PREFIX, LOG_MAX_ENTRIES } from '../server/cluster/plane.ts'
import { runScript } from '../server/cluster/redis-scripts.ts'
import { TestCluster, type TestNode } from './helpers/cluster.ts'
import { legacyPeerId, pull, startLegacyPeer } from './helpers/legacy.ts'
import { connectSocket, request } from './helpers/raw-peer.ts'
import { waitFor, waitForAsync, within } from './helpers/server.ts'

const addrOn = (node: TestNode, identity: Identity): string => `/ip4/127.0.0.1/tcp/${node.port}/ws/p2p-websocket-star/ipfs/${identity.peerId}`

/** A raw socket: `starsock:hello` (with `resume`) unless `legacy`, then both steps of the challenge; records what it hears. */
interface RawHolder { socket: Socket, displaced: unknown[], gone: () => boolean }

describe('one identity, one place across nodes (real Redis, real nodes)', () => {
  const cluster = new TestCluster()
  const sockets: Socket[] = []
  let n1: TestNode
  let n2: TestNode
  /** A peer on each node that watches the directory. */
  let watch1: StarsockPeer
  let watch2: StarsockPeer
  let redis: Redis

  beforeAll(async () => {
    [n1, n2] = await cluster.start(2) as [TestNode, TestNode]
    watch1 = await cluster.peer(n1)
    watch2 = await cluster.peer(n2)
    redis = new Redis({ path: cluster.redis?.socket ?? '' })
  }, 60_000)

  afterAll(async () => {
    for (const s of sockets) s.close()
    redis.disconnect()
    await cluster.cleanup()
  }, 60_000)

  const peerOn = async (node: TestNode, identity: Identity, options: Partial<PeerOptions> = {}): Promise<StarsockPeer> => {
    const p = await createPeer({ server: node.url, identity, reconnectDelayMs: 5000, reconnectDelayMaxMs: 5000, ...options })
    cluster.peers.push(p)
    return p
  }
  const refusal = async (node: TestNode, identity: Identity, options: Partial<PeerOptions> = {}): Promise<StarsockError | undefined> =>
    await peerOn(node, identity, options).then(() => undefined, (e: StarsockError) => e)
  const listed = (watcher: StarsockPeer, addr: string): boolean => watcher.peers().some((p) => p.addr === addr)
  const bothList = async (addr: string): Promise<void> => {
    await waitFor(`both nodes to list ${addr}`, () => listed(watch1, addr) && listed(watch2, addr), 20_000)
  }

  const rawHolder = async (node: TestNode, identity: Identity, addr: string, opts: { resume?: string, legacy?: boolean } = {}): Promise<RawHolder> => {
    const socket = await connectSocket(node.url)
    sockets.push(socket)
    const displaced: unknown[] = []
    let gone = false
    socket.on('starsock:displaced', (info: unknown) => displaced.push(info))
    socket.on('disconnect', () => { gone = true })
    if (opts.legacy !== true) await request(socket, 'starsock:hello', [{ peerEvents: true, resume: opts.resume }])
    const first = await request(socket, 'ss-join', [addr, publicKeyHex(identity)])
    expect(first[0]).toBeNull()
    const done = await request(socket, 'ss-join', [addr, await signNonce(identity, first[1] as string)])
    expect(done[0]).toBeNull()
    return { socket, displaced, gone: () => gone }
  }

  it('refuses a second starsock client on another node (E_ADDRESS_IN_USE, saying so); the holder stays joined and reachable', async () => {
    const identity = await createIdentity()
    const first = await peerOn(n1, identity)
    first.handle(() => {})
    await bothList(first.addr)
    // Another spelling of the address (node 2's port): the same peer id.
    const err = await refusal(n2, identity)
    expect(err?.code).toBe('E_ADDRESS_IN_USE')
    expect(err?.message).toMatch(/^Address in use: this peer id is joined on another server node from 127\.0\.0\.1:\d+$/)
    // The exact address (as behind a load balancer): a raw holder on node 1 of node 2's spelling.
    const other = await createIdentity()
    await rawHolder(n1, other, addrOn(n2, other), { resume: 'a1'.repeat(32) })
    await bothList(addrOn(n2, other))
    expect((await refusal(n2, other))?.code).toBe('E_ADDRESS_IN_USE')
    // Counted as refused for a holder on another node (both refusals above).
    expect(await (await fetch(`${n2.url}/metrics`)).text()).toMatch(/^starsock_address_in_use_total\{holder="other-node"\} 2$/m)
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(first.state).toBe('joined')
    const conn = await within('a dial from node 2 to the holder on node 1', watch2.dial(first.addr, { secure: false }), 20_000)
    await conn.close()
    expect(listed(watch1, addrOn(n2, other))).toBe(true)
  }, 60_000)

  it('takeover on another node: the holder hears starsock:displaced (takeover, by the newcomer) and every node has the newcomer', async () => {
    const identity = await createIdentity()
    const first = await peerOn(n1, identity)
    await bothList(first.addr)
    const second = await peerOn(n2, identity, { takeover: true })
    second.handle(() => {})
    await waitFor('the first to close', () => first.state === 'closed', 20_000)
    expect(first.closedBy?.code).toBe('E_DISPLACED')
    expect(first.closedBy?.message).toMatch(/^Displaced: another client took this peer id over from 127\.0\.0\.1:\d+$/)
    await waitFor('both nodes to list the newcomer and not the first', () => listed(watch1, second.addr) && listed(watch2, second.addr) && !listed(watch1, first.addr) && !listed(watch2, first.addr), 20_000)
    const conn = await within('a dial from node 1 to the newcomer on node 2', watch1.dial(second.addr, { secure: false }), 20_000)
    await conn.close()
    expect(second.state).toBe('joined')
  }, 60_000)

  it('a client presenting the holder\'s resume id on another node takes the address back; the stale socket hears nothing', async () => {
    const identity = await createIdentity()
    const resumeId = 'b2'.repeat(32)
    const addr = addrOn(n2, identity)
    const stale = await rawHolder(n1, identity, addr, { resume: resumeId })
    await bothList(addr)
    const back = await peerOn(n2, identity, { resumeId })
    expect(back.addr).toBe(addr)
    await waitFor('node 1 to drop the stale socket', () => stale.gone(), 20_000)
    expect(stale.displaced).toEqual([])
    await waitFor('node 1 to list the address on node 2', () => listed(watch1, addr), 20_000)
    expect(back.state).toBe('joined')
  }, 60_000)

  it('a client that dropped on node 1 keeps its identity reserved on node 2; its resume id takes it there', async () => {
    const identity = await createIdentity()
    const resumeId = 'c3'.repeat(32)
    const addr = addrOn(n1, identity)
    const holder = await rawHolder(n1, identity, addr, { resume: resumeId })
    await bothList(addr)
    holder.socket.io.engine.close() // no leave: node 1 sees the socket go
    await waitFor('node 2 to see the holder leave', () => !listed(watch2, addr), 20_000)
    const err = await refusal(n2, identity)
    expect(err?.code).toBe('E_ADDRESS_IN_USE')
    expect(err?.message).toMatch(/^Address in use: this peer id is reserved for a reconnecting client \(joined from 127\.0\.0\.1:\d+\) for up to \d+ s more$/)
    const back = await peerOn(n2, identity, { resumeId })
    expect(back.state).toBe('joined')
    // The join on node 2 ended the reservation on node 1 too: once the owner leaves for good, node 1 lets anyone in.
    await waitFor('node 1 to list the owner on node 2', () => listed(watch1, back.addr), 20_000)
    await back.close()
    await waitFor('node 1 to see the owner leave', () => !listed(watch1, back.addr), 20_000)
    const next = await within('a client without the resume id on node 1', peerOn(n1, identity))
    expect(next.state).toBe('joined')
  }, 60_000)

  it('a legacy client on node 2 takes an address a starsock client holds on node 1 (legacy-join)', async () => {
    const legacyId = await legacyPeerId()
    const identity = identityFromBytes(Buffer.from(legacyId.marshalPrivKey()))
    // The legacy client spells the address with node 2's port: the holder on node 1 holds that spelling.
    const holder = await rawHolder(n1, identity, addrOn(n2, identity), { resume: 'd4'.repeat(32) })
    await bothList(addrOn(n2, identity))
    const legacy = await startLegacyPeer(n2.port, (conn: unknown) => { pull(conn, conn) }, { peerId: legacyId })
    try {
      await waitFor('the starsock holder to be displaced', () => holder.displaced.length > 0, 20_000)
      expect(holder.displaced[0]).toMatchObject({ addr: addrOn(n2, identity), reason: 'legacy-join' })
      expect((holder.displaced[0] as { by: string }).by).toMatch(/^127\.0\.0\.1:\d+$/)
      await waitFor('the holder to be disconnected', () => holder.gone(), 20_000)
    } finally {
      legacy.stop()
    }
  }, 60_000)

  it('a legacy holder on node 1 loses the address to a starsock client on node 2 silently, and keeps its socket', async () => {
    const identity = await createIdentity()
    const addr = addrOn(n2, identity)
    const legacy = await rawHolder(n1, identity, addr, { legacy: true })
    await bothList(addr)
    const ours = await within('the starsock join on node 2', peerOn(n2, identity))
    await waitFor('node 1 to list the address on node 2', () => listed(watch1, addr) && !legacy.gone(), 20_000)
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(legacy.displaced).toEqual([])
    expect(legacy.gone()).toBe(false)
    expect(ours.state).toBe('joined')
    // It no longer holds the address on node 1 (listing it proves nothing: node 1 lists it either
    // way): a dial from it is refused.
    const [dialErr] = await request(legacy.socket, 'ss-dial', [addr, watch1.addr, 'from-the-lost-address'])
    expect(dialErr).toBe('Not authorized for this address')
  }, 60_000)

  it('the holder\'s node checks a join decided against a lagging copy: the rules apply to the holder it has', async () => {
    // Another node (this test, through the join script) whose copy lagged: its entries name a
    // newcomer's claim, and an outcome decided about some other holder or none (a race).
    const sha = (s: string): string => createHash('sha256').update(s).digest('hex')
    await redis.set(`${KEY_PREFIX}node:f00d`, JSON.stringify({ link: '', startedMs: 0 }), 'PX', 60_000)
    const joinFromElsewhere = async (addr: string, claim: { starsock: boolean, credentialHash?: string }, outcome = '', takes = ''): Promise<void> => {
      await runScript(redis, KEY_PREFIX, LOG_MAX_ENTRIES, 'join', [addr, 'f00d', 'null', claimJson({ remote: '10.9.9.9:1', credentialHash: undefined, ...claim }), outcome, takes])
    }
    const [a, b, c, d, e] = [await createIdentity(), await createIdentity(), await createIdentity(), await createIdentity(), await createIdentity()]
    // Another spelling: a legacy holder keeps it (legacy clients collide on exact addresses only),
    // and an entry naming an address of another peer id takes nothing.
    const legacySpelling = await rawHolder(n1, d, addrOn(n1, d), { legacy: true })
    const otherPeer = await rawHolder(n1, e, addrOn(n1, e), { resume: 'b8'.repeat(32) })
    // A "resume" decided about another holder (another credential) is a takeover of this one.
    const starsockHolder = await rawHolder(n1, a, addrOn(n1, a), { resume: 'f6'.repeat(32) })
    // A race (no outcome) with a legacy holder: it loses the address silently and keeps its socket.
    const legacyHolder = await rawHolder(n1, b, addrOn(n1, b), { legacy: true })
    // A race with the same client back (its credential's hash): its stale socket goes silently.
    const resumeId = 'a7'.repeat(32)
    const staleHolder = await rawHolder(n1, c, addrOn(n1, c), { resume: resumeId })
    await bothList(addrOn(n1, c))
    await joinFromElsewhere(addrOn(n1, a), { starsock: true, credentialHash: sha('another client') }, 'resume')
    await joinFromElsewhere(addrOn(n1, b), { starsock: true, credentialHash: sha('x') })
    await joinFromElsewhere(addrOn(n2, d), { starsock: true }, 'takeover', addrOn(n1, d))
    await joinFromElsewhere(addrOn(n2, a), { starsock: true }, 'takeover', addrOn(n1, e))
    await joinFromElsewhere(addrOn(n1, c), { starsock: true, credentialHash: sha(resumeId) })
    await waitFor('the starsock holder to be displaced', () => starsockHolder.displaced.length > 0, 20_000)
    expect(starsockHolder.displaced).toEqual([{ addr: addrOn(n1, a), reason: 'takeover', by: '10.9.9.9:1' }])
    await waitFor('the stale socket to go', () => staleHolder.gone(), 20_000)
    expect(staleHolder.displaced).toEqual([])
    // Entries are applied in log order: the legacy holder's came before the stale socket's.
    await new Promise((resolve) => setTimeout(resolve, 500))
    expect(legacyHolder.displaced).toEqual([])
    expect(legacyHolder.gone()).toBe(false)
    // It lost the address (silently): a dial from it is refused.
    expect((await request(legacyHolder.socket, 'ss-dial', [addrOn(n1, b), watch1.addr, 'from-the-lost-address']))[0]).toBe('Not authorized for this address')
    expect(legacySpelling.displaced).toEqual([])
    expect(legacySpelling.gone()).toBe(false)
    expect(otherPeer.displaced).toEqual([])
    expect(otherPeer.gone()).toBe(false)
    // A holder of several addresses loses only the one taken, and keeps its socket for the other.
    const [f, g] = [await createIdentity(), await createIdentity()]
    const multi = await rawHolder(n1, f, addrOn(n1, f), { resume: 'c9'.repeat(32) })
    const first = await request(multi.socket, 'ss-join', [addrOn(n1, g), publicKeyHex(g)])
    expect((await request(multi.socket, 'ss-join', [addrOn(n1, g), await signNonce(g, first[1] as string)]))[0]).toBeNull()
    await bothList(addrOn(n1, g))
    await joinFromElsewhere(addrOn(n1, f), { starsock: true, credentialHash: sha('x') })
    await waitFor('the holder of two addresses to be displaced from one', () => multi.displaced.length > 0, 20_000)
    expect(multi.displaced).toEqual([{ addr: addrOn(n1, f), reason: 'takeover', by: '10.9.9.9:1' }])
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(multi.gone()).toBe(false)
    // Both still joined on node 1: no leave removed their rows.
    expect(await redis.hexists('starsock:peers', addrOn(n1, d)) + await redis.hexists('starsock:peers', addrOn(n1, e)) + await redis.hexists('starsock:peers', addrOn(n1, g))).toBe(3)
  }, 60_000)

  it('a reservation in a leave read after its client joined again under another spelling holds nothing once that client leaves', async () => {
    // The client's socket on one node went stale; it resumed on another node under another
    // spelling (that join is in the log first), and only then did its old node see the socket go
    // (that leave carries a reservation). Both nodes are this test, through the scripts.
    const identity = await createIdentity()
    const credentialHash = createHash('sha256').update('d5'.repeat(32)).digest('hex')
    const [old, back] = [addrOn(n1, identity), addrOn(n2, identity)]
    await redis.set(`${KEY_PREFIX}node:f00e`, JSON.stringify({ link: '', startedMs: 0 }), 'PX', 60_000)
    const script = async (name: 'join' | 'leave', args: string[]): Promise<void> => { await runScript(redis, KEY_PREFIX, LOG_MAX_ENTRIES, name, args) }
    const claim = claimJson({ starsock: true, credentialHash, remote: '10.9.9.9:2' })
    const id = identity.peerId
    await script('join', [old, 'f00e', 'null', claim, '', '', id])
    await script('join', [back, 'f00e', 'null', claim, 'resume', old, id])
    await script('leave', [old, 'f00e', reservationJson({ credentialHash, remote: '10.9.9.9:2', graceMs: 30_000 }), id])
    await bothList(back)
    // The client leaves for good (a clean leave: no reservation, and the one in Redis ends: a node
    // that re-reads a snapshot from now on does not hold the identity either).
    await script('leave', [back, 'f00e', '', id])
    expect(await redis.hexists(`${KEY_PREFIX}reserved`, id)).toBe(0)
    await waitFor('both nodes to see it leave', () => !listed(watch1, back) && !listed(watch2, back), 20_000)
    // A new client with the key and no resume id (a new process) is not refused for a client that is gone.
    const next = await peerOn(n1, identity)
    expect(next.state).toBe('joined')
  }, 60_000)

  it('Redis keeps a leave\'s reservation by identity until its grace ends, a join of the identity under any spelling, or a clean leave; a snapshot carries the live ones with what is left', async () => {
    const identity = await createIdentity()
    const id = identity.peerId
    const [addr, other] = [addrOn(n1, identity), addrOn(n2, identity)]
    const credentialHash = createHash('sha256').update('a7'.repeat(32)).digest('hex')
    await redis.set(`${KEY_PREFIX}node:f00e`, JSON.stringify({ link: '', startedMs: 0 }), 'PX', 60_000)
    const script = async (name: 'join' | 'leave' | 'snapshot', args: string[]): Promise<unknown> => await runScript(redis, KEY_PREFIX, LOG_MAX_ENTRIES, name, args)
    const live = async (): Promise<Map<string, { addr: string, grace: number, left: number }>> => {
      const flat = (await script('snapshot', []) as unknown[])[4] as string[]
      const out = new Map<string, { addr: string, grace: number, left: number }>()
      for (let i = 0; i + 2 < flat.length; i += 3) {
        const held = JSON.parse(flat[i + 1] as string) as { a: string, c: string }
        out.set(flat[i] as string, { addr: held.a, grace: (JSON.parse(held.c) as { g: number }).g, left: Number(flat[i + 2]) })
      }
      return out
    }
    const claim = claimJson({ starsock: true, credentialHash, remote: '10.9.9.9:3' })
    const reserving = (graceMs: number): string => reservationJson({ credentialHash, remote: '10.9.9.9:3', graceMs })
    await script('join', [addr, 'f00e', 'null', claim, '', '', id])
    await script('leave', [addr, 'f00e', reserving(30_000), id])
    const held = (await live()).get(id)
    expect(held).toMatchObject({ addr, grace: 30_000 })
    expect(held?.left).toBeGreaterThan(20_000)
    expect(held?.left).toBeLessThanOrEqual(30_000)
    // A starsock join of the identity under another spelling ends it.
    await script('join', [other, 'f00e', 'null', claim, 'resume', '', id])
    expect((await live()).has(id)).toBe(false)
    expect(await redis.hexists(`${KEY_PREFIX}reserved`, id)).toBe(0)
    // A clean leave of a spelling joined before the reserved one (stale, or a legacy holder's) ends nothing ...
    await script('join', [addr, 'f00e', 'null', claim, '', '', id])
    await script('leave', [addr, 'f00e', reserving(30_000), id])
    await script('leave', [other, 'f00e', '', id])
    expect((await live()).has(id)).toBe(true)
    // ... nor does a legacy join of another spelling; a legacy join of the reserved address does.
    const third = `/ip4/127.0.0.9/tcp/9/ws/p2p-websocket-star/ipfs/${id}`
    const legacy = claimJson({ starsock: false, credentialHash: undefined, remote: '10.9.9.9:7' })
    await script('join', [third, 'f00e', 'null', legacy, '', '', id])
    expect((await live()).has(id)).toBe(true)
    await script('join', [addr, 'f00e', 'null', legacy, '', '', id])
    expect((await live()).has(id)).toBe(false)
    await script('leave', [third, 'f00e', '', id])
    // The client came back under another spelling before its old node saw it drop, then left for
    // good: that clean leave (of an address joined after the reserved one) ends it.
    await script('join', [other, 'f00e', 'null', claim, 'resume', '', id])
    await script('leave', [addr, 'f00e', reserving(30_000), id])
    expect((await live()).has(id)).toBe(true)
    await script('leave', [other, 'f00e', '', id])
    expect((await live()).has(id)).toBe(false)
    // One whose grace ended is not in a snapshot, and the next reservation takes it out of Redis.
    await script('join', [addr, 'f00e', 'null', claim, '', '', id])
    await script('leave', [addr, 'f00e', reserving(1), id])
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect((await live()).has(id)).toBe(false)
    const someone = await createIdentity()
    await script('join', [addrOn(n1, someone), 'f00e', 'null', claim, '', '', someone.peerId])
    await script('leave', [addrOn(n1, someone), 'f00e', reserving(30_000), someone.peerId])
    expect(await redis.hexists(`${KEY_PREFIX}reserved`, id)).toBe(0)
    expect(await redis.zscore(`${KEY_PREFIX}reserveduntil`, id)).toBeNull()
    expect((await live()).has(someone.peerId)).toBe(true)
    await script('join', [addrOn(n1, someone), 'f00e', 'null', claim, 'resume', '', someone.peerId])
    await script('leave', [addrOn(n1, someone), 'f00e', '', someone.peerId])
  }, 60_000)

  /**
   * Run `steps` (script calls) while node 2 is frozen (well within its time-to-live) with its log
   * reader cut, so no blocked read of the log is answered with them, then empty the log: node 2
   * re-reads a snapshot instead. A member node of the test's own (`f00f`, registered, so a
   * snapshot without its peers drops them) is up meanwhile.
   */
  const missedByNode2 = async (steps: () => Promise<void>): Promise<void> => {
    const resyncs = async (): Promise<number> => Number(/^starsock_cluster_resyncs_total (\d+)/m.exec(await (await fetch(`${n2.url}/metrics`)).text())?.[1] ?? NaN)
    const id2 = ((await (await fetch(`${n2.url}/status.json`)).json()) as { clusterNode: string }).clusterNode
    const reader = /(?:^|\n)id=(\d+) [^\n]* name=(\S+)/g
    const follower = [...(await redis.client('LIST') as string).matchAll(reader)].find((m) => m[2] === `starsock-${id2}-log`)?.[1]
    expect(follower).toBeDefined()
    const before = await resyncs()
    n2.program.proc.kill('SIGSTOP')
    try {
      await redis.client('KILL', 'ID', follower as string)
      await steps()
      await redis.xtrim(`${KEY_PREFIX}log`, 'MAXLEN', 0)
    } finally {
      n2.program.proc.kill('SIGCONT')
    }
    await waitForAsync('node 2 to re-read a snapshot', async () => await resyncs() > before, 20_000)
  }
  /** What the member node `f00f` does for a test, through the scripts (as a node's plane would). */
  interface Member {
    join: (addr: string, claim: string, id: string, outcome?: string) => Promise<void>
    /** A leave; with `reservation`, of a client that dropped. */
    leave: (addr: string, id: string, reservation?: string) => Promise<void>
  }
  const withMember = async (test: (member: Member) => Promise<void>): Promise<void> => {
    await redis.set(`${KEY_PREFIX}node:f00f`, JSON.stringify({ link: '127.0.0.1:9', startedMs: 0 }), 'PX', 60_000)
    await redis.hset(`${KEY_PREFIX}nodes`, 'f00f', '127.0.0.1:9')
    const script = async (name: 'join' | 'leave', args: string[]): Promise<void> => { await runScript(redis, KEY_PREFIX, LOG_MAX_ENTRIES, name, args) }
    try {
      await test({
        join: async (addr, claim, id, outcome = '') => { await script('join', [addr, 'f00f', 'null', claim, outcome, '', id]) },
        leave: async (addr, id, reservation = '') => { await script('leave', [addr, 'f00f', reservation, id]) }
      })
    } finally {
      await redis.hdel(`${KEY_PREFIX}nodes`, 'f00f')
      await redis.del(`${KEY_PREFIX}node:f00f`)
    }
  }
  /** A starsock client of the member, by hand: its identity, its claim from `remote`, and a 30 s reservation of it. */
  const memberClient = async (seed: string, remote: string): Promise<{ identity: Identity, id: string, claim: string, reservation: string }> => {
    const identity = await createIdentity()
    const credentialHash = createHash('sha256').update(seed.repeat(32)).digest('hex')
    return { identity, id: identity.peerId, claim: claimJson({ starsock: true, credentialHash, remote }), reservation: reservationJson({ credentialHash, remote, graceMs: 30_000 }) }
  }

  it('a node that re-reads a snapshot (a gap in the log) keeps the reservation of a leave it never read', async () => {
    const { identity, id, claim, reservation } = await memberClient('b8', '10.9.9.9:4')
    const addr = addrOn(n1, identity)
    await withMember(async (member) => {
      await member.join(addr, claim, id)
      await bothList(addr)
      await missedByNode2(async () => { await member.leave(addr, id, reservation) })
      await waitFor('node 2 to see the holder gone', () => !listed(watch2, addr), 20_000)
      const err = await refusal(n2, identity)
      expect(err?.code).toBe('E_ADDRESS_IN_USE')
      expect(err?.message).toMatch(/reserved for a reconnecting client \(joined from 10\.9\.9\.9:4\)/)
    })
  }, 60_000)

  it('a node that re-reads a snapshot ends a reservation whose client joined again elsewhere in the gap', async () => {
    const { identity, id, claim, reservation } = await memberClient('b9', '10.9.9.9:6')
    const [addr, back] = [addrOn(n1, identity), addrOn(n2, identity)]
    await withMember(async (member) => {
      await member.join(addr, claim, id)
      await bothList(addr)
      await member.leave(addr, id, reservation)
      await waitFor('node 2 to read the leave', () => !listed(watch2, addr), 20_000)
      // Node 2 holds the identity now; the client resumes on the member under another spelling, unseen by node 2.
      await missedByNode2(async () => { await member.join(back, claim, id, 'resume') })
      await waitFor('node 2 to list the client again', () => listed(watch2, back), 20_000)
      // It leaves for good: node 2 reads that leave, and lets a new client with the key in.
      await member.leave(back, id)
      await waitFor('node 2 to see it leave', () => !listed(watch2, back), 20_000)
      const next = await peerOn(n2, identity)
      expect(next.state).toBe('joined')
    })
  }, 60_000)

  it('a legacy join of another spelling on another node leaves a reservation standing, as on one node (nodes following the log and Redis agree)', async () => {
    const { identity, id, claim, reservation } = await memberClient('ba', '10.9.9.9:8')
    const [addr, third] = [addrOn(n1, identity), `/ip4/127.0.0.9/tcp/9/ws/p2p-websocket-star/ipfs/${id}`]
    await withMember(async (member) => {
      await member.join(addr, claim, id)
      await bothList(addr)
      await member.leave(addr, id, reservation)
      await member.join(third, claimJson({ starsock: false, credentialHash: undefined, remote: '10.9.9.9:9' }), id)
      await bothList(third)
      expect(await redis.hexists(`${KEY_PREFIX}reserved`, id)).toBe(1)
      const err = await refusal(n2, identity)
      expect(err?.message).toMatch(/reserved for a reconnecting client \(joined from 10\.9\.9\.9:8\)/)
      await member.leave(third, id)
    })
  }, 60_000)

  it('a leave\'s reservation stands when the only other spelling listed joined before the reserved address (its displacement leave was not read yet)', async () => {
    const { identity, id, claim, reservation } = await memberClient('bb', '10.9.9.9:10')
    const [older, newer] = [addrOn(n2, identity), addrOn(n1, identity)]
    await withMember(async (member) => {
      await member.join(older, claim, id)
      await member.join(newer, claim, id)
      await bothList(newer)
      // The newer address drops while the older one is still listed; the older one leaves cleanly after.
      await member.leave(newer, id, reservation)
      await member.leave(older, id)
      await waitFor('both nodes to see both gone', () => ![older, newer].some((a) => listed(watch1, a) || listed(watch2, a)), 20_000)
      expect(await redis.hexists(`${KEY_PREFIX}reserved`, id)).toBe(1)
      const err = await refusal(n2, identity)
      expect(err?.message).toMatch(/reserved for a reconnecting client \(joined from 10\.9\.9\.9:10\)/)
    })
  }, 60_000)

  it('Redis holds the hash of a resume credential, never the credential', async () => {
    const identity = await createIdentity()
    const resumeId = 'e5'.repeat(32)
    const p = await peerOn(n1, identity, { resumeId })
    await bothList(p.addr)
    const row = await redis.hget('starsock:peers', p.addr)
    expect(row).not.toBeNull()
    expect(row).not.toContain(resumeId)
    expect(JSON.parse(JSON.parse(row as string).c as string)).toMatchObject({ k: 1, h: createHash('sha256').update(resumeId).digest('hex') })
    const log = JSON.stringify(await redis.xrange('starsock:log', '-', '+'))
    expect(log).not.toContain(resumeId)
  }, 60_000)
})
