/**
 * The Noise XX handshake of the libp2p `noise` spec: `Noise_XX_25519_ChaChaPoly_SHA256`, each side's
 * handshake payload binding its Noise static key to its identity key (`payload.ts`).
 *
 *   -> e
 *   <- e, ee, s, es   + responder's payload
 *   -> s, se          + initiator's payload
 *
 * State names follow the Noise spec (revision 34, sections 5.1 to 5.3). Primitives come from
 * `@noble/curves` (X25519), `@noble/hashes` (SHA-256, HMAC-based HKDF) and the injected `Aead`.
 */
import { x25519 } from '@noble/curves/ed25519.js'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { AEAD_TAG_BYTES, type Aead } from './aead.ts'
import { StarsockError } from '../../shared/errors.ts'
import { decodePayload, encodePayload, signedBytes } from './payload.ts'

/** The Noise protocol name; exactly 32 bytes, so it is the initial `h` unhashed (spec 5.2). */
export const NOISE_PROTOCOL_NAME = 'Noise_XX_25519_ChaChaPoly_SHA256'
const DH_BYTES = 32
/** Largest counter used: the spec reserves 2^64-1; JS numbers stay exact up to 2^53, far past any connection's life. */
export const MAX_NONCE = Number.MAX_SAFE_INTEGER

/** One direction's key and counter (spec 5.1). Never reuses a nonce: past `MAX_NONCE` it throws. */
export class CipherState {
  private n = 0
  constructor (private readonly aead: Aead, private k: Uint8Array | undefined = undefined) {}

  /** Whether a key is set (before the first `MixKey`, handshake bytes go in the clear). */
  get hasKey (): boolean { return this.k !== undefined }

  /** Messages sealed or opened so far. */
  get counter (): number { return this.n }

  /** Set a fresh key (counter back to 0). */
  initializeKey (k: Uint8Array): void { this.k = k; this.n = 0 }

  encryptWithAd (ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.k === undefined) return plaintext
    const out = this.aead.seal(this.k, this.take(), ad, plaintext)
    return out
  }

  /** Decrypt; throws (without moving the counter) when the tag does not verify. */
  decryptWithAd (ad: Uint8Array, ciphertext: Uint8Array): Uint8Array {
    if (this.k === undefined) return ciphertext
    if (this.n >= MAX_NONCE) throw new StarsockError('E_SECURE_AUTH', 'nonce exhausted: the connection must be closed')
    const out = this.aead.open(this.k, this.n, ad, ciphertext)
    this.n++
    return out
  }

  private take (): number {
    if (this.n >= MAX_NONCE) throw new StarsockError('E_SECURE_AUTH', 'nonce exhausted: the connection must be closed')
    return this.n++
  }
}

const EMPTY = new Uint8Array(0)

function concat (a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength)
  out.set(a, 0)
  out.set(b, a.byteLength)
  return out
}

/** Chaining key, handshake hash and the handshake's cipher state (spec 5.2). */
class SymmetricState {
  ck: Uint8Array
  h: Uint8Array
  readonly cs: CipherState

  constructor (private readonly aead: Aead, prologue: Uint8Array) {
    this.h = new TextEncoder().encode(NOISE_PROTOCOL_NAME)
    this.ck = this.h
    this.cs = new CipherState(aead)
    this.mixHash(prologue)
  }

  mixKey (ikm: Uint8Array): void {
    const out = hkdf(sha256, ikm, this.ck, undefined, 64)
    this.ck = out.slice(0, 32)
    this.cs.initializeKey(out.slice(32, 64))
  }

  mixHash (data: Uint8Array): void {
    this.h = sha256(concat(this.h, data))
  }

  encryptAndHash (plaintext: Uint8Array): Uint8Array {
    const ciphertext = this.cs.encryptWithAd(this.h, plaintext)
    this.mixHash(ciphertext)
    return ciphertext
  }

  decryptAndHash (ciphertext: Uint8Array): Uint8Array {
    const plaintext = this.cs.decryptWithAd(this.h, ciphertext)
    this.mixHash(ciphertext)
    return plaintext
  }

  /** The two transport cipher states: initiator-to-responder, responder-to-initiator. */
  split (): [CipherState, CipherState] {
    const out = hkdf(sha256, EMPTY, this.ck, undefined, 64)
    return [new CipherState(this.aead, out.slice(0, 32)), new CipherState(this.aead, out.slice(32, 64))]
  }
}

/** How handshake messages move: whole messages, each at most 65,535 bytes. */
export interface HandshakeTransport {
  send: (message: Uint8Array) => Promise<void>
  receive: () => Promise<Uint8Array>
}

/** What both sides know once the handshake is done. */
export interface HandshakeResult {
  /** The other side's verified peer id (derived from the identity key it proved). */
  remotePeer: string
  /** The other side's identity public key. */
  remoteIdentity: PublicKey
  /** Cipher state for what this side sends. */
  send: CipherState
  /** Cipher state for what this side receives. */
  receive: CipherState
  /** The handshake hash: the same on both sides, unique to this session (channel binding). */
  handshakeHash: Uint8Array
}

/** Options of one handshake. */
export interface HandshakeOptions {
  /** This side's identity key: signs the Noise static key. */
  privateKey: PrivateKey
  aead: Aead
  /** Bytes both sides mix in first (the preamble they exchanged), so a changed preamble fails. */
  prologue: Uint8Array
  /** The peer id this side expects (the dialer: the one it dialed); another fails with `E_PEER_ID_MISMATCH`. */
  expectedPeer?: string
}

