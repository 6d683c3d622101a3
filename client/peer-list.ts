/**
 * The other peers online, as far as this peer knows: learned from the join reply, the paged
 * `starsock:peers` list and live events, forgotten on `starsock:peer-leave`, and reconciled in
 * one step after a rejoin so that only what changed is told.
 */
import { errorFromWire, StarsockError } from '../shared/errors.ts'
import { EVENTS } from '../shared/events.ts'
import { readProfile, sameProfile, type PeerKind, type PeerProfile } from '../shared/profile.ts'
import { checkPeersPage, PEER_ID_TEXT, readPeerBatch } from '../shared/validate.ts'
import { parseAddress } from '../shared/wsstar-address.ts'
import type { Requester } from './server-link.ts'

/** Another peer online. */
export interface PeerInfo {
  peerId: string
  addr: string
  /**
   * The display name it chose, as the server relayed it (checked: see `shared/profile.ts`). Only
   * its word: show it beside the peer id, which is what a secure connection verifies.
   */
  name?: string
  /** What runs it (`browser`, `node`, `gateway`), as the server believes it; absent from a peer or server without profiles. */
  kind?: PeerKind
}

/** `PeerInfo` of a peer and its profile. */
function infoOf (peerId: string, addr: string, profile: PeerProfile | undefined): PeerInfo {
  const info: PeerInfo = { peerId, addr }
  if (profile?.name !== undefined) info.name = profile.name
  if (profile !== undefined) info.kind = profile.kind
  return info
}

/**
 * Pages of `starsock:peers` one join reads at most: 16 times what a default server (20,000 peers,
 * 64 a page) needs, and a hostile server that never ends its list cannot make the client page for ever.
 */
export const MAX_PEER_PAGES = 5000

/** Throw a `TypeError` unless `target` is a peer id or a valid multiaddr. */
export function checkDialTarget (target: string): void {
  if (typeof target !== 'string' || target === '') throw new TypeError('dial target must be a peer id or a websocket-star address')
  if (target.startsWith('/')) {
    if (parseAddress(target) === undefined) throw new TypeError(`dial target ${target} is not a valid multiaddr`)
  } else if (!PEER_ID_TEXT.test(target)) {
    throw new TypeError(`dial target ${target} is not a peer id`)
  }
}

/**
 * The live changes seen while a join gathers the list. Live events after a join are every change
 * since it, in order, so for what they touched they are newer than any page (issue 18: a batch may
 * arrive after a page that already showed its changes, or before one that did not yet).
 */
interface LiveChanges {
  /** Addresses a live join or leave named. */
  readonly addrs: Set<string>
  /** The last live profile of each address (as sent; checked when used). */
  readonly profiles: Map<string, unknown>
}

/** The peers online, by peer id; tells `onJoin`, `onLeave` and `onProfile` of every change. */
export class PeerList {
  private readonly known = new Map<string, string>()
  /** Profiles of known peers that have one (checked), by peer id. */
  private readonly profiles = new Map<string, PeerProfile>()
  /** Live changes since the running gathering began (none: no gathering runs). */
  private live: LiveChanges | undefined

  constructor (
    /** This peer's own id, never listed. */
    private readonly selfId: string,
    private readonly onJoin: (info: PeerInfo) => void,
    private readonly onLeave: (info: PeerInfo) => void,
    private readonly onProfile: (info: PeerInfo) => void = () => {}
  ) {}

  /** The peers known now. */
  list (): PeerInfo[] {
    return [...this.known].map(([peerId, addr]) => infoOf(peerId, addr, this.profiles.get(peerId)))
  }

  /** The known peer `peerId`, if it is online. */
  info (peerId: string): PeerInfo | undefined {
    const addr = this.known.get(peerId)
    return addr === undefined ? undefined : infoOf(peerId, addr, this.profiles.get(peerId))
  }

  /** The address to dial for a checked target: itself, or the known address of a peer id (else `E_PEER_NOT_FOUND`). */
  addressOf (target: string): string {
    if (target.startsWith('/')) return target
    const addr = this.known.get(target)
    if (addr === undefined) throw new StarsockError('E_PEER_NOT_FOUND', `Peer ${target} is not online`)
    return addr
  }

  /**
   * A peer is online at `addr` (anything but another peer's address is ignored), with `profile`
   * when the server sent one (a bad one is none; without one, a profile known already stays).
   */
  learn (addr: unknown, profile?: unknown): void {
    const peerId = this.otherPeerId(addr)
    if (peerId === undefined) return
    this.live?.addrs.add(addr as string)
    if (this.known.get(peerId) === addr) {
      this.changeProfile(addr, profile)
      return
    }
    const checked = readProfile(profile)
    this.known.set(peerId, addr as string)
    if (checked !== undefined) this.profiles.set(peerId, checked)
    this.onJoin(infoOf(peerId, addr as string, this.profiles.get(peerId)))
  }

