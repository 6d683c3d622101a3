/**
 * The stream relay: one-way streams between two sessions with the socket.io-pull-stream framing,
 * bounded in memory.
 *
 * Data flows only after the receiver said `accept`, which the relay passes on to the sender (the
 * legacy sink waits for it), so a well-behaved sender never sends before the receiver is ready.
 * Chunks are forwarded only while the receiver's transport has less than `writeHighWaterBytes`
 * unflushed; the rest waits in the stream's queue. When a stream's queue, or the sum of a sender's
 * queues, passes half its cap, the relay stops reading from the sender (TCP backpressure: legacy
 * clients have no flow control); a queue that still reaches its cap fails with `E_LIMIT_BUFFER`.
 * Chunks come as `queue` events or as raw frames (`frame`, between peers that negotiated them) and
 * go out each way the receiver reads (`deliver`): the same queues and limits hold for both.
 */
import { errorFromWire, wireError, type ErrorCode } from '../shared/errors.ts'
import { DIALER_SUFFIX, streamEvent } from '../shared/events.ts'
import { silentLogger, type Logger } from '../shared/logger.ts'
import { FRAME_HEADER_BYTES, FRAME_KIND_DATA, frameBytes, frameKind, frameLane, isLane } from '../shared/raw-frame.ts'
import { isCredit, type IpShare, type RelayLimits, type RelayObserver, type RelayPartyState } from './relay-limits.ts'
import { RELAY_MAX_STREAM_CHUNKS, RELAY_PAUSE_CHUNKS } from './constants.ts'
import { SITE_FACTOR } from './rate-limit.ts'
import { shortDialId } from './peer-log.ts'
import { deliver, payloadBytes, RelayParty, RelayStream, type QueuedChunk } from './relay-stream.ts'

export type { RelayLimits, RelayObserver, RelayPartyState }
import type { Session } from './session.ts'

/** Relayed streams between sessions. */
export class Relay {
  private open = 0
  private buffered = 0
  private readonly timer: ReturnType<typeof setInterval>
  private readonly streams = new Set<RelayStream>()
  /** The relay's state of each session with a stream, until the session is dropped. */
  private readonly parties = new Map<Session, RelayParty>()
  private readonly pausedSenders = new Set<RelayParty>()
  /** What the senders of each client IP hold (`IpShare`), while they hold anything. */
  private readonly ipShares = new Map<string, IpShare>()

  constructor (
    private readonly limits: RelayLimits,
    private readonly observer: RelayObserver = {},
    private readonly logger: Logger = silentLogger,
    private readonly now: () => number = Date.now
  ) {
    const shortest = Math.min(limits.senderStallTimeoutMs, limits.streamIdleTimeoutMs || Infinity)
    this.timer = setInterval(() => this.sweep(), Math.max(50, Math.min(1000, Math.floor(shortest / 4))))
    this.timer.unref?.()
  }

  /** Stream bytes forwarded to receivers since the start. */
  relayedBytes = 0
  /** Raw frames taken from senders, and sent to receivers as frames, since the start. */
  readonly frames = { in: 0, out: 0 }

  /** Streams open now. */
  get openStreams (): number {
    return this.open
  }

  /** Bytes held in stream queues on the server now. */
  get bufferedBytes (): number {
    return this.buffered
  }

  /** Streams `session` takes part in, both ways. */
  streamCount (session: Session): number {
    return this.parties.get(session)?.streamCount ?? 0
  }

  /** Dials open to `session` (as their listener) from clients whose IP `sameIp` accepts (its own dials out are not counted). */
  dialsFromIp (session: Session, sameIp: (ip: string) => boolean): number {
    const party = this.parties.get(session)
    if (party === undefined) return 0
    let n = 0
    for (const s of party.inbound.values()) if (s.id.endsWith(DIALER_SUFFIX) && sameIp(s.sender.ip)) n++
    return n
  }

  /** Whether a dial between `dialer` and `listener` would reuse a stream id either one has. */
  pairInUse (dialer: Session, listener: Session, dialerStreamId: string, listenerStreamId: string): boolean {
    const d = this.parties.get(dialer)
    const l = this.parties.get(listener)
    return d?.outbound.has(dialerStreamId) === true || d?.inbound.has(listenerStreamId) === true ||
      l?.inbound.has(dialerStreamId) === true || l?.outbound.has(listenerStreamId) === true
  }

