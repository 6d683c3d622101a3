/**
 * Stream bytes on a node link (`server/cluster/links.ts`, `link-codec.ts`) over a real WebSocket
 * on loopback: to a node that said `heads` in its hello each chunk goes as a head message and the
 * chunk itself (no copy on the sending node), to an older node as one data message; both arrive
 * exact, and a head not followed by its chunk cuts the link.
 */
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket, WebSocketServer } from 'ws'
import { LINK_DATA_HEADER_BYTES, LINK_KIND_DATA, LINK_KIND_HEAD, encodeHead, type DataMessage, type HelloMessage } from '../server/cluster/link-codec.ts'
import { acceptLink, initiateLink, Link, linkProof, type LinkHandler } from '../server/cluster/links.ts'
import { testBytes, waitFor } from './helpers/server.ts'

interface Received { data: Array<{ k: number, s: number, payload: Buffer }>, bad: string[], raw: Array<{ binary: boolean, bytes: number, kind: number | undefined }> }

const servers: WebSocketServer[] = []
const sockets: WebSocket[] = []
afterEach(async () => {
  for (const ws of sockets.splice(0)) ws.terminate()
  for (const wss of servers.splice(0)) await new Promise((resolve) => wss.close(resolve))
})

/** Two ends of one WebSocket on loopback, as the trunk opens them (no compression, a zero mask). */
async function pair (): Promise<{ sender: WebSocket, receiver: WebSocket }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false })
  servers.push(wss)
  await new Promise((resolve) => wss.once('listening', resolve))
  const accepted = new Promise<WebSocket>((resolve) => wss.once('connection', resolve))
  const sender = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, { perMessageDeflate: false, generateMask: (mask) => mask.fill(0) })
  sockets.push(sender)
  await new Promise((resolve) => sender.once('open', resolve))
  const receiver = await accepted
  sockets.push(receiver)
  return { sender, receiver }
}

/** A link's handler that records what reaches the trunk, and the raw messages on the socket. */
function recording (ws: WebSocket): { handler: LinkHandler, got: Received } {
  const got: Received = { data: [], bad: [], raw: [] }
  ws.on('message', (data: Buffer, binary: boolean) => got.raw.push({ binary, bytes: data.byteLength, kind: binary ? data[0] : undefined }))
  const handler: LinkHandler = {
    message: () => {},
    data: (_link, d: DataMessage) => got.data.push({ k: d.k, s: d.s, payload: Buffer.from(d.payload) }),
    bad: (_link, what) => got.bad.push(what),
    drained: () => {},
    closed: () => {}
  }
  return { handler, got }
}

const SECRET = 'link-data-test-secret-0123456789'

/** The next text message on `ws`, parsed. */
async function nextText (ws: WebSocket): Promise<Record<string, unknown>> {
  return await new Promise((resolve) => ws.once('message', (d: Buffer) => resolve(JSON.parse(d.toString()) as Record<string, unknown>)))
}

const CHUNKS = [testBytes(70_000, 1), testBytes(1, 2), new Uint8Array(0), testBytes(65_535, 3)]

describe('the link handshake offers heads', () => {
  it('between two nodes of this version: each learns the other takes them', async () => {
    const { sender, receiver } = await pair()
    const [opened, accepted] = await Promise.all([initiateLink(sender, 'B', 'A', SECRET), acceptLink(receiver, 'A', SECRET, (n) => n === 'B')])
    expect(opened).toEqual({ node: 'A', heads: true })
    expect(accepted).toEqual({ node: 'B', heads: true })
  })

  it('with an older acceptor (its hello without heads), the opener learns it does not take them', async () => {
    const { sender, receiver } = await pair()
    const hello = nextText(receiver)
    const opening = initiateLink(sender, 'B', 'A', SECRET)
    const theirs = await hello as unknown as HelloMessage
    expect(theirs.heads).toBe(true)
    const acceptor = { node: 'A', nonce: 'cd'.repeat(32) }
    const proof = nextText(receiver)
    receiver.send(JSON.stringify({ t: 'hello', ...acceptor, proof: linkProof(SECRET, 'acceptor', theirs, acceptor) }))
    expect(await proof).toEqual({ t: 'proof', proof: linkProof(SECRET, 'initiator', theirs, acceptor) })
    receiver.send(JSON.stringify({ t: 'ok' }))
    expect(await opening).toEqual({ node: 'A', heads: false })
  })

  it('with an older opener (its hello without heads), the acceptor learns it does not take them', async () => {
    const { sender, receiver } = await pair()
    const accepting = acceptLink(receiver, 'A', SECRET, (n) => n === 'B')
    const initiator = { node: 'B', nonce: 'ef'.repeat(32) }
    const hello = nextText(sender)
    sender.send(JSON.stringify({ t: 'hello', ...initiator }))
    const theirs = await hello as unknown as HelloMessage
    expect(theirs.heads).toBe(true)
    sender.send(JSON.stringify({ t: 'proof', proof: linkProof(SECRET, 'initiator', initiator, theirs) }))
    expect(await accepting).toEqual({ node: 'B', heads: false })
  })
})

