/**
 * The peer directory of a cluster node: every joined address of the cluster in this process's
 * memory (local ones by session id, the others by node id), fed by Redis's change log by the
 * plane (`plane.ts`). Lookups, paging and the announcer's rotation stay local and synchronous.
 *
 * Order: one order over local and remote entries by the **global** sequence number Redis gave
 * each join (`starsock:seq`), so a `starsock:peers` cursor taken on one node is valid on any
 * other. A cursor is `seq * SEQ_SCALE` (+ a small offset for provisional entries): a local join
 * whose number has not come back from Redis yet goes in provisionally just after the highest
 * number seen, and moves to its real place (never earlier) when it comes back. An entry that
 * moves later may be listed twice by a pager, never missed.
 */
import type { PeerProfile } from '../../shared/profile.ts'
import type { PeerDirectory } from '../peer-directory.ts'
import type { HolderClaim } from './types.ts'

/** Cursor units per global sequence number: room for this many provisional entries between two numbers. */
export const SEQ_SCALE = 65_536

/** One joined address, local (`sessionId`) or on another node (`node`). */
export interface DirectoryEntry {
  readonly addr: string
  /** The local session holding it; `undefined` for a remote entry. */
  sessionId: string | undefined
  /** The node holding it when remote. */
  node: string | undefined
  /** Global sequence number of its join; 0 while provisional (a local join Redis has not numbered yet). */
  seq: number
  /** Its place in the paging order (`seq * SEQ_SCALE`, or a provisional key). */
  key: number
  /** Index in the flat list (for `at`). */
  index: number
  /** Profile of a remote entry, as its node wrote it. */
  profile: PeerProfile | undefined
  /** Who holds it: for a local entry what the plane wrote, for a remote one what its node wrote (`undefined` when none). */
  claim?: HolderClaim | undefined
  /** Peer id of a remote starsock entry, as indexed in `starsockByPeerId`. */
  peerId?: string | undefined
}

/** See the module comment. `owner` answers only for local addresses; `nodeOf` for the others. */
export class ClusterDirectory implements PeerDirectory {
  private readonly entries = new Map<string, DirectoryEntry>()
  private readonly list: string[] = []
  /** Paging order, sorted by key; stale pairs (moved or removed entries) are skipped and compacted away. */
  private order: Array<{ addr: string, key: number }> = []
  private locals = 0
  /** Highest global sequence number seen (joins, leaves, profiles; ours and others'). */
  private maxSeq = 0
  /** Provisional keys handed out after `maxSeq`. */
  private provisionalInGap = 0
  /** Remote entries of starsock clients by peer id (one identity under several spellings of the address). */
  private readonly starsockByPeerId = new Map<string, Set<string>>()

  get size (): number {
    return this.list.length
  }

  get localSize (): number {
    return this.locals
  }

  /** Remote entries now. */
  get remoteSize (): number {
    return this.list.length - this.locals
  }

  /** The highest global sequence number this directory has seen. */
  get highestSeq (): number {
    return this.maxSeq
  }

  owner (addr: string): string | undefined {
    return this.entries.get(addr)?.sessionId
  }

  has (addr: string): boolean {
    return this.entries.has(addr)
  }

  /** The node holding `addr` when another node does; `undefined` when local or unknown. */
  nodeOf (addr: string): string | undefined {
    return this.entries.get(addr)?.node
  }

  /** The entry for `addr`, local or remote. */
  entry (addr: string): DirectoryEntry | undefined {
    return this.entries.get(addr)
  }

  /** The profile of a remote entry. */
  remoteProfile (addr: string): PeerProfile | undefined {
    const e = this.entries.get(addr)
    return e?.node === undefined ? undefined : e.profile
  }

