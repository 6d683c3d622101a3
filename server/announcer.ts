/**
 * Discovery: `ws-peer` announcements that grow linearly with the peers, not with their square,
 * and a cost per join that stays bounded at cluster scale (issue 18).
 *
 * The original announced a new address to every joined client at once, then re-announced every
 * peer to every other every 10 s, N(N-1) messages. Here:
 * - Immediate `ws-peer` of a join is paced by a budget, `joinsPerSecond` (bursts of twice that):
 *   a join past it is not announced at once; the periodic rotation reaches every client with it
 *   later. Every legacy client sees the same joins, so one bucket shared by them all bounds each
 *   client as a bucket of its own would, with no state per session, and a join past the budget
 *   costs nothing per client.
 * - The periodic rotation gives each client at most `batchPeers` addresses per interval, so every
 *   peer is covered over time: a window of the peer list that moves on by `batchPeers` each pass
 *   over the clients. Clients are spread over `ROTATION_GROUPS` windows, side by side in the list,
 *   so no few peers are named to everyone at once; each window's `ws-peer` messages are encoded
 *   once for every client of its group, and a WebSocket client gets them in one write (an idle
 *   legacy client costs a write per interval, not an encode per address). The work of one
 *   interval is spread over short slices so a large server never stalls its event loop.
 * - Clients that asked for peer events (`starsock:hello` with `peerEvents`) get every join, leave
 *   and profile change and no periodic flood. When they also said `peerBatch`, changes go in
 *   `starsock:peer-batch` events: at once while within the same budget, past it in one batch
 *   every `PEER_BATCH_INTERVAL_MS` (one timer, one window for all of them: `peer-batch.ts`). A
 *   flush is encoded once and written a slice of clients per turn (`peer-batch-sender.ts`).
 *   Older starsock clients get one event per change.
 */
import { EVENTS, PEER_BATCH_INTERVAL_MS, type PeerBatchEntry } from '../shared/events.ts'
import type { PeerProfile } from '../shared/profile.ts'
import { PeerBatchWindow } from './peer-batch.ts'
import { parts, PeerBatchSender } from './peer-batch-sender.ts'
import type { PeerDirectory } from './peer-directory.ts'
import { TokenBucket } from './rate-limit.ts'
import type { EncodedEvent, EventEncoder, Session } from './session.ts'

/**
 * The periodic rotation's slice: each one announces to the clients due in it. Short, so what a
 * client (or a process of many clients) gets arrives in small bursts, not one that delays its
 * other messages: at 1,000 legacy peers and 64 addresses each per 10 s, a slice of 50 ms sent 320
 * messages at once.
 */
const SLICE_MS = 10

/**
 * Windows of the periodic rotation: each client is in one group (in turn as they are first
 * announced to), and the groups' windows lie side by side in the peer list. A pass later each
 * window has moved on to where the next group's was, so it is made (encoded) again only when the
 * addresses there changed: a pass encodes one new window on an idle server.
 */
export const ROTATION_GROUPS = 16

/** One group's window in a pass of the rotation: its addresses, and their `ws-peer` encoded once (when the encoder can, every one). */
interface Window {
  /** Where it starts in the peer list. */
  start: number
  addrs: string[]
  encoded: EncodedEvent[] | undefined
}
export { MAX_PEER_BATCH_EVENT_ENTRIES } from './peer-batch-sender.ts'

/** Announcement settings, resolved. */
export interface AnnouncerOptions {
  /** Interval of the periodic re-announcement; 0 turns it off. */
  intervalMs: number
  /** Addresses per client per interval, and the most a join reply lists. */
  batchPeers: number
  /** Joins announced at once (`ws-peer`) per second to legacy clients, bursts of twice that; 0: none. @default 4 */
  joinsPerSecond?: number
  /** Most entries one `starsock:peer-batch` holds; past it the oldest joins are dropped. @default 20_000 */
  maxBatchEntries?: number
  /** A batch client whose output backlog a batch would take past this is handed to `backlogged` instead. @default 16 MiB */
  maxBacklogBytes?: number
}

