/** One relayed one-way stream: its queue on the server and its state. */
import type { Session } from './session.ts'

/** How a stream ends: `true` for a clean end, a string for an error. */
export type StreamEnd = true | string

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
  /** Removed from both sessions; late events are ignored. */
  closed = false
  /** Last time a byte or an event went through (for the idle timeout). */
  lastActiveMs: number
  /** The other direction of the same dial, closed with this one on failure. */
  sibling: RelayStream | undefined

  constructor (
    /** Stream id as on the wire (`<dialId>.dialer` or `<dialId>.listener`). */
    readonly id: string,
    /** Who sends the bytes. */
    readonly sender: Session,
    /** Who receives them. */
    readonly receiver: Session,
    nowMs: number
  ) {
    this.lastActiveMs = nowMs
  }

  /** Whether the receiver can be sent something now. */
  get sendable (): boolean {
    return !this.closed && this.accepted && (this.queue.length > 0 || this.ending !== undefined)
  }
}
