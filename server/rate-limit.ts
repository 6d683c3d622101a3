/** Rate limits: a token bucket per socket and a fixed-window counter per key (IP address). */

/** A token bucket: `ratePerSecond` sustained, bursts up to `burst`. */
export class TokenBucket {
  private tokens: number
  private last: number

  constructor (private readonly ratePerSecond: number, private readonly burst: number, private readonly now: () => number = Date.now) {
    this.tokens = burst
    this.last = now()
  }

  /** Take one token; `false` when the bucket is empty. */
  take (): boolean {
    const t = this.now()
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSecond)
    this.last = t
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}

/** Counts per key in fixed windows; memory is the keys seen in the current window only. */
export class WindowCounter {
  private counts = new Map<string, number>()
  private windowStart: number

  constructor (private readonly limit: number, private readonly windowMs: number, private readonly now: () => number = Date.now) {
    this.windowStart = now()
  }

  /** Count one hit for `key`; `false` when the key is over its limit in this window. */
  hit (key: string): boolean {
    const t = this.now()
    if (t - this.windowStart >= this.windowMs) {
      this.counts = new Map()
      this.windowStart = t
    }
    const n = (this.counts.get(key) ?? 0) + 1
    this.counts.set(key, n)
    return n <= this.limit
  }
}