/** Immediate `ws-peer` announcements per second by default: a few addresses a second per client. */
export const ANNOUNCE_JOINS_PER_SECOND = 4
/** Largest `starsock:peer-batch` by default (the default `maxPeers`). */
export const MAX_PEER_BATCH_ENTRIES = 20_000

/** What the announcer counts besides the `ws-peer` it sends. */
export interface AnnouncerCounts {
  /** Called with the number of `ws-peer` messages just sent. */
  sent?: (count: number) => void
  /** A join not announced at once (past the budget), or a batch entry dropped at the cap. */
  held?: (reason: 'budget' | 'batch-cap') => void
  /** A batch client too far behind for the next batch (`backlog` bytes queued): it got none, it should go. */
  backlogged?: (session: Session, backlog: number) => void
}

/** Backlog bound of batch clients by default (the default `socketBufferBytes`). */
const MAX_BACKLOG_BYTES = 16 * 1024 * 1024

/** Sends `ws-peer` and peer events to joined sessions. */
export class Announcer {
  private timer: ReturnType<typeof setInterval> | undefined
  private batchTimer: ReturnType<typeof setInterval> | undefined
  private cursor: Iterator<Session> | undefined
  private due = 0
  /** Sessions that asked for one peer event per change. */
  private readonly eventSessions = new Set<Session>()
  /** Sessions that asked for batched peer events. */
  private readonly batchSessions = new Set<Session>()
  private readonly window: PeerBatchWindow
  private readonly sender: PeerBatchSender
  /** The benchmark's reference: every client's copy emitted (encoded) on its own, as before (peer batches all in one turn). */
  private encodeEach = false
  /** Set by `stop`: the server is closing, nothing more is told (its sockets are about to go, each one's leave would go to all the others). */
  private stopped = false
  private budget: TokenBucket | undefined
  /** The same budget for changes told at once to batch sessions (the others wait for the timer). */
  private batchBudget: TokenBucket | undefined
  private readonly counts: AnnouncerCounts
  /** The rotation group of each session announced to. */
  private readonly groups = new WeakMap<Session, number>()
  private nextGroup = 0
  /** Start of this pass's windows in the peer list: on by `batchPeers` each pass. */
  private passStart = 0
  /** The list's size when this pass made its first window: where its windows start is taken from it. */
  private passSize: number | undefined
  /** This pass's window of each group, made when the group's first client is due. */
  private windows: Array<Window | undefined> = []
  /** The last pass's windows by where they started, for this pass to take again where the list did not change. */
  private previous = new Map<number, Window>()
  /** `ws-peer` messages sent since start. */
  sent = 0
  /** Joins not announced at once since start (past the budget). */
  held = 0
  /** `starsock:peer-batch` events sent since start. */
  batches = 0

  constructor (
    private readonly directory: PeerDirectory,
    private readonly sessions: Map<string, Session>,
    private readonly options: AnnouncerOptions,
    counts: AnnouncerCounts | ((count: number) => void) = {}
  ) {
    this.setJoinsPerSecond(options.joinsPerSecond ?? ANNOUNCE_JOINS_PER_SECOND)
    this.window = new PeerBatchWindow(options.maxBatchEntries ?? MAX_PEER_BATCH_ENTRIES)
    this.counts = typeof counts === 'function' ? { sent: counts } : counts
    this.sender = new PeerBatchSender({
      sent: (n) => { this.batches += n },
      backlogged: (session, backlog) => this.counts.backlogged?.(session, backlog)
    }, { maxBacklogBytes: options.maxBacklogBytes ?? MAX_BACKLOG_BYTES })
  }

  /** Encode each peer batch once for all the clients it goes to unchanged (the socket.io wiring's encoder). */
  useEncoder (encoder: EventEncoder): void {
    this.sender.encoder = encoder
  }

  /** The benchmark's reference (`on`): flushes as before issue 18's sender, each client's copy encoded apart, all in one turn. */
  setEncodeEach (on: boolean): void {
    this.encodeEach = on
  }

