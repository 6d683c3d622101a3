/**
 * Processes for the benchmarks: servers, relays and workers. Every node process runs with
 * starsock's `NODE_FLAGS` (the `starsock` program applies them itself) and counts its GCs
 * (`bench/gc-meter.js`); their CPU time and memory come from /proc (`bench/proc-stat.ts`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { gcMeterEnv } from './gc.ts'
import { childPids } from './proc-stat.ts'

export { childPids, cpuSeconds, rssMiB, treeCpuSeconds } from './proc-stat.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
// Imported by its URL: bin/node-flags.js is plain JavaScript without type declarations.
const { NODE_FLAGS } = await import(new URL('../bin/node-flags.js', import.meta.url).href) as { NODE_FLAGS: readonly string[] }
/** The program whose start-up applies `NODE_FLAGS` itself: passing them again would double them. */
const STARSOCK_BIN = 'bin/starsock.js'
/** The benchmark's worker script (clients, peers, sources and sinks). */
const WORKER = 'bench/worker.ts'
/** How long a worker may take to print `READY`. */
const READY_TIMEOUT_MS = 30_000
/** Lines kept for a later `next`; a chatty program (websockify logs every connection) must not grow them. */
const MAX_KEPT_LINES = 1000

/** A process this benchmark started; `stop` ends it by its pid. */
export interface Proc {
  child: ChildProcess
  pid: number
  /** Lines of stdout not consumed by a waiter. */
  lines: string[]
  /** Settles with the next stdout line matching `re`. */
  next: (re: RegExp, ms: number) => Promise<string>
  send: (line: string) => void
  stop: () => Promise<void>
}

/** Every process started here, killed when this process exits however it exits. */
const children = new Set<ChildProcess>()
process.on('exit', () => { for (const child of children) child.kill('SIGKILL') })
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130))

/**
 * Start a script under node (through tsx for a .ts file) from the repository root, with
 * starsock's node flags (but for `bin/starsock.js`, which applies them itself) and the GC meter;
 * `bench/worker.ts` also with `--expose-gc`, for its `gc` task.
 */
export function start (args: string[], env: Record<string, string> = {}): Proc {
  // A worker may be asked for a full GC between measured runs (its `gc` task), never during one.
  const flags = args[0] === STARSOCK_BIN ? [] : args[0] === WORKER ? [...NODE_FLAGS, '--expose-gc'] : NODE_FLAGS
  const loader = args[0]?.endsWith('.ts') === true ? ['--conditions=starsock-source', '--import', 'tsx'] : []
  return startCommand(process.execPath, [...flags, ...loader, ...args], { env: { ...gcMeterEnv(), ...env } })
}

/**
 * Start any command from the repository root. Its stderr goes to ours, or with `stderrLines`
 * into the same lines as its stdout (for a program that reports on stderr, like websockify).
 */
