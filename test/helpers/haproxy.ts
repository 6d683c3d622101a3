/**
 * The shipped `deploy/haproxy.cfg` run for real: Debian's haproxy in the foreground (`-db`) on
 * loopback, started and stopped by pid. The only changes to the file are where it listens and
 * which nodes it balances (`onLoopback`), and an admin socket for the test to read the stick
 * table (`startHaproxy`); everything else runs as shipped. Its request log (one line per request,
 * on stdout) tells a test which node served each request.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer as createTcpServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { within } from './server.ts'

export const HAPROXY = '/usr/sbin/haproxy'
/** The shipped file. */
export const HAPROXY_CFG = fileURLToPath(new URL('../../deploy/haproxy.cfg', import.meta.url))

/** A TCP port free right now on 127.0.0.1 (haproxy cannot take port 0 and say which it got). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = createTcpServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })
}

/** The shipped server lines: `    server nodeN HOST:PORT`, one per node. */
const SERVER_LINE = /^ {4}server node\d+ \S+\n/gm

/**
 * `text` (the shipped config) listening on `127.0.0.1:port` instead of `:80`, with one server
 * line `nodeN 127.0.0.1:<nodePorts[N-1]>` per node in place of the shipped ones. Throws when the
 * shipped file no longer has exactly one `bind :80` or has no server lines (the substitution
 * must be this small, or the test no longer runs the shipped file).
 */
export function onLoopback (text: string, port: number, nodePorts: number[]): string {
  const binds = text.split('\n    bind :80\n')
  if (binds.length !== 2) throw new Error(`expected one "    bind :80" line in deploy/haproxy.cfg, found ${binds.length - 1}`)
  const withBind = binds.join(`\n    bind 127.0.0.1:${port}\n`)
  const servers = withBind.match(SERVER_LINE) ?? []
  if (servers.length === 0) throw new Error('expected "    server nodeN HOST:PORT" lines in deploy/haproxy.cfg')
  const first = withBind.indexOf(servers[0] ?? '')
  const lines = nodePorts.map((p, i) => `    server node${i + 1} 127.0.0.1:${p}\n`).join('')
  return withBind.slice(0, first) + lines + withBind.slice(first).replace(SERVER_LINE, '')
}

/** One request in haproxy's log: the node that served it (`undefined` when none did), its status and URI. */
export interface LoggedRequest { server: string | undefined, status: number, method: string, uri: string }

/** A haproxy this test started, with its log so far. */
export interface RunningHaproxy {
  proc: ChildProcess
  port: number
  /** `http://127.0.0.1:PORT` */
  url: string
  log: () => string
  /** Run a command on haproxy's admin socket (e.g. `show table starsock`); settles with its answer. */
  admin: (command: string) => Promise<string>
  /** The requests logged so far (a request is logged when it ends; a WebSocket when it closes). */
  requests: () => LoggedRequest[]
  stop: () => Promise<void>
}

/** Parse haproxy's `option httplog` lines (`... frontend backend/server Tq/Tw/Tc/Tr/Ta status ... "METHOD URI HTTP/1.1"`). */
export function parseHttpLog (log: string): LoggedRequest[] {
  const out: LoggedRequest[] = []
  for (const line of log.split('\n')) {
    const m = /\s\S+ [^\s/]+\/(\S+) \S+ (-?\d+) .*"(\w+) (\S+) HTTP\/[\d.]+"\s*$/.exec(line)
    if (m === null) continue
    out.push({ server: m[1] === '<NOSRV>' ? undefined : m[1], status: Number(m[2]), method: m[3] ?? '', uri: m[4] ?? '' })
  }
  return out
}

/**
 * Run `config` (a whole haproxy.cfg text, e.g. `onLoopback(shipped, ...)`) with `haproxy -db` and
 * settle once it answers on `port` (a request through it reached a node's `/readyz`). An admin
 * socket in its temporary folder is added to `global` (the test's window on the stick table).
 */
export async function startHaproxy (config: string, port: number): Promise<RunningHaproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'starsock-haproxy-'))
  const file = join(dir, 'haproxy.cfg')
  const socket = join(dir, 'admin.sock')
  const globals = config.split('\nglobal\n')
  if (globals.length !== 2) throw new Error('expected one "global" section in the haproxy config')
  writeFileSync(file, globals.join(`\nglobal\n    stats socket ${socket} mode 600 level admin\n`))
  const proc = spawn(HAPROXY, ['-db', '-f', file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  proc.stdout?.on('data', (d: Buffer) => { log += d.toString() })
  proc.stderr?.on('data', (d: Buffer) => { log += d.toString() })
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM')
      await within('haproxy to exit after SIGTERM', exited, 10_000).catch(async () => { proc.kill('SIGKILL'); await exited })
    }
    rmSync(dir, { recursive: true, force: true })
  }
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 20_000
  for (;;) {
    if (proc.exitCode !== null) { await stop(); throw new Error(`haproxy exited with ${proc.exitCode}: ${log}`) }
    const ok = await fetch(`${url}/readyz`).then((r) => r.status === 200, () => false)
    if (ok) break
    if (Date.now() > deadline) { await stop(); throw new Error(`haproxy to pass /readyz to a node on ${url} within 20000 ms (log: ${log.slice(-3000)})`) }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  const admin = async (command: string): Promise<string> => await within(`haproxy's answer to "${command}"`, new Promise<string>((resolve, reject) => {
    let answer = ''
    const c = connect(socket, () => c.end(command + '\n'))
    c.on('data', (d: Buffer) => { answer += d.toString() })
    c.once('error', reject)
    c.once('close', () => resolve(answer))
  }), 10_000)
  return { proc, port, url, log: () => log, admin, requests: () => parseHttpLog(log), stop }
}

/** The shipped file's text. */
export function shippedHaproxyConfig (): string {
  return readFileSync(HAPROXY_CFG, 'utf8')
}
