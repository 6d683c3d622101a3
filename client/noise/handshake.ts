/**
 * The Noise XX handshake of the libp2p `noise` spec: `Noise_XX_25519_ChaChaPoly_SHA256`, each side's
 * handshake payload binding its Noise static key to its identity key (`payload.ts`).
 *
 *   -> e
 *   <- e, ee, s, es   + responder's payload
 *   -> s, se          + initiator's payload
 *
 * State names follow the Noise spec (revision 34, sections 5.1 to 5.3). Primitives come from
 * `@noble/hashes` (SHA-256, HMAC-based HKDF), the injected `Aead` and the injected `Dh` (X25519:
 * `node:crypto` in Node, `@noble/curves` in the browser; `dh.ts`). `XXHandshake` is the message
 * level (any payloads: what the Noise test vectors check); `initiateHandshake` /
 * `respondHandshake` add the libp2p payload (identity key and signature) and its checks.
 */
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { publicKeyFromProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import type { Parts } from '../parts.ts'
import { AEAD_TAG_BYTES, type Aead } from './aead.ts'
import { DH_BYTES, nobleDh, type Dh, type DhKeyPair } from './dh.ts'
import { StarsockError } from '../../shared/errors.ts'
import { decodePayload, encodePayload, signedBytes } from './payload.ts'

/** The Noise protocol name; exactly 32 bytes, so it is the initial `h` unhashed (spec 5.2). */
export const NOISE_PROTOCOL_NAME = 'Noise_XX_25519_ChaChaPoly_SHA256'
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

  /** Move the counter forward to `n`, never back (tests: a connection near nonce exhaustion). */
  skipTo (n: number): void {
    if (!Number.isSafeInteger(n) || n < this.n) throw new RangeError(`a nonce counter only moves forward, to a safe integer; got ${String(n)}`)
    this.n = n
  }

  /** Set a fresh key (counter back to 0). */
  initializeKey (k: Uint8Array): void { this.k = k; this.n = 0 }

  encryptWithAd (ad: Uint8Array, plaintext: Uint8Array): Uint8Array {
    if (this.k === undefined) return plaintext
    const out = this.aead.seal(this.k, this.take(), ad, plaintext)
    return out
  }

  /** `encryptWithAd` (with a key) of `plaintext` (whole, or its parts in order), its ciphertext and tag pushed onto `into` as the cipher made them. */
  encryptParts (ad: Uint8Array, plaintext: Parts, into: Uint8Array[]): void {
    if (this.k === undefined) throw new Error('no key: a transport cipher state always has one')
    this.aead.sealParts(this.k, this.take(), ad, plaintext, into)
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

/** A Noise static key with its libp2p handshake payload (the identity key's signature over it): made once per peer. */
export interface StaticKey {
  keyPair: DhKeyPair
  /** The encoded `NoiseHandshakePayload` that binds `keyPair.publicKey` to the identity. */
  payload: Uint8Array
}

/** Options of one handshake. */
export interface HandshakeOptions {
  /** This side's identity key: signs the Noise static key (unless `staticKey` brings its payload). */
  privateKey: PrivateKey
  aead: Aead
  /** X25519. @default nobleDh */
  dh?: Dh
  /** This side's static key and payload, made once per peer (`makeStaticKey`). @default a fresh one for this handshake */
  staticKey?: StaticKey
  /** Bytes both sides mix in first (the preamble they exchanged), so a changed preamble fails. */
  prologue: Uint8Array
  /** The peer id this side expects (the dialer: the one it dialed); another fails with `E_PEER_ID_MISMATCH`. */
  expectedPeer?: string
}

/** A fresh static key pair and its payload, signed by `privateKey` (one signature). */
export async function makeStaticKey (privateKey: PrivateKey, dh: Dh = nobleDh): Promise<StaticKey> {
  const keyPair = dh.generateKeyPair()
  const identitySig = await privateKey.sign(signedBytes(keyPair.publicKey))
  return { keyPair, payload: encodePayload({ identityKey: publicKeyToProtobuf(privateKey.publicKey), identitySig }) }
}

/** The only RSA public exponent accepted (what every libp2p implementation makes): a huge one makes each verification cost milliseconds of blocking CPU. */
const RSA_EXPONENT_65537 = 'AQAB' // base64url of 0x010001, as the key's JWK `e`

/**
 * Check the other side's payload: the peer id its identity key gives is compared with the one
 * expected first, and odd keys are refused, before the (costly) signature verification.
 */
async function verifyPayload (bytes: Uint8Array, remoteStatic: Uint8Array, expectedPeer: string | undefined): Promise<{ remotePeer: string, remoteIdentity: PublicKey }> {
  let remoteIdentity: PublicKey
  let identitySig: Uint8Array
  let remotePeer: string
  try {
    const payload = decodePayload(bytes)
    remoteIdentity = publicKeyFromProtobuf(payload.identityKey)
    identitySig = payload.identitySig
    remotePeer = peerIdFromPublicKey(remoteIdentity).toString()
  } catch (err) {
    throw new StarsockError('E_SECURE_HANDSHAKE', `bad handshake payload: ${(err as Error).message}`, { cause: err })
  }
  if (expectedPeer !== undefined && remotePeer !== expectedPeer) {
    throw new StarsockError('E_PEER_ID_MISMATCH', `expected peer ${expectedPeer}, but the other side presented the identity key of ${remotePeer}`)
  }
  if (remoteIdentity.type === 'RSA' && (remoteIdentity as { jwk?: { e?: unknown } }).jwk?.e !== RSA_EXPONENT_65537) {
    throw new StarsockError('E_SECURE_HANDSHAKE', 'refused an RSA identity key whose public exponent is not 65537')
  }
  let ok: boolean
  try {
    ok = await remoteIdentity.verify(signedBytes(remoteStatic), identitySig)
  } catch (err) {
    throw new StarsockError('E_SECURE_HANDSHAKE', `bad handshake payload: ${(err as Error).message}`, { cause: err })
  }
  if (!ok) throw new StarsockError('E_SECURE_HANDSHAKE', 'the identity signature over the Noise static key does not verify')
  return { remotePeer, remoteIdentity }
}

function splitAt (message: Uint8Array, at: number, what: string): [Uint8Array, Uint8Array] {
  if (message.byteLength < at) throw new StarsockError('E_SECURE_HANDSHAKE', `handshake message too short for ${what}`)
  return [message.subarray(0, at), message.subarray(at)]
}

/** Options of `XXHandshake`. */
export interface XXOptions {
  aead: Aead
  dh: Dh
  prologue: Uint8Array
  /** This side's static key pair. */
  s: DhKeyPair
  /** This side's ephemeral key pair. @default a fresh one (inject only for the Noise test vectors) */
  e?: DhKeyPair
}

/**
 * The XX pattern, message by message, with any payloads (Noise spec 7.5):
 *   -> e
 *   <- e, ee, s, es
 *   -> s, se
 * Each method is one side's step, in order; a message that does not authenticate throws
 * `E_SECURE_HANDSHAKE`.
 */
export class XXHandshake {
  private readonly ss: SymmetricState
  private readonly dh: Dh
  private readonly s: DhKeyPair
  private readonly e: DhKeyPair
  private re: Uint8Array | undefined
  /** The other side's static public key, once received. */
  rs: Uint8Array | undefined

  constructor (options: XXOptions) {
    this.ss = new SymmetricState(options.aead, options.prologue)
    this.dh = options.dh
    this.s = options.s
    this.e = options.e ?? options.dh.generateKeyPair()
  }

  /** The handshake hash so far (after the last message: the same on both sides). */
  get handshakeHash (): Uint8Array { return this.ss.h }

  /** Initiator: -> e, payload (in the clear: no key yet). */
  writeMessage1 (payload: Uint8Array): Uint8Array {
    this.ss.mixHash(this.e.publicKey)
    return concat(this.e.publicKey, this.ss.encryptAndHash(payload))
  }

  /** Responder: read -> e; returns the payload. */
  readMessage1 (message: Uint8Array): Uint8Array {
    const [re, payload] = splitAt(message, DH_BYTES, 'e')
    this.re = re.slice()
    this.ss.mixHash(this.re)
    return this.decrypt(payload)
  }

  /** Responder: <- e, ee, s, es, payload. */
  writeMessage2 (payload: Uint8Array): Uint8Array {
    const re = this.re as Uint8Array
    this.ss.mixHash(this.e.publicKey)
    this.ss.mixKey(this.agree(this.e.secretKey, re))
    const sSealed = this.ss.encryptAndHash(this.s.publicKey)
    this.ss.mixKey(this.agree(this.s.secretKey, re))
    return concat(concat(this.e.publicKey, sSealed), this.ss.encryptAndHash(payload))
  }

  /** Initiator: read <- e, ee, s, es; returns the payload (`rs` is then set). */
  readMessage2 (message: Uint8Array): Uint8Array {
    const [re, rest] = splitAt(message, DH_BYTES, 'e')
    this.re = re.slice()
    this.ss.mixHash(this.re)
    this.ss.mixKey(this.agree(this.e.secretKey, this.re))
    const [rsSealed, payload] = splitAt(rest, DH_BYTES + AEAD_TAG_BYTES, 's')
    this.rs = this.decrypt(rsSealed)
    this.ss.mixKey(this.agree(this.e.secretKey, this.rs))
    return this.decrypt(payload)
  }

  /** Initiator: -> s, se, payload. */
  writeMessage3 (payload: Uint8Array): Uint8Array {
    const sSealed = this.ss.encryptAndHash(this.s.publicKey)
    this.ss.mixKey(this.agree(this.s.secretKey, this.re as Uint8Array))
    return concat(sSealed, this.ss.encryptAndHash(payload))
  }

  /** Responder: read -> s, se; returns the payload (`rs` is then set). */
  readMessage3 (message: Uint8Array): Uint8Array {
    const [rsSealed, payload] = splitAt(message, DH_BYTES + AEAD_TAG_BYTES, 's')
    this.rs = this.decrypt(rsSealed)
    this.ss.mixKey(this.agree(this.e.secretKey, this.rs))
    return this.decrypt(payload)
  }

  /** The transport cipher states: [initiator to responder, responder to initiator]. */
  split (): [CipherState, CipherState] {
    return this.ss.split()
  }

  private agree (secretKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
    let out: Uint8Array
    try {
      out = this.dh.sharedSecret(secretKey, publicKey)
    } catch (err) {
      throw new StarsockError('E_SECURE_HANDSHAKE', 'bad X25519 public key in the handshake', { cause: err })
    }
    // A low-order point gives all zeros: refuse it whichever implementation computed it.
    if (out.every((b) => b === 0)) throw new StarsockError('E_SECURE_HANDSHAKE', 'bad X25519 public key in the handshake (low order)')
    return out
  }

  private decrypt (ciphertext: Uint8Array): Uint8Array {
    try {
      return this.ss.decryptAndHash(ciphertext)
    } catch (err) {
      if (err instanceof StarsockError) throw err
      throw new StarsockError('E_SECURE_HANDSHAKE', 'a handshake message failed authentication (forged, replayed or from another session)', { cause: err })
    }
  }
}

/** Run XX as the initiator (the dialer) with the libp2p payloads; settles once both sides are authenticated. */
export async function initiateHandshake (io: HandshakeTransport, options: HandshakeOptions): Promise<HandshakeResult> {
  const dh = options.dh ?? nobleDh
  const staticKey = options.staticKey ?? await makeStaticKey(options.privateKey, dh)
  const hs = new XXHandshake({ aead: options.aead, dh, prologue: options.prologue, s: staticKey.keyPair })
  await io.send(hs.writeMessage1(EMPTY)) // an empty payload, as libp2p sends
  const payload2 = hs.readMessage2(await io.receive())
  const remote = await verifyPayload(payload2, hs.rs as Uint8Array, options.expectedPeer)
  await io.send(hs.writeMessage3(staticKey.payload))
  const [c1, c2] = hs.split()
  return { ...remote, send: c1, receive: c2, handshakeHash: hs.handshakeHash }
}

/** Run XX as the responder (the listener) with the libp2p payloads; settles once both sides are authenticated. */
export async function respondHandshake (io: HandshakeTransport, options: HandshakeOptions): Promise<HandshakeResult> {
  const dh = options.dh ?? nobleDh
  const staticKey = options.staticKey ?? await makeStaticKey(options.privateKey, dh)
  const hs = new XXHandshake({ aead: options.aead, dh, prologue: options.prologue, s: staticKey.keyPair })
  hs.readMessage1(await io.receive()) // its payload (libp2p: empty) is mixed into h and ignored
  await io.send(hs.writeMessage2(staticKey.payload))
  const payload3 = hs.readMessage3(await io.receive())
  const remote = await verifyPayload(payload3, hs.rs as Uint8Array, options.expectedPeer)
  const [c1, c2] = hs.split()
  return { ...remote, send: c2, receive: c1, handshakeHash: hs.handshakeHash }
}
