/**
 * The join crypto challenge: check that a public key owns a peer id, hand out a single-use
 * expiring nonce, and verify the signature over it.
 */
import { createHash, createPublicKey, randomUUID, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import type { PublicKey } from '@libp2p/interface'
import { StarsockError } from '../shared/errors.ts'
import { isHex } from '../shared/validate.ts'

const IDENTITY = 0x00
const SHA2_256 = 0x12

/** Pending challenges one socket may hold at once; the oldest is dropped past it. */
const MAX_PENDING_PER_SESSION = 16

/**
 * Decode a hex public key (libp2p protobuf `PublicKey`) and check that `peerId` derives from it.
 * Both derivations are accepted: the identity multihash (`12D3KooW...` for Ed25519) and the
 * SHA-256 one (`Qm...`, which older peer-id versions used for every key type). Throws
 * `E_CRYPTO` for bytes that are no key, `E_ID_MISMATCH` for a key that does not own the id.
 */
export function keyForPeerId (pubKeyHex: string, peerId: string): PublicKey {
  if (!isHex(pubKeyHex)) throw new StarsockError('E_CRYPTO')
  const bytes = Buffer.from(pubKeyHex, 'hex')
  let key: PublicKey
  try {
    key = publicKeyFromProtobuf(bytes)
  } catch {
    throw new StarsockError('E_CRYPTO')
  }
  let digest: Uint8Array
  let code: number
  try {
    const mh = peerIdFromString(peerId).toMultihash()
    digest = mh.digest
    code = mh.code
  } catch {
    throw new StarsockError('E_ID_MISMATCH')
  }
  const expected = code === IDENTITY ? bytes : code === SHA2_256 ? createHash('sha256').update(bytes).digest() : undefined
  if (expected === undefined || !Buffer.from(digest).equals(expected)) throw new StarsockError('E_ID_MISMATCH')
  return key
}

/** Node `KeyObject`s for Ed25519 keys, made once per key: `@libp2p/crypto` rebuilds one per verify. */
const ed25519Objects = new WeakMap<PublicKey, KeyObject>()

function ed25519Object (key: PublicKey): KeyObject {
  let obj = ed25519Objects.get(key)
  if (obj === undefined) {
    obj = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(key.raw).toString('base64url') }, format: 'jwk' })
    ed25519Objects.set(key, obj)
  }
  return obj
}

/**
 * Verify a hex signature over the UTF-8 bytes of `nonce`: settles with `true` when it verifies;
 * rejects with `E_SIGNATURE_INVALID`, or `E_CRYPTO` for bytes that are no signature.
 */
export async function verifyNonce (key: PublicKey, nonce: string, sigHex: string): Promise<true> {
  if (!isHex(sigHex) || sigHex.length === 0) throw new StarsockError('E_CRYPTO')
  const data = Buffer.from(nonce, 'utf8')
  const sig = Buffer.from(sigHex, 'hex')
  let ok: boolean
  try {
    ok = key.type === 'Ed25519' ? cryptoVerify(null, data, ed25519Object(key), sig) : await key.verify(data, sig)
  } catch {
    throw new StarsockError('E_CRYPTO')
  }
  if (!ok) throw new StarsockError('E_SIGNATURE_INVALID')
  return true
}

/** Whether a join proof may be a protobuf public key (field 1, the key type, comes first) rather than a signature. */
export function looksLikeKey (proof: string): boolean {
  return proof.startsWith('08')
}

/** A nonce handed out, waiting for its signature. */
interface Pending {
  nonce: string
  key: PublicKey
  expiresAt: number
}

/** Outstanding nonces per socket and address; each is used once and expires. */
export class ChallengeStore {
  private readonly pending = new Map<string, Map<string, Pending>>()

  constructor (private readonly ttlMs: number, private readonly now: () => number = Date.now) {}

  /** Make a fresh nonce (two UUIDs, 72 characters, as the original) for `sessionId` joining `addr`. */
  issue (sessionId: string, addr: string, key: PublicKey): string {
    let bySession = this.pending.get(sessionId)
    if (bySession === undefined) {
      bySession = new Map()
      this.pending.set(sessionId, bySession)
    }
    bySession.delete(addr)
    if (bySession.size >= MAX_PENDING_PER_SESSION) {
      const oldest = bySession.keys().next().value
      if (oldest !== undefined) bySession.delete(oldest)
    }
    const nonce = randomUUID() + randomUUID()
    bySession.set(addr, { nonce, key, expiresAt: this.now() + this.ttlMs })
    return nonce
  }

  /** Whether a nonce (even an expired one) is outstanding, so the next join carries a signature. */
  has (sessionId: string, addr: string): boolean {
    return this.pending.get(sessionId)?.has(addr) === true
  }

  /** Remove and return the outstanding nonce; throws `E_NONCE_EXPIRED` for none, or an expired one. */
  take (sessionId: string, addr: string): { nonce: string, key: PublicKey } {
    const bySession = this.pending.get(sessionId)
    const entry = bySession?.get(addr)
    if (bySession === undefined || entry === undefined) throw new StarsockError('E_NONCE_EXPIRED')
    bySession.delete(addr)
    if (bySession.size === 0) this.pending.delete(sessionId)
    if (this.now() > entry.expiresAt) {
      throw new StarsockError('E_NONCE_EXPIRED', 'Challenge nonce expired; join again')
    }
    return { nonce: entry.nonce, key: entry.key }
  }

  /** Forget everything a socket had outstanding. */
  dropSession (sessionId: string): void {
    this.pending.delete(sessionId)
  }
}
