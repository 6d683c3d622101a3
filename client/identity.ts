/** A peer's identity: its private key and the peer id derived from it (Node and browser). */
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'

/** Key types a peer can have. */
export const KEY_TYPES = ['Ed25519', 'RSA', 'secp256k1'] as const
/** One key type. */
export type KeyType = typeof KEY_TYPES[number]

/** A private key with its peer id. */
export interface Identity {
  /** The private key (never logged, never sent). */
  readonly privateKey: PrivateKey
  /** The peer id as text (`12D3KooW...` for Ed25519, `Qm...` for RSA). */
  readonly peerId: string
  /** The key type. */
  readonly type: KeyType
}

function toHex (bytes: Uint8Array): string {
  let out = ''
  for (const b of bytes) out += b.toString(16).padStart(2, '0')
  return out
}

/** `bytes` random bytes in hex: dial ids and resume ids (`randomUUID` needs a secure context). */
export function randomHex (bytes: number): string {
  return toHex(crypto.getRandomValues(new Uint8Array(bytes)))
}

/** Hex of the protobuf public key, as `ss-join` carries it. */
export function publicKeyHex (identity: Identity): string {
  return toHex(publicKeyToProtobuf(identity.privateKey.publicKey))
}

/** Hex signature over the UTF-8 bytes of `nonce`. */
export async function signNonce (identity: Identity, nonce: string): Promise<string> {
  return toHex(await identity.privateKey.sign(new TextEncoder().encode(nonce)))
}

function fromKey (privateKey: PrivateKey): Identity {
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString(), type: privateKey.type as KeyType }
}

/** Make a new identity; Ed25519 unless asked otherwise (RSA keys are 2048 bits). */
export async function createIdentity (type: KeyType = 'Ed25519'): Promise<Identity> {
  if (!(KEY_TYPES as readonly string[]).includes(type)) throw new TypeError(`key type must be one of ${KEY_TYPES.join(', ')}, got ${String(type)}`)
  return fromKey(type === 'RSA' ? await generateKeyPair('RSA', 2048) : await generateKeyPair(type))
}

/** The protobuf bytes of the private key, to store. */
export function identityToBytes (identity: Identity): Uint8Array {
  return privateKeyToProtobuf(identity.privateKey)
}

/** An identity from stored protobuf bytes; throws a `TypeError` when they are not a key. */
export function identityFromBytes (bytes: Uint8Array): Identity {
  try {
    return fromKey(privateKeyFromProtobuf(bytes))
  } catch (err) {
    throw new TypeError(`not a private key: ${(err as Error).message}`, { cause: err })
  }
}
