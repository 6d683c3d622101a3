import { afterEach, describe, expect, it, vi } from 'vitest'
import { EVENTS, PEER_BATCH_INTERVAL_MS } from '../../shared/events.ts'
import { Announcer, MAX_PEER_BATCH_EVENT_ENTRIES, ROTATION_GROUPS, type AnnouncerOptions } from '../../server/announcer.ts'
import { MemoryPeerDirectory } from '../../server/peer-directory.ts'
import { TokenBucket } from '../../server/rate-limit.ts'
import { Session, type Endpoint, type EventEncoder } from '../../server/session.ts'

/** A session whose endpoint records every emit. */
interface FakeSession {
  session: Session
  emits: Array<[string, ...unknown[]]>
}

function fakeSession (id: string): FakeSession {
  const emits: Array<[string, ...unknown[]]> = []
  const endpoint: Endpoint = {
    emit: (event, ...args) => { emits.push([event, ...args]) },
    request: async () => [],
    pendingWriteBytes: () => 0,
    pauseReading: () => true,
    resumeReading: () => {}
  }
  return { session: new Session(id, '127.0.0.1', endpoint, new TokenBucket(100, 200)), emits }
}

const addrOf = (i: number): string => `/ip4/10.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/peer${i}`

/** `n` sessions each joined under one address, in a directory and a session map. */
function world (n: number, options: AnnouncerOptions): {
  directory: MemoryPeerDirectory
  sessions: Map<string, Session>
  fakes: FakeSession[]
  announcer: Announcer
  onSent: ReturnType<typeof vi.fn>
} {
  const directory = new MemoryPeerDirectory()
  const sessions = new Map<string, Session>()
  const fakes: FakeSession[] = []
  for (let i = 0; i < n; i++) {
    const fake = fakeSession(`s${i}`)
    fake.session.addrs.add(addrOf(i))
    directory.set(addrOf(i), fake.session.id)
    sessions.set(fake.session.id, fake.session)
    fakes.push(fake)
  }
  const onSent = vi.fn()
  const announcer = new Announcer(directory, sessions, options, onSent)
  return { directory, sessions, fakes, announcer, onSent }
}

/** The `ws-peer` addresses a fake session received, and clear its record. */
function takePeers (fake: FakeSession): string[] {
  const addrs = fake.emits.filter(([event]) => event === EVENTS.PEER).map(([, addr]) => addr as string)
  fake.emits.length = 0
  return addrs
}

describe('Announcer.joined / left', () => {
  it('sends ws-peer to joined legacy sessions, peer-join to peer-event sessions, nothing to the joiner or unjoined sessions', () => {
    const { sessions, announcer, onSent } = world(0, { intervalMs: 0, batchPeers: 10 })
    const legacy1 = fakeSession('legacy1')
    const legacy2 = fakeSession('legacy2')
    const modern = fakeSession('modern')
    const unjoined = fakeSession('unjoined')
    const joiner = fakeSession('joiner')
    legacy1.session.addrs.add(addrOf(1))
    legacy2.session.addrs.add(addrOf(2))
    modern.session.addrs.add(addrOf(3))
    announcer.setPeerEvents(modern.session, true)
    joiner.session.addrs.add(addrOf(4))
    for (const f of [legacy1, legacy2, modern, unjoined, joiner]) sessions.set(f.session.id, f.session)

    announcer.joined(addrOf(4), joiner.session)

    expect(legacy1.emits).toEqual([[EVENTS.PEER, addrOf(4)]])
    expect(legacy2.emits).toEqual([[EVENTS.PEER, addrOf(4)]])
    expect(modern.emits).toEqual([[EVENTS.PEER_JOIN, addrOf(4)]])
    expect(unjoined.emits).toEqual([])
    expect(joiner.emits).toEqual([])
    expect(announcer.sent).toBe(2)
    expect(onSent.mock.calls).toEqual([[2]])
  })

  it('sends peer-leave only to joined peer-event sessions', () => {
    const { sessions, announcer, onSent } = world(0, { intervalMs: 0, batchPeers: 10 })
    const legacy = fakeSession('legacy')
    const modern = fakeSession('modern')
    const modernUnjoined = fakeSession('modernUnjoined')
    legacy.session.addrs.add(addrOf(1))
    modern.session.addrs.add(addrOf(2))
    announcer.setPeerEvents(modern.session, true)
    announcer.setPeerEvents(modernUnjoined.session, true)
    for (const f of [legacy, modern, modernUnjoined]) sessions.set(f.session.id, f.session)

    announcer.left(addrOf(9))

    expect(legacy.emits).toEqual([])
    expect(modern.emits).toEqual([[EVENTS.PEER_LEAVE, addrOf(9)]])
    expect(modernUnjoined.emits).toEqual([])
    expect(onSent).not.toHaveBeenCalled()
  })
})

