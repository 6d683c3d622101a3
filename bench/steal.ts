/**
 * CPU steal from `/proc/stat`: the share of the machine's CPU time the hypervisor gave to other
 * guests while a measurement ran. Its `cpu` line counts, in jiffies since boot, user, nice,
 * system, idle, iowait, irq, softirq, steal, guest and guest_nice (proc(5)); steal is the 8th.
 * Guest time is already counted in user and nice, so "all jiffies" is the sum of the first eight.
 */
import { readFileSync } from 'node:fs'

/** The machine-wide steal and total jiffies at one moment. */
export interface CpuSample { steal: number, total: number }

/** The sample in `/proc/stat` text (its `cpu ` line, the sum of every core); undefined when there is none. */
export function parseProcStat (text: string): CpuSample | undefined {
  const line = text.split('\n').find((l) => /^cpu\s/.test(l))
  if (line === undefined) return undefined
  const fields = line.trim().split(/\s+/).slice(1).map(Number)
  if (fields.length < 8 || fields.slice(0, 8).some((n) => !Number.isFinite(n))) return undefined
  const first8 = fields.slice(0, 8)
  return { steal: first8[7] as number, total: first8.reduce((a, b) => a + b, 0) }
}

/** The steal between two samples as a share (0 to 1) of all jiffies; NaN when a sample is missing or no time passed. */
export function stealShare (before: CpuSample | undefined, after: CpuSample | undefined): number {
  if (before === undefined || after === undefined) return NaN
  const total = after.total - before.total
  return total > 0 ? (after.steal - before.steal) / total : NaN
}

/** This machine's sample now; undefined off Linux. */
export function sampleCpu (): CpuSample | undefined {
  try {
    return parseProcStat(readFileSync('/proc/stat', 'utf8'))
  } catch {
    return undefined
  }
}

/** Adds up steal over several intervals (a row measured in interleaved repeats). */
export class StealTally {
  private steal = 0
  private total = 0
  private known = true

  /** Add the interval between two samples. */
  add (before: CpuSample | undefined, after: CpuSample | undefined): void {
    if (before === undefined || after === undefined) { this.known = false; return }
    this.steal += after.steal - before.steal
    this.total += after.total - before.total
  }

  /** The share over every interval added; NaN when one could not be sampled or none was added. */
  share (): number {
    return this.known && this.total > 0 ? this.steal / this.total : NaN
  }
}
