/**
 * The control plane of a cluster node: Redis holds the peer directory (a hash and an ordered
 * change log, written by one Lua script per join, leave or profile change) and node membership
 * (a key per node with a time-to-live). This node keeps its copy (`ClusterDirectory`) fed by the
 * log, so dials, paging and announcements never wait on Redis. See docs/cluster.md.
 *
 * Failure semantics: while Redis is away, joins and leaves are served locally and the copy stays;
 * when it answers again, one `sync` script writes this node's peers as they are now (whatever
 * happened meanwhile, even an empty restart), then the copy is rebuilt from a snapshot. A node
 * whose key lapsed is reaped by the first survivor to notice (one script).
 */
import { randomBytes } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'
import type { Logger } from '../../shared/logger.ts'
import { sameProfile, type PeerProfile } from '../../shared/profile.ts'
import { checkAddress } from '../../shared/address-parse.ts'
import type { ServerMetrics } from '../metrics.ts'
import { identityKey } from '../identity-claims.ts'
import type { ResolvedServerOptions } from '../options.ts'
import type { Rendezvous } from '../rendezvous.ts'
import type { ClusterDirectory, DirectoryEntry } from './cluster-directory.ts'
import { Membership } from './membership.ts'
import { PlaneMetrics } from './metrics.ts'
import { claimJson, readLogEntry, readNodes, readSeq, readSnapshot, reservationJson, type PeerRow, type Snapshot } from './plane-entries.ts'
import { runScript, type ScriptName } from './redis-scripts.ts'
import type { ClusterView, HolderClaim, JoinDecision, LeaveReservation, RemoteHold } from './types.ts'

/** Prefix of every key the cluster uses in Redis. */
export const KEY_PREFIX = 'starsock:'
/** The change log is trimmed to about this many entries (`XADD MAXLEN ~`); a node that falls further behind re-reads a snapshot. */
export const LOG_MAX_ENTRIES = 100_000
/** How long one read of the log blocks in Redis. */
const FOLLOW_BLOCK_MS = 2000
/** Log entries read at once. */
const FOLLOW_BATCH = 1000
/** Longest wait between reconnection attempts to Redis. */
const RETRY_MAX_MS = 2000
/** A command that takes longer fails (a hung Redis must not hold a join's write, or a shutdown). */
const COMMAND_TIMEOUT_MS = 5000
/** `start` waits at most this long for the first sync before it lets the node listen anyway. */
const START_WAIT_MS = 3000

/** What the plane is made with (by `ClusterNode`). */
export interface PlaneDeps {
  rendezvous: Rendezvous
  directory: ClusterDirectory
  options: ResolvedServerOptions
  metrics: ServerMetrics
  logger: Logger
  /** Node `id` left the cluster (reaped, said goodbye, or gone from Redis): the trunk drops its links. */
  nodeGone: (id: string) => void
}

/** A profile as stored in Redis: its JSON, `null` for none. */
function profileJson (profile: PeerProfile | undefined): string {
  return profile === undefined ? 'null' : JSON.stringify(profile.name === undefined ? { kind: profile.kind } : { name: profile.name, kind: profile.kind })
}

/** ioredis options for `--redis` (a URL, or a Unix socket path): fail at once while disconnected, retry forever with a capped backoff. */
function connect (url: string, extra: RedisOptions): Redis {
  const options: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (times) => Math.min(100 * times, RETRY_MAX_MS),
    ...extra
  }
  return url.startsWith('/') ? new Redis({ ...options, path: url }) : new Redis(url, options)
}

