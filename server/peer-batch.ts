/**
 * The peer changes not yet sent to the clients that asked for batches (issue 18).
 *
 * Every such client is told the same changes, so one window serves them all: a change costs one
 * entry whatever the number of clients, and a flush sends the window to each (without the entries
 * about the client's own addresses). Changes stay in the order they happened, each told as its
 * single event would be, except:
 * - a join of an address with a join pending is one join, with the newest profile (a client
 *   keeps the profile it knows when a join comes without one);
 * - a leave drops the pending join and profile changes of its address (nobody was told them by
 *   this window), but is itself kept, since a client may have read the address from a
 *   `starsock:peers` page meanwhile; a second leave after a dropped join is not needed.
 * Past `maxEntries` the oldest join or profile change is dropped (counted in `dropped`); a leave
 * never is: leaves are of distinct addresses the directory held, so they are bounded by it.
 * Profile changes are bounded before they get here (per socket and per IP address).
 */
import type { PeerBatchEntry } from '../shared/events.ts'
import type { PeerProfile } from '../shared/profile.ts'

/** One entry in the window; `live` false once dropped or replaced. */
interface Slot {
  entry: PeerBatchEntry
  live: boolean
}

/** The pending entries of one address: a leave, then a join and profile changes. */
interface AddrSlots {
  leave?: Slot
  join?: Slot
  profiles: Slot[]
}

/** Pending peer changes, in order, bounded. */
export class PeerBatchWindow {
  private slots: Slot[] = []
  private readonly byAddr = new Map<string, AddrSlots>()
  private live = 0
  /** Where the search for the oldest droppable entry resumes (entries before it are leaves or dead). */
  private dropScan = 0
  /** Joins and profile changes dropped at the cap since start. */
  dropped = 0

  constructor (private readonly maxEntries: number) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be a positive integer')
  }

  /** Entries pending. */
  get size (): number {
    return this.live
  }

  /** The peer at `addr` joined, with `profile` when it has one. */
  join (addr: string, profile?: PeerProfile): void {
    const pending = this.slotsOf(addr)
    if (pending.join === undefined) {
      const slot = this.push(profile === undefined ? ['join', addr] : ['join', addr, profile])
      if (slot.live) pending.join = slot
      return
    }
    // Joined again without a leave: one join, with the newest profile (changes since it are
    // older than this one's profile; without one, they stand).
    if (profile === undefined) return
    pending.join.entry = ['join', addr, profile]
    for (const slot of pending.profiles) this.kill(slot)
    pending.profiles = []
  }

  /** The peer at `addr` has a new `profile`. */
  profile (addr: string, profile: PeerProfile): void {
    const pending = this.slotsOf(addr)
    const slot = this.push(['profile', addr, profile])
    if (slot.live) pending.profiles.push(slot)
  }

  /** The peer at `addr` left. */
  leave (addr: string): void {
    const pending = this.slotsOf(addr)
    if (pending.join !== undefined) this.kill(pending.join)
    for (const slot of pending.profiles) this.kill(slot)
    pending.join = undefined
    pending.profiles = []
    if (pending.leave === undefined) pending.leave = this.push(['leave', addr])
  }

  /** The pending entries in order; the window keeps them. */
  peek (): PeerBatchEntry[] {
    return this.slots.filter((slot) => slot.live).map((slot) => slot.entry)
  }

  /** The pending entries in order; the window is empty afterwards. */
  take (): PeerBatchEntry[] {
    const entries = this.slots.filter((slot) => slot.live).map((slot) => slot.entry)
    this.slots = []
    this.byAddr.clear()
    this.live = 0
    this.dropScan = 0
    return entries
  }

  private slotsOf (addr: string): AddrSlots {
    let pending = this.byAddr.get(addr)
    if (pending === undefined) {
      pending = { profiles: [] }
      this.byAddr.set(addr, pending)
    }
    return pending
  }

  private push (entry: PeerBatchEntry): Slot {
    const slot: Slot = { entry, live: true }
    this.slots.push(slot)
    this.live++
    if (this.live > this.maxEntries) this.dropOldestChange()
    // Dead slots are kept until a flush; squeeze them out before they outnumber the live ones.
    if (this.slots.length > 2 * this.live + 64) this.compact()
    return slot
  }

  /** Drop the oldest join or profile change (none: all pending entries are leaves, which stay). */
  private dropOldestChange (): void {
    for (; this.dropScan < this.slots.length; this.dropScan++) {
      const slot = this.slots[this.dropScan]
      if (slot === undefined || !slot.live || slot.entry[0] === 'leave') continue
      this.kill(slot)
      const pending = this.byAddr.get(slot.entry[1])
      if (pending !== undefined) {
        if (pending.join === slot) pending.join = undefined
        else pending.profiles = pending.profiles.filter((s) => s !== slot)
      }
      this.dropped++
      return
    }
  }

  private kill (slot: Slot): void {
    if (!slot.live) return
    slot.live = false
    this.live--
  }

  private compact (): void {
    this.slots = this.slots.filter((slot) => slot.live)
    this.dropScan = 0
  }
}
