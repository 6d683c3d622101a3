import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { createPeer } from '../client/peer.ts'
import { commandFor, serviceList } from '../cli/listen.ts'
import { parseRule } from '../shared/sock-rules.ts'
import { runProgramAsync } from './helpers/programs.ts'
import { startServer, within } from './helpers/server.ts'

const BIN = fileURLToPath(new URL('../bin/starsock.js', import.meta.url))

/** Run `starsock args` to completion. */
function run (args: string[], env: Record<string, string> = {}): { status: number | null, stdout: string, stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

describe('starsock serve (the program)', () => {
  let child: ChildProcess | undefined
  afterEach(() => {
    if (child?.exitCode === null) child.kill('SIGKILL')
    child = undefined
  })

  /** Start `starsock serve` and settle with the URL it prints. */
  async function serve (args: string[], env: Record<string, string> = {}): Promise<{ url: string, output: () => string }> {
    const proc = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', ...args], { env: { ...process.env, ...env } })
    child = proc
    let out = ''
    proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { out += d.toString() })
    const url = await within('the URL line from starsock serve', new Promise<string>((resolve, reject) => {
      proc.stdout.on('data', () => {
        const m = /^starsock (http:\/\/127\.0\.0\.1:\d+) /m.exec(out)
        if (m?.[1] !== undefined) resolve(m[1])
      })
      proc.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)))
    }), 15_000)
    return { url, output: () => out }
  }

  it('starts, serves, logs JSON at the chosen level, and stops on SIGTERM with exit 0', async () => {
    const { url, output } = await serve(['--port', '0', '--log-level', 'debug'])
    expect(await (await fetch(`${url}/healthz`)).text()).toBe('ok\n')
    expect(output()).toMatch(/^\{"level":30,.*"msg":"listening"\}$/m)
    const proc = child as ChildProcess
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve))
    proc.kill('SIGTERM')
    expect(await within('exit after SIGTERM', exited, 10_000)).toBe(0)
    expect(output()).toContain('"msg":"closed"')
  })

  it('takes PORT from the environment and the original flags', async () => {
    const { url } = await serve(['--disableCryptoChallenge', '--disableStrictMultiaddr', '--disableMetrics'], { PORT: '0' })
    expect((await fetch(`${url}/metrics`)).status).toBe(404)
  })

  it('lists every flag in --help', () => {
    const r = run(['serve', '--help'])
    expect(r.status).toBe(0)
    for (const flag of ['--port', '--host', '--key', '--cert', '--pfx', '--disableCryptoChallenge', '--disableStrictMultiaddr', '--disableMetrics',
      '--allow-peer', '--token', '--log-level', '--max-message-bytes', '--max-peers', '--max-dials-per-second', '--stream-buffer-bytes',
      '--stream-byte-budget', '--stream-idle-timeout-ms', '--announce-interval-ms', '--announce-batch-peers', '--max-joins-per-ip-per-minute',
      '--max-peers-per-ip', '--identity-grace-ms', '--udp-max-allocations-per-ip', '--udp-owner-grace-ms', '--gateway', '--gateway-insecure']) {
      expect(r.stdout).toContain(flag)
    }
  })

  it.each([
    [['serve', '--port', 'abc'], "option '--port <port>' argument 'abc' is invalid"],
    [['serve', '--port', '70000'], 'Must be at most 65535'],
    [['serve', '--max-message-bytes', '10'], 'Must be at least 1000000'],
    [['serve', '--log-level', 'loud'], "argument 'loud' is invalid"],
    [['serve', '--bogus'], "unknown option '--bogus'"],
    [['serve', '--key', '/nonexistent/key.pem', '--cert', '/nonexistent/cert.pem'], 'cannot read --key /nonexistent/key.pem: ENOENT'],
    [['serve', '--key', '/dev/null'], '--key and --cert go together'],
    [['serve', '--sender-stall-timeout-ms', '60000'], 'senderStallTimeoutMs must be at most 15000'],
    [['serve', '--allow-peer', '12D3KooWtypo'], 'allowPeers: "12D3KooWtypo" is not a peer id (base58, e.g. 12D3KooW...)'],
    [['serve', '--allow', 'connect/tcp:127.0.0.1:80'], '--allow is for the gateway peer: add --gateway'],
    [['serve', '--allow', 'connect/tcp:127.0.0.1:80', '--gateway-insecure'], '--allow and --gateway-insecure are for the gateway peer: add --gateway'],
    [['listen', '--server', 'http://127.0.0.1:1', '--allow', 'file:*'], 'a file rule (--allow file...) needs --files DIR, the folder files are saved into'],
    [['listen', '--server', 'http://127.0.0.1:1', '--udp-relay-local', '127.0.0.1:5000'], '--udp-relay-local needs an --allow udp-relay[@PEERID] rule: without one no UDP relay half is taken'],
    [['nonsense'], "unknown command 'nonsense'"]
  ])('refuses %j with one readable line and a non-zero exit', (args, message) => {
    const r = run(args[0] === 'serve' ? [...args, '--port', '0', '--host', '127.0.0.1'] : args)
    expect(r.status).not.toBe(0)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toContain(message)
  })

  it('reports a port in use with one line', async () => {
    const { url } = await serve(['--port', '0'])
    const port = new URL(url).port
    const r = run(['serve', '--host', '127.0.0.1', '--port', port])
    expect(r.status).toBe(1)
    expect(r.stderr.trim()).toMatch(/^starsock serve: listen EADDRINUSE.*$/)
  })
})

