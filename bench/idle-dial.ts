/**
 * `node --conditions=starsock-source --import tsx bench/idle-dial.ts [--peers=1000] [--rounds=3] [--dials=1000] [--warmup=0] [--heap] [--ref=DIR]`:
 * what an idle joined peer costs our server, and dial latency next to a plain request round trip,
 * at one crowd size, without the original server (the full `npm run bench -- --only=dial` runs it
 * too and takes minutes). With `--ref=DIR` the server of another checkout (say, main) is measured
 * in the same run, alternating with this one, for before/after figures. With `--heap` it writes a
 * heap snapshot of each server idle and with the crowd joined, and prints the difference per peer
 * by constructor and owner (`--keep` keeps the snapshots and prints where). `--profile` writes
 * a CPU profile of the server during each round's dials (`/tmp/idle-dial-NAME-ROUND.cpuprofile`);
 * `--server-args="..."` adds arguments to `starsock serve`. Memory figures come from
 * `mem-hook.js`, loaded into the server: `process.memoryUsage()` before and after a full GC.
 */
import { readFileSync, readdirSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cpuSeconds, freePort, rssMiB, start, work, type Proc } from './procs.ts'

const args = process.argv.slice(2)
const arg = (name: string, fallback: string): string => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const PEERS = Number(arg('peers', '1000'))
const ROUNDS = Number(arg('rounds', '3'))
const DIALS = Number(arg('dials', '1000'))
/**
 * Unmeasured requests and dials before the measured ones, in the same processes (`npm run bench`'s
 * dial rows warm up with as many as they measure). With a warm-up, the server CPU per dial printed
 * here is that of the measured dials only; without, of the whole dialer run (its connect and join too),
 * as in the figures of 2026-12-03. The profile and the busy shares span the warm-up too.
 */
const WARMUP = Number(arg('warmup', '0'))
const HEAP = args.includes('--heap')
const PROFILE = args.includes('--profile')
const SERVER_ARGS = arg('server-args', '').split(' ').filter((a) => a !== '')
const REF = arg('ref', '')
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

interface Server { name: string, url: string, port: number, proc: Proc, dir: string }

/** `bin/starsock.js serve` of the checkout in `root`, with the bench's load limits. */
async function startServer (name: string, root: string, dir: string): Promise<Server> {
  const port = await freePort()
  const proc = start([join(root, 'bin/starsock.js'), 'serve', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn',
    '--max-joins-per-ip-per-minute', '100000000', '--max-peers', '100000', '--max-peers-per-ip', '100000', '--max-connections-per-ip', '100000', '--max-dials-per-second', '100000', '--max-streams-per-socket', '100000', ...SERVER_ARGS],
  { NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir} --expose-gc --import=${new URL('./mem-hook.js', import.meta.url).pathname}`, STARSOCK_MEM_FILE: join(dir, `mem-${name}.json`) })
  await proc.next(/^starsock http/, 20_000)
  return { name, url: `http://127.0.0.1:${port}`, port, proc, dir }
}

/** Self size by constructor name, from a heap snapshot written on SIGUSR2 (which runs a full GC first). */
async function heapByClass (server: Server): Promise<{ total: number, byClass: Map<string, { size: number, count: number }> }> {
  const before = new Set(readdirSync(server.dir))
  process.kill(server.proc.pid, 'SIGUSR2')
  let file: string | undefined
  for (let i = 0; i < 600 && file === undefined; i++) {
    await sleep(200)
    const fresh = readdirSync(server.dir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'))
    if (fresh !== undefined) {
      // Written when its size stops changing.
      const path = join(server.dir, fresh)
      let last = -1
      for (;;) {
        await sleep(300)
        const size = readFileSync(path).byteLength
        if (size === last && size > 0) break
        last = size
      }
      file = path
    }
  }
  if (file === undefined) throw new Error('no heap snapshot')
  const snap = JSON.parse(readFileSync(file, 'utf8')) as { snapshot: { meta: { node_fields: string[], node_types: [string[]], edge_fields: string[], edge_types: [string[]] } }, nodes: number[], edges: number[], strings: string[] }
  if (args.includes('--keep')) process.stdout.write(`kept ${file}\n`)
  else rmSync(file)
  const fields = snap.snapshot.meta.node_fields
  const width = fields.length
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const sizeAt = fields.indexOf('self_size')
  const types = snap.snapshot.meta.node_types[0]
  const byClass = new Map<string, { size: number, count: number }>()
  let total = 0
  // One owner per node (the first that names it by a property or an element), to say whose arrays,
  // closures and strings these are.
  const edgeWidth = snap.snapshot.meta.edge_fields.length
  const edgeTypes = snap.snapshot.meta.edge_types[0]
  const ownerOf = new Map<number, string>()
  const edgeCountAt = fields.indexOf('edge_count')
  const nodeName = (i: number): string => snap.strings[snap.nodes[i + nameAt] as number] ?? '?'
  for (let i = 0, e = 0; i < snap.nodes.length; i += width) {
    const edges = snap.nodes[i + edgeCountAt] as number
    const owner = nodeName(i)
    for (let k = 0; k < edges; k++, e += edgeWidth) {
      const etype = edgeTypes[snap.edges[e] as number]
      if (etype === 'weak' || etype === 'shortcut') continue
      const to = snap.edges[e + 2] as number
      if (ownerOf.has(to)) continue
      const ename = etype === 'element' || etype === 'hidden' ? `[${etype}]` : String(snap.strings[snap.edges[e + 1] as number] ?? snap.edges[e + 1])
      ownerOf.set(to, `${owner.slice(0, 30)}.${ename.slice(0, 30)}`)
    }
  }
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt] as number] ?? '?'
    const size = snap.nodes[i + sizeAt] as number
    const key = type === 'object' || type === 'closure' || type === 'native' ? `${type}:${nodeName(i)} <- ${ownerOf.get(i) ?? '?'}` : `${type} <- ${ownerOf.get(i) ?? '?'}`
    const e = byClass.get(key) ?? { size: 0, count: 0 }
    e.size += size
    e.count++
    byClass.set(key, e)
    total += size
  }
  return { total, byClass }
}

