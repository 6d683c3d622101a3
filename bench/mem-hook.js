// Loaded into a server under test with `--import` (bench/idle-dial.ts): on SIGWINCH it writes
// `process.memoryUsage()` to `$STARSOCK_MEM_FILE`, before and after a full GC (with --expose-gc).
import { writeFileSync } from 'node:fs'
import { getHeapSpaceStatistics } from 'node:v8'

process.on('SIGWINCH', () => {
  const before = process.memoryUsage()
  const spaces = Object.fromEntries(getHeapSpaceStatistics().map((s) => [s.space_name, Math.round(s.space_size / 1024)]))
  globalThis.gc?.()
  const after = process.memoryUsage()
  writeFileSync(process.env.STARSOCK_MEM_FILE, JSON.stringify({ before, after, spaces }))
})

// On SIGURG: start a CPU profile; on the next, write it to `$STARSOCK_MEM_FILE.cpuprofile`.
let profiler
process.on('SIGURG', async () => {
  const { Session } = await import('node:inspector')
  if (profiler === undefined) {
    profiler = new Session()
    profiler.connect()
    profiler.post('Profiler.enable', () => profiler.post('Profiler.start'))
    return
  }
  const p = profiler
  profiler = undefined
  p.post('Profiler.stop', (err, { profile }) => {
    if (err === null) writeFileSync(`${process.env.STARSOCK_MEM_FILE}.cpuprofile`, JSON.stringify(profile))
    p.disconnect()
  })
})
