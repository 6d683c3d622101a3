import { createHash } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { base58btc } from 'multiformats/bases/base58'
import { StarsockError } from '../../shared/errors.ts'
import { ChallengeStore, KeyCache, keyForPeerId, keyLibrariesLoaded, loadKeyLibraries, nativeKeyOf, verifyNonce } from '../../server/challenge.ts'

type KeyType = 'Ed25519' | 'secp256k1' | 'RSA'
const KEY_TYPES: KeyType[] = ['Ed25519', 'secp256k1', 'RSA']

const keys = new Map<KeyType, PrivateKey>()
let otherEd25519: PrivateKey
let otherRsa: PrivateKey

// Before anything asked for them (read as the file loads, before `beforeAll`).
const loadedAtStart = keyLibrariesLoaded()
const errorBeforeLoad = ((): unknown => { try { return keyForPeerId('08011220', 'x') } catch (err) { return err } })()

it('loads the key libraries only when asked, once, for every caller at once', async () => {
  expect(loadedAtStart).toBe(false)
  expect(String(errorBeforeLoad)).toMatch(/before loadKeyLibraries/)
  await Promise.all([loadKeyLibraries(), loadKeyLibraries()])
  expect(keyLibrariesLoaded()).toBe(true)
})

beforeAll(async () => {
  await loadKeyLibraries()
  keys.set('Ed25519', await generateKeyPair('Ed25519'))
  keys.set('secp256k1', await generateKeyPair('secp256k1'))
  keys.set('RSA', await generateKeyPair('RSA', 1024)) // small for speed; the check does not care
  otherEd25519 = await generateKeyPair('Ed25519')
  otherRsa = await generateKeyPair('RSA', 1024)
})

function key (type: KeyType): PrivateKey {
  const k = keys.get(type)
  if (k === undefined) throw new Error(`no ${type} key generated`)
  return k
}

const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

/** The protobuf public key as hex, as legacy clients send it in `ss-join`. */
const pubHex = (k: PrivateKey): string => toHex(publicKeyToProtobuf(k.publicKey))

/** The SHA-256 peer id (`Qm...`), computed here by hand: multihash 0x12 0x20 + digest, base58btc. */
function qmId (k: PrivateKey): string {
  const digest = createHash('sha256').update(publicKeyToProtobuf(k.publicKey)).digest()
  return base58btc.baseEncode(Uint8Array.from([0x12, 0x20, ...digest]))
}

/** The id peer-id derives today (identity multihash for Ed25519 and secp256k1, SHA-256 for RSA). */
const libId = (k: PrivateKey): string => peerIdFromPublicKey(k.publicKey).toString()

/** What `run` returns, or the error it throws. */
function caught (run: () => unknown): unknown {
  try {
    return run()
  } catch (err) {
    return err
  }
}

/** What `run` settles with, or the error it rejects with. */
async function settled (run: () => unknown): Promise<unknown> {
  try {
    return await run()
  } catch (err) {
    return err
  }
}

/** The code of a `StarsockError` result, or `'ok'`. */
function outcome (result: unknown): string {
  if (result instanceof StarsockError) return result.code
  return 'ok'
}

async function sign (k: PrivateKey, nonce: string): Promise<string> {
  return toHex(await k.sign(new TextEncoder().encode(nonce)))
}

