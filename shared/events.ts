/**
 * Event names and payload shapes on the socket.io connection.
 *
 * The `ss-*` and `ws-peer` events and the socket.io-pull-stream framing are the websocket-star
 * protocol as the published clients speak it (see docs/protocol.md). The `starsock:*`
 * events are optional extensions that legacy clients never send and never receive.
 */

import type { PeerProfile } from './profile.ts'

/** Events of the websocket-star protocol and of the starsock extensions. */
export const EVENTS = {
  JOIN: 'ss-join',
  LEAVE: 'ss-leave',
  DIAL: 'ss-dial',
  INCOMING: 'ss-incomming', // sic: the published clients spell it with two m
  PEER: 'ws-peer',
  HELLO: 'starsock:hello',
  PEERS: 'starsock:peers',
  PEER_JOIN: 'starsock:peer-join',
  PEER_LEAVE: 'starsock:peer-leave',
  /**
   * Server to a client that said `peerBatch` in its hello: `(entries)`, the peer changes since the
   * last batch in order, each a `PeerBatchEntry` (issue 18).
   */
  PEER_BATCH: 'starsock:peer-batch',
  /** Client to server: `(profile, ack)` sets this client's display name and kind; `ack(null, profile)` as others will see it. */
  PROFILE: 'starsock:profile',
  /** Server to a client that asked for peer events: `(addr, profile)`, the peer at `addr` changed its profile. */
  PEER_PROFILE: 'starsock:peer-profile',
  PING: 'starsock:ping',
  /** Server to a starsock client whose address another client took over: `({ addr, reason, by })`, then a disconnect. */
  DISPLACED: 'starsock:displaced',
  /** UDP relay: `(request, ack)` -> `ack(null, allocation)`; refresh and release take the id. */
  UDP_ALLOCATE: 'starsock:udp-allocate',
  UDP_REFRESH: 'starsock:udp-refresh',
  UDP_RELEASE: 'starsock:udp-release'
} as const

/** Largest window or credit grant, in bytes, a receiver may announce. */
export const MAX_CREDIT_BYTES = 64 * 1024 * 1024

/** Prefix of the socket.io-pull-stream events: `<prefix><type>.<streamId>`. */
export const STREAM_EVENT_PREFIX = 'socket.io-pull-stream.'

/**
 * The kinds of stream event. `accept`, `queue` and `error` are socket.io-pull-stream's. The
 * starsock extensions go from receiver to sender and legacy peers never see them unasked:
 * `accept.S(windowBytes)` (an argument legacy sinks ignore) starts credit flow control, `credit.S(n)`
 * grants `n` more bytes, and `abort.S(reason)` tells the sender the receiver is gone. Between peers
 * that negotiated raw frames, `accept.S(window, lane)` also carries a lane and the data goes as raw
 * frames on it instead of `queue` (`raw-frame.ts`).
 */
export const STREAM_EVENT_TYPES = ['accept', 'queue', 'error', 'credit', 'abort'] as const
/** One kind of stream event. */
export type StreamEventType = typeof STREAM_EVENT_TYPES[number]

/** Suffixes of the two one-way streams of a dial `<dialId>.dialer` and `<dialId>.listener`. */
export const DIALER_SUFFIX = '.dialer'
/** See `DIALER_SUFFIX`. */
export const LISTENER_SUFFIX = '.listener'

/** The full event name for a stream event. */
export function streamEvent (type: StreamEventType, streamId: string): string {
  return `${STREAM_EVENT_PREFIX}${type}.${streamId}`
}

/** Split a stream event name into its type and stream id; `undefined` if it is not one. */
export function parseStreamEvent (event: string): { type: StreamEventType, streamId: string } | undefined {
  if (!event.startsWith(STREAM_EVENT_PREFIX)) return undefined
  const rest = event.slice(STREAM_EVENT_PREFIX.length)
  const dot = rest.indexOf('.')
  if (dot <= 0 || dot === rest.length - 1) return undefined
  const type = rest.slice(0, dot)
  if (!(STREAM_EVENT_TYPES as readonly string[]).includes(type)) return undefined
  return { type: type as StreamEventType, streamId: rest.slice(dot + 1) }
}

