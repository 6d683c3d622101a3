import { afterEach, describe, expect, it, vi } from 'vitest'
import { ServerMetrics } from '../../server/metrics.ts'
import { resolveServerOptions } from '../../server/options.ts'
import { Rendezvous } from '../../server/rendezvous.ts'
import type { Endpoint, Session } from '../../server/session.ts'
import type { StarsockError } from '../../shared/errors.ts'
import { silentLogger } from '../../shared/logger.ts'
import { BACKLOG_CHECK_MS } from '../../server/constants.ts'
import { DIALER_SUFFIX, LISTENER_SUFFIX } from '../../shared/events.ts'
import { makeIdentity } from '../helpers/raw-peer.ts'

function endpoint (backlog: () => number, congested = (): boolean => false): Endpoint & { disconnects: number } {
  const e = {
    disconnects: 0,
    congested,
    emit: () => {},
    request: async () => [],
    pendingWriteBytes: () => 0,
    pauseReading: () => true,
    resumeReading: () => {},
    backlogBytes: backlog,
    disconnect: () => { e.disconnects++ }
  }
  return e
}

describe('Rendezvous output backlog check', () => {
  afterEach(() => { vi.useRealTimers() })

  it('disconnects a socket whose backlog passes socketBufferBytes, and only that one', async () => {
    vi.useFakeTimers()
    const options = resolveServerOptions({ socketBufferBytes: 16 * 1024 * 1024 })
    const metrics = new ServerMetrics(false, () => 0)
    const rendezvous = new Rendezvous(options, metrics, 'test', silentLogger)
    let behind = 0
    const slow = endpoint(() => behind)
    const fine = endpoint(() => 1000)
    rendezvous.connect('slow', '127.0.0.1', slow)
    rendezvous.connect('fine', '127.0.0.1', fine)
    vi.advanceTimersByTime(BACKLOG_CHECK_MS * 2)
    expect(slow.disconnects).toBe(0)
    behind = 16 * 1024 * 1024 + 1
    vi.advanceTimersByTime(BACKLOG_CHECK_MS)
    expect(slow.disconnects).toBe(1)
    expect(fine.disconnects).toBe(0)
    expect(await metrics.registry.getSingleMetricAsString('starsock_limit_hits_total')).toContain('limit="E_LIMIT_BACKLOG"} 1')
    rendezvous.stop()
  })
})

describe('Rendezvous counts of joined addresses', () => {
  it('tells when a peer id is first and no longer present, and caps addresses per IP key, across joins, leaves, takeovers and disconnects', async () => {
    const options = resolveServerOptions({ cryptoChallenge: false, maxPeersPerIp: 2 })
    const rendezvous = new Rendezvous(options, new ServerMetrics(false, () => 0), 'test', silentLogger)
    const changes: string[] = []
    rendezvous.presenceChanged = (owner, present) => changes.push(`${present ? '+' : '-'}${owner.slice(-6)}`)
    const [a, b, c] = await Promise.all([0, 1, 2].map(async () => (await makeIdentity(9090)).id)) as [string, string, string]
    const addr = (id: string | undefined, port = 9090): string => `/ip4/127.0.0.1/tcp/${port}/ws/p2p-websocket-star/p2p/${String(id)}`
    const one = rendezvous.connect('one', '10.0.0.1', endpoint(() => 0))
    const two = rendezvous.connect('two', '10.0.0.1', endpoint(() => 0))
    const three = rendezvous.connect('three', '2001:db8::1', endpoint(() => 0))
    const join = async (s: typeof one, address: string): Promise<string | undefined> => {
      try {
        await rendezvous.join(s, address, '')
        return undefined
      } catch (err) {
        return (err as StarsockError).code
      }
    }
    expect(await join(one, addr(a))).toBeUndefined()
    expect(await join(one, addr(a, 9091))).toBeUndefined() // a second address of the same peer id
    expect(rendezvous.isPresent(rendezvous.ownerOf(addr(a)))).toBe(true)
    expect(await join(two, addr(b))).toBe('E_LIMIT_PEERS_PER_IP') // 10.0.0.1 holds two
    expect(await join(three, addr(b))).toBeUndefined() // another IP key
    rendezvous.leave(one, addr(a))
    rendezvous.hello(two, {})
    const joined = await rendezvous.join(two, addr(c), '') // a place came free
    const resume = joined instanceof Error || 'nonce' in joined ? undefined : joined.resume
    expect(resume).toMatch(/^[0-9a-f]{64}$/)
    rendezvous.leave(one, addr(a, 9091))
    expect(rendezvous.isPresent(rendezvous.ownerOf(addr(a)))).toBe(false)
    // The same client resuming from another socket moves the address: gone, then present again.
    rendezvous.hello(one, { resume })
    expect(await join(one, addr(c))).toBeUndefined()
    rendezvous.disconnect(three)
    rendezvous.disconnect(one)
    rendezvous.disconnect(two)
    expect(changes).toEqual([`+${a.slice(-6)}`, `+${b.slice(-6)}`, `+${c.slice(-6)}`, `-${a.slice(-6)}`, `-${c.slice(-6)}`, `+${c.slice(-6)}`, `-${b.slice(-6)}`, `-${c.slice(-6)}`])
    expect(await join(rendezvous.connect('four', '10.0.0.1', endpoint(() => 0)), addr(a))).toBeUndefined()
    expect(await join(rendezvous.connect('five', '10.0.0.1', endpoint(() => 0)), addr(b))).toBeUndefined()
    rendezvous.stop()
  })
})