describe('keyForPeerId', () => {
  it.each<[KeyType, string, (k: PrivateKey) => string]>([
    ['Ed25519', 'identity (12D3KooW...)', libId],
    ['Ed25519', 'sha256 (Qm...)', qmId],
    ['secp256k1', 'identity (16Uiu2...)', libId],
    ['secp256k1', 'sha256 (Qm...)', qmId],
    ['RSA', 'sha256 (Qm...)', qmId]
  ])('accepts a %s key with its %s id', (type, _, idOf) => {
    const k = key(type)
    const result = keyForPeerId(pubHex(k), idOf(k))
    expect(outcome(result)).toBe('ok')
    expect(result.equals(k.publicKey)).toBe(true)
  })

  it('computes the same Qm id as peer-id for RSA (the hand-made reference is right)', () => {
    expect(qmId(key('RSA'))).toBe(libId(key('RSA')))
    expect(qmId(key('Ed25519'))).toMatch(/^Qm/)
  })

  it('accepts upper-case hex', () => {
    const k = key('Ed25519')
    expect(outcome(keyForPeerId(pubHex(k).toUpperCase(), libId(k)))).toBe('ok')
  })

  it.each<[string, () => [string, string]]>([
    ['the identity id of another key', () => [pubHex(key('Ed25519')), libId(otherEd25519)]],
    ['the Qm id of another key', () => [pubHex(key('Ed25519')), qmId(otherEd25519)]],
    ['an RSA key with an Ed25519 id', () => [pubHex(key('RSA')), libId(key('Ed25519'))]],
    ['an Ed25519 key with an RSA id', () => [pubHex(key('Ed25519')), libId(key('RSA'))]],
    ['an id that is not a peer id', () => [pubHex(key('Ed25519')), 'notapeerid']],
    ['an empty id', () => [pubHex(key('Ed25519')), '']],
    ['a Qm id with a truncated digest', () => [pubHex(key('RSA')), libId(key('RSA')).slice(0, -2)]]
  ])('refuses %s with E_ID_MISMATCH', (_, args) => {
    const [hex, id] = args()
    expect(outcome(caught(() => keyForPeerId(hex, id)))).toBe('E_ID_MISMATCH')
  })

  it.each<[string, string]>([
    ['non-hex', 'zz'],
    ['odd-length hex', 'abc'],
    ['hex with a prefix', '0x0801'],
    ['the empty string', ''],
    ['hex that is no key', 'deadbeef'],
    ['a truncated Ed25519 key', '08011220']
  ])('refuses %s with E_CRYPTO', (_, hex) => {
    expect(outcome(caught(() => keyForPeerId(hex, libId(key('Ed25519')))))).toBe('E_CRYPTO')
  })
})

describe('verifyNonce', () => {
  const NONCE = '5d1c2f9e-4b1a-4a0e-8f3b-2c9d7e6f5a4b' + '0b9d6f0e-3c1a-4c9e-9d55-7f1b2a3c4d5e'

  it.each(KEY_TYPES)('accepts a real %s signature over the nonce', async (type) => {
    const k = key(type)
    expect(await verifyNonce(k.publicKey, NONCE, await sign(k, NONCE))).toBe(true)
  })

  it.each(KEY_TYPES)('refuses a %s signature over another nonce with E_SIGNATURE_INVALID', async (type) => {
    const k = key(type)
    expect(outcome(await settled(async () => await verifyNonce(k.publicKey, NONCE, await sign(k, NONCE + 'x'))))).toBe('E_SIGNATURE_INVALID')
  })

  it('refuses a signature by another key with E_SIGNATURE_INVALID', async () => {
    expect(outcome(await settled(async () => await verifyNonce(key('Ed25519').publicKey, NONCE, await sign(otherEd25519, NONCE))))).toBe('E_SIGNATURE_INVALID')
  })

  it('refuses a real signature with one bit flipped with E_SIGNATURE_INVALID', async () => {
    const sig = Buffer.from(await sign(key('Ed25519'), NONCE), 'hex')
    sig[10] = (sig[10] as number) ^ 1
    expect(outcome(await settled(async () => await verifyNonce(key('Ed25519').publicKey, NONCE, sig.toString('hex'))))).toBe('E_SIGNATURE_INVALID')
  })

  it.each(KEY_TYPES.flatMap(type => [['non-hex', 'not hex!'], ['odd-length hex', 'abc'], ['the empty string', '']].map(([what, sig]) => [type, what, sig] as [KeyType, string, string])))(
    'refuses %s with %s as the signature with E_CRYPTO', async (type, _, sig) => {
      expect(outcome(await settled(async () => await verifyNonce(key(type).publicKey, NONCE, sig)))).toBe('E_CRYPTO')
    })
})

