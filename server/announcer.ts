/**
 * Discovery: `ws-peer` announcements that grow linearly with the peers, not with their square.
 *
 * A new address is announced to every joined client at once (as the original). The original
 * then re-announced every peer to every other every 10 s, N(N-1) messages; here each client gets
 * at most `batchPeers` addresses per interval, taken from a cursor that rotates through the peer
 * list so every peer is covered over time. The work of one interval is spread over short slices
 * so a large server never stalls its event loop on one tick. Clients that asked for peer events
 * (`starsock:hello` with `peerEvents`) get `starsock:peer-join`/`-leave` and no periodic flood.
 */
import { EVENTS } from '../shared/events.ts'
import type { PeerProfile } from '../shared/profile.ts'
import type { PeerDirectory } from './peer-directory.ts'
import type { Session } from './session.ts'

const SLICE_MS = 50

/** Announcement settings, resolved. */
export interface AnnouncerOptions {
  /** Interval of the periodic re-announcement; 0 turns it off. */
  intervalMs: number
  /** Addresses per client per interval, and the most a join reply lists. */
  batchPeers: number
}

/** Sends `ws-peer` and peer events to joined sessions. */
export class Announcer {
  private timer: ReturnType<typeof setInterval> | undefined
  private cursor: Iterator<Session> | undefined
  private due = 0
  /** Sessions that asked for peer events (weak: a session that went away needs no forgetting). */
  private readonly peerEventSessions = new WeakSet<Session>()
  /** Position of each session's periodic announcement in the peer list. */
  private readonly cursors = new WeakMap<Session, number>()
  /** `ws-peer` messages sent since start. */
  sent = 0

  constructor (
    private readonly directory: PeerDirectory,
    private readonly sessions: Map<string, Session>,
    private readonly options: AnnouncerOptions,
    /** Called with the number of `ws-peer` messages just sent. */
    private readonly onSent: (count: number) => void = () => {}
  ) {}

  /** Start the periodic re-announcement. */
  start (): void {
    if (this.options.intervalMs === 0 || this.timer !== undefined) return
    const slice = Math.min(SLICE_MS, this.options.intervalMs)
    this.timer = setInterval(() => this.tick(slice), slice)
    this.timer.unref?.()
  }

  /** Stop it. */
  stop (): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  /** Whether `session` gets `starsock:peer-join`/`-leave` instead of periodic `ws-peer` (set at hello). */
  setPeerEvents (session: Session, on: boolean): void {
    if (on) this.peerEventSessions.add(session)
    else this.peerEventSessions.delete(session)
  }

  /**
   * Announce a new address to every other joined session; those that asked for peer events get
   * its `profile` as a second argument (legacy clients' `ws-peer` never changes). `joiner` is
   * `undefined` for a peer on another node.
   */
  joined (addr: string, joiner: Session | undefined, profile?: PeerProfile): void {
    for (const session of this.sessions.values()) {
      if (session === joiner || session.addrs.size === 0) continue
      if (this.peerEventSessions.has(session)) {
        if (profile === undefined) session.endpoint.emit(EVENTS.PEER_JOIN, addr)
        else session.endpoint.emit(EVENTS.PEER_JOIN, addr, profile)
      } else {
        session.endpoint.emit(EVENTS.PEER, addr)
        this.count(1)
      }
    }
  }

  /** Tell sessions that asked for peer events that an address left. */
  left (addr: string): void {
    for (const session of this.sessions.values()) {
      if (this.peerEventSessions.has(session) && session.addrs.size > 0) session.endpoint.emit(EVENTS.PEER_LEAVE, addr)
    }
  }

  /** Tell sessions that asked for peer events that the peer at each of `addrs` (all of `changer`'s) has a new profile. */
  profileChanged (addrs: Iterable<string>, changer: Session | undefined, profile: PeerProfile): void {
    const changed = [...addrs]
    for (const session of this.sessions.values()) {
      if (session === changer || session.addrs.size === 0 || !this.peerEventSessions.has(session)) continue
      for (const addr of changed) session.endpoint.emit(EVENTS.PEER_PROFILE, addr, profile)
    }
  }

  /** Up to `batchPeers` joined addresses not held by `session`, from a random place in the list. */
  sample (session: Session): string[] {
    const size = this.directory.size
    return this.take(session, Math.floor(Math.random() * Math.max(size, 1)), Math.min(size, this.options.batchPeers)).addrs
  }

  private take (session: Session, start: number, want: number): { addrs: string[], next: number } {
    const size = this.directory.size
    const addrs: string[] = []
    let i = 0
    for (; i < size && addrs.length < want; i++) {
      const addr = this.directory.at((start + i) % size)
      if (addr !== undefined && !session.addrs.has(addr)) addrs.push(addr)
    }
    return { addrs, next: size === 0 ? 0 : (start + i) % size }
  }

  private tick (sliceMs: number): void {
    // Sessions due in this slice; the fraction carries over so an interval visits each one once.
    this.due += this.sessions.size * sliceMs / this.options.intervalMs
    const count = Math.floor(this.due)
    this.due -= count
    for (let n = 0; n < count; n++) {
      let step = this.cursor?.next()
      if (step === undefined || step.done === true) {
        this.cursor = this.sessions.values()
        step = this.cursor.next()
        if (step.done === true) return
      }
      this.announceTo(step.value)
    }
  }

  private announceTo (session: Session): void {
    if (this.peerEventSessions.has(session) || session.addrs.size === 0) return
    const size = this.directory.size
    const cursor = this.cursors.get(session) ?? 0
    const { addrs, next } = this.take(session, cursor % Math.max(size, 1), Math.min(size, this.options.batchPeers))
    this.cursors.set(session, next)
    for (const addr of addrs) session.endpoint.emit(EVENTS.PEER, addr)
    this.count(addrs.length)
  }

  private count (n: number): void {
    if (n === 0) return
    this.sent += n
    this.onSent(n)
  }
}
