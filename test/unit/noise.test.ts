/** The Noise pieces without sockets: payload codec, framing, and handshakes over in-memory pipes. */
import { describe, expect, it, vi } from 'vitest'
import { generateKeyPairSync } from 'node:crypto'
import { privateKeyFromRaw } from '@libp2p/crypto/keys'
import { createIdentity } from '../../client/identity.ts'
import { nodeAead } from '../../client/noise/aead.node.ts'
import { FrameDecoder, FramingError, maxMessagesPerChunk, putFrame } from '../../client/noise/frame.ts'
import { initiateHandshake, respondHandshake, type HandshakeTransport } from '../../client/noise/handshake.ts'
import { decodePayload, encodePayload } from '../../client/noise/payload.ts'

/** Two ends of an in-memory message pipe; `sent` records what each end sent. */
function pipe (rewrite?: (message: Uint8Array, from: 0 | 1, index: number) => Uint8Array): { ends: [HandshakeTransport, HandshakeTransport], sent: [Uint8Array[], Uint8Array[]] } {
  const queues: [Uint8Array[], Uint8Array[]] = [[], []]
  const sent: [Uint8Array[], Uint8Array[]] = [[], []]
  const wake: Array<(() => void) | undefined> = [undefined, undefined]
  const end = (i: 0 | 1): HandshakeTransport => ({
    send: async (m) => {
      sent[i].push(m)
      queues[1 - i as 0 | 1].push(rewrite === undefined ? m : rewrite(m, i, sent[i].length - 1))
      wake[1 - i]?.()
    },
    receive: async () => {
      while (queues[i].length === 0) await new Promise<void>((resolve) => { wake[i] = resolve })
      return queues[i].shift() as Uint8Array
    }
  })
  return { ends: [end(0), end(1)], sent }
}

const prologue = new Uint8Array(0)

describe('Noise handshake payload', () => {
  it.each([
    ['both fields', [0x0a, 1, 7, 0x12, 2, 8, 9], { identityKey: [7], identitySig: [8, 9] }],
    ['an empty extensions message (field 4) and an unknown varint field are skipped', [0x0a, 1, 7, 0x12, 1, 8, 0x22, 0, 0x28, 0x96, 0x01], { identityKey: [7], identitySig: [8] }]
  ])('decodes %s', (_name, bytes, want) => {
    const got = decodePayload(Uint8Array.from(bytes))
    expect({ identityKey: [...got.identityKey], identitySig: [...got.identitySig] }).toStrictEqual(want)
  })

  it.each([
    ['a field that runs past the end', [0x0a, 5, 7], 'payload field runs past the end'],
    ['no signature', [0x0a, 1, 7], 'payload lacks the identity key or its signature'],
    ['a cut varint', [0x0a, 0x80], 'payload ends inside a varint'],
    ['wire type 3', [0x0b], 'payload has wire type 3']
  ])('refuses %s', (_name, bytes, message) => {
    expect(() => decodePayload(Uint8Array.from(bytes))).toThrow(message)
  })

  it('round-trips', () => {
    const payload = { identityKey: Uint8Array.from({ length: 300 }, (_, i) => i & 0xff), identitySig: Uint8Array.of(1, 2, 3) }
    expect(decodePayload(encodePayload(payload))).toStrictEqual(payload)
  })
})

