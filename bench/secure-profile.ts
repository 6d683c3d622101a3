/**
 * What end-to-end encryption costs each process, and where its time goes:
 * `node --conditions=starsock-source --import tsx bench/secure-profile.ts [--mib=64] [--rounds=3] [--only=stream,forward] [--interval-us=250] [--top=15] [--out=FILE]`.
 *
 * Starts `starsock serve` and, per variant (encrypted, the default; plaintext, `secure: false` /
 * `--insecure` on both peers), the peers of one stream (`bench/stream-tasks.ts`, sender and
 * receiver each in its own process) and of one `forward` (`tunnelClient`, `tunnelTarget`), every
 * one with the inspector on a port of its own. After a warm-up of each, `rounds` rounds of one
 * transfer of `mib` MiB per variant (every other round in the reverse order) give each process's
 * CPU milliseconds per MiB (utime + stime from `/proc`); then one more transfer of each variant
 * runs with the V8 CPU profiler started in every process over the inspector (just around that
 * transfer: no start-up, no warm-up in it), and the summary lists the top self-time functions of
 * each process, encrypted, beside the same process's time by area (Noise, `node:crypto`, GC,
 * relaying, ...) encrypted and plaintext. The `.cpuprofile` files stay in a directory it prints
 * (open them in Chrome's DevTools). The markdown goes to stdout, and to `--out`.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { cpuSeconds, freePort, servingWorker, start, startOurs, type Proc } from './procs.ts'
import { formatFigure as fmt, median } from './rows.ts'
import { sampleCpu, stealShare } from './steal.ts'

const args = process.argv.slice(2)
const arg = (name: string, fallback: string): string => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback
const MiB = 1024 * 1024
const BYTES = Number(arg('mib', '64')) * MiB
const ROUNDS = Number(arg('rounds', '3'))
const ONLY = arg('only', 'stream,forward').split(',')
const INTERVAL_US = Number(arg('interval-us', '250'))
const TOP = Number(arg('top', '15'))
const OUT = arg('out', '')
/** How long one transfer may take. */
const RUN_LIMIT_MS = 300_000

type Variant = 'encrypted' | 'plaintext'
const VARIANTS: Variant[] = ['encrypted', 'plaintext']

/** A process whose CPU time and profile count: its role in the path, and its inspector's port. */
interface Profiled { role: string, proc: Proc, inspectPort: number }

/** A way through, per variant: its processes, and one transfer of `bytes`. */
interface Setup { name: string, hops: Record<Variant, Profiled[]>, transfer: (variant: Variant, bytes: number) => Promise<void> }

const stops: Array<() => Promise<void>> = []

