/** Server options, their defaults and their validation. */
import { fileURLToPath } from 'node:url'
import { MAX_MESSAGE_BYTES } from '../shared/constants.ts'
import * as C from './constants.ts'
import { silentLogger, type Logger } from '../shared/logger.ts'

/** TLS material, as Node's `https.createServer` takes it. */
export interface TlsOptions {
  key?: string | Buffer
  cert?: string | Buffer
  pfx?: string | Buffer
  passphrase?: string
}

/** What `createServer` accepts; every field is optional. */
export interface ServerOptions {
  /** Require the crypto challenge on join. @default true */
  cryptoChallenge?: boolean
  /** Accept only websocket-star address shapes. @default true */
  strictMultiaddr?: boolean
  /** Serve `GET /metrics`. @default true */
  metrics?: boolean
  /** Serve https/wss with this material instead of http/ws. */
  tls?: TlsOptions
  /** Largest websocket message in bytes; at least 1,000,000. @default 1_000_000 */
  maxMessageBytes?: number
  /** Lifetime of a challenge nonce. @default 30_000 */
  nonceTtlMs?: number
  /** Time a listener has to answer `ss-incomming`. @default 10_000 */
  dialTimeoutMs?: number
  /** Interval of the periodic `ws-peer` re-announcement; 0 turns it off. @default 10_000 */
  announceIntervalMs?: number
  /** Addresses a client receives per interval, and the most a join reply lists. @default 64 */
  announceBatchPeers?: number
  /** Bytes one stream may hold on the server before it fails. @default 4 MiB */
  streamBufferBytes?: number
  /** Bytes all streams sent by one socket may hold before they fail. @default 16 MiB */
  socketBufferBytes?: number
  /** A sender paused this long for a receiver that does not drain has its fullest streams failed; at most 15 s. @default 8_000 */
  senderStallTimeoutMs?: number
  /** Addresses one socket may join. @default 8 */
  maxAddressesPerSocket?: number
  /** Concurrent one-way streams per socket. @default 1024 */
  maxStreamsPerSocket?: number
  /** Dials per second per socket. @default 100 */
  maxDialsPerSecond?: number
  /** Joined addresses per server. @default 20_000 */
  maxPeers?: number
  /** Join attempts per IP address per minute. @default 600 */
  maxJoinsPerIpPerMinute?: number
  /** Addresses joined at once from one client IP address (all its sockets). @default 1000 */
  maxPeersPerIp?: number
  /** Bytes one stream may carry in all; 0 for no budget. @default 0 */
  streamByteBudget?: number
  /** A stream idle this long fails; 0 for no timeout. @default 0 */
  streamIdleTimeoutMs?: number
  /** Peer ids allowed to join; empty allows everyone. @default [] */
  allowPeers?: readonly string[]
  /** Shared token new clients must present (`auth.token` or `?token=`); empty for none. @default '' */
  token?: string
  /** `Access-Control-Allow-Origin` for browser clients. @default '*' */
  corsOrigin?: string
  /** Take the client IP from `X-Forwarded-For` (behind a reverse proxy). @default false */
  trustProxy?: boolean
  /** Bound on a graceful shutdown. @default 5_000 */
  shutdownGraceMs?: number
  /** Where logs go. @default silent */
  logger?: Logger
  /** Run the UDP relay (allocations of port pairs). @default false */
  udpRelay?: boolean
  /** Inclusive range the relay's ports come from. @default [40000, 40999] */
  udpPorts?: [number, number]
  /** Address the relay gives peers in allocations. @default the bound host (127.0.0.1 for a wildcard) */
  udpPublicIp?: string
  /** UDP allocations one peer may hold. @default 4 */
  udpMaxAllocationsPerPeer?: number
  /** UDP allocations the peers of one client IP address may hold together. @default 32 */
  udpMaxAllocationsPerIp?: number
  /** UDP allocations of a peer that left (its last socket disconnected) end this long after, unless it joins again. @default 30_000 */
  udpOwnerGraceMs?: number
  /** An allocation without packets this long expires. @default 60_000 */
  udpIdleMs?: number
  /** An allocation expires this long after it was made or refreshed. @default 600_000 */
  udpLifetimeMs?: number
  /** Bytes one allocation may forward. @default 1 GiB */
  udpMaxBytes?: number
  /** Packets per second one allocation may forward (bursts of twice this). @default 5_000 */
  udpMaxPacketsPerSecond?: number
  /** Folder of the built page served at `/` (`npm run build:web`); `''` serves only the status page. @default the package's `dist/web` */
  webRoot?: string
}

function udpPorts (value: [number, number] | undefined): [number, number] {
  const [low, high] = value ?? [40000, 40999]
  if (!Number.isInteger(low) || !Number.isInteger(high) || low < 1 || high > 65535 || high <= low) throw new RangeError(`udpPorts must be [low, high] within 1-65535 with low < high, got ${String(value)}`)
  return [low, high]
}

/** Options after defaults, as the server uses them. */
export type ResolvedServerOptions = Required<Omit<ServerOptions, 'tls'>> & { tls: TlsOptions | undefined }

function int (name: string, value: number | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = value ?? fallback
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new TypeError(`${name} must be an integer, got ${String(v)}`)
  if (v < min) throw new RangeError(`${name} must be at least ${min}, got ${v}`)
  if (v > max) throw new RangeError(`${name} must be at most ${max}, got ${v}`)
  return v
}

