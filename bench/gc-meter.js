// GC meter for measurements (not loaded in normal runs): `node --import ./bench/gc-meter.js ...`
// counts this process's garbage collections by kind with their time, and writes the running
// totals as JSON to `$GC_METER_DIR/<pid>.json` every 200 ms and at exit, for a harness to read.
import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { constants, PerformanceObserver } from 'node:perf_hooks'

const dir = process.env.GC_METER_DIR
const KINDS = {
  [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [constants.NODE_PERFORMANCE_GC_MAJOR]: 'markCompact',
  [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental',
  [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak'
}
const totals = { scavenge: 0, markCompact: 0, incremental: 0, weak: 0, scavengeMs: 0, markCompactMs: 0, incrementalMs: 0, weakMs: 0 }
if (dir !== undefined) {
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const kind = KINDS[entry.detail?.kind ?? 0] ?? 'weak'
      totals[kind]++
      totals[`${kind}Ms`] += entry.duration
    }
  }).observe({ entryTypes: ['gc'] })
  // Written aside and renamed, so a reader never sees half a file.
  const file = join(dir, `${process.pid}.json`)
  const save = () => { try { writeFileSync(`${file}.tmp`, JSON.stringify({ ...totals, execArgv: process.execArgv })); renameSync(`${file}.tmp`, file) } catch {} }
  setInterval(save, 200).unref()
  process.on('exit', save)
}
