/**
 * Rates from byte totals: `RateMeter` keeps the totals it was given over the last `windowMs` and
 * answers bytes per second over that window (the chart, the mappings table and the transfers all
 * measure the same way, so their figures agree with the bytes that moved).
 */
export class RateMeter {
  private readonly samples: Array<{ at: number, total: number }> = []

  /** @param windowMs how far back a rate looks (at least that far, back to the sample just before); @default 2000 */
  constructor (private readonly windowMs = 2000) {
    if (!(windowMs > 0)) throw new RangeError('windowMs must be a positive number of milliseconds')
  }

  /** Record `total` bytes so far at `at` (ms, `performance.now()`); returns the rate now. */
  sample (total: number, at = performance.now()): number {
    this.samples.push({ at, total })
    while (this.samples.length > 2 && (this.samples[1] as { at: number }).at <= at - this.windowMs) this.samples.shift()
    return this.rate()
  }

  /**
   * Bytes per second over the window (0 with fewer than two samples). With `at` later than the
   * last sample, as if the total had not moved since: a transfer that stalls, and so stops being
   * sampled, falls to 0 instead of showing its last rate for ever.
   */
  rate (at?: number): number {
    const last = this.samples.at(-1)
    if (last === undefined) return 0
    const now = at !== undefined && at > last.at ? at : last.at
    // The latest sample at or before the window's start (else the oldest one kept).
    let first = this.samples[0] as { at: number, total: number }
    for (const s of this.samples) if (s.at <= now - this.windowMs) first = s
    if (now <= first.at) return 0
    return Math.max(0, last.total - first.total) / ((now - first.at) / 1000)
  }
}