describe('Noise framing', () => {
  it('decodes messages cut anywhere across chunks, and whole ones as views', () => {
    const out = new Uint8Array(2 + 3 + 2 + 0 + 2 + 70)
    let at = putFrame(out, 0, Uint8Array.of(1, 2, 3))
    at = putFrame(out, at, new Uint8Array(0))
    putFrame(out, at, new Uint8Array(70).fill(9))
    for (let cut = 0; cut <= out.byteLength; cut++) {
      const decoder = new FrameDecoder()
      const messages: Uint8Array[] = []
      decoder.push(out.subarray(0, cut), messages)
      decoder.push(out.subarray(cut), messages)
      expect(messages.map((m) => m.byteLength)).toStrictEqual([3, 0, 70])
      expect(decoder.bufferedBytes).toBe(0)
    }
    expect(() => putFrame(new Uint8Array(70_000), 0, new Uint8Array(65_536))).toThrow(RangeError)
  })

  it('refuses a message under the minimum as soon as its length is read (512 KiB of zeros: 128k empty frames)', () => {
    const decoder = new FrameDecoder(16)
    const out: Uint8Array[] = []
    expect(() => decoder.push(new Uint8Array(512 * 1024), out)).toThrow(FramingError)
    expect(out).toHaveLength(0)
    // Cut across chunks too: the length's two bytes in two chunks.
    const cut = new FrameDecoder(16)
    cut.push(Uint8Array.of(0), out)
    expect(() => cut.push(Uint8Array.of(15, ...new Uint8Array(15)), out)).toThrow(FramingError)
    // The minimum itself passes.
    const ok = new FrameDecoder(16)
    expect(ok.push(Uint8Array.of(0, 16, ...new Uint8Array(16)), out)).toBe(1)
  })

  it('refuses a chunk with more messages than our writer would put in it (30,000 of 17 bytes), not a chunk of full ones', () => {
    const small = new Uint8Array(30_000 * 19)
    for (let at = 0; at < small.byteLength; at += 19) small[at + 1] = 17
    const out: Uint8Array[] = []
    expect(() => new FrameDecoder(16).push(small, out)).toThrow(/more than \d+ messages/)
    expect(out.length).toBeLessThanOrEqual(maxMessagesPerChunk(small.byteLength))
    // A writer's full chunk (9 full messages and a short one) and a few coalesced small ones pass.
    const full = new Uint8Array(9 * 65_537 + 2 + 100 + 64 * 18)
    let at = 0
    for (let i = 0; i < 9; i++) at = putFrame(full, at, new Uint8Array(65_535))
    at = putFrame(full, at, new Uint8Array(100))
    for (let i = 0; i < 64; i++) at = putFrame(full, at, new Uint8Array(16))
    const got: Uint8Array[] = []
    expect(new FrameDecoder(16).push(full, got)).toBe(74)
  })

  it('joins a message cut into one-byte chunks once, and holds at most one partial message', () => {
    const message = new Uint8Array(65_535).map((_, i) => i & 0xff)
    const framed = new Uint8Array(65_537)
    putFrame(framed, 0, message)
    const decoder = new FrameDecoder(16)
    const out: Uint8Array[] = []
    for (let i = 0; i < framed.byteLength; i++) {
      decoder.push(framed.subarray(i, i + 1), out)
      expect(decoder.bufferedBytes).toBe(i + 1 === framed.byteLength ? 0 : i + 1)
    }
    expect(out).toHaveLength(1)
    expect(Buffer.from(out[0] as Uint8Array).equals(Buffer.from(message))).toBe(true)
  })
})