describe('KeyCache', () => {
  it('answers a key again from the cache, for every id it owns, and still refuses ids it does not own', () => {
    const cache = new KeyCache(8)
    const k = key('Ed25519')
    const first = cache.keyForPeerId(pubHex(k), libId(k))
    expect(cache.keyForPeerId(pubHex(k), libId(k))).toBe(first)
    expect(cache.keyForPeerId(pubHex(k), qmId(k))).toBe(first)
    for (const id of [libId(otherEd25519), qmId(otherEd25519), libId(key('RSA')), libId(k).slice(0, -1) + (libId(k).endsWith('a') ? 'b' : 'a'), 'notapeerid', '']) {
      expect(outcome(caught(() => cache.keyForPeerId(pubHex(k), id)))).toBe('E_ID_MISMATCH')
    }
    expect(cache.keyForPeerId(pubHex(k), libId(k))).toBe(first)
    expect(cache.size).toBe(1)
  })

  it('never lets another key pass under a cached key\'s id', () => {
    const cache = new KeyCache(8)
    for (const type of KEY_TYPES) cache.keyForPeerId(pubHex(key(type)), libId(key(type)))
    expect(outcome(caught(() => cache.keyForPeerId(pubHex(otherEd25519), libId(key('Ed25519')))))).toBe('E_ID_MISMATCH')
    expect(outcome(caught(() => cache.keyForPeerId(pubHex(otherEd25519), qmId(key('Ed25519')))))).toBe('E_ID_MISMATCH')
    expect(outcome(caught(() => cache.keyForPeerId(pubHex(key('Ed25519')), libId(key('RSA')))))).toBe('E_ID_MISMATCH')
    // A key that fails is not cached: asking again fails again.
    expect(outcome(caught(() => cache.keyForPeerId(pubHex(otherEd25519), libId(key('Ed25519')))))).toBe('E_ID_MISMATCH')
    expect(outcome(caught(() => cache.keyForPeerId('08011220', libId(key('Ed25519')))))).toBe('E_CRYPTO')
    expect(cache.size).toBe(3)
  })

  it('the cached key still checks the signature: a signature by another key is refused', async () => {
    const cache = new KeyCache(8)
    const k = key('Ed25519')
    cache.keyForPeerId(pubHex(k), libId(k))
    const again = cache.keyForPeerId(pubHex(k), libId(k))
    expect(outcome(await settled(async () => await verifyNonce(again, 'nonce', await sign(otherEd25519, 'nonce'))))).toBe('E_SIGNATURE_INVALID')
    expect(await verifyNonce(again, 'nonce', await sign(k, 'nonce'))).toBe(true)
  })

  it('holds at most maxEntries keys, dropping the least recently used', async () => {
    const cache = new KeyCache(2)
    const [a, b, c] = await Promise.all([0, 1, 2].map(async () => await generateKeyPair('Ed25519'))) as [PrivateKey, PrivateKey, PrivateKey]
    const ka = cache.keyForPeerId(pubHex(a), libId(a))
    cache.keyForPeerId(pubHex(b), libId(b))
    expect(cache.keyForPeerId(pubHex(a), libId(a))).toBe(ka) // a is now the most recently used
    cache.keyForPeerId(pubHex(c), libId(c)) // drops b
    expect(cache.size).toBe(2)
    expect(cache.keyForPeerId(pubHex(a), libId(a))).toBe(ka)
    const kb = cache.keyForPeerId(pubHex(b), libId(b)) // made again
    expect(kb.equals(b.publicKey)).toBe(true)
    expect(cache.size).toBe(2)
  })
})

describe('native verification', () => {
  it.each<[KeyType, boolean]>([['Ed25519', true], ['RSA', true], ['secp256k1', false]])('%s keys get a node key object: %s (a library change that drops the RSA JWK fails here)', (type, native) => {
    const k = keyForPeerId(pubHex(key(type)), libId(key(type)))
    const obj = nativeKeyOf(k)
    expect(obj !== undefined).toBe(native)
    if (obj !== undefined) expect(obj.asymmetricKeyType).toBe(type.toLowerCase())
  })

  it.each<[string, (nonce: string) => Promise<string>, boolean]>([
    ['its own signature', async (nonce) => await sign(key('RSA'), nonce), true],
    ['its signature over another nonce', async (nonce) => await sign(key('RSA'), nonce + 'x'), false],
    ['a signature by another RSA key', async (nonce) => await sign(otherRsa, nonce), false],
    ['a truncated signature', async (nonce) => (await sign(key('RSA'), nonce)).slice(0, -2), false]
  ])('an RSA key verified by node agrees with the library on %s', async (_, signed, ok) => {
    const nonce = 'a'.repeat(72)
    const sig = await signed(nonce)
    const k = keyForPeerId(pubHex(key('RSA')), libId(key('RSA')))
    expect(await k.verify(new TextEncoder().encode(nonce), Buffer.from(sig, 'hex'))).toBe(ok)
    expect(outcome(await settled(async () => await verifyNonce(k, nonce, sig)))).toBe(ok ? 'ok' : 'E_SIGNATURE_INVALID')
  })
})