describe('Announcer.sample', () => {
  afterEach(() => { vi.restoreAllMocks() })

  // [peers, batchPeers, addresses the sampled session holds itself, expected sample size]
  it.each<[number, number, number, number]>([
    [0, 10, 0, 0],
    [1, 10, 1, 0],
    [5, 10, 1, 4],
    [5, 10, 3, 2],
    [50, 10, 1, 10],
    [50, 10, 5, 10],
    [11, 10, 2, 9],
    [100, 64, 8, 64]
  ])('with %d peers and batch %d, a session holding %d of them gets %d', (peers, batch, own, expected) => {
    const { directory, announcer } = world(peers, { intervalMs: 0, batchPeers: batch })
    const me = fakeSession('me').session
    // The sampled session holds `own` addresses spread over the list.
    const mine = new Set<string>()
    for (let k = 0; k < own; k++) mine.add(directory.at(Math.floor(k * peers / own)) as string)
    for (const addr of mine) me.addrs.add(addr)
    for (const start of [0, 0.25, 0.5, 0.999]) {
      vi.spyOn(Math, 'random').mockReturnValue(start)
      const sample = announcer.sample(me)
      expect(sample).toHaveLength(expected)
      expect(new Set(sample).size).toBe(sample.length)
      for (const addr of sample) {
        expect(mine.has(addr)).toBe(false)
        // One of the directory's peers: addrOf(i) is owned by session s<i>.
        expect(directory.owner(addr)).toBe(addr.replace(/^.*\/ipfs\/peer(\d+)$/, 's$1'))
      }
    }
  })
})

