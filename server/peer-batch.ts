/**
 * The peer changes not yet sent to the clients that asked for batches (issue 18).
 *
 * Every such client is told the same changes, so one window serves them all: a change costs one
 * entry whatever the number of clients, and a flush sends the window to each (without the entries
 * about the client's own addresses). Per address the window holds at most a leave followed by a
 * join or a profile change, in the order they happened:
 * - a join or profile change of an address with a pending one replaces its profile in place;
 * - a leave drops the pending join or profile change of its address (nobody was told it by this
 *   window), but is itself kept, since a client may have read the address from a `starsock:peers`
 *   page meanwhile; a second leave after a dropped join is not needed (the first one stands).
 * Past `maxEntries` the oldest join or profile change is dropped (counted in `dropped`); a leave
 * never is: leaves are of distinct addresses the directory held, so they are bounded by it.
 */
import type { PeerBatchEntry } from '../shared/events.ts'
import type { PeerProfile } from '../shared/profile.ts'

/** One entry in the window; `live` false once dropped or replaced. */
interface Slot {
  entry: PeerBatchEntry
  live: boolean
}

/** The pending entries of one address: a leave, then a join or profile change. */
interface AddrSlots {
  leave?: Slot
  change?: Slot
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

  /**
   * The peer at `addr` joined, with `profile` when it has one (without one, a profile pending for
   * it stays, as a client keeps the profile it knows when a join comes without one).
   */
  join (addr: string, profile?: PeerProfile): void {
    const change = this.byAddr.get(addr)?.change
    const shown = profile ?? change?.entry[2]
    const entry: PeerBatchEntry = shown === undefined ? ['join', addr] : ['join', addr, shown]
    if (change !== undefined) change.entry = entry
    else this.push(addr, entry, 'change')
  }

  /** The peer at `addr` has a new `profile`. */
  profile (addr: string, profile: PeerProfile): void {
    const change = this.byAddr.get(addr)?.change
    if (change === undefined) {
      this.push(addr, ['profile', addr, profile], 'change')
      return
    }
    change.entry = change.entry[0] === 'join' ? ['join', addr, profile] : ['profile', addr, profile]
  }

  /** The peer at `addr` left. */
  leave (addr: string): void {
    const pending = this.byAddr.get(addr)
    if (pending?.change !== undefined) {
      this.kill(pending.change)
      pending.change = undefined
    }
    if (pending?.leave !== undefined) return
    this.push(addr, ['leave', addr], 'leave')
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

  private push (addr: string, entry: PeerBatchEntry, as: keyof AddrSlots): void {
    const slot: Slot = { entry, live: true }
    this.slots.push(slot)
    this.live++
    const pending = this.byAddr.get(addr)
    if (pending === undefined) this.byAddr.set(addr, { [as]: slot })
    else pending[as] = slot
    if (this.live > this.maxEntries) this.dropOldestChange()
    // Dead slots are kept until a flush; squeeze them out before they outnumber the live ones.
    if (this.slots.length > 2 * this.live + 64) this.compact()
  }

  /** Drop the oldest join or profile change (none: all pending entries are leaves, which stay). */
  private dropOldestChange (): void {
    for (; this.dropScan < this.slots.length; this.dropScan++) {
      const slot = this.slots[this.dropScan]
      if (slot === undefined || !slot.live || slot.entry[0] === 'leave') continue
      const addr = slot.entry[1]
      this.kill(slot)
      const pending = this.byAddr.get(addr)
      if (pending !== undefined) pending.change = undefined
      if (pending?.leave === undefined) this.byAddr.delete(addr)
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
