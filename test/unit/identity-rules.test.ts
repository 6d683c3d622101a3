/**
 * The server's join and takeover rules (one identity, one place), on `Rendezvous` without a
 * network: real keys through the real challenge, endpoints that record what they are sent.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { createIdentity, publicKeyHex, signNonce, type Identity } from '../../client/identity.ts'
import { ServerMetrics } from '../../server/metrics.ts'
import { resolveServerOptions } from '../../server/options.ts'
import { decideClaim, Reservations, type ClaimOutcome } from '../../server/identity-claims.ts'
import { TokenBucket } from '../../server/rate-limit.ts'
import { Rendezvous, type JoinDone } from '../../server/rendezvous.ts'
import { Session, type Endpoint } from '../../server/session.ts'
import { StarsockError } from '../../shared/errors.ts'
import { silentLogger } from '../../shared/logger.ts'
import { checkDisplaced, checkHello, checkJoinExtra } from '../../shared/validate.ts'

type Kind = 'starsock' | 'takeover' | 'legacy'

interface Client { session: Session, emitted: Array<[string, unknown]>, disconnected: () => boolean }

const stops: Array<() => void> = []
afterEach(() => { for (const stop of stops.splice(0)) stop() })

function rendezvousWith (cryptoChallenge = true, identityGraceMs?: number): Rendezvous {
  const r = new Rendezvous(resolveServerOptions({ cryptoChallenge, identityGraceMs }), new ServerMetrics(false, () => 0), 'test', silentLogger)
  stops.push(() => r.stop())
  return r
}

let nextPort = 1000
/** A connected client; `kind` says whether (and how) it sent `starsock:hello`. */
function connect (r: Rendezvous, kind: Kind, resume?: string): Client {
  const emitted: Array<[string, unknown]> = []
  let gone = false
  const port = nextPort++
  const endpoint: Endpoint = {
    emit: (event, ...args) => { emitted.push([event, args[0]]) },
    request: async () => [],
    pendingWriteBytes: () => 0,
    pauseReading: () => true,
    resumeReading: () => {},
    // As the socket.io wiring does: the disconnect handler runs at once (the server disconnected it).
    disconnect: () => { gone = true; r.disconnect(session) }
  }
  const session = r.connect(`s${port}`, '10.0.0.1', endpoint, port)
  if (kind !== 'legacy') r.hello(session, { peerEvents: true, takeover: kind === 'takeover', resume })
  return { session, emitted, disconnected: () => gone }
}

const addrOf = (identity: Identity, host = '10.0.0.9'): string => `/ip4/${host}/tcp/9090/ws/p2p-websocket-star/ipfs/${identity.peerId}`

/** What a promise settles with: its value, or the error it rejects with. */
async function settle<T> (promise: Promise<T>): Promise<unknown> {
  return await promise.catch((err: unknown) => err)
}

/** Both steps of the challenge; the join's result, or the `StarsockError` it was refused with. */
async function join (r: Rendezvous, client: Client, identity: Identity, addr = addrOf(identity)): Promise<JoinDone | StarsockError> {
  try {
    const first = await r.join(client.session, addr, publicKeyHex(identity))
    if (!('nonce' in first)) return first
    const done = await r.join(client.session, addr, await signNonce(identity, first.nonce))
    return done as JoinDone
  } catch (err) {
    if (err instanceof StarsockError) return err
    throw err
  }
}

async function joined (r: Rendezvous, client: Client, identity: Identity, addr?: string): Promise<JoinDone> {
  const done = await join(r, client, identity, addr)
  if (done instanceof StarsockError) throw done
  return done
}