describe('Noise XX handshake (in memory)', () => {
  it.each([
    ['3', 3, 'E_SECURE_HANDSHAKE'],
    ['65537', 65537, undefined]
  ] as const)('an RSA identity key with public exponent %s (only 65537 is taken)', async (_name, publicExponent, code) => {
    const der = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent, privateKeyEncoding: { type: 'pkcs1', format: 'der' }, publicKeyEncoding: { type: 'spki', format: 'der' } }).privateKey
    const rsa = privateKeyFromRaw(new Uint8Array(der))
    const b = await createIdentity()
    const { ends } = pipe()
    const initiating = initiateHandshake(ends[0], { privateKey: rsa, aead: nodeAead, prologue, expectedPeer: b.peerId })
    const responding = respondHandshake(ends[1], { privateKey: b.privateKey, aead: nodeAead, prologue })
    await initiating
    if (code === undefined) await expect(responding).resolves.toMatchObject({ remoteIdentity: { type: 'RSA' } })
    else await expect(responding).rejects.toMatchObject({ code, message: expect.stringContaining('exponent') as unknown })
  })

  it('another peer id fails with E_PEER_ID_MISMATCH before any signature is verified', async () => {
    const [a, b, c] = [await createIdentity(), await createIdentity(), await createIdentity()]
    const verify = vi.spyOn(Object.getPrototypeOf(b.privateKey.publicKey) as { verify: (...args: unknown[]) => unknown }, 'verify')
    try {
      const { ends } = pipe()
      const initiating = initiateHandshake(ends[0], { privateKey: a.privateKey, aead: nodeAead, prologue, expectedPeer: c.peerId })
      void respondHandshake(ends[1], { privateKey: b.privateKey, aead: nodeAead, prologue }).catch(() => {})
      await expect(initiating).rejects.toMatchObject({ code: 'E_PEER_ID_MISMATCH' })
      expect(verify).not.toHaveBeenCalled()
    } finally {
      verify.mockRestore()
    }
  })

  it('both sides learn the verified ids and the same handshake hash; transport keys pair up', async () => {
    const [a, b] = [await createIdentity(), await createIdentity('secp256k1')]
    const { ends } = pipe()
    const [i, r] = await Promise.all([
      initiateHandshake(ends[0], { privateKey: a.privateKey, aead: nodeAead, prologue, expectedPeer: b.peerId }),
      respondHandshake(ends[1], { privateKey: b.privateKey, aead: nodeAead, prologue })
    ])
    expect([i.remotePeer, r.remotePeer]).toStrictEqual([b.peerId, a.peerId])
    expect(i.handshakeHash).toStrictEqual(r.handshakeHash)
    const sealed = i.send.encryptWithAd(new Uint8Array(0), Uint8Array.of(42))
    expect([...r.receive.decryptWithAd(new Uint8Array(0), sealed)]).toStrictEqual([42])
    expect(() => r.receive.decryptWithAd(new Uint8Array(0), sealed)).toThrow() // replayed: nonce moved on
  })

  it('a replayed third message (from an earlier session) fails the responder with E_SECURE_HANDSHAKE', async () => {
    const [a, b] = [await createIdentity(), await createIdentity()]
    const first = pipe()
    await Promise.all([
      initiateHandshake(first.ends[0], { privateKey: a.privateKey, aead: nodeAead, prologue }),
      respondHandshake(first.ends[1], { privateKey: b.privateKey, aead: nodeAead, prologue })
    ])
    // A relay replays the dialer's messages 1 and 3 to a fresh responder.
    const replay = pipe()
    const responding = respondHandshake(replay.ends[1], { privateKey: b.privateKey, aead: nodeAead, prologue })
    await replay.ends[0].send(first.sent[0][0] as Uint8Array)
    await replay.ends[0].receive()
    await replay.ends[0].send(first.sent[0][1] as Uint8Array)
    await expect(responding).rejects.toMatchObject({ code: 'E_SECURE_HANDSHAKE' })
  })

  it.each([
    ['a truncated second message', 1, 0, (m: Uint8Array) => m.subarray(0, 40), 'E_SECURE_HANDSHAKE'],
    ['a flipped bit in the responder\'s sealed static key', 1, 0, (m: Uint8Array) => { const c = m.slice(); c[40] = (c[40] as number) ^ 1; return c }, 'E_SECURE_HANDSHAKE']
  ] as const)('%s fails the initiator', async (_name, from, index, rewrite, code) => {
    const [a, b] = [await createIdentity(), await createIdentity()]
    const { ends } = pipe((m, f, i) => f === from && i === index ? rewrite(m) : m)
    const initiating = initiateHandshake(ends[0], { privateKey: a.privateKey, aead: nodeAead, prologue })
    void respondHandshake(ends[1], { privateKey: b.privateKey, aead: nodeAead, prologue }).catch(() => {})
    await expect(initiating).rejects.toMatchObject({ code })
  })

  it('a different prologue (a rewritten preamble) fails the handshake', async () => {
    const [a, b] = [await createIdentity(), await createIdentity()]
    const { ends } = pipe()
    // The responder's sealed static key is bound to its prologue: the initiator cannot open it.
    void respondHandshake(ends[1], { privateKey: b.privateKey, aead: nodeAead, prologue: Uint8Array.of(2) }).catch(() => {})
    const [i] = await Promise.allSettled([initiateHandshake(ends[0], { privateKey: a.privateKey, aead: nodeAead, prologue: Uint8Array.of(1) })])
    expect(i).toMatchObject({ status: 'rejected', reason: { code: 'E_SECURE_HANDSHAKE' } })
  })
})
