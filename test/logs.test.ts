/**
 * `starsock serve`'s log lines, read from a real process: readable on a terminal (under
 * `script`, a real pseudo-terminal), JSON when piped or asked; one info line per join, leave, dial
 * and dial end, for starsock and legacy clients, with no token, key, signature, nonce, resume id
 * or payload in any line; and a flood of joins capped with a count of what was dropped.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { afterEach, describe, expect, it } from 'vitest'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { echo, readAll } from './helpers/connections.ts'
import { legacyDial, legacyExchange, startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { Programs } from './helpers/programs.ts'
import { connectSocket, dialAndEcho, echoIncoming, makeIdentity, request } from './helpers/raw-peer.ts'
import { testBytes, waitFor, within } from './helpers/server.ts'

const BIN = fileURLToPath(new URL('../bin/starsock.js', import.meta.url))
 
const ANSI = /\x1b\[[0-9;]*m/g

/** The log lines of a serve's stdout (every line but the URL banner), without colours. */
function logLines (out: string): string[] {
  return out.replace(ANSI, '').split(/\r?\n/).filter((l) => l.trim() !== '' && !l.startsWith('starsock http'))
}

/** The JSON log lines of `out` (fails on a line that is not JSON). */
function jsonLines (out: string): Array<Record<string, unknown>> {
  return logLines(out).map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>
    } catch {
      throw new Error(`not a JSON line: ${l}`)
    }
  })
}

/** `starsock serve` under a pseudo-terminal (`script`), its output as a terminal shows it. */
class TtyServe {
  private out = ''
  readonly proc: ChildProcessWithoutNullStreams
  readonly exited: Promise<number | null>

  constructor (args: string[], env: Record<string, string> = {}) {
    const cmd = [process.execPath, BIN, 'serve', '--host', '127.0.0.1', '--port', '0', ...args].map((a) => `'${a}'`).join(' ')
    this.proc = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: 'pipe', env: { ...process.env, ...env } })
    this.proc.stdout.on('data', (d: Buffer) => { this.out += d.toString() })
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)))
  }

  output (): string {
    return this.out
  }

  async url (): Promise<string> {
    await waitFor(`the URL line from starsock serve under a terminal (${this.out})`, () => /starsock http:\/\/127\.0\.0\.1:\d+/.test(this.out), 20_000)
    return /starsock (http:\/\/127\.0\.0\.1:\d+)/.exec(this.out)?.[1] ?? ''
  }

  /** SIGTERM to `script`, which ends the server's terminal session. */
  async stop (): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill('SIGTERM')
    await within('script and starsock serve to exit', this.exited, 10_000)
  }
}

const programs = new Programs()
const ttys: TtyServe[] = []
const peers: StarsockPeer[] = []
const legacies: LegacyPeer[] = []
afterEach(async () => {
  for (const p of peers.splice(0)) await p.close()
  for (const l of legacies.splice(0)) l.stop()
  for (const t of ttys.splice(0)) await t.stop()
  await programs.cleanup()
})

/** Join and leave one plain (legacy-style) address on the server at `url`. */
async function joinAndLeave (url: string): Promise<void> {
  const socket = await connectSocket(url)
  await request(socket, 'ss-join', ['/ip4/127.0.0.1/tcp/1/ws/p2p-websocket-star', ''])
  socket.close()
}