describe('who gets an address another live client holds', () => {
  it.each<[Kind, Kind, 'refused' | 'displaced' | 'replaced', string | undefined]>([
    ['starsock', 'starsock', 'refused', undefined],
    ['starsock', 'takeover', 'displaced', 'takeover'],
    ['starsock', 'legacy', 'displaced', 'legacy-join'],
    ['legacy', 'starsock', 'replaced', undefined],
    ['legacy', 'takeover', 'replaced', undefined],
    ['legacy', 'legacy', 'replaced', undefined]
  ])('holder %s, newcomer %s: %s', async (holderKind, newcomerKind, outcome, reason) => {
    const r = rendezvousWith()
    const identity = await createIdentity()
    const addr = addrOf(identity)
    const holder = connect(r, holderKind)
    await joined(r, holder, identity)
    const newcomer = connect(r, newcomerKind)
    const result = await join(r, newcomer, identity)
    if (outcome === 'refused') {
      expect(result).toMatchObject({ code: 'E_ADDRESS_IN_USE', message: `Address in use: this peer id is joined from ${holder.session.remote}` })
      expect(r.directory.owner(addr)).toBe(holder.session.id)
      expect(holder.emitted).toEqual([])
      expect(holder.disconnected()).toBe(false)
      return
    }
    expect(result).not.toBeInstanceOf(StarsockError)
    expect(r.directory.owner(addr)).toBe(newcomer.session.id)
    expect(holder.session.addrs.has(addr)).toBe(false)
    if (outcome === 'displaced') {
      expect(holder.emitted).toEqual([['starsock:displaced', { addr, reason, by: `10.0.0.1:${newcomer.session.port ?? 0}` }]])
      expect(holder.disconnected()).toBe(true)
    } else {
      // A legacy holder is replaced as in the original: no notice, the socket stays.
      expect(holder.emitted.filter(([event]) => event === 'starsock:displaced')).toEqual([])
      expect(holder.disconnected()).toBe(false)
    }
  })

  it('the client\'s resume id takes the address back silently and drops the stale socket; another one is refused', async () => {
    const r = rendezvousWith()
    const identity = await createIdentity()
    const id = 'c1'.repeat(32)
    const stale = connect(r, 'starsock', id)
    expect((await joined(r, stale, identity)).resume).toBe(id) // bound at the join, echoed for older clients
    const wrong = connect(r, 'starsock', 'ab'.repeat(32))
    expect(await join(r, wrong, identity)).toMatchObject({ code: 'E_ADDRESS_IN_USE' })
    const back = connect(r, 'starsock', id)
    expect((await joined(r, back, identity)).resume).toBe(id)
    expect(stale.emitted).toEqual([])
    expect(stale.disconnected()).toBe(true)
    expect(r.sessions.has(stale.session.id)).toBe(false)
    expect(r.directory.owner(addrOf(identity))).toBe(back.session.id)
  })

  it.each<[string, string | undefined]>([
    ['a client\'s own resume id', 'c2'.repeat(32)],
    ['an older client presenting the credential of its first join', undefined]
  ])('lost ack after a plain rejoin (%s): the next reconnect still resumes', async (_name, id) => {
    const r = rendezvousWith()
    const identity = await createIdentity()
    const first = connect(r, 'starsock', id)
    const { resume } = await joined(r, first, identity)
    expect(resume).toMatch(/^[0-9a-f]{64}$/)
    first.session.endpoint.disconnect?.() // the server notices the drop
    const second = connect(r, 'starsock', resume)
    await joined(r, second, identity) // a plain join (no live holder); its ack never reaches the client
    const third = connect(r, 'starsock', resume)
    await joined(r, third, identity)
    expect(second.disconnected()).toBe(true)
    expect(second.emitted).toEqual([])
    expect(r.directory.owner(addrOf(identity))).toBe(third.session.id)
  })

  it('resumption is per address: a stale socket that holds other addresses keeps them and stays', async () => {
    const r = rendezvousWith()
    const [one, two] = [await createIdentity(), await createIdentity()]
    const id = 'c3'.repeat(32)
    const stale = connect(r, 'starsock', id)
    await joined(r, stale, one)
    await joined(r, stale, two)
    await joined(r, connect(r, 'starsock', id), one)
    expect(stale.disconnected()).toBe(false)
    expect([...stale.session.addrs]).toEqual([addrOf(two)])
    expect(r.directory.owner(addrOf(two))).toBe(stale.session.id)
    // Its last address resumed too: now it goes.
    await joined(r, connect(r, 'starsock', id), two)
    expect(stale.disconnected()).toBe(true)
    expect(stale.emitted.filter(([event]) => event === 'starsock:displaced')).toEqual([])
  })

  it('a join whose socket went while its signature was checked does not join', async () => {
    const r = rendezvousWith()
    const identity = await createIdentity()
    const client = connect(r, 'starsock')
    const first = await r.join(client.session, addrOf(identity), publicKeyHex(identity))
    if (!('nonce' in first)) throw new Error('expected a nonce')
    const done = r.join(client.session, addrOf(identity), await signNonce(identity, first.nonce))
    r.disconnect(client.session, true)
    expect(await settle(done)).toMatchObject({ code: 'E_DISCONNECTED' })
    expect(r.directory.size).toBe(0)
    await joined(r, connect(r, 'starsock'), identity)
  })

  it('legacy clients get no resume secret', async () => {
    const r = rendezvousWith()
    const done = await joined(r, connect(r, 'legacy'), await createIdentity())
    expect(done.resume).toBeUndefined()
  })

  it('two starsock clients collide on the peer id, whatever the address spelling; a takeover moves it', async () => {
    const r = rendezvousWith()
    const identity = await createIdentity()
    const holder = connect(r, 'starsock')
    await joined(r, holder, identity, addrOf(identity, '10.0.0.9'))
    expect(await join(r, connect(r, 'starsock'), identity, addrOf(identity, '10.0.0.10'))).toMatchObject({ code: 'E_ADDRESS_IN_USE' })
    const taker = connect(r, 'takeover')
    await joined(r, taker, identity, addrOf(identity, '10.0.0.10'))
    expect(holder.emitted).toEqual([['starsock:displaced', { addr: addrOf(identity, '10.0.0.9'), reason: 'takeover', by: taker.session.remote }]])
    expect(holder.disconnected()).toBe(true)
    expect(r.directory.owner(addrOf(identity, '10.0.0.9'))).toBeUndefined()
    expect(r.directory.size).toBe(1)
  })

  it('legacy clients keep the original\'s exact-address rule: another spelling is another address', async () => {
    const r = rendezvousWith()
    const identity = await createIdentity()
    await joined(r, connect(r, 'legacy'), identity, addrOf(identity, '10.0.0.9'))
    await joined(r, connect(r, 'starsock'), identity, addrOf(identity, '10.0.0.10'))
    expect(r.directory.size).toBe(2)
  })

  it('after the holder leaves on purpose, the address is free to anyone', async () => {
    const r = rendezvousWith()
    const identity = await createIdentity()
    const holder = connect(r, 'starsock')
    await joined(r, holder, identity)
    r.disconnect(holder.session, true)
    await joined(r, connect(r, 'starsock'), identity)
  })

  it('a holder whose socket went is waited for: only its resume id, a takeover or a legacy client gets the identity in the grace', async () => {
    const r = rendezvousWith()
    const identity = await createIdentity()
    const id = 'c4'.repeat(32)
    const holder = connect(r, 'starsock', id)
    await joined(r, holder, identity)
    r.disconnect(holder.session)
    expect(await join(r, connect(r, 'starsock'), identity)).toMatchObject({
      code: 'E_ADDRESS_IN_USE',
      message: expect.stringMatching(/^Address in use: this peer id is reserved for a reconnecting client \(joined from 10\.0\.0\.1:\d+\) for up to 30 s more$/)
    })
    // Also under another spelling of the server's address (for a starsock newcomer).
    expect(await join(r, connect(r, 'starsock'), identity, addrOf(identity, '10.0.0.10'))).toMatchObject({ code: 'E_ADDRESS_IN_USE' })
    await joined(r, connect(r, 'starsock', id), identity)
    r.disconnect(r.sessions.get(r.directory.owner(addrOf(identity)) ?? '') as Session)
    await joined(r, connect(r, 'takeover'), identity)
    r.disconnect(r.sessions.get(r.directory.owner(addrOf(identity)) ?? '') as Session)
    await joined(r, connect(r, 'legacy'), identity)
    expect(r.directory.size).toBe(1)
  })

  it('with the challenge off, a reserved identity goes only to its resume id; and only for the grace', async () => {
    const r = rendezvousWith(false, 200)
    const identity = await createIdentity()
    const addr = addrOf(identity)
    const holder = connect(r, 'starsock', 'c5'.repeat(32))
    await r.join(holder.session, addr, '')
    r.disconnect(holder.session)
    expect(await settle(r.join(connect(r, 'takeover').session, addr, ''))).toMatchObject({ code: 'E_ADDRESS_IN_USE', message: 'Address in use: this peer id is reserved for a reconnecting client for up to 1 s more' })
    expect(await settle(r.join(connect(r, 'legacy').session, addr, ''))).toMatchObject({ code: 'E_ADDRESS_IN_USE' })
    await new Promise((resolve) => setTimeout(resolve, 250))
    expect(await r.join(connect(r, 'legacy').session, addr, '')).toMatchObject({ peers: [] })
  })

  it('with the challenge off, only the resume id moves a live address (nothing proves the key), and the refusal does not say where the holder is', async () => {
    const r = rendezvousWith(false)
    const identity = await createIdentity()
    const addr = addrOf(identity)
    const holder = connect(r, 'starsock')
    const first = await r.join(holder.session, addr, '') as JoinDone
    expect(await settle(r.join(connect(r, 'takeover').session, addr, ''))).toMatchObject({ code: 'E_ADDRESS_IN_USE', message: 'Address in use: this peer id is joined elsewhere' })
    expect(await settle(r.join(connect(r, 'legacy').session, addr, ''))).toMatchObject({ code: 'E_ADDRESS_IN_USE', message: 'Address in use: this peer id is joined elsewhere' })
    const back = connect(r, 'starsock', first.resume)
    expect(await r.join(back.session, addr, '')).toMatchObject({ peers: [] })
    expect(holder.disconnected()).toBe(true)
  })
})

