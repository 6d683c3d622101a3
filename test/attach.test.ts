/**
 * starsock attached to an HTTP server of the user's (plain Node, Express 5, Fastify 5) with a
 * `path`: peers join and move bytes through it, the user's routes keep answering, `close()` gives
 * the server back; `path` standalone and through `starsock serve --path`; the page served under a
 * prefix finds its socket.io path; the default path keeps the legacy client working.
 */
import { execFileSync } from 'node:child_process'
import dgram from 'node:dgram'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http'
import { createServer as createHttp2Server } from 'node:http2'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import express from 'express'
import { Server as SocketIoServer } from 'socket.io'
import { io as ioClient } from 'socket.io-client'
import Fastify from 'fastify'
import type { Browser } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createPeer, type PeerOptions, type StarsockPeer } from '../client/peer.ts'
import { createServer, type StarsockServer } from '../server/server.ts'
import type { ServerOptions } from '../server/options.ts'
import { launchChromium } from './helpers/browser.ts'
import { expectBytes } from './helpers/bytes.ts'
import { echo, readAll } from './helpers/connections.ts'
import { legacyDial, legacyExchange, pull, startLegacyPeer } from './helpers/legacy.ts'
import { Programs } from './helpers/programs.ts'
import { rejected, testBytes, waitFor, within } from './helpers/server.ts'

const PATH = '/starsock/socket.io'

/** One of the user's apps: its HTTP server, listening on 127.0.0.1, and how to stop it. */
interface App {
  http: HttpServer
  origin: string
  close: () => Promise<void>
}

/** Five chunks 40 ms apart: a slow, streamed answer of the app's own. */
const SLOW_BODY = ['chunk 0\n', 'chunk 1\n', 'chunk 2\n', 'chunk 3\n', 'chunk 4\n']
async function * slowChunks (): AsyncGenerator<string> {
  for (const chunk of SLOW_BODY) {
    yield chunk
    await new Promise((resolve) => setTimeout(resolve, 40))
  }
}

