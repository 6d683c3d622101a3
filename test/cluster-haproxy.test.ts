/**
 * The shipped `deploy/haproxy.cfg` in front of several `starsock serve` nodes, for real: Debian's
 * haproxy in the foreground, started and stopped by pid, on loopback (only its bind address and
 * server lines changed: `onLoopback` in test/helpers/haproxy.ts). Every engine.io session must
 * stay on the node that made it: HTTP long-polling makes many requests per session, and a node
 * that did not make it answers 400 "Session ID unknown". Checked with raw engine.io requests
 * (sid parameter only, as Node clients send them; cookie only), with the same requests through
 * the file without its stick rules (they fail: what the client checks here would catch), and
 * with every kind of client: socket.io-client 4 polling-only, WebSocket-only and upgrading, and
 * the published libp2p-websocket-star client (socket.io-client 2, engine.io 3). Then in front of
 * two `--redis` nodes (test/helpers/cluster.ts): a polling peer and a legacy peer land on
 * different nodes and dial each other across them; a node killed, its polling peer comes back
 * through haproxy on the other node.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from 'vitest'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createPeer, type StarsockPeer, type PeerState } from '../client/peer.ts'
import { echo, readAll } from './helpers/connections.ts'
import { expectBytes } from './helpers/bytes.ts'
import { HAPROXY, freePort, onLoopback, shippedHaproxyConfig, startHaproxy, type LoggedRequest, type RunningHaproxy } from './helpers/haproxy.ts'
import { TestCluster } from './helpers/cluster.ts'
import { legacyDial, legacyExchange, pull, startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { Programs } from './helpers/programs.ts'
import { testBytes, waitFor, within } from './helpers/server.ts'

const COOKIE = 'starsock_sid'

/** The socket.io-client 2 the published libp2p-websocket-star client connects with (its own copy). */
const legacySocketIo = createRequire(createRequire(import.meta.url).resolve('libp2p-websocket-star'))('socket.io-client') as { connect: (url: string, opts: Record<string, unknown>) => unknown }

/**
 * A published libp2p-websocket-star peer that starts with long-polling and upgrades, as a
 * socket.io-client 2 user gets by default: the published listener asks for `transports:
 * ['websocket']`, so its `io.connect` is given polling first for this one connect.
 */
async function startPollingLegacyPeer (port: number, handler: (conn: unknown) => void): Promise<LegacyPeer> {
  const connect = legacySocketIo.connect
  legacySocketIo.connect = (url, opts) => connect(url, { ...opts, transports: ['polling', 'websocket'] })
  try {
    return await startLegacyPeer(port, handler)
  } finally {
    legacySocketIo.connect = connect
  }
}

/** haproxy is a system package (scripts/ensure-system-deps.sh): skipped where missing, failing in CI. */
function needHaproxy (ctx: TestContext): void {
  if (existsSync(HAPROXY)) return
  if (process.env.CI !== undefined) throw new Error(`${HAPROXY} is missing: CI must have it (scripts/ensure-system-deps.sh installs it)`)
  ctx.skip(`${HAPROXY} is missing`)
}

/** The `sid` parameter of a logged request's URI, if any. */
function sidOf (req: LoggedRequest): string | undefined {
  return new URL(req.uri, 'http://x').searchParams.get('sid') ?? undefined
}

/** The logged requests of each session (by `sid`), with the nodes that served them. */
function sessions (requests: LoggedRequest[]): Map<string, { servers: Set<string | undefined>, count: number, statuses: number[] }> {
  const out = new Map<string, { servers: Set<string | undefined>, count: number, statuses: number[] }>()
  for (const req of requests) {
    const sid = sidOf(req)
    if (sid === undefined) continue
    const s = out.get(sid) ?? { servers: new Set(), count: 0, statuses: [] }
    s.servers.add(req.server)
    s.count++
    s.statuses.push(req.status)
    out.set(sid, s)
  }
  return out
}

