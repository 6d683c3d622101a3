/**
 * X25519 for the Noise handshake, injected like the AEAD: `node:crypto` in Node (`aead.node.ts`,
 * through `#noise-aead`), `@noble/curves` here (the browser, and the default).
 */
import { x25519 } from '@noble/curves/ed25519.js'

/** X25519 key and shared-secret bytes. */
export const DH_BYTES = 32

/** An X25519 key pair, raw 32-byte keys. */
export interface DhKeyPair {
  secretKey: Uint8Array
  publicKey: Uint8Array
}

/** X25519 (Noise spec 12.1: `GENERATE_KEYPAIR`, `DH`). */
export interface Dh {
  generateKeyPair: () => DhKeyPair
  /** The key pair of a given secret key (the Noise test vectors give only secret keys). */
  keyPairFromSecret: (secretKey: Uint8Array) => DhKeyPair
  /** The shared secret; throws, or returns all zeros, for a low-order public key (the caller refuses both). */
  sharedSecret: (secretKey: Uint8Array, publicKey: Uint8Array) => Uint8Array
}

/** `Dh` on `@noble/curves` (pure JavaScript). */
export const nobleDh: Dh = {
  generateKeyPair () {
    const secretKey = x25519.utils.randomSecretKey()
    return { secretKey, publicKey: x25519.getPublicKey(secretKey) }
  },
  keyPairFromSecret: (secretKey) => ({ secretKey, publicKey: x25519.getPublicKey(secretKey) }),
  sharedSecret: (secretKey, publicKey) => x25519.getSharedSecret(secretKey, publicKey)
}