describe('Rendezvous gates requests', () => {
  it('a congested socket is counted per event and not answered; the cheap requests share a rate limit', async () => {
    const metrics = new ServerMetrics(false, () => 0)
    const rendezvous = new Rendezvous(resolveServerOptions({}), metrics, 'test', silentLogger)
    let behind = false
    const s = rendezvous.connect('one', '127.0.0.1', endpoint(() => 0, () => behind))
    expect(rendezvous.congested(s, 'ss-join')).toBe(false)
    behind = true
    expect(rendezvous.congested(s, 'ss-join')).toBe(true)
    expect(await metrics.registry.getSingleMetricAsString('starsock_bad_requests_total')).toContain('event="ss-join:congested"} 1')
    let taken = 0
    let refusal: unknown
    for (; taken < 1000 && refusal === undefined; taken++) {
      try { rendezvous.takeRequest(s) } catch (err) { refusal = err }
    }
    expect(taken).toBeGreaterThan(1)
    expect(refusal).toMatchObject({ code: 'E_LIMIT_REQUEST_RATE', message: 'Request rate limit reached' })
    expect(await metrics.registry.getSingleMetricAsString('starsock_limit_hits_total')).toContain('limit="E_LIMIT_REQUEST_RATE"} 1')
    rendezvous.stop()
  })
})

describe('Rendezvous UDP requests', () => {
  const addr = (id: string): string => `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/p2p/${id}`

  it('refuse without a relay, before a join and with a bad payload; act for the peer id of the first address joined', async () => {
    const rendezvous = new Rendezvous(resolveServerOptions({ cryptoChallenge: false }), new ServerMetrics(false, () => 0), 'test', silentLogger)
    const s = rendezvous.connect('one', '127.0.0.1', endpoint(() => 0))
    await expect(rendezvous.udpAllocate(s, {})).rejects.toMatchObject({ code: 'E_UDP_DISABLED' })
    expect(() => rendezvous.udpRefresh(s, 'x')).toThrow(expect.objectContaining({ code: 'E_UDP_DISABLED' }))
    rendezvous.startUdp('127.0.0.1', 9090) // binds nothing until an allocation
    await expect(rendezvous.udpAllocate(s, {})).rejects.toMatchObject({ code: 'E_NOT_JOINED', message: 'Join before asking for a UDP allocation' })
    expect(() => rendezvous.udpRelease(s, 'x')).toThrow(expect.objectContaining({ code: 'E_NOT_JOINED' }))
    const id = (await makeIdentity(9090)).id
    await rendezvous.join(s, addr(id), '')
    await expect(rendezvous.udpAllocate(s, { mode: 'tcp' })).rejects.toMatchObject({ code: 'E_BAD_REQUEST', message: 'mode must be token, address or open' })
    await expect(rendezvous.udpAllocate(s, { mode: 'address', addresses: ['not an ip'] })).rejects.toMatchObject({ code: 'E_BAD_REQUEST' })
    expect(() => rendezvous.udpRefresh(s, 'no-such-id')).toThrow(expect.objectContaining({ code: 'E_UDP_NOT_FOUND' }))
    expect(rendezvous.udp?.size).toBe(0)
    await rendezvous.close(0)
  })
})