describe('Announcer periodic re-announcement', () => {
  const INTERVAL_MS = 1000

  afterEach(() => { vi.useRealTimers() })

  /** Run `intervals` whole intervals and return, per interval, the ws-peer addresses each session got. */
  function run (peers: number, batchPeers: number, intervals: number): { perInterval: string[][][], fakes: FakeSession[], announcer: Announcer } {
    vi.useFakeTimers()
    const { fakes, announcer } = world(peers, { intervalMs: INTERVAL_MS, batchPeers })
    announcer.start()
    const perInterval: string[][][] = []
    for (let k = 0; k < intervals; k++) {
      vi.advanceTimersByTime(INTERVAL_MS)
      perInterval.push(fakes.map(takePeers))
    }
    announcer.stop()
    return { perInterval, fakes, announcer }
  }

  it('sends nothing before start and nothing after stop', () => {
    vi.useFakeTimers()
    const { fakes, announcer } = world(8, { intervalMs: INTERVAL_MS, batchPeers: 3 })
    vi.advanceTimersByTime(5 * INTERVAL_MS)
    expect(fakes.every(f => f.emits.length === 0)).toBe(true)
    announcer.start()
    vi.advanceTimersByTime(INTERVAL_MS)
    expect(fakes.some(f => f.emits.length > 0)).toBe(true)
    announcer.stop()
    for (const f of fakes) f.emits.length = 0
    vi.advanceTimersByTime(5 * INTERVAL_MS)
    expect(fakes.every(f => f.emits.length === 0)).toBe(true)
  })

  it('does not run with intervalMs 0', () => {
    vi.useFakeTimers()
    const { fakes, announcer } = world(8, { intervalMs: 0, batchPeers: 3 })
    announcer.start()
    vi.advanceTimersByTime(60_000)
    expect(fakes.every(f => f.emits.length === 0)).toBe(true)
    announcer.stop()
  })

  // [peers, batchPeers]. Counts that are not multiples of the 4 slices per interval (2, 5, 41, 50)
  // catch a slice share rounded up, which once gave some sessions two batches in one interval.
  it.each<[number, number]>([
    [2, 64],
    [4, 2],
    [5, 4],
    [20, 5],
    [41, 64],
    [50, 10],
    [100, 10]
  ])('with %d peers and batch %d, each session gets at most a batch per interval, never its own address', (peers, batch) => {
    const { perInterval } = run(peers, batch, 6)
    for (const interval of perInterval) {
      interval.forEach((addrs, i) => {
        expect(addrs.length).toBeLessThanOrEqual(batch)
        expect(addrs).not.toContain(addrOf(i))
      })
    }
  })

  it.each<[number, number, number]>([
    // [peers, batchPeers, intervals needed to cover everyone: ceil((peers - 1) / batch)]
    [4, 2, 2],
    [20, 5, 4],
    [50, 10, 5],
    [100, 10, 10]
  ])('with %d peers and batch %d, every session has seen every other peer after %d intervals', (peers, batch, needed) => {
    const { perInterval } = run(peers, batch, needed)
    for (let i = 0; i < peers; i++) {
      const seen = new Set(perInterval.flatMap(interval => interval[i] ?? []))
      const others = Array.from({ length: peers }, (_, j) => addrOf(j)).filter(a => a !== addrOf(i))
      expect([...seen].sort()).toEqual(others.sort())
    }
  })

  it('skips peer-event sessions and sessions with no address', () => {
    vi.useFakeTimers()
    const { fakes, sessions, announcer } = world(8, { intervalMs: INTERVAL_MS, batchPeers: 3 })
    const modern = fakeSession('modern')
    modern.session.addrs.add('/p2p-websocket-star/ipfs/modern')
    announcer.setPeerEvents(modern.session, true)
    const unjoined = fakeSession('unjoined')
    sessions.set(modern.session.id, modern.session)
    sessions.set(unjoined.session.id, unjoined.session)
    announcer.start()
    vi.advanceTimersByTime(5 * INTERVAL_MS)
    announcer.stop()
    expect(modern.emits).toEqual([])
    expect(unjoined.emits).toEqual([])
    expect(fakes.every(f => takePeers(f).length > 0)).toBe(true)
  })

  it('grows linearly with the peers: about twice the messages per interval for twice the peers', () => {
    const count = (peers: number): number => {
      const { perInterval, announcer } = run(peers, 10, 4)
      const perIntervalTotals = perInterval.map(interval => interval.reduce((sum, addrs) => sum + addrs.length, 0))
      expect(announcer.sent).toBe(perIntervalTotals.reduce((a, b) => a + b, 0))
      return Math.max(...perIntervalTotals)
    }
    const at50 = count(50)
    const at100 = count(100)
    // Quadratic would be 50*49 = 2450 and 100*99 = 9900, a ratio of about 4.
    expect(at50).toBeLessThanOrEqual(60 * 10)
    expect(at100).toBeLessThanOrEqual(110 * 10)
    expect(at100 / at50).toBeGreaterThan(1.6)
    expect(at100 / at50).toBeLessThan(2.4)
  })
})

