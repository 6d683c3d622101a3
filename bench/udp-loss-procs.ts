/**
 * UDP loss through the real programs, each in its own process: `starsock serve`, `starsock listen`
 * (the far side, allowed to reach a UDP echo) and `starsock forward --udp`; the echo and the
 * application in this process. Sends COUNT datagrams of 16 to 1,200 bytes at RATE per second.
 * STALL_MS stops one side (`listen` or `forward`, as WHO says) with SIGSTOP that long every second,
 * as a loaded machine does to one process. Prints what was lost, the forward's drops by cause,
 * the kernel's receive-buffer errors (machine-wide) and CPU steal.
 *
 *   node --conditions=starsock-source --import tsx bench/udp-loss-procs.ts [COUNT=10000] [RATE=1000] [STALL_MS=0] [WHO=listen]
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import dgram from 'node:dgram'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const COUNT = Number(process.argv[2] ?? 10_000)
const RATE = Number(process.argv[3] ?? 1000)
const STALL_MS = Number(process.argv[4] ?? 0)
const WHO = process.argv[5] ?? 'listen'
const BIN = new URL('../bin/starsock.js', import.meta.url).pathname

function udpSnmp (): Record<string, number> {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'))
  const names = (lines[0] ?? '').split(/\s+/).slice(1)
  const values = (lines[1] ?? '').split(/\s+/).slice(1).map(Number)
  return Object.fromEntries(names.map((n, i) => [n, values[i] ?? 0]))
}

function cpu (): { total: number, steal: number } {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').split(/\s+/).slice(1).map(Number)
  return { total: f.reduce((a, b) => a + b, 0), steal: f[7] ?? 0 }
}

/** A program and the first line of its output matching `pattern`. */
async function run (args: string[], pattern: RegExp): Promise<{ proc: ChildProcessWithoutNullStreams, match: RegExpExecArray, out: () => string }> {
  const proc = spawn(process.execPath, [BIN, ...args])
  let out = ''
  proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const deadline = Date.now() + 30_000
  for (;;) {
    const m = pattern.exec(out)
    if (m !== null) return { proc, match: m, out: () => out }
    if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`starsock ${args[0] ?? ''}: no ${String(pattern)} in: ${out}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

const dir = mkdtempSync(join(tmpdir(), 'starsock-udp-bench-'))
const service = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 })
const app = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 })
let atService = 0
let back = 0
service.on('message', (msg, r) => { atService++; service.send(msg, r.port, r.address) })
app.on('message', () => { back++ })
await new Promise<void>((resolve) => service.bind(0, '127.0.0.1', resolve))
await new Promise<void>((resolve) => app.bind(0, '127.0.0.1', resolve))
const svc = service.address().port

const serve = await run(['serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn'], /^starsock (http:\/\/127\.0\.0\.1:\d+)/m)
const url = serve.match[1] as string
const listen = await run(['listen', '--server', url, '--key', join(dir, 'l'), '--allow', `connect/udp:127.0.0.1:${svc}`, '--no-prompt', '--json'], /"event":"ready".*?"peerId":"(\w+)"/)
const fwd = await run(['forward', '--server', url, '--key', join(dir, 'f'), '--peer', listen.match[1] as string, '--listen', '0', '--to', `127.0.0.1:${svc}`, '--udp', '--json'], /"event":"ready".*"address":\{"ip":"[^"]+","port":(\d+)\}/)
const port = Number(fwd.match[1])
const stalled = WHO === 'forward' ? fwd.proc : listen.proc

const snmp0 = udpSnmp()
const cpu0 = cpu()
const stall = STALL_MS > 0
  ? setInterval(() => {
    stalled.kill('SIGSTOP')
    setTimeout(() => stalled.kill('SIGCONT'), STALL_MS)
  }, 1000)
  : undefined
const t0 = performance.now()
let sent = 0
let seed = 7
await new Promise<void>((resolve) => {
  const tick = (): void => {
    const due = Math.min(COUNT, Math.floor((performance.now() - t0) * RATE / 1000))
    for (; sent < due; sent++) {
      seed = (seed * 1103515245 + 12345) >>> 0
      app.send(Buffer.alloc(16 + seed % 1185, sent & 0xff), port, '127.0.0.1')
    }
    if (sent < COUNT) setTimeout(tick, 1)
    else resolve()
  }
  tick()
})
clearInterval(stall)
await new Promise((resolve) => setTimeout(resolve, STALL_MS + 50))
stalled.kill('SIGCONT')
for (let last = -1; back !== last;) {
  last = back
  await new Promise((resolve) => setTimeout(resolve, 1000))
}
// The forward prints its figures every 5 s: take the next line.
const before = fwd.out().length
while (!/"event":"stats"/.test(fwd.out().slice(before))) await new Promise((resolve) => setTimeout(resolve, 100))
const stats = JSON.parse((fwd.out().slice(before).split('\n').find((l) => l.includes('"event":"stats"')) ?? '{}')) as Record<string, unknown>
const snmp1 = udpSnmp()
const cpu1 = cpu()
const pct = (n: number): string => `${(100 * n / COUNT).toFixed(2)}%`
process.stdout.write(JSON.stringify({
  sent: COUNT,
  rate: RATE,
  stall: STALL_MS === 0 ? 'none' : `${WHO} stopped ${STALL_MS} ms every second`,
  lostToService: pct(COUNT - atService),
  lostRoundTrip: pct(COUNT - back),
  forwardDropped: stats.droppedDatagrams,
  forwardDroppedBy: stats.droppedBy,
  kernelRcvbufErrors: snmp1.RcvbufErrors! - snmp0.RcvbufErrors!,
  stealPct: +(100 * (cpu1.steal - cpu0.steal) / Math.max(1, cpu1.total - cpu0.total)).toFixed(1),
  loadavg: readFileSync('/proc/loadavg', 'utf8').trim()
}) + '\n')
for (const p of [fwd.proc, listen.proc, serve.proc]) p.kill('SIGTERM')
app.close()
service.close()
rmSync(dir, { recursive: true, force: true })
