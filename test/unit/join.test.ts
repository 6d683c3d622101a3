import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { StarsockError, wireError } from '../../shared/errors.ts'
import { EVENTS } from '../../shared/events.ts'
import { silentLogger } from '../../shared/logger.ts'
import { createIdentity, publicKeyHex, type Identity } from '../../client/identity.ts'
import { Join, type JoinOptions } from '../../client/join.ts'
import { PeerList } from '../../client/peer-list.ts'
import type { Requester } from '../../client/server-link.ts'

const OTHER = '/ip4/1.2.3.4/tcp/9090/ws/p2p-websocket-star/ipfs/12D3KooWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
const PAGED = '/ip4/1.2.3.4/tcp/9090/ws/p2p-websocket-star/ipfs/12D3KooWBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB'
const HELLO = { protocol: 1, version: '0.1.0', cryptoChallenge: true, limits: { maxMessageBytes: 1_000_000 } }
const RESUME = 'ab'.repeat(16)

let identity: Identity
beforeAll(async () => { identity = await createIdentity() })

type Answer = unknown[] | StarsockError | (() => Promise<unknown[]>)

/** A fake link that answers each event from a script (the last answer repeats) and records the requests. */
function fakeLink (script: Partial<Record<string, Answer[]>>): Requester & { requests: Array<[string, unknown[]]>, connected: boolean } {
  const requests: Array<[string, unknown[]]> = []
  const used = new Map<string, number>()
  return {
    connected: true,
    requests,
    request: async (event, args) => {
      requests.push([event, args])
      const answers = script[event] ?? []
      const i = used.get(event) ?? 0
      used.set(event, i + 1)
      const answer = answers[Math.min(i, answers.length - 1)]
      if (answer === undefined) throw new Error(`no answer scripted for ${event}`)
      if (answer instanceof StarsockError) throw answer
      return typeof answer === 'function' ? await answer() : answer
    }
  }
}

/** The usual starsock server: hello, a challenge, one peer in the reply and one more on the list's page. */
const STARSOCK: Partial<Record<string, Answer[]>> = {
  [EVENTS.HELLO]: [[null, HELLO]],
  [EVENTS.JOIN]: [[null, 'nonce-1'], [null, null, [OTHER]]],
  [EVENTS.PEERS]: [[null, { addrs: [PAGED], next: null }]]
}

interface Run { join: Join, link: ReturnType<typeof fakeLink>, outcomes: string[], list: PeerList, closed: { value: boolean } }

function setup (script: Partial<Record<string, Answer[]>>, options: Partial<JoinOptions> = {}): Run {
  const link = fakeLink(script)
  const outcomes: string[] = []
  const closed = { value: false }
  const list = new PeerList(identity.peerId, (p) => outcomes.push(`peer:join ${p.addr}`), (p) => outcomes.push(`peer:leave ${p.addr}`))
  const join = new Join(link, list, {
    identity,
    addr: `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${identity.peerId}`,
    takeover: false,
    resumeId: RESUME,
    reconnectDelayMs: 100,
    reconnectDelayMaxMs: 1000,
    logger: silentLogger,
    ...options
  }, {
    closed: () => closed.value,
    joined: (starsock) => outcomes.push(`joined ${String(starsock)}`),
    error: (err) => outcomes.push(`error ${err.code}`),
    fail: (err) => outcomes.push(`fail ${err.code}: ${err.message}`)
  })
  return { join, link, outcomes, list, closed }
}

afterEach(() => { vi.useRealTimers() })

