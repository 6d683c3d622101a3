/** The relay's limits, what it reports, and its view of one session, as types (see `relay.ts`). */
import type { ErrorCode } from '../shared/errors.ts'
import { MAX_CREDIT_BYTES } from '../shared/events.ts'

/** Whether `n` is a window or credit grant a receiver may give. */
export function isCredit (n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n > 0 && n <= MAX_CREDIT_BYTES
}

/** Limits of the relay, resolved. */
export interface RelayLimits {
  /** Cap of one stream's queue. */
  streamBufferBytes: number
  /** Cap of all queues of one sender. */
  socketBufferBytes: number
  /** Cap of all queues of the senders of one client IP (`ipLimitKey`). */
  ipBufferBytes: number
  /** Unflushed bytes toward a receiver past which forwarding waits for a drain. */
  writeHighWaterBytes: number
  /** Bytes one stream may carry; 0 for no budget. */
  streamByteBudget: number
  /** Idle time after which a stream fails; 0 for none. */
  streamIdleTimeoutMs: number
  /** A sender paused this long has its blocking streams failed. */
  senderStallTimeoutMs: number
}

/** What the relay reports, for metrics. */
export interface RelayObserver {
  /** Bytes forwarded to a receiver. */
  relayed?: (bytes: number) => void
  /** A stream failed with this code. */
  failed?: (code: ErrorCode) => void
  /** The number of open streams changed. */
  streamsChanged?: (open: number) => void
}

/** What the relay holds for one session, as a snapshot (for checks and tests). */
export interface RelayPartyState {
  /** Ids of the streams the session sends on. */
  outbound: ReadonlySet<string>
  /** Ids of the streams the session receives. */
  inbound: ReadonlySet<string>
  /** Streams the session takes part in, both ways. */
  streamCount: number
  /** Bytes from the session's outbound streams held on the server. */
  queuedBytes: number
  /** Whether reading from the session is paused for backpressure. */
  paused: boolean
}

/** What the senders of one client IP (`ipLimitKey`), or of one IPv6 /48 (`sitePrefixOf`), hold on the relay together. */
export interface IpShare {
  /** Its cap in bytes (`SITE_FACTOR` times `ipBufferBytes` for a /48). */
  cap: number
  /** Whose share it is and its limit, for error messages (`this IP address`, `ipBufferBytes=N`). */
  who: string
  limit: string
  /** Bytes queued from all its senders. */
  bytes: number
  /** Whether it went past half of `ipBufferBytes` and has not come down to three eighths since. */
  high: boolean
  /** When it last went high: the stall timeout counts from there. */
  highSinceMs: number
}