  /** `starsock:peer-profile`: the peer at `addr` (if that is its known address) has a new `profile` (ignored unless valid). */
  changeProfile (addr: unknown, profile: unknown): void {
    const peerId = this.otherPeerId(addr)
    const checked = readProfile(profile)
    if (peerId !== undefined && checked !== undefined) this.live?.profiles.set(addr as string, profile)
    if (peerId === undefined || checked === undefined || this.known.get(peerId) !== addr) return
    if (sameProfile(this.profiles.get(peerId), checked)) return
    this.profiles.set(peerId, checked)
    this.onProfile(infoOf(peerId, addr as string, checked))
  }

  /** The peer at `addr` left (only if that is still the address known for it). */
  forget (addr: unknown): void {
    const peerId = parseAddress(addr)?.peerId
    if (typeof addr !== 'string' || peerId === undefined) return
    this.live?.addrs.add(addr)
    if (this.known.get(peerId) !== addr) return
    const info = infoOf(peerId, addr, this.profiles.get(peerId))
    this.known.delete(peerId)
    this.profiles.delete(peerId)
    this.onLeave(info)
  }

  /**
   * `starsock:peer-batch`: apply its changes in order, each as its single event would be (a
   * malformed entry is skipped; anything but an array is nothing).
   */
  applyBatch (entries: unknown): void {
    for (const entry of readPeerBatch(entries) ?? []) {
      if (entry[0] === 'join') this.learn(entry[1], entry[2])
      else if (entry[0] === 'leave') this.forget(entry[1])
      else this.changeProfile(entry[1], entry[2])
    }
  }

  /** Start gathering the list anew (a join on a fresh connection); nothing changes until `apply`. */
  gather (): PeerGathering {
    const live: LiveChanges = { addrs: new Set(), profiles: new Map() }
    this.live = live
    return new PeerGathering(this, new Map(this.known), (peerId) => this.known.get(peerId), live)
  }

  /** Stop noting live changes for `live`'s gathering (it is being applied), unless a newer one runs. */
  endGathering (live: LiveChanges): void {
    if (this.live === live) this.live = undefined
  }

  /** The peer id of `addr` when it is another peer's address string. */
  otherPeerId (addr: unknown): string | undefined {
    const peerId = parseAddress(addr)?.peerId
    return typeof addr === 'string' && peerId !== undefined && peerId !== this.selfId ? peerId : undefined
  }
}

/** The list one join finds: from its reply and the paged list, swapped in at once. */
export class PeerGathering {
  private readonly found = new Map<string, string>()
  private readonly foundProfiles = new Map<string, unknown>()

  constructor (
    private readonly list: PeerList,
    /** The list when the join began. */
    private readonly before: ReadonlyMap<string, string>,
    private readonly current: (peerId: string) => string | undefined,
    /** Live changes meanwhile: they win over the pages for what they touched. */
    private readonly live: LiveChanges
  ) {}

  /** Add the addresses of a join reply (anything but an array is none). */
  collectAll (addrs: unknown): void {
    for (const addr of Array.isArray(addrs) ? addrs : []) this.collect(addr)
  }

  /** Add one address (ignored unless another peer's), with its profile from a `starsock:peers` page. */
  collect (addr: unknown, profile?: unknown): void {
    const peerId = this.list.otherPeerId(addr)
    if (peerId === undefined) return
    this.found.set(peerId, addr as string)
    if (profile !== undefined && profile !== null) this.foundProfiles.set(peerId, profile)
  }

  /**
   * Read `starsock:peers` page by page; settles with `true` at the list's end, `false` when it
   * stopped at `maxPages`; rejects with the server's error or a malformed page's `E_BAD_REQUEST`.
   */
  async loadPages (link: Requester, maxPages = MAX_PEER_PAGES): Promise<boolean> {
    let cursor: number | null = 0
    for (let pages = 0; cursor !== null; pages++) {
      if (pages === maxPages) return false
      const [err, reply] = await link.request(EVENTS.PEERS, [cursor])
      if (err != null) throw errorFromWire(err)
      const page = checkPeersPage(reply)
      if (page instanceof StarsockError) throw page
      page.addrs.forEach((addr, i) => this.collect(addr, page.profiles?.[i]))
      cursor = page.next
    }
    return true
  }

  /**
   * Swap the list in one step, telling only what changed since the join began: peers learned from
   * live events meanwhile stay; those gone since the last connection leave. A live join or leave
   * wins over the pages (a peer listed, then gone, stays gone), and so does a live profile.
   */
  apply (): void {
    this.list.endGathering(this.live)
    const { addrs, profiles } = this.live
    for (const [peerId, addr] of this.before) {
      if (this.found.get(peerId) !== addr && this.current(peerId) === addr && !addrs.has(addr)) this.list.forget(addr)
    }
    for (const [peerId, addr] of this.found) {
      const now = this.current(peerId)
      // Told live of this address, or of where the peer is now: the page is older.
      if (addrs.has(addr) || (now !== undefined && addrs.has(now))) continue
      this.list.learn(addr, profiles.has(addr) ? profiles.get(addr) : this.foundProfiles.get(peerId))
    }
  }
}