async function listenLocal (http: HttpServer): Promise<string> {
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(http.address() as AddressInfo).port}`
}

async function closeHttp (http: HttpServer): Promise<void> {
  http.closeAllConnections()
  await new Promise<void>((resolve) => http.close(() => resolve()))
}

/**
 * The three kinds of app the README's examples show, each with the same routes: `/hello`, `/slow`
 * (streamed), `/starsock/mine` (the app's own route under starsock's prefix), and its own 404.
 * `starsock()` is the attached server once there is one (its handler is mounted from the start).
 */
const APPS: Record<string, (starsock: () => StarsockServer | undefined) => Promise<App>> = {
  'plain node:http': async (starsock) => {
    const http = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
      if (starsock()?.handleRequest(req, res) === true) return
      if (req.url === '/hello') return void res.end('hello from plain node:http')
      if (req.url === '/starsock/mine') return void res.end('mine')
      if (req.url === '/slow') return void Readable.from(slowChunks()).pipe(res)
      res.writeHead(404).end('app 404')
    })
    const origin = await listenLocal(http)
    return { http, origin, close: async () => await closeHttp(http) }
  },
  'Express 5': async (starsock) => {
    const app = express()
    app.use((req, res, next) => { const s = starsock(); if (s === undefined) next(); else s.handleRequest(req, res, next) })
    app.get('/hello', (_req, res) => { res.send('hello from Express 5') })
    app.get('/starsock/mine', (_req, res) => { res.send('mine') })
    app.get('/slow', (_req, res) => { Readable.from(slowChunks()).pipe(res) })
    app.use((_req, res) => { res.status(404).send('app 404') })
    const http = createHttpServer(app)
    const origin = await listenLocal(http)
    return { http, origin, close: async () => await closeHttp(http) }
  },
  'Fastify 5': async (starsock) => {
    const app = Fastify()
    app.addHook('onRequest', (req, reply, done) => {
      if (starsock()?.handleRequest(req.raw, reply.raw) === true) reply.hijack()
      else done()
    })
    app.get('/hello', async () => 'hello from Fastify 5')
    app.get('/starsock/mine', async () => 'mine')
    app.get('/slow', async (_req, reply) => await reply.type('text/plain').send(Readable.from(slowChunks())))
    app.setNotFoundHandler(async (_req, reply) => await reply.code(404).send('app 404'))
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { http: app.server, origin: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, close: async () => { app.server.closeAllConnections(); await app.close() } }
  }
}

async function get (url: string, init: RequestInit = {}): Promise<{ status: number, body: string, headers: Headers }> {
  const res = await fetch(url, { redirect: 'manual', ...init })
  return { status: res.status, body: await res.text(), headers: res.headers }
}

/** Two peers through `starsock`, one websocket only, one polling only: a 300 KB echo both ways. */
async function exchange (starsock: StarsockServer, peers: StarsockPeer[], extra: Partial<PeerOptions> = {}): Promise<void> {
  const a = await createPeer({ server: starsock.url(), transports: ['websocket'], ...extra })
  peers.push(a)
  const b = await createPeer({ server: starsock.url(), transports: ['polling'], ...extra })
  peers.push(b)
  b.handle(echo)
  const conn = await within('a dial from the websocket peer to the polling peer', a.dial(b.addr), 10_000)
  const data = testBytes(300_000, 7)
  const back = readAll(conn)
  await conn.write(data)
  await conn.closeWrite()
  expectBytes(await within('the echo of 300 KB through the attached server', back, 20_000), data, 'echo through the attached server')
}

describe.each(Object.keys(APPS))(`attached to %s with path ${PATH}`, (kind) => {
  let app: App
  let starsock: StarsockServer | undefined
  const peers: StarsockPeer[] = []

  const attach = (options: ServerOptions = {}): StarsockServer => {
    starsock = createServer({ server: app.http, path: PATH, shutdownGraceMs: 0, ...options })
    return starsock
  }

  beforeAll(async () => {
    app = await (APPS[kind] as (s: () => StarsockServer | undefined) => Promise<App>)(() => starsock)
  })
  afterEach(async () => {
    for (const p of peers.splice(0)) await p.close()
    await starsock?.close()
    starsock = undefined
  })
  afterAll(async () => { await app.close() })

  it('two peers join through it, one over websocket only, one over polling only, and move bytes', async () => {
    const s = attach()
    expect(s.attached).toBe(true)
    expect(s.http).toBe(app.http)
    expect(s.url()).toBe(`${app.origin}/starsock/`)
    await exchange(s, peers)
    expect(s.stats().peers).toBe(2)
  })

  it('keeps the app\'s own routes, a slow streamed one included, and serves its own under the prefix', async () => {
    const s = attach()
    // The slow answer starts before the peers and ends after they moved their bytes.
    const slow = get(`${app.origin}/slow`)
    await exchange(s, peers)
    expect(await within('the app\'s slow answer', slow)).toMatchObject({ status: 200, body: SLOW_BODY.join('') })
    expect(await get(`${app.origin}/hello`)).toMatchObject({ status: 200, body: `hello from ${kind}` })
    expect(await get(`${app.origin}/nope`)).toMatchObject({ status: 404, body: 'app 404' })
    expect(await get(`${app.origin}/healthz`)).toMatchObject({ status: 404, body: 'app 404' })
    expect(await get(`${app.origin}/starsock/mine`)).toMatchObject({ status: 200, body: 'mine' })
    expect(await get(`${app.origin}/starsock/nope`)).toMatchObject({ status: 404, body: 'app 404' })
    // Not a GET: the app's too.
    expect(await get(`${app.origin}/starsock/healthz`, { method: 'POST' })).toMatchObject({ status: 404, body: 'app 404' })
    expect(await get(`${app.origin}/starsock/healthz`)).toMatchObject({ status: 200, body: 'ok\n' })
    expect(await get(`${app.origin}/starsock/readyz`)).toMatchObject({ status: 200, body: 'ready\n' })
    expect(JSON.parse((await get(`${app.origin}/starsock/status.json`)).body)).toMatchObject({ peers: 2 })
    expect((await get(`${app.origin}/starsock/metrics`)).body).toContain('starsock_')
    const prefixOnly = await get(`${app.origin}/starsock?x=1`)
    expect(prefixOnly.status).toBe(308)
    expect(prefixOnly.headers.get('location')).toBe('/starsock/?x=1')
    expect((await get(`${app.origin}/starsock/`)).body).toMatch(/<html/i)
    // The status page's links stay under the prefix.
    const status = `${app.origin}/starsock/status`
    const links = [...(await get(status)).body.matchAll(/href="([^"]*)"/g)].map((m) => new URL(m[1] ?? '', status).href)
    expect(links).toHaveLength(5)
    for (const link of links) expect(link.startsWith(`${app.origin}/starsock/`), link).toBe(true)
    for (const link of links) expect((await get(link)).status, link).toBe(200)
  })

  it('close() leaves the app listening with its routes, socket.io\'s path the app\'s again; a new attach works', async () => {
    const s = attach()
    await exchange(s, peers)
    await s.close()
    expect(app.http.listening).toBe(true)
    expect(await get(`${app.origin}/hello`)).toMatchObject({ status: 200, body: `hello from ${kind}` })
    expect(await get(`${app.origin}/slow`)).toMatchObject({ status: 200, body: SLOW_BODY.join('') })
    // Its handler, still mounted in the app, lets every request through once closed.
    expect(await get(`${app.origin}/starsock/healthz`)).toMatchObject({ status: 404, body: 'app 404' })
    expect(s.handleRequest({ url: '/starsock/', method: 'GET', headers: {} } as unknown as IncomingMessage, {} as unknown as ServerResponse)).toBe(false)
    starsock = undefined
    expect(await get(`${app.origin}${PATH}/?EIO=4&transport=polling`)).toMatchObject({ status: 404, body: 'app 404' })
    expect(await get(`${app.origin}/starsock/healthz`)).toMatchObject({ status: 404, body: 'app 404' })
    for (const p of peers.splice(0)) await p.close()
    // Nothing of the first one is left in the way of a second.
    await exchange(attach(), peers)
  })
})

describe('attaching: the checks', () => {
  let http: HttpServer
  beforeAll(async () => {
    http = createHttpServer((_req, res) => { res.writeHead(404).end('app 404') })
    await listenLocal(http)
  })
  afterAll(async () => { await closeHttp(http) })

  it.each<[string, ServerOptions, string]>([
    ['a path without /', { path: 'starsock/socket.io' }, "path must start with '/', got 'starsock/socket.io'"],
    ['a path with a query', { path: '/starsock/socket.io?a=b' }, "path is a URL path: no '?' or '#', got '/starsock/socket.io?a=b'"],
    ['a path not ending in /socket.io', { path: '/starsock' }, "path must be '/socket.io' or end with '/socket.io'"],
    ['a long path', { path: `/${'x'.repeat(300)}/socket.io` }, 'path must be at most 200 characters, got 311'],
    ['TLS material beside the server', { tls: { key: 'k', cert: 'c' } }, 'server and tls cannot be used together'],
    ['something that is not a server', { server: { listen: () => {} } as never }, 'server must be a Node http.Server or https.Server'],
    ['a bare net.Server (it has on, listeners and address, but no HTTP)', { server: createNetServer() as never }, 'server must be a Node http.Server or https.Server']
  ])('refuses %s with a clear error, and leaves the server alone', async (_, options, message) => {
    const before = http.listeners('request').length
    expect(() => createServer({ server: http, ...options })).toThrow(message)
    expect(http.listeners('request').length).toBe(before)
    expect(await get(`http://127.0.0.1:${(http.address() as AddressInfo).port}/x`)).toMatchObject({ status: 404, body: 'app 404' })
  })

  it('takes an HTTP/2 server (socket.io serves them; allowHTTP1 for WebSocket), and close() leaves it alone', async () => {
    const h2 = createHttp2Server()
    const s = createServer({ server: h2 as never, path: PATH, shutdownGraceMs: 0 })
    await s.close()
    expect(h2.listening).toBe(false) // never listened: starsock did not listen on it either
  })

  it('Express: handleRequest mounted under its prefix answers the same routes', async () => {
    const app = express()
    const http = createHttpServer(app)
    const origin = await listenLocal(http)
    const s = createServer({ server: http, path: PATH, shutdownGraceMs: 0 })
    app.use('/starsock', s.handleRequest)
    app.use((_req, res) => { res.status(404).send('app 404') })
    try {
      expect(await get(`${origin}/starsock/healthz`)).toMatchObject({ status: 200, body: 'ok\n' })
      expect(await get(`${origin}/starsock/nope`)).toMatchObject({ status: 404, body: 'app 404' })
      expect(await get(`${origin}/healthz`)).toMatchObject({ status: 404, body: 'app 404' })
    } finally {
      await s.close()
      await closeHttp(http)
    }
  })

  it('refuses a bad path standalone too', () => {
    expect(() => createServer({ path: '/a b/socket.io' })).toThrow("path must be plain URL path segments (no empty, '.' or '..' segments, no spaces), got '/a b/socket.io'")
  })

  it('has no listen(): the app listens', async () => {
    const s = createServer({ server: http, path: PATH })
    try {
      const err = await rejected(s.listen(0, '127.0.0.1'))
      expect((err as Error).message).toBe('this starsock server is attached to your http.Server (option server): listen on that server instead')
    } finally {
      await s.close()
    }
    expect(http.listening).toBe(true)
  })

  it('url() works once the app listens, attached before it does', async () => {
    const later = createHttpServer((_req, res) => { res.writeHead(404).end('app 404') })
    const s = createServer({ server: later, path: PATH, shutdownGraceMs: 0 })
    const peers: StarsockPeer[] = []
    try {
      expect(() => s.url()).toThrow('server is not listening')
      const origin = await listenLocal(later)
      expect(s.url()).toBe(`${origin}/starsock/`)
      await exchange(s, peers)
    } finally {
      for (const p of peers) await p.close()
      await s.close()
      await closeHttp(later)
    }
  })
})