describe('Announcer rotation windows (encoded once, sent in runs)', () => {
  const INTERVAL_MS = 1000

  afterEach(() => { vi.useRealTimers() })

  /** An encoder that counts its calls; each encoded event names its address. */
  function countingEncoder (): { encoder: EventEncoder, calls: () => number } {
    let calls = 0
    return {
      encoder: (event, args) => { calls++; return { event, args, bytes: 10 } },
      calls: () => calls
    }
  }

  /** `n` joined sessions whose endpoints take runs, recording each run as its addresses. */
  function runWorld (n: number, batchPeers: number): { world: ReturnType<typeof world>, runs: string[][][], calls: () => number } {
    vi.useFakeTimers()
    const w = world(n, { intervalMs: INTERVAL_MS, batchPeers, joinsPerSecond: 0 })
    const runs: string[][][] = w.fakes.map(() => [])
    w.fakes.forEach((fake, i) => {
      fake.session.endpoint.sendEncodedRun = (events, from, to) => {
        runs[i]?.push(events.slice(from, to).map((e) => e.args[0] as string))
      }
    })
    const { encoder, calls } = countingEncoder()
    w.announcer.useEncoder(encoder)
    w.announcer.start()
    return { world: w, runs, calls }
  }

  it('a session gets its window as one run; its own address splits it, an address that left is skipped', () => {
    // 40 peers, windows of 40: every window is the whole list, and each group has 2 or 3 sessions.
    const { world: w, runs } = runWorld(40, 40)
    // A pass over the 40 sessions (and a slice more, for the rounding of the share due per slice).
    vi.advanceTimersByTime(INTERVAL_MS + 50)
    const list = Array.from({ length: 40 }, (_, i) => addrOf(i))
    for (const [i, got] of runs.entries()) {
      // Its first visit (a few sessions may be visited again in the slice more).
      const expected = [list.slice(0, i), list.slice(i + 1)].filter((run) => run.length > 0)
      expect(got.slice(0, expected.length)).toEqual(expected)
      got.length = 0
    }
    // Half a pass on, every group's window is made; then peer 39 leaves (its session stays
    // connected, as a legacy client that unjoined would): the sessions told in the rest of the
    // pass get those windows less 39.
    vi.advanceTimersByTime(INTERVAL_MS * 0.6)
    for (const got of runs) got.length = 0
    w.directory.release(addrOf(39), 's39')
    vi.advanceTimersByTime(INTERVAL_MS * 0.4)
    let told = 0
    for (const [i, got] of runs.entries()) {
      if (i === 39 || got.length === 0) continue
      told++
      expect(got.flat()).not.toContain(addrOf(39))
      expect(got.flat()).toHaveLength(38)
    }
    expect(told).toBeGreaterThanOrEqual(10)
    w.announcer.stop()
  })

  it('an idle server encodes one window a pass: the others moved to where a neighbour was', () => {
    // 400 peers, 10 a window: 16 windows of 10 (160 addresses) in the first pass.
    const { world: w, calls } = runWorld(400, 10)
    vi.advanceTimersByTime(INTERVAL_MS)
    expect(calls()).toBe(ROTATION_GROUPS * 10)
    const before = calls()
    vi.advanceTimersByTime(3 * INTERVAL_MS)
    // Passes do not line up with intervals exactly: three or four new windows.
    expect(calls() - before).toBeGreaterThanOrEqual(3 * 10)
    expect(calls() - before).toBeLessThanOrEqual(4 * 10)
    w.announcer.stop()
  })

  it('clients are spread over the groups: as many different windows as groups in a pass', () => {
    const { world: w, runs } = runWorld(400, 10)
    vi.advanceTimersByTime(INTERVAL_MS)
    const windows = new Set(runs.map((got) => got.flat().slice(0, 3).join()))
    expect(windows.size).toBeGreaterThanOrEqual(ROTATION_GROUPS)
    w.announcer.stop()
  })

  it('a join is encoded once for every legacy session', () => {
    vi.useFakeTimers()
    const w = world(50, { intervalMs: 0, batchPeers: 10, joinsPerSecond: 100 })
    const { encoder, calls } = countingEncoder()
    w.announcer.useEncoder(encoder)
    const got: unknown[] = []
    for (const fake of w.fakes) fake.session.endpoint.sendEncoded = (encoded) => { got.push(encoded) }
    w.announcer.joined(addrOf(99), undefined)
    expect(calls()).toBe(1)
    expect(got).toHaveLength(50)
    expect(new Set(got).size).toBe(1)
  })
})