/** An engine.io polling handshake through `url` (`tag` makes it findable in haproxy's log); settles with the session id, the Set-Cookie header and the status. */
async function handshake (url: string, eio: 3 | 4, tag: string, cookie?: string): Promise<{ status: number, sid: string, setCookie: string | null }> {
  const r = await fetch(`${url}/socket.io/?EIO=${eio}&transport=polling&t=${tag}`, { headers: cookie === undefined ? {} : { cookie } })
  const body = await r.text()
  return { status: r.status, sid: /"sid":"([^"]+)"/.exec(body)?.[1] ?? '', setCookie: r.headers.get('set-cookie') }
}

/** A noop packet posted to session `sid` by its `sid` parameter only (no cookie, as a Node client); settles with status and body. */
async function noop (url: string, eio: 3 | 4, sid: string): Promise<{ status: number, body: string }> {
  // engine.io 3 frames a polling payload as `<length>:<packet>`; engine.io 4 sends the packet bare. 6 is noop.
  const r = await fetch(`${url}/socket.io/?EIO=${eio}&transport=polling&sid=${encodeURIComponent(sid)}`, { method: 'POST', body: eio === 3 ? '1:6' : '6' })
  return { status: r.status, body: await r.text() }
}

/** `/status.json`'s peer count of the node at `url` (a node's own, not through haproxy). */
async function peersOn (url: string): Promise<number> {
  return ((await (await fetch(`${url}/status.json`)).json()) as { peers: number }).peers
}

/** A cluster node's own peers (`/status.json`: every peer it knows less the other nodes'), and every peer it knows. */
async function clusterPeersOn (url: string): Promise<{ local: number, all: number }> {
  const s = (await (await fetch(`${url}/status.json`)).json()) as { peers: number, clusterRemotePeers: number }
  return { local: s.peers - s.clusterRemotePeers, all: s.peers }
}

/** Wait until haproxy's log passes `check` (a request is logged when it ends); settles with its requests. */
async function logged (proxy: RunningHaproxy, what: string, check: (r: LoggedRequest[]) => boolean): Promise<LoggedRequest[]> {
  await waitFor(`${what} in haproxy's log (log: ${proxy.log().slice(-2000)})`, () => check(proxy.requests()), 15_000)
  return proxy.requests()
}

