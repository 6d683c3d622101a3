/** ChaCha20-Poly1305 for the Noise cipher states in the browser: `@noble/ciphers` (WebCrypto has none). */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js'
import { nonceBytes, type Aead } from './aead.ts'

/** `Aead` on `@noble/ciphers` (pure JavaScript; about ten times slower than OpenSSL). */
export const aead: Aead = {
  seal: (key, n, ad, plaintext) => chacha20poly1305(key, nonceBytes(n), ad).encrypt(plaintext),
  open: (key, n, ad, ciphertext) => chacha20poly1305(key, nonceBytes(n), ad).decrypt(ciphertext)
}