describe('Announcer immediate ws-peer budget', () => {
  afterEach(() => { vi.useRealTimers() })

  /** One joined legacy session; `joins` joins from elsewhere, `stepMs` apart; the addresses it got at once. */
  function burst (joinsPerSecond: number, joins: number, stepMs: number): { got: string[], announcer: Announcer, held: string[] } {
    vi.useFakeTimers()
    const held: string[] = []
    const legacy = fakeSession('legacy')
    legacy.session.addrs.add(addrOf(1))
    const announcer = new Announcer(new MemoryPeerDirectory(), new Map([[legacy.session.id, legacy.session]]), { intervalMs: 0, batchPeers: 64, joinsPerSecond }, { held: (reason) => held.push(reason) })
    for (let i = 0; i < joins; i++) {
      announcer.joined(addrOf(100 + i), undefined)
      vi.advanceTimersByTime(stepMs)
    }
    return { got: takePeers(legacy), announcer, held }
  }

  it.each([
    // rate, joins, ms between joins, immediate ws-peer expected
    [4, 100, 0, 8],
    [4, 100, 10, 8 + 3],
    [4, 20, 250, 20],
    [1, 50, 100, 2 + 4],
    [0, 50, 0, 0],
    [100, 150, 0, 150]
  ])('at %i/s, %i joins %i ms apart: %i announced at once, the others held', (rate, joins, stepMs, expected) => {
    const { got, announcer, held } = burst(rate, joins, stepMs)
    expect(got).toHaveLength(expected)
    expect(got).toEqual([...new Set(got)])
    expect(announcer.held).toBe(joins - expected)
    expect(held).toEqual(Array<string>(joins - expected).fill('budget'))
    expect(announcer.sent).toBe(expected)
  })

  it('a join past the budget costs nothing per session: no session is even read', () => {
    vi.useFakeTimers()
    const sessions = new Map<string, Session>()
    const announcer = new Announcer(new MemoryPeerDirectory(), sessions, { intervalMs: 0, batchPeers: 64, joinsPerSecond: 1 })
    for (let i = 0; i < 2; i++) announcer.joined(addrOf(i), undefined)
    let reads = 0
    const spy = vi.spyOn(sessions, 'values').mockImplementation(() => { reads++; return new Map<string, Session>().values() })
    announcer.joined(addrOf(9), undefined)
    expect(reads).toBe(0)
    spy.mockRestore()
  })

  it('the rotation still brings the held joins to a legacy session', () => {
    vi.useFakeTimers()
    const { fakes, directory, announcer } = world(1, { intervalMs: 1000, batchPeers: 64, joinsPerSecond: 1 })
    const [legacy] = fakes as [FakeSession]
    for (let i = 0; i < 30; i++) {
      directory.set(addrOf(100 + i), `remote${i}`)
      announcer.joined(addrOf(100 + i), undefined)
    }
    expect(takePeers(legacy)).toHaveLength(2)
    announcer.start()
    vi.advanceTimersByTime(1000)
    announcer.stop()
    expect(new Set(takePeers(legacy))).toEqual(new Set(Array.from({ length: 30 }, (_, i) => addrOf(100 + i))))
  })

  it('setJoinsPerSecond changes the budget at once, full', () => {
    vi.useFakeTimers()
    const legacy = fakeSession('legacy')
    legacy.session.addrs.add(addrOf(1))
    const announcer = new Announcer(new MemoryPeerDirectory(), new Map([[legacy.session.id, legacy.session]]), { intervalMs: 0, batchPeers: 64, joinsPerSecond: 0 })
    announcer.joined(addrOf(2), undefined)
    expect(takePeers(legacy)).toEqual([])
    announcer.setJoinsPerSecond(1)
    for (let i = 0; i < 5; i++) announcer.joined(addrOf(10 + i), undefined)
    expect(takePeers(legacy)).toEqual([addrOf(10), addrOf(11)])
    expect(() => announcer.setJoinsPerSecond(-1)).toThrow(RangeError)
  })

  it('never sends ws-peer to a stand-in for a peer on another node (its own node tells it)', () => {
    vi.useFakeTimers()
    const { sessions, directory, announcer } = world(0, { intervalMs: 1000, batchPeers: 64 })
    const stub = fakeSession('stub')
    stub.session.node = 'node-2'
    stub.session.addrs.add(addrOf(1))
    sessions.set(stub.session.id, stub.session)
    directory.set(addrOf(2), 'other')
    announcer.joined(addrOf(2), undefined)
    announcer.start()
    vi.advanceTimersByTime(2000)
    announcer.stop()
    expect(stub.emits).toEqual([])
  })

  it('refuses a negative or non-finite rate', () => {
    expect(() => new Announcer(new MemoryPeerDirectory(), new Map(), { intervalMs: 0, batchPeers: 1, joinsPerSecond: -1 })).toThrow(RangeError)
    expect(() => new Announcer(new MemoryPeerDirectory(), new Map(), { intervalMs: 0, batchPeers: 1, joinsPerSecond: Number.NaN })).toThrow(RangeError)
  })
})