/** See the module comment. */
export class ControlPlane implements ClusterView {
  /** This node's id (random per start). */
  readonly nodeId = randomBytes(8).toString('hex')
  readonly metrics: PlaneMetrics
  private readonly cmd: Redis
  private readonly follower: Redis
  private readonly startedMs = Date.now()
  private readonly ttlMs: number
  private readonly logger: Logger
  private link = ''
  /** Member nodes seen last (this one included). */
  private readonly members: Membership
  private redisUp = false
  /** A warning said Redis went: the next sync says it is back. */
  private warnedDown = false
  /** Since when Redis has not answered, or refused this node's writes (`undefined` while it takes them). */
  private downSinceMs: number | undefined = Date.now()
  /** Whether Redis may not hold this node's peers as they are (a write failed, Redis went): a `sync` is due. */
  private dirty = true
  private syncing: Promise<void> | undefined
  private syncAgain = false
  /** The follower must re-read a snapshot before reading the log on. */
  private needResync = true
  private lastId = '0-0'
  private lastSeq = 0
  /** Later joins on other nodes of addresses whose local join Redis has not numbered yet: decided when it has. */
  private readonly contested = new Map<string, PeerRow>()
  /** The address `displacedByNode` is taking away now (its leave is not written: the other node's join replaced it). */
  private displacing: string | undefined
  /** `leaving` ran: nothing more is written. */
  private gone = false
  private closed = false
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined
  private wake: (() => void) | undefined
  private firstSync: (() => void) | undefined
  private readonly firstSynced = new Promise<void>((resolve) => { this.firstSync = resolve })

  constructor (private readonly deps: PlaneDeps) {
    this.ttlMs = deps.options.clusterNodeTtlMs
    this.logger = deps.logger
    this.members = new Membership({ nodeId: this.nodeId, directory: deps.directory, rendezvous: deps.rendezvous, logger: deps.logger, nodeGone: deps.nodeGone })
    this.metrics = new PlaneMetrics(deps.metrics, {
      nodes: () => this.members.size,
      redisUp: () => this.redisUp,
      remotePeers: () => deps.directory.remoteSize
    })
    this.cmd = connect(deps.options.redis, { commandTimeout: COMMAND_TIMEOUT_MS, connectionName: `starsock-${this.nodeId}` })
    this.follower = connect(deps.options.redis, { connectionName: `starsock-${this.nodeId}-log` })
  }

