/**
 * A stand-in: the session that stands for a peer on another node in one cross-node dial. On the
 * dialer's node it stands for the listener, on the listener's node for the dialer; each node's
 * relay runs its ordinary stream with it, and the stand-in turns what the relay emits to it into
 * link messages (and the trunk turns link messages into relay calls with it as the session).
 *
 * Per-stream credit between the nodes: the stand-in receiving a stream tells the relay its
 * transport is full once `window` bytes it sent are not yet acknowledged (the other node
 * acknowledges bytes as they leave its queue toward the real receiver), or `STREAM_WINDOW_CHUNKS`
 * chunks (tiny chunks cost memory of their own there: the other node cannot pause a stand-in, so
 * its relay would fail the stream at `RELAY_MAX_STREAM_CHUNKS`), or once the link's socket is far
 * behind; so one slow stream never holds the link, nor memory on either node past its caps.
 */
import { DIALER_SUFFIX, parseStreamEvent } from '../../shared/events.ts'
import { StarsockError, wireError } from '../../shared/errors.ts'
import { RELAY_PAUSE_CHUNKS, SOCKET_WRITE_HIGH_WATER_BYTES } from '../constants.ts'
import { TokenBucket } from '../rate-limit.ts'
import { Session, type Endpoint } from '../session.ts'
import { type EventMessage, type LinkMessage, type StreamSide } from './link-codec.ts'

/** What a stand-in uses of its link (`links.ts` `Link`). */
export interface StandInLink {
  readonly open: boolean
  congested: () => boolean
  send: (message: LinkMessage) => void
  /** Send a chunk of stream `s` of dial `k` (`Link.sendData`). */
  sendData: (k: number, s: StreamSide, chunk: Uint8Array) => void
  /** The stand-ins of the dials it carries, by dial key. */
  readonly dials: Map<number, StandIn>
}

let standIns = 0

/**
 * Chunks of one stream the other node may hold unacknowledged: half of what makes its relay pause
 * a sender that can be paused, so the stream never nears the chunk cap there.
 */
export const STREAM_WINDOW_CHUNKS = RELAY_PAUSE_CHUNKS / 2

/** Stream events a stand-in keeps while its dial waits for the link (an accept, a few credits, an abort; a client that sends more loses them). */
const MAX_EARLY_EVENTS = 16

/** What a stand-in needs of the trunk. */
export interface StandInHost {
  /** Send the dial to the other node; settles with the listener's ack arguments (see `Endpoint.request`). */
  dial: (standIn: StandIn, args: unknown[], timeoutMs: number) => Promise<unknown[]>
  /** Both streams closed: forget it. */
  forget: (standIn: StandIn) => void
  /** Stream bytes sent on a link (for the metric). */
  sent: (bytes: number) => void
}

/** One stand-in session and its endpoint. */
export class StandIn implements Endpoint {
  readonly session: Session
  /** The link it is on and its dial key there, once the dial went (or arrived). */
  link: StandInLink | undefined
  key = -1
  /** Bytes the other node may hold of the stream this stand-in receives, not yet acknowledged. */
  window = 0
  private unacked = 0
  /** The sizes of the chunks in `unacked`, oldest first from `inFlightHead` (the other node acknowledges them in order). */
  private inFlight: number[] = []
  private inFlightHead = 0
  private acks: [number, number] = [0, 0]
  private ackScheduled = false
  private closedStreams = 0
  /** Which of its streams failed (the relay's `error` for it is a failure, not an end). */
  private readonly failed: [boolean, boolean] = [false, false]
  /** The stream whose bytes come from the other node: the listener's on the dialer's node (1), the dialer's on the listener's (0). */
  sendSide: StreamSide = 1
  /** The other node knows the stream it sends is over: it ended it, or the relay here aborted or failed it. */
  private told = false
  /** The dial id (both streams are `<dialId>.dialer` and `<dialId>.listener`), known once the dial goes or arrives. */
  dialId = ''
  /** Forgotten by the trunk: no stream, no link entry. */
  forgotten = false
  /** Stream events the relay emitted before the dial went (the dialer's node was still opening the link): sent right behind the dial. */
  private early: Array<Omit<EventMessage, 'k'>> = []
  /** The dial waiting for the other node's answer (dialer's side). */
  pending: { resolve: (reply: unknown[]) => void, reject: (err: StarsockError) => void } | undefined

  constructor (
    /** The node the peer is on. */
    readonly node: string,
    /** The address of the peer it stands for. */
    readonly addr: string,
    ip: string,
    private readonly host: StandInHost
  ) {
    // The session takes the other peer's address: a stand-in for a dialer dials from it.
    // One dial per stand-in: its node already rate-limited the dialer.
    this.session = new Session(`node:${node}:${++standIns}`, ip, this, new TokenBucket(1, 1))
    this.session.node = node
    this.session.addrs.add(addr)
    // The dialer's node passes the dialer's kind and intent on with the dial.
    this.session.dialHints = true
  }

  /** The stream id of `side`. */
  streamId (side: StreamSide): string {
    return side === 0 ? this.dialId + DIALER_SUFFIX : this.dialId + '.listener'
  }

  private sideOf (streamId: string): StreamSide | undefined {
    return streamId === this.streamId(0) ? 0 : streamId === this.streamId(1) ? 1 : undefined
  }

