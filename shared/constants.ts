/** Protocol facts shared by both ends, each with its unit in its name (server tunables live in `server/`). */

/** Version of the starsock protocol extensions (`starsock:*` events). */
export const PROTOCOL_VERSION = 1
/** Largest websocket message accepted; the original's and socket.io's default, also the minimum. */
export const MAX_MESSAGE_BYTES = 1_000_000
/** Longest address string accepted. */
export const MAX_ADDRESS_CHARS = 1024
/** Longest public key or signature hex accepted (RSA-8192 keys stay below it). */
export const MAX_KEY_HEX_CHARS = 8192
/** Longest resume secret accepted in `starsock:hello` (the server makes 64 hex characters). */
export const MAX_RESUME_SECRET_CHARS = 128
/** Longest dial id accepted; legacy clients use 36-character UUIDs. */
export const MAX_DIAL_ID_CHARS = 128