describe('ChallengeStore', () => {
  /** A clock the test moves by hand. */
  function clock (): { now: () => number, advance: (ms: number) => void } {
    let t = 5_000
    return { now: () => t, advance: (ms) => { t += ms } }
  }
  const ADDR = '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/QmA'
  const ADDR2 = '/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/QmB'

  it('issues a 72-character nonce that can be taken once', () => {
    const store = new ChallengeStore(30_000, clock().now)
    const k = key('Ed25519').publicKey
    const nonce = store.issue('s1', ADDR, k)
    expect(nonce).toHaveLength(72)
    expect(store.has('s1', ADDR)).toBe(true)
    const taken = store.take('s1', ADDR)
    expect(taken).toEqual({ nonce, key: k })
    expect(store.has('s1', ADDR)).toBe(false)
    expect(outcome(caught(() => store.take('s1', ADDR)))).toBe('E_NONCE_EXPIRED')
  })

  it('issues a different nonce every time', () => {
    const store = new ChallengeStore(30_000, clock().now)
    const nonces = new Set(Array.from({ length: 50 }, (_, i) => store.issue('s1', `${ADDR}${i % 10}`, key('Ed25519').publicKey)))
    expect(nonces.size).toBe(50)
  })

  // [ms after issue, whether take still succeeds]
  it.each<[number, boolean]>([
    [0, true],
    [999, true],
    [1000, true],
    [1001, false],
    [60_000, false]
  ])('with a 1000 ms TTL, take %d ms after issue succeeds: %s', (waitMs, ok) => {
    const c = clock()
    const store = new ChallengeStore(1000, c.now)
    store.issue('s1', ADDR, key('Ed25519').publicKey)
    c.advance(waitMs)
    expect(store.has('s1', ADDR)).toBe(true) // expired or not, a signature is expected next
    const result = caught(() => store.take('s1', ADDR))
    expect(outcome(result)).toBe(ok ? 'ok' : 'E_NONCE_EXPIRED')
    if (!ok) expect((result as StarsockError).message).toBe('Challenge nonce expired; join again')
    expect(store.has('s1', ADDR)).toBe(false)
  })

  it('keeps nonces apart by session and address', () => {
    const store = new ChallengeStore(30_000, clock().now)
    const k = key('Ed25519').publicKey
    const a = store.issue('s1', ADDR, k)
    const b = store.issue('s1', ADDR2, k)
    const c = store.issue('s2', ADDR, k)
    expect(outcome(caught(() => store.take('s3', ADDR)))).toBe('E_NONCE_EXPIRED')
    expect(store.take('s2', ADDR)).toEqual({ nonce: c, key: k })
    expect(store.take('s1', ADDR2)).toEqual({ nonce: b, key: k })
    expect(store.take('s1', ADDR)).toEqual({ nonce: a, key: k })
  })

  it('a second issue for the same address replaces the first nonce and key', () => {
    const store = new ChallengeStore(30_000, clock().now)
    store.issue('s1', ADDR, key('Ed25519').publicKey)
    const second = store.issue('s1', ADDR, key('RSA').publicKey)
    expect(store.take('s1', ADDR)).toEqual({ nonce: second, key: key('RSA').publicKey })
    expect(outcome(caught(() => store.take('s1', ADDR)))).toBe('E_NONCE_EXPIRED')
  })

  it('holds at most 16 nonces per session, dropping the oldest', () => {
    const store = new ChallengeStore(30_000, clock().now)
    for (let i = 0; i < 17; i++) store.issue('s1', `${ADDR}${i}`, key('Ed25519').publicKey)
    expect(store.has('s1', `${ADDR}0`)).toBe(false)
    for (let i = 1; i < 17; i++) expect(store.has('s1', `${ADDR}${i}`)).toBe(true)
  })

  it('dropSession forgets that session only', () => {
    const store = new ChallengeStore(30_000, clock().now)
    const k = key('Ed25519').publicKey
    store.issue('s1', ADDR, k)
    store.issue('s1', ADDR2, k)
    const kept = store.issue('s2', ADDR, k)
    store.dropSession('s1')
    expect(store.has('s1', ADDR)).toBe(false)
    expect(store.has('s1', ADDR2)).toBe(false)
    expect(outcome(caught(() => store.take('s1', ADDR)))).toBe('E_NONCE_EXPIRED')
    expect(store.take('s2', ADDR)).toEqual({ nonce: kept, key: k })
  })
})

describe('looksLikeKey', () => {
  it('is true for the protobuf of every key type and false for an Ed25519 signature not starting 08', async () => {
    const { generateKeyPair, publicKeyToProtobuf } = await import('@libp2p/crypto/keys')
    const { looksLikeKey } = await import('../../server/challenge.ts')
    for (const key of [await generateKeyPair('Ed25519'), await generateKeyPair('secp256k1'), await generateKeyPair('RSA', 1024)]) {
      expect(looksLikeKey(Buffer.from(publicKeyToProtobuf(key.publicKey)).toString('hex'))).toBe(true)
    }
    expect(looksLikeKey('ff'.repeat(64))).toBe(false)
  })
})