  /** A snapshot of what the relay holds for `session` (empty for a session without streams). */
  stateOf (session: Session): RelayPartyState {
    const p = this.parties.get(session) ?? new RelayParty(session.endpoint, () => session.rawFrames)
    return {
      outbound: new Set(p.outbound.keys()),
      inbound: new Set(p.inbound.keys()),
      streamCount: p.streamCount,
      queuedBytes: p.queuedBytes,
      paused: p.paused
    }
  }

  /** Open the two streams of a dial, `<dialId>.dialer` (dialer to listener) and `<dialId>.listener`. */
  openPair (dialer: Session, listener: Session, dialerStreamId: string, listenerStreamId: string): [RelayStream, RelayStream] {
    const forward = this.openStream(dialer, listener, dialerStreamId)
    const backward = this.openStream(listener, dialer, listenerStreamId)
    forward.sibling = backward
    backward.sibling = forward
    return [forward, backward]
  }

  private party (session: Session): RelayParty {
    let party = this.parties.get(session)
    if (party === undefined) {
      // A stand-in for a peer on another node has no client address here (its node's, at most).
      party = new RelayParty(session.endpoint, () => session.rawFrames, session.node === undefined ? session.ip : '')
      this.parties.set(session, party)
    }
    return party
  }

  private openStream (senderSession: Session, receiverSession: Session, id: string): RelayStream {
    const sender = this.party(senderSession)
    const receiver = this.party(receiverSession)
    const stream = new RelayStream(id, sender, receiver, this.now())
    sender.outbound.set(id, stream)
    receiver.inbound.set(id, stream)
    this.streams.add(stream)
    this.open++
    this.observer.streamsChanged?.(this.open)
    return stream
  }

  /**
   * The receiver emitted `accept` for `streamId`: tell the sender it may send, passing on the
   * receiver's window when it gave one (a starsock receiver; legacy sinks ignore the argument).
   * A receiver that negotiated raw frames gives its lane after the window; a sender that did gets
   * its own after the window (`null` from a legacy receiver).
   */
  accept (receiver: Session, streamId: string, window?: unknown, lane?: unknown): boolean {
    const stream = this.parties.get(receiver)?.inbound.get(streamId)
    if (stream === undefined || stream.accepted) return false
    stream.accepted = true
    stream.lastActiveMs = this.now()
    if (stream.receiver.raw && isLane(lane)) stream.receiverLane = lane
    const senderLane = stream.sender.raw ? stream.sender.laneFor(stream) : undefined
    stream.senderLane = senderLane
    const event = streamEvent('accept', streamId)
    if (senderLane !== undefined) stream.sender.endpoint.emit(event, isCredit(window) ? window : null, senderLane)
    else if (isCredit(window)) stream.sender.endpoint.emit(event, window)
    else stream.sender.endpoint.emit(event)
    this.markReady(stream)
    const onAccept = stream.onAccept
    stream.onAccept = undefined
    onAccept?.()
    return true
  }

  /**
   * The receiver granted `bytes` more credit on `streamId`: pass it on to the sender. Credit for a
   * stream that is gone is dropped, and `'gone'` says so (not a bad request: a receiver that read
   * the last chunk grants credit while the end the relay already sent is still on its way to it).
   * A receiver gives back what it read, as it reads each chunk, so credit past the bytes, or past
   * one credit per chunk, delivered to it is refused: a socket cannot make the server pass a flood
   * of credit on to a sender.
   */
  credit (receiver: Session, streamId: string, bytes: unknown): boolean | 'gone' {
    const party = this.parties.get(receiver)
    const stream = party?.inbound.get(streamId)
    if (!isCredit(bytes) || party?.outbound.has(streamId) === true) return false
    if (stream === undefined) return 'gone'
    if (!stream.accepted) return false
    // At most one credit per chunk delivered, and bytes: a receiver grants as it reads a chunk.
    if (stream.creditedBytes + bytes > stream.totalBytes - stream.queuedBytes || stream.credits >= stream.totalChunks - stream.queue.length) return false
    stream.creditedBytes += bytes
    stream.credits++
    stream.lastActiveMs = this.now()
    stream.sender.endpoint.emit(streamEvent('credit', streamId), bytes)
    return true
  }

  /**
   * The receiver gave up on `streamId`: drop what waits for it and tell the sender (a starsock
   * sender fails its writes; a legacy one has no such event and its later chunks are ignored).
   */
  abort (receiver: Session, streamId: string, reason: unknown): boolean {
    const stream = this.parties.get(receiver)?.inbound.get(streamId)
    if (stream === undefined) return false
    this.close(stream, 'aborted')
    stream.sender.endpoint.emit(streamEvent('abort', streamId), typeof reason === 'string' ? reason.slice(0, 256) : 'Stream aborted')
    return true
  }