  /**
   * A local session joined `addr`: a new entry goes in provisionally (see the module comment); a
   * remote entry for it is replaced (the local join is the later one); a local one changes hands
   * and keeps its place, but its number is the old holder's: it is unnumbered (`seq` 0) until the
   * new holder's join comes back from Redis, so a join on another node meanwhile is decided then.
   */
  set (addr: string, sessionId: string): void {
    const e = this.entries.get(addr)
    if (e !== undefined && e.sessionId !== undefined) {
      e.sessionId = sessionId
      e.seq = 0
      return
    }
    if (e !== undefined) this.remove(e)
    const entry: DirectoryEntry = { addr, sessionId, node: undefined, seq: 0, key: this.provisionalKey(), index: this.list.length, profile: undefined }
    this.insert(entry)
  }

  release (addr: string, sessionId: string): boolean {
    const e = this.entries.get(addr)
    if (e === undefined || e.sessionId !== sessionId) return false
    this.remove(e)
    return true
  }

  /** The local entry `entry` (still the one for its address) was numbered `seq` by Redis: move it to its place. */
  confirm (entry: DirectoryEntry, seq: number): boolean {
    this.seen(seq)
    if (this.entries.get(entry.addr) !== entry || entry.sessionId === undefined) return false
    if (entry.seq === seq) return true
    entry.seq = seq
    this.place(entry, seq * SEQ_SCALE)
    return true
  }

  /**
   * The peer at `addr` is on `node` (joined with sequence number `seq`): a new remote entry, or
   * one moved or renumbered. Never replaces a local entry (the caller decides displacement first).
   * Returns whether the address is new to this copy or changed node (worth announcing).
   */
  putRemote (addr: string, node: string, seq: number, profile: PeerProfile | undefined): boolean {
    this.seen(seq)
    const e = this.entries.get(addr)
    if (e?.sessionId !== undefined) return false
    if (e !== undefined) {
      const moved = e.node !== node
      e.node = node
      e.profile = profile
      if (e.seq !== seq) {
        e.seq = seq
        this.place(e, seq * SEQ_SCALE)
      }
      return moved
    }
    this.insert({ addr, sessionId: undefined, node, seq, key: seq * SEQ_SCALE, index: this.list.length, profile })
    return true
  }

  /**
   * The claim and peer id of the remote entry for `addr` (`putRemote` first): a starsock entry
   * with a peer id is indexed for `remoteStarsock`.
   */
  setRemoteClaim (addr: string, claim: HolderClaim | undefined, peerId: string | undefined): void {
    const e = this.entries.get(addr)
    if (e?.node === undefined) return
    this.unindexPeerId(e)
    e.claim = claim
    if (claim?.starsock === true && peerId !== undefined) {
      e.peerId = peerId
      let addrs = this.starsockByPeerId.get(peerId)
      if (addrs === undefined) {
        addrs = new Set()
        this.starsockByPeerId.set(peerId, addrs)
      }
      addrs.add(addr)
    }
  }

  /** A remote entry of a starsock client with `peerId` under an address other than `addr` (joined after seq `joinedAfter`), if any. */
  remoteStarsock (peerId: string, addr: string, joinedAfter = -1): DirectoryEntry | undefined {
    for (const other of this.starsockByPeerId.get(peerId) ?? []) {
      const e = other === addr ? undefined : this.entries.get(other)
      if (e !== undefined && e.seq > joinedAfter) return e
    }
    return undefined
  }

  /** Remove the remote entry for `addr` if `node` holds it (any node when `undefined`); `true` when removed. */
  dropRemote (addr: string, node?: string): boolean {
    const e = this.entries.get(addr)
    if (e?.node === undefined || (node !== undefined && e.node !== node)) return false
    this.remove(e)
    return true
  }

  /** Set the profile of the remote entry for `addr` held by `node`; `true` when it is there. */
  setRemoteProfile (addr: string, node: string, profile: PeerProfile | undefined): boolean {
    const e = this.entries.get(addr)
    if (e?.node !== node) return false
    e.profile = profile
    return true
  }