describe('stream bytes on a node link', () => {
  it('to a node that takes heads: a head message, then the chunk object itself (no copy); bytes exact', async () => {
    const { sender, receiver } = await pair()
    const { handler, got } = recording(receiver)
    const sent: unknown[] = []
    const send = sender.send.bind(sender)
    sender.send = ((data: unknown, ...rest: unknown[]) => { sent.push(data); return (send as (...a: unknown[]) => void)(data, ...rest) }) as typeof sender.send
    const out = new Link('B', 'initiator', sender, recording(sender).handler, true)
    const into = new Link('A', 'acceptor', receiver, handler, true)
    for (const [i, chunk] of CHUNKS.entries()) out.sendData(0xfffffffe - i, (i % 2) as 0 | 1, chunk)
    await waitFor('every chunk on the receiving node', () => got.data.length === CHUNKS.length, 10_000)
    expect(got.bad).toEqual([])
    expect(got.data.map((d) => [d.k, d.s])).toEqual(CHUNKS.map((_, i) => [0xfffffffe - i, i % 2]))
    for (const [i, chunk] of CHUNKS.entries()) expect(got.data[i]?.payload.equals(chunk)).toBe(true)
    expect(got.raw).toEqual(CHUNKS.flatMap((c) => [{ binary: true, bytes: LINK_DATA_HEADER_BYTES, kind: LINK_KIND_HEAD }, { binary: true, bytes: c.byteLength, kind: c[0] }]))
    // What went to the socket: each chunk as the relay handed it over, not a copy of it.
    expect(sent.filter((_, i) => i % 2 === 1)).toEqual(CHUNKS)
    for (const [i, chunk] of CHUNKS.entries()) expect(sent[2 * i + 1]).toBe(chunk)
    out.terminate('test over')
    into.terminate('test over')
  })

  it('to an older node (its hello without heads): one data message per chunk, which this node still takes; bytes exact', async () => {
    const { sender, receiver } = await pair()
    const { handler, got } = recording(receiver)
    const out = new Link('B', 'initiator', sender, recording(sender).handler, false)
    const into = new Link('A', 'acceptor', receiver, handler, true)
    for (const [i, chunk] of CHUNKS.entries()) out.sendData(i, 1, chunk)
    await waitFor('every chunk on the receiving node', () => got.data.length === CHUNKS.length, 10_000)
    expect(got.bad).toEqual([])
    for (const [i, chunk] of CHUNKS.entries()) expect(got.data[i]?.payload.equals(chunk)).toBe(true)
    expect(got.raw).toEqual(CHUNKS.map((c) => ({ binary: true, bytes: LINK_DATA_HEADER_BYTES + c.byteLength, kind: LINK_KIND_DATA })))
    out.terminate('test over')
    into.terminate('test over')
  })

  it('cuts the link (malformed data) for a head followed by a text message, and for a head of another size; nothing reaches the relay', async () => {
    for (const wrong of [
      (ws: WebSocket) => { ws.send(encodeHead(3, 0)); ws.send(JSON.stringify({ t: 'ack', k: 3, s: 0, n: 1 })) },
      (ws: WebSocket) => { ws.send(Buffer.concat([encodeHead(3, 0), Buffer.of(1)])) },
      (ws: WebSocket) => { ws.send(Buffer.from([LINK_KIND_HEAD, 0, 0, 0, 3, 2])) }
    ]) {
      const { sender, receiver } = await pair()
      const { handler, got } = recording(receiver)
      const into = new Link('A', 'acceptor', receiver, handler, true)
      wrong(sender)
      await waitFor('the link to take it as malformed', () => got.bad.length > 0, 10_000)
      expect(got.bad).toEqual(['data'])
      expect(got.data).toEqual([])
      into.terminate('test over')
    }
  })
})
