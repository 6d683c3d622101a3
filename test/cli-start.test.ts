/**
 * What the `starsock` program loads at start: `--help` lists every command without loading any
 * command's code, `serve` without the client, and the light entries read exactly like the real
 * commands. Module loads come from a loader hook (test/fixtures/module-log.js) in the real
 * program (`node bin/starsock.js`, the compiled build); no time is asserted.
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { COMMANDS, commandOf, createProgram } from '../cli/main.ts'
import { connectSocket, joinWithChallenge, makeIdentity, request, startRawPeer } from './helpers/raw-peer.ts'
import { within } from './helpers/server.ts'

const BIN = fileURLToPath(new URL('../bin/starsock.js', import.meta.url))
const HOOK = fileURLToPath(new URL('./fixtures/module-log.js', import.meta.url))

let dir: string | undefined
afterEach(() => { if (dir !== undefined) rmSync(dir, { recursive: true, force: true }); dir = undefined })

/** A fresh file for the module log. */
function logFile (): string {
  dir ??= mkdtempSync(join(tmpdir(), 'starsock-start-'))
  return join(dir, `modules-${Math.random().toString(36).slice(2)}.log`)
}

/** The modules a log lists, as paths inside dist/node/ or package names under node_modules. */
function loaded (file: string): { own: string[], packages: string[] } {
  const urls = readFileSync(file, 'utf8').split('\n').filter((l) => l !== '')
  const own = urls.flatMap((u) => /\/dist\/node\/(.+)$/.exec(u)?.[1] ?? [])
  const packages = [...new Set(urls.flatMap((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1] ?? []))]
  return { own, packages }
}

/** `starsock ...args` run to its end with the module log. */
function runLogged (args: string[]): { status: number | null, stdout: string, stderr: string, log: string } {
  const log = logFile()
  const r = spawnSync(process.execPath, ['--import', HOOK, BIN, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, NODE_OPTIONS: '', STARSOCK_MODULE_LOG: log } })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, log }
}

describe('starsock start-up', () => {
  it('--help loads no command module, no server, no client and no package but commander', () => {
    const r = runLogged(['--help'])
    expect(r.status, r.stderr).toBe(0)
    const { own, packages } = loaded(r.log)
    expect(own).toContain('cli/main.js') // the hook saw the program
    expect(own.filter((m) => m.startsWith('client/') || (m.startsWith('cli/') && m !== 'cli/main.js') || m === 'server/server.js')).toEqual([])
    expect(packages).toEqual(['commander'])
    for (const c of COMMANDS) expect(r.stdout).toContain(`${c.name} [options]`)
  })

  it('lists each command exactly as the real command does (light entries match the modules)', async () => {
    const noop = (): void => {}
    const full = await createProgram([], noop, true)
    for (const entry of COMMANDS) {
      const real = full.commands.find((c) => c.name() === entry.name)
      expect(real?.description(), entry.name).toBe(entry.description)
    }
    expect(full.commands.map((c) => c.name()).filter((n) => n !== 'help')).toEqual(COMMANDS.map((c) => c.name))
    // The program's help, as the process prints it (80 columns off a terminal), is the one of the
    // program with every command built.
    full.configureHelp({ helpWidth: 80 })
    const r = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8', timeout: 30_000 })
    expect(r.stdout).toBe(full.helpInformation())
  })

  it('finds the command a command line names', () => {
    expect(commandOf(['serve', '--port', '1'])?.name).toBe('serve')
    expect(commandOf(['help', 'up'])?.name).toBe('up')
    expect(commandOf(['--help'])).toBeUndefined()
    expect(commandOf(['help'])).toBeUndefined()
    expect(commandOf(['serv'])).toBeUndefined()
    expect(commandOf(['-h', 'forward', '--peer', 'x'])?.name).toBe('forward')
  })

  it('loads a command for its help and for `help NAME`, and still suggests for a typo', () => {
    for (const args of [['help', 'up'], ['up', '--help']]) {
      const r = runLogged(args)
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^Usage: starsock up \[options\]/)
      expect(r.stdout).toContain('--config <file>')
      expect(loaded(r.log).own).toContain('cli/up/command.js')
    }
    const typo = runLogged(['serv'])
    expect(typo.status).toBe(1)
    expect(typo.stderr).toContain("error: unknown command 'serv'")
    expect(typo.stderr).toContain('(Did you mean serve?)')
    expect(loaded(typo.log).own.filter((m) => m.startsWith('cli/') && m !== 'cli/main.js')).toEqual([])
  })

  it('an idle `serve` loads no client code unless --gateway, and the key and address libraries only for the joins that need them', async () => {
    const log = logFile()
    const proc = spawn(process.execPath, ['--import', HOOK, BIN, 'serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn'], { env: { ...process.env, NODE_OPTIONS: '', STARSOCK_MODULE_LOG: log } })
    let out = ''
    let err = ''
    proc.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    proc.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
    const LIBRARIES = ['@libp2p/crypto', '@libp2p/peer-id', 'multiformats', '@multiformats/multiaddr']
    const librariesNow = (): string[] => loaded(log).packages.filter((p) => LIBRARIES.includes(p)).sort()
    try {
      await within(`the URL line from starsock serve (stderr: ${err})`, new Promise<void>((resolve, reject) => {
        const check = (): void => { if (/^starsock http/m.test(out)) resolve() }
        proc.stdout.on('data', check)
        void exited.then(() => reject(new Error(`starsock serve exited: ${err}`)))
      }), 20_000)
      // Idle: neither the key libraries nor the multiaddr library.
      expect(librariesNow()).toEqual([])
      const url = /^starsock (http\S+)/m.exec(out)?.[1] ?? ''
      const port = Number(new URL(url).port)
      // A join with a key: the key libraries load; its address is a common shape, read without multiaddr.
      const first = await startRawPeer(url, port)
      first.close()
      expect(librariesNow()).toEqual(['@libp2p/crypto', '@libp2p/peer-id', 'multiformats'])
      // An IPv6 address: the multiaddr library loads for it, and the join goes through.
      const socket = await connectSocket(url)
      try {
        const { key, id } = await makeIdentity(port)
        expect(await joinWithChallenge(socket, key, `/ip6/::1/tcp/${port}/ws/p2p-websocket-star/p2p/${id}`)).toEqual([])
        expect(librariesNow()).toEqual(LIBRARIES.slice().sort())
        // Refusals keep their answers (the legacy texts of E_INVALID_ADDRESS and E_CRYPTO).
        expect((await request(socket, 'ss-join', [`/ip6/not-an-ip/tcp/${port}/ws/p2p-websocket-star/p2p/${id}`, '']))[0]).toBe('Invalid multiaddr')
        expect((await request(socket, 'ss-join', [`/dns4/example.com/tcp/1/ws/p2p-websocket-star/p2p/${id}`, '08011220']))[0]).toBe('Crypto error')
      } finally {
        socket.close()
      }
    } finally {
      proc.kill('SIGTERM')
      await within('starsock serve to exit after SIGTERM', exited, 10_000)
    }
    const { own, packages } = loaded(log)
    expect(own).toContain('server/server.js')
    expect(own.filter((m) => m.startsWith('client/') || ['cli/listen.js', 'cli/gateway.js'].includes(m))).toEqual([])
    expect(packages.filter((p) => ['socket.io-client', 'engine.io-client', '@noble/ciphers', 'zod', 'toml-eslint-parser'].includes(p))).toEqual([])
  })
})
