/**
 * Error codes and the strings that carry them on the wire.
 *
 * Only a string crosses the wire (legacy clients print whatever the first ack argument is, and an
 * `Error` would serialise to `{}`). Errors the original server had keep its exact string; every
 * newer error is `<message> [<CODE>]`, so a client can recover the code with `errorCodeOf`.
 * Codes are never renumbered or reused: add new ones at the end.
 */

/** Every failure a peer, the network or a limit can cause, with its human-readable meaning. */
export const ERROR_CODES = {
  E_INVALID_ADDRESS: 'the address is not a valid (websocket-star) multiaddr',
  E_CHALLENGE_REQUIRED: 'the crypto challenge is on and the join carried no public key',
  E_CRYPTO: 'the public key or signature could not be decoded',
  E_SIGNATURE_INVALID: 'the signature does not verify against the nonce',
  E_ID_MISMATCH: 'the peer id in the address is not derived from the public key',
  E_NOT_AUTHORIZED: 'the socket has not joined the address it dials from',
  E_PEER_NOT_FOUND: 'no peer is joined under that address',
  E_BAD_REQUEST: 'missing or wrong-typed arguments',
  E_NONCE_EXPIRED: 'the challenge nonce expired or was already used',
  E_ADDRESS_IN_USE: 'another live client holds that address (the same identity joined elsewhere)',
  E_DIAL_REFUSED: 'the listener refused the dial',
  E_DIAL_TIMEOUT: 'the listener did not answer the dial in time',
  E_DIAL_ID_IN_USE: 'the dial id is already used on this socket',
  E_FORBIDDEN: 'the peer id is not on the server allowlist, or the token is wrong',
  E_LIMIT_ADDRESSES: 'too many addresses joined on one socket',
  E_LIMIT_PEERS: 'the server holds its maximum number of peers',
  E_LIMIT_STREAMS: 'too many concurrent streams on one socket',
  E_LIMIT_DIAL_RATE: 'too many dials per second on one socket',
  E_LIMIT_JOIN_RATE: 'too many join attempts per minute from one IP address',
  E_LIMIT_BUFFER: 'a stream buffered more bytes than its cap on the server',
  E_LIMIT_BYTES: 'a stream carried more bytes than its budget',
  E_STREAM_IDLE: 'a stream was idle longer than the idle timeout',
  E_PEER_GONE: 'the other end of a stream disconnected',
  E_SHUTDOWN: 'the server is shutting down',
  E_TIMEOUT: 'a request got no answer in time',
  E_ABORTED: 'the caller aborted the operation',
  E_NOT_JOINED: 'the peer has not joined the server (yet, or any more)',
  E_DISCONNECTED: 'the connection to the server dropped',
  E_SERVER_UNREACHABLE: 'the server could not be reached',
  E_STREAM_CLOSED: 'the other side closed the connection',
  E_STREAM_ABORTED: 'the other side aborted the connection with an error',
  E_LIMIT_REQUEST_RATE: 'too many hello, peers, ping or leave requests per second on one socket',
  E_LIMIT_BACKLOG: 'a socket did not read what the server sent it (output backlog over its cap)',
  E_CHANNEL_PROTOCOL: 'a channel frame was malformed or broke the channel protocol',
  E_DENIED: 'the other peer denied the offer (no rule allowed it, or a person said no)',
  E_KILLED: 'the mapping was killed by one of the two peers',
  E_NO_MAPPING: 'the channel names no granted mapping, or asks for more than its mapping allows',
  E_UNSUPPORTED: 'the other peer cannot do that (e.g. a browser asked to open a TCP socket)',
  E_CONNECT_REFUSED: 'the target host refused the connection',
  E_CONNECT_UNREACHABLE: 'the target host could not be resolved or reached',
  E_CONNECT_TIMEOUT: 'the target host did not answer in time',
  E_BIND_FAILED: 'the peer could not listen on that address (in use, or not allowed)',
  E_LIMIT_CHANNELS: 'too many channels open on one connection',
  E_LIMIT_MAPPINGS: 'too many mappings between two peers',
  E_UDP_DISABLED: 'the server runs no UDP relay',
  E_UDP_NO_PORTS: 'no free pair of UDP ports in the relay\'s range',
  E_UDP_NOT_FOUND: 'no such UDP allocation of this peer (expired or released)',
  E_LIMIT_ALLOCATIONS: 'the peer holds its maximum number of UDP allocations',
  E_LIMIT_ALLOCATIONS_PER_IP: 'the peers of one client IP address hold their maximum number of UDP allocations',
  E_LIMIT_PEERS_PER_IP: 'one client IP address has joined its maximum number of peer addresses',
  E_LIMIT_CONNECTIONS_PER_IP: 'one client IP address has its maximum number of connections to the server open',
  E_DISPLACED: 'another client with the same identity took this address over',
  E_PEER_SHUTDOWN: 'the other peer is stopping or restarting (not a refusal: ask again when it is back)',
  E_LIMIT_TOTAL: 'the peer runs its maximum total of mappings, listening ports or channels for all other peers together',
  E_LIMIT_FILE_SIZE: 'the file is larger than the receiver takes',
  E_LIMIT_FILE_QUOTA: 'the sender (or all senders together) used up the receiver\'s file quota for now',
  E_INTERNAL: 'internal error',
  E_SECURE_HANDSHAKE: 'the Noise handshake failed: a malformed, truncated, replayed or forged handshake message, a bad identity signature, or no answer in time',
  E_PEER_ID_MISMATCH: 'the other peer proved another identity than the one dialed (or than the server reported): a relay swapped it, or a peer claimed another\'s id',
  E_SECURE_AUTH: 'an encrypted message failed authentication (tampered, reordered, replayed or cut short in transit); the connection was closed',
  E_SECURE_REQUIRED: 'the other side did not open a secure channel where this side requires one (a legacy peer, an --insecure peer, or a downgrade)',
  E_LIMIT_PROFILE_RATE: 'too many profile changes (display name) per minute on one socket, or from one IP address'
} as const