  /**
   * The sender emitted a chunk on `streamId`; `false` when there is no such stream or the chunk is
   * not bytes, `'empty'` for an empty chunk (taken, it carries nothing: counted as a stray, or a
   * socket could send them without end at no cost).
   */
  data (session: Session, streamId: string, chunk: unknown): boolean | 'empty' {
    const stream = this.parties.get(session)?.outbound.get(streamId)
    if (stream === undefined || stream.ending !== undefined) return false
    if (!(chunk instanceof Uint8Array)) {
      this.fail(stream, 'E_BAD_REQUEST', 'stream chunks must be binary')
      return false
    }
    if (chunk.byteLength === 0) return 'empty'
    return this.enqueue(stream, { bytes: chunk, raw: false }, chunk.byteLength)
  }

  /**
   * The sender sent a raw frame: its chunk joins the stream of its lane, like `data`. Returns
   * what was wrong with a frame it dropped (for the bad-request count), `undefined` when taken:
   * `frame-unasked` from a client that did not negotiate frames, `frame-short` under a header,
   * `frame-kind` of an unknown kind, `frame-lane` on a lane that closed, `frame-lane-unknown` on
   * one the client was never given, `frame-empty` with no payload (it carries nothing). A dropped
   * frame fails nothing: only the stream's own limits do.
   */
  frame (session: Session, data: unknown): 'frame-unasked' | 'frame-short' | 'frame-kind' | 'frame-lane' | 'frame-lane-unknown' | 'frame-empty' | undefined {
    const frame = frameBytes(data)
    if (!session.rawFrames || frame === undefined) return 'frame-unasked'
    const kind = frameKind(frame)
    if (kind === undefined) return 'frame-short'
    if (kind !== FRAME_KIND_DATA) return 'frame-kind'
    const party = this.parties.get(session)
    const lane = frameLane(frame)
    const stream = party?.lanes.get(lane)
    if (stream === undefined || stream.ending !== undefined) return party?.gaveLane(lane) === true ? 'frame-lane' : 'frame-lane-unknown'
    if (frame.byteLength === FRAME_HEADER_BYTES) return 'frame-empty'
    this.frames.in++
    this.enqueue(stream, { bytes: frame, raw: true }, frame.byteLength - FRAME_HEADER_BYTES)
    return undefined
  }

  /** Queue `chunk` (`n` payload bytes) on `stream`, within its budget and caps; `false` when that failed the stream. */
  private enqueue (stream: RelayStream, chunk: QueuedChunk, n: number): boolean {
    const sender = stream.sender
    stream.lastActiveMs = this.now()
    stream.totalBytes += n
    if (this.limits.streamByteBudget > 0 && stream.totalBytes > this.limits.streamByteBudget) {
      this.fail(stream, 'E_LIMIT_BYTES', `Stream byte budget exceeded (streamByteBudget=${this.limits.streamByteBudget})`)
      return false
    }
    if (n === 0) return true
    if (stream.queue.length === 0) stream.quietSinceMs = this.now()
    stream.totalChunks++
    stream.queue.push(chunk)
    sender.queuedChunks++
    stream.queuedBytes += n
    sender.queuedBytes += n
    this.buffered += n
    // Counted before any cap can fail the stream: its close takes all it holds, this chunk too.
    const share = this.addToShare(sender, n)
    if (stream.queue.length > RELAY_MAX_STREAM_CHUNKS) {
      this.fail(stream, 'E_LIMIT_BUFFER', `Stream buffer limit reached: ${RELAY_MAX_STREAM_CHUNKS} chunks held`)
      return false
    }
    if (stream.queuedBytes > this.limits.streamBufferBytes) {
      this.fail(stream, 'E_LIMIT_BUFFER', `Stream buffer limit reached (streamBufferBytes=${this.limits.streamBufferBytes})`)
      return false
    }
    if (sender.queuedBytes > this.limits.socketBufferBytes) {
      this.fail(stream, 'E_LIMIT_BUFFER', `Socket buffer limit reached (socketBufferBytes=${this.limits.socketBufferBytes})`)
      return false
    }
    if (share !== undefined) {
      this.fail(stream, 'E_LIMIT_BUFFER', `Buffer limit of ${share.who} reached (${share.limit})`)
      return false
    }
    if (!stream.high && stream.queuedBytes > this.limits.streamBufferBytes / 2) {
      stream.high = true
      sender.highStreams++
    }
    // Forward what the receiver takes now, then judge: a chunk that went on at once holds nothing.
    this.markReady(stream)
    this.updatePause(sender)
    return true
  }

