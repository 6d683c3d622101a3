/**
 * The UDP relay's registration handshake, as a plain UDP program sees it (a return-routability
 * check, as STUN transaction ids, TURN's nonce and QUIC's address validation do):
 *
 * 1. send the port's token (16 bytes, the hex-decoded `token1`/`token2`) to the port;
 * 2. the relay answers with a 16-byte cookie sent to the source address the token came from;
 * 3. send those 16 bytes back to the port;
 * 4. the relay confirms by sending the token back; from then on, send data.
 *
 * Only a program that receives at its source address can answer step 3, so a packet with a forged
 * source cannot make the relay send anything to that address but the one cookie. Lost packets:
 * repeat from step 1 (the cookie for one address never changes during an allocation; a repeated
 * echo is confirmed again). Neither the token nor the cookie is forwarded to the other endpoint.
 */

/** Bytes of a port's token. */
export const UDP_TOKEN_BYTES = 16
/** Bytes of the cookie the relay answers a token with. */
export const UDP_COOKIE_BYTES = 16
/**
 * Datagrams the relay sends to an endpoint that registered without the handshake (`address` and
 * `open` modes) before it proves its address with the handshake; more are dropped (`unverified`).
 */
export const UDP_UNVERIFIED_BUDGET_DATAGRAMS = 8
/** Cookies one port answers per second (bursts of twice this); more tokens are dropped. */
export const UDP_CHALLENGES_PER_SECOND = 4