describe('Rendezvous close', () => {
  const addr = (id: string): string => `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/p2p/${id}`

  /** A rendezvous with one dial between two joined sessions (two open streams); what each was sent. */
  async function withDial (): Promise<{ rendezvous: Rendezvous, a: Session, b: Session, sent: string[] }> {
    const rendezvous = new Rendezvous(resolveServerOptions({ cryptoChallenge: false }), new ServerMetrics(false, () => 0), 'test', silentLogger)
    const sent: string[] = []
    const recording = (): Endpoint => ({ ...endpoint(() => 0), emit: (event, ...args) => { sent.push(`${event} ${String(args[0])}`) } })
    const a = rendezvous.connect('a', '127.0.0.1', recording())
    const b = rendezvous.connect('b', '127.0.0.2', recording())
    const [idA, idB] = await Promise.all([makeIdentity(9090), makeIdentity(9090)])
    await rendezvous.join(a, addr(idA.id), '')
    await rendezvous.join(b, addr(idB.id), '')
    expect(await rendezvous.dial(a, addr(idA.id), addr(idB.id), 'd1')).toBeUndefined()
    expect(rendezvous.relay.openStreams).toBe(2)
    return { rendezvous, a, b, sent }
  }

  it('settles as soon as the last stream ends, without waiting out the grace', async () => {
    const { rendezvous, a, b, sent } = await withDial()
    let settled = false
    const closing = rendezvous.close(60_000).then(() => { settled = true })
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(settled).toBe(false)
    rendezvous.relay.abort(b, 'd1' + DIALER_SUFFIX, 'done')
    rendezvous.relay.abort(a, 'd1' + LISTENER_SUFFIX, 'done')
    await closing
    expect(sent.filter((line) => line.includes('E_SHUTDOWN'))).toEqual([])
  })

  it('fails the streams still open after the grace with E_SHUTDOWN', async () => {
    const { rendezvous, sent } = await withDial()
    await rendezvous.close(30)
    expect(rendezvous.relay.openStreams).toBe(0)
    expect(sent.filter((line) => line.includes('E_SHUTDOWN')).length).toBeGreaterThan(0)
  })
})

describe('Rendezvous dial hints (issue 14)', () => {
  const addr = (id: string): string => `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/p2p/${id}`

  it.each([
    ['a legacy listener gets its two arguments', { listenerHello: false, listenerHints: false, dialerHello: true, secure: true }, undefined],
    ['a starsock listener that did not ask for hints gets two', { listenerHello: true, listenerHints: false, dialerHello: true, secure: true }, undefined],
    ['a listener that asked learns the dialer is starsock and opens a secure channel', { listenerHello: true, listenerHints: true, dialerHello: true, secure: true }, { starsock: true, secure: true }],
    ['... or plaintext', { listenerHello: true, listenerHints: true, dialerHello: true, secure: false }, { starsock: true, secure: false }],
    ['... or is a legacy dialer (whatever it claims)', { listenerHello: true, listenerHints: true, dialerHello: false, secure: true }, { starsock: false, secure: false }]
  ])('%s', async (_name, c, hint) => {
    const rendezvous = new Rendezvous(resolveServerOptions({ cryptoChallenge: false }), new ServerMetrics(false, () => 0), 'test', silentLogger)
    const asked: unknown[][] = []
    const a = rendezvous.connect('a', '127.0.0.1', endpoint(() => 0))
    const b = rendezvous.connect('b', '127.0.0.2', { ...endpoint(() => 0), request: async (_event, args) => { asked.push(args); return [] } })
    if (c.dialerHello) rendezvous.hello(a, {})
    if (c.listenerHello) rendezvous.hello(b, { dialHints: c.listenerHints })
    const [idA, idB] = await Promise.all([makeIdentity(9090), makeIdentity(9090)])
    await rendezvous.join(a, addr(idA.id), '')
    await rendezvous.join(b, addr(idB.id), '')
    let listenerStarsock: boolean | undefined
    expect(await rendezvous.dial(a, addr(idA.id), addr(idB.id), 'd1', c.secure, (s) => { listenerStarsock = s })).toBeUndefined()
    expect(asked).toEqual([hint === undefined ? ['d1', addr(idA.id)] : ['d1', addr(idA.id), hint]])
    expect(listenerStarsock).toBe(c.listenerHello)
    await rendezvous.close(0)
  })
})