  /** The sender emitted `error` on `streamId`: `true` ends it cleanly, anything else is an error. */
  end (sender: Session, streamId: string, value: unknown): boolean {
    const stream = this.parties.get(sender)?.outbound.get(streamId)
    if (stream === undefined || stream.ending !== undefined) return false
    stream.ending = value === true ? true : typeof value === 'string' && value !== '' ? value.slice(0, 256) : 'Stream error'
    stream.lastActiveMs = this.now()
    this.markReady(stream)
    return true
  }

  /** The receiver's transport flushed: forward what waits for it. */
  drained (receiver: Session): void {
    const party = this.parties.get(receiver)
    if (party !== undefined) this.pump(party)
  }

  /**
   * Fail a stream and its sibling: the receiver of each gets `error` and the sender `abort`, with
   * the wire string (a legacy sender has no `abort` handler; its later chunks are ignored).
   */
  fail (stream: RelayStream, code: ErrorCode, message?: string): void {
    if (stream.closed && stream.sibling?.closed !== false) return
    const wire = wireError(code, message)
    for (const s of [stream, stream.sibling]) {
      if (s === undefined || s.closed) continue
      this.close(s, code)
      s.receiver.endpoint.emit(streamEvent('error', s.id), wire)
      s.sender.endpoint.emit(streamEvent('abort', s.id), wire)
      this.observer.failed?.(code)
    }
    this.logger.debug({ stream: stream.id, code }, 'stream failed')
  }

  /**
   * Fail the stream `streamId` that `session` sends or receives, and its sibling, as `fail` does,
   * with the code and text of `wire` (a cluster stand-in passes on a failure on the other node).
   * `false` when there is no such stream.
   */
  failStream (session: Session, streamId: string, wire: string): boolean {
    const party = this.parties.get(session)
    const stream = party?.outbound.get(streamId) ?? party?.inbound.get(streamId)
    if (stream === undefined) return false
    const err = errorFromWire(wire)
    this.fail(stream, err.code, err.message)
    return true
  }

  /**
   * A session went away: streams it sent fail on their receivers, streams it received are dropped
   * (`E_PEER_GONE` with `message`: a cluster stand-in names the node that went).
   */
  dropSession (session: Session, message = 'Peer disconnected'): void {
    const party = this.parties.get(session)
    if (party === undefined) return
    for (const stream of [...party.outbound.values(), ...party.inbound.values()]) {
      if (stream.closed) continue
      if (stream.sender === party) {
        this.fail(stream, 'E_PEER_GONE', message)
      } else {
        this.close(stream)
        if (stream.sibling !== undefined && !stream.sibling.closed) this.fail(stream.sibling, 'E_PEER_GONE', message)
      }
    }
    this.pausedSenders.delete(party)
    this.parties.delete(session)
  }

  /** Fail every stream (server shutdown). */
  failAll (code: ErrorCode, message?: string): void {
    for (const stream of [...this.streams]) if (!stream.closed) this.fail(stream, code, message)
  }

  /** Stop the sweeper timer. */
  stop (): void {
    clearInterval(this.timer)
  }

  private markReady (stream: RelayStream): void {
    if (!stream.sendable) return
    stream.receiver.ready.add(stream)
    this.pump(stream.receiver)
  }

  /** Forward chunks to `receiver`, one per ready stream in turn, until its transport is full. */
  private pump (receiver: RelayParty): void {
    const { endpoint, ready } = receiver
    const senders = new Set<RelayParty>()
    while (ready.size > 0 && endpoint.pendingWriteBytes() < this.limits.writeHighWaterBytes) {
      for (const stream of ready) {
        ready.delete(stream)
        if (!stream.sendable) continue
        const chunk = stream.queue.shift()
        if (chunk !== undefined) {
          stream.sender.queuedChunks--
          const n = payloadBytes(chunk)
          this.dequeued(stream, n)
          stream.sender.endpoint.dequeued?.(stream.id, n)
          senders.add(stream.sender)
          if (deliver(stream, chunk)) this.frames.out++
          this.relayedBytes += n
          this.observer.relayed?.(n)
          if (stream.sendable) ready.add(stream)
        } else if (stream.ending !== undefined) {
          this.close(stream)
          endpoint.emit(streamEvent('error', stream.id), stream.ending)
        }
        if (endpoint.pendingWriteBytes() >= this.limits.writeHighWaterBytes) break
      }
    }
    for (const sender of senders) this.updatePause(sender)
  }

