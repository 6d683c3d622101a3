/**
 * Issue 14, abuse of the secure channel through a real server on 127.0.0.1: a peer that claims
 * another's id, a relay that swaps the listener, a flipped bit in the handshake, a truncated
 * handshake, a replayed handshake message, a replayed transport message, a connection at the end
 * of its nonces. Each fails with its code, and nothing reaches the application.
 *
 * The relay's misdeeds are played where its chunks enter the client (`ReceiveStream.push`, every
 * chunk from the server goes through it) or, for the swap, in the server's directory lookup.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { Connection } from '../client/connection.ts'
import { createIdentity, type Identity } from '../client/identity.ts'
import type { StarsockPeer } from '../client/peer.ts'
import { MAX_NONCE, XXHandshake } from '../client/noise/handshake.ts'
import { StarsockError, wireError } from '../shared/errors.ts'
import type { ReceiveStream } from '../client/stream.ts'
import { tapRelay } from './helpers/relay-tap.ts'
import { usePeers } from './helpers/peers.ts'
import { rejected, testBytes, waitFor, within } from './helpers/server.ts'

const flip = (chunk: Uint8Array, at: number): Uint8Array => {
  const bad = chunk.slice()
  bad[at] = (bad[at] as number) ^ 0x01
  return bad
}

describe('abuse of the secure channel (issue 14)', () => {
  const { peer, server, restart } = usePeers()
  /** Everything `p`'s handler is given. */
  const handled = (p: StarsockPeer): Connection[] => {
    const list: Connection[] = []
    p.handle((conn) => { list.push(conn) })
    return list
  }
  afterEach(() => { vi.restoreAllMocks() })

  it('a peer that holds another\'s address (a server without the crypto challenge) fails both ways with E_PEER_ID_MISMATCH', async () => {
    await restart({ cryptoChallenge: false })
    const [a, b] = [await peer(), await createIdentity()]
    // M joins under B's address with its own key: the server cannot tell, the handshake can.
    const m = await createIdentity()
    const impostor: Identity = { ...m, peerId: b.peerId }
    const mallory = await peer({ identity: impostor })
    expect(mallory.addr.endsWith(b.peerId)).toBe(true)
    const mallorySaw = handled(mallory)
    const aSaw = handled(a)

    // A dials "B" and reaches M, which proves M.
    const err = await within('the dial to the impostor', rejected(a.dial(mallory.addr)))
    expect(err).toMatchObject({ code: 'E_PEER_ID_MISMATCH' })
    expect((err as Error).message).toContain(m.peerId)
    // M dials A as "B": A's listener learns the dialer proved M, not the B the server reported.
    await waitFor('M to know A', () => mallory.peers().some((p) => p.addr === a.addr))
    const back = await within('M dialing A', rejected(mallory.dial(a.peerId).then(async (conn) => await conn.read())))
    expect(back).toMatchObject({ code: 'E_PEER_ID_MISMATCH' })
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect([aSaw.length, mallorySaw.length], 'no handler saw either connection').toEqual([0, 0])
  })

  it('a relay that swaps the listener fails the dial with E_PEER_ID_MISMATCH naming who answered; the stand-in sees nothing', async () => {
    const [a, b, c] = [await peer(), await peer(), await peer()]
    const cSaw = handled(c)
    handled(b)
    // The relay routes every dial for B to C.
    const directory = (server().rendezvous as unknown as { directory: { owner: (addr: string) => string | undefined } }).directory
    const owner = directory.owner.bind(directory)
    vi.spyOn(directory, 'owner').mockImplementation((addr) => owner(addr === b.addr ? c.addr : addr))
    const err = await within('the swapped dial', rejected(a.dial(b.peerId)))
    expect(err).toMatchObject({ code: 'E_PEER_ID_MISMATCH' })
    expect((err as Error).message).toContain(`expected peer ${b.peerId}, but the other side presented the identity key of ${c.peerId}`)
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(cSaw).toHaveLength(0)
  })

  it.each([
    ['a flipped bit in message 2', (chunk: Uint8Array) => [flip(chunk, 60)]],
    // Cut inside the responder's payload, its length prefix rewritten to match.
    ['a truncated message 2', (chunk: Uint8Array) => [Uint8Array.from([0, 98, ...chunk.subarray(2, 100)])]],
    ['message 2 dropped and the stream ended', () => []]
  ] as const)('%s fails the dial with E_SECURE_HANDSHAKE, the listener\'s handler never called', async (name, tamper) => {
    tapRelay((chunk, index, id) => id.endsWith('.listener') && index === 0 ? tamper(chunk) : [chunk])
    const [a, b] = [await peer(), await peer()]
    const bSaw = handled(b)
    const dialing = rejected(a.dial(b.peerId))
    if (name.includes('dropped')) {
      // The relay ends B's stream to A right after eating message 2.
      await waitFor('the listener to answer', () => b.stats().sendingStreams === 1)
      const rx = (a as unknown as { streams: { receiving: Map<string, ReceiveStream> } }).streams.receiving
      await waitFor('the dialer\'s stream', () => rx.size === 1)
      for (const s of rx.values()) s.finish(true)
    }
    const err = await within('the dial failing', dialing, 15_000)
    expect(err).toMatchObject({ code: 'E_SECURE_HANDSHAKE' })
    expect(bSaw).toHaveLength(0)
  })

  it('a replayed handshake (messages 1 and 3 of an earlier session, played by the relay as a new dial) fails the listener with E_SECURE_HANDSHAKE; nothing reaches its handler', async () => {
    const recorded: Uint8Array[] = []
    let replaying = false
    tapRelay((chunk, index, id) => {
      if (!replaying) {
        if (id.endsWith('.dialer') && index < 2) recorded.push(chunk.slice())
        return [chunk]
      }
      // The second dial: B gets the first session's preamble+msg1 and msg3; A never sees B's answer.
      if (id.endsWith('.dialer')) return index === 0 ? recorded : []
      return index === 0 ? [] : [chunk]
    })
    const [a, b] = [await peer(), await peer()]
    const bSaw = handled(b)
    const first = await a.dial(b.peerId)
    await waitFor('the first session at B', () => bSaw.length === 1)
    await first.close()
    expect(recorded).toHaveLength(2)
    replaying = true
    // B refuses the replayed third message (it was made for another session's keys) and aborts: the dialer hears why.
    expect(await within('the replayed session failing', rejected(a.dial(b.peerId)))).toMatchObject({ code: 'E_SECURE_HANDSHAKE' })
    expect(bSaw).toHaveLength(1)
  })

  it('a replayed transport message fails with E_SECURE_AUTH on both sides; only what came before it is delivered', async () => {
    let kept = new Uint8Array(0)
    tapRelay((chunk, index, id) => {
      if (!id.endsWith('.dialer')) return [chunk]
      if (index === 2) kept = chunk.slice() // the first transport chunk, after preamble+msg1 and msg3
      return index === 3 ? [kept] : [chunk] // the relay sends it again instead of the second
    })
    const [a, b] = [await peer(), await peer()]
    const incoming = new Promise<Connection>((resolve) => b.handle(resolve))
    const conn = await a.dial(b.peerId)
    const listener = await within('B accepting', incoming)
    await conn.write(testBytes(1000, 1))
    expect((await listener.read())?.byteLength).toBe(1000)
    await conn.write(testBytes(1000, 2))
    expect(await within('B refusing the replay', rejected(listener.read()))).toMatchObject({ code: 'E_SECURE_AUTH' })
    expect(await within('A hearing of it', rejected(conn.read()))).toMatchObject({ code: 'E_SECURE_AUTH' })
  })

  it('a connection at the end of its nonces fails with E_SECURE_AUTH on both sides before a nonce could repeat', async () => {
    // Both sides' transport counters start two messages short of the limit.
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with `.call(this)` below
    const split = XXHandshake.prototype.split
    vi.spyOn(XXHandshake.prototype, 'split').mockImplementation(function (this: XXHandshake) {
      const states = split.call(this)
      for (const s of states) s.skipTo(MAX_NONCE - 2)
      return states
    })
    const [a, b] = [await peer(), await peer()]
    const incoming = new Promise<Connection>((resolve) => b.handle(resolve))
    const conn = await a.dial(b.peerId)
    const listener = await within('B accepting', incoming)
    // A's messages use nonces MAX-2 and MAX-1 (one 100-byte message each); the third has none left.
    await conn.write(testBytes(100, 1))
    await conn.write(testBytes(100, 2))
    expect(await rejected(conn.write(testBytes(100, 3)))).toMatchObject({ code: 'E_SECURE_AUTH', message: expect.stringContaining('nonce exhausted') })
    const got: number[] = []
    const end = await within('B reading to the failure', rejected((async () => { for (;;) { const c = await listener.read(); if (c === null) return; got.push(c.byteLength) } })()))
    expect(got).toEqual([100, 100])
    expect(end).toMatchObject({ code: 'E_SECURE_AUTH' })
  })

  // Review findings on the first version of the core (issue 14).

  it('dialers that fail before their first chunk leave no stream open at the listener or at the server', async () => {
    // The relay eats every dialer's first chunk; each dialer then fails its stream to the
    // listener and nothing else (what a hostile client does; ours would abort both).
    tapRelay((chunk, index, id) => id.endsWith('.dialer') && index === 0 ? [] : [chunk])
    const [a, b] = [await peer(), await peer()]
    const bSaw = handled(b)
    const sending = (a as unknown as { streams: { sending: Map<string, { error: (wire: string) => void }> } }).streams.sending
    for (let i = 0; i < 3; i++) {
      const dialing = rejected(a.dial(b.peerId))
      await waitFor('the listener to accept', () => b.stats().sendingStreams === 1)
      for (const [id, tx] of sending) if (id.endsWith('.dialer')) tx.error(wireError('E_STREAM_ABORTED', 'gone'))
      await waitFor('the listener to close its stream', () => b.stats().sendingStreams === 0 && b.stats().receivingStreams === 0)
      expect(await within('the dial failing', dialing)).toBeInstanceOf(StarsockError)
    }
    await waitFor('the server to close every stream', () => server().stats().streams === 0)
    expect(bSaw).toHaveLength(0)
  })

  it('a relay that sends 512 KiB of zeros (128k empty frames) fails both sides with E_SECURE_AUTH', async () => {
    tapRelay((chunk, index, id) => id.endsWith('.dialer') && index === 2 ? [new Uint8Array(512 * 1024)] : [chunk])
    const [a, b] = [await peer(), await peer()]
    const incoming = new Promise<Connection>((resolve) => b.handle(resolve))
    const conn = await a.dial(b.peerId)
    const listener = await within('B accepting', incoming)
    await conn.write(testBytes(1000, 1))
    expect(await within('B refusing the junk', rejected(listener.read()))).toMatchObject({ code: 'E_SECURE_AUTH' })
    expect(await within('A hearing of it', rejected(conn.read()))).toMatchObject({ code: 'E_SECURE_AUTH' })
  })

  it('a write cut by its signal after sealing never leaves a connection where the next write succeeds and the other side sees tampering', async () => {
    const [a, b] = [await peer(), await peer()]
    const incoming = new Promise<Connection>((resolve) => b.handle(resolve))
    const conn = await a.dial(b.peerId)
    const listener = await within('B accepting', incoming)
    // B does not read yet: A's write runs out of credit with sealed messages in hand.
    const cut = new AbortController()
    const first = rejected(conn.write(testBytes(16 * 1024 * 1024, 1), { signal: cut.signal }))
    await new Promise((resolve) => setTimeout(resolve, 300))
    cut.abort()
    expect(await within('the first write cut', first)).toMatchObject({ code: 'E_ABORTED' })
    // B reads from now on, so a connection that goes on has credit for the second write.
    const reading = (async (): Promise<unknown> => {
      try { while (await listener.read() !== null); return 'end' } catch (err) { return err }
    })()
    const second = await within('the second write', conn.write(testBytes(1000, 2)).then(() => undefined, (err: unknown) => err), 15_000)
    if (second === undefined) await conn.closeWrite()
    const end = await within('B reading to the end', reading, 15_000)
    if (second === undefined) {
      expect(end).toBe('end') // the cut came before sealing: the connection goes on, whole
    } else {
      expect(second).toMatchObject({ code: 'E_ABORTED' })
      expect(end).toMatchObject({ code: 'E_ABORTED' }) // the true cause, not E_SECURE_AUTH
    }
  })

  it('handle(undefined) while a dial is being classified refuses it with E_DIAL_REFUSED; the old handler is never called', async () => {
    const [a, b] = [await peer(), await peer()]
    const bSaw = handled(b)
    // Right before message 3 reaches B (the handshake is under way), B stops taking connections.
    tapRelay((chunk, index, id) => {
      if (id.endsWith('.dialer') && index === 1) b.handle(undefined)
      return [chunk]
    })
    const conn = await a.dial(b.peerId)
    expect(await within('A hearing of the refusal', rejected(conn.read()))).toMatchObject({ code: 'E_DIAL_REFUSED' })
    expect(bSaw).toHaveLength(0)
    await waitFor('B to close its streams', () => b.stats().sendingStreams === 0 && b.stats().receivingStreams === 0)
  })

  it('a handler that throws aborts the connection: the dialer gets E_INTERNAL instead of hanging', async () => {
    const [a, b] = [await peer(), await peer()]
    b.handle(() => { throw new Error('a bug in the application') })
    const conn = await a.dial(b.peerId)
    expect(await within('A hearing of the failure', rejected(conn.read()))).toMatchObject({ code: 'E_INTERNAL' })
  })

  it('a dial\'s timeoutMs bounds its handshake too', async () => {
    tapRelay((chunk, index, id) => id.endsWith('.listener') && index === 0 ? [] : [chunk]) // message 2 never arrives
    const [a, b] = [await peer(), await peer()]
    handled(b)
    // Well under the handshake's own 10 s.
    expect(await within('the dial timing out', rejected(a.dial(b.peerId, { timeoutMs: 1500 })), 6000)).toMatchObject({ code: 'E_SECURE_HANDSHAKE' })
  })

  it('a static key that failed to sign is not kept, and leaves no stream behind', async () => {
    const identity = await createIdentity()
    const [a, b] = [await peer({ identity }), await peer()]
    handled(b)
    vi.spyOn(identity.privateKey, 'sign').mockRejectedValueOnce(new Error('the key store is locked'))
    expect(await rejected(a.dial(b.peerId))).toMatchObject({ code: 'E_SECURE_HANDSHAKE', message: expect.stringContaining('the key store is locked') })
    expect(a.stats()).toEqual({ sendingStreams: 0, receivingStreams: 0 })
    const conn = await within('the next dial', a.dial(b.peerId))
    expect(conn.secure).toBe(true)
  })

  it('the server\'s word that the listener is legacy is presented as unverified, with what plaintext would give away', async () => {
    const [a, b] = [await peer(), await peer()]
    handled(b)
    // A server that lies: it says B is a legacy client.
    const sessions = (server().rendezvous as unknown as { sessions: Map<string, { addrs: Set<string>, starsock: boolean }> }).sessions
    for (const session of sessions.values()) if (session.addrs.has(b.addr)) session.starsock = false
    const err = await within('the dial failing', rejected(a.dial(b.peerId)))
    expect(err).toMatchObject({ code: 'E_SECURE_REQUIRED', message: expect.stringMatching(/unverified.*server could read and change/) })
  })

  it('a relay that re-cuts message 2 so its length reads 0 fails with E_SECURE_HANDSHAKE, not E_SECURE_REQUIRED, when the listener is a starsock client', async () => {
    tapRelay((chunk, index, id) => id.endsWith('.listener') && index === 0 ? [chunk.subarray(0, 1), chunk.subarray(1)].map((c) => Uint8Array.from([0, ...c])) : [chunk])
    const [a, b] = [await peer(), await peer()]
    const bSaw = handled(b)
    const err = await within('the dial failing', rejected(a.dial(b.peerId)))
    expect(err).toMatchObject({ code: 'E_SECURE_HANDSHAKE' })
    expect(bSaw).toHaveLength(0)
  })
})
