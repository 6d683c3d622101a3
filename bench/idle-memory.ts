/**
 * `node --conditions=starsock-source --import tsx bench/idle-memory.ts [--factors=300,200,150,off] [--rounds=2] [--steps=1000,2000] [--settle=10] [--samples=10]`:
 * what one more idle joined peer costs our server's RSS, at each heap growing factor (starsock's
 * node flag `--heap-growing-percent`, given on node's command line, which the bin leaves as it
 * is; `off` is V8's own factor). The factors take turns (the order reversed every round), each
 * with a fresh server: crowds of legacy peers join up to each step (`bench/worker.ts crowd`), the
 * server is left idle `--settle` seconds, then its RSS is read once a second `--samples` times
 * (the median is the figure; the first sample, right after the settle, is also shown), then
 * `process.memoryUsage()` before and after a full GC (`bench/mem-hook.js`): the live heap. The
 * slope between the first and last step is the cost per peer. The capacity scenario reads RSS
 * right after 200 dials instead, where how much garbage the heap holds at that moment decides
 * much of the figure.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, rssMiB, start, startCommand, type Proc } from './procs.ts'
import { sampleCpu, stealShare } from './steal.ts'

const args = process.argv.slice(2)
const arg = (name: string, fallback: string): string => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const FACTORS = arg('factors', '300,200,150,off').split(',')
const ROUNDS = Number(arg('rounds', '2'))
const STEPS = arg('steps', '1000,2000').split(',').map(Number)
const SETTLE_S = Number(arg('settle', '10'))
const SAMPLES = Number(arg('samples', '10'))
const BIN = fileURLToPath(new URL('../bin/starsock.js', import.meta.url))
const HOOK = fileURLToPath(new URL('./mem-hook.js', import.meta.url))
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN

type Mem = Record<'rss' | 'heapTotal' | 'heapUsed' | 'external' | 'arrayBuffers', number>
interface Point { peers: number, rssNow: number, rss: number, rssMin: number, rssMax: number, before: Mem, after: Mem, spaces: Record<string, number> }

async function memoryOf (proc: Proc, file: string): Promise<{ before: Mem, after: Mem, spaces: Record<string, number> }> {
  rmSync(file, { force: true })
  process.kill(proc.pid, 'SIGWINCH')
  for (let i = 0; i < 100; i++) {
    await sleep(100)
    try { return JSON.parse(readFileSync(file, 'utf8')) as { before: Mem, after: Mem, spaces: Record<string, number> } } catch {}
  }
  throw new Error('no memory figures')
}

async function measure (factor: string, dir: string): Promise<Point[]> {
  const port = await freePort()
  const memFile = join(dir, `mem-${factor}.json`)
  const flag = `--heap-growing-percent=${factor === 'off' ? 0 : factor}`
  const server = startCommand(process.execPath, [flag, BIN, 'serve', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn',
    '--max-joins-per-ip-per-minute', '100000000', '--max-peers', '100000', '--max-peers-per-ip', '100000', '--max-connections-per-ip', '100000', '--max-dials-per-second', '100000', '--max-streams-per-socket', '100000'],
  { env: { NODE_OPTIONS: `--expose-gc --import=${HOOK}`, STARSOCK_MEM_FILE: memFile } })
  const crowds: Proc[] = []
  const points: Point[] = []
  try {
    await server.next(/^starsock http/, 20_000)
    let joined = 0
    for (const step of STEPS) {
      const crowd = start(['bench/worker.ts', 'crowd', JSON.stringify({ url: `http://127.0.0.1:${port}`, port, count: step - joined })])
      crowds.push(crowd)
      const ready = JSON.parse((await crowd.next(/^READY /, 600_000)).slice(6)) as { joined: number }
      joined += ready.joined
      const rssNow = rssMiB(server.pid)
      await sleep(SETTLE_S * 1000)
      const rss: number[] = []
      for (let i = 0; i < SAMPLES; i++) { rss.push(rssMiB(server.pid)); await sleep(1000) }
      const mem = await memoryOf(server, memFile)
      points.push({ peers: joined, rssNow, rss: median(rss), rssMin: Math.min(...rss), rssMax: Math.max(...rss), ...mem })
    }
  } finally {
    for (const c of crowds) { c.send('stop'); await c.stop() }
    await server.stop()
  }
  return points
}

const dir = mkdtempSync(join(tmpdir(), 'starsock-idle-memory-'))
const slopes: Record<string, Array<Record<string, number>>> = {}
const KiB = (mib: number): number => mib * 1024
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const factor of round % 2 === 0 ? FACTORS : [...FACTORS].reverse()) {
      const s0 = sampleCpu()
      const p = await measure(factor, dir)
      const steal = stealShare(s0, sampleCpu())
      const a = p[0] as Point
      const b = p[p.length - 1] as Point
      const n = b.peers - a.peers
      const per = (x: number, y: number): number => (y - x) / n
      const s = {
        rss: KiB(per(a.rss, b.rss)),
        rssNow: KiB(per(a.rssNow, b.rssNow)),
        rssBeforeGc: per(a.before.rss, b.before.rss) / 1024,
        rssAfterGc: per(a.after.rss, b.after.rss) / 1024,
        heapTotal: per(a.before.heapTotal, b.before.heapTotal) / 1024,
        live: per(a.after.heapUsed, b.after.heapUsed) / 1024,
        external: per(a.after.external, b.after.external) / 1024
      }
      ;(slopes[factor] ??= []).push(s)
      const at = (q: Point): string => `${q.peers} peers: RSS ${q.rss.toFixed(1)} MiB (${q.rssMin.toFixed(1)}-${q.rssMax.toFixed(1)}; ${q.rssNow.toFixed(1)} at once), heap ${(q.before.heapTotal / 2 ** 20).toFixed(1)} MiB, live ${(q.after.heapUsed / 2 ** 20).toFixed(1)} MiB`
      const spaces = Object.keys(b.spaces).map((k) => `${k} ${(a.spaces[k] ?? 0) / 1024 | 0}->${(b.spaces[k] ?? 0) / 1024 | 0}`).join(', ')
      process.stdout.write(`  heap spaces (MiB, before the GC): ${spaces}\n`)
      process.stdout.write(`round ${round} factor ${factor}: ${p.map(at).join('; ')}\n  per peer (KiB): RSS idle ${s.rss.toFixed(1)}, at once ${s.rssNow.toFixed(1)}, after a full GC ${s.rssAfterGc.toFixed(1)}; heap ${s.heapTotal.toFixed(1)}, live ${s.live.toFixed(1)}, external ${s.external.toFixed(1)}; steal ${(steal * 100).toFixed(1)}%, load ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}\n`)
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
for (const [factor, list] of Object.entries(slopes)) {
  const f = (k: string): string => list.map((s) => (s[k] as number).toFixed(1)).join(', ')
  process.stdout.write(`factor ${factor}: RSS per idle peer ${f('rss')} KiB (at once ${f('rssNow')}; after a full GC ${f('rssAfterGc')}); live heap ${f('live')} KiB\n`)
}
process.exit(0)