describe('the app\'s own WebSocket upgrades', () => {
  it('an upgrade on another path the app answers after 1.5 s is not cut by engine.io', async () => {
    const http = createHttpServer((_req, res) => { res.writeHead(404).end('app 404') })
    http.on('upgrade', (req, socket) => {
      if (req.url !== '/app-ws') return
      setTimeout(() => {
        socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n')
        socket.end()
      }, 1500)
    })
    const s = createServer({ server: http, path: PATH, shutdownGraceMs: 0 })
    try {
      const origin = await listenLocal(http)
      const status = await new Promise<number | string>((resolve) => {
        const req = httpRequest(`${origin}/app-ws`, { headers: { Connection: 'Upgrade', Upgrade: 'websocket' } })
        req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode ?? 0) })
        req.on('response', (res) => resolve(res.statusCode ?? 0))
        req.on('error', (err) => resolve(err.message))
        req.end()
      })
      expect(status).toBe(101)
    } finally {
      await s.close()
      await closeHttp(http)
    }
  })

  it('an upgrade no one answers is still ended, not left open', async () => {
    const http = createHttpServer((_req, res) => { res.writeHead(404).end('app 404') })
    const s = createServer({ server: http, path: PATH, shutdownGraceMs: 0 })
    try {
      const origin = await listenLocal(http)
      const ended = await new Promise<string>((resolve) => {
        const req = httpRequest(`${origin}/nobody-here`, { headers: { Connection: 'Upgrade', Upgrade: 'websocket' } })
        req.on('upgrade', () => resolve('upgraded'))
        req.on('response', (res) => resolve(`answered ${res.statusCode ?? 0}`))
        req.on('error', () => resolve('ended'))
        req.end()
      })
      expect(ended).toBe('ended')
    } finally {
      await s.close()
      await closeHttp(http)
    }
  })
})

