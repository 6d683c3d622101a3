/**
 * The Noise spec's test vector for Noise_XX_25519_ChaChaPoly_SHA256 (cacophony, the vectors the
 * Noise implementations share; taken from mcginty/snow `tests/vectors/cacophony.txt`, commit
 * 8ac60f5): fixed static and ephemeral keys, a prologue, six payloads; every ciphertext and the
 * handshake hash must come out byte for byte, with each DH and AEAD starsock ships. Also the
 * nonce counter near its limit.
 */
import { describe, expect, it } from 'vitest'
import { aead as browserAead, dh as browserDh } from '../../client/noise/aead.browser.ts'
import { nonceBytes } from '../../client/noise/aead.ts'
import { nodeAead, nodeDh } from '../../client/noise/aead.node.ts'
import { CipherState, MAX_NONCE, XXHandshake } from '../../client/noise/handshake.ts'

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'))
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

const VECTOR = {
  protocol_name: 'Noise_XX_25519_ChaChaPoly_SHA256',
  init_prologue: '4a6f686e2047616c74',
  init_static: 'e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1',
  init_ephemeral: '893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a',
  resp_prologue: '4a6f686e2047616c74',
  resp_static: '4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893',
  resp_ephemeral: 'bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b',
  handshake_hash: 'c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e',
  messages: [
    { payload: '4c756477696720766f6e204d69736573', ciphertext: 'ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573' },
    { payload: '4d757272617920526f746862617264', ciphertext: '95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f8814c7194e83f23dbd8d162c9326ad' },
    { payload: '462e20412e20486179656b', ciphertext: 'c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49b25030' },
    { payload: '4361726c204d656e676572', ciphertext: '96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df' },
    { payload: '4a65616e2d426170746973746520536179', ciphertext: '3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5' },
    { payload: '457567656e2042f6686d20766f6e2042617765726b', ciphertext: 'eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f' }
  ]
} as const

const SUITES = [
  ['node:crypto X25519 and ChaCha20-Poly1305', nodeDh, nodeAead],
  ['@noble X25519 and ChaCha20-Poly1305 (the browser\'s)', browserDh, browserAead]
] as const

describe(`Noise test vector ${VECTOR.protocol_name} (cacophony)`, () => {
  it.each(SUITES)('%s: every message and the handshake hash byte for byte, both roles', (_name, dh, aead) => {
    const m = VECTOR.messages
    const init = new XXHandshake({ aead, dh, prologue: hex(VECTOR.init_prologue), s: dh.keyPairFromSecret(hex(VECTOR.init_static)), e: dh.keyPairFromSecret(hex(VECTOR.init_ephemeral)) })
    const resp = new XXHandshake({ aead, dh, prologue: hex(VECTOR.resp_prologue), s: dh.keyPairFromSecret(hex(VECTOR.resp_static)), e: dh.keyPairFromSecret(hex(VECTOR.resp_ephemeral)) })
    const msg1 = init.writeMessage1(hex(m[0].payload))
    expect(toHex(msg1)).toBe(m[0].ciphertext)
    expect(toHex(resp.readMessage1(msg1))).toBe(m[0].payload)
    const msg2 = resp.writeMessage2(hex(m[1].payload))
    expect(toHex(msg2)).toBe(m[1].ciphertext)
    expect(toHex(init.readMessage2(msg2))).toBe(m[1].payload)
    const msg3 = init.writeMessage3(hex(m[2].payload))
    expect(toHex(msg3)).toBe(m[2].ciphertext)
    expect(toHex(resp.readMessage3(msg3))).toBe(m[2].payload)
    expect(toHex(init.handshakeHash)).toBe(VECTOR.handshake_hash)
    expect(toHex(resp.handshakeHash)).toBe(VECTOR.handshake_hash)
    expect(toHex(init.rs as Uint8Array)).toBe(toHex(dh.keyPairFromSecret(hex(VECTOR.resp_static)).publicKey))
    // Transport messages alternate after the handshake: responder, initiator, responder.
    const [i1, i2] = init.split()
    const [r1, r2] = resp.split()
    const ad = new Uint8Array(0)
    const transport: Array<[CipherState, CipherState]> = [[r2, i2], [i1, r1], [r2, i2]]
    transport.forEach(([sender, receiver], k) => {
      const { payload, ciphertext } = m[3 + k] as { payload: string, ciphertext: string }
      const sealed = sender.encryptWithAd(ad, hex(payload))
      expect(toHex(sealed)).toBe(ciphertext)
      expect(toHex(receiver.decryptWithAd(ad, sealed))).toBe(payload)
    })
  })
})

describe('nonce counter', () => {
  it('encodes the counter exactly up to 2^53 - 1 (little-endian 64-bit after 4 zero bytes)', () => {
    for (const n of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 52 + 12_345, MAX_NONCE - 1, MAX_NONCE]) {
      const expected = new Uint8Array(12)
      new DataView(expected.buffer).setBigUint64(4, BigInt(n), true)
      expect(toHex(nonceBytes(n)), String(n)).toBe(toHex(expected))
    }
  })

  it('seals and opens up to the last nonce below 2^53 - 1, then fails with E_SECURE_AUTH on both sides, never reusing one', () => {
    const key = new Uint8Array(32).fill(7)
    const [tx, rx] = [new CipherState(nodeAead, key), new CipherState(nodeAead, key)]
    tx.skipTo(MAX_NONCE - 2)
    rx.skipTo(MAX_NONCE - 2)
    const ad = new Uint8Array(0)
    const sealed = [tx.encryptWithAd(ad, Uint8Array.of(1)), tx.encryptWithAd(ad, Uint8Array.of(2))]
    expect(() => tx.encryptWithAd(ad, Uint8Array.of(3))).toThrow(expect.objectContaining({ code: 'E_SECURE_AUTH' }))
    expect(sealed.map((c) => [...rx.decryptWithAd(ad, c)])).toEqual([[1], [2]])
    expect(() => rx.decryptWithAd(ad, sealed[1] as Uint8Array)).toThrow(expect.objectContaining({ code: 'E_SECURE_AUTH' }))
    expect(() => tx.skipTo(5)).toThrow(RangeError)
  })
})

describe('sealing a plaintext given as its parts', () => {
  it.each(SUITES)('%s: the same ciphertext and tag as the parts joined, pushed after what the list held', (_name, _dh, aead) => {
    const key = new Uint8Array(32).fill(9)
    const ad = Uint8Array.of(1, 2, 3)
    const whole = Uint8Array.from({ length: 1000 }, (_, i) => (i * 31) & 0xff)
    const parts = [whole.subarray(0, 1), whole.subarray(1, 1), whole.subarray(1, 600), whole.subarray(600)]
    const expected = aead.seal(key, 42, ad, whole)
    const before = Uint8Array.of(0xee)
    const into = [before]
    aead.sealParts(key, 42, ad, parts, into)
    expect(into[0]).toBe(before)
    expect(toHex(Buffer.concat(into.slice(1)))).toBe(toHex(expected))
    expect([...aead.open(key, 42, ad, expected)]).toEqual([...whole])
    const empty: Uint8Array[] = []
    aead.sealParts(key, 43, ad, [], empty) // the sealed end: a tag alone
    expect(toHex(Buffer.concat(empty))).toBe(toHex(aead.seal(key, 43, ad, new Uint8Array(0))))
  })
})