function bool (name: string, value: boolean | undefined, fallback: boolean): boolean {
  const v = value ?? fallback
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${String(v)}`)
  return v
}

/** Apply defaults field by field and validate; throws `TypeError`/`RangeError` with the option's name. */
export function resolveServerOptions (options: ServerOptions = {}): ResolvedServerOptions {
  const maxMessageBytes = int('maxMessageBytes', options.maxMessageBytes, MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES)
  const streamBufferBytes = int('streamBufferBytes', options.streamBufferBytes, C.STREAM_BUFFER_BYTES, 2 * maxMessageBytes)
  const socketBufferBytes = int('socketBufferBytes', options.socketBufferBytes, C.SOCKET_BUFFER_BYTES, streamBufferBytes)
  const allowPeers = options.allowPeers ?? []
  if (!Array.isArray(allowPeers) || allowPeers.some((p) => typeof p !== 'string' || p.length === 0)) {
    throw new TypeError('allowPeers must be an array of peer id strings')
  }
  const token = options.token ?? ''
  if (typeof token !== 'string') throw new TypeError('token must be a string')
  const corsOrigin = options.corsOrigin ?? '*'
  if (typeof corsOrigin !== 'string' || corsOrigin === '') throw new TypeError('corsOrigin must be a non-empty string')
  return {
    cryptoChallenge: bool('cryptoChallenge', options.cryptoChallenge, true),
    strictMultiaddr: bool('strictMultiaddr', options.strictMultiaddr, true),
    metrics: bool('metrics', options.metrics, true),
    tls: options.tls,
    maxMessageBytes,
    nonceTtlMs: int('nonceTtlMs', options.nonceTtlMs, C.NONCE_TTL_MS, 1),
    dialTimeoutMs: int('dialTimeoutMs', options.dialTimeoutMs, C.DIAL_TIMEOUT_MS, 1),
    announceIntervalMs: int('announceIntervalMs', options.announceIntervalMs, C.ANNOUNCE_INTERVAL_MS, 0),
    announceBatchPeers: int('announceBatchPeers', options.announceBatchPeers, C.ANNOUNCE_BATCH_PEERS, 1),
    streamBufferBytes,
    socketBufferBytes,
    // A paused sender's heartbeats are not read: stay well inside engine.io's 20 s ping timeout.
    senderStallTimeoutMs: int('senderStallTimeoutMs', options.senderStallTimeoutMs, C.SENDER_STALL_TIMEOUT_MS, 1, 15_000),
    maxAddressesPerSocket: int('maxAddressesPerSocket', options.maxAddressesPerSocket, C.MAX_ADDRESSES_PER_SOCKET, 1),
    maxStreamsPerSocket: int('maxStreamsPerSocket', options.maxStreamsPerSocket, C.MAX_STREAMS_PER_SOCKET, 2),
    maxDialsPerSecond: int('maxDialsPerSecond', options.maxDialsPerSecond, C.MAX_DIALS_PER_SECOND, 1),
    maxPeers: int('maxPeers', options.maxPeers, C.MAX_PEERS, 1),
    maxJoinsPerIpPerMinute: int('maxJoinsPerIpPerMinute', options.maxJoinsPerIpPerMinute, C.MAX_JOINS_PER_IP_PER_MINUTE, 1),
    maxPeersPerIp: int('maxPeersPerIp', options.maxPeersPerIp, C.MAX_PEERS_PER_IP, 1),
    streamByteBudget: int('streamByteBudget', options.streamByteBudget, 0, 0),
    streamIdleTimeoutMs: int('streamIdleTimeoutMs', options.streamIdleTimeoutMs, 0, 0),
    allowPeers: [...allowPeers],
    token,
    corsOrigin,
    trustProxy: bool('trustProxy', options.trustProxy, false),
    shutdownGraceMs: int('shutdownGraceMs', options.shutdownGraceMs, C.SHUTDOWN_GRACE_MS, 0),
    logger: options.logger ?? silentLogger,
    udpRelay: bool('udpRelay', options.udpRelay, false),
    udpPorts: udpPorts(options.udpPorts),
    udpPublicIp: options.udpPublicIp ?? '',
    udpMaxAllocationsPerPeer: int('udpMaxAllocationsPerPeer', options.udpMaxAllocationsPerPeer, 4, 1),
    udpMaxAllocationsPerIp: int('udpMaxAllocationsPerIp', options.udpMaxAllocationsPerIp, C.UDP_MAX_ALLOCATIONS_PER_IP, 1),
    udpOwnerGraceMs: int('udpOwnerGraceMs', options.udpOwnerGraceMs, C.UDP_OWNER_GRACE_MS, 0),
    udpIdleMs: int('udpIdleMs', options.udpIdleMs, 60_000, 1),
    udpLifetimeMs: int('udpLifetimeMs', options.udpLifetimeMs, 600_000, 1),
    udpMaxBytes: int('udpMaxBytes', options.udpMaxBytes, 1024 * 1024 * 1024, 1),
    udpMaxPacketsPerSecond: int('udpMaxPacketsPerSecond', options.udpMaxPacketsPerSecond, 5000, 1),
    webRoot: options.webRoot ?? fileURLToPath(new URL('../dist/web/', import.meta.url))
  }
}

/** The limits a client may want to know, by option name (answered to `starsock:hello`). */
export function publicLimits (o: ResolvedServerOptions): Record<string, number> {
  return {
    maxMessageBytes: o.maxMessageBytes,
    streamBufferBytes: o.streamBufferBytes,
    maxAddressesPerSocket: o.maxAddressesPerSocket,
    maxStreamsPerSocket: o.maxStreamsPerSocket,
    maxDialsPerSecond: o.maxDialsPerSecond,
    streamByteBudget: o.streamByteBudget,
    streamIdleTimeoutMs: o.streamIdleTimeoutMs,
    dialTimeoutMs: o.dialTimeoutMs
  }
}
