/** Server options, their defaults and their validation. */
import { Server as HttpServer } from 'node:http'
import { Server as HttpsServer } from 'node:https'
import { MAX_MESSAGE_BYTES } from '../shared/constants.ts'
import { IDENTITY_GRACE_MS, UDP_MAX_ALLOCATIONS_PER_IP, UDP_OWNER_GRACE_MS } from './constants.ts'
import { silentLogger, type Logger } from '../shared/logger.ts'
import { PACKAGE_FOUND, packagePath } from './package-root.ts'
import { checkSocketPath, DEFAULT_SOCKET_PATH } from '../shared/socket-path.ts'
import { PEER_ID_TEXT } from '../shared/validate.ts'

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
  /**
   * Joins announced at once (`ws-peer`) to legacy clients per second, bursts of twice that; the
   * others reach them through the periodic announcement. 0: none at once. @default 4
   */
  announceJoinsPerSecond?: number
  /** Bytes one stream may hold on the server before it fails. @default 8 MiB */
  streamBufferBytes?: number
  /** Bytes all streams sent by one socket may hold before they fail. @default 16 MiB */
  socketBufferBytes?: number
  /**
   * Bytes all streams sent from one client IP address (all its sockets) may hold: its senders
   * are paused past half of it, a stream that still passes it fails. Never less than
   * `socketBufferBytes` (a smaller value counts as that). @default 64 MiB
   */
  ipBufferBytes?: number
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
  /** Connections (engine.io sessions, joined or not) open at once from one client IP address. @default 1000 */
  maxConnectionsPerIp?: number
  /**
   * When a starsock client's socket goes without leaving (a network drop), its identity is held
   * for it this long: a newcomer without its resume id and without `takeover` is refused
   * (`E_ADDRESS_IN_USE`); 0 turns it off. At most `maxPeers` identities are held. @default 30_000
   */
  identityGraceMs?: number
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
  /**
   * Name of a cookie the engine.io handshake sets to the session id, for a load balancer that
   * sticks on it (deploy/haproxy.cfg); `''` sets none. @default ''
   */
  stickyCookie?: string
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
  /** UDP allocations the peers of one client IP address may hold together. @default UDP_MAX_ALLOCATIONS_PER_IP (128: a quarter of the default range) */
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
  /**
   * Where socket.io answers (socket.io's own `path` option): `/socket.io` or `/PREFIX/socket.io`
   * (at most 200 characters of plain path segments; a trailing `/` is dropped).
   * The page, `/healthz`, `/readyz`, `/metrics` and `/status(.json)` live under the same prefix
   * (`/PREFIX/healthz`), and a client finds it from a server URL `http://host:port/PREFIX/`.
   * Legacy websocket-star clients know only the default. @default '/socket.io'
   */
  path?: string
  /**
   * Attach to this HTTP or HTTPS server (plain Node, Express's `app.listen()`, Fastify's
   * `fastify.server`) instead of making one: starsock takes only the requests under `path`
   * (mount `handleRequest` for its page and routes); you listen, and `close()` leaves your server
   * running. Not with `tls` (your server has its own). Attach after your server has its request
   * handler, as with socket.io.
   */
  server?: HttpServer
  /**
   * Redis of a cluster of nodes that act as one rendezvous (`redis://`, `rediss://`, or a Unix
   * socket path); `''` runs a single node. See docs/cluster.md. @default ''
   */
  redis?: string
  /** Internal address (`host:port`) this node takes links from other nodes on; port 0 picks one. @default '127.0.0.1:0' */
  clusterListen?: string
  /** The address other nodes reach this one on, when it is not `clusterListen` (a wildcard host, NAT). @default `clusterListen` as bound */
  clusterAdvertise?: string
  /** Secret shared by the nodes of a cluster, at least 16 characters; required with `redis`. @default '' */
  clusterSecret?: string
  /** A node that stops refreshing its key in Redis this long is gone: a survivor removes its peers. @default 10_000 */
  clusterNodeTtlMs?: number
}

/** Options after defaults, as the server uses them. */
export type ResolvedServerOptions = Required<Omit<ServerOptions, 'tls' | 'server'>> & { tls: TlsOptions | undefined, server: HttpServer | undefined }

