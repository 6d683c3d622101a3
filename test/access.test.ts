/**
 * Who may see what: the peer directory only for joined, allowed peers; joined addresses per client
 * IP; the operations routes behind the server token.
 */
import { io, type Socket } from 'socket.io-client'
import { afterEach, describe, expect, it } from 'vitest'
import { createIdentity } from '../client/identity.ts'
import { createPeer } from '../client/peer.ts'
import type { ServerOptions } from '../server/options.ts'
import type { StarsockServer } from '../server/server.ts'
import { joinWithChallenge, makeIdentity, request } from './helpers/raw-peer.ts'
import { startServer, waitFor, within } from './helpers/server.ts'

describe('access', () => {
  let server: (StarsockServer & { port: number }) | undefined
  const cleanup: Array<{ close: () => unknown }> = []
  const start = async (options: ServerOptions = {}): Promise<StarsockServer & { port: number }> => {
    server = await startServer(options)
    return server
  }
  /** A raw socket.io client (with headers, as a reverse proxy would add them). */
  const socket = async (s: StarsockServer, extraHeaders: Record<string, string> = {}): Promise<Socket> => {
    const sock = io(s.url(), { transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders })
    cleanup.push(sock)
    await within('a socket.io connection', new Promise<void>((resolve, reject) => {
      sock.once('connect', () => resolve())
      sock.once('connect_error', (err) => reject(err))
    }))
    return sock
  }

  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c.close()
    await server?.close()
    server = undefined
  })

  it('serves starsock:peers only to a joined peer; announcements, at a join and every interval, go only to joined peers', async () => {
    const s = await start({ announceIntervalMs: 200 })
    const lurker = await socket(s)
    expect(await request(lurker, 'starsock:hello', [{ peerEvents: true }])).toHaveLength(2)
    const heard: string[] = []
    lurker.onAny((event: string) => heard.push(event))
    expect(await request(lurker, 'starsock:peers', [0])).toEqual(['Join before asking for peers [E_NOT_JOINED]'])
    // A legacy client (no hello: it would get the periodic ws-peer) that never joins.
    const legacyLurker = await socket(s)
    const legacyHeard: string[] = []
    legacyLurker.onAny((event: string) => legacyHeard.push(event))
    // A joined legacy client: it does get them, at each join and every interval.
    const legacy = await socket(s)
    const l = await makeIdentity(s.port)
    await joinWithChallenge(legacy, l.key, l.addr)
    const legacySeen: string[] = []
    legacy.on('ws-peer', (a: string) => legacySeen.push(a))
    const watcher = await socket(s)
    await request(watcher, 'starsock:hello', [{ peerEvents: true }])
    const w = await makeIdentity(s.port)
    await joinWithChallenge(watcher, w.key, w.addr)
    const joinedSeen: string[] = []
    watcher.on('starsock:peer-join', (a: string) => joinedSeen.push(a))
    const j = await makeIdentity(s.port)
    const joiner = await socket(s)
    await joinWithChallenge(joiner, j.key, j.addr)
    await waitFor('the peer-join at the joined watcher', () => joinedSeen.includes(j.addr))
    const [err, page] = await request(watcher, 'starsock:peers', [0])
    expect(err).toBeNull()
    expect((page as { addrs: string[] }).addrs.sort()).toEqual([l.addr, j.addr].sort())
    expect(await request(lurker, 'starsock:peers', [0])).toEqual(['Join before asking for peers [E_NOT_JOINED]'])
    // Two joins announced at once, then the same addresses again at least twice: intervals passed.
    await waitFor('6 ws-peer at the joined legacy client (2 at the joins, then periodic ones)', () => legacySeen.filter((a) => a === j.addr).length >= 3 && legacySeen.length >= 6, 5000)
    expect(heard).toEqual([])
    expect(legacyHeard).toEqual([])
    // A bad cursor is still a bad request, joined or not.
    expect((await request(lurker, 'starsock:peers', [-1]))[0]).toMatch(/\[E_BAD_REQUEST\]$/)
  })

  it('with --allow-peer, a peer that is not allowed cannot page the directory; an allowed client still loads it at join', async () => {
    const allowedA = await createIdentity()
    const allowedB = await createIdentity()
    const s = await start({ allowPeers: [allowedA.peerId, allowedB.peerId] })
    const a = await createPeer({ server: s.url(), identity: allowedA })
    cleanup.push({ close: async () => await a.close() })
    const stranger = await socket(s)
    const other = await makeIdentity(s.port)
    await expect(joinWithChallenge(stranger, other.key, other.addr)).rejects.toThrow('[E_FORBIDDEN]')
    expect(await request(stranger, 'starsock:peers', [0])).toEqual(['Join before asking for peers [E_NOT_JOINED]'])
    // The client pages the peer list right after its join completes: that still works.
    const b = await createPeer({ server: s.url(), identity: allowedB })
    cleanup.push({ close: async () => await b.close() })
    expect(b.peers().map((p) => p.peerId)).toEqual([allowedA.peerId])
  })

  it('caps addresses joined from one client IP or IPv6 /64 (the rightmost X-Forwarded-For entry behind a trusted proxy); another still joins', async () => {
    const s = await start({ maxPeersPerIp: 2, trustProxy: true })
    const from = async (ip: string, me?: Awaited<ReturnType<typeof makeIdentity>>): Promise<unknown> => {
      const sock = await socket(s, { 'x-forwarded-for': ip })
      me ??= await makeIdentity(s.port)
      return await joinWithChallenge(sock, me.key, me.addr).then(() => null, (err: Error) => err.message)
    }
    const first = await makeIdentity(s.port)
    expect(await from('10.1.1.1', first)).toBeNull()
    // The proxy appends what it saw: the rightmost entry counts; the client wrote the rest.
    expect(await from('10.9.9.9, 10.1.1.1')).toBeNull()
    expect(await from('10.1.1.1')).toBe('Peer limit of this IP address reached (maxPeersPerIp=2) [E_LIMIT_PEERS_PER_IP]')
    // A client writing other addresses on the left does not get around the cap...
    expect(await from('10.3.3.3, 10.1.1.1')).toBe('Peer limit of this IP address reached (maxPeersPerIp=2) [E_LIMIT_PEERS_PER_IP]')
    // ...nor burns another client's quota by naming it.
    expect(await from('10.2.2.2, 10.4.4.4')).toBeNull()
    expect(await from('10.2.2.2')).toBeNull()
    // A reconnect from the same IP moves an address; it does not add one.
    expect(await from('10.1.1.1', first)).toBeNull()
    expect(s.stats().peers).toBe(4)
    // An IPv6 /64 is one client: fresh addresses in it do not get around the cap.
    expect(await from('2001:db8:1:2::1')).toBeNull()
    expect(await from('2001:db8:1:2:ffff::2')).toBeNull()
    expect(await from('2001:db8:1:2::3')).toBe('Peer limit of this IP address reached (maxPeersPerIp=2) [E_LIMIT_PEERS_PER_IP]')
    expect(await from('2001:db8:1:3::1')).toBeNull()
    expect(await s.metrics.registry.metrics()).toMatch(/^starsock_limit_hits_total\{limit="E_LIMIT_PEERS_PER_IP"\} 3$/m)
    // An entry that is not an IP address counts as the socket's own address.
    const before = new Set([...s.rendezvous.sessions.keys()])
    await socket(s, { 'x-forwarded-for': '10.5.5.5, not-an-ip' })
    await socket(s, { 'x-forwarded-for': '10.5.5.5, 10.6.6.6:1234' })
    const added = [...s.rendezvous.sessions.values()].filter((session) => !before.has(session.id)).map((session) => session.ip)
    expect(added).toEqual(['127.0.0.1', '127.0.0.1'])
  })

  it('with a token, /metrics, /status and /status.json refuse without it and answer with it; health stays open', async () => {
    const s = await start({ token: 'ops-s3cret', webRoot: '' })
    const get = async (path: string, headers: Record<string, string> = {}): Promise<{ status: number, text: string }> => {
      const res = await fetch(`${s.url()}${path}`, { headers })
      return { status: res.status, text: await res.text() }
    }
    for (const path of ['/metrics', '/status', '/status.json']) {
      expect((await get(path)).status).toBe(401)
      expect((await get(path, { authorization: 'Bearer wrong' })).status).toBe(401)
      expect((await get(`${path}?token=ops-s3cre`)).status).toBe(401)
      expect((await get(path, { authorization: 'Bearer ops-s3cret' })).status).toBe(200)
      expect((await get(`${path}?token=ops-s3cret`)).status).toBe(200)
    }
    expect((await get('/metrics', { authorization: 'Bearer ops-s3cret' })).text).toContain('# TYPE rendezvous_peers gauge')
    expect(JSON.parse((await get('/status.json?token=ops-s3cret')).text)).toMatchObject({ peers: 0 })
    expect((await get('/metrics')).text).not.toContain('rendezvous_peers')
    expect(await get('/healthz')).toEqual({ status: 200, text: 'ok\n' })
    expect((await get('/readyz')).status).toBe(200)
    // The built-in page at / still answers, without the figures unless the token comes along.
    const page = await get('/')
    expect(page.status).toBe(200)
    expect(page.text).not.toContain('relayedBytes')
    expect((await get('/?token=ops-s3cret')).text).toContain('relayedBytes')
    // Without a token the routes stay public, as before.
    await s.close()
    const open = await start({ webRoot: '' })
    expect((await fetch(`${open.url()}/metrics`)).status).toBe(200)
  })
})
