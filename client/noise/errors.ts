/**
 * Failures of the secure channel. The proof keeps its codes here so it touches no shared file;
 * when it lands they join `ERROR_CODES` in `shared/errors.ts` (at the end, never renumbered) and
 * this class becomes `StarsockError`.
 */

/** The codes the secure channel adds, with their meaning (rows for the README's table). */
export const SECURE_ERROR_CODES = {
  E_SECURE_HANDSHAKE: 'the Noise handshake failed: a malformed, truncated, replayed or forged handshake message, a bad identity signature, or no answer in time',
  E_PEER_ID_MISMATCH: 'the peer proved a different identity than the one dialed (or than the server reported): a relay swapped it, or a peer claimed another\'s id',
  E_SECURE_AUTH: 'an encrypted message failed authentication (tampered, reordered, replayed or truncated in transit); the connection was closed',
  E_SECURE_REQUIRED: 'the other side did not start a secure channel where this side requires one (a legacy peer, an --insecure peer, or a downgrade)'
} as const

/** One of the secure channel's codes. */
export type SecureErrorCode = keyof typeof SECURE_ERROR_CODES

/** A failure of the secure channel, with its stable code. */
export class SecureChannelError extends Error {
  constructor (readonly code: SecureErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? SECURE_ERROR_CODES[code], options)
    this.name = 'SecureChannelError'
  }
}
