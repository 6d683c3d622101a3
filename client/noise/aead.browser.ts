/**
 * The Noise primitives in the browser (`#noise-aead`, condition `default`): ChaCha20-Poly1305
 * from `@noble/ciphers` (WebCrypto has none) and X25519 from `@noble/curves`. Node gets
 * `aead.node.ts` (OpenSSL, about ten times faster).
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js'
import { nonceBytes, type Aead } from './aead.ts'
import { nobleDh } from './dh.ts'

/** `Aead` on `@noble/ciphers` (pure JavaScript). */
export const aead: Aead = {
  seal: (key, n, ad, plaintext) => chacha20poly1305(key, nonceBytes(n), ad).encrypt(plaintext),
  open: (key, n, ad, ciphertext) => chacha20poly1305(key, nonceBytes(n), ad).decrypt(ciphertext)
}

/** `Dh` on `@noble/curves`. */
export const dh = nobleDh
