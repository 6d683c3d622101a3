/**
 * GC and CPU of the tunnel path, per process (a measurement beside the harness, for issue 13):
 * `starsock serve`, `listen` and `forward` as programs, each with `bench/gc-meter.js` preloaded,
 * a TCP source and sink here. After a warm-up it sends ROUNDS x 64 MiB through the forward and
 * prints, per round, each process's CPU seconds (utime + stime from /proc), its scavenges and
 * mark-compacts with their time, the wall-clock rate and the machine's steal.
 *
 *     node --conditions=starsock-source --import tsx bench/tunnel-gc.ts [--rounds N] [--streams N] [--mib N] [--node-flags="..."] [--serve-args="..."] [--env NAME=VALUE] [--label TEXT] [--insecure]
 *
 * `--node-flags` are put on node's command line of every program (before the bin, which leaves a
 * flag given there as it is: `--heap-growing-percent=0` runs without starsock's); `--serve-args`
 * go to `starsock serve`; `--env NAME=VALUE` to every program; `--dump DIR` keeps their stdout;
 * `--insecure` runs both peers without end-to-end encryption.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MiB = 1024 * 1024
const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    streams: { type: 'string', default: '1' },
    mib: { type: 'string', default: '64' },
    'node-flags': { type: 'string', default: '' },
    label: { type: 'string', default: '' },
    env: { type: 'string', multiple: true, default: [] },
    dump: { type: 'string', default: '' },
    'serve-args': { type: 'string', default: '' },
    insecure: { type: 'boolean', default: false }
  }
})
const ROUNDS = Number(opts.rounds)
const STREAMS = Number(opts.streams)
const BYTES = Number(opts.mib) * MiB
/** Bytes through the forward before the first round: a fresh forward runs its first 64 MiB at about half the speed, and the second still slower. */
const WARMUP_BYTES = 128 * MiB
/** `--insecure`: both peers without end-to-end encryption (for its cost; encrypted is what users get). */
const INSECURE = opts.insecure ? ['--insecure'] : []
const FLAGS = opts['node-flags'].split(/\s+/).filter((f) => f !== '')
const EXTRA_ENV = Object.fromEntries(opts.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
const dir = mkdtempSync(join(tmpdir(), 'tunnel-gc-'))
const children: ChildProcess[] = []
process.on('exit', () => { for (const c of children) if (c.exitCode === null) c.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }) })

interface Prog { child: ChildProcess, out: string[], pid: number }