/** A stable error code. */
export type ErrorCode = keyof typeof ERROR_CODES

/** The exact strings of the original server, kept for legacy clients. */
export const LEGACY_ERROR_STRINGS = {
  E_INVALID_ADDRESS: 'Invalid multiaddr',
  E_CHALLENGE_REQUIRED: 'Crypto Challenge required but no Id provided',
  E_CRYPTO: 'Crypto error',
  E_SIGNATURE_INVALID: 'Signature Invalid',
  E_ID_MISMATCH: 'Id is not matching',
  E_NOT_AUTHORIZED: 'Not authorized for this address',
  E_PEER_NOT_FOUND: 'Peer not found'
} as const satisfies Partial<Record<ErrorCode, string>>

const CODE_BY_LEGACY_STRING = new Map<string, ErrorCode>(
  Object.entries(LEGACY_ERROR_STRINGS).map(([code, text]) => [text, code as ErrorCode])
)

const CODE_SUFFIX = /\[(E_[A-Z_]+)\]$/

/** One failure caused by a peer, the network or a limit, with a stable `code`. */
export class StarsockError extends Error {
  /** The stable code from `ERROR_CODES`. */
  readonly code: ErrorCode
  /**
   * Came from the wire (`errorFromWire`): another side's word, not authenticated (a relay can
   * write any code in a stream's error frame). Never set for an error decided here.
   */
  remote = false

  constructor (code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERROR_CODES[code], options)
    this.name = 'StarsockError'
    this.code = code
  }

  /** The string to put first in an ack: the legacy string where the original had one. */
  toWire (): string {
    return wireError(this.code, this.message)
  }
}

/** The wire string for `code`: its legacy string, or `<detail> [<code>]`. */
export function wireError (code: ErrorCode, detail?: string): string {
  const legacy = (LEGACY_ERROR_STRINGS as Record<string, string>)[code]
  if (legacy !== undefined) return legacy
  // The server keeps 256 characters of a stream's error string: cut the text, never the code.
  const text = detail ?? ERROR_CODES[code]
  return `${text.length > WIRE_DETAIL_CHARS ? `${text.slice(0, WIRE_DETAIL_CHARS - 1)}…` : text} [${code}]`
}

/** Characters of an error's text a wire string keeps (the server keeps 256 in all). */
const WIRE_DETAIL_CHARS = 200

/** Recover the code of a wire error string; `undefined` for a string from elsewhere. */
export function errorCodeOf (wire: string): ErrorCode | undefined {
  const legacy = CODE_BY_LEGACY_STRING.get(wire)
  if (legacy !== undefined) return legacy
  const match = CODE_SUFFIX.exec(wire)
  const code = match?.[1]
  return code !== undefined && code in ERROR_CODES ? code as ErrorCode : undefined
}

/** A `StarsockError` for a wire error string (code `E_BAD_REQUEST` when it carries none). */
export function errorFromWire (wire: unknown): StarsockError {
  const text = typeof wire === 'string' ? wire : 'Unknown error'
  const code = errorCodeOf(text) ?? 'E_BAD_REQUEST'
  const err = new StarsockError(code, text.replace(CODE_SUFFIX, '').trim())
  err.remote = true
  return err
}
