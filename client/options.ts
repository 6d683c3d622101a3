/**
 * The options of a peer (`createPeer`), their defaults and their validation, in one place: every
 * field defaults with `??` and is checked once, at construction, with an exact message.
 */
import { silentLogger, type Logger } from '../shared/logger.ts'
import { isHex } from '../shared/validate.ts'
import { checkName, isPeerKind, type PeerKind, type PeerProfile } from '../shared/profile.ts'
import { StarsockError } from '../shared/errors.ts'
import type { Identity } from './identity.ts'
import { WS_MASKS, type WsMask } from './ws-mask.ts'

/** Options of `createPeer`. */
export interface PeerOptions {
  /**
   * The server: `http(s)://host:port`, `ws(s)://host:port` or `/ip4/…/tcp/…/ws`. A URL's path
   * names the socket.io path of a server with a prefix: `http://host:port/starsock/` (the page's
   * own address) or `…/starsock/socket.io` both mean `/starsock/socket.io`.
   */
  server: string
  /**
   * The server's socket.io path (socket.io-client's `path`), `/socket.io` or `/PREFIX/socket.io`,
   * for a multiaddr `server` or instead of a path in its URL. @default '/socket.io' (or the URL's)
   */
  path?: string
  /** Who this peer is. @default a fresh Ed25519 identity */
  identity?: Identity
  /** Shared token, for servers that require one. */
  token?: string
  /**
   * Take the address over when another live client with this identity holds it (that client is
   * displaced and told); otherwise the first join fails with `E_ADDRESS_IN_USE`. @default false
   */
  takeover?: boolean
  /**
   * This client's resume id (hex, 32 to 128 characters), sent in every hello: the server binds it
   * to the identity at the first join and lets it take the identity back after a reconnect. Keep
   * it secret; pass one only to resume across peer objects (a page reload). @default a random id per peer object
   */
  resumeId?: string
  /** Transports in the order tried. @default ['websocket', 'polling'] */
  transports?: Array<'websocket' | 'polling'>
  /** Timeout of each request to the server. @default 10_000 */
  requestTimeoutMs?: number
  /** Receive window per stream (lowered to fit the server's buffer: 3.5 MiB with a default server and 512 KiB chunks). @default 4 MiB */
  windowBytes?: number
  /**
   * Largest chunk sent (lowered to fit the server's message size): a connection's messages, and a
   * multiplexer's batches of channel frames (seven 64 KiB DATA frames). Per-message work on the
   * server and both peers makes small chunks expensive; the server's message limit (1,000,000 bytes
   * by default) caps it at three quarters of that, as base64 over long-polling. @default 512 KiB
   */
  chunkBytes?: number
  /** Unread bytes past which a stream from a sender that ignores the window fails. @default 16 MiB */
  receiveLimitBytes?: number
  /**
   * How long `start` waits for a first connection to the server before it fails with
   * `E_SERVER_UNREACHABLE` (a wrong address fails fast; a server that was reached and dropped
   * later is retried for ever). @default 5_000
   */
  connectTimeoutMs?: number
  /** Heartbeat period; a server that misses one is dropped and reconnected. @default 5_000 */
  heartbeatIntervalMs?: number
  /** Time a heartbeat may take. @default 5_000 */
  heartbeatTimeoutMs?: number
  /** First and largest reconnect delay. @default 500 and 5_000 */
  reconnectDelayMs?: number
  reconnectDelayMaxMs?: number
  /**
   * The masking key of the WebSocket frames a Node peer sends: `'zero'` sends every byte as it is
   * (no masking pass, no copy), `'random'` draws a key per frame as browsers do (for a peer whose
   * plain `ws://` connection crosses a proxy that may misread WebSocket bytes as HTTP; see README
   * "Client"), `'auto'` is zero over TLS or to a server on loopback, random otherwise. A browser
   * always masks with a random key. @default 'auto'
   */
  wsMask?: WsMask
  /**
   * Carry stream data as raw engine.io binary messages when the server agrees (one WebSocket
   * frame per chunk instead of two); off, every chunk is a socket.io event. @default true
   */
  rawFrames?: boolean
  /**
   * Dial with the Noise secure channel unless a dial says otherwise: end-to-end encrypted and
   * authenticated, the other side proving its peer id. Incoming connections are classified either
   * way (a secure dialer always gets a secure connection). @default true
   */
  secure?: boolean
  /**
   * This peer's profile, relayed by a starsock server to the other peers (issue 17): a display
   * name (NFC, trimmed, at most 40 characters, no control or bidi characters; a bad one throws a
   * `TypeError`) and its kind, `browser` in a browser and `node` in Node (`gateway` is believed
   * only for the server's own gateway peer). Change it later with `peer.setProfile`.
   * @default { kind: 'browser' | 'node' } with no name
   */
  profile?: { name?: string, kind?: PeerKind }
  /** Where logs go. @default silent */
  logger?: Logger
  /** More socket.io-client options (e.g. `ca` for a private certificate authority in Node). */
  socketOptions?: Record<string, unknown>
}