function printHeapDiff (name: string, idle: Awaited<ReturnType<typeof heapByClass>>, joined: Awaited<ReturnType<typeof heapByClass>>, peers: number): void {
  const rows: Array<[string, number, number]> = []
  for (const [key, e] of joined.byClass) {
    const b = idle.byClass.get(key) ?? { size: 0, count: 0 }
    rows.push([key, (e.size - b.size) / peers, (e.count - b.count) / peers])
  }
  rows.sort((a, b) => b[1] - a[1])
  process.stdout.write(`heap ${name}: ${((joined.total - idle.total) / peers / 1024).toFixed(1)} KiB per peer (live JS heap, after a full GC)\n`)
  for (const [key, bytes, count] of rows.slice(0, 70)) {
    process.stdout.write(`  ${key.slice(0, 90).padEnd(90)} ${bytes.toFixed(0).padStart(7)} B/peer ${count.toFixed(2).padStart(7)} objs/peer\n`)
  }
}

type Mem = Record<'rss' | 'heapTotal' | 'heapUsed' | 'external' | 'arrayBuffers', number>
/** The server's `process.memoryUsage()` before and after a full GC (`mem-hook.js`). */
async function memoryOf (server: Server): Promise<{ before: Mem, after: Mem, spaces: Record<string, number> }> {
  const file = join(server.dir, `mem-${server.name}.json`)
  rmSync(file, { force: true })
  process.kill(server.proc.pid, 'SIGWINCH')
  for (let i = 0; i < 100; i++) {
    await sleep(100)
    try { return JSON.parse(readFileSync(file, 'utf8')) as { before: Mem, after: Mem, spaces: Record<string, number> } } catch {}
  }
  throw new Error('no memory figures')
}

function memDiff (idle: { before: Mem, after: Mem }, joined: { before: Mem, after: Mem }, peers: number): string {
  const per = (m: 'before' | 'after', k: keyof Mem): string => ((joined[m][k] - idle[m][k]) / peers / 1024).toFixed(1)
  return (['before', 'after'] as const).map((m) => `${m === 'before' ? 'as is' : 'after gc'}: rss ${per(m, 'rss')} heapTotal ${per(m, 'heapTotal')} heapUsed ${per(m, 'heapUsed')} external ${per(m, 'external')} KiB/peer`).join('; ')
}

function steal (): number {
  return Number(readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/)[8] ?? NaN)
}