async function makePayload (privateKey: PrivateKey, staticPublic: Uint8Array): Promise<Uint8Array> {
  const identitySig = await privateKey.sign(signedBytes(staticPublic))
  return encodePayload({ identityKey: publicKeyToProtobuf(privateKey.publicKey), identitySig })
}

async function verifyPayload (bytes: Uint8Array, remoteStatic: Uint8Array, expectedPeer: string | undefined): Promise<{ remotePeer: string, remoteIdentity: PublicKey }> {
  let remoteIdentity: PublicKey
  let ok: boolean
  try {
    const payload = decodePayload(bytes)
    remoteIdentity = publicKeyFromProtobuf(payload.identityKey)
    ok = await remoteIdentity.verify(signedBytes(remoteStatic), payload.identitySig)
  } catch (err) {
    throw new StarsockError('E_SECURE_HANDSHAKE', `bad handshake payload: ${(err as Error).message}`, { cause: err })
  }
  if (!ok) throw new StarsockError('E_SECURE_HANDSHAKE', 'the identity signature over the Noise static key does not verify')
  const remotePeer = peerIdFromPublicKey(remoteIdentity).toString()
  if (expectedPeer !== undefined && remotePeer !== expectedPeer) {
    throw new StarsockError('E_PEER_ID_MISMATCH', `expected peer ${expectedPeer}, but the other side proved it is ${remotePeer}`)
  }
  return { remotePeer, remoteIdentity }
}

function dh (privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  try {
    return x25519.getSharedSecret(privateKey, publicKey) // throws on a low-order point (all-zero result)
  } catch (err) {
    throw new StarsockError('E_SECURE_HANDSHAKE', 'bad X25519 public key in the handshake', { cause: err })
  }
}

function keyPair (): { secretKey: Uint8Array, publicKey: Uint8Array } {
  const secretKey = x25519.utils.randomSecretKey()
  return { secretKey, publicKey: x25519.getPublicKey(secretKey) }
}

function splitAt (message: Uint8Array, at: number, what: string): [Uint8Array, Uint8Array] {
  if (message.byteLength < at) throw new StarsockError('E_SECURE_HANDSHAKE', `handshake message too short for ${what}`)
  return [message.subarray(0, at), message.subarray(at)]
}

/** Run XX as the initiator (the dialer); settles once both sides are authenticated. */
export async function initiateHandshake (io: HandshakeTransport, options: HandshakeOptions): Promise<HandshakeResult> {
  const ss = new SymmetricState(options.aead, options.prologue)
  const s = keyPair()
  const e = keyPair()
  // -> e (and an empty payload, as libp2p sends)
  ss.mixHash(e.publicKey)
  await io.send(concat(e.publicKey, ss.encryptAndHash(EMPTY)))
  // <- e, ee, s, es
  const msg2 = await io.receive()
  const [re, rest2] = splitAt(msg2, DH_BYTES, 'e')
  ss.mixHash(re)
  ss.mixKey(dh(e.secretKey, re))
  const [rsSealed, payload2] = splitAt(rest2, DH_BYTES + AEAD_TAG_BYTES, 's')
  const rs = decrypt(ss, rsSealed)
  ss.mixKey(dh(e.secretKey, rs))
  const remote = await verifyPayload(decrypt(ss, payload2), rs, options.expectedPeer)
  // -> s, se
  const sSealed = ss.encryptAndHash(s.publicKey)
  ss.mixKey(dh(s.secretKey, re))
  const payload3 = ss.encryptAndHash(await makePayload(options.privateKey, s.publicKey))
  await io.send(concat(sSealed, payload3))
  const [c1, c2] = ss.split()
  return { ...remote, send: c1, receive: c2, handshakeHash: ss.h }
}

/** Run XX as the responder (the listener); settles once both sides are authenticated. */
export async function respondHandshake (io: HandshakeTransport, options: HandshakeOptions): Promise<HandshakeResult> {
  const ss = new SymmetricState(options.aead, options.prologue)
  const s = keyPair()
  const e = keyPair()
  // -> e
  const msg1 = await io.receive()
  const [re, payload1] = splitAt(msg1, DH_BYTES, 'e')
  ss.mixHash(re)
  ss.decryptAndHash(payload1) // no key yet: mixed into h, ignored
  // <- e, ee, s, es
  ss.mixHash(e.publicKey)
  ss.mixKey(dh(e.secretKey, re))
  const sSealed = ss.encryptAndHash(s.publicKey)
  ss.mixKey(dh(s.secretKey, re))
  const payload2 = ss.encryptAndHash(await makePayload(options.privateKey, s.publicKey))
  await io.send(concat(concat(e.publicKey, sSealed), payload2))
  // -> s, se
  const msg3 = await io.receive()
  const [rsSealed, payload3] = splitAt(msg3, DH_BYTES + AEAD_TAG_BYTES, 's')
  const rs = decrypt(ss, rsSealed)
  ss.mixKey(dh(e.secretKey, rs))
  const remote = await verifyPayload(decrypt(ss, payload3), rs, options.expectedPeer)
  const [c1, c2] = ss.split()
  return { ...remote, send: c2, receive: c1, handshakeHash: ss.h }
}

function decrypt (ss: SymmetricState, ciphertext: Uint8Array): Uint8Array {
  try {
    return ss.decryptAndHash(ciphertext)
  } catch (err) {
    if (err instanceof StarsockError) throw err
    throw new StarsockError('E_SECURE_HANDSHAKE', 'a handshake message failed authentication (forged, replayed or from another session)', { cause: err })
  }
}
