/**
 * The Noise primitives in the browser (`#noise-aead`, condition `default`): ChaCha20-Poly1305
 * from `@noble/ciphers` (WebCrypto has none) and X25519 from `@noble/curves`. Node gets
 * `aead.node.ts` (OpenSSL, about ten times faster).
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js'
import { joinParts } from '../parts.ts'
import { AEAD_TAG_BYTES, nonceBytes, type Aead } from './aead.ts'
import { nobleDh } from './dh.ts'

/** `Aead` on `@noble/ciphers` (pure JavaScript). */
export const aead: Aead = {
  seal: (key, n, ad, plaintext) => chacha20poly1305(key, nonceBytes(n), ad).encrypt(plaintext),
  // @noble/ciphers reads its plaintext whole: parts are joined first (a copy, in the browser only).
  sealParts: (key, n, ad, plaintext, into) => { into.push(chacha20poly1305(key, nonceBytes(n), ad).encrypt(joinParts(plaintext))) },
  sealInto: (key, n, ad, plaintext, out, at) => {
    const whole = joinParts(plaintext)
    chacha20poly1305(key, nonceBytes(n), ad).encrypt(whole, out.subarray(at, at + whole.byteLength + AEAD_TAG_BYTES))
  },
  open: (key, n, ad, ciphertext) => chacha20poly1305(key, nonceBytes(n), ad).decrypt(ciphertext)
}

/** `Dh` on `@noble/curves`. */
export const dh = nobleDh