const dir = args.includes('--keep') ? mkdtempSync('/tmp/snap-') : mkdtempSync(join(tmpdir(), 'starsock-idle-dial-'))
const roots: Array<[string, string]> = [['this', new URL('..', import.meta.url).pathname]]
if (REF !== '') roots.unshift(['ref', REF])
const results: Record<string, { memory: number[], rtt: number[], dial: number[], dial50: number[], rtt50: number[], cpuPerDial: number[] }> = {}
try {
  for (const [name, root] of roots) {
    const server = await startServer(name, root, dir)
    const r: (typeof results)[string] = { memory: [], rtt: [], dial: [], dial50: [], rtt50: [], cpuPerDial: [] }
    results[name] = r
    try {
      await sleep(1000)
      const idle = rssMiB(server.proc.pid)
      const memIdle = await memoryOf(server)
      const heapIdle = HEAP ? await heapByClass(server) : undefined
      const crowd = start(['bench/worker.ts', 'crowd', JSON.stringify({ url: server.url, port: server.port, count: PEERS })])
      const ready = JSON.parse((await crowd.next(/^READY /, 600_000)).slice(6)) as { addrs: string[], joined: number }
      try {
        await sleep(2000)
        const joined = rssMiB(server.proc.pid)
        r.memory.push((joined - idle) * 1024 / ready.joined)
        const memJoined = await memoryOf(server)
        process.stdout.write(`${name}: memoryUsage delta ${memDiff(memIdle, memJoined, ready.joined)}\n  heap spaces KiB idle ${JSON.stringify(memIdle.spaces)}\n  joined ${JSON.stringify(memJoined.spaces)}\n`)
        process.stdout.write(`${name}: RSS idle ${idle.toFixed(1)} MiB, ${ready.joined} peers ${joined.toFixed(1)} MiB: ${((joined - idle) * 1024 / ready.joined).toFixed(1)} KiB per peer\n`)
        if (HEAP && heapIdle !== undefined) printHeapDiff(name, heapIdle, await heapByClass(server), ready.joined)
        const file = join(dir, 'targets.json')
        writeFileSync(file, JSON.stringify(ready.addrs))
        for (let round = 0; round < ROUNDS; round++) {
          const s0 = steal()
          const t0 = Date.now()
          const rtt = await work<{ p50: number, p99: number }>('rtt', { url: server.url, count: DIALS, warmup: WARMUP })
          const c0 = cpuSeconds(server.proc.pid)
          const k0 = cpuSeconds(crowd.pid)
          const d0 = Date.now()
          if (PROFILE) process.kill(server.proc.pid, 'SIGURG')
          const dial = await work<{ p50: number, p95: number, p99: number, failures: number, serverCpu?: number }>('dials', { url: server.url, port: server.port, targetsFile: file, count: DIALS, warmup: WARMUP, serverPid: server.proc.pid })
          // With a warm-up, the server's CPU over the measured dials only (the dialer reads it around them).
          const cpu = WARMUP > 0 ? dial.serverCpu ?? NaN : cpuSeconds(server.proc.pid) - c0
          const crowdBusy = (cpuSeconds(crowd.pid) - k0) / ((Date.now() - d0) / 1000)
          const serverBusy = cpu / ((Date.now() - d0) / 1000)
          if (PROFILE) {
            process.kill(server.proc.pid, 'SIGURG')
            await sleep(2000)
            const out = `/tmp/idle-dial-${name}-${round}.cpuprofile`
            writeFileSync(out, readFileSync(join(server.dir, `mem-${name}.json.cpuprofile`)))
            process.stdout.write(`profile ${out}\n`)
          }
          const stealPct = (steal() - s0) / ((Date.now() - t0) / 10) / 2 * 100
          r.rtt.push(rtt.p99); r.rtt50.push(rtt.p50); r.dial.push(dial.p99); r.dial50.push(dial.p50); r.cpuPerDial.push(cpu * 1000 / DIALS)
          process.stdout.write(`${name} round ${round}: rtt p50 ${rtt.p50.toFixed(2)} p99 ${rtt.p99.toFixed(2)} ms; dial p50 ${dial.p50.toFixed(2)} p95 ${dial.p95.toFixed(2)} p99 ${dial.p99.toFixed(2)} ms (${(dial.p99 / rtt.p99).toFixed(2)}x rtt p99)${dial.failures > 0 ? `, ${dial.failures} failed` : ''}; server cpu ${(cpu * 1000 / DIALS).toFixed(3)} ms/dial; busy: server ${(serverBusy * 100).toFixed(0)}% crowd ${(crowdBusy * 100).toFixed(0)}%; steal ${stealPct.toFixed(0)}%\n`)
        }
      } finally {
        crowd.send('stop')
        await crowd.stop()
      }
    } finally {
      await server.proc.stop()
    }
  }
} finally {
  if (!args.includes('--keep')) rmSync(dir, { recursive: true, force: true })
}
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN
for (const [name, r] of Object.entries(results)) {
  const ratios = r.dial.map((d, i) => d / (r.rtt[i] ?? NaN))
  process.stdout.write(`${name}: ${PEERS} peers: ${median(r.memory).toFixed(1)} KiB RSS per peer; dial p99 median ${median(r.dial).toFixed(2)} ms [${Math.min(...r.dial).toFixed(2)}-${Math.max(...r.dial).toFixed(2)}], rtt p99 median ${median(r.rtt).toFixed(2)} ms [${Math.min(...r.rtt).toFixed(2)}-${Math.max(...r.rtt).toFixed(2)}], dial/rtt p99 median ${median(ratios).toFixed(2)}x [${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}]; p50 dial ${median(r.dial50).toFixed(2)} rtt ${median(r.rtt50).toFixed(2)} ms; server cpu ${median(r.cpuPerDial).toFixed(3)} ms/dial\n`)
}
process.exit(0)
