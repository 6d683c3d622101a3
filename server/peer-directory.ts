/**
 * Where joined addresses live. The server talks to this interface only, so a shared backend
 * (peers joined on several server nodes) can implement it later; `MemoryPeerDirectory` is the
 * single-node one.
 */

/** Joined addresses and the session that holds each. */
export interface PeerDirectory {
  /** Number of joined addresses. */
  readonly size: number
  /** The session id holding `addr`, if any. */
  owner: (addr: string) => string | undefined
  /** Register `addr` for `sessionId`, replacing any earlier holder. */
  set: (addr: string, sessionId: string) => void
  /** Remove `addr` if `sessionId` holds it; `true` when removed. */
  release: (addr: string, sessionId: string) => boolean
  /** The address at position `index` (0 <= index < size) in an order that changes only on join and leave. */
  at: (index: number) => string | undefined
}

/** A `PeerDirectory` in this process's memory; O(1) for every operation. */
export class MemoryPeerDirectory implements PeerDirectory {
  private readonly owners = new Map<string, { sessionId: string, index: number }>()
  private readonly list: string[] = []

  get size (): number {
    return this.list.length
  }

  owner (addr: string): string | undefined {
    return this.owners.get(addr)?.sessionId
  }

  set (addr: string, sessionId: string): void {
    const entry = this.owners.get(addr)
    if (entry !== undefined) {
      entry.sessionId = sessionId
      return
    }
    this.owners.set(addr, { sessionId, index: this.list.length })
    this.list.push(addr)
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
    return true
  }

  at (index: number): string | undefined {
    return this.list[index]
  }
}