  /** Set the budget of immediate announcements (as `joinsPerSecond`), full; the benchmark's reference lifts it once its crowd joined. */
  setJoinsPerSecond (rate: number): void {
    if (!Number.isFinite(rate) || rate < 0) throw new RangeError('joinsPerSecond must be a number >= 0')
    this.budget = rate === 0 ? undefined : new TokenBucket(rate, rate * 2)
    this.batchBudget = rate === 0 ? undefined : new TokenBucket(rate, rate * 2)
  }

  /** Start the periodic re-announcement. */
  start (): void {
    if (this.options.intervalMs === 0 || this.timer !== undefined) return
    const slice = Math.min(SLICE_MS, this.options.intervalMs)
    this.timer = setInterval(() => this.tick(slice), slice)
    this.timer.unref?.()
  }

  /** Stop it, and the batches (pending changes are dropped: the server is closing). */
  stop (): void {
    this.stopped = true
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    this.stopBatches()
    this.window.take()
    this.sender.stop()
  }

  /**
   * Whether `session` gets peer events instead of periodic `ws-peer` (set at every hello), and
   * whether batched (`starsock:peer-batch`) or one event per change.
   */
  setPeerEvents (session: Session, on: boolean, batch = false): void {
    const wasBatch = this.batchSessions.has(session)
    // Batches again (a second hello): it stays where it is in the flush on its way, and in the window.
    if (wasBatch && on && batch) return
    // Taken before `drop`, which forgets it in the flush on its way.
    const unsent = wasBatch ? this.sender.takeUnsent(session) : []
    this.drop(session)
    if (on && batch) this.batchSessions.add(session)
    else if (on) this.eventSessions.add(session)
    // A joined client that leaves batches for single events would miss what is pending: told now, one event each.
    if (wasBatch && on && !batch && session.addrs.size > 0) this.tellPending(session, [...unsent, ...this.window.peek()])
  }

  /** Pending batch `entries` not about `session`'s own addresses, as single events, in order. */
  private tellPending (session: Session, entries: PeerBatchEntry[]): void {
    for (const entry of entries) {
      if (session.addrs.has(entry[1])) continue
      if (entry[0] === 'leave') session.endpoint.emit(EVENTS.PEER_LEAVE, entry[1])
      else if (entry[0] === 'profile') session.endpoint.emit(EVENTS.PEER_PROFILE, entry[1], entry[2])
      else session.endpoint.emit(EVENTS.PEER_JOIN, ...entry.slice(1))
    }
  }

  /** Forget `session` (it disconnected). */
  drop (session: Session): void {
    this.eventSessions.delete(session)
    this.batchSessions.delete(session)
    this.sender.drop(session)
  }

  /** Whether a flushed batch is still on its way to some clients (a large one takes several turns). */
  get batchOnItsWay (): boolean {
    return this.sender.busy
  }

  /** Joins and profile changes dropped from batches at the cap since start. */
  get batchDropped (): number {
    return this.window.dropped
  }

  /**
   * Announce a new address to every other joined session: peer-event sessions get it (with its
   * `profile`) at once or in the next batch; legacy sessions get `ws-peer` only within the budget
   * (their `ws-peer` never changes). `joiner` is `undefined` for a peer on another node.
   */
  joined (addr: string, joiner: Session | undefined, profile?: PeerProfile): void {
    if (this.stopped) return
    for (const session of this.eventSessions) {
      if (session === joiner || session.addrs.size === 0) continue
      if (profile === undefined) session.endpoint.emit(EVENTS.PEER_JOIN, addr)
      else session.endpoint.emit(EVENTS.PEER_JOIN, addr, profile)
    }
    if (this.batchSessions.size > 0) this.batched(() => this.window.join(addr, profile))
    if (this.budget?.take() !== true) {
      this.held++
      this.counts.held?.('budget')
      return
    }
    let sent = 0
    const encoded = this.encodeEach ? undefined : this.sender.encoder?.(EVENTS.PEER, [addr])
    for (const session of this.sessions.values()) {
      // A stand-in for a peer on another node (`node` set) hears of joins on its own node.
      if (session === joiner || session.addrs.size === 0 || session.node !== undefined || this.hasPeerEvents(session)) continue
      this.send(session, encoded, addr)
      sent++
    }
    this.count(sent)
  }