describe('Reservations', () => {
  it('expire after the grace and hold at most maxEntries, the oldest going first', () => {
    let now = 0
    const r = new Reservations(100, 2, () => now)
    r.reserve('a', '/a', 'x', '1.2.3.4:5')
    now = 10
    r.reserve('b', '/b', 'y', '1.2.3.4:6')
    r.reserve('c', '/c', 'z', '1.2.3.4:7')
    expect(r.size).toBe(2)
    expect(r.find('a')).toBeUndefined()
    expect(r.find('b')?.credentialHash).toBe('y')
    now = 110
    expect(r.find('b')).toBeUndefined()
    r.reserve('d', '/d', 'w', '1.2.3.4:8') // sweeps the expired ones
    expect(r.size).toBe(1)
    expect(new Reservations(0, 10).size).toBe(0)
    const off = new Reservations(0, 10)
    off.reserve('a', '/a', 'x', '')
    expect(off.find('a')).toBeUndefined()
  })
})

describe('decideClaim', () => {
  const ADDR = '/a'
  const session = (kind: Kind, resume?: string, secret?: string): Session => {
    const s = new Session('x', '127.0.0.1', {} as Endpoint, new TokenBucket(1, 1))
    s.starsock = kind !== 'legacy'
    s.takeover = kind === 'takeover'
    s.resume = resume
    if (secret !== undefined) s.resumeSecrets.set(ADDR, secret)
    return s
  }
  it.each<[string, Session, Session, boolean, ClaimOutcome]>([
    ['own secret', session('starsock', 'aa'), session('starsock', undefined, 'aa'), true, 'resume'],
    ['own secret, challenge off', session('starsock', 'aa'), session('starsock', undefined, 'aa'), false, 'resume'],
    ['wrong secret', session('starsock', 'ab'), session('starsock', undefined, 'aa'), true, 'in-use'],
    ['a secret of the same length from elsewhere', session('starsock', 'bb'), session('starsock', undefined, 'aa'), true, 'in-use'],
    ['starsock to starsock', session('starsock'), session('starsock'), true, 'in-use'],
    ['takeover to starsock', session('takeover'), session('starsock'), true, 'displace'],
    ['takeover, challenge off', session('takeover'), session('starsock'), false, 'in-use'],
    ['legacy to starsock', session('legacy'), session('starsock'), true, 'displace'],
    ['legacy to legacy', session('legacy'), session('legacy'), true, 'replace'],
    ['starsock to legacy', session('starsock'), session('legacy'), true, 'replace'],
    ['legacy, challenge off', session('legacy'), session('legacy'), false, 'in-use']
  ])('%s', (_name, newcomer, holder, challenge, outcome) => {
    expect(decideClaim(newcomer, { starsock: holder.starsock, credential: holder.resumeSecrets.get(ADDR) }, challenge)).toBe(outcome)
  })
})

