/**
 * Rates from byte totals: `RateMeter` keeps the totals it was given over the last `windowMs` and
 * answers bytes per second over that window (the chart, the mappings table and the transfers all
 * measure the same way, so their figures agree with the bytes that moved).
 */
export class RateMeter {
  private readonly samples: Array<{ at: number, total: number }> = []

  constructor (private readonly windowMs = 2000) {}

  /** Record `total` bytes so far at `at` (ms, `performance.now()`); returns the rate now. */
  sample (total: number, at = performance.now()): number {
    this.samples.push({ at, total })
    while (this.samples.length > 2 && (this.samples[1] as { at: number }).at <= at - this.windowMs) this.samples.shift()
    return this.rate()
  }

  /** Bytes per second between the oldest and newest sample in the window (0 with fewer than two). */
  rate (): number {
    const first = this.samples[0]
    const last = this.samples.at(-1)
    if (first === undefined || last === undefined || last.at <= first.at) return 0
    return Math.max(0, last.total - first.total) / ((last.at - first.at) / 1000)
  }
}