  /**
   * Advertise `link` (the trunk's address), connect to Redis and follow the log. Settles once
   * this node is registered and its copy read, or after `START_WAIT_MS` when Redis does not
   * answer (joins are then served locally and written when it does).
   */
  async start (link: string): Promise<void> {
    this.link = link
    this.members.seen(this.nodeId, link)
    this.cmd.on('ready', () => this.recover())
    this.cmd.on('close', () => this.redisGone())
    this.cmd.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'redis connection error'))
    this.follower.on('ready', () => this.wake?.())
    this.follower.on('error', (err: Error) => this.logger.debug({ err: err.message }, 'redis follower connection error'))
    this.cmd.connect().catch(() => {})
    this.follower.connect().catch(() => {})
    this.heartbeatTimer = setInterval(() => { void this.heartbeat() }, Math.max(100, Math.floor(this.ttlMs / 3)))
    this.heartbeatTimer.unref?.()
    void this.follow()
    let timer: ReturnType<typeof setTimeout> | undefined
    const synced = await Promise.race([this.firstSynced.then(() => true), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), START_WAIT_MS) })])
    clearTimeout(timer)
    if (!synced && !this.redisUp) {
      this.warnedDown = true
      this.logger.warn('Redis does not answer yet: joins are served locally and written when it does')
    }
  }

  /** Whether this node is ready: false while Redis has been unreachable (or refused its writes) longer than `clusterNodeTtlMs`. */
  ready (): boolean {
    return this.downSinceMs === undefined || Date.now() - this.downSinceMs <= this.ttlMs
  }

  /** Whether Redis answers (and holds this node's registration). */
  get redisAnswers (): boolean {
    return this.redisUp
  }

  /** Member nodes seen last, this one included. */
  get nodeCount (): number {
    return this.members.size
  }

  remoteNodeOf (addr: string): string | undefined {
    return this.deps.directory.nodeOf(addr)
  }

  linkAddressOf (nodeId: string): string | undefined {
    return this.members.linkOf(nodeId)
  }

  /** The profile of a peer on another node. */
  remoteProfile (addr: string): PeerProfile | undefined {
    return this.deps.directory.remoteProfile(addr)
  }

  /**
   * The client on another node holding `addr`, or a starsock one holding `peerId` under another
   * spelling (when `starsock`), as this node's copy knows it with its claim.
   */
  remoteHolder (addr: string, peerId: string | undefined, starsock: boolean): RemoteHold | undefined {
    const directory = this.deps.directory
    const exact = directory.entry(addr)
    if (exact?.node !== undefined) return exact.claim === undefined ? undefined : { heldAddr: addr, claim: exact.claim }
    if (!starsock || peerId === undefined) return undefined
    const other = directory.remoteStarsock(peerId, addr)
    return other?.claim === undefined ? undefined : { heldAddr: other.addr, claim: other.claim }
  }

  /**
   * A local join (the directory has it, provisionally): write it with its holder's `claim` and
   * the `decision` about a holder on another node; its number places it, and settles a contest.
   */
  joined (addr: string, profile: PeerProfile | undefined, claim: HolderClaim, decision?: JoinDecision): void {
    const entry = this.deps.directory.entry(addr)
    if (this.gone || entry?.sessionId === undefined) return
    entry.claim = claim
    this.command('join', [addr, this.nodeId, profileJson(profile), claimJson(claim), decision?.outcome ?? '', decision?.takes ?? '', identityKey(addr, this.deps.options.strictMultiaddr)]).then((reply) => {
      if (reply === -1) return this.reregister()
      const seq = readSeq(reply)
      if (seq !== undefined) this.numbered(entry, seq)
    }, () => {})
  }

  /**
   * A local leave: written (with the identity's reservation when its client dropped) unless this
   * node is leaving, or another node's later join took the address.
   */
  left (addr: string, reserved?: LeaveReservation): void {
    // A contest over `addr` stays: the in-flight join's number still decides who holds it.
    if (this.gone || this.displacing === addr) return
    this.command('leave', [addr, this.nodeId, reserved === undefined ? '' : reservationJson(reserved), identityKey(addr, this.deps.options.strictMultiaddr)]).catch(() => {})
  }

  /** A local profile change of `addrs`. */
  profileChanged (addrs: readonly string[], profile: PeerProfile): void {
    if (this.gone) return
    for (const addr of addrs) this.command('profile', [addr, this.nodeId, profileJson(profile)]).catch(() => {})
  }

  /**
   * Clean shutdown, first step: one script removes this node's peers (others see the leaves at
   * once) and its registration. Settles when written, or at once when Redis is away.
   */
  async leaving (): Promise<void> {
    if (this.gone) return
    this.gone = true
    clearInterval(this.heartbeatTimer)
    if (this.cmd.status !== 'ready') return
    try {
      await this.command('goodbye', [this.nodeId])
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'could not remove this node\'s peers from Redis; they go when its key lapses')
    }
  }

  /** Stop the timers, the follower and both connections. Settles at once (never waits for Redis). */
  async close (): Promise<void> {
    this.gone = true
    this.closed = true
    clearInterval(this.heartbeatTimer)
    this.cmd.disconnect()
    this.follower.disconnect()
    this.wake?.()
  }

  /** Run script `name`, counted; a failure is counted and makes a sync due. */
  private async command (name: ScriptName, args: Array<string | number>, redis = this.cmd): Promise<unknown> {
    this.metrics.commands.inc({ command: name })
    try {
      return await runScript(redis, KEY_PREFIX, LOG_MAX_ENTRIES, name, args)
    } catch (err) {
      this.metrics.redisErrors.inc()
      if (redis === this.cmd && name !== 'reap') {
        this.dirty = true
        // A Redis that answers but refuses writes (out of memory, a read-only replica after a
        // failover) counts as away: only a `sync` that goes through ends it.
        this.downSinceMs ??= Date.now()
      }
      throw err
    }
  }

  /** Redis dropped the command connection. */
  private redisGone (): void {
    this.dirty = true
    if (!this.redisUp || this.closed) return
    this.redisUp = false
    this.downSinceMs ??= Date.now()
    this.warnedDown = true
    this.logger.warn('Redis unreachable: joins and leaves are served locally and written when it answers')
  }

  /** (Re)register this node and write its peers as they are now (`sync`), then re-read the copy. Coalesces calls. */
  private recover (): void {
    if (this.closed || this.gone) return
    if (this.syncing !== undefined) {
      this.syncAgain = true
      return
    }
    this.syncing = (async () => {
      do {
        this.syncAgain = false
        await this.sync()
      } while (this.syncAgain && !this.gone)
    })().catch((err: unknown) => {
      this.logger.debug({ err: (err as Error).message }, 'sync with Redis failed; retried')
    }).finally(() => { this.syncing = undefined })
  }

  /** The `sync` script: this node's registration and its peers, exactly. */
  private async sync (): Promise<void> {
    const directory = this.deps.directory
    const entries = directory.localEntries()
    this.dirty = false
    this.contested.clear()
    const args: Array<string | number> = [this.nodeId, this.nodeJson(), this.link, this.ttlMs, directory.highestSeq]
    for (const e of entries) args.push(e.addr, e.seq, profileJson(this.deps.rendezvous.profileAt(e.addr)), e.claim === undefined ? '' : claimJson(e.claim))
    const reply = await this.command('sync', args)
    if (Array.isArray(reply)) {
      entries.forEach((e, i) => {
        const seq = readSeq(reply[i])
        if (seq !== undefined && seq > 0) directory.confirm(e, seq)
      })
    }
    this.redisUp = true
    this.downSinceMs = undefined
    // Other nodes reconnect on their own backoff: give them a TTL and one retry to register again.
    this.members.graceUntil(Date.now() + this.ttlMs + RETRY_MAX_MS)
    if (this.warnedDown) this.logger.warn({ peers: entries.length }, 'Redis answers again: this node\'s peers are written')
    this.warnedDown = false
    this.needResync = true
    this.wake?.()
    this.firstSync?.()
  }

  /** What `starsock:node:<id>` holds. */
  private nodeJson (): string {
    return JSON.stringify({ link: this.link, startedMs: this.startedMs })
  }

  /** Redis numbered a local join `seq`: place it; a later join elsewhere that waited on it takes the address now. */
  private numbered (entry: DirectoryEntry, seq: number): void {
    const held = this.deps.directory.confirm(entry, seq)
    const other = this.contested.get(entry.addr)
    if (other === undefined) return
    this.contested.delete(entry.addr)
    if (other.seq < seq) return // ours is the later join: it stands (the other node gives way when it reads it)
    // The other join is the later one: it takes the address, or, when the local session left meanwhile, just holds it.
    if (held) this.displace(other)
    else this.remoteJoin(other)
  }

  /**
   * A later join on another node (`row`) takes an address a local session holds: the rendezvous
   * applies the rules to the newcomer's claim and the holder here (a join from an older node,
   * without a claim, is a takeover).
   */
  private displace (row: PeerRow): void {
    this.metrics.displacedByNode.inc()
    this.displacing = row.addr
    try {
      this.deps.rendezvous.displacedByNode(row.addr, row.claim)
    } finally {
      this.displacing = undefined
    }
    const left = this.deps.directory.entry(row.addr)
    // A holder the rendezvous no longer knows (it is disconnecting) must not keep the entry.
    if (left?.sessionId !== undefined) this.deps.directory.release(row.addr, left.sessionId)
    this.remoteJoin(row)
  }

  /** A peer on another node joined (a log entry, or a snapshot row): the copy, displacement, announcement. */
  private remoteJoin (row: PeerRow): void {
    const directory = this.deps.directory
    this.members.learned(row.node)
    const local = directory.entry(row.addr)
    if (local?.sessionId !== undefined) {
      if (local.seq === 0) this.contested.set(row.addr, row)
      else if (local.seq < row.seq) this.displace(row)
      return
    }
    const before = directory.remoteProfile(row.addr)
    const added = directory.putRemote(row.addr, row.node, row.seq, row.profile)
    directory.setRemoteClaim(row.addr, row.claim, checkAddress(row.addr, false)?.peerId)
    if (added) this.deps.rendezvous.remoteJoined(row.addr, row.profile)
    else if (row.profile !== undefined && !sameProfile(before, row.profile)) this.deps.rendezvous.remoteProfileChanged(row.addr, row.profile)
  }

  /**
   * A join on another node (`row`) took the peer id a local session holds under another spelling
   * (`takes`): the holder loses that address as the rules say (its leave is written: the join did
   * not replace its row). Only a local join older than the entry gives way, and only an address
   * of the same peer id (an entry naming another one is not trusted with a local peer).
   */
  private displaceSpelling (row: PeerRow, takes: string): void {
    const local = this.deps.directory.entry(takes)
    if (local?.sessionId === undefined || local.seq === 0 || local.seq > row.seq) return
    const peerId = checkAddress(takes, false)?.peerId
    if (peerId === undefined || peerId !== checkAddress(row.addr, false)?.peerId) return
    if (this.deps.rendezvous.displacedByNode(takes, row.claim, true)) this.metrics.displacedByNode.inc()
  }

  /** Follow the log: a snapshot first (and after every gap or error), then entries in order. Ends when closed. */
  private async follow (): Promise<void> {
    while (!this.closed) {
      if (this.follower.status !== 'ready') {
        this.needResync = true
        await this.nap(1000)
        continue
      }
      try {
        if (this.needResync) await this.resync()
        else await this.readLog()
      } catch (err) {
        if (this.closed) return
        this.metrics.redisErrors.inc()
        this.needResync = true
        this.logger.debug({ err: (err as Error).message }, 'reading the directory from Redis failed')
        await this.nap(500)
      }
    }
  }

  /** Settles after `ms`, or sooner when woken (Redis answers, a resync is due, closing). */
  private async nap (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms)
      function done (): void {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
    this.wake = undefined
  }

  /** Rebuild the remote part of the copy from a snapshot, announcing the differences; follow the log from its instant. */
  private async resync (): Promise<void> {
    this.metrics.resyncs.inc()
    const snapshot = readSnapshot(await this.command('snapshot', [], this.follower))
    this.needResync = false
    this.applySnapshot(snapshot)
  }

  /** Make the remote part of the copy what `snapshot` says, announcing joins, leaves and profile changes. */
  private applySnapshot (snapshot: Snapshot): void {
    const directory = this.deps.directory
    if (snapshot.bad > 0) this.metrics.badEntries.inc(snapshot.bad)
    const readUpTo = this.lastSeq
    directory.seen(snapshot.seq)
    this.lastId = snapshot.lastId
    this.lastSeq = snapshot.seq
    const listed = new Set<string>()
    for (const row of snapshot.peers) {
      if (row.node === this.nodeId) continue
      listed.add(row.addr)
      // Joined elsewhere in the gap: a reservation of the identity here is over, as for a join read from the log.
      if (row.seq > readUpTo) this.deps.rendezvous.joinedElsewhere(row.addr, row.claim?.starsock === true)
      this.remoteJoin(row)
    }
    // Until this node has written itself back (`sync`), a snapshot without it is of a Redis that
    // lost its data (restarted empty, flushed): the other nodes have not re-registered either.
    const inGrace = this.members.inGrace() || !this.redisUp || !snapshot.nodes.has(this.nodeId)
    for (const e of directory.remoteEntries()) {
      if (listed.has(e.addr) || e.node === undefined) continue
      // A node not registered now may come back (Redis restarted empty): its peers wait for the grace.
      if (inGrace && !snapshot.nodes.has(e.node)) continue
      if (directory.dropRemote(e.addr, e.node)) this.deps.rendezvous.remoteLeft(e.addr)
    }
    for (const [id, link] of snapshot.nodes) this.members.seen(id, link)
    // The reservations of leaves this node may have missed in the gap (held again already when it read them).
    for (const { addr, reservation, seq } of snapshot.reservations) {
      if (!listed.has(addr) && !this.joinedAgain(addr, seq)) this.deps.rendezvous.reservedElsewhere(addr, reservation)
    }
  }

  /** One read of the log (blocks up to `FOLLOW_BLOCK_MS`); applies what it got in order. */
  private async readLog (): Promise<void> {
    this.metrics.commands.inc({ command: 'xread' })
    const reply = await this.follower.call('XREAD', 'COUNT', FOLLOW_BATCH, 'BLOCK', FOLLOW_BLOCK_MS, 'STREAMS', KEY_PREFIX + 'log', this.lastId)
    if (!Array.isArray(reply)) return
    const stream = reply[0] as unknown
    const rows = Array.isArray(stream) && Array.isArray(stream[1]) ? stream[1] as unknown[] : []
    for (const row of rows) {
      if (this.needResync || this.closed) return
      this.applyRow(row)
    }
  }

  /** One log row: checked, in sequence (a gap means entries were trimmed or lost: resync), applied unless it is this node's. */
  private applyRow (row: unknown): void {
    const entry = readLogEntry(row)
    if (entry === undefined) {
      this.metrics.badEntries.inc()
      if (Array.isArray(row) && typeof row[0] === 'string') this.lastId = row[0]
      return
    }
    this.lastId = entry.id
    if (entry.seq <= this.lastSeq) return
    if (entry.seq !== this.lastSeq + 1) {
      this.needResync = true
      return
    }
    this.lastSeq = entry.seq
    this.deps.directory.seen(entry.seq)
    if (entry.node === this.nodeId) return
    const change: PeerRow = { addr: entry.addr, node: entry.node, seq: entry.seq, profile: entry.profile, claim: entry.claim, decision: entry.decision }
    if (entry.t === 'join') {
      // Joined elsewhere: a reservation of the identity here is over (its owner, or one allowed to have it, has it).
      this.deps.rendezvous.joinedElsewhere(entry.addr, entry.claim?.starsock === true)
      this.remoteJoin(change)
      if (entry.decision?.takes !== undefined) this.displaceSpelling(change, entry.decision.takes)
    } else if (entry.t === 'leave') {
      const leftSeq = this.deps.directory.entry(entry.addr)?.seq
      this.remoteLeave(entry.addr, entry.node)
      if (entry.reservation !== undefined && !this.joinedAgain(entry.addr, leftSeq)) this.deps.rendezvous.reservedElsewhere(entry.addr, entry.reservation)
    } else {
      this.remoteProfileSet(entry.addr, entry.node, entry.profile)
    }
  }

  /**
   * Whether a starsock client on another node holds the peer id of `addr` under another spelling:
   * the client whose drop a leave entry reserves for is back already (it resumed on another node,
   * whose join the log holds before the leave: its old node saw the socket go only after), so the
   * reservation would outlive its reason (a later clean leave of the other spelling does not end it).
   */
  private joinedAgain (addr: string, joinedAfter?: number): boolean {
    const peerId = checkAddress(addr, false)?.peerId
    return peerId !== undefined && this.deps.directory.remoteStarsock(peerId, addr, joinedAfter) !== undefined
  }

  /** A peer on node `node` left `addr` (a log entry): out of the copy if that node still holds it there. */
  private remoteLeave (addr: string, node: string): void {
    const other = this.contested.get(addr)
    if (other?.node === node) this.contested.delete(addr)
    if (this.deps.directory.dropRemote(addr, node)) this.deps.rendezvous.remoteLeft(addr)
  }

  /** A peer on node `node` changed the profile of `addr` (a log entry): kept, and passed on when it differs. */
  private remoteProfileSet (addr: string, node: string, profile: PeerProfile | undefined): void {
    const directory = this.deps.directory
    const before = directory.remoteProfile(addr)
    if (!directory.setRemoteProfile(addr, node, profile)) return
    if (profile !== undefined && !sameProfile(before, profile)) this.deps.rendezvous.remoteProfileChanged(addr, profile)
  }

  /**
   * Every ttl/3: refresh this node's key (re-register when it had lapsed: the node was frozen or
   * cut off), reap members whose key lapsed, and take note of who is a member.
   */
  private async heartbeat (): Promise<void> {
    if (this.closed || this.gone) return
    if (this.cmd.status !== 'ready') return
    if (this.dirty) return this.recover()
    let reply: unknown
    const askedMs = Date.now()
    try {
      reply = await this.command('heartbeat', [this.nodeId, this.nodeJson(), this.ttlMs])
    } catch {
      return
    }
    if (!Array.isArray(reply)) return
    if (reply[0] === 1) return this.reregister()
    const { nodes, lapsed, bad } = readNodes(reply, 3, 1)
    if (bad > 0) this.metrics.badEntries.inc(bad)
    for (const id of lapsed) if (id !== this.nodeId) void this.reap(id)
    for (const [id, link] of nodes) this.members.seen(id, link)
    this.members.sweep(nodes, askedMs)
  }

  /** Redis no longer holds this node's registration (reaped while frozen, or Redis lost its data): write it and its peers again. */
  private reregister (): void {
    if (!this.dirty) this.logger.warn('this node\'s registration had lapsed (was it frozen?): registering it and its peers again')
    this.dirty = true
    this.recover()
  }

  /** The first survivor to see `id`'s key lapsed removes it from Redis (one script; the others find nothing to do). */
  private async reap (id: string): Promise<void> {
    try {
      const removed = readSeq(await this.command('reap', [id]))
      if (removed !== undefined) {
        this.metrics.reaped.inc()
        this.logger.info({ node: id, peers: removed }, 'reaped a node whose key lapsed')
      }
    } catch {}
    this.members.left(id)
  }
}

