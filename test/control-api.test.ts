/**
 * The local control API of an agent, over real HTTP (fetch) against a real server, real agents
 * and real UDP sockets: auth, Host and Origin checks, bounds, the runner's mappings, and the S2S
 * calls on the server's UDP relay.
 */
import dgram from 'node:dgram'
import http from 'node:http'
import net from 'node:net'
import { lstat, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { Channel } from '../client/mux/channel.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent, type SockAgentOptions } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import { registerUdpEndpoint } from '../client/sock/udp-register.node.ts'
import { readUdpHalf, type UdpHalf } from '../client/sock/udp-share.ts'
import { CONTROL_MAX_BODY_BYTES, controlTokenFile, startControlApi, writeControlToken, type ControlApi, type ControlApiOptions } from '../cli/up/control-api.ts'
import { AgentRunner } from '../cli/up/runner.ts'
import { takeUdpRelay, type UdpRelayEvent } from '../cli/udp-relay-take.ts'
import { parseRule } from '../shared/sock-rules.ts'
import type { StarsockServer } from '../server/server.ts'
import { rejected, startServer, testBytes, waitFor, within } from './helpers/server.ts'
import { tcpEcho, tcpRoundTrip, udpEcho } from './helpers/sockets.ts'
import { Programs, peerIdOf } from './helpers/programs.ts'

/** A port range of its own for each test file run (vitest runs files in parallel). */
function portRange (size: number): [number, number] {
  const low = 45000 + (process.pid % 400) * 40
  return [low, low + size - 1]
}

async function udpSocket (): Promise<{ socket: dgram.Socket, got: Buffer[], close: () => void }> {
  const socket = dgram.createSocket('udp4')
  const got: Buffer[] = []
  socket.on('message', (m) => got.push(m))
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  return { socket, got, close: () => { try { socket.close() } catch {} } }
}

async function portFree (port: number): Promise<boolean> {
  const s = dgram.createSocket('udp4')
  return await new Promise((resolve) => {
    s.once('error', () => resolve(false))
    s.bind(port, '127.0.0.1', () => { s.close(); resolve(true) })
  })
}

/** Settles once every one of `ports` can be bound (bounded by the caller's `within`). */
async function untilFree (...ports: number[]): Promise<void> {
  for (const port of ports) while (!await portFree(port)) await new Promise((resolve) => setTimeout(resolve, 20))
}

/** Write `text` on a new TCP connection to `url`'s port (and end it, with `end`); settles with what came back up to the first complete answer or the end. */
async function rawHttp (url: string, text: string, end = false): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const socket = net.connect(Number(new URL(url).port), '127.0.0.1', () => { if (end) socket.end(text); else socket.write(text) })
    let got = ''
    socket.on('data', (c: Buffer) => {
      got += c.toString()
      const m = /\r\ncontent-length: (\d+)\r\n[^]*?\r\n\r\n/i.exec(got)
      if (m !== null && got.length >= m.index + m[0].length + Number(m[1])) { socket.destroy(); resolve(got) }
    })
    socket.on('end', () => resolve(got))
    socket.on('error', reject)
  })
}

