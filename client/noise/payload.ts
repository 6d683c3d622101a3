/**
 * The libp2p Noise handshake payload (libp2p `noise` spec, "The libp2p Handshake Payload"):
 *
 *   message NoiseHandshakePayload { bytes identity_key = 1; bytes identity_sig = 2; NoiseExtensions extensions = 4; }
 *
 * `identity_key` is the protobuf public key of the peer's identity, `identity_sig` its signature
 * over `noise-libp2p-static-key:` followed by the sender's Noise static public key. Fields this side
 * does not use (extensions, later fields) are skipped, as protobuf requires.
 */

/** What the identity key signs: the prefix, then the Noise static public key. */
export const STATIC_KEY_PREFIX = new TextEncoder().encode('noise-libp2p-static-key:')

/** The fields starsock reads. */
export interface HandshakePayload {
  identityKey: Uint8Array
  identitySig: Uint8Array
}

/** The bytes a peer signs for `staticKey`. */
export function signedBytes (staticKey: Uint8Array): Uint8Array {
  const out = new Uint8Array(STATIC_KEY_PREFIX.byteLength + staticKey.byteLength)
  out.set(STATIC_KEY_PREFIX, 0)
  out.set(staticKey, STATIC_KEY_PREFIX.byteLength)
  return out
}

function varint (n: number): number[] {
  const out: number[] = []
  while (n > 0x7f) { out.push((n & 0x7f) | 0x80); n = Math.floor(n / 128) }
  out.push(n)
  return out
}

/** Encode the two fields (no extensions: starsock negotiates its multiplexer inside the channel). */
export function encodePayload (payload: HandshakePayload): Uint8Array {
  const parts = [[0x0a, ...varint(payload.identityKey.byteLength)], payload.identityKey, [0x12, ...varint(payload.identitySig.byteLength)], payload.identitySig]
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

/** Decode; throws an `Error` on malformed bytes or a missing field. */
export function decodePayload (bytes: Uint8Array): HandshakePayload {
  let at = 0
  const readVarint = (): number => {
    let n = 0
    for (let shift = 0; shift < 49; shift += 7) {
      const b = bytes[at++]
      if (b === undefined) throw new Error('payload ends inside a varint')
      n += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return n
    }
    throw new Error('payload varint too long')
  }
  const fields = new Map<number, Uint8Array>()
  while (at < bytes.byteLength) {
    const key = readVarint()
    const field = Math.floor(key / 8)
    switch (key & 7) {
      case 0: readVarint(); break
      case 1: at += 8; break
      case 5: at += 4; break
      case 2: {
        const len = readVarint()
        if (at + len > bytes.byteLength) throw new Error('payload field runs past the end')
        fields.set(field, bytes.subarray(at, at + len))
        at += len
        break
      }
      default: throw new Error(`payload has wire type ${key & 7}`)
    }
    if (at > bytes.byteLength) throw new Error('payload field runs past the end')
  }
  const identityKey = fields.get(1)
  const identitySig = fields.get(2)
  if (identityKey === undefined || identitySig === undefined) throw new Error('payload lacks the identity key or its signature')
  return { identityKey, identitySig }
}
