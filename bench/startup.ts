/**
 * The `startup` scenario (`npm run bench -- --only=startup`): how fast `starsock --help` answers
 * and how much memory an idle `starsock serve` holds, for the compiled build (`node
 * bin/starsock.js`, what an installed package runs) next to the same sources through tsx
 * (`bench/tsx-cli.ts`), in the same run. Goals (issue 16): `--help` under 0.3 s and an idle server
 * under 60 MB.
 *
 * `--help`: warm-up runs of each first (the file cache), then measured runs taking turns, from
 * spawn to exit; the figure is the median. The server: started with its defaults on 127.0.0.1 (a
 * free port, `--log-level warn`), the time until it prints its URL, then left idle `settle`
 * seconds, then its RSS read `samples` times 0.5 s apart (the median is the figure). Every process
 * gets the environment without `NODE_OPTIONS`, so no hook of the harness (the GC meter) weighs on
 * what is measured. Each note has the 1-minute load average at its end.
 */
import { spawn } from 'node:child_process'
import { loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { freePort, rssMiB, startCommand } from './procs.ts'
import { formatFigure as fmt, median, type Row } from './rows.ts'
import { sampleCpu, stealShare } from './steal.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** How long one `--help` may take before the run counts it as failed. */
const HELP_LIMIT_MS = 30_000
/** How long a server may take to print its URL. */
const READY_LIMIT_MS = 60_000
const SAMPLE_GAP_MS = 500

/** A way to run the `starsock` program. */
interface Build { name: string, label: string, args: string[] }

const BUILDS: readonly Build[] = [
  { name: 'compiled', label: 'compiled (node bin/starsock.js)', args: ['bin/starsock.js'] },
  { name: 'tsx', label: 'the same sources through tsx', args: ['--conditions=starsock-source', '--import', 'tsx', 'bench/tsx-cli.ts'] }
]

/** What the scenario needs from the harness. */
export interface StartupBenchContext {
  /** Measured `--help` runs of each build. */
  runs: number
  /** Idle servers started of each build (taking turns). */
  servers: number
  /** Seconds a server is left idle before its RSS is read. */
  settleS: number
  /** RSS readings of each server. */
  samples: number
  record: (row: Row) => void
}

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** The environment of a measured process: ours without `NODE_OPTIONS`. */
function cleanEnv (): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'NODE_OPTIONS') env[k] = v
  return env
}

/** Milliseconds from spawning `node ...args` to its exit; rejects when it fails or hangs. */
async function timed (args: string[]): Promise<number> {
  const t0 = process.hrtime.bigint()
  const child = spawn(process.execPath, args, { cwd: ROOT, env: cleanEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (d: string) => { if (stderr.length < 2000) stderr += d })
  return await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`node ${args.join(' ')} did not exit within ${HELP_LIMIT_MS} ms`)) }, HELP_LIMIT_MS)
    child.once('error', (err) => { clearTimeout(timer); reject(err) })
    child.once('exit', (code) => {
      clearTimeout(timer)
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      if (code === 0) resolve(ms)
      else reject(new Error(`node ${args.join(' ')} exited with ${String(code)}: ${stderr.trim().split('\n')[0] ?? ''}`))
    })
  })
}

/** An idle server of `build`: its time to print its URL and its RSS readings after the settle. */
async function idleServer (build: Build, settleS: number, samples: number): Promise<{ readyMs: number, rss: number[] }> {
  const port = await freePort()
  const t0 = process.hrtime.bigint()
  const proc = startCommand(process.execPath, [...build.args, 'serve', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn'], { env: { NODE_OPTIONS: '' } })
  try {
    await proc.next(/^starsock http/, READY_LIMIT_MS)
    const readyMs = Number(process.hrtime.bigint() - t0) / 1e6
    await sleep(settleS * 1000)
    const rss: number[] = []
    for (let i = 0; i < samples; i++) {
      if (i > 0) await sleep(SAMPLE_GAP_MS)
      rss.push(rssMiB(proc.pid))
    }
    return { readyMs, rss }
  } finally {
    await proc.stop()
  }
}

const range = (xs: number[]): Row['range'] => ({ min: Math.min(...xs), max: Math.max(...xs), runs: xs.length })
const load = (): string => `load ${loadavg()[0]?.toFixed(2) ?? '?'}`

/** Record a row per build, the compiled one with tsx's figure as its reference; `steal` over the measurement of both. */
function recordPair (ctx: StartupBenchContext, group: string, what: string, unit: string, figures: Record<string, number[]>, steal: number, note: (xs: number[]) => string): void {
  const tsx = median(figures.tsx ?? [])
  for (const build of BUILDS) {
    const xs = figures[build.name] ?? []
    ctx.record({ group, what: `${what}, ${build.label}`, value: median(xs), unit, range: range(xs), reference: build.name === 'compiled' ? { what: 'tsx', value: tsx } : undefined, steal, note: `${note(xs)}${note(xs) === '' ? '' : ', '}${load()}` })
  }
}

/** Run the scenario: the `--help` rows, then the idle server rows. */
export async function startupBench (ctx: StartupBenchContext): Promise<void> {
  // Warm-up: the first start of each reads its files from disk (and tsx fills its cache).
  for (const build of BUILDS) for (let i = 0; i < 2; i++) await timed([...build.args, '--help'])
  const help: Record<string, number[]> = { compiled: [], tsx: [] }
  const helpStart = sampleCpu()
  for (let i = 0; i < ctx.runs; i++) {
    // Taking turns, the order swapped each run, so a busier moment weighs on both alike.
    const order = i % 2 === 0 ? BUILDS : [...BUILDS].reverse()
    for (const build of order) help[build.name]?.push(await timed([...build.args, '--help']))
  }
  recordPair(ctx, 'startup', 'starsock --help', 'ms', help, stealShare(helpStart, sampleCpu()), () => '')

  const ready: Record<string, number[]> = { compiled: [], tsx: [] }
  const rss: Record<string, number[]> = { compiled: [], tsx: [] }
  const serveStart = sampleCpu()
  for (let i = 0; i < ctx.servers; i++) {
    const order = i % 2 === 0 ? BUILDS : [...BUILDS].reverse()
    for (const build of order) {
      const r = await idleServer(build, ctx.settleS, ctx.samples)
      ready[build.name]?.push(r.readyMs)
      rss[build.name]?.push(...r.rss)
    }
  }
  const serveSteal = stealShare(serveStart, sampleCpu())
  recordPair(ctx, 'startup', 'starsock serve until it prints its URL', 'ms', ready, serveSteal, () => '')
  recordPair(ctx, 'memory', `idle server RSS after ${ctx.settleS} s`, 'MiB', rss, serveSteal, (xs) => `${xs.length} readings of ${ctx.servers} server${ctx.servers === 1 ? '' : 's'} (${xs.map((x) => fmt(x)).join(', ')})`)
}
