/** One connected client, as the server's plain classes see it (no socket.io here). */
import type { PeerProfile } from '../shared/profile.ts'
import { MAX_BAD_REQUESTS_PER_SECOND, MAX_REQUESTS_PER_SECOND, MAX_STRAY_STREAM_EVENTS_PER_SECOND, STRAY_STREAM_EVENTS_BURST } from './constants.ts'
import { TokenBucket } from './rate-limit.ts'

/**
 * An event encoded once for many clients (`EventEncoder`): each client's `Endpoint.sendEncoded`
 * writes the same bytes (issue 18: a peer batch to thousands of clients).
 */
export interface EncodedEvent {
  /** The event, for an endpoint that cannot take the encoding (it emits it). */
  readonly event: string
  /** Its arguments, likewise. */
  readonly args: readonly unknown[]
  /** Its size on the wire, in bytes. */
  readonly bytes: number
}

/** Encodes an event once for any number of clients; `undefined` when it cannot (each client then gets its own `emit`). */
export type EventEncoder = (event: string, args: unknown[]) => EncodedEvent | undefined

/** How the server reaches one connected client; the socket.io wiring implements it. */
export interface Endpoint {
  /** Send an event to the client. */
  emit: (event: string, ...args: unknown[]) => void
  /** Send an event encoded once for many clients (`EventEncoder`), as `emit` would send it. */
  sendEncoded?: (encoded: EncodedEvent) => void
  /**
   * Send `events[from]` up to (not including) `events[to]`, in order, as `sendEncoded` would one
   * by one; in one write when the transport can take them back to back. `events` stays unchanged
   * while any client may be sent part of it (what the endpoint makes of it is kept with it).
   */
  sendEncodedRun?: (events: readonly EncodedEvent[], from: number, to: number) => void
  /**
   * Send a request and settle with the client's ack arguments; rejects on timeout or disconnect.
   */
  request: (event: string, args: unknown[], timeoutMs: number) => Promise<unknown[]>
  /** Bytes written toward the client that its transport has not confirmed as flushed. */
  pendingWriteBytes: () => number
  /** Stop reading from the client (backpressure); `false` when the transport cannot. */
  pauseReading: () => boolean
  /** Read from the client again. */
  resumeReading: () => void
  /**
   * Stop reading from the client for `ms` (a socket past its stray budget), whatever the relay's
   * own pause does meanwhile: `'started'`, `'held'` when a hold is on already, `'unable'` when the
   * transport cannot stop reading (long-polling).
   */
  holdReading?: (ms: number) => 'started' | 'held' | 'unable'
  /** Bytes of every kind sent toward the client and not yet written to its socket. */
  backlogBytes?: () => number
  /** Whether the client is so far behind that its requests should wait (cheap to ask). */
  congested?: () => boolean
  /** Disconnect the client. */
  disconnect?: () => void
  /** The transport the client uses now (`websocket`, `polling`, `webtransport`), for logs. */
  transportName?: () => string
  /** Send a raw frame (`shared/raw-frame.ts`) after the events emitted so far; only to a client that negotiated them. */
  sendFrame?: (frame: Uint8Array) => void
  /** `bytes` of stream `streamId`, which this client sends, left the relay's queue toward its receiver (a cluster stand-in acknowledges them to its node). */
  dequeued?: (streamId: string, bytes: number) => void
  /**
   * Stream `streamId`, which this client sends or receives, closed on the relay; `failed` when it
   * failed (`Relay.fail`: the events that follow say so). A cluster stand-in passes a failure on
   * as one, and is forgotten once both of its streams are closed.
   */
  streamClosed?: (streamId: string, failed: boolean) => void
}

/** A connected client: the addresses it joined and what it told the server about itself. */
export class Session {
  /** Addresses this socket joined, as exact strings. */
  readonly addrs = new Set<string>()
  /** Sent `starsock:hello`: told of displacement, refused an address held elsewhere unless `takeover`. */
  starsock = false
  /** Asked (in hello) to take over an address another live client holds. */
  takeover = false
  /** Asked (in hello) for dial hints (`HelloRequest.dialHints`). */
  dialHints = false
  /** Asked (in hello) for stream data as raw frames, and was told yes. */
  rawFrames = false
  /** Resume id this client presented in hello (one per client object, the same after every reconnect). */
  resume: string | undefined
  /** The profile it gave (hello or `starsock:profile`), checked; what others see is `shownProfile`. */
  profile: PeerProfile | undefined
  /** Rate limit of its profile changes once joined (`takeProfileChange`), made at the first. */
  profileBucket: TokenBucket | undefined
  /** The node the peer is on when this session only stands for it (a cross-node dial's stand-in, `server/cluster/`). */
  node: string | undefined
  /** When it connected (`Date.now()`), for the durations in the logs. */
  readonly connectedMs = Date.now()
  private secrets: Map<string, string> | undefined
  private requests: TokenBucket | undefined
  /** Budget of requests no honest client sends (`strike`), made at the first. */
  private strikes: TokenBucket | undefined
  /** Budget of stream events for streams it does not have (`stray`), made at the first. */
  private strays: TokenBucket | undefined

  constructor (
    /** Unique id (the socket id). */
    readonly id: string,
    /** Client IP address, for per-IP limits. */
    readonly ip: string,
    /** How to reach the client. */
    readonly endpoint: Endpoint,
    /** Dial rate limit of this client. */
    readonly dialBucket: TokenBucket,
    /** Rate limit of its other requests (hello, peers, ping, leave); made at the first such request when not given. */
    requestBucket?: TokenBucket,
    /** Client TCP port, when known (not behind a proxy). */
    readonly port?: number
  ) {
    this.requests = requestBucket
  }

  /**
   * Resume credential of each address this client joined, by address: its resume id, or one made
   * for it. Made at first use: legacy clients, most of an idle crowd, never have one.
   */
  get resumeSecrets (): Map<string, string> {
    this.secrets ??= new Map()
    return this.secrets
  }

  /** Rate limit of its other requests (hello, peers, ping, leave), made at the first one. */
  get requestBucket (): TokenBucket {
    this.requests ??= new TokenBucket(MAX_REQUESTS_PER_SECOND, 2 * MAX_REQUESTS_PER_SECOND)
    return this.requests
  }

  /** Count one request no honest client sends; `false` once its budget is spent (the socket is then disconnected). */
  strike (): boolean {
    this.strikes ??= new TokenBucket(MAX_BAD_REQUESTS_PER_SECOND, 5 * MAX_BAD_REQUESTS_PER_SECOND)
    return this.strikes.take()
  }

  /**
   * Count one stream event or raw frame for a stream or lane this socket does not have open;
   * `true` once past its budget (`MAX_STRAY_STREAM_EVENTS_PER_SECOND`): the socket is then held
   * (not read for a while), or, where it cannot be, struck.
   */
  stray (): boolean {
    this.strays ??= new TokenBucket(MAX_STRAY_STREAM_EVENTS_PER_SECOND, STRAY_STREAM_EVENTS_BURST)
    return !this.strays.take()
  }

  /** Where the client connects from, `ip:port` (`[ip]:port` for IPv6), or `ip` without a port. */
  get remote (): string {
    if (this.port === undefined) return this.ip
    return this.ip.includes(':') ? `[${this.ip}]:${this.port}` : `${this.ip}:${this.port}`
  }
}