/** What an option's value counts, as `--help` and the README give it. */
export type OptionUnit = 'bytes' | 'ms' | 'count' | 'per second' | 'per minute' | 'on/off' | 'text' | 'port range' | 'peer ids' | 'TLS material' | 'logger' | 'folder' | 'URL path' | 'http.Server'

/**
 * How `starsock serve` reads an option: an integer flag, a switch (an inverted one turns the
 * option off), text, a port range `low-high`, a repeatable flag, or `custom` (the CLI builds the
 * value itself: TLS files, the logger).
 */
export type OptionFlagKind = 'integer' | 'switch' | 'inverted-switch' | 'text' | 'port-range' | 'repeatable' | 'custom'

/** One server option: its default, unit, flag, environment variable, help and validation. */
export interface OptionSpec {
  /** The value when the option is not given (or given as `undefined`). */
  default: unknown
  unit: OptionUnit
  /** `starsock serve`'s flag as its help writes it (`--max-peers <n>`); `null` for an option only the API has. */
  flag: string | null
  /** Why an option has no flag. */
  noFlag?: string
  /** The environment variable the flag falls back to. */
  env?: string
  /** How the CLI reads the flag. */
  cli: OptionFlagKind
  /** What `--help` says. */
  help: string
  /** The least an integer flag may be, checked as the CLI parses it (`resolve` may ask more). */
  min?: number
  /**
   * Validate a value (the default when none was given) and return what the server uses; throws
   * a `TypeError`/`RangeError` naming the option. `resolved` holds the options above this one.
   */
  check: (name: string, value: unknown, resolved: Partial<ResolvedServerOptions>) => unknown
}

/** Check `server`: something that looks like a Node `http.Server` or `https.Server`, and no `tls` beside it. */
function checkAttachServer (name: string, value: unknown, resolved: Partial<ResolvedServerOptions>): HttpServer | undefined {
  if (value === undefined) return undefined
  if (!isHttpServer(value)) {
    throw new TypeError(`${name} must be a Node http.Server or https.Server (Express: the result of app.listen(); Fastify: fastify.server)`)
  }
  if (resolved.tls !== undefined) throw new TypeError(`${name} and tls cannot be used together: the server you attach to has its own TLS (make it with https.createServer)`)
  return value
}

/**
 * Whether `value` is a Node `http.Server` or `https.Server` (the latter is a `tls.Server`, not an
 * `http.Server`): a bare `net.Server` has the same methods but no `request` or `upgrade` events.
 */
function isHttpServer (value: unknown): value is HttpServer {
  // node:http2 exports no classes: its servers (which socket.io serves, with allowHTTP1 for
  // WebSocket) are known by their constructor's name.
  const http2 = /^Http2(Secure)?Server$/.test((value as { constructor?: { name?: string } } | null)?.constructor?.name ?? '')
  return value instanceof HttpServer || value instanceof HttpsServer || (http2 && typeof (value as { on?: unknown }).on === 'function')
}

/** Check a `host:port` option (`''` allowed when `optional`); an IPv6 host goes in brackets. */
function checkHostPort (name: string, v: unknown, optional: boolean): string {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string`)
  if (v === '' && optional) return v
  const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/.exec(v)
  if (m === null || Number(m[2]) > 65535) throw new TypeError(`${name} must be host:port (an IPv6 host in brackets), got ${v}`)
  return v
}

function int (name: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new TypeError(`${name} must be an integer, got ${String(v)}`)
  if (v < min) throw new RangeError(`${name} must be at least ${min}, got ${v}`)
  if (v > max) throw new RangeError(`${name} must be at most ${max}, got ${v}`)
  return v
}

function bool (name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${String(v)}`)
  return v
}

type IntegerSpec = Pick<OptionSpec, 'unit' | 'flag' | 'env' | 'help'> & {
  default: number
  min: number
  max?: number
  /** A least value that depends on options resolved before this one (replaces `min` in `resolve`). */
  minFrom?: (resolved: Partial<ResolvedServerOptions>) => number
}

/** An integer option: `--flag <n>`, at least `min` (or `minFrom`), at most `max`. */
function integer (spec: IntegerSpec): OptionSpec {
  return {
    ...spec,
    cli: 'integer',
    check: (name, value, resolved) => int(name, value, spec.minFrom?.(resolved) ?? spec.min, spec.max)
  }
}

