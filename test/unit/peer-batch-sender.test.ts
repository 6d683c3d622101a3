import { describe, expect, it } from 'vitest'
import { EVENTS, type PeerBatchEntry } from '../../shared/events.ts'
import { MAX_PEER_BATCH_EVENT_ENTRIES, PeerBatchSender, type PeerBatchSenderOptions } from '../../server/peer-batch-sender.ts'
import { TokenBucket } from '../../server/rate-limit.ts'
import { Session, type EncodedEvent, type Endpoint } from '../../server/session.ts'

/** A joined session whose endpoint records what it is sent (`encoded` for `sendEncoded`), with a settable backlog. */
interface FakeSession {
  session: Session
  sent: unknown[][]
  backlog: number
}

function fakeSession (i: number): FakeSession {
  const fake: FakeSession = { session: undefined as unknown as Session, sent: [], backlog: 0 }
  const endpoint: Endpoint = {
    emit: (event, ...args) => { fake.sent.push([event, ...args]) },
    sendEncoded: (encoded) => { fake.sent.push(['encoded', encoded]) },
    backlogBytes: () => fake.backlog,
    request: async () => [],
    pendingWriteBytes: () => 0,
    pauseReading: () => true,
    resumeReading: () => {}
  }
  fake.session = new Session(`s${i}`, '127.0.0.1', endpoint, new TokenBucket(100, 200))
  fake.session.addrs.add(addrOf(i))
  return fake
}

const addrOf = (i: number): string => `/ip4/10.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/peer${i}`
const joins = (from: number, n: number): PeerBatchEntry[] => Array.from({ length: n }, (_, i) => ['join', addrOf(from + i)])
const encoder = (event: string, args: unknown[]): EncodedEvent => ({ event, args, bytes: 100 })
const turn = async (): Promise<void> => { await new Promise((resolve) => setImmediate(resolve)) }

/** A sender with an encoder, `n` sessions, and what its hooks saw. */
function setup (n: number, options: Partial<PeerBatchSenderOptions> = {}): { sender: PeerBatchSender, fakes: FakeSession[], backlogged: string[] } {
  const backlogged: string[] = []
  const sender = new PeerBatchSender({ sent: () => {}, backlogged: (s) => backlogged.push(s.id) }, { maxBacklogBytes: 1000, ...options })
  sender.encoder = encoder
  return { sender, fakes: Array.from({ length: n }, (_, i) => fakeSession(i)), backlogged }
}

describe('PeerBatchSender', () => {
  it('sends one encoding to every client it goes to unchanged and a filtered copy to one holding an address in it', () => {
    const { sender, fakes } = setup(3)
    const entries = [...joins(100, 3), ['leave', addrOf(1)] as PeerBatchEntry]
    sender.send(entries, fakes.map((f) => f.session))
    expect(sender.busy).toBe(false)
    const [a, b, c] = fakes.map((f) => f.sent)
    expect(a).toHaveLength(1)
    expect(a![0]![0]).toBe('encoded')
    expect(c![0]![1]).toBe(a![0]![1]) // the same encoded event
    expect((a![0]![1] as EncodedEvent).args).toEqual([entries])
    expect(b).toEqual([[EVENTS.PEER_BATCH, joins(100, 3)]])
  })

  it('re-encodes for a client holding an address only the events naming it; an event left empty is not sent', () => {
    const { sender, fakes } = setup(2)
    const [other, holder] = fakes
    // Event 0: 1000 joins; event 1: the holder's own profile change and 999 leaves; event 2: one join.
    const leaves = Array.from({ length: MAX_PEER_BATCH_EVENT_ENTRIES - 1 }, (_, i): PeerBatchEntry => ['leave', addrOf(9000 + i)])
    sender.send([...joins(100, MAX_PEER_BATCH_EVENT_ENTRIES), ['profile', addrOf(1), { kind: 'node' }], ...leaves, ...joins(5000, 1)], [other!.session, holder!.session])
    expect(other!.sent.map(([kind]) => kind)).toEqual(['encoded', 'encoded', 'encoded'])
    // The first event shared, the second filtered (the holder's own entry gone), the third shared.
    expect(holder!.sent[0]).toEqual(other!.sent[0])
    expect(holder!.sent[1]![0]).toBe(EVENTS.PEER_BATCH)
    expect(holder!.sent[1]![1]).toEqual(leaves)
    expect(holder!.sent[2]).toEqual(other!.sent[2])
    holder!.sent.length = 0
    // Its own address alone in an event: that event is not sent to it at all.
    sender.send([...joins(100, MAX_PEER_BATCH_EVENT_ENTRIES), ['leave', addrOf(1)]], [holder!.session])
    expect(holder!.sent.map(([kind]) => kind)).toEqual(['encoded'])
  })

  it('spreads a flush over turns by clients and by bytes, in order, and refuses a second one meanwhile', async () => {
    const { sender, fakes } = setup(5, { sliceClients: 2 })
    const entries = joins(100, MAX_PEER_BATCH_EVENT_ENTRIES + 1)
    sender.send(entries, fakes.map((f) => f.session))
    expect(fakes.map((f) => f.sent.length)).toEqual([2, 2, 0, 0, 0])
    expect(() => sender.send(entries, [])).toThrow(TypeError)
    await turn()
    expect(fakes.map((f) => f.sent.length)).toEqual([2, 2, 2, 2, 0])
    await turn()
    expect(sender.busy).toBe(false)
    expect(fakes.map((f) => f.sent.length)).toEqual([2, 2, 2, 2, 2])
    // 2 events of 100 bytes per client: a slice of 250 bytes serves 2 clients a turn.
    const bytes = setup(3, { sliceBytes: 250 })
    bytes.sender.send(entries, bytes.fakes.map((f) => f.session))
    expect(bytes.fakes.map((f) => f.sent.length)).toEqual([2, 2, 0])
  })

  it('skips a client dropped mid-flush; hands one leaving batches what it was not sent', async () => {
    const { sender, fakes } = setup(4, { sliceClients: 1 })
    const entries = joins(100, 5)
    sender.send(entries, fakes.map((f) => f.session))
    sender.drop(fakes[2]!.session)
    expect(sender.takeUnsent(fakes[0]!.session)).toEqual([]) // already sent
    expect(sender.takeUnsent(fakes[3]!.session)).toEqual(entries)
    while (sender.busy) await turn()
    expect(fakes.map((f) => f.sent.length)).toEqual([1, 1, 0, 0])
  })

  it('hands a client already behind to `backlogged` instead of queueing past the bound; an idle one always gets the batch', () => {
    const { sender, fakes, backlogged } = setup(3, { maxBacklogBytes: 150 })
    fakes[1]!.backlog = 60 // 60 + 100 > 150
    fakes[2]!.backlog = 40 // 40 + 100 <= 150
    sender.send(joins(100, 2), fakes.map((f) => f.session))
    expect(backlogged).toEqual(['s1'])
    expect(fakes.map((f) => f.sent.length)).toEqual([1, 0, 1])
    const small = setup(1, { maxBacklogBytes: 10 })
    small.sender.send(joins(100, 2), [small.fakes[0]!.session])
    expect(small.fakes[0]!.sent).toHaveLength(1)
  })

  it('without an encoder, or to an endpoint without sendEncoded, emits the shared parts', () => {
    const { sender, fakes } = setup(1)
    sender.encoder = undefined
    sender.send(joins(100, 2), [fakes[0]!.session])
    expect(fakes[0]!.sent).toEqual([[EVENTS.PEER_BATCH, joins(100, 2)]])
  })
})
