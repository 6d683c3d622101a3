/**
 * Where joined addresses live. The server talks to this interface only, so a shared backend
 * (peers joined on several server nodes) can implement it later; `MemoryPeerDirectory` is the
 * single-node one.
 */

/** Joined addresses and the session that holds each. */
export interface PeerDirectory {
  /** Number of joined addresses (on every node of a cluster). */
  readonly size: number
  /** Number of addresses joined on this node (what `maxPeers` bounds). */
  readonly localSize: number
  /** The session id holding `addr`, if any (on this node). */
  owner: (addr: string) => string | undefined
  /** Whether `addr` is joined (on any node). */
  has: (addr: string) => boolean
  /** Register `addr` for `sessionId`, replacing any earlier holder. */
  set: (addr: string, sessionId: string) => void
  /** Remove `addr` if `sessionId` holds it; `true` when removed. */
  release: (addr: string, sessionId: string) => boolean
  /** The address at position `index` (0 <= index < size) in an order that changes only on join and leave. */
  at: (index: number) => string | undefined
  /**
   * Up to `limit` addresses in join order from `cursor` (0 first), skipping those `skip` rejects,
   * and the cursor of the next page (`null` at the end). A cursor stays valid across joins and
   * leaves: a peer joined before paging began and still there at the end is on some page.
   */
  page: (cursor: number, limit: number, skip?: (addr: string) => boolean) => { addrs: string[], next: number | null }
}

/** A `PeerDirectory` in this process's memory; O(1) for every operation. */
export class MemoryPeerDirectory implements PeerDirectory {
  private readonly owners = new Map<string, { sessionId: string, index: number, seq: number }>()
  private readonly list: string[] = []
  /** Join order for paging: append-only (sequence numbers grow), compacted when half is gone. */
  private order: Array<{ addr: string, seq: number }> = []
  private nextSeq = 1

  get size (): number {
    return this.list.length
  }

  get localSize (): number {
    return this.list.length
  }

  owner (addr: string): string | undefined {
    return this.owners.get(addr)?.sessionId
  }

  has (addr: string): boolean {
    return this.owners.has(addr)
  }

  set (addr: string, sessionId: string): void {
    const entry = this.owners.get(addr)
    if (entry !== undefined) {
      entry.sessionId = sessionId
      return
    }
    const seq = this.nextSeq++
    this.owners.set(addr, { sessionId, index: this.list.length, seq })
    this.list.push(addr)
    this.order.push({ addr, seq })
  }

  release (addr: string, sessionId: string): boolean {
    const entry = this.owners.get(addr)
    if (entry === undefined || entry.sessionId !== sessionId) return false
    this.owners.delete(addr)
    // Swap-remove keeps removal O(1); the moved address takes the freed position.
    const last = this.list.pop()
    if (last !== undefined && last !== addr) {
      this.list[entry.index] = last
      const moved = this.owners.get(last)
      if (moved !== undefined) moved.index = entry.index
    }
    if (this.order.length > 64 && this.order.length > 2 * this.list.length) {
      this.order = this.order.filter((e) => this.owners.get(e.addr)?.seq === e.seq)
    }
    return true
  }

  page (cursor: number, limit: number, skip?: (addr: string) => boolean): { addrs: string[], next: number | null } {
    // First entry with seq >= cursor (the order is sorted by seq).
    let lo = 0
    let hi = this.order.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.order[mid]?.seq ?? Infinity) < cursor) lo = mid + 1
      else hi = mid
    }
    const addrs: string[] = []
    for (let i = lo; i < this.order.length; i++) {
      const e = this.order[i] as { addr: string, seq: number }
      if (this.owners.get(e.addr)?.seq !== e.seq || skip?.(e.addr) === true) continue
      if (addrs.length === limit) return { addrs, next: e.seq }
      addrs.push(e.addr)
    }
    return { addrs, next: null }
  }

  at (index: number): string | undefined {
    return this.list[index]
  }
}
