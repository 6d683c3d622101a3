/**
 * Profiles (issue 17): display names and kinds relayed by the server to starsock clients with
 * join events, `starsock:peers` pages and renames; bad names and kinds refused in the ack; the
 * `gateway` kind believed only for the server's own gateway peer; renames rate-limited; legacy
 * websocket-star clients see nothing new; a client drops what a hostile server relays unchecked.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Socket } from 'socket.io-client'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { PeerList, type PeerInfo } from '../client/peer-list.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { checkName, type PeerProfile } from '../shared/profile.ts'
import { StarsockError } from '../shared/errors.ts'
import { checkPeersPage } from '../shared/validate.ts'
import type { StarsockServer } from '../server/server.ts'
import { tcpProxy } from './helpers/proxy.ts'
import { startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { peerIdOf, Programs, runProgram } from './helpers/programs.ts'
import { useUp } from './helpers/up.ts'
import { connectSocket, joinWithChallenge, makeIdentity, request } from './helpers/raw-peer.ts'
import { startServer, waitFor, within } from './helpers/server.ts'

describe('profiles: display names and kinds', () => {
  let server: StarsockServer & { port: number }
  const peers: StarsockPeer[] = []
  const sockets: Socket[] = []
  const legacy: LegacyPeer[] = []

  const peer = async (profile?: { name?: string, kind?: 'browser' | 'node' | 'gateway' }): Promise<StarsockPeer> => {
    const p = await createPeer({ server: server.url(), profile })
    peers.push(p)
    return p
  }

  /** A starsock-speaking raw socket: hello (with `profile`), then joined; returns it and its address. */
  const rawStarsock = async (profile?: unknown): Promise<{ socket: Socket, addr: string, id: string, hello: unknown[] }> => {
    const socket = await connectSocket(server.url())
    sockets.push(socket)
    const hello = await request(socket, 'starsock:hello', [{ peerEvents: true, ...(profile === undefined ? {} : { profile }) }])
    const { key, addr, id } = await makeIdentity(server.port)
    await joinWithChallenge(socket, key, addr)
    return { socket, addr, id, hello }
  }

  const infoOf = async (p: StarsockPeer, peerId: string, what: string, check: (info: PeerInfo) => boolean = () => true): Promise<PeerInfo> => {
    await waitFor(`${what}`, () => p.peers().some((i) => i.peerId === peerId && check(i)), 20_000)
    return p.peers().find((i) => i.peerId === peerId) as PeerInfo
  }

  afterEach(async () => {
    for (const p of peers.splice(0)) await p.close()
    for (const s of sockets.splice(0)) s.close()
    for (const l of legacy.splice(0)) l.stop()
    await server?.close()
  })

  it('reach other starsock clients: in the join event, in the pages of a later joiner, and as renames', async () => {
    server = await startServer()
    const a = await peer({ name: 'Alice' })
    const joined = new Promise<PeerInfo>((resolve) => a.on('peer:join', resolve))
    // Given decomposed (e + combining acute) and padded: others see it NFC and trimmed.
    const b = await peer({ name: '  Bérénice\u0301 '.normalize('NFD') })
    const seenByA = await within('A hearing of B join', joined, 20_000)
    expect(seenByA).toEqual({ peerId: b.peerId, addr: b.addr, name: 'Bérénice\u0301'.normalize('NFC'), kind: 'node' })
    // B joined after A: it learned A from the paged list, with A's profile.
    expect(await infoOf(b, a.peerId, 'A in B\'s list')).toEqual({ peerId: a.peerId, addr: a.addr, name: 'Alice', kind: 'node' })
    expect(a.profile).toEqual({ name: 'Alice', kind: 'node' })

    const renamed = new Promise<PeerInfo>((resolve) => b.on('peer:profile', resolve))
    expect(await a.setProfile({ name: 'Alice 🦊' })).toEqual({ name: 'Alice 🦊', kind: 'node' })
    expect(await within('B hearing of A\'s rename', renamed, 20_000)).toMatchObject({ peerId: a.peerId, name: 'Alice 🦊', kind: 'node' })
    expect((await infoOf(b, a.peerId, 'the new name in B\'s list', (i) => i.name === 'Alice 🦊')).name).toBe('Alice 🦊')
    // No name at all is a profile too: the kind stays.
    await a.setProfile({ name: '' })
    const cleared = await infoOf(b, a.peerId, 'A\'s name cleared in B\'s list', (i) => i.name === undefined)
    expect(cleared).toEqual({ peerId: a.peerId, addr: a.addr, kind: 'node' })
    // A rejoin (the server dropped B's socket) finds the profiles again.
    const c = await peer()
    expect(await infoOf(c, b.peerId, 'B in C\'s list')).toMatchObject({ name: 'Bérénice\u0301'.normalize('NFC'), kind: 'node' })
  }, 60_000)

  it.each<[string, unknown]>([
    ['a right-to-left override', { name: 'paypal\u202Egnp.exe', kind: 'node' }],
    ['a bidi isolate', { name: 'a\u2066b', kind: 'node' }],
    ['a line break', { name: 'line\nbreak', kind: 'node' }],
    ['a NUL', { name: 'nul\u0000', kind: 'node' }],
    ['a zero-width space', { name: 'a\u200Bb', kind: 'node' }],
    ['41 characters', { name: 'x'.repeat(41), kind: 'node' }],
    ['100,000 characters', { name: 'x'.repeat(100_000), kind: 'node' }],
    ['a number', { name: 42, kind: 'node' }],
    ['an unknown kind', { name: 'ok', kind: 'robot' }],
    ['no kind', { name: 'ok' }],
    ['not an object', 'Mallory']
  ])('refuses %s with an error in the ack, and others never see it', async (_what, profile) => {
    server = await startServer()
    const watcher = await peer()
    const raw = await rawStarsock({ name: 'Before', kind: 'node' })
    await infoOf(watcher, raw.id, 'the raw peer in the watcher\'s list', (i) => i.name === 'Before')
    const [err, shown] = await request(raw.socket, 'starsock:profile', [profile])
    expect(err).toMatch(/\[E_BAD_REQUEST\]$/)
    expect(shown).toBeUndefined()
    // Also in a hello: refused as a whole.
    const [helloErr] = await request(raw.socket, 'starsock:hello', [{ peerEvents: true, profile }])
    expect(helloErr).toMatch(/\[E_BAD_REQUEST\]$/)
    // The server is fine, and the name others see did not change.
    const [pingErr] = await request(raw.socket, 'starsock:ping', [])
    expect(pingErr).toBeNull()
    expect(watcher.peers().find((i) => i.peerId === raw.id)?.name).toBe('Before')
  }, 30_000)

  it('the client refuses a bad name itself (TypeError), before anything is sent', async () => {
    server = await startServer()
    await expect(createPeer({ server: server.url(), profile: { name: 'a\u202Eb' } })).rejects.toThrow(TypeError)
    const a = await peer({ name: 'ok' })
    await expect(a.setProfile({ name: 'y'.repeat(41) })).rejects.toThrow('profile.name is longer than 40 characters')
    expect(a.profile).toEqual({ name: 'ok', kind: 'node' })
  }, 30_000)

  it('believes the kind gateway only from the server\'s own gateway peer; anyone else claiming it is a node', async () => {
    server = await startServer()
    const watcher = await peer()
    const claimer = await peer({ name: 'Official gateway', kind: 'gateway' })
    expect((await infoOf(watcher, claimer.peerId, 'the claimer in the list')).kind).toBe('node')
    const [err, shown] = await request((await rawStarsock()).socket, 'starsock:profile', [{ name: 'gw', kind: 'gateway' }])
    expect(err).toBeNull()
    expect(shown).toEqual({ name: 'gw', kind: 'node' }) // what others see, said back
    // The server's own gateway peer (serve --gateway names it to the rendezvous before it joins).
    const raw = await connectSocket(server.url())
    sockets.push(raw)
    const { key, addr, id } = await makeIdentity(server.port)
    server.rendezvous.gatewayPeers.add(id)
    await request(raw, 'starsock:hello', [{ peerEvents: true, profile: { name: 'gateway on here', kind: 'gateway' } }])
    await joinWithChallenge(raw, key, addr)
    expect(await infoOf(watcher, id, 'the gateway in the list')).toMatchObject({ name: 'gateway on here', kind: 'gateway' })
  }, 30_000)

  it('limits a flood of renames: refused with E_LIMIT_PROFILE_RATE, and others hear only the ones taken', async () => {
    server = await startServer()
    const watcher = await peer()
    let heard = 0
    watcher.on('peer:profile', () => { heard++ })
    const raw = await rawStarsock({ name: 'n0', kind: 'node' })
    await infoOf(watcher, raw.id, 'the renamer in the list')
    const answers = await Promise.all(Array.from({ length: 40 }, async (_, i) => await request(raw.socket, 'starsock:profile', [{ name: `n${i + 1}`, kind: 'node' }])))
    const taken = answers.filter(([err]) => err === null).length
    const limited = answers.filter(([err]) => typeof err === 'string' && err.endsWith('[E_LIMIT_PROFILE_RATE]')).length
    expect(taken + limited).toBe(40)
    expect(taken).toBeGreaterThanOrEqual(1)
    expect(taken).toBeLessThanOrEqual(5) // a burst of 3, and at most a refill or two on a slow machine
    await waitFor(`the watcher to hear the ${taken} renames taken`, () => heard === taken, 20_000)
    // The same profile again is no change: not counted, not announced.
    const last = answers.map(([err], i) => err === null ? i + 1 : 0).reduce((a, b) => Math.max(a, b))
    const [again] = await request(raw.socket, 'starsock:profile', [{ name: `n${last}`, kind: 'node' }])
    expect(again).toBeNull()
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(heard).toBe(taken)
  }, 30_000)

  it('a name set during a rejoin, after its hello went, reaches the others once joined', async () => {
    server = await startServer()
    const proxy = await tcpProxy(server.port)
    try {
      const watcher = await peer()
      const p = await createPeer({ server: proxy.url, profile: { name: 'before' }, transports: ['websocket'] })
      peers.push(p)
      await infoOf(watcher, p.peerId, 'the peer by its first name', (i) => i.name === 'before')
      // The rename comes while the server answers the rejoin's hello (which still says 'before').
      const hello = server.rendezvous.hello.bind(server.rendezvous)
      let renamed: Promise<PeerProfile> | undefined
      server.rendezvous.hello = (session, request) => {
        const reply = hello(session, request)
        if (request.profile?.name === 'before' && renamed === undefined) renamed = p.setProfile({ name: 'after' })
        return reply
      }
      proxy.cut()
      await waitFor('the rename during the rejoin', () => renamed !== undefined, 20_000)
      expect(await renamed).toEqual({ name: 'after', kind: 'node' })
      await infoOf(watcher, p.peerId, 'the peer by its new name', (i) => i.name === 'after')
    } finally {
      proxy.close()
    }
  }, 60_000)

  it('a client whose profile the server refuses joins without it, still as a starsock client (not a legacy one)', async () => {
    server = await startServer()
    const watcher = await peer()
    // This server refuses one name in hello (as one with another Unicode table, or an older one
    // that does not know a kind, would refuse a profile the client found good).
    const hello = server.rendezvous.hello.bind(server.rendezvous)
    server.rendezvous.hello = (session, request) => {
      if (request.profile?.name === 'not here') throw new StarsockError('E_BAD_REQUEST', 'starsock:hello: name refused')
      return hello(session, request)
    }
    const p = await peer({ name: 'not here' })
    await infoOf(watcher, p.peerId, 'the peer, nameless', (i) => i.name === undefined)
    // Starsock features hold: the server counts it as a starsock client (a legacy fallback would not be).
    const session = [...server.rendezvous.sessions.values()].find((s) => [...s.addrs].some((a) => a.endsWith(p.peerId)))
    expect(session?.starsock).toBe(true)
  }, 60_000)

  it('limits renames per IP address too: many sockets of one host, each within its own limit, are refused past 30 a minute together', async () => {
    server = await startServer()
    const watcher = await peer()
    let heard = 0
    watcher.on('peer:profile', () => { heard++ })
    // 12 sockets from 127.0.0.1, each renaming 3 times (its own burst): 36 changes, 30 allowed.
    const raws = await Promise.all(Array.from({ length: 12 }, async (_, i) => await rawStarsock({ name: `s${i}`, kind: 'node' })))
    await waitFor('the 12 renamers in the list', () => raws.every((r) => watcher.peers().some((i) => i.peerId === r.id)), 30_000)
    const answers = []
    for (const [i, raw] of raws.entries()) {
      for (let n = 1; n <= 3; n++) answers.push(await request(raw.socket, 'starsock:profile', [{ name: `s${i}-${n}`, kind: 'node' }]))
    }
    const taken = answers.filter(([err]) => err === null).length
    const refused = answers.filter(([err]) => typeof err === 'string' && err.includes('of this IP address') && err.endsWith('[E_LIMIT_PROFILE_RATE]')).length
    expect([taken, refused]).toEqual([30, 6])
    await waitFor(`the watcher to hear the ${taken} renames taken`, () => heard === taken, 20_000)
  }, 60_000)

  it('leaves legacy clients as they were: a raw legacy socket gets only ws-peer(addr), and a libp2p-websocket-star peer discovers a named peer', async () => {
    server = await startServer({ announceIntervalMs: 200 })
    // A socket that never says hello (the published clients' way): record every event it gets.
    const socket = await connectSocket(server.url())
    sockets.push(socket)
    const events: Array<{ event: string, args: unknown[] }> = []
    socket.onAny((event: string, ...args: unknown[]) => { events.push({ event, args }) })
    const me = await makeIdentity(server.port)
    await joinWithChallenge(socket, me.key, me.addr)
    const old = await startLegacyPeer(server.port, () => {})
    legacy.push(old)
    const named = await peer({ name: 'Named' })
    await named.setProfile({ name: 'Renamed' })
    await waitFor('the legacy peer to discover the named peer', () => old.discovered.has(named.addr), 20_000)
    await waitFor('the raw socket to hear of the named peer', () => events.some((e) => e.args[0] === named.addr), 20_000)
    expect(events.filter((e) => e.event !== 'ws-peer')).toEqual([])
    for (const e of events) expect(e.args).toHaveLength(1)
  }, 60_000)
})

