/** Real `starsock` processes for tests: start them, read their JSON events, signal them, clean up by pid. */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { within } from './server.ts'

const BIN = fileURLToPath(new URL('../../bin/starsock.js', import.meta.url))

/** A running `starsock` program with its output so far. */
export interface Program {
  proc: ChildProcessWithoutNullStreams
  out: () => string
  err: () => string
  /** Settles with the `nth` (1-based) JSON event named `name` on stdout. */
  event: (name: string, ms?: number, nth?: number) => Promise<Record<string, unknown>>
  /** Settles with the exit code (or `null` after a signal). */
  exited: Promise<number | null>
  /** Send `signal` and wait for the exit. */
  stop: (signal?: NodeJS.Signals, ms?: number) => Promise<number | null>
}

/** Starts programs and stops every one still running in `cleanup` (SIGTERM, then SIGKILL). */
export class Programs {
  private readonly running: Program[] = []

  /** Start `starsock ...args`. */
  start (args: string[]): Program {
    const proc = spawn(process.execPath, [BIN, ...args], { stdio: 'pipe' })
    let out = ''
    let err = ''
    proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
    const events = (name: string): Array<Record<string, unknown>> => out.split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((e) => e.event === name)
    const event = async (name: string, ms = 15_000, nth = 1): Promise<Record<string, unknown>> =>
      await within(`event "${name}" #${nth} from starsock ${args[0] ?? ''} (stdout: ${out.slice(-2000)} stderr: ${err.slice(-2000)})`, new Promise((resolve, reject) => {
        const check = (): void => {
          const found = events(name)[nth - 1]
          if (found !== undefined) { proc.stdout.off('data', check); resolve(found) }
        }
        proc.stdout.on('data', check)
        check()
        void exited.then((code) => { check(); reject(new Error(`starsock ${args[0] ?? ''} exited with ${String(code)} before event "${name}" #${nth}: ${err}`)) })
      }), ms)
    const stop = async (signal: NodeJS.Signals = 'SIGTERM', ms = 10_000): Promise<number | null> => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      return await within(`starsock ${args[0] ?? ''} to exit after ${signal}`, exited, ms)
    }
    const p: Program = { proc, out: () => out, err: () => err, event, exited, stop }
    this.running.push(p)
    return p
  }

  /** Start `starsock serve` on 127.0.0.1 (port 0 unless `port`); settles with the program and its URL. */
  async serve (port = 0, extra: string[] = []): Promise<{ program: Program, url: string, port: number }> {
    const program = this.start(['serve', '--host', '127.0.0.1', '--port', String(port), '--log-level', 'warn', ...extra])
    const url = await within(`the URL line from starsock serve (${program.err()})`, new Promise<string>((resolve, reject) => {
      const check = (): void => {
        const m = /^starsock (http:\/\/127\.0\.0\.1:\d+) /m.exec(program.out())
        if (m?.[1] !== undefined) resolve(m[1])
      }
      program.proc.stdout.on('data', check)
      check()
      void program.exited.then((code) => reject(new Error(`starsock serve exited with ${String(code)}: ${program.err()}`)))
    }), 20_000)
    return { program, url, port: Number(new URL(url).port) }
  }

  /** Stop every program still running: SIGTERM, then SIGKILL if it does not exit. */
  async cleanup (): Promise<void> {
    for (const p of this.running.splice(0)) {
      if (p.proc.exitCode !== null || p.proc.signalCode !== null) continue
      await p.stop('SIGTERM', 10_000).catch(async () => await p.stop('SIGKILL', 5000).catch(() => {}))
    }
  }
}

/**
 * Run `starsock ...args` without blocking this process (a server in this process keeps
 * answering); settles with its exit and output, SIGKILLs it after `ms`.
 */
export async function runProgramAsync (args: string[], ms = 30_000, env: Record<string, string> = {}): Promise<{ status: number | null, stdout: string, stderr: string }> {
  const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } })
  let stdout = ''
  let stderr = ''
  p.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<{ status: number | null, stdout: string, stderr: string }>((resolve) => p.on('exit', (status) => resolve({ status, stdout, stderr })))
  return await within(`starsock ${args.join(' ')} to exit`, exited, ms).finally(() => { if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL') })
}

/** The peer id of the identity in `file` (made if missing). */
export function peerIdOf (file: string): string {
  const r = spawnSync(process.execPath, [BIN, 'id', '--key', file], { encoding: 'utf8', timeout: 20_000 })
  if (r.status !== 0) throw new Error(`starsock id failed: ${r.stderr}`)
  return r.stdout.trim()
}

/** Run `starsock ...args` to completion (at most `ms`); `timedOut` when it had to be killed. */
export function runProgram (args: string[], ms = 20_000): { status: number | null, stdout: string, stderr: string, timedOut: boolean } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: ms })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, timedOut: r.error !== undefined || r.signal !== null }
}
