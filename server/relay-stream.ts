/** One relayed one-way stream, and one session as the relay sees it: queues and backpressure state. */
import type { Endpoint } from './session.ts'

/** How a stream ends: `true` for a clean end, a string for an error. */
export type StreamEnd = true | string

/**
 * One session as the relay sees it: the streams it sends and receives and its backpressure
 * state. Owned by the relay, which keeps one per session that takes part in a stream.
 */
export class RelayParty {
  /** Streams this client sends on, by stream id. */
  readonly outbound = new Map<string, RelayStream>()
  /** Streams this client receives, by stream id. */
  readonly inbound = new Map<string, RelayStream>()
  /** Inbound streams with a chunk or an end ready to forward, in round-robin order. */
  readonly ready = new Set<RelayStream>()
  /** Bytes from this client's outbound streams held on the server. */
  queuedBytes = 0
  /** Outbound streams above their pause threshold. */
  highStreams = 0
  /** Whether reading from this client is paused for backpressure. */
  paused = false
  /** When the current pause began. */
  pausedSinceMs = 0

  constructor (
    /** How to reach the client. */
    readonly endpoint: Endpoint
  ) {}

  /** Streams this client takes part in, both ways. */
  get streamCount (): number {
    return this.outbound.size + this.inbound.size
  }
}

/** A one-way stream from `sender` to `receiver`, named `id` on both sockets. */
export class RelayStream {
  /** Chunks held on the server, oldest first. */
  readonly queue: Uint8Array[] = []
  /** Bytes in `queue`. */
  queuedBytes = 0
  /** Bytes carried in all (for the byte budget). */
  totalBytes = 0
  /** The receiver said it is ready (`accept`); only then does data flow. */
  accepted = false
  /** The sender ended the stream; delivered after the queued chunks. */
  ending: StreamEnd | undefined
  /** Above the sender's pause threshold. */
  high = false
  /** Removed from both parties; late events are ignored. */
  closed = false
  /** Last time a byte or an event went through (for the idle timeout). */
  lastActiveMs: number
  /** The other direction of the same dial, closed with this one on failure. */
  sibling: RelayStream | undefined

  constructor (
    /** Stream id as on the wire (`<dialId>.dialer` or `<dialId>.listener`). */
    readonly id: string,
    /** Who sends the bytes. */
    readonly sender: RelayParty,
    /** Who receives them. */
    readonly receiver: RelayParty,
    nowMs: number
  ) {
    this.lastActiveMs = nowMs
  }

  /** Whether the receiver can be sent something now. */
  get sendable (): boolean {
    return !this.closed && this.accepted && (this.queue.length > 0 || this.ending !== undefined)
  }
}
