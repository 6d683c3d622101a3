/**
 * The fixture of the `starsock up` tests: a real server (or none), a folder for config files and keys,
 * `up` processes started from those files, their per-mapping events, and the far side they map to.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach } from 'vitest'
import type { ServerOptions } from '../../server/options.ts'
import type { StarsockServer } from '../../server/server.ts'
import { Programs, peerIdOf, type Program } from './programs.ts'
import { startServer } from './server.ts'
import type { Closable } from './sockets.ts'

/** A free TCP (and, most likely, UDP) port on 127.0.0.1. */
export async function freePort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as net.AddressInfo
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

/** A tuple of `N` numbers. */
type Ports<N extends number, T extends number[] = []> = T['length'] extends N ? T : Ports<N, [...T, number]>

/** `n` free ports (see `freePort`). */
export async function freePorts<N extends number> (n: N): Promise<Ports<N>> {
  return await Promise.all(Array.from({ length: n }, async () => await freePort())) as Ports<N>
}

/** The first (or `nth`) event `name` of mapping `id` from an `up --json` process. */
export async function eventOf (p: Program, name: string, id: string, ms = 20_000, nth = 1): Promise<Record<string, unknown>> {
  for (let i = 1, n = 0; ; i++) {
    const e = await p.event(name, ms, i)
    if (e.id === id && ++n === nth) return e
  }
}

/** One `[[kind]]` table of an `up` config: strings are quoted, numbers written as they are. */
export function table (kind: 'forward' | 'expose' | 'socks' | 'accept', fields: Record<string, string | number | readonly string[]>): string {
  const value = (v: string | number | readonly string[]): string =>
    typeof v === 'number' ? String(v) : typeof v === 'string' ? `"${v}"` : `[${v.map((x) => `"${x}"`).join(', ')}]`
  return `[[${kind}]]\n` + Object.entries(fields).map(([k, v]) => `${k} = ${value(v)}\n`).join('')
}

/** What a test gets from `useUp`. */
export interface UpFixture {
  /** This test's server (an error with `{ server: false }`). */
  server: () => StarsockServer & { port: number }
  /** This test's folder (config files, keys). */
  dir: () => string
  programs: Programs
  /** Closed after the test, after the programs. */
  cleanup: Closable[]
  /** Write `dir/name` with `server = "URL"` (this test's server unless `url`) and `text`; its path. */
  config: (name: string, text: string, url?: string) => string
  /** Start `starsock up --config FILE --json ...extra`. */
  up: (file: string, extra?: string[]) => Program
  /** The far side: `up` from far.toml (`key = "far.key"` and `text`), once it is up; its peer id and process. */
  far: (text: string, extra?: string[]) => Promise<{ id: string, proc: Program }>
}

/** Call inside a `describe`: a server (unless `server: false`) and a folder per test; programs stopped after each test. */
export function useUp (options: { prefix: string, server?: ServerOptions | (() => ServerOptions) | false }): UpFixture {
  let server: (StarsockServer & { port: number }) | undefined
  let dir: string | undefined
  const programs = new Programs()
  const cleanup: Closable[] = []
  const current = (): StarsockServer & { port: number } => {
    if (server === undefined) throw new Error('no server in this test')
    return server
  }
  const folder = (): string => {
    if (dir === undefined) throw new Error('no folder: useUp() makes one per test')
    return dir
  }
  beforeEach(async () => {
    if (options.server !== false) server = await startServer(typeof options.server === 'function' ? options.server() : options.server)
    dir = mkdtempSync(join(tmpdir(), options.prefix))
  })
  afterEach(async () => {
    await programs.cleanup()
    for (const c of cleanup.splice(0)) await c.close()
    await server?.close()
    server = undefined
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
    dir = undefined
  })
  const config = (name: string, text: string, url?: string): string => {
    const file = join(folder(), name)
    writeFileSync(file, `server = "${url ?? current().url()}"\n${text}`)
    return file
  }
  const up = (file: string, extra: string[] = []): Program => programs.start(['up', '--config', file, '--json', ...extra])
  return {
    server: current,
    dir: folder,
    programs,
    cleanup,
    config,
    up,
    far: async (text, extra = []) => {
      const id = peerIdOf(join(folder(), 'far.key'))
      const proc = up(config('far.toml', `key = "far.key"\n${text}`), extra)
      await proc.event('up')
      return { id, proc }
    }
  }
}