  /** What the relay emits to the peer this stands for: chunks as data messages, other stream events as `ev`. */
  emit (event: string, ...args: unknown[]): void {
    const parsed = parseStreamEvent(event)
    if (parsed === undefined) return
    const s = this.sideOf(parsed.streamId)
    if (s === undefined) return
    const link = this.link
    if (parsed.type === 'queue') {
      const chunk = args[0]
      // No bytes go before the dial: a stream is sendable only once the other node accepted it.
      if (!(chunk instanceof Uint8Array) || link === undefined) return
      this.unacked += chunk.byteLength
      this.inFlight.push(chunk.byteLength)
      this.host.sent(chunk.byteLength)
      link.sendData(this.key, s, chunk)
      return
    }
    const a = args[0]
    const arg = typeof a === 'number' || typeof a === 'string' || typeof a === 'boolean' ? a : null
    // The `error` of a failed stream fails it on the other node too (queued bytes dropped, at once),
    // where an error end waits behind the stream's bytes.
    if (parsed.type === 'abort' && s === this.sendSide) this.told = true
    if (parsed.type === 'error' && this.failed[s]) this.sendEvent({ t: 'ev', s, e: 'error', a: arg, f: true })
    else this.sendEvent({ t: 'ev', s, e: parsed.type, a: arg })
  }

  /** Send a stream event on the link, or keep it for `dialSent` while the dial has not gone yet (at most `MAX_EARLY_EVENTS`). */
  private sendEvent (m: Omit<EventMessage, 'k'>): void {
    if (this.link !== undefined) this.link.send({ ...m, k: this.key })
    else if (!this.forgotten && this.early.length < MAX_EARLY_EVENTS) this.early.push(m)
  }

  /** The dial went on the link: the events kept meanwhile follow it. */
  dialSent (): void {
    for (const m of this.early.splice(0)) this.link?.send({ ...m, k: this.key })
  }

  /** `ss-incomming` to the peer this stands for: the dial goes to its node (`Trunk.dial`). */
  async request (_event: string, args: unknown[], timeoutMs: number): Promise<unknown[]> {
    return await this.host.dial(this, args, timeoutMs)
  }

  /**
   * 0 while the stream's window between the nodes has room and the link keeps up; at least the
   * relay's high-water mark once not (the relay pumps only below it).
   */
  pendingWriteBytes (): number {
    const full = this.unacked >= this.window || this.inFlight.length - this.inFlightHead >= STREAM_WINDOW_CHUNKS || this.link === undefined || !this.link.open || this.link.congested()
    return full ? Math.max(this.unacked, SOCKET_WRITE_HIGH_WATER_BYTES) : 0
  }

  /** A stand-in cannot stop the other node; the window bounds what it sends instead. */
  pauseReading (): boolean {
    return false
  }

  /** Nothing to resume (see `pauseReading`). */
  resumeReading (): void {}

  /** The other node acknowledged `n` bytes of the stream this stand-in receives. */
  acked (n: number): void {
    this.unacked = Math.max(0, this.unacked - n)
    // Whole chunks leave the other node's queue in the order they were sent.
    let left = n
    while (left > 0 && this.inFlightHead < this.inFlight.length) {
      const size = this.inFlight[this.inFlightHead] as number
      if (size > left) {
        this.inFlight[this.inFlightHead] = size - left
        break
      }
      left -= size
      this.inFlightHead++
    }
    if (this.inFlightHead > 1024 && this.inFlightHead * 2 > this.inFlight.length) {
      this.inFlight = this.inFlight.slice(this.inFlightHead)
      this.inFlightHead = 0
    }
  }

  /** Bytes of a stream this stand-in sends left the queue toward the receiver: acknowledge them (once a turn). */
  dequeued (streamId: string, bytes: number): void {
    const s = this.sideOf(streamId)
    if (s === undefined) return
    this.acks[s] += bytes
    if (this.ackScheduled) return
    this.ackScheduled = true
    setImmediate(() => this.sendAcks())
  }

  private sendAcks (): void {
    this.ackScheduled = false
    for (const s of [0, 1] as const) {
      const n = this.acks[s]
      if (n === 0) continue
      this.acks[s] = 0
      this.link?.send({ t: 'ack', k: this.key, s, n })
    }
  }

  /** One of its two streams closed (`failed`: by `Relay.fail`); the trunk forgets it after the second. */
  streamClosed (streamId: string, failed: boolean): void {
    const s = this.sideOf(streamId)
    if (s !== undefined && failed) this.failed[s] = true
    // A receiver that went away (`Relay.dropSession`) closes its streams without a word to their
    // sender: the other node must hear it, or its stream (and its sender's stream count) stays.
    if (s === this.sendSide) queueMicrotask(() => this.tellClosed())
    // Deferred: the relay is still emitting the close's events to this stand-in.
    if (++this.closedStreams === 2) queueMicrotask(() => this.host.forget(this))
  }

  /** The other node ended the stream it sends (its end is on its way to the receiver). */
  farEnded (): void {
    this.told = true
  }

  private tellClosed (): void {
    if (this.told) return
    this.told = true
    this.sendEvent({ t: 'ev', s: this.sendSide, e: 'abort', a: wireError('E_PEER_GONE', 'Peer disconnected') })
  }

  /** The link went: a waiting dial fails (its streams fail through the relay). */
  linkLost (err: StarsockError): void {
    const p = this.pending
    this.pending = undefined
    p?.reject(err)
  }
}