  /** Tell sessions that asked for peer events that an address left. */
  left (addr: string): void {
    if (this.stopped) return
    for (const session of this.eventSessions) {
      if (session.addrs.size > 0) session.endpoint.emit(EVENTS.PEER_LEAVE, addr)
    }
    if (this.batchSessions.size > 0) this.batched(() => this.window.leave(addr))
  }

  /** Tell sessions that asked for peer events that the peer at each of `addrs` (all of `changer`'s) has a new profile. */
  profileChanged (addrs: Iterable<string>, changer: Session | undefined, profile: PeerProfile): void {
    if (this.stopped) return
    const changed = [...addrs]
    for (const session of this.eventSessions) {
      if (session === changer || session.addrs.size === 0) continue
      for (const addr of changed) session.endpoint.emit(EVENTS.PEER_PROFILE, addr, profile)
    }
    if (this.batchSessions.size > 0) this.batched(() => { for (const addr of changed) this.window.profile(addr, profile) })
  }

  /**
   * Send the pending batch now (the shared timer does it every `PEER_BATCH_INTERVAL_MS`); with
   * none, stop the timer. While the previous batch is still on its way (`PeerBatchSender`: a large
   * one takes several turns) the window waits, and the timer runs until it is sent.
   */
  flush (): void {
    if (this.stopped) return
    if (this.sender.busy) {
      this.startBatchTimer()
      return
    }
    if (this.window.size === 0) {
      this.stopBatches()
      return
    }
    if (this.encodeEach) this.flushEach(this.window.take())
    else this.sender.send(this.window.take(), this.batchSessions)
  }

  /** The reference: `entries` to every batch client at once, each copy encoded by its own emit. */
  private flushEach (entries: PeerBatchEntry[]): void {
    const shared = parts(entries)
    const touched = new Set(entries.map((entry) => entry[1]))
    for (const session of this.batchSessions) {
      if (session.addrs.size === 0) continue
      let own = false
      for (const addr of session.addrs) own ||= touched.has(addr)
      for (const part of own ? parts(entries.filter((entry) => !session.addrs.has(entry[1]))) : shared) {
        session.endpoint.emit(EVENTS.PEER_BATCH, part)
        this.batches++
      }
    }
  }

  private hasPeerEvents (session: Session): boolean {
    return this.eventSessions.has(session) || this.batchSessions.has(session)
  }

  /**
   * Apply a change to the window (counting drops at the cap), then send it at once while within
   * the budget and no batch is due (a quiet server tells a change as fast as single events did),
   * else make sure the shared timer runs: it sends the window every `PEER_BATCH_INTERVAL_MS` until
   * a tick finds it empty. A client thus gets at most the budget plus 4 batches a second.
   */
  private batched (change: () => void): void {
    const before = this.window.dropped
    change()
    for (let n = before; n < this.window.dropped; n++) this.counts.held?.('batch-cap')
    if (this.batchTimer !== undefined) return
    if (this.batchBudget?.take() === true) {
      this.flush()
      return
    }
    this.startBatchTimer()
  }

  private startBatchTimer (): void {
    if (this.batchTimer !== undefined) return
    this.batchTimer = setInterval(() => this.flush(), PEER_BATCH_INTERVAL_MS)
    this.batchTimer.unref?.()
  }

  private stopBatches (): void {
    if (this.batchTimer !== undefined) clearInterval(this.batchTimer)
    this.batchTimer = undefined
  }

  /** Up to `batchPeers` joined addresses not held by `session`, from a random place in the list. */
  sample (session: Session): string[] {
    const size = this.directory.size
    return this.take(session, Math.floor(Math.random() * Math.max(size, 1)), Math.min(size, this.options.batchPeers))
  }

  private take (session: Session, start: number, want: number): string[] {
    const size = this.directory.size
    const addrs: string[] = []
    for (let i = 0; i < size && addrs.length < want; i++) {
      const addr = this.directory.at((start + i) % size)
      if (addr !== undefined && !session.addrs.has(addr)) addrs.push(addr)
    }
    return addrs
  }

