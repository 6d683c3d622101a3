/**
 * Bytes of files taken from each peer within a sliding window, with running sums (no scan per
 * offer). A grant is charged its offered size while its file may still come, then settled to
 * what actually arrived, so offers that send nothing do not hold the quota.
 */

/** One grant's charge; `settle` it when its file is over. */
export interface FileCharge {
  readonly peerId: string
  readonly at: number
  bytes: number
  /** Out of the window: no longer in the sums. */
  expired: boolean
}

/** Running per-peer and total sums of file charges within `windowMs`. */
export class FileQuota {
  private readonly queue: FileCharge[] = []
  private head = 0
  private readonly perPeer = new Map<string, number>()
  private all = 0

  constructor (private readonly windowMs: number) {}

  /** Bytes charged to `peerId` within the window (expired charges dropped first). */
  used (peerId: string, now = Date.now()): { mine: number, all: number } {
    this.expire(now)
    return { mine: this.perPeer.get(peerId) ?? 0, all: this.all }
  }

  /** Charge `bytes` to `peerId` now. */
  charge (peerId: string, bytes: number, now = Date.now()): FileCharge {
    const c: FileCharge = { peerId, at: now, bytes, expired: false }
    this.queue.push(c)
    this.add(peerId, bytes)
    return c
  }

  /** Change a charge to `bytes` (the bytes that arrived); nothing if it left the window already. */
  settle (c: FileCharge, bytes: number): void {
    if (!c.expired) this.add(c.peerId, bytes - c.bytes)
    c.bytes = bytes
  }

  private add (peerId: string, delta: number): void {
    const now = (this.perPeer.get(peerId) ?? 0) + delta
    if (now === 0) this.perPeer.delete(peerId)
    else this.perPeer.set(peerId, now)
    this.all += delta
  }

  private expire (now: number): void {
    const since = now - this.windowMs
    while (this.head < this.queue.length) {
      const c = this.queue[this.head] as FileCharge
      if (c.at >= since) break
      c.expired = true
      this.add(c.peerId, -c.bytes)
      this.head++
    }
    // Drop the spent front now and then, so the array does not grow for ever (no shift per entry).
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head)
      this.head = 0
    }
  }
}