describe('checks of the identity fields on the wire', () => {
  it.each<[unknown, string | object]>([
    [{}, { peerEvents: false, takeover: false }],
    [{ takeover: true, resume: 'a1b2' }, { peerEvents: false, takeover: true, resume: 'a1b2' }],
    [{ takeover: 'yes' }, 'starsock:hello: takeover must be a boolean [E_BAD_REQUEST]'],
    [{ resume: 42 }, 'starsock:hello: resume must be a string [E_BAD_REQUEST]'],
    [{ resume: '' }, 'starsock:hello: resume must be hex [E_BAD_REQUEST]'],
    [{ resume: 'xyz!' }, 'starsock:hello: resume must be hex [E_BAD_REQUEST]'],
    [{ resume: 'ab'.repeat(65) }, 'starsock:hello: resume is longer than 128 characters [E_BAD_REQUEST]']
  ])('hello %j', (request, expected) => {
    const result = checkHello([request])
    if (typeof expected === 'string') expect(result instanceof StarsockError ? result.toWire() : result).toBe(expected)
    else expect(result).toEqual(expected)
  })

  it.each<[unknown, boolean]>([
    [{ addr: '/a', reason: 'takeover', by: '1.2.3.4:5' }, true],
    [{ addr: '/a', reason: 'legacy-join', by: '1.2.3.4' }, true],
    [{ addr: '/a', reason: 'other', by: '1.2.3.4:5' }, false],
    [{ addr: '/a', reason: 'takeover', by: 'x'.repeat(400) }, true],
    [{ addr: 1, reason: 'takeover', by: '' }, false],
    [null, false],
    ['x', false]
  ])('displaced %j valid: %s', (payload, valid) => {
    expect(checkDisplaced(payload) !== undefined).toBe(valid)
  })

  it.each<[unknown, string]>([
    ['1.2.3.4:5', '1.2.3.4:5'],
    ['[2001:db8::1]:443', '[2001:db8::1]:443'],
    ['2001:db8::1', '2001:db8::1'],
    ['1.2.3.4:5\u001b[2J\u001b]0;pwned\u0007', 'an unknown address'],
    ['x'.repeat(400), 'an unknown address'],
    ['evil.example', 'an unknown address'],
    [42, 'an unknown address']
  ])('displaced by %j is shown as %s (the notice is kept)', (by, shown) => {
    expect(checkDisplaced({ addr: '/a', reason: 'takeover', by })).toEqual({ addr: '/a', reason: 'takeover', by: shown })
  })

  it.each<[unknown, string | undefined]>([
    [{ resume: 'ab12' }, 'ab12'],
    [{ resume: 'not hex' }, undefined],
    [{}, undefined],
    [undefined, undefined],
    [['ab12'], undefined]
  ])('join extra %j', (extra, resume) => {
    expect(checkJoinExtra(extra)?.resume).toBe(resume)
  })
})