describe('profiles from the command line', () => {
  const programs = new Programs()
  const dir = mkdtempSync(join(tmpdir(), 'starsock-profiles-'))
  let peer: StarsockPeer | undefined

  afterEach(async () => {
    await peer?.close()
    await programs.cleanup()
  })

  it('serve --gateway shows its gateway peer as a gateway named after the server; listen --name shows its name', async () => {
    const { url } = await programs.serve(0, ['--gateway', '--gateway-key', join(dir, 'gateway')])
    const listen = programs.start(['listen', '--server', url, '--key', join(dir, 'listener'), '--name', ' CLI box ', '--no-prompt', '--json'])
    const listenerId = String((await listen.event('ready', 30_000)).peerId)
    peer = await createPeer({ server: url })
    const p = peer
    await waitFor('the gateway and the listener in the list', () => p.peers().length === 2, 30_000)
    const byKind = Object.fromEntries(p.peers().map((i) => [i.kind, i]))
    expect(byKind.gateway).toMatchObject({ name: 'gateway on 127.0.0.1', kind: 'gateway' })
    expect(byKind.node).toMatchObject({ peerId: listenerId, name: 'CLI box', kind: 'node' })
  }, 90_000)

  it('listen --name refuses a bad name before it joins', () => {
    const run = runProgram(['listen', '--server', 'http://127.0.0.1:9', '--key', join(dir, 'bad'), '--name', 'x'.repeat(41), '--no-prompt'])
    expect(run.status).not.toBe(0)
    expect(run.stderr).toContain('The name is longer than 40 characters')
  }, 30_000)

  afterAll(() => { rmSync(dir, { recursive: true, force: true }) })
})

