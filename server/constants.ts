/** Server defaults and internal tunables, each with its unit in its name (protocol facts live in `shared/constants.ts`). */

/** Default TCP port, as the original server. */
export const DEFAULT_PORT = 9090
/** Default bind host, as the original server. */
export const DEFAULT_HOST = '0.0.0.0'
/** How long a challenge nonce stays valid. */
export const NONCE_TTL_MS = 30_000
/** How long the server waits for a listener to answer `ss-incomming`. */
export const DIAL_TIMEOUT_MS = 10_000
/** Interval of the periodic `ws-peer` re-announcement, as the original. */
export const ANNOUNCE_INTERVAL_MS = 10_000
/** Addresses one client receives per interval, and the most a join reply lists. */
export const ANNOUNCE_BATCH_PEERS = 64
/** Bytes a single relayed stream may hold on the server before it fails. */
export const STREAM_BUFFER_BYTES = 4 * 1024 * 1024
/** Bytes all streams sent by one socket may hold on the server before its streams fail. */
export const SOCKET_BUFFER_BYTES = 16 * 1024 * 1024
/** Bytes written toward one socket and not yet flushed, past which the relay waits for a drain. */
export const SOCKET_WRITE_HIGH_WATER_BYTES = 1024 * 1024
/** A sender paused this long for backpressure has its blocking streams failed (its receiver stalled). */
export const SENDER_STALL_TIMEOUT_MS = 8_000
/** Addresses one socket may join. */
export const MAX_ADDRESSES_PER_SOCKET = 8
/** Concurrent one-way streams one socket may take part in (a dial makes two). */
export const MAX_STREAMS_PER_SOCKET = 1024
/** Dials one socket may start per second (sustained; bursts up to twice this). */
export const MAX_DIALS_PER_SECOND = 100
/** hello, peers, ping and leave requests one socket may make per second (bursts up to twice this). */
export const MAX_REQUESTS_PER_SECOND = 50
/** Packets waiting in a socket's engine.io write buffer past which its requests are not served. */
export const MAX_QUEUED_PACKETS = 10_000
/** How often the server checks every socket's output backlog. */
export const BACKLOG_CHECK_MS = 500
/** Joined addresses one server holds. */
export const MAX_PEERS = 20_000
/** `ss-join` attempts (not counting challenge answers) one IP address may make per minute. */
export const MAX_JOINS_PER_IP_PER_MINUTE = 600
/** Addresses joined at once from one client IP address (a NAT'd office fits; a Sybil flood does not). */
export const MAX_PEERS_PER_IP = 1000
/** UDP relay allocations the peers of one client IP address may hold together. */
export const UDP_MAX_ALLOCATIONS_PER_IP = 32
/** UDP relay allocations of a peer that left end this long after, unless it joins again. */
export const UDP_OWNER_GRACE_MS = 30_000
/** Bound on a graceful shutdown before remaining sockets are cut. */
export const SHUTDOWN_GRACE_MS = 5_000