describe('beside the app\'s own socket.io', () => {
  it.each(['before', 'after'])('app socket.io attached %s starsock: both work, and after close() the app and its socket.io answer once each', async (order) => {
    let starsock: StarsockServer | undefined
    const served: string[] = []
    const http = createHttpServer((req, res) => {
      if (starsock?.handleRequest(req, res) === true) return
      served.push(req.url ?? '')
      res.writeHead(req.url === '/hello' ? 200 : 404).end(req.url === '/hello' ? 'hello' : 'app 404')
    })
    const origin = await listenLocal(http)
    const appIo = (): SocketIoServer => {
      const io = new SocketIoServer(http)
      io.on('connection', (socket) => { socket.on('hi', (ack: (a: string) => void) => { ack('hi from the app') }) })
      return io
    }
    let io = order === 'before' ? appIo() : undefined
    starsock = createServer({ server: http, path: PATH, shutdownGraceMs: 0 })
    io ??= appIo()
    const peers: StarsockPeer[] = []
    const ask = async (): Promise<string> => {
      const client = ioClient(origin, { forceNew: true, transports: ['polling', 'websocket'] })
      try {
        return await within('an answer from the app\'s socket.io', client.timeout(5000).emitWithAck('hi') as Promise<string>)
      } finally {
        client.close()
      }
    }
    try {
      await exchange(starsock, peers)
      expect(await ask()).toBe('hi from the app')
      for (const p of peers.splice(0)) await p.close()
      await starsock.close()
      starsock = undefined
      served.length = 0
      expect(await get(`${origin}/hello`)).toMatchObject({ status: 200, body: 'hello' })
      expect(await get(`${origin}${PATH}/?EIO=4&transport=polling`)).toMatchObject({ status: 404, body: 'app 404' })
      // Each once: the app's handler was not left in twice (late polls of the closed peers are the app's too).
      expect(served.filter((u) => u === '/hello' || u === `${PATH}/?EIO=4&transport=polling`)).toEqual(['/hello', `${PATH}/?EIO=4&transport=polling`])
      expect(await ask()).toBe('hi from the app')
      expect(http.listeners('request')).toHaveLength(1)
    } finally {
      for (const p of peers) await p.close()
      await starsock?.close()
      await io.close()
      await closeHttp(http).catch(() => {})
    }
  })
})

