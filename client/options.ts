/**
 * The options of a peer (`createPeer`), their defaults and their validation, in one place: every
 * field defaults with `??` and is checked once, at construction, with an exact message.
 */
import { silentLogger, type Logger } from '../shared/logger.ts'
import { isHex } from '../shared/validate.ts'

/**
 * Peer options after defaults, as the peer uses them; the fields are documented on `PeerOptions`
 * (`client/peer.ts`), whose `server`, `identity`, `token` and `socketOptions` are taken as given.
 */
export interface ResolvedPeerOptions {
  transports: Array<'websocket' | 'polling'>
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
  logger: Logger
}

function positive (name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback
  if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${String(v)}`)
  return v
}

/** Apply the defaults field by field and validate; throws a `RangeError` (or a `TypeError` for `takeover` and `resumeId`) naming the option. */
export function resolvePeerOptions (options: Partial<ResolvedPeerOptions>): ResolvedPeerOptions {
  const requestTimeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs, 10_000)
  if (options.takeover !== undefined && typeof options.takeover !== 'boolean') throw new TypeError('takeover must be a boolean')
  const resumeId = options.resumeId
  if (resumeId !== undefined && (typeof resumeId !== 'string' || resumeId.length < 32 || resumeId.length > 128 || !isHex(resumeId))) {
    throw new TypeError('resumeId must be a hex string of 32 to 128 characters')
  }
  return {
    transports: options.transports ?? ['websocket', 'polling'],
    requestTimeoutMs,
    takeover: options.takeover ?? false,
    resumeId,
    windowBytes: positive('windowBytes', options.windowBytes, 2 * 1024 * 1024),
    chunkBytes: positive('chunkBytes', options.chunkBytes, 128 * 1024),
    receiveLimitBytes: positive('receiveLimitBytes', options.receiveLimitBytes, 16 * 1024 * 1024),
    heartbeatIntervalMs: positive('heartbeatIntervalMs', options.heartbeatIntervalMs, 5000),
    heartbeatTimeoutMs: positive('heartbeatTimeoutMs', options.heartbeatTimeoutMs, 5000),
    connectTimeoutMs: positive('connectTimeoutMs', options.connectTimeoutMs, 5000),
    reconnectDelayMs: positive('reconnectDelayMs', options.reconnectDelayMs, 500),
    reconnectDelayMaxMs: positive('reconnectDelayMaxMs', options.reconnectDelayMaxMs, 5000),
    logger: options.logger ?? silentLogger
  }
}
