/**
 * Our Noise handshake and transport against the reference, `@chainsafe/libp2p-noise` 17 (a
 * devDependency, used only here): our initiator against its responder and our responder against
 * its initiator, with the Node and the browser primitives, over `@libp2p/utils`' in-memory stream
 * pair. Both sides must verify each other's peer id, and transport messages (one longer than a
 * Noise message, so split in two) must cross both ways byte-exact. Any drift from the libp2p
 * Noise spec fails here.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { beforeAll, describe, expect, it } from 'vitest'
import { aead as browserAead, dh as browserDh } from '../client/noise/aead.browser.ts'
import { nodeAead, nodeDh } from '../client/noise/aead.node.ts'
import type { Aead } from '../client/noise/aead.ts'
import type { Dh } from '../client/noise/dh.ts'
import { FrameDecoder, putFrame } from '../client/noise/frame.ts'
import { initiateHandshake, makeStaticKey, respondHandshake, type HandshakeTransport } from '../client/noise/handshake.ts'
import { MAX_PLAINTEXT_BYTES } from '../client/noise/secure-channel.ts'
import { testBytes, within } from './helpers/server.ts'

beforeAll(() => {
  // @libp2p/utils 7 calls Promise.withResolvers, which Node 20 (our engines) lacks: polyfilled for this test only.
  const P = Promise as unknown as { withResolvers?: unknown }
  P.withResolvers ??= <T>(): { promise: Promise<T>, resolve: (v: T) => void, reject: (e: unknown) => void } => {
    let resolve!: (v: T) => void
    let reject!: (e: unknown) => void
    const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
})

/** Our side of a libp2p stream: whole Noise messages in and out (length-prefixed, as libp2p frames them). */
function ours (stream: any): HandshakeTransport & { next: () => Promise<Uint8Array> } {
  const decoder = new FrameDecoder()
  const frames: Uint8Array[] = []
  let wake: (() => void) | undefined
  stream.addEventListener('message', (evt: any) => { decoder.push(evt.data.subarray(), frames); wake?.() })
  const next = async (): Promise<Uint8Array> => {
    while (frames.length === 0) await new Promise<void>((resolve) => { wake = resolve })
    return frames.shift() as Uint8Array
  }
  return {
    next,
    receive: next,
    send: async (m) => {
      const out = new Uint8Array(m.byteLength + 2)
      putFrame(out, 0, m)
      stream.send(out)
    }
  }
}

const SUITES: Array<[string, Aead, Dh]> = [['node:crypto', nodeAead, nodeDh], ['@noble (the browser\'s)', browserAead, browserDh]]
const CASES = SUITES.flatMap(([name, aead, dh]) => (['initiator', 'responder'] as const).map((role) => [role, name, aead, dh] as const))

describe('our Noise against @chainsafe/libp2p-noise 17', () => {
  it.each(CASES)('ours as %s (%s primitives): ids verified both ways, transport both ways', async (role, _name, aead, dh) => {
    const [ka, kb] = [await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519')]
    const [idA, idB] = [peerIdFromPrivateKey(ka), peerIdFromPrivateKey(kb)]
    const theirs = noise()({ peerId: idB, privateKey: kb, logger: defaultLogger(), upgrader: { getStreamMuxers: () => new Map() } as any })
    const [outbound, inbound] = await streamPair()
    const io = ours(role === 'initiator' ? outbound : inbound)
    const theirStream = role === 'initiator' ? inbound : outbound
    const options = { privateKey: ka, aead, dh, staticKey: await makeStaticKey(ka, dh), prologue: new Uint8Array(0), expectedPeer: role === 'initiator' ? idB.toString() : undefined }
    const [mine, their] = await within('both handshakes', Promise.all([
      role === 'initiator' ? initiateHandshake(io, options) : respondHandshake(io, options),
      role === 'initiator'
        ? theirs.secureInbound(theirStream, { skipStreamMuxerNegotiation: true })
        : theirs.secureOutbound(theirStream, { remotePeer: idA, skipStreamMuxerNegotiation: true })
    ]))
    expect(mine.remotePeer).toBe(idB.toString())
    expect(their.remotePeer.equals(idA)).toBe(true)

    const texts = [testBytes(5, 1), testBytes(70_000, 2), testBytes(3, 3)]
    const total = texts.reduce((n, t) => n + t.byteLength, 0)
    const received: Uint8Array[] = []
    their.connection.addEventListener('message', (evt: any) => received.push(evt.data.subarray()))
    for (const t of texts) their.connection.send(t)
    const got: Uint8Array[] = []
    while (got.reduce((n, b) => n + b.byteLength, 0) < total) got.push(mine.receive.decryptWithAd(new Uint8Array(0), await within('a message from libp2p', io.next())))
    expect(Buffer.compare(Buffer.concat(got), Buffer.concat(texts)), 'libp2p -> ours').toBe(0)
    for (const t of texts) {
      for (let i = 0; i < t.byteLength; i += MAX_PLAINTEXT_BYTES) await io.send(mine.send.encryptWithAd(new Uint8Array(0), t.subarray(i, i + MAX_PLAINTEXT_BYTES)))
    }
    const deadline = Date.now() + 5000
    while (received.reduce((n, b) => n + b.byteLength, 0) < total && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(Buffer.compare(Buffer.concat(received), Buffer.concat(texts)), 'ours -> libp2p').toBe(0)
  })

  it('ours as initiator, expecting another peer than the libp2p responder proves, fails with E_PEER_ID_MISMATCH', async () => {
    const [ka, kb, kc] = [await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519'), await generateKeyPair('Ed25519')]
    const [idB, idC] = [peerIdFromPrivateKey(kb), peerIdFromPrivateKey(kc)]
    const theirs = noise()({ peerId: idB, privateKey: kb, logger: defaultLogger(), upgrader: { getStreamMuxers: () => new Map() } as any })
    const [outbound, inbound] = await streamPair()
    const io = ours(outbound)
    const [mine] = await Promise.allSettled([
      initiateHandshake(io, { privateKey: ka, aead: nodeAead, dh: nodeDh, prologue: new Uint8Array(0), expectedPeer: idC.toString() }),
      theirs.secureInbound(inbound, { skipStreamMuxerNegotiation: true, signal: AbortSignal.timeout(500) })
    ])
    expect(mine).toMatchObject({ status: 'rejected', reason: { code: 'E_PEER_ID_MISMATCH' } })
  })
})
