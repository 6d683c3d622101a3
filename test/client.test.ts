import pull from 'pull-stream'
import { describe, expect, it } from 'vitest'
import { toDuplex } from '../client/connection.node.ts'
import type { Connection } from '../client/connection.ts'
import { createPeer, StarsockPeer } from '../client/peer.ts'
import { createIdentity } from '../client/identity.ts'
import { echo, readAll, same } from './helpers/connections.ts'
import { connectSocket, joinWithChallenge, makeIdentity, receiveStream } from './helpers/raw-peer.ts'
import { usePeers } from './helpers/peers.ts'
import { rejected, testBytes, waitFor, within } from './helpers/server.ts'
import { expectBytes } from './helpers/bytes.ts'


/** What `fn` threw (fails when it throws nothing). */
function caught (fn: () => unknown): unknown {
  try { fn() } catch (err) { return err }
  throw new Error('expected a throw')
}

describe('client library, Node to Node through a real server', () => {
  const { peer, server } = usePeers()

  it('joins, discovers by events, dials by peer id and echoes 10 MiB byte-exact both ways', async () => {
    const a = await peer()
    const b = await peer()
    a.handle(echo)
    b.handle(echo)
    expect(a.state).toBe('joined')
    await waitFor('A to know B', () => a.peers().some((p) => p.peerId === b.peerId))
    expect(b.peers().map((p) => p.addr)).toEqual([a.addr])
    const data = testBytes(10 * 1024 * 1024)
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const conn = await from.dial(to.peerId)
      const back = readAll(conn)
      await conn.write(data)
      await conn.closeWrite()
      expectBytes(await within('10 MiB echo', back, 30_000), data, '10 MiB echo')
    }
    await waitFor('every stream closed on the server', () => server().stats().streams === 0)
  })

  it('runs 100 concurrent streams over one peer pair', async () => {
    const a = await peer()
    const b = await peer()
    b.handle(echo)
    const results = await within('100 echoes', Promise.all(Array.from({ length: 100 }, async (_, i) => {
      const data = testBytes(20_000 + i * 101, i + 1)
      const conn = await a.dial(b.addr)
      const back = readAll(conn)
      await conn.write(data)
      await conn.closeWrite()
      return same(await back, data)
    })), 30_000)
    expect(results.every(Boolean)).toBe(true)
  })

  it('holds a writer back while the reader does not read, without buffering past the window', async () => {
    const windowBytes = 256 * 1024
    const a = await peer()
    const b = await peer({ windowBytes })
    let incoming: Connection | undefined
    b.handle((conn) => { incoming = conn })
    const conn = await a.dial(b.peerId)
    const data = testBytes(8 * 1024 * 1024)
    let written = false
    const writing = conn.write(data).then(() => { written = true })
    await waitFor('the incoming connection', () => incoming !== undefined)
    await waitFor('the window to fill', () => (incoming?.stats().bufferedBytes ?? 0) >= windowBytes / 2)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(written).toBe(false)
    expect(incoming?.stats().bufferedBytes).toBeLessThanOrEqual(windowBytes)
    expect(server().stats().bufferedBytes).toBeLessThanOrEqual(windowBytes)
    expect(conn.stats().creditBytes).toBeLessThan(128 * 1024)
    const reading = readAll(incoming as Connection)
    await within('the write to finish once read', writing, 20_000)
    await conn.closeWrite()
    expectBytes(await within('the 8 MiB at the reader', reading, 20_000), data, 'the 8 MiB at the reader')
  })

  it('tells close, half-close and abort apart on the other side', async () => {
    const a = await peer()
    const b = await peer()
    const incoming: Connection[] = []
    b.handle((conn) => incoming.push(conn))

    // half-close: B reads a clean end and can still answer
    const half = await a.dial(b.peerId)
    await half.write(new Uint8Array([1, 2, 3]))
    await half.closeWrite()
    await waitFor('incoming 1', () => incoming.length === 1)
    expect([...(await within('the half-closed bytes at B', readAll(incoming[0] as Connection)))]).toEqual([1, 2, 3])
    await incoming[0]?.write(new Uint8Array([9]))
    await incoming[0]?.closeWrite()
    expect([...(await within('B\'s answer after the half-close', readAll(half)))]).toEqual([9])

    // close: B reads a clean end, its writes fail with E_STREAM_CLOSED
    const closing = await a.dial(b.peerId)
    await waitFor('incoming 2', () => incoming.length === 2)
    await closing.close()
    const second = incoming[1] as Connection
    expect(await within('a clean end at B', second.read())).toBeNull()
    await waitFor('B to hear of the close', () => second.stats().creditBytes !== undefined)
    await expect(async () => { for (let i = 0; i < 50; i++) { await second.write(new Uint8Array(10)); await new Promise((r) => setTimeout(r, 10)) } })
      .rejects.toMatchObject({ code: 'E_STREAM_CLOSED' })

    // abort: B's read and write fail with E_STREAM_ABORTED and the message
    const aborting = await a.dial(b.peerId)
    await waitFor('incoming 3', () => incoming.length === 3)
    aborting.abort(new Error('boom'))
    const third = incoming[2] as Connection
    await expect(third.read()).rejects.toMatchObject({ code: 'E_STREAM_ABORTED', message: expect.stringContaining('boom') })
    await expect(async () => { for (let i = 0; i < 50; i++) { await third.write(new Uint8Array(10)); await new Promise((r) => setTimeout(r, 10)) } })
      .rejects.toMatchObject({ code: 'E_STREAM_ABORTED' })
  })

  it('works as a pull-stream duplex and as a Node Duplex', async () => {
    const a = await peer()
    const b = await peer()
    b.handle((conn) => pull(conn.source, conn.sink)) // pull-stream echo
    const conn = await a.dial(b.peerId)
    const duplex = toDuplex(conn)
    const got: Buffer[] = []
    duplex.on('data', (d: Buffer) => got.push(d))
    const ended = new Promise((resolve) => duplex.on('end', resolve))
    const data = testBytes(300_000)
    duplex.end(Buffer.from(data))
    await within('the Duplex to end', ended)
    expectBytes(Buffer.concat(got), data, 'the echo through the Duplex')
  })

  it('fails the writer, not only the reader, when the other side goes away', async () => {
    const a = await peer()
    const b = await peer()
    b.handle(() => {}) // takes the connection and never reads
    const conn = await a.dial(b.peerId)
    await conn.write(new Uint8Array(1000))
    await b.close()
    const writing = (async () => { for (;;) await conn.write(new Uint8Array(64 * 1024)) })()
    await expect(within('the write to fail', writing, 5000)).rejects.toMatchObject({ code: 'E_PEER_GONE' })
  })

  it('a dial to its own id fails at once with E_BAD_REQUEST (it is never online to itself); a dial to its own address reaches it', async () => {
    const a = await peer()
    expect(await within('the dial to its id to fail', rejected(a.dial(a.peerId)), 2000)).toMatchObject({ code: 'E_BAD_REQUEST', message: `${a.peerId} is this peer itself: a peer does not dial its own id (dial its address, ${a.addr}, to reach itself)` })
    a.handle(echo)
    const conn = await a.dial(a.addr)
    const back = readAll(conn)
    await conn.write(testBytes(1000))
    await conn.closeWrite()
    expectBytes(await within('the echo from itself', back), testBytes(1000), 'the echo from itself')
  })

  it('cleans up a dial the caller abandons while the listener is still answering', async () => {
    const a = await peer()
    const slow = await connectSocket(server().url())
    const me = await makeIdentity(server().port)
    await joinWithChallenge(slow, me.key, me.addr)
    let got: Promise<Buffer> | undefined
    slow.on('ss-incomming', (dialId: string, _from: string, ack: () => void) => {
      // It accepts the dialer's stream when it acks (an accept answers the dial).
      setTimeout(() => {
        got = receiveStream(slow, `${dialId}.dialer`)
        got.catch(() => {})
        ack()
      }, 300)
    })
    await expect(a.dial(me.addr, { signal: AbortSignal.timeout(100) })).rejects.toMatchObject({ code: 'E_ABORTED' })
    await waitFor('the listener to answer', () => got !== undefined)
    await expect(within('the listener to hear', got ?? Promise.reject(new Error('no dial')))).rejects.toThrow('Dial abandoned')
    await waitFor('the streams of the abandoned dial to close', () => server().stats().streams === 0)
    slow.close()
  })

  it('reports peers leaving', async () => {
    const a = await peer()
    const b = await peer()
    const left: string[] = []
    a.on('peer:leave', (p) => left.push(p.peerId))
    await b.close()
    await waitFor('peer:leave for B', () => left.includes(b.peerId))
    expect(a.peers()).toEqual([])
    await expect(a.dial(b.peerId)).rejects.toMatchObject({ code: 'E_PEER_NOT_FOUND' })
    await expect(a.dial(b.addr)).rejects.toMatchObject({ code: 'E_PEER_NOT_FOUND', message: 'Peer not found' })
  })

  it('gives clear errors for bad input from the API', async () => {
    // The class and the message: any TypeError (a property read on undefined) would pass the class alone.
    expect(caught(() => new StarsockPeer({ server: 'not a url', identity: {} as never }))).toStrictEqual(new TypeError('server not a url is neither a URL nor a multiaddr'))
    expect(await rejected(createPeer({ server: 'ftp://x' }))).toStrictEqual(new TypeError('server URL ftp://x must be http(s):// or ws(s)://'))
    expect(await rejected(createPeer({ server: '/ip4/127.0.0.1/udp/1' }))).toStrictEqual(new TypeError('server multiaddr /ip4/127.0.0.1/udp/1 must look like /ip4/HOST/tcp/PORT/ws (or ip6, dns4, wss)'))
    expect(await rejected(createPeer({ server: server().url(), windowBytes: -1 }))).toStrictEqual(new RangeError('windowBytes must be a positive integer, got -1'))
    const a = await peer()
    expect(await rejected(a.dial('not-a-peer-id!'))).toStrictEqual(new TypeError('dial target not-a-peer-id! is not a peer id'))
    expect(await rejected(a.dial('/garbage'))).toStrictEqual(new TypeError('dial target /garbage is not a valid multiaddr'))
    const unjoined = new StarsockPeer({ server: server().url(), identity: await createIdentity() })
    await expect(unjoined.dial(a.peerId)).rejects.toMatchObject({ code: 'E_NOT_JOINED' })
    const aborted = AbortSignal.abort()
    await expect(a.dial(a.addr, { signal: aborted })).rejects.toMatchObject({ code: 'E_ABORTED' })
    const b = await peer()
    b.handle(echo)
    const conn = await a.dial(b.peerId)
    await conn.closeWrite()
    await expect(conn.write(new Uint8Array(1))).rejects.toMatchObject({ code: 'E_STREAM_CLOSED' })
    const noHandler = await peer()
    await expect(a.dial(noHandler.peerId)).rejects.toMatchObject({ code: 'E_DIAL_REFUSED' })
  })

  it('fails fast when the server is unreachable', async () => {
    const started = Date.now()
    await expect(createPeer({ server: 'http://127.0.0.1:1', timeoutMs: 1500 })).rejects.toMatchObject({ code: 'E_SERVER_UNREACHABLE' })
    expect(Date.now() - started).toBeLessThan(5000)
  })
})