  private dequeued (stream: RelayStream, n: number): void {
    stream.quietSinceMs = this.now()
    stream.queuedBytes -= n
    stream.sender.queuedBytes -= n
    // The stall timeout measures time without progress, not how long a pause lasts.
    if (stream.sender.paused) stream.sender.pausedSinceMs = this.now()
    this.buffered -= n
    if (stream.high && stream.queuedBytes <= this.limits.streamBufferBytes * 3 / 8) {
      stream.high = false
      stream.sender.highStreams--
    }
    this.takeFromShare(stream.sender, n)
  }

  /**
   * Count `n` bytes queued from `sender` in its shares (its IP's, and its IPv6 /48's); the first
   * share now past its cap, if any (none for a sender of unknown IP, a cluster stand-in).
   */
  private addToShare (sender: RelayParty, n: number): IpShare | undefined {
    let over: IpShare | undefined
    for (const key of sender.shareKeys) {
      let share = this.ipShares.get(key)
      if (share === undefined) {
        const site = key !== sender.ipKey
        share = {
          bytes: 0,
          high: false,
          highSinceMs: 0,
          cap: site ? SITE_FACTOR * this.limits.ipBufferBytes : this.limits.ipBufferBytes,
          who: site ? 'this IPv6 /48 network' : 'this IP address',
          limit: `${site ? `${SITE_FACTOR} x ` : ''}ipBufferBytes=${this.limits.ipBufferBytes}`
        }
        this.ipShares.set(key, share)
      }
      share.bytes += n
      if (!share.high && share.bytes > share.cap / 2) {
        share.high = true
        share.highSinceMs = this.now()
      }
      if (share.bytes > share.cap) over ??= share
    }
    return over
  }

  /** `n` bytes from `sender` left the relay: once a share of it is down to three eighths, its senders paused for it may read again. */
  private takeFromShare (sender: RelayParty, n: number): void {
    for (const key of sender.shareKeys) {
      const share = this.ipShares.get(key)
      if (share === undefined) continue
      share.bytes -= n
      if (share.high && share.bytes <= share.cap * 3 / 8) {
        share.high = false
        for (const paused of [...this.pausedSenders]) if (paused.shareKeys.includes(key)) this.updatePause(paused)
      }
      if (share.bytes <= 0 && !share.high) this.ipShares.delete(key)
    }
  }

  /** Whether a share `sender` counts in is past half its cap. */
  private shareHigh (sender: RelayParty): boolean {
    for (const key of sender.shareKeys) if (this.ipShares.get(key)?.high === true) return true
    return false
  }

  /** Close `stream` (`end`: how, for the log line once both streams of its dial are closed). */
  private close (stream: RelayStream, end: string = 'done'): void {
    if (stream.closed) return
    stream.closed = true
    if (stream.queuedBytes > 0) this.dequeued(stream, stream.queuedBytes)
    if (stream.high) {
      stream.high = false
      stream.sender.highStreams--
    }
    stream.sender.queuedChunks -= stream.queue.length
    stream.queue.clear()
    stream.sender.outbound.delete(stream.id)
    if (stream.senderLane !== undefined) stream.sender.lanes.delete(stream.senderLane)
    stream.receiver.inbound.delete(stream.id)
    stream.receiver.ready.delete(stream)
    this.streams.delete(stream)
    this.open--
    this.observer.streamsChanged?.(this.open)
    this.updatePause(stream.sender)
    if (stream.sibling === undefined || stream.sibling.closed) this.logEnd(stream, end)
    const failed = end !== 'done' && end !== 'aborted'
    stream.sender.endpoint.streamClosed?.(stream.id, failed)
    stream.receiver.endpoint.streamClosed?.(stream.id, failed)
  }