/** The inspector flag for a process started here, through NODE_OPTIONS (the `starsock` program applies its own node flags). */
async function inspectEnv (): Promise<{ port: number, env: Record<string, string> }> {
  const port = await freePort()
  return { port, env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --inspect=127.0.0.1:${port}`.trim() } }
}

/** A worker task with the inspector on; settles once it printed `READY`. */
async function task<T> (name: string, taskArgs: Record<string, unknown>): Promise<{ proc: Proc, info: T, inspectPort: number }> {
  const { port, env } = await inspectEnv()
  const proc = start(['bench/worker.ts', name, JSON.stringify(taskArgs)], env)
  stops.push(proc.stop)
  return { proc, info: JSON.parse((await proc.next(/^READY /, 60_000)).slice(6)) as T, inspectPort: port }
}

/** A Chrome DevTools Protocol session with the process on `port`. */
async function devtools (port: number): Promise<{ call: <T>(method: string, params?: Record<string, unknown>) => Promise<T>, close: () => void }> {
  let url: string | undefined
  for (let i = 0; i < 50 && url === undefined; i++) {
    try {
      const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as Array<{ webSocketDebuggerUrl: string }>
      url = list[0]?.webSocketDebuggerUrl
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  }
  if (url === undefined) throw new Error(`no inspector on port ${port}`)
  const ws = new WebSocket(url)
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  let next = 0
  const pending = new Map<number, (m: { result?: unknown, error?: { message: string } }) => void>()
  ws.on('message', (data: Buffer) => {
    const m = JSON.parse(data.toString()) as { id?: number, result?: unknown, error?: { message: string } }
    if (m.id !== undefined) pending.get(m.id)?.(m)
  })
  return {
    call: async <T>(method: string, params: Record<string, unknown> = {}): Promise<T> => await new Promise<T>((resolve, reject) => {
      const id = ++next
      pending.set(id, (m) => { pending.delete(id); if (m.error !== undefined) reject(new Error(m.error.message)); else resolve(m.result as T) })
      ws.send(JSON.stringify({ id, method, params }))
    }),
    close: () => { ws.close() }
  }
}

/** A V8 CPU profile (`Profiler.stop`'s). */
interface CpuProfile {
  nodes: Array<{ id: number, callFrame: { functionName: string, url: string, lineNumber: number } }>
  samples: number[]
  timeDeltas: number[]
}

const ROOT = new URL('..', import.meta.url).href

/** `client/noise/transport.ts`, `ws/lib/sender.js`, `node:internal/crypto/cipher`. */
function shortUrl (url: string): string {
  const nm = /node_modules\/(.*)$/.exec(url)
  if (nm !== null) return nm[1] as string
  return url.startsWith(ROOT) ? url.slice(ROOT.length) : url
}

/** The area a function's self time counts in. */
function area (fn: string, url: string): string {
  if (fn === '(idle)') return 'idle'
  if (fn === '(garbage collector)') return 'GC'
  if (fn === '(program)') return 'V8 and native, no JS frame ((program))'
  url = shortUrl(url)
  if (url.startsWith('client/noise/')) return 'Noise (client/noise/)'
  if (url.startsWith('node:internal/crypto') || url === 'node:crypto') return 'node:crypto (cipher calls)'
  if (url.startsWith('@noble/')) return '@noble (JS crypto)'
  if (/(^|\/)(ws|bufferutil)\/lib\//.test(url) || url.startsWith('bufferutil/')) return 'ws'
  if (/^(engine\.io|socket\.io)/.test(url)) return 'engine.io / socket.io'
  if (/^(client|shared|server)\//.test(url)) return 'starsock, other than Noise'
  if (url.startsWith('node:')) return 'node internals (net, streams, buffers)'
  if (fn === '(root)') return 'other'
  return url === '' ? 'native bindings (writev, writeBuffer, ...)' : 'other dependencies'
}

/**
 * Self time by function and by area, in milliseconds; `busyMs` leaves out `(idle)` and
 * `(program)`: in node the profiler is not told when the event loop waits, so `(program)` holds
 * the waits with the little native work outside any JS frame (its figure is printed, not counted).
 */
function selfTimes (p: CpuProfile): { byFunction: Map<string, { ms: number, area: string }>, byArea: Map<string, number>, busyMs: number } {
  const nodes = new Map(p.nodes.map((n) => [n.id, n]))
  const byFunction = new Map<string, { ms: number, area: string }>()
  const byArea = new Map<string, number>()
  let busyMs = 0
  p.samples.forEach((id, i) => {
    const ms = (p.timeDeltas[i] ?? 0) / 1000
    const f = nodes.get(id)?.callFrame
    if (f === undefined) return
    const a = area(f.functionName, f.url)
    // Line numbers of tsx-compiled files are the compiled code's: the file and function say enough.
    const key = f.url === '' ? (f.functionName || '(anonymous native)') : `${f.functionName || '(anonymous)'} ${shortUrl(f.url)}${f.url.startsWith('file:') && !f.url.includes('node_modules') ? '' : `:${f.lineNumber + 1}`}`
    byFunction.set(key, { ms: (byFunction.get(key)?.ms ?? 0) + ms, area: a })
    byArea.set(a, (byArea.get(a) ?? 0) + ms)
    if (a !== 'idle' && f.functionName !== '(program)') busyMs += ms
  })
  return { byFunction, byArea, busyMs }
}

async function streamSetup (url: string): Promise<Setup> {
  const hops = {} as Record<Variant, Profiled[]>
  const pairs = {} as Record<Variant, { sink: Proc, source: Proc, total: number }>
  for (const variant of VARIANTS) {
    const secure = variant === 'encrypted'
    const sink = await task<{ peerId: string }>('streamSink', { url, secure })
    const source = await task<{ secure: boolean }>('streamSource', { url, target: sink.info.peerId, secure })
    hops[variant] = [{ role: 'sending peer', proc: source.proc, inspectPort: source.inspectPort }, { role: 'receiving peer', proc: sink.proc, inspectPort: sink.inspectPort }]
    pairs[variant] = { sink: sink.proc, source: source.proc, total: 0 }
  }
  return {
    name: 'stream',
    hops,
    transfer: async (variant, bytes) => {
      const pair = pairs[variant]
      pair.total += bytes
      pair.sink.send(`until ${pair.total}`)
      pair.source.send(`send ${bytes}`)
      try {
        await pair.sink.next(/^GOT /, RUN_LIMIT_MS)
      } catch (err) {
        pair.sink.send('count')
        const got = await pair.sink.next(/^COUNT /, 10_000).catch(() => 'COUNT {}')
        throw new Error(`${(err as Error).message}; the sink has ${got.slice(6)} of ${pair.total} bytes`, { cause: err })
      }
      await pair.source.next(/^SENT /, RUN_LIMIT_MS)
    }
  }
}

async function forwardSetup (url: string): Promise<Setup> {
  const sinkPort = await freePort()
  const ends = await servingWorker()
  stops.push(ends.stop)
  const hops = {} as Record<Variant, Profiled[]>
  const ports = {} as Record<Variant, number>
  for (const variant of VARIANTS) {
    const insecure = variant === 'plaintext'
    const target = await task<{ peerId: string }>('tunnelTarget', { url, sinkPort, insecure })
    const client = await task<{ port: number, secure: boolean }>('tunnelClient', { url, target: target.info.peerId, sinkPort, insecure })
    hops[variant] = [{ role: 'forwarding peer', proc: client.proc, inspectPort: client.inspectPort }, { role: 'target peer', proc: target.proc, inspectPort: target.inspectPort }]
    ports[variant] = client.info.port
  }
  return {
    name: 'forward',
    hops,
    transfer: async (variant, bytes) => {
      await ends.gc()
      await ends.run('tunnelBytes', { port: ports[variant], sinkPort, bytes, streams: 1 }, RUN_LIMIT_MS)
    }
  }
}

const lines: string[] = []
const say = (line = ''): void => { lines.push(line); process.stdout.write(line + '\n') }
const dir = mkdtempSync(join(tmpdir(), 'starsock-secure-profile-'))

try {
  const { port: serverInspect, env } = await inspectEnv()
  const server = await startOurs(env)
  stops.push(server.proc.stop)
  const serverHop: Profiled = { role: 'server', proc: server.proc, inspectPort: serverInspect }
  say(`## Encryption's cost per process (${new Date().toISOString().slice(0, 16)}Z, ${cpus().length} x ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version})`)
  say()
  say(`\`node --conditions=starsock-source --import tsx bench/secure-profile.ts --mib=${BYTES / MiB} --rounds=${ROUNDS} --only=${ONLY.join(',')}\`: one transfer of ${BYTES / MiB} MiB per variant and round after a warm-up, ${ROUNDS} rounds (every other in the reverse order); CPU = utime + stime from /proc; profiles sampled every ${INTERVAL_US} µs over one more transfer each. Profiles: \`${dir}\`.`)
  for (const name of ONLY) {
    const setup = name === 'stream' ? await streamSetup(server.url) : name === 'forward' ? await forwardSetup(server.url) : undefined
    if (setup === undefined) throw new Error(`unknown path ${name} (stream, forward)`)
    const procs = (variant: Variant): Profiled[] => [serverHop, ...setup.hops[variant]]
    for (const variant of VARIANTS) await setup.transfer(variant, BYTES) // warm-up
    const cpu: Record<Variant, Array<Record<string, number>>> = { encrypted: [], plaintext: [] }
    const speed: Record<Variant, number[]> = { encrypted: [], plaintext: [] }
    const s0 = sampleCpu()
    for (let r = 0; r < ROUNDS; r++) {
      for (const variant of r % 2 === 0 ? VARIANTS : [...VARIANTS].reverse()) {
        const before = procs(variant).map((h) => cpuSeconds(h.proc.pid))
        const t0 = performance.now()
        await setup.transfer(variant, BYTES)
        const seconds = (performance.now() - t0) / 1000
        const after = procs(variant).map((h) => cpuSeconds(h.proc.pid))
        cpu[variant].push(Object.fromEntries(procs(variant).map((h, i) => [h.role, ((after[i] ?? NaN) - (before[i] ?? NaN)) * 1000 / (BYTES / MiB)])))
        speed[variant].push(BYTES / MiB / seconds)
      }
    }
    const steal = stealShare(s0, sampleCpu())
    say()
    say(`### One ${name}, ${BYTES / MiB} MiB: CPU ms per MiB by process (median of ${ROUNDS}, range)${Number.isFinite(steal) ? `, steal ${fmt(steal * 100)}%` : ''}`)
    say()
    say('| process | encrypted | plaintext | encrypted / plaintext |')
    say('| --- | --- | --- | --- |')
    const roles = procs('encrypted').map((h) => h.role)
    const cell = (list: number[]): string => `${fmt(median(list))} (${fmt(Math.min(...list))}–${fmt(Math.max(...list))})`
    let totalEnc = 0
    let totalPlain = 0
    for (const role of roles) {
      const e = cpu.encrypted.map((c) => c[role] ?? NaN)
      const p = cpu.plaintext.map((c) => c[role] ?? NaN)
      totalEnc += median(e)
      totalPlain += median(p)
      say(`| ${role} | ${cell(e)} | ${cell(p)} | ${fmt(median(e) / median(p))}x |`)
    }
    say(`| all three | ${fmt(totalEnc)} | ${fmt(totalPlain)} | ${fmt(totalEnc / totalPlain)}x |`)
    say(`| MiB/s (wall clock, a busy machine's) | ${cell(speed.encrypted)} | ${cell(speed.plaintext)} | ${fmt(median(speed.encrypted) / median(speed.plaintext))}x |`)

    // One more transfer of each variant, profiled in every process.
    const profiles: Record<Variant, Map<string, CpuProfile>> = { encrypted: new Map(), plaintext: new Map() }
    for (const variant of VARIANTS) {
      const sessions = await Promise.all(procs(variant).map(async (h) => ({ h, s: await devtools(h.inspectPort) })))
      for (const { s } of sessions) {
        await s.call('Profiler.enable')
        await s.call('Profiler.setSamplingInterval', { interval: INTERVAL_US })
      }
      await Promise.all(sessions.map(async ({ s }) => await s.call('Profiler.start')))
      await setup.transfer(variant, BYTES)
      for (const { h, s } of sessions) {
        const { profile } = await s.call<{ profile: CpuProfile }>('Profiler.stop')
        profiles[variant].set(h.role, profile)
        mkdirSync(dir, { recursive: true })
        writeFileSync(join(dir, `${name}-${variant}-${h.role.replace(/\W+/g, '-')}.cpuprofile`), JSON.stringify(profile))
        await s.call('Profiler.disable')
        s.close()
      }
    }
    for (const role of roles) {
      const enc = profiles.encrypted.get(role)
      const plain = profiles.plaintext.get(role)
      if (enc === undefined || plain === undefined) continue
      const e = selfTimes(enc)
      const p = selfTimes(plain)
      const perMiB = (ms: number): string => fmt(ms / (BYTES / MiB))
      say()
      say(`#### ${name}, ${role}: profiled time in functions ${perMiB(e.busyMs)} ms/MiB encrypted, ${perMiB(p.busyMs)} plaintext (\`(program)\` and \`(idle)\` left out)`)
      say()
      say('| area | encrypted ms/MiB | plaintext ms/MiB |')
      say('| --- | --- | --- |')
      const areas = [...new Set([...e.byArea.keys(), ...p.byArea.keys()])].filter((a) => a !== 'idle' && !a.includes('(program)')).sort((x, y) => (e.byArea.get(y) ?? 0) - (e.byArea.get(x) ?? 0))
      for (const a of areas) say(`| ${a} | ${perMiB(e.byArea.get(a) ?? 0)} | ${perMiB(p.byArea.get(a) ?? 0)} |`)
      say()
      say(`Top ${TOP} self-time functions, encrypted (share of the time in functions; the same function's plaintext ms/MiB):`)
      say()
      say('| function | area | ms/MiB | share | plaintext ms/MiB |')
      say('| --- | --- | --- | --- | --- |')
      const top = [...e.byFunction.entries()].filter(([, v]) => v.area !== 'idle' && !v.area.includes('(program)')).sort((x, y) => y[1].ms - x[1].ms).slice(0, TOP)
      for (const [fn, v] of top) say(`| \`${fn}\` | ${v.area} | ${perMiB(v.ms)} | ${fmt(v.ms / e.busyMs * 100)}% | ${perMiB(p.byFunction.get(fn)?.ms ?? 0)} |`)
    }
  }
  if (OUT !== '') writeFileSync(OUT, lines.join('\n') + '\n')
} finally {
  for (const stop of stops.reverse()) await stop()
}
process.exit(0)