/** An on/off option; `inverted` when its flag turns it off (the original's `--disable*` flags). */
function onOff (fallback: boolean, flag: string, env: string, help: string, inverted = false): OptionSpec {
  return { default: fallback, unit: 'on/off', flag, env, help, cli: inverted ? 'inverted-switch' : 'switch', check: bool }
}

const MiB = 1024 * 1024

/**
 * Every server option, in the order `resolveServerOptions` checks them and `starsock serve
 * --help` lists them. The options table in docs/options.md lists the same flags; a unit test holds
 * them together. To add an option: a field in `ServerOptions`, a row here, a row in docs/options.md.
 */
export const SERVER_OPTIONS: { readonly [K in keyof ServerOptions]-?: OptionSpec } = {
  tls: { default: undefined, unit: 'TLS material', flag: '--key <file>', env: 'KEY', cli: 'custom', help: 'TLS private key (PEM); with --cert serves https/wss', check: (_, value) => value },
  cryptoChallenge: onOff(true, '--disableCryptoChallenge', 'DISABLE_CRYPTO_CHALLENGE', 'let peers join without proving their key (unsafe)', true),
  strictMultiaddr: onOff(true, '--disableStrictMultiaddr', 'DISABLE_STRICT_MULTIADDR', 'accept any multiaddr, not only websocket-star shapes', true),
  metrics: onOff(true, '--disableMetrics', 'DISABLE_METRICS', 'do not serve /metrics', true),
  allowPeers: {
    default: [],
    unit: 'peer ids',
    flag: '--allow-peer <peerId>',
    cli: 'repeatable',
    help: 'only this peer id may join (repeatable)',
    check: (name, v) => {
      if (!Array.isArray(v) || v.some((p) => typeof p !== 'string' || p.length === 0)) throw new TypeError(`${name} must be an array of peer id strings`)
      // A typo would lock every client out with nothing said at start: refuse it here.
      const bad = (v as string[]).find((p) => !PEER_ID_TEXT.test(p))
      if (bad !== undefined) throw new TypeError(`${name}: ${JSON.stringify(bad.slice(0, 140))} is not a peer id (base58, e.g. 12D3KooW...)`)
      return [...(v as string[])]
    }
  },
  token: {
    default: '',
    unit: 'text',
    flag: '--token <token>',
    env: 'STARSOCK_TOKEN',
    cli: 'text',
    help: 'shared token new clients must present; /metrics, /status and /status.json then need it too (Authorization: Bearer or ?token=)',
    check: (name, v) => {
      if (typeof v !== 'string') throw new TypeError(`${name} must be a string`)
      return v
    }
  },
  corsOrigin: {
    default: '*',
    unit: 'text',
    flag: '--cors-origin <origins>',
    env: 'STARSOCK_CORS_ORIGIN',
    cli: 'text',
    help: 'allowed browser origins, comma-separated',
    check: (name, v) => {
      if (typeof v !== 'string' || v === '') throw new TypeError(`${name} must be a non-empty string`)
      return v
    }
  },
  trustProxy: onOff(false, '--trust-proxy', 'STARSOCK_TRUST_PROXY', 'take client IPs from the rightmost X-Forwarded-For entry (the one the proxy appended)'),
  stickyCookie: {
    default: '',
    unit: 'text',
    flag: '--sticky-cookie <name>',
    env: 'STARSOCK_STICKY_COOKIE',
    cli: 'text',
    help: 'set this cookie to the engine.io session id in each handshake, for a load balancer that sticks on it (deploy/haproxy.cfg)',
    check: (name, v) => {
      if (typeof v !== 'string') throw new TypeError(`${name} must be a string`)
      // RFC 6265's cookie-name is an RFC 7230 token.
      if (v !== '' && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/.test(v)) throw new TypeError(`${name} must be a cookie name (1-64 letters, digits or !#$%&'*+-.^_\`|~), got ${JSON.stringify(v)}`)
      return v
    }
  },
  udpRelay: onOff(false, '--udp-relay', 'STARSOCK_UDP_RELAY', 'run the UDP relay: peers get pairs of UDP ports that swap datagrams'),
  udpPorts: {
    default: [40000, 40999],
    unit: 'port range',
    flag: '--udp-ports <low-high>',
    env: 'STARSOCK_UDP_PORTS',
    cli: 'port-range',
    help: 'port range of the UDP relay',
    check: (name, value) => {
      const [low, high] = value as [number, number]
      if (!Number.isInteger(low) || !Number.isInteger(high) || low < 1 || high > 65535 || high <= low) throw new RangeError(`${name} must be [low, high] within 1-65535 with low < high, got ${String(value)}`)
      return [low, high]
    }
  },
  udpPublicIp: { default: '', unit: 'text', flag: '--udp-public-ip <ip>', env: 'STARSOCK_UDP_PUBLIC_IP', cli: 'text', help: 'address given to peers in allocations (default: the bound host)', check: (_, value) => value },
  logger: { default: silentLogger, unit: 'logger', flag: '--log-level <level>', env: 'LOG_LEVEL', cli: 'custom', help: 'log level', check: (_, value) => value },
  webRoot: {
    default: PACKAGE_FOUND ? packagePath('dist', 'web') : '',
    unit: 'folder',
    flag: null,
    noFlag: 'the CLI serves the page built into the package',
    cli: 'custom',
    help: 'folder of the built page served at /',
    check: (_, value) => value
  },
  path: {
    default: DEFAULT_SOCKET_PATH,
    unit: 'URL path',
    flag: '--path <path>',
    env: 'STARSOCK_PATH',
    cli: 'text',
    help: 'socket.io path, /socket.io or /PREFIX/socket.io (the page and the routes then live under /PREFIX/; legacy websocket-star clients know only /socket.io)',
    check: checkSocketPath
  },
  server: {
    default: undefined,
    unit: 'http.Server',
    flag: null,
    noFlag: 'only a program has an http.Server to attach to',
    cli: 'custom',
    help: 'HTTP(S) server to attach to instead of making one',
    check: checkAttachServer
  },
  redis: {
    default: '',
    unit: 'text',
    flag: '--redis <url>',
    env: 'STARSOCK_REDIS',
    cli: 'text',
    help: 'join a cluster of nodes through this Redis (redis://, rediss:// or a Unix socket path); needs --cluster-secret',
    check: (name, v, resolved) => {
      if (typeof v !== 'string') throw new TypeError(`${name} must be a string`)
      if (v !== '' && !/^(rediss?:\/\/|\/)/.test(v)) throw new TypeError(`${name} must be a redis:// or rediss:// URL or an absolute Unix socket path, got ${v}`)
      // Across nodes the later join of an address wins (docs/cluster.md): without the challenge anyone could displace any peer.
      if (v !== '' && resolved.cryptoChallenge === false) throw new TypeError(`${name} cannot be used with cryptoChallenge off (--disableCryptoChallenge): across nodes anyone could take any peer's address`)
      return v
    }
  },
  clusterListen: { default: '127.0.0.1:0', unit: 'text', flag: '--cluster-listen <host:port>', env: 'STARSOCK_CLUSTER_LISTEN', cli: 'text', help: 'internal address other nodes link to (with --redis)', check: (name, v) => checkHostPort(name, v, false) },
  clusterAdvertise: { default: '', unit: 'text', flag: '--cluster-advertise <host:port>', env: 'STARSOCK_CLUSTER_ADVERTISE', cli: 'text', help: 'address other nodes reach this one on, when not --cluster-listen (a wildcard host)', check: (name, v) => checkHostPort(name, v, true) },
  clusterSecret: {
    default: '',
    unit: 'text',
    flag: '--cluster-secret <secret>',
    env: 'STARSOCK_CLUSTER_SECRET',
    cli: 'text',
    help: 'secret the nodes of a cluster share, at least 16 characters (required with --redis)',
    check: (name, v, resolved) => {
      if (typeof v !== 'string') throw new TypeError(`${name} must be a string`)
      if (resolved.redis !== '' && v.length < 16) throw new RangeError(`${name} must be at least 16 characters with redis (every node of the cluster uses the same)`)
      return v
    }
  },
  clusterNodeTtlMs: integer({ default: 10_000, min: 1000, max: 600_000, unit: 'ms', flag: '--cluster-node-ttl-ms <n>', env: 'STARSOCK_CLUSTER_NODE_TTL_MS', help: 'a node silent in Redis this long is gone and its peers removed' }),
  maxMessageBytes: integer({ default: MAX_MESSAGE_BYTES, min: MAX_MESSAGE_BYTES, unit: 'bytes', flag: '--max-message-bytes <n>', env: 'STARSOCK_MAX_MESSAGE_BYTES', help: 'largest websocket message in bytes' }),
  nonceTtlMs: integer({ default: 30_000, min: 1, unit: 'ms', flag: '--nonce-ttl-ms <n>', env: 'STARSOCK_NONCE_TTL_MS', help: 'lifetime of a join challenge nonce' }),
  dialTimeoutMs: integer({ default: 10_000, min: 1, unit: 'ms', flag: '--dial-timeout-ms <n>', env: 'STARSOCK_DIAL_TIMEOUT_MS', help: 'time a listener has to answer a dial' }),
  // 10 s, as the original.
  announceIntervalMs: integer({ default: 10_000, min: 0, unit: 'ms', flag: '--announce-interval-ms <n>', env: 'STARSOCK_ANNOUNCE_INTERVAL_MS', help: 'periodic ws-peer re-announcement interval (0: off)' }),
  announceBatchPeers: integer({ default: 64, min: 1, unit: 'count', flag: '--announce-batch-peers <n>', env: 'STARSOCK_ANNOUNCE_BATCH_PEERS', help: 'addresses per client per interval, and in a join reply' }),
  // A few a second: at cluster scale every join of every node would otherwise go to every client (issue 18).
  announceJoinsPerSecond: integer({ default: 4, min: 0, unit: 'per second', flag: '--announce-joins-per-second <n>', env: 'STARSOCK_ANNOUNCE_JOINS_PER_SECOND', help: 'joins announced at once (ws-peer) to legacy clients per second, bursts of twice that (0: none; the periodic announcement brings the rest)' }),
  // A stream holds at least two of the largest messages; a sender's streams together at least one stream's cap.
  streamBufferBytes: integer({ default: 8 * MiB, min: 2 * MAX_MESSAGE_BYTES, minFrom: (r) => 2 * (r.maxMessageBytes ?? MAX_MESSAGE_BYTES), unit: 'bytes', flag: '--stream-buffer-bytes <n>', env: 'STARSOCK_STREAM_BUFFER_BYTES', help: 'bytes one stream may hold on the server' }),
  socketBufferBytes: integer({ default: 16 * MiB, min: 2 * MAX_MESSAGE_BYTES, minFrom: (r) => r.streamBufferBytes ?? 2 * MAX_MESSAGE_BYTES, unit: 'bytes', flag: '--socket-buffer-bytes <n>', env: 'STARSOCK_SOCKET_BUFFER_BYTES', help: 'bytes all streams of one sender may hold' }),
  ipBufferBytes: integer({ default: 64 * MiB, min: 2 * MAX_MESSAGE_BYTES, unit: 'bytes', flag: '--ip-buffer-bytes <n>', env: 'STARSOCK_IP_BUFFER_BYTES', help: 'bytes all streams sent from one client IP address may hold on the server (at least --socket-buffer-bytes)' }),
  // A paused sender's heartbeats are not read: stay well inside engine.io's 20 s ping timeout.
  senderStallTimeoutMs: integer({ default: 8_000, min: 1, max: 15_000, unit: 'ms', flag: '--sender-stall-timeout-ms <n>', env: 'STARSOCK_SENDER_STALL_TIMEOUT_MS', help: 'a sender paused this long for a stalled receiver has its fullest streams failed' }),
  maxAddressesPerSocket: integer({ default: 8, min: 1, unit: 'count', flag: '--max-addresses-per-socket <n>', env: 'STARSOCK_MAX_ADDRESSES_PER_SOCKET', help: 'addresses one socket may join' }),
  maxStreamsPerSocket: integer({ default: 1024, min: 2, unit: 'count', flag: '--max-streams-per-socket <n>', env: 'STARSOCK_MAX_STREAMS_PER_SOCKET', help: 'concurrent one-way streams per socket' }),
  maxDialsPerSecond: integer({ default: 100, min: 1, unit: 'per second', flag: '--max-dials-per-second <n>', env: 'STARSOCK_MAX_DIALS_PER_SECOND', help: 'dials per second per socket' }),
  maxPeers: integer({ default: 20_000, min: 1, unit: 'count', flag: '--max-peers <n>', env: 'STARSOCK_MAX_PEERS', help: 'joined addresses per server' }),
  maxJoinsPerIpPerMinute: integer({ default: 600, min: 1, unit: 'per minute', flag: '--max-joins-per-ip-per-minute <n>', env: 'STARSOCK_MAX_JOINS_PER_IP_PER_MINUTE', help: 'join attempts per IP address per minute' }),
  maxPeersPerIp: integer({ default: 1000, min: 1, unit: 'count', flag: '--max-peers-per-ip <n>', env: 'STARSOCK_MAX_PEERS_PER_IP', help: 'addresses joined at once from one client IP address' }),
  maxConnectionsPerIp: integer({ default: 1000, min: 1, unit: 'count', flag: '--max-connections-per-ip <n>', env: 'STARSOCK_MAX_CONNECTIONS_PER_IP', help: 'connections (joined or not) open at once from one client IP address' }),
  identityGraceMs: integer({ default: IDENTITY_GRACE_MS, min: 0, unit: 'ms', flag: '--identity-grace-ms <n>', env: 'STARSOCK_IDENTITY_GRACE_MS', help: 'an identity whose client dropped is held this long for its reconnect (0: off)' }),
  streamByteBudget: integer({ default: 0, min: 0, unit: 'bytes', flag: '--stream-byte-budget <n>', env: 'STARSOCK_STREAM_BYTE_BUDGET', help: 'bytes one stream may carry (0: no budget)' }),
  streamIdleTimeoutMs: integer({ default: 0, min: 0, unit: 'ms', flag: '--stream-idle-timeout-ms <n>', env: 'STARSOCK_STREAM_IDLE_TIMEOUT_MS', help: 'a stream idle this long fails (0: never)' }),
  shutdownGraceMs: integer({ default: 5_000, min: 0, unit: 'ms', flag: '--shutdown-grace-ms <n>', env: 'STARSOCK_SHUTDOWN_GRACE_MS', help: 'time open streams get to finish on shutdown' }),
  udpMaxAllocationsPerPeer: integer({ default: 4, min: 1, unit: 'count', flag: '--udp-max-allocations-per-peer <n>', env: 'STARSOCK_UDP_MAX_ALLOCATIONS_PER_PEER', help: 'UDP relay allocations one peer may hold' }),
  udpMaxAllocationsPerIp: integer({ default: UDP_MAX_ALLOCATIONS_PER_IP, min: 1, unit: 'count', flag: '--udp-max-allocations-per-ip <n>', env: 'STARSOCK_UDP_MAX_ALLOCATIONS_PER_IP', help: 'UDP relay allocations the peers of one client IP address may hold together' }),
  udpOwnerGraceMs: integer({ default: UDP_OWNER_GRACE_MS, min: 0, unit: 'ms', flag: '--udp-owner-grace-ms <n>', env: 'STARSOCK_UDP_OWNER_GRACE_MS', help: 'UDP allocations of a peer that left end this long after, unless it joins again' }),
  udpIdleMs: integer({ default: 60_000, min: 1, unit: 'ms', flag: '--udp-idle-ms <n>', env: 'STARSOCK_UDP_IDLE_MS', help: 'a UDP allocation without packets this long expires' }),
  udpLifetimeMs: integer({ default: 600_000, min: 1, unit: 'ms', flag: '--udp-lifetime-ms <n>', env: 'STARSOCK_UDP_LIFETIME_MS', help: 'a UDP allocation expires this long after it was made or refreshed' }),
  udpMaxBytes: integer({ default: 1024 * MiB, min: 1, unit: 'bytes', flag: '--udp-max-bytes <n>', env: 'STARSOCK_UDP_MAX_BYTES', help: 'bytes one UDP allocation may forward' }),
  udpMaxPacketsPerSecond: integer({ default: 5000, min: 1, unit: 'per second', flag: '--udp-max-packets-per-second <n>', env: 'STARSOCK_UDP_MAX_PACKETS_PER_SECOND', help: 'packets per second one UDP allocation may forward' })
}

/** Apply defaults field by field (`??`) and validate, in table order; throws `TypeError`/`RangeError` with the option's name. */
export function resolveServerOptions (options: ServerOptions = {}): ResolvedServerOptions {
  const resolved: Partial<Record<keyof ServerOptions, unknown>> = {}
  for (const name of Object.keys(SERVER_OPTIONS) as Array<keyof ServerOptions>) {
    const spec = SERVER_OPTIONS[name]
    resolved[name] = spec.check(name, options[name] ?? spec.default, resolved as Partial<ResolvedServerOptions>)
  }
  return resolved as ResolvedServerOptions
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