describe('attached to an HTTPS server', () => {
  const dir = mkdtempSync(join(tmpdir(), 'starsock-attach-tls-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('url() is https, peers join over wss and long-polling through it, and its routes answer', async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
    const cert = readFileSync(join(dir, 'cert.pem'))
    let starsock: StarsockServer | undefined
    const https = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert }, (req, res) => {
      if (starsock?.handleRequest(req, res) === true) return
      res.writeHead(404).end('app 404')
    })
    await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve))
    starsock = createServer({ server: https, path: PATH, shutdownGraceMs: 0 })
    const peers: StarsockPeer[] = []
    try {
      expect(starsock.url()).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/starsock\/$/)
      await exchange(starsock, peers, { socketOptions: { ca: cert } })
      const health = await within('/starsock/healthz over https', new Promise<string>((resolve, reject) => {
        httpsRequest(`${starsock?.url() ?? ''}healthz`, { ca: cert }, (res) => {
          let text = ''
          res.on('data', (d: Buffer) => { text += d.toString() })
          res.on('end', () => resolve(text))
        }).on('error', reject).end()
      }))
      expect(health).toBe('ok\n')
    } finally {
      for (const p of peers) await p.close()
      await starsock.close()
      https.closeAllConnections()
      await new Promise<void>((resolve) => https.close(() => resolve()))
    }
  })
})