describe('haproxy (deploy/haproxy.cfg) in front of two starsock nodes', () => {
  const programs = new Programs()
  const proxies: RunningHaproxy[] = []
  const peers: StarsockPeer[] = []
  const legacy: LegacyPeer[] = []
  let nodes: Array<{ url: string, port: number }> = []

  beforeAll(async () => {
    if (!existsSync(HAPROXY)) return
    nodes = await Promise.all([0, 1].map(async () => await programs.serve(0, ['--sticky-cookie', COOKIE, '--trust-proxy'])))
  }, 60_000)
  afterEach(async () => {
    for (const p of peers.splice(0)) await p.close()
    for (const l of legacy.splice(0)) l.stop()
    for (const p of proxies.splice(0)) await p.stop()
  })
  afterAll(async () => { await programs.cleanup() })

  /** haproxy running the shipped file (changed by `change`, for the test that removes its stickiness) in front of the two nodes. */
  const proxy = async (change: (text: string) => string = (t) => t): Promise<RunningHaproxy> => {
    const port = await freePort()
    const p = await startHaproxy(change(onLoopback(shippedHaproxyConfig(), port, nodes.map((n) => n.port))), port)
    proxies.push(p)
    return p
  }

  it('sets the cookie to the session id in the handshake, and keeps every later request of a session on its node by the sid parameter alone (engine.io 4 and 3), or by the cookie alone for a new handshake', async (ctx) => {
    needHaproxy(ctx)
    const p = await proxy()
    const { url } = p
    const made: Array<{ sid: string, eio: 3 | 4 }> = []
    for (const [i, eio] of ([4, 4, 3, 3] as const).entries()) {
      const h = await handshake(url, eio, `hs${i}`)
      expect(h.status).toBe(200)
      expect(h.sid).toMatch(/^[\w-]{20}$/)
      // What haproxy learns the session's node from, and what a browser sends back.
      expect(h.setCookie).toBe(`${COOKIE}=${h.sid}; Path=/socket.io; HttpOnly; SameSite=Lax`)
      made.push({ sid: h.sid, eio })
    }
    for (const { sid, eio } of made) {
      for (let i = 0; i < 5; i++) expect(await noop(url, eio, sid)).toEqual({ status: 200, body: 'ok' })
    }
    const requests = await logged(p, 'the 24 requests', (r) => r.filter((q) => q.uri.startsWith('/socket.io/')).length >= 24)
    const bySid = sessions(requests)
    for (const { sid } of made) {
      expect([sid, bySid.get(sid)?.count, bySid.get(sid)?.servers.size]).toEqual([sid, 5, 1])
    }
    // The handshakes went round both nodes: without stickiness, every other request would have missed.
    const handshakeServers = made.map((_, i) => requests.find((r) => r.uri.includes(`&t=hs${i}`))?.server)
    expect(new Set(handshakeServers)).toEqual(new Set(['node1', 'node2']))
    for (const [i, { sid }] of made.entries()) expect([sid, [...(bySid.get(sid)?.servers ?? [])]]).toEqual([sid, [handshakeServers[i]]])

    // A new handshake with only the cookie of an earlier session (a browser's) goes to that
    // session's node: three in a row for each of two sessions on different nodes (round robin
    // alone would alternate).
    const owners = [0, 1].map((i) => ({ sid: made[i]?.sid ?? '', server: handshakeServers[i] }))
    expect(owners[0]?.server).not.toBe(owners[1]?.server)
    for (const [o, owner] of owners.entries()) {
      for (let i = 0; i < 3; i++) expect((await handshake(url, 4, `cookie${o}-${i}`, `${COOKIE}=${owner.sid}`)).status).toBe(200)
    }
    // A cookie naming no session haproxy knows (a client's own words are only looked up, never stored) is balanced as usual.
    expect((await handshake(url, 4, 'forged', `${COOKIE}=AAAAAAAAAAAAAAAAAAAA`)).status).toBe(200)
    const after = await logged(p, 'the cookie handshakes', (r) => r.some((q) => q.uri.endsWith('&t=forged')))
    for (const [o, owner] of owners.entries()) {
      for (let i = 0; i < 3; i++) expect([o, i, after.find((r) => r.uri.endsWith(`&t=cookie${o}-${i}`))?.server]).toEqual([o, i, owner.server])
    }
  }, 60_000)

  it('lets only a node\'s handshake answer write its stick table: sid parameters and cookies that clients make up add nothing, and the table has the bounded size the file says', async (ctx) => {
    needHaproxy(ctx)
    const p = await proxy()
    const real: string[] = []
    for (let i = 0; i < 2; i++) real.push((await handshake(p.url, 4, `real${i}`)).sid)
    const forged = ['AAAAAAAAAAAAAAAAAAAA', 'x'.repeat(200), 'a%00b', '../../etc', real[0]?.split('').reverse().join('') ?? '']
    for (const sid of forged) {
      expect((await noop(p.url, 4, sid)).status).toBe(400) // "Session ID unknown" from whichever node
      // A handshake with a made-up cookie is a real new session: its own id goes in the table, not the cookie's.
      const h = await handshake(p.url, 4, 'forged-cookie', `${COOKIE}=${encodeURIComponent(sid)}`)
      expect(h.status).toBe(200)
      real.push(h.sid)
    }
    const table = await p.admin('show table starsock')
    expect(table).toMatch(/^# table: starsock, type: string, size:1048576, used:\d+$/m)
    const keys = [...table.matchAll(/ key=(\S+) .*server_key=(\S+)/g)].map((m) => m[1])
    expect(new Set(keys)).toEqual(new Set(real))
    for (const sid of forged) expect(keys).not.toContain(sid.slice(0, 32))
  }, 60_000)

  it('appends the client\'s address to X-Forwarded-For, which a node with --trust-proxy counts (a client\'s own X-Forwarded-For is ignored)', async (ctx) => {
    needHaproxy(ctx)
    const { port: nodePort } = await programs.serve(0, ['--sticky-cookie', COOKIE, '--trust-proxy', '--max-peers-per-ip', '1'])
    const port = await freePort()
    const p = await startHaproxy(onLoopback(shippedHaproxyConfig(), port, [nodePort]), port)
    proxies.push(p)
    const claiming = async (ip: string): Promise<StarsockPeer> => {
      const peer = await createPeer({ server: p.url, transports: ['polling'], socketOptions: { extraHeaders: { 'X-Forwarded-For': ip } } })
      peers.push(peer)
      return peer
    }
    await claiming('203.0.113.1')
    await expect(claiming('203.0.113.2')).rejects.toMatchObject({ code: 'E_LIMIT_PEERS_PER_IP' })
  }, 60_000)

  it('without its stick rules, the same requests reach the other node and are answered "Session ID unknown" (what the checks here catch)', async (ctx) => {
    needHaproxy(ctx)
    const unstuck = (text: string): string => {
      const out = text.replace(/^ {4}stick (store-response|match) .*\n/gm, '')
      expect(text.split('\n').length - out.split('\n').length).toBe(3) // the three stick rules, nothing else
      return out
    }
    const { url } = await proxy(unstuck)
    const h = await handshake(url, 4, 'loose')
    expect(h.status).toBe(200)
    const answers = []
    for (let i = 0; i < 4; i++) answers.push(await noop(url, 4, h.sid))
    const unknown = answers.filter((a) => a.status === 400)
    expect(unknown.length).toBeGreaterThan(0)
    expect(unknown[0]?.body).toContain('Session ID unknown')
    // A socket.io-client 4 polling peer cannot even join through it (its first POST misses).
    await expect(createPeer({ server: url, transports: ['polling'], timeoutMs: 5000 })).rejects.toThrow()
  }, 60_000)

  it('carries a polling-only, a WebSocket-only and an upgrading socket.io-client 4 peer and a legacy engine.io 3 peer, spread over both nodes, through many requests without one reconnect; peers on one node dial each other', async (ctx) => {
    needHaproxy(ctx)
    const p = await proxy()
    const { url, port } = p
    const states = new Map<string, PeerState[]>()
    const join = async (name: string, transports: Array<'websocket' | 'polling'>): Promise<StarsockPeer> => {
      const p = await within(`${name} to join through haproxy`, createPeer({ server: url, transports }), 30_000)
      peers.push(p)
      const seen: PeerState[] = []
      states.set(name, seen)
      p.on('state', (s) => seen.push(s))
      return p
    }
    // Joined one after the other, so round robin puts 1 and 3 on one node, 2 and the legacy peer on the other.
    const polling = await join('polling', ['polling'])
    const ws = await join('websocket', ['websocket'])
    const upgrading = await join('upgrading', ['polling', 'websocket'])
    const old = await startPollingLegacyPeer(port, (conn) => { void conn })
    legacy.push(old)
    let legacyDrops = 0
    old.listener.io.on('disconnect', () => { legacyDrops++ })
    old.listener.io.on('reconnect_attempt', () => { legacyDrops++ })

    const counts = await Promise.all(nodes.map(async (n) => await peersOn(n.url)))
    expect(counts).toEqual([2, 2])
    await waitFor('the polling and the upgrading peer to see each other (one node)', () => polling.peers().some((p) => p.peerId === upgrading.peerId) && upgrading.peers().some((p) => p.peerId === polling.peerId), 15_000)
    await waitFor('the WebSocket peer to see the legacy peer (the other node)', () => ws.peers().some((p) => p.addr === old.addr), 15_000)

    // Longer than engine.io's ping interval (10 s): the polling peer answers pings through many polls.
    await new Promise((resolve) => setTimeout(resolve, 12_000))
    upgrading.handle(echo)
    const conn = await within('the polling peer\'s dial to the upgrading peer', polling.dial(upgrading.peerId), 15_000)
    const data = testBytes(200_000, 7)
    const back = readAll(conn)
    await conn.write(data)
    await conn.closeWrite()
    expectBytes(await within('the echo through haproxy, polling <-> upgraded', back, 30_000), data, 'polling -> upgrading')
    ws.handle(echo)
    const lconn = await within('the legacy peer\'s dial to the WebSocket peer', legacyDial(old, ws.addr), 15_000)
    const ldata = testBytes(100_000, 8)
    expectBytes(await within('the echo through haproxy, legacy <-> WebSocket', legacyExchange(lconn, ldata), 30_000), ldata, 'legacy -> websocket')

    // No peer dropped or reconnected: a request on the wrong node would have ended its session.
    for (const [name, seen] of states) expect([name, seen]).toEqual([name, []])
    expect(legacyDrops).toBe(0)
    expect(await Promise.all(nodes.map(async (n) => await peersOn(n.url)))).toEqual([2, 2])

    // A request that races a session's close is answered 400 ("Session ID unknown") by the node
    // that held it: only what was logged while every peer was joined must be free of 400s.
    const whileJoined = p.requests().length
    for (const peer of peers.splice(0)) await peer.close()
    old.stop()
    // Every session's requests (WebSockets are logged once closed) reached one node; the polling
    // peer's session made many; the upgrading ones upgraded on the node of their polls.
    const requests = await logged(p, 'the two upgrades (engine.io 4 and 3)', (r) => r.some((q) => /EIO=4&transport=websocket&sid=/.test(q.uri)) && r.some((q) => /EIO=3&transport=websocket&sid=/.test(q.uri)))
    // The legacy peer began with polling on its node (its handshake has no sid, its upgrade does).
    expect(requests.some((q) => /EIO=3&transport=polling&.*sid=/.test(q.uri))).toBe(true)
    const bySid = sessions(requests.filter((r) => r.uri.startsWith('/socket.io/')))
    for (const [sid, s] of bySid) expect([sid, s.servers.size]).toEqual([sid, 1])
    const refused = requests.slice(0, whileJoined).filter((r) => r.uri.startsWith('/socket.io/') && r.status === 400)
    expect(refused).toEqual([])
    expect(Math.max(...[...bySid.values()].map((s) => s.count))).toBeGreaterThanOrEqual(5)
    expect(new Set(requests.filter((r) => r.uri.startsWith('/socket.io/')).map((r) => r.server))).toEqual(new Set(['node1', 'node2']))
  }, 120_000)
})

describe('haproxy (deploy/haproxy.cfg) in front of two --redis nodes (one rendezvous)', () => {
  const cluster = new TestCluster()
  let proxy: RunningHaproxy | undefined
  const peers: StarsockPeer[] = []
  const legacy: LegacyPeer[] = []
  let nodes: Array<{ url: string, port: number }> = []

  beforeAll(async () => {
    if (!existsSync(HAPROXY)) return
    nodes = await cluster.start(2, ['--sticky-cookie', COOKIE, '--trust-proxy'])
  }, 60_000)
  afterAll(async () => {
    for (const p of peers.splice(0)) await p.close()
    for (const l of legacy.splice(0)) l.stop()
    await proxy?.stop()
    await cluster.cleanup()
  })

  it('a polling peer and a legacy peer joined through haproxy land on different nodes, see each other, and dial each other across the nodes both ways, bytes exact', async (ctx) => {
    needHaproxy(ctx)
    const port = await freePort()
    proxy = await startHaproxy(onLoopback(shippedHaproxyConfig(), port, nodes.map((n) => n.port)), port)
    const url = proxy.url
    // One after the other: round robin puts them on different nodes.
    const polling = await within('the polling peer to join through haproxy', createPeer({ server: url, transports: ['polling'] }), 30_000)
    peers.push(polling)
    const drops: string[] = []
    polling.on('state', (s) => drops.push(s))
    const old = await startPollingLegacyPeer(port, (conn: unknown) => { pull(conn, conn) }) // echoes
    legacy.push(old)
    old.listener.io.on('disconnect', () => { drops.push('legacy disconnect') })

    // Each node holds one of them and knows both.
    let last: Array<{ local: number, all: number }> = []
    const deadline = Date.now() + 30_000
    while (Date.now() < deadline) {
      last = await Promise.all(nodes.map(async (n) => await clusterPeersOn(n.url)))
      if (last.every((c) => c.local === 1 && c.all === 2)) break
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    expect(last).toEqual([{ local: 1, all: 2 }, { local: 1, all: 2 }])
    await waitFor('the polling peer to discover the legacy peer on the other node', () => polling.peers().some((p) => p.addr === old.addr), 30_000)

    // The legacy peer dials the polling peer on the other node (it echoes) ...
    polling.handle(echo)
    const toPolling = await within('the legacy peer\'s dial across nodes', legacyDial(old, polling.addr), 30_000)
    const a = testBytes(300_000, 11)
    expectBytes(await within('the echo across nodes, legacy -> polling', legacyExchange(toPolling, a), 60_000), a, 'legacy -> polling across nodes')
    // ... and the polling peer dials the legacy peer (a legacy peer speaks no Noise).
    const toLegacy = await within('the polling peer\'s dial across nodes', polling.dial(old.id, { secure: false }), 30_000)
    const b = testBytes(300_000, 12)
    const back = readAll(toLegacy)
    await toLegacy.write(b)
    await toLegacy.closeWrite()
    expectBytes(await within('the echo across nodes, polling -> legacy', back, 60_000), b, 'polling -> legacy across nodes')
    expect(drops).toEqual([])

    // Every session stayed on its node, and both nodes served sessions.
    for (const [sid, s] of sessions(proxy.requests().filter((r) => r.uri.startsWith('/socket.io/')))) expect([sid, s.servers.size, s.statuses.filter((st) => st === 400)]).toEqual([sid, 1, []])
    expect(new Set(proxy.requests().filter((r) => r.uri.startsWith('/socket.io/')).map((r) => r.server))).toEqual(new Set(['node1', 'node2']))
  }, 120_000)

  it('a node killed (kill -9) behind haproxy: its polling peer comes back through haproxy on the surviving node, where a peer dials it, bytes exact', async (ctx) => {
    needHaproxy(ctx)
    // A node of its own to kill, and haproxy in front of it and the first node.
    const doomed = await cluster.node(['--sticky-cookie', COOKIE, '--trust-proxy'])
    const survivor = nodes[0] as { url: string, port: number }
    const port = await freePort()
    const lb = await startHaproxy(onLoopback(shippedHaproxyConfig(), port, [survivor.port, doomed.port]), port)
    try {
      const before = (await clusterPeersOn(survivor.url)).local
      const join = async (): Promise<StarsockPeer> => {
        const p = await within('a polling peer to join through haproxy', createPeer({ server: lb.url, transports: ['polling'] }), 30_000)
        peers.push(p)
        return p
      }
      // Round robin: of two peers joined one after the other, one lands on each node.
      const first = await join()
      const firstOnSurvivor = (await clusterPeersOn(survivor.url)).local === before + 1
      const second = await join()
      const [stays, moves] = firstOnSurvivor ? [first, second] : [second, first]
      expect(await clusterPeersOn(doomed.url)).toMatchObject({ local: 1 })
      const states: PeerState[] = []
      moves.on('state', (s) => states.push(s))

      doomed.program.proc.kill('SIGKILL')
      // haproxy sends its next requests to the survivor (a failed connect is redispatched; the
      // /readyz checks take the node out): the peer makes a new session there and joins again.
      await waitFor('the moved peer to join again on the surviving node', () => states.includes('reconnecting') && moves.state === 'joined', 60_000)
      let local = 0
      const deadline = Date.now() + 30_000
      while (Date.now() < deadline && local !== before + 2) {
        local = (await clusterPeersOn(survivor.url)).local
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      expect(local).toBe(before + 2)
      moves.handle(echo)
      const conn = await within('a dial to the moved peer', stays.dial(moves.peerId), 30_000)
      const data = testBytes(200_000, 13)
      const back = readAll(conn)
      await conn.write(data)
      await conn.closeWrite()
      expectBytes(await within('the echo from the moved peer', back, 30_000), data, 'to the moved peer')
    } finally {
      await lb.stop()
    }
  }, 120_000)
})
