/**
 * The node link's messages (`server/cluster/link-codec.ts`) and proofs (`links.ts`): what is
 * well-formed goes through unchanged, anything else is refused before it reaches the relay.
 */
import { describe, expect, it } from 'vitest'
import { decodeData, decodeHead, decodeMessage, encodeData, encodeHead, encodeMessage, LINK_DATA_HEADER_BYTES, LINK_TEXT_MAX_BYTES, type LinkMessage } from '../../server/cluster/link-codec.ts'
import { MAX_ADDRESS_CHARS, MAX_DIAL_ID_CHARS } from '../../shared/constants.ts'
import { linkProof, newNonce, sameProof } from '../../server/cluster/links.ts'

const NONCE = 'ab'.repeat(32)

describe('link codec', () => {
  it('round-trips data messages without copying on the way in', () => {
    for (const [k, s, size] of [[0, 0, 0], [1, 1, 1], [0xffffffff, 0, 70_000]] as const) {
      const payload = new Uint8Array(size).map((_, i) => i % 251)
      const wire = encodeData(k, s, payload)
      expect(wire.byteLength).toBe(LINK_DATA_HEADER_BYTES + size)
      const back = decodeData(wire)
      expect(back).toMatchObject({ k, s })
      expect(Buffer.from(back?.payload ?? []).equals(Buffer.from(payload))).toBe(true)
      expect(back?.payload.buffer).toBe(wire.buffer)
    }
  })

  it('round-trips head messages, and refuses a head of another size or kind, or a data message taken for one', () => {
    for (const [k, s] of [[0, 0], [7, 1], [0xffffffff, 1]] as const) {
      const wire = encodeHead(k, s)
      expect(wire.byteLength).toBe(LINK_DATA_HEADER_BYTES)
      expect(decodeHead(wire)).toEqual({ k, s })
      expect(decodeData(wire)).toBeUndefined()
    }
    expect(decodeHead(Buffer.concat([encodeHead(1, 0), Buffer.of(9)]))).toBeUndefined()
    expect(decodeHead(encodeHead(1, 0).subarray(0, LINK_DATA_HEADER_BYTES - 1))).toBeUndefined()
    expect(decodeHead(Buffer.from([2, 0, 0, 0, 1, 2]))).toBeUndefined()
    expect(decodeHead(encodeData(1, 0, new Uint8Array(0)))).toBeUndefined()
  })

  it('refuses malformed data messages', () => {
    expect(decodeData(Buffer.alloc(LINK_DATA_HEADER_BYTES - 1, 1))).toBeUndefined()
    expect(decodeData(Buffer.from([2, 0, 0, 0, 0, 0, 9]))).toBeUndefined()
    expect(decodeData(Buffer.from([1, 0, 0, 0, 0, 2, 9]))).toBeUndefined()
  })

  const good: LinkMessage[] = [
    { t: 'hello', node: 'n1', nonce: NONCE },
    { t: 'hello', node: 'n1', nonce: NONCE, proof: NONCE },
    { t: 'hello', node: 'n1', nonce: NONCE, heads: true },
    { t: 'hello', node: 'n1', nonce: NONCE, proof: NONCE, heads: true },
    { t: 'proof', proof: NONCE },
    { t: 'ok' },
    { t: 'dial', k: 2, from: '/a', to: '/b', id: 'x', secure: true, starsock: false, win: 1024 },
    { t: 'reply', k: 2, refusal: null, starsock: true, win: 1 },
    { t: 'reply', k: 2, refusal: 'no', starsock: false, win: 1 },
    { t: 'fail', k: 3, code: 'E_PEER_NOT_FOUND', msg: 'Peer not found' },
    { t: 'ev', k: 3, s: 1, e: 'accept', a: null },
    { t: 'ev', k: 3, s: 0, e: 'error', a: true },
    { t: 'ev', k: 3, s: 0, e: 'error', a: 'Peer disconnected [E_PEER_GONE]', f: true },
    { t: 'ev', k: 3, s: 0, e: 'credit', a: 65536 },
    { t: 'ev', k: 3, s: 0, e: 'abort', a: 'gone [E_PEER_GONE]' },
    { t: 'ack', k: 3, s: 1, n: 10 },
    // The longest a peer may send: addresses and dial id at their caps, with characters JSON escapes.
    { t: 'dial', k: 4, from: '"\\\u0001/'.repeat(MAX_ADDRESS_CHARS / 4), to: '/'.repeat(MAX_ADDRESS_CHARS), id: '"'.repeat(MAX_DIAL_ID_CHARS), secure: false, starsock: true, win: 1 }
  ]
  it('takes a hello\'s heads only as `true`: any other value is no offer, not a refusal (a later version may send false)', () => {
    for (const heads of [false, 1, 'yes', null]) {
      expect(decodeMessage(JSON.stringify({ t: 'hello', node: 'n', nonce: NONCE, heads }))).toEqual({ t: 'hello', node: 'n', nonce: NONCE })
    }
  })

  it.each(good.map((m) => [m.t, m]))('takes a well-formed %s', (_t, m) => {
    expect(decodeMessage(encodeMessage(m))).toEqual(m)
  })

  const bad: unknown[] = [
    'not json', null, 7, [], {}, { t: 'nope' },
    { t: 'hello', node: '', nonce: NONCE }, { t: 'hello', node: 'x'.repeat(65), nonce: NONCE }, { t: 'hello', node: 'n', nonce: 'short' },
    { t: 'proof', proof: 'AB'.repeat(32) },
    { t: 'dial', k: -1, from: '/a', to: '/b', id: 'x', secure: true, starsock: false, win: 1 },
    { t: 'dial', k: 1, from: '/a', to: '/b', id: 'x', secure: 'yes', starsock: false, win: 1 },
    { t: 'dial', k: 1, from: '/a', to: '/b', id: 'x', secure: true, starsock: false, win: 0 },
    { t: 'dial', k: 2 ** 32, from: '/a', to: '/b', id: 'x', secure: true, starsock: false, win: 1 },
    { t: 'reply', k: 1, refusal: 5, starsock: true, win: 1 },
    { t: 'fail', k: 1, code: 'E_MADE_UP', msg: '' },
    { t: 'fail', k: 1, code: 'toString', msg: '' },
    { t: 'ev', k: 1, s: 2, e: 'accept', a: null },
    { t: 'ev', k: 1, s: 0, e: 'queue', a: null },
    { t: 'ev', k: 1, s: 0, e: 'error', a: { x: 1 } },
    { t: 'ev', k: 1, s: 0, e: 'error', a: 'x'.repeat(257) },
    { t: 'ack', k: 1, s: 0, n: 1.5 },
    { t: 'ev', k: 1, s: 0, e: 'error', a: 'x', f: false }
  ]
  it.each(bad.map((m) => [JSON.stringify(m), m]))('refuses %s', (text) => {
    expect(decodeMessage(text)).toBeUndefined()
  })

  it('refuses text past its cap', () => {
    expect(decodeMessage(JSON.stringify({ t: 'ok', pad: 'x'.repeat(LINK_TEXT_MAX_BYTES) }))).toBeUndefined()
  })
})

describe('link proofs', () => {
  const i = { node: 'n1', nonce: newNonce() }
  const a = { node: 'n2', nonce: newNonce() }
  it('differ by role, secret, nonce and node, and compare in constant time', () => {
    const p = linkProof('secret-0123456789', 'initiator', i, a)
    expect(sameProof(p, linkProof('secret-0123456789', 'initiator', i, a))).toBe(true)
    for (const other of [
      linkProof('secret-0123456789', 'acceptor', i, a),
      linkProof('secret-0123456789X', 'initiator', i, a),
      linkProof('secret-0123456789', 'initiator', { ...i, nonce: newNonce() }, a),
      linkProof('secret-0123456789', 'initiator', i, { ...a, node: 'n3' }),
      linkProof('secret-0123456789', 'initiator', a, i)
    ]) expect(sameProof(p, other)).toBe(false)
    expect(sameProof(p, '')).toBe(false)
    expect(sameProof(p, p.slice(0, 10))).toBe(false)
  })
})