/**
 * Peer options after defaults, as the peer uses them; the fields are documented on `PeerOptions`,
 * whose `server`, `identity`, `token` and `socketOptions` are taken as given.
 */
export interface ResolvedPeerOptions {
  transports: Array<'websocket' | 'polling'>
  wsMask: WsMask
  requestTimeoutMs: number
  takeover: boolean
  /** `undefined`: the peer makes one. */
  resumeId: string | undefined
  windowBytes: number
  chunkBytes: number
  receiveLimitBytes: number
  heartbeatIntervalMs: number
  heartbeatTimeoutMs: number
  connectTimeoutMs: number
  reconnectDelayMs: number
  reconnectDelayMaxMs: number
  rawFrames: boolean
  secure: boolean
  profile: PeerProfile
  logger: Logger
}

/** The kind of peer this build runs as: `node` under Node, `browser` anywhere else. */
export function runtimeKind (): PeerKind {
  const versions = (globalThis as { process?: { versions?: { node?: unknown } } }).process?.versions
  return typeof versions?.node === 'string' ? 'node' : 'browser'
}

/** A profile option checked (`TypeError` naming what is wrong); `kind` defaults to `runtimeKind()`. */
export function resolveProfile (profile: { name?: unknown, kind?: unknown } | undefined, fallbackKind: PeerKind = runtimeKind()): PeerProfile {
  if (profile !== undefined && (typeof profile !== 'object' || profile === null)) throw new TypeError('profile must be an object')
  const kind = profile?.kind ?? fallbackKind
  if (!isPeerKind(kind)) throw new TypeError(`profile.kind must be browser, node or gateway, got ${String(kind)}`)
  const name = checkName(profile?.name)
  if (name instanceof StarsockError) throw new TypeError(`profile.${name.message}`)
  return name === undefined ? { kind } : { name, kind }
}

function positive (name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${String(v)}`)
  return v
}

/** Apply the defaults field by field and validate; throws a `RangeError` (or a `TypeError` for `takeover` and `resumeId`) naming the option. */
export function resolvePeerOptions (options: Partial<Omit<ResolvedPeerOptions, 'profile'>> & Pick<PeerOptions, 'profile'>): ResolvedPeerOptions {
  const requestTimeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs, 10_000)
  if (options.wsMask !== undefined && !WS_MASKS.includes(options.wsMask)) throw new TypeError(`wsMask must be 'auto', 'zero' or 'random', got ${String(options.wsMask)}`)
  if (options.takeover !== undefined && typeof options.takeover !== 'boolean') throw new TypeError('takeover must be a boolean')
  if (options.rawFrames !== undefined && typeof options.rawFrames !== 'boolean') throw new TypeError('rawFrames must be a boolean')
  if (options.secure !== undefined && typeof options.secure !== 'boolean') throw new TypeError('secure must be a boolean')
  const resumeId = options.resumeId
  if (resumeId !== undefined && (typeof resumeId !== 'string' || resumeId.length < 32 || resumeId.length > 128 || !isHex(resumeId))) {
    throw new TypeError('resumeId must be a hex string of 32 to 128 characters')
  }
  return {
    transports: options.transports ?? ['websocket', 'polling'],
    wsMask: options.wsMask ?? 'auto',
    requestTimeoutMs,
    takeover: options.takeover ?? false,
    resumeId,
    windowBytes: positive('windowBytes', options.windowBytes, 4 * 1024 * 1024),
    chunkBytes: positive('chunkBytes', options.chunkBytes, 512 * 1024),
    receiveLimitBytes: positive('receiveLimitBytes', options.receiveLimitBytes, 16 * 1024 * 1024),
    heartbeatIntervalMs: positive('heartbeatIntervalMs', options.heartbeatIntervalMs, 5000),
    heartbeatTimeoutMs: positive('heartbeatTimeoutMs', options.heartbeatTimeoutMs, 5000),
    connectTimeoutMs: positive('connectTimeoutMs', options.connectTimeoutMs, 5000),
    reconnectDelayMs: positive('reconnectDelayMs', options.reconnectDelayMs, 500),
    reconnectDelayMaxMs: positive('reconnectDelayMaxMs', options.reconnectDelayMaxMs, 5000),
    rawFrames: options.rawFrames ?? true,
    secure: options.secure ?? true,
    profile: resolveProfile(options.profile),
    logger: options.logger ?? silentLogger
  }
}