describe('starsock up: the display name from its config', () => {
  const { config, up, server, dir, cleanup } = useUp({ prefix: 'starsock-profiles-up-' })

  it('joins with the config\'s name, and a SIGHUP with another name renames it live', async () => {
    const file = config('agent.toml', 'key = "agent.key"\nname = "first name"\n')
    const agent = up(file)
    await agent.event('up', 30_000)
    const id = peerIdOf(join(dir(), 'agent.key'))
    const watcher = await createPeer({ server: server().url() })
    cleanup.push(watcher)
    await waitFor('the agent by its first name', () => watcher.peers().some((i) => i.peerId === id && i.name === 'first name' && i.kind === 'node'), 30_000)
    config('agent.toml', 'key = "agent.key"\nname = "second name"\n')
    agent.proc.kill('SIGHUP')
    await agent.event('reload', 30_000)
    await waitFor('the agent by its second name', () => watcher.peers().some((i) => i.peerId === id && i.name === 'second name'), 30_000)
  }, 90_000)
})

describe('a client checks what a server relays', () => {
  const SELF = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
  const OTHER = '12D3KooWHFrmLWTTDD4NodngtRMEVYgxrxb9GhkNk44pGdtDXi4d'
  const ADDR = `/ip4/127.0.0.1/tcp/9/ws/p2p-websocket-star/ipfs/${OTHER}`

  it.each<[string, unknown, Pick<PeerInfo, 'name' | 'kind'>]>([
    ['a good profile', { name: 'Bob', kind: 'browser' }, { name: 'Bob', kind: 'browser' }],
    ['a bidi override in the name', { name: '\u202Eevil', kind: 'node' }, {}],
    ['a long name', { name: 'z'.repeat(500), kind: 'node' }, {}],
    ['an unknown kind', { name: 'Bob', kind: 'admin' }, {}],
    ['an array', ['Bob'], {}],
    ['nothing', undefined, {}]
  ])('keeps %s only when it is valid', (_what, profile, expected) => {
    const joined: PeerInfo[] = []
    const list = new PeerList(SELF, (i) => joined.push(i), () => {})
    list.learn(ADDR, profile)
    expect(joined).toEqual([{ peerId: OTHER, addr: ADDR, ...expected }])
  })

  it('reads a page\'s profiles beside their addresses: a bad one, a missing one or a short array is none', () => {
    const page = checkPeersPage({
      addrs: ['/a', 42, '/b', '/c', '/d'],
      next: null,
      profiles: [{ name: 'A', kind: 'node' }, { name: 'for 42', kind: 'node' }, { name: 'b\u202E', kind: 'node' }, 'junk']
    })
    expect(page).toEqual({ addrs: ['/a', '/b', '/c', '/d'], next: null, profiles: [{ name: 'A', kind: 'node' }, null, null, null] })
  })

  it('ignores a profile change for an address it does not know, and a malformed one', () => {
    const changes: PeerInfo[] = []
    const list = new PeerList(SELF, () => {}, () => {}, (i) => changes.push(i))
    list.changeProfile(ADDR, { name: 'ghost', kind: 'node' })
    list.learn(ADDR, { name: 'Bob', kind: 'node' })
    list.changeProfile(ADDR, { name: 'a\u0000', kind: 'node' })
    list.changeProfile(ADDR, { name: 'Bob', kind: 'node' }) // no change
    expect(changes).toEqual([])
    list.changeProfile(ADDR, { name: 'Robert', kind: 'node' })
    expect(changes).toEqual([{ peerId: OTHER, addr: ADDR, name: 'Robert', kind: 'node' }])
    expect(checkName('  ')).toBeUndefined()
  })

  it('refuses names that read as a peer id: a short id however its dots or letters are written, a whole id; keeps ordinary dots and numbers', () => {
    const idLike = ['Alice (12D3…2X7X8k)', 'Alice (12D3...2X7X8k)', 'Alice 12D3..2X7X8k', 'Alice (１２Ｄ３…２Ｘ７Ｘ８ｋ)', 'Alice (12D3⋯2X7X8k)', 'Alice (12D3‥2X7X8k)',
      '12D3\u200D…2X7X8k', '12D3…2Х7Х8к', '12D3 … 2X7X8k', '12D3。。。2X7X8k', 'QmYw…8sHqza', 'Alice (12D3…k3X\uFE0Fq9a)', 'Alice (12D3…k3X\u{E0100}q9a)',
      '12D3\u2800…\u2800k3Xq9a', '12D3···k3Xq9a', '12D3∙∙∙k3Xq9a', '12D3・・・k3Xq9a', '12D3⋮k3Xq9a', '12D3. . .k3Xq9a', 'lᒿDЗ…abcdef', '12D3KooWRFcJ1u3FPvHhpz9kQ']
    for (const name of idLike) expect((checkName(name) as Error).message, name).toBe('name holds text that reads as a peer id (like 12D3…k3Xq9a): the real id is shown beside every name')
    for (const name of ['Bob (work)', 'Dr. Who', 'v1.2', 'Room 101...', 'Wait... what', 'Wait...what', 'Bob...Smith', 'Hmm..ok', 'v1..v2', 'Mr. X .. Y', 'ThinkPad X1 Carbon', 'a.b.c',
      'Chapter 2...Part 3', 'Summer...2024', 'Jay..2000', 'Kim ... 4ever', 'Room 101 ... Floor 2b', 'Donaudampfschiffahrt', 'johnsmithsmacbookpro', 'Zoë', 'José (café)', 'Mark Jordan', 'Mike & Steven', 'Well, thanks']) expect(checkName(name), name).toBe(name)
  })
})