describe('Join', () => {
  it('runs hello, both challenge steps and the peer list, in that order', async () => {
    const { join, link, outcomes } = setup(STARSOCK, { takeover: true })
    await join.run()
    expect(link.requests.map(([event]) => event)).toEqual([EVENTS.HELLO, EVENTS.JOIN, EVENTS.JOIN, EVENTS.PEERS])
    const [hello, first, second, cursor] = link.requests.map(([, args]) => args)
    expect(hello).toEqual([{ peerEvents: true, peerBatch: true, takeover: true, resume: RESUME, dialHints: true }])
    expect(first?.[1]).toBe(publicKeyHex(identity))
    expect(second?.[1]).toMatch(/^[0-9a-f]+$/)
    expect(second?.[1]).not.toBe(first?.[1])
    expect(cursor).toEqual([0])
    expect(outcomes).toEqual([`peer:join ${OTHER}`, `peer:join ${PAGED}`, 'joined true'])
    expect(join.hello).toEqual(HELLO)
  })

  it('asks for takeover on the first join only', async () => {
    const { join, link } = setup(STARSOCK, { takeover: true })
    await join.run()
    await join.run()
    const hellos = link.requests.filter(([event]) => event === EVENTS.HELLO).map(([, args]) => args[0])
    expect(hellos).toEqual([{ peerEvents: true, peerBatch: true, takeover: true, resume: RESUME, dialHints: true }, { peerEvents: true, peerBatch: true, takeover: false, resume: RESUME, dialHints: true }])
  })

  it('joins a server without hello (the original): no peer list, no heartbeat', async () => {
    const { join, link, outcomes } = setup({ [EVENTS.HELLO]: [new StarsockError('E_TIMEOUT', 'no answer')], [EVENTS.JOIN]: [[null, null, [OTHER]]] })
    await join.run()
    expect(link.requests.map(([event]) => event)).toEqual([EVENTS.HELLO, EVENTS.JOIN])
    expect(outcomes).toEqual([`peer:join ${OTHER}`, 'joined false'])
    expect(join.hello).toBeUndefined()
  })

  it('checks the hello reply: announced limits are clamped', async () => {
    const { join } = setup({ ...STARSOCK, [EVENTS.HELLO]: [[null, { ...HELLO, limits: { maxMessageBytes: 3, dialTimeoutMs: 1e15 } }]] })
    await join.run()
    expect(join.hello?.limits).toEqual({ maxMessageBytes: 8192, dialTimeoutMs: 300_000 })
  })

  it('a first join refused fails the peer, with the server\'s code', async () => {
    const { join, outcomes } = setup({ ...STARSOCK, [EVENTS.JOIN]: [[wireError('E_ADDRESS_IN_USE', 'Address in use: this peer id is joined from 1.2.3.4:5')]] })
    await join.run()
    expect(outcomes).toEqual(['fail E_ADDRESS_IN_USE: Address in use: this peer id is joined from 1.2.3.4:5'])
  })

  it('a rejoin that finds the address in use was displaced while away', async () => {
    const { join, outcomes } = setup({ ...STARSOCK, [EVENTS.JOIN]: [[null, 'n'], [null, null, []], [wireError('E_ADDRESS_IN_USE', 'Address in use: this peer id is joined from 1.2.3.4:5')]] })
    await join.run()
    await join.run()
    expect(outcomes.at(-1)).toBe('fail E_DISPLACED: Displaced while disconnected: this peer id is joined from 1.2.3.4:5')
  })

  it('a drop or a timeout during the join is an error, not a failure', async () => {
    for (const code of ['E_DISCONNECTED', 'E_TIMEOUT'] as const) {
      const { join, outcomes } = setup({ ...STARSOCK, [EVENTS.JOIN]: [new StarsockError(code, 'gone')] })
      await join.run()
      expect(outcomes).toEqual([`error ${code}`])
    }
  })

  it('a limit fails a first join, but a rejoin is retried with backoff on the same connection', async () => {
    const limit = [wireError('E_LIMIT_JOIN_RATE', 'Too many joins')]
    const first = setup({ ...STARSOCK, [EVENTS.JOIN]: [limit] })
    await first.join.run()
    expect(first.outcomes).toEqual(['fail E_LIMIT_JOIN_RATE: Too many joins'])

    vi.useFakeTimers()
    const { join, outcomes } = setup({ ...STARSOCK, [EVENTS.JOIN]: [[null, 'n'], [null, null, []], limit, [null, 'n'], [null, null, []]], [EVENTS.PEERS]: [[null, { addrs: [], next: null }]] })
    await join.run()
    await join.run()
    expect(outcomes).toEqual(['joined true', 'error E_LIMIT_JOIN_RATE'])
    await vi.advanceTimersByTimeAsync(100) // the first retry waits 50 to 100 ms
    await vi.waitFor(() => expect(outcomes).toEqual(['joined true', 'error E_LIMIT_JOIN_RATE', 'joined true']))
  })

  it.each<[string, (run: Run) => void]>([
    ['the link dropped', (run) => { run.link.connected = false }],
    ['the peer closed', (run) => { run.closed.value = true }],
    ['the retry was cancelled', (run) => { run.join.cancel() }]
  ])('no retry once %s', async (_, stop) => {
    vi.useFakeTimers()
    const limit = [wireError('E_LIMIT_PEERS', 'Full')]
    const run = setup({ ...STARSOCK, [EVENTS.JOIN]: [[null, 'n'], [null, null, []], limit, [null, 'n'], [null, null, []]], [EVENTS.PEERS]: [[null, { addrs: [], next: null }]] })
    await run.join.run()
    await run.join.run()
    const requests = run.link.requests.length
    stop(run)
    await vi.advanceTimersByTimeAsync(5000)
    expect(run.link.requests.length).toBe(requests)
    expect(run.outcomes).toEqual(['joined true', 'error E_LIMIT_PEERS'])
  })

  it('a join overtaken by a newer connection\'s join, or by close, changes nothing', async () => {
    let release: (() => void) | undefined
    const slow = async (): Promise<unknown[]> => { await new Promise<void>((resolve) => { release = resolve }); return [null, null, [OTHER]] }
    const { join, outcomes, closed } = setup({ ...STARSOCK, [EVENTS.JOIN]: [[null, 'n'], slow, [null, 'n'], [null, null, [PAGED]]] })
    const older = join.run()
    await vi.waitFor(() => expect(release).toBeDefined())
    await join.run() // the newer connection's join completes first
    release?.()
    await older
    expect(outcomes).toEqual([`peer:join ${PAGED}`, 'joined true'])

    closed.value = true
    await join.run()
    expect(outcomes).toEqual([`peer:join ${PAGED}`, 'joined true'])
  })

  it('a rejoin reconciles the list: a peer gone meanwhile leaves', async () => {
    const { join, outcomes } = setup({ ...STARSOCK, [EVENTS.JOIN]: [[null, 'n'], [null, null, [OTHER]], [null, 'n'], [null, null, []]], [EVENTS.PEERS]: [[null, { addrs: [], next: null }]] })
    await join.run()
    await join.run()
    expect(outcomes).toEqual([`peer:join ${OTHER}`, 'joined true', `peer:leave ${OTHER}`, 'joined true'])
  })

  it.each<[string, unknown, string | undefined]>([
    ['a takeover', { reason: 'takeover', by: '10.0.0.1:4000' }, 'fail E_DISPLACED: Displaced: another client took this peer id over from 10.0.0.1:4000'],
    ['a legacy join, from an address not shown', { reason: 'legacy-join', by: '<script>' }, 'fail E_DISPLACED: Displaced: another client joined this peer id (a websocket-star client) from an unknown address'],
    ['another address', { reason: 'takeover', by: '10.0.0.1', addr: OTHER }, undefined],
    ['a malformed notice', { reason: 'because' }, undefined]
  ])('displaced by %s', (_, info, outcome) => {
    const { join, outcomes } = setup(STARSOCK)
    join.displaced({ addr: `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${identity.peerId}`, ...info as object })
    expect(outcomes).toEqual(outcome === undefined ? [] : [outcome])
  })

  it('a displaced notice after close changes nothing', () => {
    const { join, outcomes, closed } = setup(STARSOCK)
    closed.value = true
    join.displaced({ addr: `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/${identity.peerId}`, reason: 'takeover', by: '10.0.0.1' })
    expect(outcomes).toEqual([])
  })
})
