/** Native ChaCha20-Poly1305 for the Noise cipher states (Node only: OpenSSL through `node:crypto`). */
import { createCipheriv, createDecipheriv } from 'node:crypto'
import { AEAD_TAG_BYTES, nonceBytes, type Aead } from './aead.ts'

/** `Aead` on `node:crypto`'s `chacha20-poly1305`. */
export const aead: Aead = {
  seal (key, n, ad, plaintext) {
    const cipher = createCipheriv('chacha20-poly1305', key, nonceBytes(n), { authTagLength: AEAD_TAG_BYTES })
    cipher.setAAD(ad, { plaintextLength: plaintext.byteLength })
    const out = new Uint8Array(plaintext.byteLength + AEAD_TAG_BYTES)
    // `update` of a stream cipher returns exactly its input's length; `final` returns nothing.
    out.set(cipher.update(plaintext), 0)
    cipher.final()
    out.set(cipher.getAuthTag(), plaintext.byteLength)
    return out
  },
  open (key, n, ad, ciphertext) {
    if (ciphertext.byteLength < AEAD_TAG_BYTES) throw new Error('ciphertext shorter than its tag')
    const body = ciphertext.subarray(0, ciphertext.byteLength - AEAD_TAG_BYTES)
    const decipher = createDecipheriv('chacha20-poly1305', key, nonceBytes(n), { authTagLength: AEAD_TAG_BYTES })
    decipher.setAAD(ad, { plaintextLength: body.byteLength })
    decipher.setAuthTag(ciphertext.subarray(body.byteLength))
    const out = decipher.update(body)
    decipher.final() // throws when the tag does not verify; `out` is then dropped unread
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
  }
}
export { aead as nodeAead }
