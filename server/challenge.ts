/**
 * The join crypto challenge: check that a public key owns a peer id, hand out a single-use
 * expiring nonce, and verify the signature over it.
 */
import { createHash, createPublicKey, randomUUID, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import type { PublicKey } from '@libp2p/interface'
import { StarsockError } from '../shared/errors.ts'
import { isHex } from '../shared/validate.ts'

const IDENTITY = 0x00
const SHA2_256 = 0x12
/** `KeyType.RSA` in the libp2p `PublicKey` protobuf (the byte after field 1's tag, `0x08`). */
const RSA_KEY_TYPE = 0x00

/**
 * The key libraries (`@libp2p/crypto`, `@libp2p/peer-id`, `multiformats`: about 5 MiB of an idle
 * server's memory), loaded by `loadKeyLibraries` when the first join brings a key to check; a
 * server with the challenge off, or that nobody joined, never loads them.
 */
interface KeyLibraries {
  publicKeyFromProtobuf: typeof import('@libp2p/crypto/keys').publicKeyFromProtobuf
  base58btc: typeof import('multiformats/bases/base58').base58btc
  createDigest: typeof import('multiformats/hashes/digest').create
  peerIdFromString: typeof import('@libp2p/peer-id').peerIdFromString
}
let libraries: KeyLibraries | undefined
let loading: Promise<KeyLibraries> | undefined

/** Whether the key libraries are loaded (`keyForPeerId` and `KeyCache` need them). */
export function keyLibrariesLoaded (): boolean {
  return libraries !== undefined
}

/** Load the key libraries once; every caller until then awaits the same load (a failed one is tried again next time). */
export async function loadKeyLibraries (): Promise<void> {
  if (libraries !== undefined) return
  loading ??= Promise.all([import('@libp2p/crypto/keys'), import('multiformats/bases/base58'), import('multiformats/hashes/digest'), import('@libp2p/peer-id')])
    .then(([keys, base58, digest, peerId]) => ({ publicKeyFromProtobuf: keys.publicKeyFromProtobuf, base58btc: base58.base58btc, createDigest: digest.create, peerIdFromString: peerId.peerIdFromString }))
    .finally(() => { loading = undefined })
  libraries = await loading
}

/** The key libraries; a caller that did not await `loadKeyLibraries` first is a bug. */
function libs (): KeyLibraries {
  if (libraries === undefined) throw new Error('starsock: the key libraries are used before loadKeyLibraries()')
  return libraries
}

/** Pending challenges one socket may hold at once; the oldest is dropped past it. */
const MAX_PENDING_PER_SESSION = 16

/** Keys (with the peer ids they were found to own) `KeyCache` keeps by default. */
export const KEY_CACHE_ENTRIES = 512

/** Peer id spellings remembered per cached key (identity, SHA-256, and a couple of others). */
const MAX_IDS_PER_KEY = 4

/** One key a client presented, as it arrived (hex), parsed, with the peer ids it owns. */
interface CachedKey {
  key: PublicKey
  /** Peer ids checked to derive from this key. */
  ids: string[]
}

/**
 * Keys that joined lately, by the exact hex string a client sent (clients re-run the challenge
 * with the same key after every reconnect), so a rejoin skips decoding the key and deriving its
 * peer id. A hit needs the very same key bytes, and the peer id must have been checked against
 * them; the signature over a fresh nonce is still verified on every join. At most `maxEntries`,
 * the least recently used go first.
 */
export class KeyCache {
  private readonly entries = new Map<string, CachedKey>()

  constructor (private readonly maxEntries: number = KEY_CACHE_ENTRIES) {}

  /** Keys held now. */
  get size (): number {
    return this.entries.size
  }

  /** What `keyForPeerId` answers, from the cache when it can. */
  keyForPeerId (pubKeyHex: string, peerId: string): PublicKey {
    const hit = this.entries.get(pubKeyHex)
    if (hit !== undefined) {
      this.entries.delete(pubKeyHex) // re-inserted last: the map stays in use order
      this.entries.set(pubKeyHex, hit)
      if (!hit.ids.includes(peerId)) {
        checkOwnsId(Buffer.from(pubKeyHex, 'hex'), peerId)
        if (hit.ids.length < MAX_IDS_PER_KEY) hit.ids.push(peerId)
      }
      return hit.key
    }
    const key = keyForPeerId(pubKeyHex, peerId)
    this.entries.set(pubKeyHex, { key, ids: [peerId] })
    if (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value
      if (oldest !== undefined) this.entries.delete(oldest)
    }
    return key
  }
}

/**
 * Decode a hex public key (libp2p protobuf `PublicKey`) and check that `peerId` derives from it.
 * Both derivations are accepted: the identity multihash (`12D3KooW...` for Ed25519) and the
 * SHA-256 one (`Qm...`, which older peer-id versions used for every key type). Throws
 * `E_CRYPTO` for bytes that are no key, `E_ID_MISMATCH` for a key that does not own the id.
 * Needs the key libraries (`loadKeyLibraries`).
 */
export function keyForPeerId (pubKeyHex: string, peerId: string): PublicKey {
  if (!isHex(pubKeyHex)) throw new StarsockError('E_CRYPTO')
  const { publicKeyFromProtobuf, createDigest } = libs()
  const bytes = Buffer.from(pubKeyHex, 'hex')
  let key: PublicKey
  try {
    // An RSA key's multihash is the SHA-256 of these bytes: computed natively here (the library
    // would compute it in JavaScript).
    key = bytes[0] === 0x08 && bytes[1] === RSA_KEY_TYPE ? publicKeyFromProtobuf(bytes, createDigest(SHA2_256, sha256(bytes))) : publicKeyFromProtobuf(bytes)
  } catch {
    throw new StarsockError('E_CRYPTO')
  }
  checkOwnsId(bytes, peerId)
  return key
}

function sha256 (bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest()
}

/** Throws `E_ID_MISMATCH` unless `peerId` is the identity or SHA-256 multihash of the key bytes `bytes`. */
function checkOwnsId (bytes: Buffer, peerId: string): void {
  if (ownsBase58Id(bytes, peerId)) return
  let digest: Uint8Array
  let code: number
  try {
    const mh = libs().peerIdFromString(peerId).toMultihash()
    digest = mh.digest
    code = mh.code
  } catch {
    throw new StarsockError('E_ID_MISMATCH')
  }
  const expected = code === IDENTITY ? bytes : code === SHA2_256 ? sha256(bytes) : undefined
  if (expected === undefined || !Buffer.from(digest).equals(expected)) throw new StarsockError('E_ID_MISMATCH')
}

/**
 * The quick check for the spellings every client sends (`Qm...`, `12D3KooW...`: a bare base58btc
 * multihash): whether `peerId` decodes to exactly the identity or SHA-256 multihash of `bytes`.
 * `false` leaves the decision to the full parse (other spellings, or no match).
 */
function ownsBase58Id (bytes: Buffer, peerId: string): boolean {
  const first = peerId.charAt(0)
  if (first !== '1' && first !== 'Q') return false
  let mh: Uint8Array
  try {
    mh = libs().base58btc.baseDecode(peerId)
  } catch {
    return false
  }
  if (mh[0] === SHA2_256) return mh.length === 34 && mh[1] === 32 && sha256(bytes).equals(mh.subarray(2))
  // The identity multihash of a key short enough for a one-byte length (every Ed25519 and secp256k1 key).
  return mh[0] === IDENTITY && bytes.length < 128 && mh[1] === bytes.length && mh.length === bytes.length + 2 && bytes.equals(mh.subarray(2))
}

/** Node `KeyObject`s for the keys node verifies natively, made once per key: `@libp2p/crypto` rebuilds one per verify. */
const nativeObjects = new WeakMap<PublicKey, KeyObject>()

/**
 * Node's own key object for an Ed25519 or RSA key (from its JWK, the quickest import node has);
 * `undefined` for other types, verified through `@libp2p/crypto`. Exported for a test that fails
 * if the library's RSA keys stop carrying their JWK.
 */
export function nativeKeyOf (key: PublicKey): KeyObject | undefined {
  let obj = nativeObjects.get(key)
  if (obj !== undefined) return obj
  if (key.type === 'Ed25519') {
    obj = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(key.raw).toString('base64url') }, format: 'jwk' })
  } else if (key.type === 'RSA') {
    const jwk = (key as { jwk?: JsonWebKey }).jwk
    if (jwk?.kty !== 'RSA' || typeof jwk.n !== 'string' || typeof jwk.e !== 'string') return undefined
    obj = createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' })
  } else {
    return undefined
  }
  nativeObjects.set(key, obj)
  return obj
}

/**
 * Verify a hex signature over the UTF-8 bytes of `nonce`: settles with `true` when it verifies;
 * rejects with `E_SIGNATURE_INVALID`, or `E_CRYPTO` for bytes that are no signature.
 * Ed25519 and RSA (PKCS#1 v1.5 with SHA-256, as libp2p signs) are verified by node at once.
 */
export async function verifyNonce (key: PublicKey, nonce: string, sigHex: string): Promise<true> {
  if (!isHex(sigHex) || sigHex.length === 0) throw new StarsockError('E_CRYPTO')
  const data = Buffer.from(nonce, 'utf8')
  const sig = Buffer.from(sigHex, 'hex')
  let ok: boolean
  try {
    const native = nativeKeyOf(key)
    ok = native !== undefined ? cryptoVerify(key.type === 'RSA' ? 'sha256' : null, data, native, sig) : await key.verify(data, sig)
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
