/**
 * Issue 14: every connection between two starsock peers is a Noise secure channel by default,
 * through a real server on 127.0.0.1: both sides learn the other's proved peer id, the relay
 * delivers only ciphertext, plaintext is an explicit choice, and tampering, a cut stream and a
 * wrong identity each fail with their code.
 *
 * What the relay delivered is seen (and, for the abuse cases, changed) where it enters the
 * client: `ReceiveStream.push`, the one place every chunk from the server goes through.
 */
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { Connection } from '../client/connection.ts'
import type { StarsockPeer } from '../client/peer.ts'
import { Muxer } from '../client/mux/muxer.ts'
import { MAX_PLAINTEXT_BYTES, PREAMBLE, startsSecure } from '../client/noise/secure-channel.ts'
import { CLASSIFY_TIMEOUT_MS, Dials } from '../client/dials.ts'
import { Rendezvous } from '../server/rendezvous.ts'
import { StarsockError } from '../shared/errors.ts'
import { readAll } from './helpers/connections.ts'
import { tapRelay } from './helpers/relay-tap.ts'
import { usePeers } from './helpers/peers.ts'
import { rejected, testBytes, waitFor, within } from './helpers/server.ts'

describe('secure connections between starsock peers (issue 14)', () => {
  const { peer } = usePeers()
  /** The next connection `p` hands to its handler. */
  const nextIncoming = (p: StarsockPeer): Promise<Connection> => new Promise((resolve) => p.handle(resolve))

  afterEach(() => { vi.restoreAllMocks() })

  it('is secure by default: both sides learn the proved peer id; 2 MiB cross each way byte-exact, the relay delivering ciphertext only', async () => {
    const seen = tapRelay()
    const [a, b] = [await peer(), await peer()]
    const incoming = nextIncoming(b)
    const connA = await within('A dialing B', a.dial(b.peerId))
    const connB = await within('B accepting the dial', incoming)
    expect([connA.secure, connB.secure]).toEqual([true, true])
    expect(connA.remotePeer).toBe(b.peerId) // the dialer reached exactly the peer it dialed
    expect(connB.remotePeer).toBe(a.peerId) // the listener learned who dialed from the handshake
    expect(connB.remoteAddr).toBe(a.addr)

    const fromA = testBytes(2 * 1024 * 1024, 7)
    const fromB = testBytes(2 * 1024 * 1024, 8)
    const [gotB, gotA] = await within('2 MiB each way', Promise.all([
      readAll(connB), readAll(connA),
      (async () => { await connA.write(fromA); await connA.closeWrite() })(),
      (async () => { await connB.write(fromB); await connB.closeWrite() })()
    ]), 30_000)
    expect(Buffer.compare(gotB, fromA)).toBe(0)
    expect(Buffer.compare(gotA, fromB)).toBe(0)
    const chunks = [...seen.values()].flat()
    const dialerStream = [...seen.entries()].find(([id]) => id.endsWith('.dialer'))?.[1] ?? []
    expect(startsSecure(dialerStream[0] as Uint8Array)).toBe(true)
    // What the relay delivered: none of 100 32-byte samples of either plaintext.
    const wire = Buffer.concat(chunks)
    expect(wire.byteLength).toBeGreaterThan(4 * 1024 * 1024)
    for (let i = 0; i < 100; i++) {
      const at = Math.floor((i * (fromA.byteLength - 32)) / 100)
      expect(wire.includes(Buffer.from(fromA.subarray(at, at + 32)))).toBe(false)
      expect(wire.includes(Buffer.from(fromB.subarray(at, at + 32)))).toBe(false)
    }
  })

  it('is plaintext only by choice, per dial or per peer, and says so on both sides (positive control: the relay sees the bytes)', async () => {
    const seen = tapRelay()
    const [a, b, c] = [await peer(), await peer(), await peer({ secure: false })]
    let incoming = nextIncoming(b)
    const plain = await a.dial(b.peerId, { secure: false })
    const plainB = await within('B accepting', incoming)
    expect([plain.secure, plainB.secure]).toEqual([false, false])
    const data = testBytes(100_000, 9)
    await plain.write(data)
    await plain.closeWrite()
    expect(Buffer.compare(await readAll(plainB), data)).toBe(0)
    const wire = Buffer.concat([...seen.values()].flat())
    expect(wire.includes(Buffer.from(data.subarray(5000, 5032)))).toBe(true)

    incoming = nextIncoming(b)
    const fromC = await c.dial(b.peerId)
    expect([fromC.secure, (await within('B accepting C', incoming)).secure]).toEqual([false, false])
    incoming = nextIncoming(b)
    const secureFromC = await c.dial(b.peerId, { secure: true })
    expect([secureFromC.secure, (await within('B accepting C securely', incoming)).secure]).toEqual([true, true])
  })

  it('a byte flipped in transit fails the connection on both sides with E_SECURE_AUTH, nothing forged delivered', async () => {
    // B's dialer stream: chunk 0 is preamble+msg1, chunk 1 msg3, chunk 2 the first transport chunk.
    tapRelay((chunk, index, id) => {
      if (!id.endsWith('.dialer') || index !== 2) return [chunk]
      const bad = chunk.slice()
      bad[100] = (bad[100] as number) ^ 0x01
      return [bad]
    })
    const [a, b] = [await peer(), await peer()]
    const incoming = nextIncoming(b)
    const connA = await a.dial(b.peerId)
    const connB = await within('B accepting', incoming)
    const reading = rejected(connB.read())
    await connA.write(testBytes(1000, 3))
    expect(await within('B failing the tampered message', reading)).toMatchObject({ code: 'E_SECURE_AUTH' })
    // The dialer learns it too, with the code.
    const err = await within('A learning of the failure', rejected(connA.read()))
    expect(err).toMatchObject({ code: 'E_SECURE_AUTH' })
    expect((err as Error).message).toMatch(/failed authentication/)
  })

  it('a stream cut short with a bare end (no sealed end) fails the reader with E_SECURE_AUTH', async () => {
    const [a, b] = [await peer(), await peer()]
    const incoming = nextIncoming(b)
    // Drop the sealed end on its way to B: what a relay forging a clean end looks like.
    let sealedEnds = 0
    tapRelay((chunk, _index, id) => {
      // The sealed end is one empty Noise message: a 2-byte length 16 and a tag.
      if (id.endsWith('.dialer') && chunk.byteLength === 18 && chunk[0] === 0 && chunk[1] === 16) { sealedEnds++; return [] }
      return [chunk]
    })
    const connA = await a.dial(b.peerId)
    const connB = await within('B accepting', incoming)
    await connA.write(testBytes(5000, 4))
    await connA.closeWrite()
    expect((await connB.read())?.byteLength).toBe(5000)
    expect(await within('B noticing the cut', rejected(connB.read()))).toMatchObject({ code: 'E_SECURE_AUTH' })
    expect(sealedEnds).toBe(1)
  })

  it('the multiplexer runs inside unchanged: two channels with their own windows carry 1 MiB each, byte-exact', async () => {
    const [a, b] = [await peer(), await peer()]
    const incoming = nextIncoming(b)
    const connA = await a.dial(b.peerId)
    const connB = await within('B accepting', incoming)
    const muxA = new Muxer(connA, {}, { windowBytes: 64 * 1024 })
    /** The largest memory a chunk B's channels read lies in. */
    let largestBuffer = 0
    const muxB = new Muxer(connB, {
      onOpen: async (channel) => {
        void (async () => {
          for (;;) {
            const chunk = await channel.read()
            if (chunk === null) break
            largestBuffer = Math.max(largestBuffer, chunk.buffer.byteLength)
            await channel.write(chunk)
          }
          await channel.closeWrite()
        })()
        return undefined
      }
    }, { windowBytes: 64 * 1024 })
    expect(muxB.remotePeer).toBe(a.peerId) // what consent rules (`@PEERID`) see: the proved id
    const echoOver = async (seed: number): Promise<void> => {
      const channel = await muxA.open({ type: 'test-echo', reliable: true })
      const data = testBytes(1024 * 1024, seed)
      const reading = (async () => { const parts: Uint8Array[] = []; for (;;) { const c = await channel.read(); if (c === null) return Buffer.concat(parts); parts.push(c) } })()
      await channel.write(data)
      await channel.closeWrite()
      expect(Buffer.compare(await reading, data)).toBe(0)
    }
    await within('two channels echoing 1 MiB each', Promise.all([echoOver(21), echoOver(22)]), 30_000)
    // 64 KiB DATA frames span the Noise messages (65,519 bytes of plaintext each): each reached its
    // channel in pieces, views into the opened messages, never joined into a frame-sized copy.
    expect(largestBuffer).toBeGreaterThan(0)
    expect(largestBuffer).toBeLessThanOrEqual(MAX_PLAINTEXT_BYTES)
    await muxA.close()
    await muxB.close()
  })

  it.each([['secure', true], ['plaintext', false]])('abort carries a StarsockError\'s code to the other side (%s); a plain Error still arrives as E_STREAM_ABORTED', async (_name, secure) => {
    const [a, b] = [await peer(), await peer()]
    let incoming = nextIncoming(b)
    const conn = await a.dial(b.peerId, { secure })
    const other = await within('B accepting', incoming)
    conn.abort(new StarsockError('E_DENIED', 'not this one'))
    expect(await within('B hearing the code', rejected(other.read()))).toMatchObject({ code: 'E_DENIED', message: 'not this one' })
    expect(await rejected(conn.read())).toMatchObject({ code: 'E_DENIED', message: 'Aborted here: not this one' })
    incoming = nextIncoming(b)
    const second = await a.dial(b.peerId, { secure })
    const otherSecond = await within('B accepting', incoming)
    second.abort(new Error('boom'))
    expect(await within('B hearing it', rejected(otherSecond.read()))).toMatchObject({ code: 'E_STREAM_ABORTED', message: 'boom' })
  })

  it('the caller\'s signal ends a secure dial stuck in its handshake with E_ABORTED, and the listener\'s handler never sees it', async () => {
    tapRelay((chunk, _index, id) => id.endsWith('.listener') ? [] : [chunk]) // message 2 never reaches the dialer
    const [a, b] = [await peer(), await peer()]
    const seen: Connection[] = []
    b.handle((conn) => seen.push(conn))
    const controller = new AbortController()
    const dialing = rejected(a.dial(b.peerId, { signal: controller.signal }))
    await new Promise((resolve) => setTimeout(resolve, 300))
    controller.abort()
    expect(await within('the dial ending', dialing)).toMatchObject({ code: 'E_ABORTED' })
    await waitFor('the dialer\'s streams closed', () => a.stats().sendingStreams === 0 && a.stats().receivingStreams === 0)
    expect(seen).toHaveLength(0)
  })

  it('with a server that gives no dial hints (before issue 14): a secure dial is classified by its bytes; a silent plaintext dialer is handed over as plaintext after the classification timeout, never left hanging', async () => {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with `.call(this)` below
    const hello = Rendezvous.prototype.hello
    vi.spyOn(Rendezvous.prototype, 'hello').mockImplementation(function (this: Rendezvous, session, request) {
      const reply = hello.call(this, session, request)
      session.dialHints = false // an older server: it knows no hints
      return reply
    })
    const [a, b] = [await peer(), await peer()]
    let incoming = nextIncoming(b)
    const conn = await a.dial(b.peerId)
    const accepted = await within('B accepting the secure dial', incoming)
    expect([conn.secure, accepted.secure, accepted.remotePeer]).toEqual([true, true, a.peerId])

    incoming = nextIncoming(b)
    const silent = await a.dial(b.peerId, { secure: false }) // sends nothing: waits for the listener
    const handed = await within('B handing the silent dialer over', incoming, CLASSIFY_TIMEOUT_MS + 5000)
    expect(handed.secure).toBe(false)
    await handed.write(new TextEncoder().encode('hello first'))
    expect(new TextDecoder().decode(await silent.read() as Uint8Array)).toBe('hello first')
  })

  it.each([
    ['a secure dialer is "legacy"', { starsock: false, secure: false }, true, true],
    ['a plaintext dialer opens a secure channel', { starsock: true, secure: true }, false, false]
  ])('a server whose hint lies (%s) changes nothing: the bytes decide', async (_name, lie, secure, expected) => {
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called with `.call(this)` below
    const incoming = Dials.prototype.incoming
    vi.spyOn(Dials.prototype, 'incoming').mockImplementation(function (this: Dials, dialId, from, hintOrAck, ack, handler, accepted) {
      return incoming.call(this, dialId, from, typeof hintOrAck === 'function' ? hintOrAck : lie, ack, handler, accepted)
    })
    const [a, b] = [await peer(), await peer()]
    const accepting = nextIncoming(b)
    const conn = await a.dial(b.peerId, { secure })
    await conn.write(new TextEncoder().encode('first words'))
    const accepted = await within('B accepting', accepting)
    expect([conn.secure, accepted.secure]).toEqual([expected, expected])
    expect(new TextDecoder().decode(await accepted.read() as Uint8Array)).toBe('first words')
  })

  it('a handler that throws is the application\'s bug: logged, no unhandled rejection, the peer takes the next connection', async () => {
    const [a, b] = [await peer(), await peer()]
    let thrown = 0
    b.handle(() => { thrown++; throw new Error('a bug in the application') })
    await a.dial(b.peerId)
    await waitFor('the handler to run', () => thrown === 1)
    const incoming = nextIncoming(b)
    const conn = await a.dial(b.peerId)
    expect((await within('the next connection', incoming)).secure).toBe(conn.secure)
  })

  it('the preamble is one multistream-select message', () => {
    expect(PREAMBLE.byteLength).toBe(23)
    expect(new TextDecoder().decode(PREAMBLE.subarray(1))).toBe('/starsock/noise/1.0.0\n')
  })
  it.each([true, false])('secure %s: the other side writes, then closes while our write waits for credit: its bytes and its clean end still arrive', async (secure) => {
    const [a, b] = [await peer(), await peer()]
    const incoming = nextIncoming(b)
    const conn = await a.dial(b.peerId, { secure })
    const listener = await within('B accepting', incoming)
    const pending = conn.write(testBytes(16 * 1024 * 1024, 1)).then(() => 'written', (err: unknown) => err)
    await new Promise((resolve) => setTimeout(resolve, 300))
    await listener.write(new TextEncoder().encode('response'))
    await listener.close()
    expect(await within('our write failing', pending, 10_000)).toMatchObject({ code: 'E_STREAM_CLOSED' })
    const got: Uint8Array[] = []
    for (let c = await conn.read(); c !== null; c = await conn.read()) got.push(c)
    expect(Buffer.concat(got).toString()).toBe('response')
  })
})