  /** Note a global sequence number seen (so provisional keys go after it). */
  seen (seq: number): void {
    if (seq <= this.maxSeq) return
    this.maxSeq = seq
    this.provisionalInGap = 0
  }

  /** Every local entry (a copy: safe to change the directory meanwhile). */
  localEntries (): DirectoryEntry[] {
    return [...this.entries.values()].filter((e) => e.sessionId !== undefined)
  }

  /** Every remote entry (a copy). */
  remoteEntries (): DirectoryEntry[] {
    return [...this.entries.values()].filter((e) => e.node !== undefined)
  }

  page (cursor: number, limit: number, skip?: (addr: string) => boolean): { addrs: string[], next: number | null } {
    const addrs: string[] = []
    for (let i = this.firstAtOrAfter(cursor); i < this.order.length; i++) {
      const o = this.order[i] as { addr: string, key: number }
      if (this.entries.get(o.addr)?.key !== o.key || skip?.(o.addr) === true) continue
      if (addrs.length === limit) return { addrs, next: o.key }
      addrs.push(o.addr)
    }
    return { addrs, next: null }
  }

  at (index: number): string | undefined {
    return this.list[index]
  }

  /** The next provisional key: just after the highest number seen, in arrival order. */
  private provisionalKey (): number {
    // Past SCALE-1 joins in one gap (only while Redis is away) keys tie; a tie can list an entry twice.
    this.provisionalInGap = Math.min(this.provisionalInGap + 1, SEQ_SCALE - 1)
    return this.maxSeq * SEQ_SCALE + this.provisionalInGap
  }

  private insert (entry: DirectoryEntry): void {
    entry.index = this.list.length
    this.entries.set(entry.addr, entry)
    this.list.push(entry.addr)
    if (entry.sessionId !== undefined) this.locals++
    this.place(entry, entry.key)
  }

  private remove (entry: DirectoryEntry): void {
    this.unindexPeerId(entry)
    this.entries.delete(entry.addr)
    if (entry.sessionId !== undefined) this.locals--
    // Swap-remove keeps removal O(1); the moved address takes the freed position.
    const last = this.list.pop()
    if (last !== undefined && last !== entry.addr) {
      this.list[entry.index] = last
      const moved = this.entries.get(last)
      if (moved !== undefined) moved.index = entry.index
    }
    this.compact()
  }

  /** Take `entry` out of `starsockByPeerId`. */
  private unindexPeerId (entry: DirectoryEntry): void {
    if (entry.peerId === undefined) return
    const addrs = this.starsockByPeerId.get(entry.peerId)
    addrs?.delete(entry.addr)
    if (addrs?.size === 0) this.starsockByPeerId.delete(entry.peerId)
    entry.peerId = undefined
  }

  /** Give `entry` the paging key `key`: a new pair in sorted place (appending is the common case); the old pair goes stale. */
  private place (entry: DirectoryEntry, key: number): void {
    entry.key = key
    const pair = { addr: entry.addr, key }
    const lastKey = this.order[this.order.length - 1]?.key ?? -1
    if (key >= lastKey) this.order.push(pair)
    else this.order.splice(this.firstAfter(key), 0, pair)
    this.compact()
  }

  /** Drop stale pairs once they are half of the order. */
  private compact (): void {
    if (this.order.length > 64 && this.order.length > 2 * this.list.length) {
      this.order = this.order.filter((o) => this.entries.get(o.addr)?.key === o.key)
    }
  }

  /** Index of the first pair with key >= `key`. */
  private firstAtOrAfter (key: number): number {
    let lo = 0
    let hi = this.order.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.order[mid]?.key ?? Infinity) < key) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** Index of the first pair with key > `key` (a new pair with an equal key goes after the others). */
  private firstAfter (key: number): number {
    let lo = 0
    let hi = this.order.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.order[mid]?.key ?? Infinity) <= key) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}
