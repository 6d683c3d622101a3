/**
 * The UDP relay's registration handshake, as a plain UDP program sees it (a return-routability
 * check, as STUN transaction ids, TURN's nonce and QUIC's address validation do):
 *
 * 1. send the port's token T (16 bytes, the hex-decoded `token1`/`token2`) to the port;
 * 2. the relay answers with a 16-byte cookie C sent to the source address the token came from;
 * 3. send the proof `C XOR T` (byte by byte, 16 bytes) to the port;
 * 4. the relay confirms with the complement of the proof (each byte XOR 0xff); from then on, send
 *    data from the same socket.
 *
 * Only a program that receives at its source address and knows the token can send step 3, so a
 * packet with a forged source cannot make the relay send anything to that address but the
 * (rate-limited) cookies; and a service that sends back what it gets (an RFC 862 echo, a
 * reflector) never registers: it would send C, not `C XOR T`, and the relay drops its own cookie
 * and confirmation when they come back (`reflected`). A completed handshake from a new source
 * takes the port over (a NAT rebinding, a restarted program); a first packet never displaces an
 * endpoint. Lost packets: start again at step 1 (the cookie for one source never changes during an
 * allocation; a repeated proof is confirmed again). No step is forwarded to the other endpoint.
 */

/** Bytes of a port's token. */
export const UDP_TOKEN_BYTES = 16
/** Bytes of the cookie the relay answers a token with (and of the proof and the confirmation). */
export const UDP_COOKIE_BYTES = 16
/**
 * Datagrams the relay sends to an endpoint that registered without the handshake (`address` and
 * `open` modes) before it proves its address with the handshake; more are dropped (`unverified`).
 */
export const UDP_UNVERIFIED_BUDGET_DATAGRAMS = 8
/** Cookies one port answers per second (bursts of twice this); more tokens are dropped. */
export const UDP_CHALLENGES_PER_SECOND = 4

/** Step 3: the proof an endpoint sends for `cookie`, `cookie XOR token` (both 16 bytes). */
export function udpProof (cookie: Uint8Array, token: Uint8Array): Uint8Array {
  if (cookie.byteLength !== UDP_COOKIE_BYTES || token.byteLength !== UDP_TOKEN_BYTES) throw new RangeError(`cookie and token must be ${UDP_COOKIE_BYTES} bytes`)
  return cookie.map((b, i) => b ^ (token[i] ?? 0))
}

/** Step 4: the relay's confirmation of `proof`, its complement (never equal to the proof, the cookie or the token's echo). */
export function udpConfirmation (proof: Uint8Array): Uint8Array {
  return proof.map((b) => b ^ 0xff)
}