describe('Announcer peer batches', () => {
  afterEach(() => { vi.useRealTimers() })

  /** A world of one batch session, one single-event session and one legacy session, all joined. */
  /**
   * More batch clients than one flush slice serves (`FLUSH_SLICE_CLIENTS`): 300 sessions named
   * `<prefix><i>`, each holding `addrOf(firstAddr + i)`, all asking for batches.
   */
  function batchCrowd (announcer: Announcer, sessions: Map<string, Session>, prefix: string, firstAddr: number): FakeSession[] {
    const crowd = Array.from({ length: 300 }, (_, i) => fakeSession(`${prefix}${i}`))
    for (const [i, f] of crowd.entries()) {
      f.session.addrs.add(addrOf(firstAddr + i))
      sessions.set(f.session.id, f.session)
      announcer.setPeerEvents(f.session, true, true)
    }
    return crowd
  }

  function batchWorld (options: Partial<AnnouncerOptions> = {}): { announcer: Announcer, batch: FakeSession, single: FakeSession, legacy: FakeSession, sessions: Map<string, Session> } {
    vi.useFakeTimers()
    const { sessions, announcer } = world(0, { intervalMs: 0, batchPeers: 64, joinsPerSecond: 0, ...options })
    const batch = fakeSession('batch')
    const single = fakeSession('single')
    const legacy = fakeSession('legacy')
    batch.session.addrs.add(addrOf(1))
    single.session.addrs.add(addrOf(2))
    legacy.session.addrs.add(addrOf(3))
    announcer.setPeerEvents(batch.session, true, true)
    announcer.setPeerEvents(single.session, true)
    for (const f of [batch, single, legacy]) sessions.set(f.session.id, f.session)
    return { announcer, batch, single, legacy, sessions }
  }

  it('sends one peer-batch per interval with every change in order; single-event clients get each at once', () => {
    const { announcer, batch, single, legacy } = batchWorld()
    const profile = { kind: 'node' as const, name: 'n' }
    announcer.joined(addrOf(10), undefined, profile)
    announcer.joined(addrOf(11), undefined)
    announcer.profileChanged([addrOf(12)], undefined, profile)
    announcer.left(addrOf(13))
    expect(batch.emits).toEqual([])
    expect(single.emits).toEqual([
      [EVENTS.PEER_JOIN, addrOf(10), profile],
      [EVENTS.PEER_JOIN, addrOf(11)],
      [EVENTS.PEER_PROFILE, addrOf(12), profile],
      [EVENTS.PEER_LEAVE, addrOf(13)]
    ])
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toEqual([[EVENTS.PEER_BATCH, [['join', addrOf(10), profile], ['join', addrOf(11)], ['profile', addrOf(12), profile], ['leave', addrOf(13)]]]])
    expect(legacy.emits).toEqual([])
    expect(announcer.batches).toBe(1)
    batch.emits.length = 0
    vi.advanceTimersByTime(10 * PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toEqual([])
  })

  it('one batch for a burst of 1000 joins, with all of them', () => {
    const { announcer, batch } = batchWorld()
    for (let i = 0; i < 1000; i++) announcer.joined(addrOf(100 + i), undefined)
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toHaveLength(1)
    const entries = batch.emits[0]?.[1] as unknown[]
    expect(entries).toEqual(Array.from({ length: 1000 }, (_, i) => ['join', addrOf(100 + i)]))
  })

  it('a batch larger than MAX_PEER_BATCH_EVENT_ENTRIES goes as several events, in order', () => {
    const { announcer, batch } = batchWorld()
    const n = 2 * MAX_PEER_BATCH_EVENT_ENTRIES + 5
    for (let i = 0; i < n; i++) announcer.joined(addrOf(100 + i), undefined)
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits.map(([, entries]) => (entries as unknown[]).length)).toEqual([MAX_PEER_BATCH_EVENT_ENTRIES, MAX_PEER_BATCH_EVENT_ENTRIES, 5])
    expect(batch.emits.flatMap(([, entries]) => entries as unknown[])).toEqual(Array.from({ length: n }, (_, i) => ['join', addrOf(100 + i)]))
  })

  it('a join then a leave in one batch: the join goes, the leave stays (a page may have shown it)', () => {
    const { announcer, batch } = batchWorld()
    announcer.joined(addrOf(10), undefined)
    announcer.joined(addrOf(11), undefined)
    announcer.left(addrOf(10))
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toEqual([[EVENTS.PEER_BATCH, [['join', addrOf(11)], ['leave', addrOf(10)]]]])
  })

  it('never tells a session of its own addresses; sends nothing to unjoined sessions', () => {
    const { announcer, batch, sessions } = batchWorld()
    const unjoined = fakeSession('unjoined')
    announcer.setPeerEvents(unjoined.session, true, true)
    sessions.set('unjoined', unjoined.session)
    announcer.joined(addrOf(1), batch.session)
    announcer.profileChanged([addrOf(1)], batch.session, { kind: 'browser' })
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toEqual([])
    expect(unjoined.emits).toEqual([])
    announcer.joined(addrOf(1), batch.session)
    announcer.joined(addrOf(20), undefined)
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toEqual([[EVENTS.PEER_BATCH, [['join', addrOf(20)]]]])
  })

  it('a dropped session gets nothing more; a hello without peerBatch switches to single events', () => {
    const { announcer, batch, single } = batchWorld()
    announcer.drop(batch.session)
    announcer.setPeerEvents(single.session, true, true)
    announcer.joined(addrOf(10), undefined)
    expect(single.emits).toEqual([])
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toEqual([])
    expect(single.emits).toEqual([[EVENTS.PEER_BATCH, [['join', addrOf(10)]]]])
  })

  it('a joined batch client that says hello again without peerBatch gets what was pending as single events', () => {
    const { announcer, batch } = batchWorld()
    announcer.joined(addrOf(10), undefined, { kind: 'node', name: 'ten' })
    announcer.left(addrOf(11))
    announcer.profileChanged([addrOf(12)], undefined, { kind: 'browser' })
    batch.emits.length = 0
    announcer.setPeerEvents(batch.session, true, false)
    expect(batch.emits).toEqual([
      [EVENTS.PEER_JOIN, addrOf(10), { kind: 'node', name: 'ten' }],
      [EVENTS.PEER_LEAVE, addrOf(11)],
      [EVENTS.PEER_PROFILE, addrOf(12), { kind: 'browser' }]
    ])
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toHaveLength(3)
  })

  it('caps a batch at maxBatchEntries: the oldest joins are dropped and counted, never a leave', () => {
    const held: string[] = []
    vi.useFakeTimers()
    const sessions = new Map<string, Session>()
    const batch = fakeSession('batch')
    batch.session.addrs.add(addrOf(1))
    sessions.set('batch', batch.session)
    const announcer = new Announcer(new MemoryPeerDirectory(), sessions, { intervalMs: 0, batchPeers: 64, joinsPerSecond: 0, maxBatchEntries: 4 }, { held: (r) => held.push(r) })
    announcer.setPeerEvents(batch.session, true, true)
    announcer.left(addrOf(50))
    for (let i = 0; i < 6; i++) announcer.joined(addrOf(100 + i), undefined)
    announcer.left(addrOf(51))
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toEqual([[EVENTS.PEER_BATCH, [['leave', addrOf(50)], ['join', addrOf(104)], ['join', addrOf(105)], ['leave', addrOf(51)]]]])
    expect(announcer.batchDropped).toBe(4)
    expect(held.filter((r) => r === 'batch-cap')).toHaveLength(4)
  })

  it('within the budget a change goes at once, past it the rest wait for the shared timer; quiet again, at once again', () => {
    const { announcer, batch } = batchWorld({ joinsPerSecond: 2 })
    for (let i = 0; i < 10; i++) announcer.joined(addrOf(100 + i), undefined)
    // Bursts of twice the rate at once, one batch each.
    expect(batch.emits).toEqual([0, 1, 2, 3].map((i) => [EVENTS.PEER_BATCH, [['join', addrOf(100 + i)]]]))
    batch.emits.length = 0
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toEqual([[EVENTS.PEER_BATCH, [4, 5, 6, 7, 8, 9].map((i) => ['join', addrOf(100 + i)])]])
    batch.emits.length = 0
    // The timer runs while changes come; a tick with none stops it.
    announcer.left(addrOf(100))
    expect(batch.emits).toEqual([])
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toEqual([[EVENTS.PEER_BATCH, [['leave', addrOf(100)]]]])
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    expect(vi.getTimerCount()).toBe(0)
    batch.emits.length = 0
    vi.advanceTimersByTime(1000)
    announcer.left(addrOf(101))
    expect(batch.emits).toEqual([[EVENTS.PEER_BATCH, [['leave', addrOf(101)]]]])
  })

  it('stop drops what is pending and stops the shared timer', () => {
    const { announcer, batch } = batchWorld()
    announcer.joined(addrOf(10), undefined)
    announcer.stop()
    vi.advanceTimersByTime(10 * PEER_BATCH_INTERVAL_MS)
    expect(batch.emits).toEqual([])
    expect(vi.getTimerCount()).toBe(0)
  })

  it('a flush larger than a slice: the window waits for it (then goes on the timer), and a client leaving batches mid-flush gets what it was not sent as single events', () => {
    const { announcer, sessions } = batchWorld()
    const crowd = batchCrowd(announcer, sessions, 'c', 1000)
    announcer.joined(addrOf(10), undefined)
    announcer.flush()
    expect(announcer.batchOnItsWay).toBe(true)
    const last = crowd[299]!
    expect(last.emits).toEqual([])
    // A change meanwhile waits in the window: a second flush now would overtake the first.
    announcer.left(addrOf(11))
    announcer.flush()
    announcer.setPeerEvents(last.session, true, false)
    expect(last.emits).toEqual([[EVENTS.PEER_JOIN, addrOf(10)], [EVENTS.PEER_LEAVE, addrOf(11)]])
    vi.advanceTimersByTime(0) // setImmediate: the rest of the first flush
    expect(announcer.batchOnItsWay).toBe(false)
    expect(crowd[298]!.emits).toEqual([[EVENTS.PEER_BATCH, [['join', addrOf(10)]]]])
    vi.advanceTimersByTime(PEER_BATCH_INTERVAL_MS)
    vi.advanceTimersByTime(1) // its second slice (an immediate made inside a tick waits for the next)
    expect(crowd[298]!.emits).toEqual([[EVENTS.PEER_BATCH, [['join', addrOf(10)]]], [EVENTS.PEER_BATCH, [['leave', addrOf(11)]]]])
    expect(last.emits).toHaveLength(2) // told once, as single events
  })

  it('a batch client saying hello again mid-flush (batches again) still gets the flush on its way, once', () => {
    const { announcer, sessions } = batchWorld()
    const crowd = batchCrowd(announcer, sessions, 'h', 2000)
    announcer.joined(addrOf(10), undefined)
    announcer.flush()
    expect(announcer.batchOnItsWay).toBe(true)
    const last = crowd[299]!
    expect(last.emits).toEqual([])
    announcer.setPeerEvents(last.session, true, true)
    vi.advanceTimersByTime(0)
    expect(announcer.batchOnItsWay).toBe(false)
    expect(last.emits).toEqual([[EVENTS.PEER_BATCH, [['join', addrOf(10)]]]])
  })

  it('stopped mid-flush (the server closes): the rest of the flush is not sent, and later changes tell no one and start no timer', () => {
    const { announcer, sessions, batch } = batchWorld()
    const event = fakeSession('event')
    event.session.addrs.add(addrOf(3000))
    sessions.set(event.session.id, event.session)
    announcer.setPeerEvents(event.session, true)
    const crowd = batchCrowd(announcer, sessions, 'z', 4000)
    announcer.joined(addrOf(10), undefined)
    announcer.flush()
    expect(announcer.batchOnItsWay).toBe(true)
    announcer.stop()
    batch.emits.length = 0
    event.emits.length = 0
    // The server's sockets disconnect after the stop: each one's leave.
    announcer.left(addrOf(4000))
    announcer.joined(addrOf(11), undefined)
    announcer.profileChanged([addrOf(4001)], undefined, { kind: 'node' })
    announcer.flush()
    vi.advanceTimersByTime(10 * PEER_BATCH_INTERVAL_MS)
    expect(crowd[299]!.emits).toEqual([])
    expect(batch.emits).toEqual([])
    expect(event.emits).toEqual([])
    expect(vi.getTimerCount()).toBe(0)
  })
})
