/**
 * Garbage collections of the benchmark's node processes, counted inside each by the preload
 * `bench/gc-meter.js` (see there) and read here from the files it keeps, by pid.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { childPids } from './proc-stat.ts'

/** GC totals of a process (or their difference over a measurement). */
export interface GcTotals { markCompacts: number, markCompactMs: number, scavenges: number, gcs: number, gcMs: number }

const PRELOAD = fileURLToPath(new URL('./gc-meter.js', import.meta.url))
/** How long a reader waits for the preloads to write what happened up to now (they write every 100 ms). */
export const GC_SETTLE_MS = 250

let dir: string | undefined

/**
 * Environment that makes a node process count its GCs (NODE_OPTIONS keeps whatever it held);
 * none with `STARSOCK_BENCH_GC_METER=off`, to see that the meter changes no other figure.
 */
export function gcMeterEnv (): Record<string, string> {
  if (process.env.STARSOCK_BENCH_GC_METER === 'off') return {}
  if (dir === undefined) {
    const made = mkdtempSync(join(tmpdir(), 'starsock-bench-gc-'))
    dir = made
    process.on('exit', () => { rmSync(made, { recursive: true, force: true }) })
  }
  // Quoted: NODE_OPTIONS splits on spaces but keeps a quoted path whole.
  return { STARSOCK_BENCH_GC_DIR: dir, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import "${PRELOAD}"`.trim() }
}

function read (pid: number): GcTotals | undefined {
  if (dir === undefined) return undefined
  try {
    return JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8')) as GcTotals
  } catch {
    return undefined // not a node process with the preload, or gone
  }
}

/** GC totals of a process and its live descendants (a bin that starts node again); undefined when none reports. */
export function gcTotals (pid: number): GcTotals | undefined {
  const own = read(pid)
  const below = childPids(pid).map(gcTotals).filter((t): t is GcTotals => t !== undefined)
  const all = own === undefined ? below : [own, ...below]
  if (all.length === 0) return undefined
  return all.reduce((a, b) => ({ markCompacts: a.markCompacts + b.markCompacts, markCompactMs: a.markCompactMs + b.markCompactMs, scavenges: a.scavenges + b.scavenges, gcs: a.gcs + b.gcs, gcMs: a.gcMs + b.gcMs }))
}

/** `after - before`, or undefined when either is missing. */
export function gcDiff (before: GcTotals | undefined, after: GcTotals | undefined): GcTotals | undefined {
  if (before === undefined || after === undefined) return undefined
  return { markCompacts: after.markCompacts - before.markCompacts, markCompactMs: after.markCompactMs - before.markCompactMs, scavenges: after.scavenges - before.scavenges, gcs: after.gcs - before.gcs, gcMs: after.gcMs - before.gcMs }
}