describe('the default path, attached', () => {
  it('still serves the legacy libp2p-websocket-star@0.10.2 client (it knows only /socket.io/)', async () => {
    const http = createHttpServer((_req, res) => { res.writeHead(404).end('app 404') })
    await listenLocal(http)
    const s = createServer({ server: http, shutdownGraceMs: 0 })
    const port = (http.address() as AddressInfo).port
    const legacy = await within('the legacy peer joining the attached server', startLegacyPeer(port, (conn: unknown) => { pull(conn, conn) }), 15_000)
    let peer: StarsockPeer | undefined
    try {
      expect(s.url()).toBe(`http://127.0.0.1:${port}`)
      peer = await createPeer({ server: s.url() })
      await waitFor('the legacy peer in the starsock peer\'s list', () => peer?.peers().some((p) => p.addr === legacy.addr) === true)
      const conn = await peer.dial(legacy.addr, { secure: false })
      const data = testBytes(100_000, 3)
      const back = readAll(conn)
      await conn.write(data)
      await conn.closeWrite()
      expectBytes(await within('the legacy peer\'s echo', back, 15_000), data, 'the legacy echo')
      // And the other way: the legacy client dials the starsock peer.
      peer.handle(echo)
      const legacyConn = await within('the legacy dial', legacyDial(legacy, peer.addr), 15_000)
      expectBytes(await within('the starsock peer\'s echo to the legacy client', legacyExchange(legacyConn, data), 15_000), data, 'the echo to the legacy client')
    } finally {
      legacy.stop()
      await peer?.close()
      await s.close()
      await closeHttp(http)
    }
  })
})

