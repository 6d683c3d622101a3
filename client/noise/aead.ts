/**
 * The AEAD a Noise cipher state uses (ChaChaPoly: ChaCha20-Poly1305, RFC 8439), injected so Node
 * runs the native one (`aead.node.ts`) and the browser a JavaScript one (`@noble/ciphers`; WebCrypto
 * has no ChaCha20-Poly1305).
 */

import type { Parts } from '../parts.ts'

/** Authentication tag bytes appended to every ciphertext. */
export const AEAD_TAG_BYTES = 16

/** ChaCha20-Poly1305 with Noise's nonce: 4 zero bytes, then the 64-bit counter little-endian. */
export interface Aead {
  /** Encrypt `plaintext` under `key` and counter `n` with associated data `ad`; returns ciphertext and tag. */
  seal: (key: Uint8Array, n: number, ad: Uint8Array, plaintext: Uint8Array) => Uint8Array
  /**
   * `seal` of a plaintext given whole or as its parts (in order), its output pushed onto `into` as
   * the cipher made it: the ciphertext (one or more buffers), then the tag; no copy of its own.
   */
  sealParts: (key: Uint8Array, n: number, ad: Uint8Array, plaintext: Parts, into: Uint8Array[]) => void
  /** Decrypt and check; throws on a tag that does not verify (never returns unauthenticated bytes). */
  open: (key: Uint8Array, n: number, ad: Uint8Array, ciphertext: Uint8Array) => Uint8Array
}

/** The 12-byte nonce of counter `n` (Noise spec 12.3: 32 bits of zeros, then little-endian 64-bit `n`). */
export function nonceBytes (n: number): Uint8Array {
  const nonce = new Uint8Array(12)
  const view = new DataView(nonce.buffer)
  view.setUint32(4, n >>> 0, true)
  view.setUint32(8, Math.floor(n / 2 ** 32), true)
  return nonce
}