  private tick (sliceMs: number): void {
    // Sessions due in this slice; the fraction carries over so an interval visits each one once.
    this.due += this.sessions.size * sliceMs / this.options.intervalMs
    const count = Math.floor(this.due)
    this.due -= count
    for (let n = 0; n < count; n++) {
      let step = this.cursor?.next()
      if (step === undefined || step.done === true) {
        if (step !== undefined) this.nextPass()
        this.cursor = this.sessions.values()
        step = this.cursor.next()
        if (step.done === true) return
      }
      this.announceTo(step.value)
    }
  }

  /** A new pass over the sessions: every window moves on by `batchPeers`. */
  private nextPass (): void {
    const size = this.directory.size
    this.passStart = size === 0 ? 0 : (this.passStart + this.options.batchPeers) % size
    this.passSize = undefined
    this.previous = new Map()
    for (const window of this.windows) if (window !== undefined) this.previous.set(window.start, window)
    this.windows = []
  }

  /**
   * This pass's window of `group`: the last pass's window starting there when its addresses are
   * still those, else made (and encoded). Addresses that leave later in the pass are skipped at
   * each send; joins wait for the next pass.
   */
  private windowOf (group: number): Window {
    const made = this.windows[group]
    if (made !== undefined) return made
    this.passSize ??= this.directory.size
    const size = this.directory.size
    const start = this.passSize === 0 ? 0 : (this.passStart + group * this.options.batchPeers) % this.passSize
    const want = Math.min(size, this.options.batchPeers)
    const at = (i: number): string | undefined => this.directory.at((start + i) % size)
    let window = this.previous.get(start)
    if (window === undefined || window.addrs.length !== want || !window.addrs.every((addr, i) => addr === at(i))) {
      const addrs: string[] = []
      for (let i = 0; i < want; i++) {
        const addr = at(i)
        if (addr !== undefined) addrs.push(addr)
      }
      window = { start, addrs, encoded: this.encodeEach ? undefined : this.encodeAll(addrs) }
    }
    this.windows[group] = window
    return window
  }

  /** `ws-peer` of each of `addrs` encoded once; `undefined` without an encoder, or when one could not be. */
  private encodeAll (addrs: string[]): EncodedEvent[] | undefined {
    const encoder = this.sender.encoder
    if (encoder === undefined) return undefined
    const out: EncodedEvent[] = []
    for (const addr of addrs) {
      const encoded = encoder(EVENTS.PEER, [addr])
      if (encoded === undefined) return undefined
      out.push(encoded)
    }
    return out
  }

  private announceTo (session: Session): void {
    if (this.hasPeerEvents(session) || session.addrs.size === 0 || session.node !== undefined) return
    let group = this.groups.get(session)
    if (group === undefined) {
      group = this.nextGroup
      this.nextGroup = (this.nextGroup + 1) % ROTATION_GROUPS
      this.groups.set(session, group)
    }
    const { addrs, encoded } = this.windowOf(group)
    let sent = 0
    let from = 0
    for (let i = 0; i <= addrs.length; i++) {
      const addr = addrs[i]
      // Not its own; not an address that left since the window was made.
      if (addr !== undefined && !session.addrs.has(addr) && this.directory.has(addr)) continue
      // The run before `i`, in one write where the endpoint can.
      if (i > from) {
        if (encoded !== undefined && session.endpoint.sendEncodedRun !== undefined) session.endpoint.sendEncodedRun(encoded, from, i)
        else for (let j = from; j < i; j++) this.send(session, encoded?.[j], addrs[j] as string)
        sent += i - from
      }
      from = i + 1
    }
    this.count(sent)
  }

  /** `ws-peer` of `addr` to `session`, as `encoded` when it could be encoded once. */
  private send (session: Session, encoded: EncodedEvent | undefined, addr: string): void {
    if (encoded !== undefined && session.endpoint.sendEncoded !== undefined) session.endpoint.sendEncoded(encoded)
    else session.endpoint.emit(EVENTS.PEER, addr)
  }

  private count (n: number): void {
    if (n === 0) return
    this.sent += n
    this.counts.sent?.(n)
  }
}