  /** The info line of a dial whose streams are both closed: bytes each way, how long, how it ended. */
  private logEnd (last: RelayStream, end: string): void {
    const other = last.sibling
    const out = last.id.endsWith(DIALER_SUFFIX) ? last : other
    const back = out === last ? other : last
    this.logger.info({
      event: 'streams',
      dial: shortDialId(last.id.slice(0, last.id.lastIndexOf('.'))),
      up: out?.totalBytes ?? 0,
      down: back?.totalBytes ?? 0,
      ms: this.now() - Math.min(last.openedMs, other?.openedMs ?? last.openedMs),
      end
    }, 'dial streams ended')
  }

  /**
   * Pause a sender whose queues, or its IP's share (when it holds bytes of it), are above half
   * their caps; resume it at three quarters of that, so pauses stay short while a slow receiver
   * drains (engine.io heartbeats are not read while paused; a pause that lasts is cut by the stall
   * timeouts in `sweep`).
   */
  private updatePause (sender: RelayParty): void {
    const socketHigh = sender.queuedBytes > this.limits.socketBufferBytes / 2 || sender.queuedChunks > RELAY_PAUSE_CHUNKS
    // The IP's share holds back only its senders that hold bytes: a neighbour behind the same
    // address whose chunks go straight on is not paused for the others'.
    const ipHigh = sender.queuedBytes > 0 && this.shareHigh(sender)
    if (!sender.paused && (sender.highStreams > 0 || socketHigh || ipHigh)) {
      sender.paused = sender.endpoint.pauseReading()
      if (sender.paused) {
        sender.pausedSinceMs = this.now()
        this.pausedSenders.add(sender)
      }
    } else if (sender.paused && !this.ownQueuesHigh(sender) && !ipHigh) {
      sender.paused = false
      this.pausedSenders.delete(sender)
      sender.endpoint.resumeReading()
    }
  }

  /** Whether `sender`'s own queues keep it paused (above three eighths of their caps, or a stream above its resume mark). */
  private ownQueuesHigh (sender: RelayParty): boolean {
    return sender.highStreams > 0 || sender.queuedBytes > this.limits.socketBufferBytes * 3 / 8 || sender.queuedChunks > RELAY_PAUSE_CHUNKS * 3 / 8
  }

  private sweep (): void {
    const now = this.now()
    for (const sender of [...this.pausedSenders]) {
      // Paused only for its IP's share: the share's own stall timeout below.
      if (now - sender.pausedSinceMs < this.limits.senderStallTimeoutMs || !this.ownQueuesHigh(sender)) continue
      // The receivers did not drain: fail the fullest streams until the sender's own queues are low.
      const fullest = [...sender.outbound.values()].sort((a, b) => b.queuedBytes - a.queuedBytes)
      for (const stream of fullest) {
        if (!sender.paused || !this.ownQueuesHigh(sender)) break
        this.fail(stream, 'E_LIMIT_BUFFER', `Receiver stalled for ${this.limits.senderStallTimeoutMs} ms with a full stream buffer`)
      }
    }
    for (const [key, share] of [...this.ipShares]) {
      if (!share.high || now - share.highSinceMs < this.limits.senderStallTimeoutMs) continue
      // The senders of one IP, each perhaps under its own marks, held more than half its share
      // for the stall timeout (a trickle of progress does not reset it: it would let them hold
      // their neighbours paused): fail the IP's streams that went longest without a chunk out
      // (then the fullest) until its share is low again. A stream whose receiver reads, however
      // slowly, goes last: many small streams that nobody reads cannot make it the victim.
      const quietest = [...this.streams].filter((s) => s.sender.shareKeys.includes(key) && s.queuedBytes > 0)
        .sort((a, b) => a.quietSinceMs - b.quietSinceMs || b.queuedBytes - a.queuedBytes)
      for (const stream of quietest) {
        if (!share.high) break
        this.fail(stream, 'E_LIMIT_BUFFER', `Receivers stalled for ${this.limits.senderStallTimeoutMs} ms with the buffer of ${share.who} full (${share.limit})`)
      }
    }
    if (this.limits.streamIdleTimeoutMs > 0) this.sweepIdle(now)
  }

  private sweepIdle (now: number): void {
    const cutoff = now - this.limits.streamIdleTimeoutMs
    for (const stream of [...this.streams]) {
      // A dial is idle only when neither direction moved (a download is not idle upstream).
      const last = Math.max(stream.lastActiveMs, stream.sibling?.lastActiveMs ?? 0)
      if (!stream.closed && last < cutoff) {
        this.fail(stream, 'E_STREAM_IDLE', `Stream idle timeout (streamIdleTimeoutMs=${this.limits.streamIdleTimeoutMs})`)
      }
    }
  }
}
