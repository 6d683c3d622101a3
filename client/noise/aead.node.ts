/**
 * The Noise primitives in Node (`#noise-aead`, condition `node`): ChaCha20-Poly1305 and X25519
 * from OpenSSL through `node:crypto`. The browser gets `aead.browser.ts`.
 */
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { joinParts, partsLength } from '../parts.ts'
import { AEAD_TAG_BYTES, nonceBytes, type Aead } from './aead.ts'
import { DH_BYTES, type Dh } from './dh.ts'

/** `Aead` on `node:crypto`'s `chacha20-poly1305`. */
export const aead: Aead = {
  seal (key, n, ad, plaintext) {
    const sealed: Uint8Array[] = []
    aead.sealParts(key, n, ad, plaintext, sealed)
    return joinParts(sealed)
  },
  sealParts (key, n, ad, plaintext, into) {
    const cipher = createCipheriv('chacha20-poly1305', key, nonceBytes(n), { authTagLength: AEAD_TAG_BYTES })
    cipher.setAAD(ad, { plaintextLength: partsLength(plaintext) })
    // `update` of a stream cipher returns exactly its input's length (in a buffer of OpenSSL's
    // making, handed on as it is); `final` returns nothing. Parts go through it one after the
    // other, as a stream: never joined first.
    if (plaintext instanceof Uint8Array) {
      into.push(cipher.update(plaintext))
    } else {
      for (const part of plaintext) if (part.byteLength > 0) into.push(cipher.update(part))
    }
    cipher.final()
    into.push(cipher.getAuthTag())
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

// DER wrappers of raw X25519 keys (RFC 8410): PKCS#8 for a secret key, SPKI for a public key.
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')

/** Key objects of the secret keys made here, so a DH does not parse its DER again (a fifth of a handshake's CPU). */
const secretObjects = new WeakMap<Uint8Array, KeyObject>()

function secretKeyObject (secretKey: Uint8Array): KeyObject {
  return secretObjects.get(secretKey) ?? createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secretKey]), format: 'der', type: 'pkcs8' })
}

function rawPublic (key: KeyObject): Uint8Array {
  return new Uint8Array(key.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.byteLength))
}

/** `Dh` on `node:crypto`'s X25519. */
export const dh: Dh = {
  generateKeyPair () {
    const { privateKey, publicKey } = generateKeyPairSync('x25519')
    const secretKey = new Uint8Array(privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.byteLength))
    secretObjects.set(secretKey, privateKey)
    return { secretKey, publicKey: rawPublic(publicKey) }
  },
  keyPairFromSecret (secretKey) {
    return { secretKey, publicKey: rawPublic(createPublicKey(secretKeyObject(secretKey))) }
  },
  sharedSecret (secretKey, publicKey) {
    if (publicKey.byteLength !== DH_BYTES) throw new Error(`X25519 public key of ${publicKey.byteLength} bytes`)
    const out = diffieHellman({ privateKey: secretKeyObject(secretKey), publicKey: createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' }) })
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
  }
}

export { aead as nodeAead, dh as nodeDh }