function program (args: string[]): Prog {
  const env = { ...process.env, STARSOCK_BENCH_GC_DIR: dir, ...EXTRA_ENV }
  const child = spawn(process.execPath, [...FLAGS, '--import', join(ROOT, 'bench/gc-meter.js'), join(ROOT, 'bin/starsock.js'), ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(child)
  const out: string[] = []
  let rest = ''
  child.stdout?.on('data', (d: Buffer) => {
    const lines = (rest + d.toString()).split('\n')
    rest = lines.pop() ?? ''
    out.push(...lines)
  })
  return { child, out, pid: child.pid ?? -1 }
}

async function line (p: Prog, re: RegExp, ms = 20_000): Promise<string> {
  const deadline = Date.now() + ms
  for (;;) {
    const found = p.out.find((l) => re.test(l))
    if (found !== undefined) return found
    if (Date.now() > deadline) throw new Error(`no line ${String(re)} within ${ms} ms: ${p.out.join('\n')}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** The process that really runs the program: the bin itself, or the node it re-executed. */
function worker (pid: number): number {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x !== '').map(Number)
    return kids.length === 1 ? (kids[0] as number) : pid
  } catch { return pid }
}

function cpu (pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}

interface Gc { scavenges: number, markCompacts: number, markCompactMs: number, gcs: number, gcMs: number }
function gc (pid: number): Gc {
  try { return JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8')) as Gc } catch { return { scavenges: 0, markCompacts: 0, markCompactMs: 0, gcs: 0, gcMs: 0 } }
}

function steal (): { steal: number, total: number } {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').split(/\s+/).slice(1).map(Number)
  return { steal: f[7] ?? 0, total: f.reduce((a, b) => a + b, 0) }
}

async function sink (): Promise<{ port: number, received: () => number, server: net.Server }> {
  let received = 0
  const server = net.createServer((s) => { s.on('data', (d) => { received += d.byteLength }); s.on('end', () => s.end()); s.on('error', () => {}) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, received: () => received, server }
}

async function send (port: number, bytes: number, streams: number): Promise<void> {
  const block = Buffer.alloc(64 * 1024, 7)
  await Promise.all(Array.from({ length: streams }, async () => await new Promise<void>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    let left = Math.floor(bytes / streams)
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, block.byteLength)
        left -= n
        if (!s.write(n === block.byteLength ? block : block.subarray(0, n))) return void s.once('drain', pump)
      }
      s.end()
    }
    s.on('connect', pump)
    s.on('error', reject)
    s.on('close', () => resolve())
    s.resume()
  })))
}

async function main (): Promise<void> {
  const out = await sink()
  const serve = program(['serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn', '--max-joins-per-ip-per-minute', '100000', ...opts['serve-args'].split(/\s+/).filter((a) => a !== '')])
  const url = /^starsock (http:\/\/127\.0\.0\.1:\d+) /.exec(await line(serve, /^starsock http/))?.[1] ?? ''
  const listen = program(['listen', '--server', url, '--key', join(dir, 'listen-key'), '--allow', `connect/tcp:127.0.0.1:${out.port}`, '--json', '--no-prompt', ...INSECURE])
  const peerId = (JSON.parse(await line(listen, /"event":"ready"/)) as { peerId: string }).peerId
  const fwd = program(['forward', '--server', url, '--key', join(dir, 'fwd-key'), '--peer', peerId, '--listen', '0', '--to', `127.0.0.1:${out.port}`, '--json', ...INSECURE])
  const port = (JSON.parse(await line(fwd, /"event":"ready"/)) as { address: { port: number } }).address.port
  const procs = { serve: worker(serve.pid), forward: worker(fwd.pid), listen: worker(listen.pid) }
  const until = async (n: number): Promise<void> => { while (out.received() < n) await new Promise((resolve) => setTimeout(resolve, 2)) }
  let expected = 0
  await send(port, WARMUP_BYTES, STREAMS)
  expected += WARMUP_BYTES
  await until(expected)
  await new Promise((resolve) => setTimeout(resolve, 300))
  const perRound: Array<Record<string, number>> = []
  for (let r = 0; r < ROUNDS; r++) {
    const c0 = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpu(pid)]))
    const g0 = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, gc(pid)]))
    const s0 = steal()
    const t0 = performance.now()
    await send(port, BYTES, STREAMS)
    expected += Math.floor(BYTES / STREAMS) * STREAMS
    await until(expected)
    const secs = (performance.now() - t0) / 1000
    await new Promise((resolve) => setTimeout(resolve, 450)) // the meters' files catch up
    const s1 = steal()
    const row: Record<string, number> = { mibps: BYTES / MiB / secs, steal: (s1.steal - s0.steal) / Math.max(1, s1.total - s0.total) }
    const per = 64 * MiB / BYTES
    for (const [k, pid] of Object.entries(procs)) {
      const g1 = gc(pid)
      const a = g0[k] as Gc
      row[`${k}.cpu`] = (cpu(pid) - (c0[k] as number)) * per
      row[`${k}.mc`] = (g1.markCompacts - a.markCompacts) * per
      row[`${k}.sc`] = (g1.scavenges - a.scavenges) * per
      row[`${k}.gcms`] = (g1.gcMs - a.gcMs) * per
    }
    perRound.push(row)
  }
  const execArgv = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, (JSON.parse(readFileSync(join(dir, `${pid}.json`), 'utf8')) as { execArgv?: string[] }).execArgv?.join(' ') ?? '']))
  const med = (k: string): number => { const xs = perRound.map((r) => r[k] as number).sort((a, b) => a - b); return xs[Math.floor(xs.length / 2)] as number }
  const keys = Object.keys(perRound[0] ?? {})
  const summary = Object.fromEntries(keys.map((k) => [k, Number(med(k).toFixed(3))]))
  console.log(JSON.stringify({ label: opts.label, flags: FLAGS.join(' '), streams: STREAMS, mib: BYTES / MiB, execArgv, median: summary, rounds: perRound.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Number(v.toFixed(3))]))) }))
  if (opts.dump !== '') for (const [name, p] of Object.entries({ serve, listen, fwd })) writeFileSync(join(opts.dump, `${name}.out`), p.out.join('\n'))
  for (const p of [fwd, listen, serve]) p.child.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 500))
  out.server.close()
  process.exit(0)
}

main().catch((err) => { console.error(err); process.exit(1) })