describe('starsock id and starsock peers (the program)', () => {
  it('makes a key file with mode 0600 once, then shows the same peer id', async () => {
    const dir = mkdtempSync(`${tmpdir()}/starsock-id-`)
    try {
      const file = `${dir}/sub/key`
      const first = run(['id', '--key', file])
      expect(first.status).toBe(0)
      expect(first.stdout.trim()).toMatch(/^12D3KooW\w+$/)
      expect(first.stderr).toContain('made a new Ed25519 identity')
      expect(statSync(file).mode & 0o777).toBe(0o600)
      const again = run(['id', '--key', file, '--json'])
      expect(JSON.parse(again.stdout)).toEqual({ peerId: first.stdout.trim(), type: 'Ed25519', keyFile: file, created: false })
      const rsa = run(['id', '--key', `${dir}/rsa`, '--type', 'RSA'])
      expect(rsa.stdout.trim()).toMatch(/^Qm\w+$/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a key, config or TLS file that is not a small regular file (a device, a FIFO, a folder, a huge file) fails at once with one line naming it; nothing reads it whole', () => {
    const dir = mkdtempSync(`${tmpdir()}/starsock-files-`)
    try {
      const fifo = `${dir}/fifo`
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0)
      const huge = `${dir}/huge`
      writeFileSync(huge, Buffer.alloc(2 * 1024 * 1024))
      const cases: Array<[string[], RegExp]> = [
        [['id', '--key', '/dev/zero'], /^starsock: \/dev\/zero: not a regular file: not a key file$/],
        [['id', '--key', fifo], /^starsock: \S+\/fifo: not a regular file: not a key file$/],
        [['id', '--key', dir], /^starsock: \S+: not a regular file: not a key file$/],
        [['id', '--key', huge], /^starsock: \S+\/huge: 2097152 bytes; at most 65536: not a key file$/],
        [['up', '--config', '/dev/zero'], /^starsock: \/dev\/zero:1: config: not a regular file$/],
        [['up', '--config', fifo], /^starsock: \S+\/fifo:1: config: not a regular file$/],
        [['up', '--config', huge], /^starsock: \S+\/huge:1: config: 2097152 bytes; at most 1048576$/],
        [['serve', '--port', '0', '--key', '/dev/zero', '--cert', huge], /^starsock serve: cannot read --key \/dev\/zero: not a regular file$/]
      ]
      for (const [args, line] of cases) {
        const r = run(args)
        expect(r.status, args.join(' ')).toBe(1)
        expect(r.stderr.trim(), args.join(' ')).toMatch(line)
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('lists the peers online, as lines or JSON, and fails with one line when the server is down', async () => {
    const server = await startServer()
    const a = await createPeer({ server: server.url() })
    const b = await createPeer({ server: server.url() })
    try {
      // Not spawnSync: the server runs in this process and must keep answering.
      const runAsync = async (args: string[]): ReturnType<typeof runProgramAsync> => await runProgramAsync(args, 20_000)
      const lines = await runAsync(['peers', '--server', server.url()])
      expect(lines.status).toBe(0)
      expect(lines.stdout.trim().split('\n').sort()).toEqual([`${a.peerId} ${a.addr}`, `${b.peerId} ${b.addr}`].sort())
      const json = await runAsync(['peers', '--server', `/ip4/127.0.0.1/tcp/${server.port}/ws`, '--json'])
      const listed = (JSON.parse(json.stdout) as Array<{ peerId: string }>).map((p) => p.peerId).sort()
      expect(listed).toEqual([a.peerId, b.peerId].sort())
    } finally {
      await a.close()
      await b.close()
      await server.close()
    }
    const down = run(['peers', '--server', 'http://127.0.0.1:1', '--timeout-ms', '1000'])
    expect(down.status).toBe(1)
    expect(down.stderr.trim()).toBe('starsock: Server http://127.0.0.1:1 could not be reached within 1000 ms: nothing listens on 127.0.0.1:1 (E_SERVER_UNREACHABLE)')
    // A server with a token: STARSOCK_TOKEN serves as --token, as for every other client command.
    const guarded = await startServer({ token: 'sekrit' })
    try {
      const withEnv = await runProgramAsync(['peers', '--server', guarded.url()], 20_000, { STARSOCK_TOKEN: 'sekrit' })
      expect(withEnv.stderr).toBe('')
      expect(withEnv.status).toBe(0)
      const without = await runProgramAsync(['peers', '--server', guarded.url()], 20_000)
      expect(without.status).toBe(1)
      expect(without.stderr).toContain('(E_FORBIDDEN)')
    } finally {
      await guarded.close()
    }
    const bad = run(['peers', '--server', 'bogus'])
    expect(bad.stderr.trim()).toBe('starsock: server bogus is neither a URL nor a multiaddr')
  })
})

describe('the commands listen prints for peers, and --service values', () => {
  const url = 'http://127.0.0.1:9090'
  const id = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'
  it('a service rule gives forward --service (with --udp for a UDP service), a udp-relay rule relay --share', () => {
    expect(commandFor(parseRule('service:web'), url, id)).toBe(`starsock forward --server ${url} --peer ${id} --listen LOCAL_PORT --service web`)
    expect(commandFor(parseRule('service:dns'), url, id, 'udp')).toBe(`starsock forward --server ${url} --peer ${id} --listen LOCAL_PORT --service dns --udp`)
    expect(commandFor(parseRule('service:*'), url, id)).toBe(`starsock forward --server ${url} --peer ${id} --listen LOCAL_PORT --service NAME`)
    expect(commandFor(parseRule('udp-relay'), url, id)).toBe(`starsock relay --server ${url} --share ${id}`)
    expect(commandFor(parseRule('connect/tcp:127.0.0.1:5432'), url, id)).toBe(`starsock forward --server ${url} --peer ${id} --listen 5432 --to 127.0.0.1:5432`)
  })
  it('--service NAME=[udp:]HOST:PORT builds the services; a bad one is one readable reason', () => {
    expect(serviceList('dns=udp:127.0.0.1:53', serviceList('web=127.0.0.1:3000'))).toEqual({
      web: { to: { ip: '127.0.0.1', port: 3000 }, proto: 'tcp' },
      dns: { to: { ip: '127.0.0.1', port: 53 }, proto: 'udp' }
    })
    expect(serviceList('v6=tcp:[::1]:8080')).toEqual({ v6: { to: { ip: '::1', port: 8080 }, proto: 'tcp' } })
    expect(() => serviceList('web=127.0.0.1:0')).toThrow('A service needs a port (not 0).')
    expect(() => serviceList('__proto__=127.0.0.1:1')).toThrow('__proto__ is not a service name')
    expect(() => serviceList('web=sctp:127.0.0.1:1')).toThrow(/not a host name or address|Not HOST:PORT/)
  })
})

