/** Processes for the benchmarks: servers, relays and workers, with their CPU time and memory from /proc. */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CLK_TCK = 100 // USER_HZ on Linux

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

/** Start a script under node (through tsx for a .ts file) from the repository root. */
export function start (args: string[], env: Record<string, string> = {}): Proc {
  const loader = args[0]?.endsWith('.ts') === true ? ['--import', 'tsx'] : []
  const child = spawn(process.execPath, [...loader, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'] })
  const lines: string[] = []
  const waiters: Array<{ re: RegExp, resolve: (l: string) => void }> = []
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const i = waiters.findIndex((w) => w.re.test(line))
    if (i >= 0) waiters.splice(i, 1)[0]?.resolve(line)
    else lines.push(line)
  })
  children.add(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => { children.delete(child); resolve() }))
  return {
    child,
    pid: child.pid ?? -1,
    lines,
    next: async (re, ms) => {
      const have = lines.findIndex((l) => re.test(l))
      if (have >= 0) return lines.splice(have, 1)[0] as string
      return await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no line matching ${String(re)} from ${args.join(' ')} within ${ms} ms`)), ms)
        child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${String(code)} before printing ${String(re)}`)))
        waiters.push({ re, resolve: (l) => { clearTimeout(timer); resolve(l) } })
      })
    },
    send: (line) => { child.stdin?.write(line + '\n') },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    }
  }
}

/** CPU seconds (user + system) a process used so far. */
export function cpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
}

/** Resident memory of a process, in MiB. */
export function rssMiB (pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return Number(m?.[1] ?? NaN) / 1024
  } catch {
    return NaN // the process is gone
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

/** Our server with its limits opened up for load (the benchmark is one IP with thousands of joins). */
export async function startOurs (): Promise<ServerUnderTest> {
  const port = await freePort()
  const proc = start(['bin/starsock.js', 'serve', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn',
    '--max-joins-per-ip-per-minute', '100000000', '--max-peers', '100000', '--max-dials-per-second', '100000', '--max-streams-per-socket', '100000'])
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

/** Run a worker task to its end; settles with its JSON result. */
export async function work<T> (task: string, args: Record<string, unknown>, ms = 600_000): Promise<T> {
  const proc = start(['bench/worker.ts', task, JSON.stringify(args)])
  try {
    return JSON.parse(await proc.next(/^\{/, ms)) as T
  } finally {
    await proc.stop()
  }
}