describe('log format', () => {
  it('on a terminal, serve writes readable lines (pino-pretty), one per event', async () => {
    const t = new TtyServe(['--disableCryptoChallenge'])
    ttys.push(t)
    await joinAndLeave(await t.url())
    await waitFor('the leave line on the terminal', () => t.output().includes('peer left'))
    const lines = logLines(t.output())
    expect(lines.some((l) => l.startsWith('{'))).toBe(false)
    const joined = lines.find((l) => l.includes('peer joined'))
    expect(joined).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: starsock:server:peers: peer joined \{"event":"join",.*"client":"legacy","transport":"websocket"/)
    expect(t.output()).toMatch(ANSI) // coloured on a terminal
  })

  it('on a terminal, --log-format json (and STARSOCK_LOG_FORMAT=json) writes JSON lines', async () => {
    const both = [new TtyServe(['--disableCryptoChallenge', '--log-format', 'json']), new TtyServe(['--disableCryptoChallenge'], { STARSOCK_LOG_FORMAT: 'json' })]
    ttys.push(...both) // both stopped after the test, even when the first fails
    for (const t of both) {
      await joinAndLeave(await t.url())
      await waitFor('the leave line on the terminal', () => t.output().includes('peer left'))
      const lines = jsonLines(t.output())
      expect(lines.find((l) => l.event === 'join')).toMatchObject({ level: 30, ns: 'starsock:server:peers', msg: 'peer joined', client: 'legacy' })
    }
  })

  it('piped, serve writes JSON lines; --log-format pretty writes readable ones without colour; a wrong format is one line', async () => {
    const json = await programs.serve(0, ['--log-level', 'info', '--disableCryptoChallenge'])
    await joinAndLeave(json.url)
    await waitFor('the leave line', () => json.program.out().includes('"event":"leave"'))
    expect(jsonLines(json.program.out()).map((l) => l.msg)).toEqual(expect.arrayContaining(['listening', 'peer joined', 'peer left']))

    const pretty = await programs.serve(0, ['--log-level', 'info', '--disableCryptoChallenge', '--log-format', 'pretty'])
    await joinAndLeave(pretty.url)
    await waitFor('the leave line', () => pretty.program.out().includes('peer left'))
    expect(pretty.program.out()).not.toMatch(ANSI)
    expect(logLines(pretty.program.out()).find((l) => l.includes('peer joined'))).toMatch(/^\[[\d:.]+\] INFO: starsock:server:peers: peer joined \{/)

    const wrong = programs.start(['serve', '--port', '0', '--log-format', 'xml'])
    expect(await within('serve with a wrong --log-format to exit', wrong.exited, 20_000)).toBe(1)
    expect(wrong.err().trim().split('\n')).toHaveLength(1)
    expect(wrong.err()).toContain("'xml' is invalid")
  })
})

describe('info lines per join, leave and dial', () => {
  it('a starsock peer: join, dial ok with its streams\' bytes, a failed dial, leave', async () => {
    const { program, url } = await programs.serve(0, ['--log-level', 'info'])
    const a = await createPeer({ server: url })
    const b = await createPeer({ server: url })
    peers.push(a, b)
    b.handle(echo)
    const conn = await a.dial(b.peerId)
    const back = readAll(conn)
    await conn.write(testBytes(5000))
    await conn.closeWrite()
    expect((await within('the echo', back, 10_000)).length).toBe(5000)
    const nobody = a.addr.replace(a.peerId, 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N')
    await expect(a.dial(nobody)).rejects.toMatchObject({ code: 'E_PEER_NOT_FOUND' })
    await a.close()
    await waitFor('the leave line of A', () => jsonLines(program.out()).some((l) => l.event === 'leave'), 10_000)
    await waitFor('the end line of the dial', () => jsonLines(program.out()).some((l) => l.event === 'streams'), 10_000)
    const lines = jsonLines(program.out())
    const short = (id: string): string => `${id.slice(0, 6)}…${id.slice(-6)}`
    expect(lines.filter((l) => l.event === 'join').map((l) => l.peer).sort()).toEqual([short(a.peerId), short(b.peerId)].sort())
    expect(lines.find((l) => l.event === 'join')).toMatchObject({ level: 30, msg: 'peer joined', client: 'starsock', transport: 'websocket', remote: expect.stringMatching(/^127\.0\.0\.1:\d+$/), ms: expect.any(Number) })
    expect(lines.find((l) => l.msg === 'dial ok')).toMatchObject({ event: 'dial', from: short(a.peerId), to: short(b.peerId), client: 'starsock', secure: true, ms: expect.any(Number) })
    expect(lines.find((l) => l.msg === 'dial failed')).toMatchObject({ event: 'dial', from: short(a.peerId), to: 'QmYyQS…Wjhx5N', code: 'E_PEER_NOT_FOUND' })
    const ended = lines.find((l) => l.event === 'streams')
    // Noise adds its handshake and tags: more than the 5000 bytes each way, and never fewer.
    expect(ended).toMatchObject({ level: 30, msg: 'dial streams ended', end: 'done', ms: expect.any(Number) })
    expect(ended?.up).toBeGreaterThan(5000)
    expect(ended?.down).toBeGreaterThan(5000)
    expect(lines.find((l) => l.event === 'leave')).toMatchObject({ level: 30, msg: 'peer left', peer: short(a.peerId), client: 'starsock', why: 'left', s: expect.any(Number) })
  })

  it('the legacy client: join, dial ok, the streams\' bytes, leave', async () => {
    const { program, port } = await programs.serve(0, ['--log-level', 'info'])
    const l1 = await startLegacyPeer(port, (conn) => { (conn as { source: unknown, sink: (s: unknown) => void }).sink((conn as { source: unknown }).source) })
    const l2 = await startLegacyPeer(port, () => {})
    legacies.push(l1, l2)
    const conn = await legacyDial(l2, l1.addr)
    expect((await within('the legacy echo', legacyExchange(conn, testBytes(3000)), 10_000)).length).toBe(3000)
    l2.stop()
    await waitFor('the leave line of the legacy dialer', () => jsonLines(program.out()).some((l) => l.event === 'leave'), 10_000)
    await waitFor('the end line of the dial', () => jsonLines(program.out()).some((l) => l.event === 'streams'), 10_000)
    const lines = jsonLines(program.out())
    expect(lines.filter((l) => l.event === 'join')).toHaveLength(2)
    expect(lines.find((l) => l.event === 'join')).toMatchObject({ msg: 'peer joined', client: 'legacy', transport: 'websocket' })
    expect(lines.find((l) => l.event === 'dial')).toMatchObject({ msg: 'dial ok', client: 'legacy', secure: false, to: expect.stringContaining('…') })
    expect(lines.find((l) => l.event === 'streams')).toMatchObject({ up: 3000, down: 3000 })
    expect(lines.find((l) => l.event === 'leave')).toMatchObject({ client: 'legacy', why: expect.any(String) })
  })
})

describe('what is never logged', () => {
  it('no token, public key, nonce, signature, resume id or payload in any line, even at trace', async () => {
    const token = 'tok-3c9f1e0d7b2a4d6f'
    const wrongToken = 'tok-wrong-88a1b2c3d4e5'
    const { program, url, port } = await programs.serve(0, ['--log-level', 'trace', '--token', token])
    const secrets: string[] = [token, wrongToken]

    await expect(connectSocket(url, { auth: { token: wrongToken } })).rejects.toThrow(/token/)
    const join = async (resume: string): Promise<{ socket: Awaited<ReturnType<typeof connectSocket>>, addr: string }> => {
      const socket = await connectSocket(url, { auth: { token } })
      await request(socket, 'starsock:hello', [{ resume }])
      const me = await makeIdentity(port)
      const keyHex = Buffer.from(publicKeyToProtobuf(me.key.publicKey)).toString('hex')
      const [err1, nonce] = await request(socket, 'ss-join', [me.addr, keyHex])
      expect(err1).toBeNull()
      const sig = Buffer.from(await me.key.sign(new TextEncoder().encode(String(nonce))))
      const [err2] = await request(socket, 'ss-join', [me.addr, sig.toString('hex')])
      expect(err2).toBeNull()
      secrets.push(resume, keyHex, String(nonce), sig.toString('hex'), sig.toString('base64'), Buffer.from(me.key.publicKey.raw).toString('hex'))
      return { socket, addr: me.addr }
    }
    const a = await join('a1'.repeat(20))
    const b = await join('b2'.repeat(20))
    echoIncoming({ socket: b.socket, key: undefined as never, id: '', addr: b.addr, announced: [], close: () => {} })
    const payload = Buffer.from('PAYLOAD-MARKER-5e1f'.repeat(50))
    secrets.push('PAYLOAD-MARKER', payload.subarray(0, 16).toString('hex'), payload.subarray(0, 15).toString('base64'))
    const echoed = await dialAndEcho({ socket: a.socket, key: undefined as never, id: '', addr: a.addr, announced: [], close: () => {} }, b.addr, payload)
    expect(echoed.equals(payload)).toBe(true)
    a.socket.close()
    b.socket.close()
    await waitFor('two leave lines', () => jsonLines(program.out()).filter((l) => l.event === 'leave').length === 2, 10_000)
    await waitFor('the end line of the dial', () => jsonLines(program.out()).some((l) => l.event === 'streams'), 10_000)

    const lines = [...logLines(program.out()), ...program.err().split('\n')]
    expect(lines.length).toBeGreaterThan(8)
    for (const line of lines) {
      for (const secret of secrets) expect(line.toLowerCase(), `a log line holds a secret (${secret.slice(0, 12)}…)`).not.toContain(secret.toLowerCase())
    }
  })
})

describe('a flood of joins', () => {
  it('is capped: lines past the cap are counted in a "suppressed" line, not written', async () => {
    const attempts = 2000
    const { program, url } = await programs.serve(0, ['--log-level', 'info'])
    const socket = await connectSocket(url)
    await within(`${attempts} refused joins`, Promise.all(Array.from({ length: attempts }, async () => await request(socket, 'ss-join', ['not-an-address', ''], 20_000))), 30_000)
    const refused = (): number => jsonLines(program.out()).filter((l) => l.msg === 'join refused').length
    const suppressed = (): number => jsonLines(program.out()).reduce((n, l) => n + (typeof l.suppressed === 'number' ? l.suppressed : 0), 0)
    // Every attempt is either written or counted, once the summary (at most a second later) is out.
    await waitFor(`written + suppressed = ${attempts}`, () => refused() + suppressed() === attempts, 10_000)
    socket.close()
    expect(suppressed()).toBeGreaterThan(0)
    expect(refused()).toBeLessThan(attempts / 2)
    const summary = jsonLines(program.out()).find((l) => l.suppressed !== undefined)
    expect(summary).toMatchObject({ level: 40, msg: 'log lines suppressed (over the log cap)', linesPerSecond: 20 })
  })
})