/** What a new client says in `starsock:hello`. */
export interface HelloRequest {
  /** Receive `starsock:peer-join` / `starsock:peer-leave` instead of periodic `ws-peer`. */
  peerEvents?: boolean
  /**
   * With `peerEvents`: receive the peer changes batched, one `starsock:peer-batch` every
   * `PEER_BATCH_INTERVAL_MS` while any are pending, instead of one event per change (issue 18).
   */
  peerBatch?: boolean
  /**
   * Take an address another live starsock client holds (it gets `starsock:displaced`); without it
   * such a join is refused with `E_ADDRESS_IN_USE`.
   */
  takeover?: boolean
  /** The resume secret of this client's previous join: takes its address back from its own stale socket. */
  resume?: string
  /** The client reads and sends stream data as raw frames (`shared/raw-frame.ts`). */
  rawFrames?: boolean
  /**
   * The client takes dial hints (issue 14): as a listener, a third `ss-incomming` argument
   * `{ starsock, secure }` about the dialer before the ack; as a dialer, a second argument
   * `{ starsock }` about the listener in the dial's ack. Only hints: the client decides on the bytes.
   */
  dialHints?: boolean
  /**
   * This client's profile (issue 17): its display name and kind, relayed to starsock clients with
   * its address. A bad one refuses the hello (`E_BAD_REQUEST`).
   */
  profile?: PeerProfile
}

/** How often, in ms, the server sends pending peer changes to clients that asked for batches. */
export const PEER_BATCH_INTERVAL_MS = 250

/**
 * One change in a `starsock:peer-batch`: a peer joined (its profile when it has one), left, or
 * changed its profile. Entries are applied in order, as the single events would be.
 */
export type PeerBatchEntry =
  | readonly ['join', string]
  | readonly ['join', string, PeerProfile]
  | readonly ['leave', string]
  | readonly ['profile', string, PeerProfile]

/** Extra, last element of a completed join's ack for starsock clients (legacy clients ignore it). */
export interface JoinExtra {
  /** Secret to present in the next connection's hello (`resume`); new at every join. */
  resume: string
}

/** Why a client lost its address: another client proved the key and asked for it. */
export type DisplacedReason = 'takeover' | 'legacy-join'

/** Payload of `starsock:displaced`. */
export interface DisplacedInfo {
  /** The address taken over. */
  addr: string
  /** `takeover`: a starsock client asked for it; `legacy-join`: a websocket-star client joined it (the original's rule). */
  reason: DisplacedReason
  /** The newcomer's network address, `ip:port` (or `ip` behind a proxy). */
  by: string
}

/** What the server answers to `starsock:hello`. */
export interface HelloReply {
  /** Version of the starsock extensions. */
  protocol: number
  /** Server package version. */
  version: string
  /** Whether joins need the crypto challenge. */
  cryptoChallenge: boolean
  /** Limits in force, by option name. */
  limits: Record<string, number>
  /** The server will carry this client's stream data as raw frames (it asked for them; absent from older servers). */
  rawFrames?: boolean
}

/** One page of the peer list, answered to `starsock:peers`. */
export interface PeersPage {
  /** Addresses on this page. */
  addrs: string[]
  /** Cursor for the next page, or `null` at the end. */
  next: number | null
  /** The profile of each address, in the same order (`null`: none); absent from older servers. */
  profiles?: Array<PeerProfile | null>
}

/** A UDP relay allocation, as `starsock:udp-allocate` and `starsock:udp-refresh` answer it. */
export interface UdpAllocation {
  id: string
  ip: string
  port1: number
  port2: number
  /** Hex; an endpoint registers on its port with these bytes and the handshake of `udp-relay-protocol.ts`. */
  token1: string
  token2: string
  mode: 'token' | 'address' | 'open'
  /** Milliseconds since the epoch. */
  expiresAt: number
}