/** A raw HTTP request (fetch will not send another Host header): settles with the status and the JSON body. */
async function rawRequest (url: string, headers: Record<string, string>, body?: string, method = 'GET', setHost = true): Promise<{ status: number, json: any }> {
  return await new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent: false, setHost }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => { text += c.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text === '' ? undefined : JSON.parse(text) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

describe('control API', () => {
  let server: StarsockServer & { port: number }
  const cleanup: Array<{ close: () => unknown }> = []
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c.close()
    await server?.close()
  })

  const agent = async (options: SockAgentOptions = {}): Promise<SockAgent> => {
    const peer = await createPeer({ server: server.url() })
    const a = createSockAgent(peer, { host: createNodeHost(), ...options })
    cleanup.push({ close: async () => { await a.close(); await peer.close() } })
    return a
  }

  /** A server, real `starsock` programs and a folder for a config, all cleaned up after the test. */
  const upFixture = async (prefix: string): Promise<{ programs: Programs, dir: string }> => {
    server = await startServer()
    const programs = new Programs()
    cleanup.push({ close: async () => await programs.cleanup() })
    const dir = await mkdtemp(join(tmpdir(), prefix))
    cleanup.push({ close: async () => await rm(dir, { recursive: true, force: true }) })
    return { programs, dir }
  }

  const runnerOf = (a: SockAgent): AgentRunner => {
    const runner = new AgentRunner(a)
    cleanup.push(runner)
    return runner
  }

  const start = async (a: SockAgent, options: Partial<ControlApiOptions> = {}): Promise<ControlApi & { call: (method: string, path: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number, json: any, headers: Headers }> }> => {
    const api = await startControlApi({ runner: runnerOf(a), agent: a, listen: '127.0.0.1:0', ...options })
    cleanup.push(api)
    const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number, json: any, headers: Headers }> => {
      const res = await fetch(api.url + path, {
        method,
        headers: { authorization: `Bearer ${api.token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
      })
      const text = await res.text()
      return { status: res.status, json: text === '' ? undefined : JSON.parse(text), headers: res.headers }
    }
    return Object.assign(api, { call })
  }

  it('listens on loopback only; a generated token is 32 random bytes, kept in a 0600 file next to the key', async () => {
    server = await startServer()
    const a = await agent()
    for (const listen of ['0.0.0.0:0', '192.0.2.1:4040', '[::]:0', 'example.com:4040', '127.0.0.1', '127.0.0.1:99999']) {
      await expect(startControlApi({ runner: runnerOf(a), agent: a, listen }), listen).rejects.toThrow(/loopback|HOST:PORT/)
    }
    await expect(startControlApi({ runner: runnerOf(a), agent: a, listen: { ip: '10.0.0.1', port: 0 } })).rejects.toThrow(/not a loopback address/)
    await expect(startControlApi({ runner: runnerOf(a), agent: a, listen: '127.0.0.1:0', token: 'short' })).rejects.toThrow(/16 to 512/)
    const api = await start(a)
    expect(api.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(api.token).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const other = await start(a, { listen: 'localhost:0' })
    expect(other.token).not.toBe(api.token)
    await expect(startControlApi({ runner: runnerOf(a), agent: a, listen: new URL(api.url).host })).rejects.toThrow(/^control API cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/)
    const dir = await mkdtemp(join(tmpdir(), 'starsock-control-'))
    cleanup.push({ close: async () => await rm(dir, { recursive: true, force: true }) })
    const file = controlTokenFile(join(dir, 'agent.key'))
    expect(file).toBe(join(dir, 'agent.key.control-token'))
    await writeControlToken(file, api.token)
    expect(await readFile(file, 'utf8')).toBe(api.token + '\n')
    expect((await stat(file)).mode & 0o777).toBe(0o600)
  })

  it('answers only with the token, only to loopback Host names and pages, within its bounds', async () => {
    server = await startServer()
    const a = await agent()
    const api = await start(a, { token: 'a-long-enough-test-token' })
    // The token: missing, wrong (also a prefix of the right one), another scheme.
    for (const authorization of [undefined, 'Bearer wrong-token-wrong-token', 'Bearer a-long-enough-test-toke', 'Basic a-long-enough-test-token']) {
      const r = await api.call('GET', '/v1/status', undefined, authorization === undefined ? { authorization: '' } : { authorization })
      expect(r.status, String(authorization)).toBe(401)
      expect(r.json.error.code).toBe('E_FORBIDDEN')
      expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/)
    }
    const ok = await api.call('GET', '/v1/status')
    expect(ok.status).toBe(200)
    expect(ok.json.peer).toEqual({ id: a.peer.peerId, server: server.url(), state: 'joined' })
    expect(ok.json.agent).toMatchObject({ closed: false, peers: 0, mappings: 0 })
    expect(ok.json.sessions).toEqual([])
    expect(ok.headers.get('access-control-allow-origin')).toBeNull()
    // DNS rebinding: another name that resolves to 127.0.0.1 is refused, even with the token.
    const auth = { authorization: `Bearer ${api.token}` }
    for (const host of ['evil.example', 'evil.example:' + new URL(api.url).port, '127.0.0.1.nip.io', '127.0.0.1@evil.example', undefined]) {
      const r = await rawRequest(api.url + '/v1/status', host === undefined ? auth : { ...auth, host }, undefined, 'GET', host !== undefined)
      expect(r.status, String(host)).toBe(403)
      expect(r.json.error.code).toBe('E_FORBIDDEN')
    }
    for (const host of ['localhost', `localhost:${new URL(api.url).port}`, '127.0.0.2', '[::1]:4040']) {
      expect((await rawRequest(api.url + '/v1/status', { ...auth, host })).status, host).toBe(200)
    }
    expect((await api.call('GET', '/v1/status', undefined, { origin: 'https://evil.example' })).status).toBe(403)
    expect((await api.call('GET', '/v1/status', undefined, { origin: 'http://localhost:3000' })).status).toBe(200)
    // Bounds: size, type, JSON, routes, methods.
    const big = await api.call('POST', '/v1/socket/start', JSON.stringify({ protocol: 'udp', pad: 'x'.repeat(CONTROL_MAX_BODY_BYTES) }))
    expect(big.status).toBe(413)
    expect(big.json.error.code).toBe('E_LIMIT_BYTES')
    const chunked = await rawRequest(api.url + '/v1/socket/start', { ...auth, 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, 'y'.repeat(CONTROL_MAX_BODY_BYTES + 1), 'POST')
    expect(chunked.status).toBe(413)
    // A declared length over the cap is refused before any of the body is read (none is sent here).
    const declared = await within('the 413 to a declared length', rawHttp(api.url, `POST /v1/socket/start HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${api.token}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n`))
    expect(declared).toMatch(/^HTTP\/1\.1 413 [^]*"E_LIMIT_BYTES"/)
    const text = await api.call('POST', '/v1/socket/start', '{"protocol":"udp"}', { 'content-type': 'text/plain' })
    expect(text.status).toBe(415)
    for (const body of ['{"protocol":', '', 'null', '[1,2]', '"udp"']) {
      const r = await api.call('POST', '/v1/socket/start', body)
      expect(r.status, body).toBe(400)
      expect(r.json.error.code).toBe('E_BAD_REQUEST')
      expect(typeof r.json.error.message).toBe('string')
    }
    const unknown = await api.call('GET', '/v1/nothing')
    expect(unknown.status).toBe(404)
    expect(unknown.json.error.message).toMatch(/No such endpoint/)
    const method = await api.call('PUT', '/v1/status')
    expect(method.status).toBe(405)
    expect(method.headers.get('allow')).toBe('GET')
    expect((await api.call('DELETE', '/v1/mappings/nope')).status).toBe(404)
    expect((await api.call('DELETE', '/v1/mappings/%E0%A4%A')).status).toBe(400)
    // Not HTTP at all: a JSON 400, and the API goes on.
    const garbage = await within('the answer to garbage', rawHttp(api.url, 'NOT HTTP\r\n\r\n', true))
    expect(garbage).toMatch(/^HTTP\/1\.1 400 [^]*"E_BAD_REQUEST"/)
    // Still serving after all that.
    expect((await api.call('GET', '/v1/mappings')).json).toEqual({ mappings: [] })
  })

  it('the token file is written anew: a file or symlink at its temporary path is not written through', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'starsock-control-'))
    cleanup.push({ close: async () => await rm(dir, { recursive: true, force: true }) })
    const file = controlTokenFile(join(dir, 'agent.key'))
    const victim = join(dir, 'victim')
    await writeFile(victim, 'untouched\n', { mode: 0o644 })
    await symlink(victim, `${file}.${process.pid}.tmp`)
    await writeControlToken(file, 'a'.repeat(43))
    expect(await readFile(victim, 'utf8')).toBe('untouched\n')
    expect((await stat(victim)).mode & 0o777).toBe(0o644)
    expect(await readFile(file, 'utf8')).toBe('a'.repeat(43) + '\n')
    expect((await lstat(file)).isSymbolicLink()).toBe(false)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
  })

  it('clients sending headers slowly do not lock the API out: 40 of them, and a request still gets in; they get a 408', async () => {
    server = await startServer()
    const a = await agent()
    const api = await start(a)
    const { port } = new URL(api.url)
    const slow = await Promise.all(Array.from({ length: 40 }, async () => await new Promise<{ text: () => string, closed: Promise<void> }>((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: Number(port) })
      let text = ''
      socket.on('data', (c: Buffer) => { text += c.toString() })
      socket.on('error', () => {})
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
      socket.once('connect', () => { socket.write('GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n'); resolve({ text: () => text, closed }) })
      socket.once('error', reject)
    })))
    cleanup.push({ close: async () => { for (const s of slow) await s.closed.catch(() => {}) } })
    expect((await api.call('GET', '/v1/mappings')).json).toEqual({ mappings: [] })
    await within('the slow clients to be answered and closed', Promise.all(slow.map(async (s) => await s.closed)), 15_000)
    for (const s of slow) expect(s.text()).toMatch(/^HTTP\/1\.1 408 /)
  })

  it('answers 408 to a body that does not arrive in time', async () => {
    server = await startServer()
    const a = await agent()
    const api = await start(a, { requestTimeoutMs: 300 })
    const r = await within('the 408 answer', new Promise<{ status: number, json: any }>((resolve, reject) => {
      const req = http.request(api.url + '/v1/socket/start', { method: 'POST', agent: false, headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json', 'content-length': '100' } }, (res) => {
        let text = ''
        res.on('data', (c: Buffer) => { text += c.toString() })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }))
      })
      req.on('error', reject)
      req.write('{"protocol"') // and never the rest
    }))
    expect(r.status).toBe(408)
    expect(r.json.error.code).toBe('E_TIMEOUT')
  })

  it('lists, adds and removes a forward: bytes flow through the added one, its port closes after DELETE', async () => {
    server = await startServer()
    const echo = await tcpEcho()
    cleanup.push(echo)
    const a = await agent()
    const b = await agent({ allow: [`connect/tcp:127.0.0.1:${echo.port}`] })
    const api = await start(a)
    expect((await api.call('GET', '/v1/mappings')).json).toEqual({ mappings: [] })
    // Bad entries: the config's own checks, one line naming the field.
    const bad = [
      [{ peer: b.peer.peerId, listen: '127.0.0.1:0', to: `127.0.0.1:${echo.port}` }, /^kind: /],
      [{ kind: 'tunnel', peer: b.peer.peerId }, /^kind: /],
      [{ kind: 'forward', listen: '127.0.0.1:0', to: `127.0.0.1:${echo.port}` }, /^peer: /],
      [{ kind: 'forward', peer: b.peer.peerId, listen: '127.0.0.1:0', to: 'nowhere' }, /^to: /],
      [{ kind: 'forward', peer: b.peer.peerId, listen: '127.0.0.1:0', to: `127.0.0.1:${echo.port}`, extra: true }, /extra/]
    ] as const
    for (const [body, message] of bad) {
      const r = await api.call('POST', '/v1/mappings', body)
      expect(r.status, JSON.stringify(body)).toBe(400)
      expect(r.json.error.code).toBe('E_BAD_REQUEST')
      expect(r.json.error.message).toMatch(message)
    }
    const entry = { kind: 'forward', name: 'echo', peer: b.peer.peerId, listen: '127.0.0.1:0', to: `127.0.0.1:${echo.port}` }
    const added = await api.call('POST', '/v1/mappings', entry)
    expect(added.status).toBe(201)
    expect(added.json).toMatchObject({ id: 'echo', kind: 'forward', state: 'up', entry: { peer: b.peer.peerId, to: { ip: '127.0.0.1', port: echo.port } } })
    const port = added.json.address.port as number
    expect(port).toBeGreaterThan(0)
    expect((await api.call('POST', '/v1/mappings', entry)).status).toBe(409)
    const data = testBytes(200_000, 7)
    expect(Buffer.compare(await within('a round trip through the added forward', tcpRoundTrip(port, data)), Buffer.from(data))).toBe(0)
    const listed = (await api.call('GET', '/v1/mappings')).json.mappings
    expect(listed).toHaveLength(1)
    expect(listed[0]).toMatchObject({ id: 'echo', state: 'up', address: { ip: '127.0.0.1', port } })
    expect(listed[0].stats.bytesOut).toBeGreaterThanOrEqual(data.byteLength)
    expect(listed[0].stats.bytesIn).toBeGreaterThanOrEqual(data.byteLength)
    const status = (await api.call('GET', '/v1/status')).json
    expect(status.mappings).toBe(1)
    expect(status.sessions).toEqual([expect.objectContaining({ peerId: b.peer.peerId, secure: true, initiator: true })])
    const removed = await api.call('DELETE', '/v1/mappings/echo')
    expect(removed.status).toBe(204)
    expect(removed.json).toBeUndefined()
    expect(await rejected(tcpRoundTrip(port, data))).toMatchObject({ code: 'ECONNREFUSED' })
    expect((await api.call('GET', '/v1/mappings')).json).toEqual({ mappings: [] })
    expect((await api.call('DELETE', '/v1/mappings/echo')).status).toBe(404)
  }, 30_000)

  it('answers 202 while a person on the far side decides, and the mapping can be removed meanwhile', async () => {
    server = await startServer()
    const a = await agent()
    let asked = 0
    const b = await agent({ ask: async (_request, signal) => await new Promise<boolean>((resolve) => { asked++; signal.addEventListener('abort', () => resolve(false)) }), askTimeoutMs: 60_000 })
    const api = await start(a, { requestTimeoutMs: 2000 })
    const r = await api.call('POST', '/v1/mappings', { kind: 'forward', name: 'slow', peer: b.peer.peerId, listen: '127.0.0.1:0', to: '127.0.0.1:9' })
    expect(r.status).toBe(202)
    expect(r.json).toMatchObject({ id: 'slow', state: 'starting' })
    expect(asked).toBe(1)
    expect((await api.call('GET', '/v1/mappings')).json.mappings.map((m: { id: string }) => m.id)).toEqual(['slow'])
    expect((await api.call('DELETE', '/v1/mappings/slow')).status).toBe(204)
    expect((await api.call('GET', '/v1/mappings')).json).toEqual({ mappings: [] })
  }, 30_000)

  it('never shows a SOCKS user\'s password', async () => {
    server = await startServer()
    const a = await agent()
    const b = await agent()
    const api = await start(a)
    const r = await api.call('POST', '/v1/mappings', { kind: 'socks', name: 'proxy', peer: b.peer.peerId, listen: '127.0.0.1:0', users: [{ user: 'ann', pass: 'hunter2-secret' }] })
    expect([201, 202]).toContain(r.status)
    const text = JSON.stringify((await api.call('GET', '/v1/mappings')).json) + JSON.stringify(r.json)
    expect(text).toContain('ann')
    expect(text).not.toContain('hunter2-secret')
  })

  it('`starsock up` with [control] listens, keeps the token it made in KEY.control-token (0600) while it runs, and stops with the agent', async () => {
    const { programs, dir } = await upFixture('starsock-control-up-')
    const file = join(dir, 'agent.toml')
    await writeFile(file, `server = "${server.url()}"\nkey = "./agent.key"\n\n[control]\nlisten = "127.0.0.1:0"\n`)
    const up = programs.start(['up', '--config', file, '--json'])
    const event = await up.event('control', 20_000)
    expect(event.tokenFile).toBe(join(dir, 'agent.key.control-token'))
    expect(JSON.stringify(up.out()) + up.err()).not.toContain((await readFile(join(dir, 'agent.key.control-token'), 'utf8')).trim())
    expect((await stat(event.tokenFile as string)).mode & 0o777).toBe(0o600)
    const token = (await readFile(event.tokenFile as string, 'utf8')).trim()
    const url = event.url as string
    const status = await fetch(`${url}/v1/status`, { headers: { authorization: `Bearer ${token}` } })
    expect(status.status).toBe(200)
    const body = await status.json() as { peer: { id: string } }
    expect(body).toMatchObject({ peer: { state: 'joined' }, mappings: 0 })
    expect((await fetch(`${url}/v1/status`, { headers: { authorization: 'Bearer not-the-token-at-all' } })).status).toBe(401)
    expect(await up.stop('SIGTERM')).toBe(0)
    expect(body.peer.id).toBe(peerIdOf(join(dir, 'agent.key'))) // after the stop: spawnSync would hold this process's server
    expect(await rejected(fetch(`${url}/v1/status`, { headers: { authorization: `Bearer ${token}` } }))).toBeInstanceOf(Error)
    // The token is good no longer: its file goes with the API.
    expect(await rejected(stat(event.tokenFile as string))).toMatchObject({ code: 'ENOENT' })
    // A listen address that is not loopback: one line, exit 1.
    await writeFile(file, `server = "${server.url()}"\nkey = "./agent.key"\n\n[control]\nlisten = "0.0.0.0:4040"\n`)
    const bad = programs.start(['up', '--config', file, '--json'])
    expect(await within('starsock up to exit on a bad [control]', bad.exited, 20_000)).toBe(1)
    expect(bad.err()).toMatch(/^starsock: .*agent\.toml:\d+: control\.listen: must be a loopback address[^\n]*\n$/)
  }, 60_000)

  it('`starsock up` never removes or replaces a token file it did not write: a control listen that fails leaves it, and so does the exit', async () => {
    const { programs, dir } = await upFixture('starsock-control-token-')
    const tokenFile = join(dir, 'agent.key.control-token')
    // Another process (the running one) holds the port and its token file.
    const busy = net.createServer()
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
    cleanup.push({ close: async () => await new Promise<void>((resolve) => busy.close(() => resolve())) })
    await writeControlToken(tokenFile, 'the-running-process-token')
    const file = join(dir, 'agent.toml')
    await writeFile(file, `server = "${server.url()}"\nkey = "./agent.key"\n\n[control]\nlisten = "127.0.0.1:${(busy.address() as net.AddressInfo).port}"\n`)
    const second = programs.start(['up', '--config', file, '--json'])
    expect(await within('starsock up to exit on a port in use', second.exited, 20_000)).toBe(1)
    expect(second.err()).toMatch(/EADDRINUSE/)
    expect(await readFile(tokenFile, 'utf8')).toBe('the-running-process-token\n')
    // One that listens, then finds another's token in the file when it stops: the file stays.
    await writeFile(file, `server = "${server.url()}"\nkey = "./agent.key"\n\n[control]\nlisten = "127.0.0.1:0"\n`)
    const up = programs.start(['up', '--config', file, '--json'])
    await up.event('control', 20_000)
    expect(await readFile(tokenFile, 'utf8')).not.toBe('the-running-process-token\n')
    await writeControlToken(tokenFile, 'a-later-process-token')
    expect(await up.stop('SIGTERM')).toBe(0)
    expect(await readFile(tokenFile, 'utf8')).toBe('a-later-process-token\n')
  }, 60_000)

  describe('S2S calls', () => {
    it('socket/start makes an allocation that relays, sendRequest hands a half to a real agent, stop releases it', async () => {
      server = await startServer({ udpRelay: true, udpPorts: portRange(8) })
      const a = await agent()
      let received: Promise<UdpHalf> | undefined
      const b = await agent({
        onChannel: async (channel: Channel) => {
          if (channel.header.type === 'udp-relay') received = readUdpHalf(channel)
          return undefined
        }
      })
      const api = await start(a, { maxAllocations: 1 })
      // Bad input first.
      for (const body of [{ protocol: 'tcp' }, {}, { protocol: 'udp', mode: 'wide' }, { protocol: 'udp', mode: 'address' }, { protocol: 'udp', allowIps: ['1.2.3.4'] }, { protocol: 'udp', mode: 'address', allowIps: ['not-an-ip'] }, { protocol: 'udp', extra: 1 }]) {
        const r = await api.call('POST', '/v1/socket/start', body)
        expect(r.status, JSON.stringify(body)).toBe(400)
      }
      const started = await api.call('POST', '/v1/socket/start', { protocol: 'udp' })
      expect(started.status).toBe(201)
      const s = started.json
      expect(s).toMatchObject({ protocol: 'udp', mode: 'token', ip: '127.0.0.1' })
      expect(s.token1).toMatch(/^[0-9a-f]{32}$/)
      expect([typeof s.id, typeof s.port1, typeof s.port2, typeof s.expiresAt]).toEqual(['string', 'number', 'number', 'number'])
      // Bounded: no second one while the first is held, even asked for many at once.
      const more = await Promise.all(Array.from({ length: 4 }, async () => await api.call('POST', '/v1/socket/start', { protocol: 'udp' })))
      expect(more.map((r) => [r.status, r.json.error?.code])).toEqual(Array(4).fill([409, 'E_LIMIT_ALLOCATIONS']))
      expect((await api.call('GET', '/v1/status')).json.allocations).toEqual([{ id: s.id, protocol: 'udp', mode: 'token', ip: s.ip, port1: s.port1, port2: s.port2, expiresAt: s.expiresAt }])
      // Hand endpoint 2 to B (the default).
      expect((await api.call('POST', '/v1/socket/sendRequest', { id: 'nope', peer: b.peer.peerId })).status).toBe(404)
      expect((await api.call('POST', '/v1/socket/sendRequest', { id: s.id, peer: b.peer.peerId, endpoint: 3 })).status).toBe(400)
      for (const peer of ['', '../x', 'not a peer id', 42, 'x'.repeat(500)]) {
        expect((await api.call('POST', '/v1/socket/sendRequest', { id: s.id, peer })).status, String(peer)).toBe(400)
      }
      const sent = await api.call('POST', '/v1/socket/sendRequest', { id: s.id, peer: b.peer.peerId })
      expect(sent.status).toBe(200)
      expect(sent.json).toEqual({ id: s.id, peer: b.peer.peerId, endpoint: 2, ip: s.ip, port: s.port2 })
      await waitFor('the half at B', () => received !== undefined)
      const half = await within('B to read the half', received as Promise<UdpHalf>)
      expect(half).toEqual({ ip: s.ip, port: s.port2, token: s.token2, expiresAt: s.expiresAt })
      // Both ends register; datagrams cross the relay both ways.
      const mine = await udpSocket()
      const theirs = await udpSocket()
      cleanup.push(mine, theirs)
      await within('endpoint 1 to register', registerUdpEndpoint(mine.socket, { ip: s.ip, port: s.port1, token: s.token1 }))
      await within('endpoint 2 to register', registerUdpEndpoint(theirs.socket, half))
      mine.got.length = 0
      theirs.got.length = 0
      theirs.socket.send(Buffer.from('from B'), half.port, half.ip)
      await waitFor('the datagram at endpoint 1', () => mine.got.some((d) => d.toString() === 'from B'))
      mine.socket.send(Buffer.from('from A'), s.port1, s.ip)
      await waitFor('the datagram at endpoint 2', () => theirs.got.some((d) => d.toString() === 'from A'))
      // Stop: released, its ports free, and unknown from then on.
      expect((await api.call('POST', '/v1/socket/stop', { id: s.id })).json).toEqual({ id: s.id, stopped: true })
      await within('the allocation\'s ports to be free', untilFree(s.port1, s.port2))
      expect((await api.call('GET', '/v1/status')).json.allocations).toEqual([])
      const again = await api.call('POST', '/v1/socket/stop', { id: s.id })
      expect(again.status).toBe(404)
      expect(again.json.error.code).toBe('E_UDP_NOT_FOUND')
      // The place is free again.
      expect((await api.call('POST', '/v1/socket/start', { protocol: 'udp' })).status).toBe(201)
    }, 30_000)

    it('a half handed to an agent with a udp-relay rule is bridged to its UDP program; stop ends the bridge; no rule is a 502 E_DENIED', async () => {
      server = await startServer({ udpRelay: true, udpPorts: portRange(8) })
      const echo = await udpEcho()
      cleanup.push(echo)
      const a = await agent()
      const events: UdpRelayEvent[] = []
      const b = await agent({ onChannel: async (channel, _body, mux) => await takeUdpRelay(channel, mux, { rules: [parseRule('udp-relay')], server: server.url(), local: { ip: '127.0.0.1', port: echo.port }, onEvent: (e) => events.push(e) }) })
      const c = await agent({ onChannel: async (channel, _body, mux) => await takeUdpRelay(channel, mux, { rules: [], onEvent: () => {} }) })
      const api = await start(a)
      const s = (await api.call('POST', '/v1/socket/start', { protocol: 'udp' })).json
      const denied = await api.call('POST', '/v1/socket/sendRequest', { id: s.id, peer: c.peer.peerId })
      expect(denied.status).toBe(502)
      expect(denied.json.error.code).toBe('E_DENIED')
      const sent = await api.call('POST', '/v1/socket/sendRequest', { id: s.id, peer: b.peer.peerId })
      expect(sent.status).toBe(200)
      expect(sent.json).toMatchObject({ id: s.id, peer: b.peer.peerId, endpoint: 2, port: s.port2, taken: 'bridged' })
      expect(typeof sent.json.via).toBe('number')
      // This side is endpoint 1: what it sends reaches B's UDP echo through the relay and the bridge, and comes back.
      const mine = await udpSocket()
      cleanup.push(mine)
      await within('endpoint 1 to register', registerUdpEndpoint(mine.socket, { ip: s.ip, port: s.port1, token: s.token1 }))
      mine.got.length = 0
      const timer = setInterval(() => mine.socket.send(Buffer.from('ping through the bridge'), s.port1, s.ip), 100)
      try {
        await waitFor('the echo back through the relay', () => mine.got.some((d) => d.toString() === 'ping through the bridge'))
      } finally {
        clearInterval(timer)
      }
      expect(echo.received()).toBeGreaterThan(0)
      // Halves in use are bounded per allocation (each bridge keeps its channel open).
      for (let i = 2; i <= 8; i++) expect((await api.call('POST', '/v1/socket/sendRequest', { id: s.id, peer: b.peer.peerId })).status, `half #${i}`).toBe(200)
      const ninth = await api.call('POST', '/v1/socket/sendRequest', { id: s.id, peer: b.peer.peerId })
      expect(ninth.status).toBe(409)
      expect(ninth.json.error.code).toBe('E_LIMIT_ALLOCATIONS')
      // Stop: B is told, its bridges end; the ports are free.
      expect((await api.call('POST', '/v1/socket/stop', { id: s.id })).status).toBe(200)
      await waitFor('B\'s 8 bridges to end', () => events.filter((e) => e.type === 'ended').length === 8)
      await within('the allocation\'s ports to be free', untilFree(s.port1, s.port2))
    }, 30_000)

    it('holds at most maxAllocations even when asked for many at once', async () => {
      server = await startServer({ udpRelay: true, udpPorts: portRange(8) })
      const a = await agent()
      const api = await start(a, { maxAllocations: 2 })
      const all = await Promise.all(Array.from({ length: 6 }, async () => await api.call('POST', '/v1/socket/start', { protocol: 'udp' })))
      expect(all.map((r) => r.status).sort()).toEqual([201, 201, 409, 409, 409, 409])
      expect((await api.call('GET', '/v1/status')).json.allocations).toHaveLength(2)
    }, 30_000)

    it('keeps an allocation refreshed past the relay\'s idle expiry, and forgets one the server no longer has', async () => {
      server = await startServer({ udpRelay: true, udpPorts: portRange(8), udpIdleMs: 1000 })
      const a = await agent()
      const api = await start(a, { refreshMs: 200 })
      const kept = (await api.call('POST', '/v1/socket/start', { protocol: 'udp' })).json
      const gone = (await api.call('POST', '/v1/socket/start', { protocol: 'udp' })).json
      // Three idle periods without a packet: the refreshes alone keep it.
      await new Promise((resolve) => setTimeout(resolve, 3000))
      expect(await portFree(kept.port1)).toBe(false)
      expect((await a.peer.udpRefresh(kept.id)).id).toBe(kept.id)
      // Released behind the API's back (as an expiry or a server restart would): the next refresh drops it.
      await a.peer.udpRelease(gone.id)
      const held = async (): Promise<string[]> => (await api.call('GET', '/v1/status')).json.allocations.map((x: { id: string }) => x.id)
      await within('the API to forget the released allocation', (async () => {
        while ((await held()).length > 1) await new Promise((resolve) => setTimeout(resolve, 50))
      })())
      expect(await held()).toEqual([kept.id])
    }, 30_000)

    it('a peer that takes no halves, or a server without the relay, is a 502 with the code; close releases what is held', async () => {
      server = await startServer({ udpRelay: true, udpPorts: portRange(8) })
      const a = await agent()
      const b = await agent() // no onChannel: it takes no udp-relay channels
      const api = await start(a)
      const s = (await api.call('POST', '/v1/socket/start', { protocol: 'udp' })).json
      const refused = await api.call('POST', '/v1/socket/sendRequest', { id: s.id, peer: b.peer.peerId })
      expect(refused.status).toBe(502)
      expect(refused.json.error.code).toBe('E_UNSUPPORTED')
      const self = await api.call('POST', '/v1/socket/sendRequest', { id: s.id, peer: a.peer.peerId })
      expect(self.status).toBe(400)
      expect(await portFree(s.port1)).toBe(false)
      await api.close()
      await within('the allocation\'s ports to be free after close', untilFree(s.port1, s.port2))
      const plain = await startServer()
      cleanup.push(plain)
      const peer = await createPeer({ server: plain.url() })
      const c = createSockAgent(peer)
      cleanup.push({ close: async () => { await c.close(); await peer.close() } })
      const api2 = await start(c)
      const disabled = await api2.call('POST', '/v1/socket/start', { protocol: 'udp' })
      expect(disabled.status).toBe(502)
      expect(disabled.json.error.code).toBe('E_UDP_DISABLED')
    }, 30_000)
  })
})
