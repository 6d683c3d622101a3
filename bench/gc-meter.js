// Bench only: preloaded into the benchmark's node processes (`NODE_OPTIONS=--import <this file>`,
// set by bench/procs.ts, so it works for processes started through bin/starsock.js however the
// bin starts node) to count their garbage collections. With STARSOCK_BENCH_GC_DIR set, it observes
// `gc` performance entries and keeps the totals since start-up in `<dir>/<pid>.json`, rewritten at
// most every 100 ms while they change; bench/gc.ts reads them before and after a measurement.
import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PerformanceObserver, constants } from 'node:perf_hooks'

const dir = process.env.STARSOCK_BENCH_GC_DIR
const FLUSH_MS = 100

if (dir !== undefined && dir !== '') {
  /** Totals since start-up: mark-compacts (full GCs) and their pause, scavenges, and the pause of every kind. */
  const totals = { markCompacts: 0, markCompactMs: 0, scavenges: 0, gcs: 0, gcMs: 0 }
  const file = join(dir, `${process.pid}.json`)
  let written = -1
  const flush = () => {
    if (totals.gcs === written) return
    written = totals.gcs
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify(totals))
      renameSync(`${file}.tmp`, file) // a reader never sees half a file
    } catch {} // the directory is gone: the bench is over
  }
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = entry.detail?.kind
      totals.gcs++
      totals.gcMs += entry.duration
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        totals.markCompacts++
        totals.markCompactMs += entry.duration
      } else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) {
        totals.scavenges++
      }
    }
  }).observe({ entryTypes: ['gc'] })
  setInterval(flush, FLUSH_MS).unref()
  flush()
}
