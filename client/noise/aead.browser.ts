/**
 * The Noise primitives in the browser (`#noise-aead`, condition `default`): ChaCha20-Poly1305
 * from `@noble/ciphers` (WebCrypto has none) and X25519 from `@noble/curves`. Node gets
 * `aead.node.ts` (OpenSSL, about ten times faster).
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js'
import { joinParts } from '../parts.ts'
import { nonceBytes, type Aead } from './aead.ts'
import { nobleDh } from './dh.ts'

/** `Aead` on `@noble/ciphers` (pure JavaScript). */
export const aead: Aead = {
  seal: (key, n, ad, plaintext) => chacha20poly1305(key, nonceBytes(n), ad).encrypt(plaintext),
  // @noble/ciphers reads its plaintext whole: parts are joined first (a copy, in the browser only).
  // Each message is sealed into a buffer of its own, which the browser's link then joins into the
  // chunk: noble XORs word by word only on 4-byte aligned memory, and sealed straight into the
  // chunk (messages at 7 + k * 65,537) three messages in four are not; that measured 8% to 10%
  // slower in V8 than sealing here and copying (`encrypt(plaintext, output)`, 8 messages of 65,519).
  sealParts: (key, n, ad, plaintext, into) => { into.push(chacha20poly1305(key, nonceBytes(n), ad).encrypt(joinParts(plaintext))) },
  open: (key, n, ad, ciphertext) => chacha20poly1305(key, nonceBytes(n), ad).decrypt(ciphertext)
}

/** `Dh` on `@noble/curves`. */
export const dh = nobleDh
