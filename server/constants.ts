/**
 * Server constants that are not options, each with its unit in its name. Option defaults live in
 * `SERVER_OPTIONS` (`options.ts`); protocol facts in `shared/constants.ts`.
 */

/** Default TCP port, as the original server. */
export const DEFAULT_PORT = 9090
/** Default bind host, as the original server. */
export const DEFAULT_HOST = '0.0.0.0'
/** Bytes written toward one socket and not yet flushed, past which the relay waits for a drain. */
export const SOCKET_WRITE_HIGH_WATER_BYTES = 1024 * 1024
/**
 * What one chunk on its way to a socket counts toward `SOCKET_WRITE_HIGH_WATER_BYTES` beyond its
 * payload: the packet's own memory (engine.io's packet, its encoding, the WebSocket frame and its
 * write request). 0.8% of a 64 KiB chunk; a one-byte chunk counts as 513.
 */
export const PACKET_COST_BYTES = 512
/**
 * Chunks one client's streams may have held on the server before reading from it pauses (resumed at
 * three eighths of it): the byte limits count payload, and each chunk also costs its own memory
 * (about 240 bytes), so a flood of one-byte chunks stays under every byte limit.
 */
export const RELAY_PAUSE_CHUNKS = 8192
/** Chunks one stream may hold past which it fails (`E_LIMIT_BUFFER`): only a sender that cannot be paused gets there. */
export const RELAY_MAX_STREAM_CHUNKS = 4 * RELAY_PAUSE_CHUNKS
/** hello, peers, ping and leave requests one socket may make per second (bursts up to twice this). */
export const MAX_REQUESTS_PER_SECOND = 50
/**
 * Requests per second that no honest client sends (unknown events, malformed arguments, raw
 * frames it did not negotiate or cannot be) one socket may make, in bursts up to five times
 * that, before it is disconnected: each costs the server a parse and a count, and a flood of them
 * delays every other client. Events for streams that ended (or never were) have a budget of their
 * own, `MAX_STRAY_STREAM_EVENTS_PER_SECOND`.
 */
export const MAX_BAD_REQUESTS_PER_SECOND = 20
/**
 * Stream events (and raw frames) for a stream or lane the socket does not have open (or that carry
 * nothing, or credit more than the receiver got) one socket may send per second, in bursts up to
 * `STRAY_STREAM_EVENTS_BURST`; past that the server stops reading the socket for `STRAY_HOLD_MS`
 * (on long-polling, which cannot be held, each one counts against `MAX_BAD_REQUESTS_PER_SECOND`).
 * Honest clients send some: a legacy sender keeps sending into a stream its receiver gave up on (it
 * has no flow control), and a legacy client that reconnects sends what it buffered while it was
 * away, for streams of its last connection; so they are slowed down, not disconnected. Without a
 * bound, one socket sending 200,000 tiny ones a second held an honest client's ping at 240 ms.
 */
export const MAX_STRAY_STREAM_EVENTS_PER_SECOND = 2000
/** How long the server stops reading a socket past its stray budget: the budget has refilled by then. */
export const STRAY_HOLD_MS = 1000
/** Burst of `MAX_STRAY_STREAM_EVENTS_PER_SECOND`: a legacy client's buffered sends of a few MiB come at once. */
export const STRAY_STREAM_EVENTS_BURST = 20_000
/**
 * Stray stream events (as `MAX_STRAY_STREAM_EVENTS_PER_SECOND`) the sockets of one client IP (an
 * IPv6 /64) may send together in a second; past it each socket that sends one more is held as
 * past its own budget. Sockets are free: without it, 1,000 sockets from one address (the default
 * `maxConnectionsPerIp`) could each send their own budget, 2 million a second. One socket's whole
 * burst still fits, so an honest legacy client flushing its buffer after a reconnect is not held.
 */
export const MAX_STRAY_STREAM_EVENTS_PER_IP_PER_SECOND = STRAY_STREAM_EVENTS_BURST
/** Packets waiting in a socket's engine.io write buffer past which its requests are not served. */
export const MAX_QUEUED_PACKETS = 10_000
/** How often the server checks every socket's output backlog. */
export const BACKLOG_CHECK_MS = 500
/**
 * UDP relay allocations the peers of one client IP address may hold together: a quarter of the
 * default range's 500 pairs. One address may be a carrier-grade NAT with hundreds of subscribers
 * behind it (32 would turn most of them away), yet one address, a Sybil with free identities
 * included, still cannot hold more than a quarter of the default range.
 */
export const UDP_MAX_ALLOCATIONS_PER_IP = 128
/** An identity whose starsock client's socket went without leaving is held for that client this long. */
export const IDENTITY_GRACE_MS = 30_000
/** UDP relay allocations of a peer that left end this long after, unless it joins again. */
export const UDP_OWNER_GRACE_MS = 30_000
/** Profile changes (a display name) a joined socket may make per minute: each is announced to every other peer. */
export const PROFILE_CHANGES_PER_MINUTE = 6
/** Profile changes a joined socket may make at once before `PROFILE_CHANGES_PER_MINUTE` applies. */
export const PROFILE_CHANGE_BURST = 3
/**
 * Profile changes the joined sockets of one client IP address (an IPv6 /64) may make together per
 * minute: sockets are free, so a per-socket limit alone lets one host announce without bound.
 */
export const PROFILE_CHANGES_PER_IP_PER_MINUTE = 30