describe('path without attaching', () => {
  const programs = new Programs()
  afterAll(async () => { await programs.cleanup() })

  it('createServer({ path }): routes under the prefix, nothing at the root, peers join through url()', async () => {
    const s = createServer({ path: '/deep/er/socket.io/', shutdownGraceMs: 0 })
    const peers: StarsockPeer[] = []
    try {
      await s.listen(0, '127.0.0.1')
      const origin = s.url().replace(/\/deep\/er\/$/, '')
      expect(s.url()).toBe(`${origin}/deep/er/`)
      expect(await get(`${origin}/deep/er/healthz`)).toMatchObject({ status: 200, body: 'ok\n' })
      expect((await get(`${origin}/healthz`)).status).toBe(404)
      expect((await get(`${origin}/socket.io/?EIO=4&transport=polling`)).status).toBe(404)
      await exchange(s, peers)
      // The same server by its origin and the path option.
      const c = await createPeer({ server: origin, path: '/deep/er/socket.io' })
      peers.push(c)
      expect(c.server.path).toBe('/deep/er/socket.io')
    } finally {
      for (const p of peers) await p.close()
      await s.close()
    }
  })

  it('starsock serve --path: the URL it prints has the prefix, its routes and socket.io live there', async () => {
    const program = programs.start(['serve', '--host', '127.0.0.1', '--port', '0', '--log-level', 'warn', '--path', '/sub/socket.io'])
    const url = await within(`the URL line from starsock serve --path (${program.err()})`, (async () => {
      for (;;) {
        const m = /^starsock (http:\/\/127\.0\.0\.1:\d+\/sub\/) /m.exec(program.out())
        if (m?.[1] !== undefined) return m[1]
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })(), 20_000)
    expect(program.out()).toContain(`starsock ${url} (page, socket.io, /sub/metrics, /sub/healthz, /sub/readyz)`)
    expect(await get(`${url}healthz`)).toMatchObject({ status: 200, body: 'ok\n' })
    const peer = await createPeer({ server: url })
    try {
      expect(peer.server.path).toBe('/sub/socket.io')
      // The CLI's clients take the same URL.
      const peers = programs.start(['peers', '--server', url, '--json'])
      expect(await within(`starsock peers --server ${url} to exit (${peers.err()})`, peers.exited, 20_000)).toBe(0)
      expect((JSON.parse(peers.out()) as Array<{ peerId: string }>).map((p) => p.peerId)).toContain(peer.peerId)
    } finally {
      await peer.close()
    }
  })

  it('a prefix is kept wherever a client hands its server on; a missing one is named; a pasted page address works', async () => {
    const s = createServer({ path: '/starsock/socket.io', shutdownGraceMs: 0 })
    const dir = mkdtempSync(join(tmpdir(), 'starsock-attach-'))
    let peer: StarsockPeer | undefined
    try {
      await s.listen(0, '127.0.0.1')
      const url = s.url()
      const origin = url.replace(/\/starsock\/$/, '')
      const listen = programs.start(['listen', '--server', url, '--key', join(dir, 'listener'), '--allow', 'connect/tcp:127.0.0.1:9', '--no-prompt', '--json'])
      const ready = await listen.event('ready', 20_000)
      expect(ready.server).toBe(url)
      const commands = ready.commands as string[]
      expect(commands.length).toBeGreaterThan(0)
      for (const command of commands) expect(command).toContain(`--server ${url} `)
      await listen.stop()
      // socket.io's own path option is honoured when the URL names none.
      peer = await createPeer({ server: origin, socketOptions: { path: '/starsock/socket.io' } })
      expect(peer.server.href).toBe(url)
      // Without the prefix: the reason says where socket.io was looked for.
      const wrong = programs.start(['peers', '--server', origin])
      expect(await within('starsock peers without the prefix to exit', wrong.exited, 20_000)).not.toBe(0)
      expect(wrong.err()).toContain('is an HTTP server, but no socket.io answers at /socket.io (a server started with --path?')
      // The status page's address, pasted as the server.
      const pasted = programs.start(['peers', '--server', `${url}status`, '--json'])
      expect(await within(`starsock peers --server ${url}status to exit (${pasted.err()})`, pasted.exited, 20_000)).toBe(0)
      expect((JSON.parse(pasted.out()) as Array<{ peerId: string }>).map((p) => p.peerId)).toContain(peer.peerId)
    } finally {
      await peer?.close()
      await s.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a client given a bad path in its server URL fails with one clear line', async () => {
    const peers = programs.start(['peers', '--server', 'http://127.0.0.1:9/a//b/'])
    expect(await within('starsock peers with a bad server path to exit', peers.exited, 20_000)).not.toBe(0)
    expect(peers.err()).toContain("the server URL's path must be plain URL path segments")
  })

  it('starsock serve --path refuses a bad path with one clear line', async () => {
    const program = programs.start(['serve', '--host', '127.0.0.1', '--port', '0', '--path', 'nope'])
    const code = await within('starsock serve --path nope to exit', program.exited, 20_000)
    expect(code).not.toBe(0)
    expect(program.err()).toContain("path must start with '/', got 'nope'")
  })
})

describe('the UDP relay, attached', () => {
  it('binds on the app server\'s address once it listens, and relays datagrams', async () => {
    const http = createHttpServer((_req, res) => { res.writeHead(404).end('app 404') })
    const low = 58000 + (process.pid % 100) * 20
    const s = createServer({ server: http, path: PATH, udpRelay: true, udpPorts: [low, low + 3], shutdownGraceMs: 0 })
    const sockets: dgram.Socket[] = []
    let peer: StarsockPeer | undefined
    try {
      expect(s.rendezvous.udp).toBeUndefined()
      await listenLocal(http)
      expect(s.rendezvous.udp).toBeDefined()
      peer = await createPeer({ server: s.url() })
      const a = await peer.udpAllocate({ mode: 'address', addresses: ['127.0.0.1'] })
      expect(a.ip).toBe('127.0.0.1')
      await relayBetweenTwoSockets(a, '127.0.0.1', sockets, 'through the attached relay')
    } finally {
      for (const socket of sockets) socket.close()
      await peer?.close()
      await s.close()
      await closeHttp(http)
    }
  })
  it('on an app listening on :: (listen(port) with no host), IPv4 sockets relay through it and the allocation gives 127.0.0.1', async () => {
    const http = createHttpServer((_req, res) => { res.writeHead(404).end('app 404') })
    const low = 58000 + (process.pid % 100) * 20 + 10
    const s = createServer({ server: http, path: PATH, udpRelay: true, udpPorts: [low, low + 3], shutdownGraceMs: 0 })
    const sockets: dgram.Socket[] = []
    let peer: StarsockPeer | undefined
    try {
      await new Promise<void>((resolve) => http.listen(0, resolve))
      expect((http.address() as AddressInfo).address).toBe('::')
      peer = await createPeer({ server: `http://127.0.0.1:${(http.address() as AddressInfo).port}/starsock/` })
      const a = await peer.udpAllocate({ mode: 'address', addresses: ['127.0.0.1'] })
      expect(a.ip).toBe('127.0.0.1')
      await relayBetweenTwoSockets(a, a.ip, sockets, 'through the relay bound on ::')
      const metrics = await s.metrics.registry.getSingleMetricAsString('starsock_udp_dropped_total')
      expect(metrics).not.toContain('send_error')
    } finally {
      for (const socket of sockets) socket.close()
      await peer?.close()
      await s.close()
      await closeHttp(http)
    }
  })
})

describe('the page served by an attached server, in real Chromium', () => {
  let browser: Browser
  beforeAll(async () => { browser = await launchChromium() }, 30_000)
  afterAll(async () => { await browser.close() })

  it('finds its socket.io path under the prefix, joins, and a Node peer sees it', async () => {
    let starsock: StarsockServer | undefined
    const app = await (APPS['Express 5'] as (s: () => StarsockServer | undefined) => Promise<App>)(() => starsock)
    starsock = createServer({ server: app.http, path: PATH, shutdownGraceMs: 0 })
    const context = await browser.newContext()
    let peer: StarsockPeer | undefined
    try {
      const page = await context.newPage()
      page.on('pageerror', (err) => { throw err })
      await page.goto(`${app.origin}/starsock`)
      expect(page.url()).toBe(`${app.origin}/starsock/`)
      await page.locator('#state[data-state="joined"]').waitFor({ timeout: 20_000 })
      await page.waitForFunction(() => /^[1-9A-Za-z]{40,}$/.test(document.getElementById('my-id')?.textContent ?? ''), undefined, { timeout: 20_000 })
      const id = await page.locator('#my-id').innerText()
      peer = await createPeer({ server: starsock.url() })
      await waitFor('the page\'s peer in the Node peer\'s list', () => peer?.peers().some((p) => p.addr.endsWith(id)) === true, 15_000)
      // Its figures come from the prefix too.
      await page.locator('#server-figures', { hasText: 'peers online' }).waitFor({ timeout: 15_000 })
    } finally {
      await context.close()
      await peer?.close()
      await starsock.close()
      await app.close()
    }
  })
})

/**
 * Two IPv4 UDP sockets on loopback relay through allocation `a` (sent to `ip`): the first sends to
 * port1 (so the relay learns it), then the second's datagram to port2 must reach the first.
 */
async function relayBetweenTwoSockets (a: { port1: number, port2: number }, ip: string, sockets: dgram.Socket[], what: string): Promise<void> {
  const [one, two] = await Promise.all([0, 1].map(async () => {
    const socket = dgram.createSocket('udp4')
    sockets.push(socket)
    const got: Buffer[] = []
    socket.on('message', (m) => got.push(m))
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
    return { socket, got }
  })) as [{ socket: dgram.Socket, got: Buffer[] }, { socket: dgram.Socket, got: Buffer[] }]
  one.socket.send(Buffer.from('first'), a.port1, ip)
  await new Promise((resolve) => setTimeout(resolve, 50))
  two.socket.send(Buffer.from('second'), a.port2, ip)
  await waitFor(`the second datagram at the first socket, ${what}`, () => one.got.some((m) => m.toString() === 'second'))
}
