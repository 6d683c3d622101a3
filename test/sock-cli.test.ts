import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { createHash } from 'node:crypto'
import net from 'node:net'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { LineReader, writeLine } from '../client/mux/lines.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import type { StarsockServer } from '../server/server.ts'
import { rejection } from './helpers/agents.ts'
import { startServer, testBytes, within } from './helpers/server.ts'
import { httpGet, httpServer, tcpEcho, tcpRoundTrip, type Closable } from './helpers/sockets.ts'
import { expectBytes } from './helpers/bytes.ts'
import { forwardCommand } from '../cli/tunnels.ts'

const BIN = fileURLToPath(new URL('../bin/starsock.js', import.meta.url))

/** A running `starsock` program with its output so far. */
interface Program {
  /** Send SIGTERM and wait for the exit code. */
  stop: () => Promise<number | null>
  proc: ChildProcessWithoutNullStreams
  out: () => string
  err: () => string
  /** Settles with the first JSON event named `event` on stdout. */
  event: (event: string, ms?: number) => Promise<Record<string, unknown>>
  exited: Promise<number | null>
}

describe('starsock listen, forward, expose and serve --gateway (the program)', () => {
  let server: StarsockServer & { port: number }
  let dir: string
  const programs: Program[] = []
  const cleanup: Closable[] = []

  const start = (args: string[]): Program => {
    const proc = spawn(process.execPath, [BIN, ...args], { stdio: 'pipe' })
    let out = ''
    let err = ''
    proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
    proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
    const event = async (name: string, ms = 15_000): Promise<Record<string, unknown>> => await within(`a "${name}" event from starsock ${args[0] ?? ''} (stderr: ${err})`, new Promise((resolve, reject) => {
      const check = (): void => {
        for (const line of out.split('\n')) {
          if (!line.startsWith('{')) continue
          const e = JSON.parse(line) as Record<string, unknown>
          if (e.event === name) { proc.stdout.off('data', check); resolve(e); return }
        }
      }
      proc.stdout.on('data', check)
      check()
      void exited.then((code) => reject(new Error(`exited with ${String(code)} before "${name}": ${err}`)))
    }), ms)
    const stop = async (): Promise<number | null> => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
      return await within(`starsock ${args[0] ?? ''} to exit after SIGTERM`, exited, 10_000)
    }
    const p = { proc, out: () => out, err: () => err, event, exited, stop }
    programs.push(p)
    return p
  }
  const key = (name: string): string => join(dir, name)
  /** `starsock listen` with the key "listener" on this test's server and `args`: its peer id and program. */
  const listener = (args: string[]): { listenerId: string, listen: Program } => {
    const listenerId = peerIdOf(key('listener'))
    return { listenerId, listen: start(['listen', '--server', server.url(), '--key', key('listener'), ...args]) }
  }
  const peerIdOf = (file: string): string => {
    const r = spawnSync(process.execPath, [BIN, 'id', '--key', file], { encoding: 'utf8', timeout: 20_000 })
    expect(r.status).toBe(0)
    return r.stdout.trim()
  }

  beforeEach(async () => {
    server = await startServer()
    dir = mkdtempSync(join(tmpdir(), 'starsock-sock-cli-'))
  })
  afterEach(async () => {
    for (const p of programs.splice(0)) {
      if (p.proc.exitCode === null) {
        p.proc.kill('SIGTERM')
        await within('a program to exit after SIGTERM', p.exited, 10_000).catch(() => p.proc.kill('SIGKILL'))
      }
    }
    for (const c of cleanup.splice(0)) await c.close()
    await server.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('listen with a rule and forward: an HTTP body arrives byte-exact; both log JSON events; SIGTERM exits 0', async () => {
    const body = testBytes(2 * 1024 * 1024)
    const web = await httpServer(body)
    cleanup.push(web)
    const { listenerId, listen } = listener(['--allow', `connect/tcp:127.0.0.1:${web.port}`, '--json'])
    expect((await listen.event('ready')).peerId).toBe(listenerId)
    const fwd = start(['forward', '--server', server.url(), '--key', key('client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${web.port}`, '--json'])
    const ready = await fwd.event('ready')
    expect(ready.secure).toBe(true)
    expect(await listen.event('session')).toMatchObject({ secure: true, initiator: false })
    const port = (ready.address as { port: number }).port
    const res = await within('the HTTP body through the forward', httpGet(`http://127.0.0.1:${port}/`), 15_000)
    expectBytes(res.body, body, 'the HTTP body through the forward')
    expect(await listen.event('offer')).toMatchObject({ allowed: true, by: 'rule', rule: `connect/tcp:127.0.0.1:${web.port}` })
    const connection = await fwd.event('connection')
    expect(connection).toMatchObject({ src: { ip: '127.0.0.1' } })
    expect((connection.src as { port: number }).port).toBeGreaterThanOrEqual(1) // the HTTP client's own port, not known here
    fwd.proc.kill('SIGTERM')
    expect(await within('forward to exit', fwd.exited, 10_000)).toBe(0)
    expect(await listen.event('mapping:close')).toMatchObject({ code: 'E_KILLED' })
  })

  it('the status says how each connection is protected: end-to-end encrypted by default; --insecure on both sides warns once each and says plaintext, peer unverified', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    /** Settles once `p`'s stderr matches `pattern`. */
    const said = async (p: Program, pattern: RegExp, what: string): Promise<void> => await within(what, new Promise<void>((resolve) => {
      const check = (): void => { if (pattern.test(p.err())) resolve() }
      p.proc.stderr.on('data', check)
      check()
    }), 15_000)
    const data = testBytes(64 * 1024)
    for (const insecure of [false, true]) {
      const flag = insecure ? ['--insecure'] : []
      const listenerId = peerIdOf(key(`listener-${String(insecure)}`))
      const clientId = peerIdOf(key(`client-${String(insecure)}`))
      const listen = start(['listen', '--server', server.url(), '--key', key(`listener-${String(insecure)}`), '--allow', `connect/tcp:127.0.0.1:${echo.port}`, '--no-prompt', ...flag])
      await said(listen, /listening as /, 'the listen ready line')
      const fwd = start(['forward', '--server', server.url(), '--key', key(`client-${String(insecure)}`), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${echo.port}`, ...flag])
      const words = insecure ? 'plaintext \\(--insecure\\)' : 'end-to-end encrypted \\(peer verified\\)'
      await said(fwd, new RegExp(`forwarding tcp 127\\.0\\.0\\.1:(\\d+) -> 127\\.0\\.0\\.1:${echo.port} through ${listenerId}; ${words}$`, 'm'), 'the forward ready line')
      await said(listen, new RegExp(`connection from ${clientId}: ${words}$`, 'm'), 'the session line of the listen')
      await said(listen, new RegExp(`mapping #\\d+ connect/tcp 127\\.0\\.0\\.1:${echo.port} open for ${clientId}; ${words}$`, 'm'), 'the mapping line of the listen')
      const port = Number(/forwarding tcp 127\.0\.0\.1:(\d+)/.exec(fwd.err())?.[1])
      expectBytes(await within('the echo through the forward', tcpRoundTrip(port, data), 15_000), data, 'the echo through the forward')
      const warning = /^starsock: warning: --insecure: .*peer ids are unverified \(only the server's word\)$/m
      if (insecure) {
        for (const p of [listen, fwd]) expect(p.err().split('\n')[0]).toMatch(warning)
        expect(listen.err()).toContain('plaintext connections allowed (--insecure: peer ids unverified)')
        expect(listen.err()).toMatch(new RegExp(`a peer runs: starsock forward .* --insecure$`, 'm'))
        expect(listen.err()).toContain(`for ${clientId} (unverified: plaintext) (rule `)
      } else {
        for (const p of [listen, fwd]) expect(p.err()).not.toMatch(warning)
        expect(listen.err()).toContain('; end-to-end encryption required')
        expect(listen.err()).not.toContain('--insecure')
      }
      fwd.proc.kill('SIGTERM')
      listen.proc.kill('SIGTERM')
      expect(await within('the forward to exit', fwd.exited, 10_000)).toBe(0)
      expect(await within('the listen to exit', listen.exited, 10_000)).toBe(0)
    }
  })

  it('a denied offer: forward exits 1 with one line naming E_DENIED, and nothing opens on the listener', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const { listenerId, listen } = listener(['--allow', 'connect/tcp:127.0.0.1:1', '--no-prompt', '--json'])
    await listen.event('ready')
    const fwd = start(['forward', '--server', server.url(), '--key', key('client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${echo.port}`])
    expect(await within('forward to exit', fwd.exited, 15_000)).toBe(1)
    expect(fwd.err().trim().split('\n')).toHaveLength(1)
    expect(fwd.err()).toMatch(/^starsock: No rule allows connect\/tcp 127\.0\.0\.1:\d+ \(E_DENIED\)$/m)
    expect(await listen.event('offer')).toMatchObject({ allowed: false })
    expect(echo.open()).toBe(0)
  })

  it('forward and expose to their own peer id exit 1 at once with one line (E_BAD_REQUEST), not waiting for it to come online; up shows that mapping failed, not retried', async () => {
    const self = peerIdOf(key('self'))
    for (const args of [['forward', '--listen', '0', '--to', '127.0.0.1:9'], ['expose', '--port', '0', '--to', '127.0.0.1:9']]) {
      const p = start([args[0] as string, '--server', server.url(), '--key', key('self'), '--peer', self, ...args.slice(1)])
      expect(await within(`${args[0] ?? ''} to exit`, p.exited, 10_000)).toBe(1)
      expect(p.err().trim()).toMatch(new RegExp(`^starsock: ${self} is this peer itself: a peer does not dial its own id \\(dial its address, \\S+, to reach itself\\) \\(E_BAD_REQUEST\\)$`))
    }
    const config = join(dir, 'up.toml')
    writeFileSync(config, `server = "${server.url()}"\nkey = "${key('self')}"\n[[forward]]\npeer = "${self}"\nlisten = "127.0.0.1:0"\nto = "127.0.0.1:9"\n`)
    const up = start(['up', '--config', config, '--json'])
    expect(await up.event('failed')).toMatchObject({ code: 'E_BAD_REQUEST', final: true })
  })

  it('expose started before its peer is online says what it will expose and that nothing is bound yet (address null in JSON, never port 0); back gives the bound port', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const listenerId = peerIdOf(key('listener'))
    const args = (name: string): string[] => ['expose', '--server', server.url(), '--key', key(name), '--peer', listenerId, '--bind-host', '127.0.0.1', '--port', '0', '--to', `127.0.0.1:${echo.port}`]
    const text = start(args('text'))
    const json = start([...args('json'), '--json'])
    expect(await json.event('ready')).toMatchObject({ address: null })
    await within('the text ready line', new Promise<void>((resolve) => {
      const check = (): void => { if (text.err().includes(`will expose tcp 127.0.0.1 (any port) once ${listenerId} is online, nothing bound yet -> 127.0.0.1:${echo.port}`)) resolve(); else setTimeout(check, 50) }
      check()
    }))
    expect(text.err()).not.toMatch(/exposing tcp :0/)
    const { listen } = listener(['--allow', 'bind/tcp:127.0.0.1:*', '--no-prompt', '--json'])
    await listen.event('ready')
    const back = await json.event('back', 20_000)
    expect((back.address as { port: number }).port).toBeGreaterThan(0)
    expect(await tcpRoundTrip((back.address as { port: number }).port, testBytes(1000))).toEqual(Buffer.from(testBytes(1000)))
  })

  it('listen --ask: the person at the terminal allows an offer', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const { listenerId, listen } = listener(['--ask', '--json'])
    await listen.event('ready')
    const fwd = start(['forward', '--server', server.url(), '--key', key('client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${echo.port}`, '--name', 'echo service', '--json'])
    await within('the prompt on the listener', new Promise<void>((resolve) => {
      const check = (): void => { if (listen.err().includes('Allow? [y/N]')) resolve() }
      listen.proc.stderr.on('data', check)
      check()
    }), 15_000)
    expect(listen.err()).toContain(`connect/tcp 127.0.0.1:${echo.port} "echo service"`)
    listen.proc.stdin.write('y\n')
    const ready = await fwd.event('ready')
    const data = testBytes(64 * 1024)
    expectBytes(await within('the echo through the forward', tcpRoundTrip((ready.address as { port: number }).port, data), 15_000), data, 'the echo through the forward')
    expect(await listen.event('offer')).toMatchObject({ allowed: true, by: 'person' })
  })

  it('listen --files asks the person (sender, name, size) before a byte flows: yes saves it, no refuses it, too big is refused unasked', async () => {
    const files = join(dir, 'in')
    const { listenerId, listen } = listener(['--files', files, '--ask', '--max-file-bytes', '1000000', '--json'])
    expect(await listen.event('ready')).toMatchObject({ files })
    const sender = createSockAgent(await createPeer({ server: server.url() }))
    cleanup.push({ close: async () => { await sender.close(); await sender.peer.close() } })
    const prompts = (): number => listen.err().split('Allow? [y/N]').length - 1
    const prompted = async (n: number): Promise<void> => await within(`prompt ${n} on the listener`, new Promise<void>((resolve) => {
      const check = (): void => { if (prompts() >= n) resolve() }
      listen.proc.stderr.on('data', check)
      check()
    }), 15_000)

    const data = Buffer.from(testBytes(600_000, 5))
    const granted = sender.offerFile(listenerId, { name: 'report.pdf', size: data.byteLength })
    await prompted(1)
    expect(listen.err()).toContain(`peer ${sender.peer.peerId} asks: file "report.pdf", 585.9 KiB (600000 bytes). Allow? [y/N]`)
    expect(readdirSync(files)).toEqual([])
    listen.proc.stdin.write('y\n')
    const channel = await within('the file offer to be granted after y', granted)
    await writeLine(channel, { name: 'report.pdf', size: data.byteLength, sha256: createHash('sha256').update(data).digest('hex') })
    await channel.write(data)
    await channel.closeWrite()
    expect(await within('the listener\'s answer', new LineReader(channel).next(), 10_000)).toMatchObject({ ok: true })
    const saved = await listen.event('file')
    expect(saved).toMatchObject({ ok: true, name: 'report.pdf', size: data.byteLength, peerId: sender.peer.peerId })
    expectBytes(readFileSync(String(saved.path)), data, 'the saved file')

    const denied = rejection(sender.offerFile(listenerId, { name: 'second.bin', size: 10 }))
    await prompted(2)
    listen.proc.stdin.write('n\n')
    expect(await within('the file offer to be denied after n', denied)).toMatchObject({ code: 'E_DENIED' })
    expect(await rejection(sender.offerFile(listenerId, { name: 'huge.iso', size: 1_000_001 }))).toMatchObject({ code: 'E_LIMIT_FILE_SIZE' })
    expect(prompts()).toBe(2)
    expect(readdirSync(files)).toHaveLength(1)
  })

  it('listen --max-bound-ports-total: binds of several identities stop at the total with E_LIMIT_TOTAL, logged as a limit event', async () => {
    const { listenerId, listen } = listener(['--allow', 'bind/tcp:127.0.0.1:0', '--max-bound-ports-total', '2', '--no-prompt', '--json'])
    await listen.event('ready')
    const binders = await Promise.all([1, 2, 3].map(async () => {
      const a = createSockAgent(await createPeer({ server: server.url() }))
      cleanup.push({ close: async () => { await a.close(); await a.peer.close() } })
      return a
    }))
    for (const b of binders.slice(0, 2)) expect((await b.bind(listenerId, { host: '127.0.0.1', port: 0 })).bound?.port).toBeGreaterThan(0)
    const third = binders[2] as SockAgent
    const err = await rejection(third.bind(listenerId, { host: '127.0.0.1', port: 0 }))
    expect(err.code).toBe('E_LIMIT_TOTAL')
    expect(err.message).toBe('This peer listens on 2 ports for other peers, its total for all peers together (maxBoundPortsTotal 2); try later')
    expect(await listen.event('limit')).toMatchObject({ code: 'E_LIMIT_TOTAL', what: 'ports', peerId: third.peer.peerId })
  })

  it('serve --gateway: expose makes the server host listen, and a TCP client reaches the local service', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const serve = start(['serve', '--host', '127.0.0.1', '--port', '0', '--gateway', '--gateway-key', key('gateway'), '--allow', 'bind/tcp:127.0.0.1:*', '--log-level', 'warn'])
    const [url, gatewayId] = await within('the URL and gateway lines', new Promise<[string, string]>((resolve) => {
      const check = (): void => {
        const u = /^starsock (http:\/\/127\.0\.0\.1:\d+) /m.exec(serve.out())?.[1]
        const g = /^gateway peer (\w+) /m.exec(serve.out())?.[1]
        if (u !== undefined && g !== undefined) resolve([u, g])
      }
      serve.proc.stdout.on('data', check)
    }), 20_000)
    const exp = start(['expose', '--server', url, '--key', key('client'), '--peer', gatewayId, '--bind-host', '127.0.0.1', '--port', '0', '--to', `127.0.0.1:${echo.port}`, '--json'])
    const ready = await exp.event('ready')
    expect(ready.secure).toBe(true)
    const port = (ready.address as { port: number }).port
    expect(port).toBeGreaterThan(0)
    const data = testBytes(256 * 1024)
    expectBytes(await within('the echo through the gateway\'s port', tcpRoundTrip(port, data), 15_000), data, 'the echo through the gateway\'s port')
    // A plaintext expose is refused: the gateway requires end-to-end encryption unless --gateway-insecure.
    const plain = start(['expose', '--server', url, '--key', key('plain'), '--peer', gatewayId, '--bind-host', '127.0.0.1', '--port', '0', '--to', `127.0.0.1:${echo.port}`, '--insecure'])
    expect(await within('the plaintext expose to exit', plain.exited, 20_000)).toBe(1)
    expect(plain.err()).toMatch(/^starsock: .*refused a plaintext connection: .* \(E_SECURE_REQUIRED\)$/m)
  })

  it('serve --gateway --gateway-insecure warns, and takes a plaintext expose --insecure, whose ready line says plaintext', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const serve = start(['serve', '--host', '127.0.0.1', '--port', '0', '--gateway', '--gateway-insecure', '--gateway-key', key('gateway'), '--allow', 'bind/tcp:127.0.0.1:*', '--log-level', 'warn'])
    const [url, gatewayId] = await within('the URL and gateway lines', new Promise<[string, string]>((resolve) => {
      const check = (): void => {
        const u = /^starsock (http:\/\/127\.0\.0\.1:\d+) /m.exec(serve.out())?.[1]
        const g = /^gateway peer (\w+) /m.exec(serve.out())?.[1]
        if (u !== undefined && g !== undefined) resolve([u, g])
      }
      serve.proc.stdout.on('data', check)
      check()
    }), 20_000)
    expect(serve.err()).toMatch(/^starsock serve: warning: --gateway-insecure: /m)
    const exp = start(['expose', '--server', url, '--key', key('client'), '--peer', gatewayId, '--bind-host', '127.0.0.1', '--port', '0', '--to', `127.0.0.1:${echo.port}`, '--json', '--insecure'])
    const ready = await exp.event('ready')
    expect(ready.secure).toBe(false)
    const data = testBytes(64 * 1024)
    expectBytes(await within('the echo through the gateway\'s port, in plaintext', tcpRoundTrip((ready.address as { port: number }).port, data), 15_000), data, 'the echo through the gateway\'s port')
  })

  it.each([
    [['forward', '--server', 'http://127.0.0.1:1', '--peer', 'nope', '--listen', '0', '--to', '127.0.0.1:1'], /--peer.*Not a peer id/],
    [['forward', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--listen', '0', '--to', 'nohost'], /--to.*Not HOST:PORT/],
    [['expose', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--port', '70000', '--to', '127.0.0.1:1'], /--port.*at most 65535/],
    [['listen', '--server', 'http://127.0.0.1:1', '--allow', 'open:*:*'], /--allow.*KIND\[\/PROTO\]:HOST:PORT/],
    [['listen', '--server', 'http://127.0.0.1:1', '--allow', 'bind/udp:*:9-2'], /port range 9-2/],
    [['listen', '--server', 'http://127.0.0.1:1', '--allow', 'file:/tmp'], /--allow.*file\[:\*\]\[@PEERID\]/],
    [['listen', '--server', 'http://127.0.0.1:1', '--files', '/tmp/x', '--max-file-bytes', 'lots'], /--max-file-bytes.*Not an integer/],
    [['listen', '--server', 'http://127.0.0.1:1', '--max-bound-ports-total', '-1'], /--max-bound-ports-total.*at least 0/],
    [['serve', '--gateway', '--allow', 'connect/sctp:*:1'], /--allow/],
    [['forward', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--listen', '0', '--to', '127.0.0.1:1', '--listen', '0'], /^starsock: 2 --listen but 1 --to \(or --service\): give one --to \(or --service\) for each --listen, in order/],
    [['forward', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--listen', '0', '--to', '127.0.0.1:1', '--to', '127.0.0.1:2'], /^starsock: 1 --listen but 2 --to \(or --service\): /],
    [['expose', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--port', '0', '--port', '0', '--to', '127.0.0.1:1'], /^starsock: 2 --port but 1 --to: give one --to for each --port, in order/],
    [['listen', '--server', 'http://127.0.0.1:1', '--ask-timeout-ms', '5'], /--ask-timeout-ms.*at least 1000/],
    [['listen', '--server', 'http://127.0.0.1:1', '--udp-relay-local', 'localhost:53'], /--udp-relay-local.*Not IP:PORT/],
    [['listen', '--server', 'http://127.0.0.1:1', '--service', 'web'], /--service.*Not NAME=\[udp:\]HOST:PORT/],
    [['listen', '--server', 'http://127.0.0.1:1', '--service', '-x=127.0.0.1:1'], /--service.*-x is not a service name/],
    [['listen', '--server', 'http://127.0.0.1:1', '--service', 'web=127.0.0.1:1', '--service', 'web=127.0.0.1:2'], /--service.*Service web is given twice/],
    [['forward', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--listen', '0', '--service', 'a b'], /--service.*Not a service name/],
    [['forward', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--listen', '0', '--to', '127.0.0.1:1', '--allow-from', '10.0.0.300'], /--allow-from.*10\.0\.0\.300/],
    [['forward', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--listen', '0', '--listen', '0', '--service', 'web'], /^starsock: 2 --listen but 1 --to \(or --service\): /],
    // A single-valued flag given twice is refused, never the last one kept.
    [['forward', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--peer', '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK', '--listen', '0', '--to', '127.0.0.1:1'], /^starsock: --peer given twice: one forward process talks to one peer; run another process or use starsock up\n$/],
    [['expose', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--bind-host', '127.0.0.1', '--port', '0', '--to', '127.0.0.1:1', '--bind-host', '0.0.0.0', '--port', '0', '--to', '127.0.0.1:2'], /^starsock: --bind-host given twice: /],
    [['forward', '--server', 'http://127.0.0.1:1', '--server', 'http://127.0.0.1:2', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--listen', '0', '--to', '127.0.0.1:1'], /^starsock: --server given twice: /],
    [['forward', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--udp', '--listen', '0', '--to', '127.0.0.1:1', '--udp'], /^starsock: --udp given twice: /],
    // Times a Node timer cannot hold (it would fire at once) are refused.
    [['listen', '--server', 'http://127.0.0.1:1', '--ask-timeout-ms', '2147483648'], /--ask-timeout-ms.*at most 2147483647/],
    [['listen', '--server', 'http://127.0.0.1:1', '--lease-ms', '99999999999'], /--lease-ms.*at most 2147483647/],
    [['forward', '--server', 'http://127.0.0.1:1', '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', '--listen', '0', '--to', '127.0.0.1:1', '--timeout-ms', '2147483648'], /--timeout-ms.*at most 2147483647/]
  ])('bad flags %j: one readable line and a non-zero exit', (args, pattern) => {
    const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 })
    expect(r.status).not.toBe(0)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(pattern)
  })

  it('a command parsed a second time starts from no --to (the first parse\'s targets are not kept)', async () => {
    const runs: Array<Promise<number>> = []
    const command = forwardCommand((run) => { runs.push(run) })
    const base = ['--server', 'http://127.0.0.1:1', '--timeout-ms', '300', '--key', key('again'), '--peer', '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA']
    await command.parseAsync([...base, '--listen', '0', '--listen', '0', '--to', '127.0.0.1:1'], { from: 'user' })
    expect((await rejection(runs[0] as Promise<number>)).message).toMatch(/^2 --listen but 1 --to/)
    // One pair now: it gets as far as the (unreachable) server, not "1 --listen but 2 --to".
    await command.parseAsync([...base, '--listen', '0', '--to', '127.0.0.1:2'], { from: 'user' })
    expect((await within('the second run', rejection(runs[1] as Promise<number>), 10_000)).code).toBe('E_SERVER_UNREACHABLE')
  })

  /** A TCP server on 127.0.0.1 that answers every connection with `tag` + what it was sent, then ends. */
  const taggedEcho = async (tag: string): Promise<{ port: number, close: () => void }> => {
    const srv = net.createServer({ allowHalfOpen: true }, (socket) => {
      socket.write(tag + ':')
      socket.pipe(socket)
    })
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
    const close = (): void => { srv.close() }
    cleanup.push({ close })
    return { port: (srv.address() as net.AddressInfo).port, close }
  }
  /** A port free on 127.0.0.1 now. */
  const freePort = async (): Promise<number> => await new Promise((resolve) => {
    const srv = net.createServer()
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })

  it('forward and expose with repeated flags run every pair in one process over one connection, each listen port to its own target (in order, --to before --listen too); events name their tunnel', async () => {
    const one = await taggedEcho('one')
    const two = await taggedEcho('two')
    /** What `port` answers to `data`: which target was reached. */
    const reached = async (port: number, what: string, data = testBytes(64 * 1024, port % 251)): Promise<string> => {
      const answer = await within(what, tcpRoundTrip(port, data), 15_000)
      const tag = answer.subarray(0, 4).toString()
      expectBytes(answer.subarray(4), data, what)
      return tag
    }
    const { listenerId, listen } = listener(['--allow', `connect/tcp:127.0.0.1:${one.port}`, '--allow', `connect/tcp:127.0.0.1:${two.port}`, '--allow', 'bind/tcp:127.0.0.1:0', '--no-prompt', '--json'])
    await listen.event('ready')
    const [first, second] = [await freePort(), await freePort()]
    // --to before its --listen: the nth --to still goes with the nth --listen.
    const fwd = start(['forward', '--server', server.url(), '--key', key('client'), '--peer', listenerId, '--to', `127.0.0.1:${two.port}`, '--listen', String(first), '--to', `127.0.0.1:${one.port}`, '--listen', String(second), '--json'])
    await within('two ready events', new Promise<void>((resolve) => {
      const check = (): void => { if (fwd.out().split('"event":"ready"').length === 3) resolve() }
      fwd.proc.stdout.on('data', check)
      check()
    }), 20_000)
    const readies = fwd.out().split('\n').filter((l) => l.includes('"event":"ready"')).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(readies.map((r) => [r.tunnel, (r.address as { port: number }).port, r.to, r.secure]).sort()).toEqual([
      [1, first, { ip: '127.0.0.1', port: two.port }, true],
      [2, second, { ip: '127.0.0.1', port: one.port }, true]
    ])
    expect(await reached(first, 'the first --listen')).toBe('two:')
    expect(await reached(second, 'the second --listen')).toBe('one:')
    // Expose, --port then --to: each port the peer listens on reaches its own target.
    const exp = start(['expose', '--server', server.url(), '--key', key('client2'), '--peer', listenerId, '--bind-host', '127.0.0.1', '--port', '0', '--to', `127.0.0.1:${one.port}`, '--port', '0', '--to', `127.0.0.1:${two.port}`])
    await within('both expose ready lines', new Promise<void>((resolve) => {
      const check = (): void => { if (/^.*tunnel 2: exposing tcp 127\.0\.0\.1:\d+ on /m.test(exp.err()) && /tunnel 1: exposing tcp /.test(exp.err())) resolve() }
      exp.proc.stderr.on('data', check)
      check()
    }), 20_000)
    const ports = [...exp.err().matchAll(/tunnel (\d): exposing tcp 127\.0\.0\.1:(\d+) on \S+ -> 127\.0\.0\.1:(\d+)/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])] as const)
    expect(ports.map(([n, , to]) => [n, to]).sort()).toEqual([[1, one.port], [2, two.port]])
    for (const [n, port] of ports) expect(await reached(port, `exposed port ${n}`)).toBe(n === 1 ? 'one:' : 'two:')
    const sessions = listen.out().split('\n').filter((l) => l.includes('"event":"session"'))
    expect(sessions).toHaveLength(2) // one connection from each program, for two mappings each
    fwd.proc.kill('SIGTERM')
    exp.proc.kill('SIGTERM')
    expect(await within('forward to exit', fwd.exited, 10_000)).toBe(0)
    expect(await within('expose to exit', exp.exited, 10_000)).toBe(0)
  })

  it('the prompt: a command typed while an offer waits runs and the offer is asked again; a non-answer asks again; y answers', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const { listenerId, listen } = listener(['--ask', '--json'])
    await listen.event('ready')
    const prompts = (): number => listen.err().split('Allow? [y/N]').length - 1
    const said = async (what: string, check: () => boolean): Promise<void> => await within(what, new Promise<void>((resolve) => {
      const on = (): void => { if (check()) resolve() }
      listen.proc.stderr.on('data', on)
      on()
    }), 15_000)
    const fwd = start(['forward', '--server', server.url(), '--key', key('client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${echo.port}`, '--json'])
    await said('the first prompt', () => prompts() === 1)
    expect(listen.err()).toContain('Allow? [y/N] (y yes, n no, a always for this peer) ')
    listen.proc.stdin.write('list\n')
    await said('the prompt again after list', () => prompts() === 2)
    expect(listen.err()).toContain('no mappings\n')
    listen.proc.stdin.write('sure\n')
    await said('the prompt again after a non-answer', () => prompts() === 3)
    expect(listen.err()).toContain('not an answer: type y (yes), n (no) or a (always for this peer); commands: list, kill N\n')
    expect(fwd.out()).not.toContain('"event":"ready"')
    listen.proc.stdin.write('y\n')
    const ready = await fwd.event('ready')
    const data = testBytes(32 * 1024)
    expectBytes(await within('the echo through the forward', tcpRoundTrip((ready.address as { port: number }).port, data), 15_000), data, 'the echo after y')
    expect(await listen.event('offer')).toMatchObject({ allowed: true, by: 'person' })
    expect(prompts()).toBe(3)
  })

  it('listen --ask-timeout-ms: an offer nobody answers is denied when it runs out', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const { listenerId, listen } = listener(['--ask', '--ask-timeout-ms', '1500', '--json'])
    await listen.event('ready')
    const fwd = start(['forward', '--server', server.url(), '--key', key('client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${echo.port}`])
    expect(await within('forward to exit', fwd.exited, 30_000)).toBe(1)
    expect(fwd.err()).toMatch(/\(E_DENIED\)$/m)
    expect(listen.err()).toContain('(no answer in time: denied)')
    expect(await listen.event('offer')).toMatchObject({ allowed: false })
  })

  /** Connect from `localAddress`, send `data`, settle with what came back, or the error (a reset). */
  const roundTripFrom = async (localAddress: string, port: number, data: Uint8Array): Promise<Buffer | Error> => await new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress, allowHalfOpen: true })
    const parts: Buffer[] = []
    socket.on('data', (c: Buffer) => parts.push(c))
    socket.on('end', () => { socket.end(); resolve(Buffer.concat(parts)) })
    socket.on('error', (err) => resolve(err))
    socket.end(data)
  })
  /** Settles once `p`'s stderr matches `pattern`. */
  const saidOn = async (p: Program, pattern: RegExp, what: string): Promise<void> => await within(what, new Promise<void>((resolve) => {
    const check = (): void => { if (pattern.test(p.err())) resolve() }
    p.proc.stderr.on('data', check)
    check()
  }), 20_000)

  it('listen --service and forward --service: the peer reaches the target the listener chose; "a" at the prompt adds a rule, printed, and the next offer is not asked', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const clientId = peerIdOf(key('client'))
    const { listenerId, listen } = listener(['--service', `echo=127.0.0.1:${echo.port}`, '--ask', '--json'])
    const ready = await listen.event('ready')
    expect(ready.commands).toEqual([`starsock forward --server ${server.url()} --peer ${listenerId} --listen LOCAL_PORT --service echo`])
    expect(ready.services).toEqual({ echo: `127.0.0.1:${echo.port}` })
    const fwd = start(['forward', '--server', server.url(), '--key', key('client'), '--peer', listenerId, '--listen', '0', '--service', 'echo', '--json'])
    await saidOn(listen, /Allow\? \[y\/N\]/, 'the prompt on the listener').catch((err: Error) => { throw new Error(`${err.message}: listen ${listen.out()} ${listen.err()} forward ${fwd.out()} ${fwd.err()}`) })
    expect(listen.err()).toContain(`asks: service/tcp echo -> 127.0.0.1:${echo.port}. Allow? [y/N]`)
    listen.proc.stdin.write('a\n')
    expect(await listen.event('rule')).toMatchObject({ rule: `service:echo@${clientId}`, peerId: clientId })
    const fready = await fwd.event('ready')
    expect(fready).toMatchObject({ service: 'echo', to: null })
    const data = testBytes(64 * 1024, 3)
    expectBytes(await within('the echo through the service', tcpRoundTrip((fready.address as { port: number }).port, data), 15_000), data, 'the echo through the service')
    expect(await fwd.stop()).toBe(0)
    // The rule holds for this peer: no second prompt.
    const again = start(['forward', '--server', server.url(), '--key', key('client'), '--peer', listenerId, '--listen', '0', '--service', 'echo', '--json'])
    const again1 = await again.event('ready')
    expectBytes(await within('the echo through the service again', tcpRoundTrip((again1.address as { port: number }).port, data), 15_000), data, 'the echo through the service again')
    expect(listen.err().split('Allow? [y/N]').length - 1).toBe(1)
    const offers = (): Array<Record<string, unknown>> => listen.out().split('\n').filter((l) => l.includes('"event":"offer"')).map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(offers().map((o) => [o.allowed, o.by])).toEqual([[true, 'person'], [true, 'rule']])
    expect(offers()[1]).toMatchObject({ rule: `service:echo@${clientId}` })
    // An unknown name is denied with a clear line.
    const unknown = start(['forward', '--server', server.url(), '--key', key('client2'), '--peer', listenerId, '--listen', '0', '--service', 'nope'])
    expect(await within('the forward of an unknown service to exit', unknown.exited, 20_000)).toBe(1)
    expect(unknown.err()).toMatch(/nope.*\(E_DENIED\)$/m)
  })

  it('expose to 0.0.0.0 prints where the port is reached (not 0.0.0.0, not :0) on both sides; --allow-from on expose and forward refuses other clients, counted and said', async () => {
    const echo = await tcpEcho()
    cleanup.push(echo)
    const { listenerId, listen } = listener(['--allow', 'bind/tcp:0.0.0.0:0', '--allow', `connect/tcp:127.0.0.1:${echo.port}`, '--no-prompt', '--json'])
    await listen.event('ready')
    const exp = start(['expose', '--server', server.url(), '--key', key('client'), '--peer', listenerId, '--port', '0', '--to', `127.0.0.1:${echo.port}`, '--allow-from', '127.0.0.2/32', '--json'])
    const ready = await exp.event('ready')
    const bound = ready.address as { ip: string, port: number }
    expect(bound.port).toBeGreaterThan(0)
    const addresses = ready.addresses as Array<{ ip: string, port: number }>
    expect(addresses.length).toBeGreaterThan(0)
    expect(addresses.every((a) => a.ip !== '0.0.0.0' && a.ip !== '::' && a.port === bound.port)).toBe(true)
    expect(addresses).toContainEqual({ ip: '127.0.0.1', port: bound.port })
    const listenBound = await listen.event('bound')
    expect(listenBound.address).toEqual(bound)
    expect(listenBound.addresses).toEqual(addresses)
    // 127.0.0.2 may connect; 127.0.0.1 is reset, and the listener says so.
    const data = testBytes(16 * 1024, 4)
    const allowed = await within('a round trip from 127.0.0.2', roundTripFrom('127.0.0.2', bound.port, data), 15_000)
    expect(allowed).toBeInstanceOf(Buffer)
    expectBytes(allowed as Buffer, data, 'the echo from 127.0.0.2')
    const refused = await within('a round trip from 127.0.0.1', roundTripFrom('127.0.0.1', bound.port, data), 15_000)
    expect(refused).toBeInstanceOf(Error)
    expect(await listen.event('refused-source')).toMatchObject({ src: { ip: '127.0.0.1' } })
    // A forward's own listener: loopback only by default; --allow-from 127.0.0.2 lets only that in.
    const fwd = start(['forward', '--server', server.url(), '--key', key('client2'), '--peer', listenerId, '--listen', '0.0.0.0:0', '--to', `127.0.0.1:${echo.port}`, '--allow-from', '127.0.0.2', '--json'])
    const fready = await fwd.event('ready')
    const fport = (fready.address as { port: number }).port
    expect(await within('a forward round trip from 127.0.0.1', roundTripFrom('127.0.0.1', fport, data), 15_000)).toBeInstanceOf(Error)
    expect(await fwd.event('refused')).toMatchObject({ src: { ip: '127.0.0.1' }, tunnel: 1 })
    expectBytes(await within('a forward round trip from 127.0.0.2', roundTripFrom('127.0.0.2', fport, data), 15_000) as Buffer, data, 'the forward echo from 127.0.0.2')
  })

  it('one of several tunnels that stops (killed by the far side\'s person) says so and leaves the others running; once all stopped, forward exits 1 with a fatal event', async () => {
    const one = await tcpEcho()
    const two = await tcpEcho()
    cleanup.push(one, two)
    const { listenerId, listen } = listener(['--allow', `connect/tcp:127.0.0.1:${one.port}`, '--ask', '--json'])
    await listen.event('ready')
    const prompts = (): number => listen.err().split('Allow? [y/N]').length - 1
    const fwd = start(['forward', '--server', server.url(), '--key', key('client'), '--peer', listenerId, '--listen', '0', '--to', `127.0.0.1:${one.port}`, '--listen', '0', '--to', `127.0.0.1:${two.port}`, '--json'])
    await saidOn(listen, /Allow\? \[y\/N\]/, 'the prompt for tunnel 2')
    listen.proc.stdin.write('y\n')
    await within('two ready events', new Promise<void>((resolve) => {
      const check = (): void => { if (fwd.out().split('"event":"ready"').length === 3) resolve() }
      fwd.proc.stdout.on('data', check)
      check()
    }), 20_000)
    const readies = fwd.out().split('\n').filter((l) => l.includes('"event":"ready"')).map((l) => JSON.parse(l) as Record<string, unknown>)
    const port = (n: number): number => ((readies.find((r) => r.tunnel === n) as Record<string, unknown>).address as { port: number }).port
    // The person kills tunnel 2's mapping (final: a kill is not asked again), once the listener has it.
    await within('both mappings at the listener', new Promise<void>((resolve) => {
      const check = (): void => { if (listen.out().split('"event":"mapping"').length === 3) resolve() }
      listen.proc.stdout.on('data', check)
      check()
    }), 20_000)
    listen.proc.stdin.write('kill 2\n')
    expect(await fwd.event('stopped')).toMatchObject({ tunnel: 2, code: 'E_KILLED' })
    expect(prompts()).toBe(1)
    const data = testBytes(32 * 1024, 7)
    expectBytes(await within('the echo through tunnel 1', tcpRoundTrip(port(1), data), 15_000), data, 'the echo through tunnel 1 after tunnel 2 stopped')
    expect(fwd.proc.exitCode).toBe(null)
    // Tunnel 1 killed too: every tunnel stopped, exit 1, and the last JSON line says why.
    listen.proc.stdin.write('kill 1\n')
    expect(await within('forward to exit', fwd.exited, 15_000)).toBe(1)
    const last = JSON.parse(fwd.out().trim().split('\n').pop() ?? '') as Record<string, unknown>
    expect(last).toMatchObject({ event: 'fatal', code: 'E_KILLED', exitCode: 1, message: expect.stringMatching(/^every tunnel stopped; 2 of 2 with an error, the first: /) })
    expect(last.message).toContain(`connect/tcp 127.0.0.1:${two.port} killed`) // tunnel 2's: the first to stop
    expect(fwd.err()).toMatch(/^starsock: every tunnel stopped; 2 of 2 with an error, the first: .* \(E_KILLED\)$/m)
  })
})

