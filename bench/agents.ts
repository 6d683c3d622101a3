/**
 * What carrying several tunnels costs: `n` TCP forwards to one peer run by ONE `starsock up`
 * process (issue 15), against the reference, the only way before it: one `starsock forward`
 * process per mapping (each with a key of its own: two processes cannot share an identity).
 * Rows: the RSS of the process(es) once every forward moved bytes (a 64 KiB echo through each,
 * checked exact), the connections the server holds for them, and the time until every forward
 * was ready. The far side is one `starsock listen` with a rule for the echo target.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { rssMiB, start, startOurs, type Proc } from './procs.ts'
import { formatFigure as fmt, type Row } from './rows.ts'
import { sampleCpu, stealShare } from './steal.ts'

const BIN = 'bin/starsock.js'
/** How long a process may take to say it is ready. */
const READY_MS = 60_000
/** Bytes echoed through each forward before the figures are read. */
const ECHO_BYTES = 64 * 1024

/** An echo server on 127.0.0.1. */
async function echoServer (): Promise<{ port: number, close: () => void }> {
  const server = net.createServer((s) => { s.on('error', () => {}); s.pipe(s) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() }
}

/** Echo `ECHO_BYTES` through `port`; rejects unless they come back exact. */
async function echoThrough (port: number): Promise<void> {
  const payload = randomBytes(ECHO_BYTES)
  await new Promise<void>((resolve, reject) => {
    const chunks: Buffer[] = []
    let got = 0
    const s = net.connect(port, '127.0.0.1', () => s.write(payload))
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no echo through port ${port}`)) }, 30_000)
    s.on('data', (d: Buffer) => {
      chunks.push(d)
      got += d.byteLength
      if (got < payload.byteLength) return
      clearTimeout(timer)
      s.end()
      if (Buffer.concat(chunks).equals(payload)) resolve()
      else reject(new Error(`the echo through port ${port} came back different`))
    })
    s.on('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

/** Read JSON events from a process until `count` of `name` came; settles with them. */
async function events (proc: Proc, name: string, count: number): Promise<Array<Record<string, unknown>>> {
  const found: Array<Record<string, unknown>> = []
  while (found.length < count) {
    const line = await proc.next(new RegExp(`^\\{"event":"${name}"`), READY_MS)
    found.push(JSON.parse(line) as Record<string, unknown>)
  }
  return found
}

/** The listening port of a ready event (`address: { port }`). */
const portOf = (e: Record<string, unknown>): number => Number((e.address as { port?: number } | undefined)?.port)

/** Measure `n` forwards both ways; `record` gets the rows. */
export async function agentsBench (options: { counts: number[], record: (row: Row) => void }): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'starsock-bench-agents-'))
  const echo = await echoServer()
  const server = await startOurs()
  const procs: Proc[] = []
  const stopAll = async (): Promise<void> => { for (const p of procs.splice(0)) await p.stop() }
  try {
    const farKey = join(dir, 'far.key')
    const far = start([BIN, 'listen', '--server', server.url, '--key', farKey, '--allow', `connect/tcp:127.0.0.1:${echo.port}`, '--no-prompt', '--json'])
    procs.push(far)
    const farReady = (await events(far, 'ready', 1))[0] as { peerId: string }
    const peer = farReady.peerId
    const farProcs = procs.splice(0) // kept running across both shapes
    try {
      for (const n of options.counts) {
        const sample = sampleCpu()
        const sockets0 = await serverSockets(server.url)
        // The reference: one process per forward.
        let t0 = Date.now()
        const each: Proc[] = []
        for (let i = 0; i < n; i++) {
          const p = start([BIN, 'forward', '--server', server.url, '--key', join(dir, `fwd-${n}-${i}.key`), '--peer', peer, '--listen', '0', '--to', `127.0.0.1:${echo.port}`, '--json'])
          procs.push(p)
          each.push(p)
        }
        const ports = []
        for (const p of each) ports.push(portOf((await events(p, 'ready', 1))[0] as Record<string, unknown>))
        const refReadyS = (Date.now() - t0) / 1000
        for (const port of ports) await echoThrough(port)
        const refRss = each.reduce((sum, p) => sum + rssMiB(p.pid), 0)
        const refSockets = await serverSockets(server.url) - sockets0
        await stopAll()
        // Ours: one `up` process with n forwards.
        const config = join(dir, `up-${n}.toml`)
        writeFileSync(config, `server = "${server.url}"\nkey = "${join(dir, `up-${n}.key`)}"\n` +
          Array.from({ length: n }, (_, i) => `\n[[forward]]\nname = "f${i}"\npeer = "${peer}"\nlisten = "127.0.0.1:0"\nto = "127.0.0.1:${echo.port}"\n`).join(''))
        t0 = Date.now()
        const up = start([BIN, 'up', '--config', config, '--json'])
        procs.push(up)
        const readies = await events(up, 'ready', n)
        const oursReadyS = (Date.now() - t0) / 1000
        for (const e of readies) await echoThrough(portOf(e))
        const oursRss = rssMiB(up.pid)
        const oursSockets = await serverSockets(server.url) - sockets0
        await stopAll()
        const steal = stealShare(sample, sampleCpu())
        options.record({ group: 'agents', what: `RSS of ${n} TCP forwards, one up process`, value: oursRss, unit: 'MiB', reference: { what: `${n} forward processes`, value: refRss }, steal, note: `${fmt(oursRss / n)} MiB per forward; one process each: ${fmt(refRss / n)} MiB per forward; ${ECHO_BYTES / 1024} KiB echoed exact through each` })
        options.record({ group: 'agents', what: `server connections for ${n} forwards, one up process`, value: oursSockets, unit: 'sockets', reference: { what: `${n} forward processes`, value: refSockets }, steal })
        options.record({ group: 'agents', what: `time until ${n} forwards are ready, one up process`, value: oursReadyS, unit: 's', reference: { what: `${n} forward processes started at once`, value: refReadyS }, steal, note: 'includes node start-up and joining' })
      }
    } finally {
      procs.push(...farProcs)
    }
  } finally {
    await stopAll()
    await server.proc.stop()
    echo.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Sockets the server holds now, by its own count (`/metrics`: `starsock_sockets`). */
async function serverSockets (url: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', url))).text()
  const m = /^starsock_sockets(?:\{[^}]*\})? (\d+)/m.exec(text)
  if (m === null) throw new Error('the server\'s /metrics has no starsock_sockets')
  return Number(m[1])
}