export function startCommand (command: string, args: string[], options: { env?: Record<string, string>, stderrLines?: boolean } = {}): Proc {
  const child = spawn(command, args, { cwd: ROOT, env: { ...process.env, ...options.env }, stdio: ['pipe', 'pipe', options.stderrLines === true ? 'pipe' : 'inherit'] })
  const lines: string[] = []
  const waiters: Array<{ re: RegExp, resolve: (l: string) => void }> = []
  const onLine = (line: string): void => {
    const i = waiters.findIndex((w) => w.re.test(line))
    if (i >= 0) waiters.splice(i, 1)[0]?.resolve(line)
    else if (lines.length < MAX_KEPT_LINES) lines.push(line)
  }
  child.stdin?.on('error', () => {}) // a line sent to a process that died: its exit says so
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', onLine)
  if (child.stderr !== null) createInterface({ input: child.stderr }).on('line', onLine)
  children.add(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => { children.delete(child); resolve() }))
  const name = [command, ...args].join(' ')
  return {
    child,
    pid: child.pid ?? -1,
    lines,
    next: async (re, ms) => {
      const have = lines.findIndex((l) => re.test(l))
      if (have >= 0) return lines.splice(have, 1)[0] as string
      // Gone already (a serving worker that died after its last answer): its exit will not come again.
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited with ${String(child.exitCode ?? child.signalCode)} before printing ${String(re)}`)
      return await new Promise<string>((resolve, reject) => {
        // Whichever comes first removes the others, so a serving worker asked many times gathers no listeners.
        const fail = (err: Error): void => {
          clearTimeout(timer)
          child.off('exit', onExit)
          const i = waiters.indexOf(waiter)
          if (i >= 0) waiters.splice(i, 1)
          reject(err)
        }
        const onExit = (code: number | null): void => fail(new Error(`${name} exited with ${String(code)} before printing ${String(re)}`))
        const timer = setTimeout(() => fail(new Error(`no line matching ${String(re)} from ${name} within ${ms} ms`)), ms)
        const waiter = { re, resolve: (l: string) => { clearTimeout(timer); child.off('exit', onExit); resolve(l) } }
        child.once('exit', onExit)
        waiters.push(waiter)
      })
    },
    send: (line) => { child.stdin?.write(line + '\n') },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    }
  }
}

/** A free TCP port on 127.0.0.1. */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A server under test: its URL, port and process. */
export interface ServerUnderTest {
  name: 'ours' | 'original'
  url: string
  port: number
  proc: Proc
}

/** Our server with its limits opened up for load (the benchmark is one IP with thousands of joins); `env` for its process (`NODE_OPTIONS`). */
export async function startOurs (env: Record<string, string> = {}): Promise<ServerUnderTest> {
  const port = await freePort()
  const proc = start([STARSOCK_BIN, 'serve', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn',
    '--max-joins-per-ip-per-minute', '100000000', '--max-peers', '100000', '--max-peers-per-ip', '100000', '--max-connections-per-ip', '100000', '--max-dials-per-second', '100000', '--max-streams-per-socket', '100000'], env)
  await proc.next(/^starsock http/, 20_000)
  return { name: 'ours', url: `http://127.0.0.1:${port}`, port, proc }
}

/** The original `libp2p-websocket-star-rendezvous@0.4.1`, from its own CLI. */
export async function startOriginal (): Promise<ServerUnderTest> {
  const port = await freePort()
  const proc = start(['node_modules/libp2p-websocket-star-rendezvous/src/bin.js', '--host', '127.0.0.1', '--port', String(port)])
  await proc.next(/^Listening on/, 20_000)
  return { name: 'original', url: `http://127.0.0.1:${port}`, port, proc }
}

/** The raw TCP and `ws` relays. */
export async function startRawRelays (): Promise<{ tcp: number, ws: number, proc: Proc }> {
  const proc = start(['bench/raw-relay.ts'])
  const line = await proc.next(/^READY /, 20_000)
  return { ...(JSON.parse(line.slice(6)) as { tcp: number, ws: number }), proc }
}

/** A worker that prints `READY {...}` and then serves until `stop`; settles once ready. */
export async function ready<T> (task: string, args: Record<string, unknown>): Promise<{ proc: Proc, info: T }> {
  const proc = start([WORKER, task, JSON.stringify(args)])
  try {
    return { proc, info: JSON.parse((await proc.next(/^READY /, READY_TIMEOUT_MS)).slice(6)) as T }
  } catch (err) {
    await proc.stop()
    throw err
  }
}

/** A warm worker that runs task after task (`serve`). */
export interface ServingWorker {
  /** Its current pid (a new one after a failure). */
  readonly pid: number
  /** Run a worker task; settles with its result, rejects with its error or after `ms`. */
  run: <T>(task: string, args: Record<string, unknown>, ms: number) => Promise<T>
  /**
   * A full GC in the worker, so no run pays for the garbage of the run before it (another path's:
   * the legacy client's runs left the next path in the same worker a mark-compact to do).
   */
  gc: () => Promise<void>
  stop: () => Promise<void>
}

/** Start a serving worker; restarted after a failure, so a run that hung cannot answer for the next. */
export async function servingWorker (): Promise<ServingWorker> {
  let current = await ready<Record<string, never>>('serve', {})
  const worker: ServingWorker = {
    get pid () { return current.proc.pid },
    run: async <T>(task: string, args: Record<string, unknown>, ms: number): Promise<T> => {
      try {
        current.proc.send(JSON.stringify({ task, args }))
        const answer = JSON.parse(await current.proc.next(/^\{/, ms)) as T & { error?: string }
        if (typeof answer.error === 'string') throw new Error(answer.error)
        return answer
      } catch (err) {
        await current.proc.stop()
        current = await ready<Record<string, never>>('serve', {})
        throw err
      }
    },
    gc: async () => { await worker.run('gc', {}, 30_000) },
    stop: async () => { await current.proc.stop() }
  }
  return worker
}

/** Run a worker task to its end; settles with its JSON result. */
export async function work<T> (task: string, args: Record<string, unknown>, ms = 600_000): Promise<T> {
  const proc = start(['bench/worker.ts', task, JSON.stringify(args)])
  try {
    return JSON.parse(await proc.next(/^\{/, ms)) as T
  } finally {
    await proc.stop()
  }
}

/** The path of Debian's `websockify`, installed (with sudo when not root) when missing. */
export function ensureWebsockify (): string {
  const found = (): string => spawnSync('sh', ['-c', 'command -v websockify'], { encoding: 'utf8' }).stdout.trim()
  if (found() !== '') return found()
  if (!existsSync('/usr/bin/apt-get')) throw new Error('websockify is missing; install it (Debian: apt-get install websockify)')
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n']
  process.stderr.write('bench: installing websockify from Debian\'s packages\n')
  for (const step of [['update', '-qq'], ['install', '-y', '-qq', 'websockify']]) {
    const [command = '', ...args] = [...sudo, 'env', 'DEBIAN_FRONTEND=noninteractive', 'apt-get', ...step]
    const r = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 })
    if (r.status !== 0) throw new Error(`apt-get ${step[0] ?? ''} websockify failed (${r.error?.message ?? `exit ${String(r.status)}`})`)
  }
  if (found() === '') throw new Error('websockify is still missing after apt-get install')
  return found()
}

/**
 * Debian's `websockify` on 127.0.0.1 (a free port) in front of `127.0.0.1:targetPort`; settles
 * once it listens. `stop` ends its per-connection children and then it, by their pids.
 */
export async function startWebsockify (targetPort: number): Promise<{ port: number, proc: Proc }> {
  const bin = ensureWebsockify()
  const port = await freePort()
  const proc = startCommand(bin, [`127.0.0.1:${port}`, `127.0.0.1:${targetPort}`], { stderrLines: true })
  const stop = proc.stop
  proc.stop = async () => {
    for (const child of childPids(proc.pid)) {
      try { process.kill(child, 'SIGKILL') } catch {}
    }
    await stop()
  }
  try {
    await proc.next(/proxying from/, 20_000) // printed once its socket listens
  } catch (err) {
    await proc.stop()
    throw err
  }
  return { port, proc }
}
