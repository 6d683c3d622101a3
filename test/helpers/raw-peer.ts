/**
 * A socket.io-client 4 peer that speaks the websocket-star events directly (no starsock client
 * library), so tests see exactly what crosses the wire.
 */
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { PrivateKey } from '@libp2p/interface'
import { io, type Socket } from 'socket.io-client'
import { streamEvent } from '../../shared/events.ts'

/** Key types the challenge accepts. */
export type KeyKind = 'Ed25519' | 'RSA' | 'secp256k1'

/** A connected raw peer. */
export interface RawPeer {
  socket: Socket
  key: PrivateKey
  id: string
  addr: string
  /** Addresses seen in `ws-peer`. */
  announced: string[]
  close: () => void
}

const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

/** Connect a socket.io-client 4 socket; settles once connected. */
export async function connectSocket (url: string, opts: { transports?: string[], auth?: Record<string, unknown>, query?: Record<string, string>, ca?: Buffer, localAddress?: string } = {}): Promise<Socket> {
  // `localAddress`: connect from another loopback address (127.0.0.2), as a client on another IP.
  const socket = io(url, { transports: opts.transports ?? ['websocket'], reconnection: false, forceNew: true, auth: opts.auth, query: opts.query, ca: opts.ca?.toString(), localAddress: opts.localAddress } as Parameters<typeof io>[1])
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', (err) => { socket.close(); reject(err) })
  })
  return socket
}

/** Emit with an ack and settle with all the ack's arguments; rejects after `ms`. */
export async function request (socket: Socket, event: string, args: unknown[], ms = 5000): Promise<unknown[]> {
  return await new Promise((resolve, reject) => {
    socket.timeout(ms).emit(event, ...args, (err: Error | null, ...reply: unknown[]) => {
      if (err != null) reject(new Error(`no ack to ${event} within ${ms} ms`))
      else resolve(reply)
    })
  })
}

/** A fresh key and the websocket-star address for it on `port`. */
export async function makeIdentity (port: number, kind: KeyKind = 'Ed25519'): Promise<{ key: PrivateKey, id: string, addr: string }> {
  const key = kind === 'RSA' ? await generateKeyPair('RSA', 2048) : await generateKeyPair(kind)
  const id = peerIdFromPrivateKey(key).toString()
  return { key, id, addr: `/ip4/127.0.0.1/tcp/${port}/ws/p2p-websocket-star/ipfs/${id}` }
}

/** Run both steps of the crypto challenge; settles with the join reply's peer list. */
export async function joinWithChallenge (socket: Socket, key: PrivateKey, addr: string): Promise<string[]> {
  const [err1, nonce] = await request(socket, 'ss-join', [addr, toHex(publicKeyToProtobuf(key.publicKey))])
  if (err1 != null) throw new Error(String(err1))
  if (typeof nonce !== 'string') throw new Error('no nonce in the join reply')
  const sig = await key.sign(new TextEncoder().encode(nonce))
  const [err2, , peers] = await request(socket, 'ss-join', [addr, toHex(sig)])
  if (err2 != null) throw new Error(String(err2))
  return peers as string[]
}

/** Connect and join a new raw peer on the server at `url`. */
export async function startRawPeer (url: string, port: number, opts: { kind?: KeyKind, transports?: string[], localAddress?: string } = {}): Promise<RawPeer> {
  const socket = await connectSocket(url, { transports: opts.transports, localAddress: opts.localAddress })
  const { key, id, addr } = await makeIdentity(port, opts.kind)
  const announced: string[] = []
  socket.on('ws-peer', (a: string) => announced.push(a))
  try {
    await joinWithChallenge(socket, key, addr)
  } catch (err) {
    socket.close()
    throw err
  }
  return { socket, key, id, addr, announced, close: () => socket.close() }
}

/** Receive one stream: emit `accept`, collect chunks until a clean end; rejects with the error string. */
export async function receiveStream (socket: Socket, streamId: string, onChunk?: (chunk: Buffer) => void): Promise<Buffer> {
  const chunks: Buffer[] = []
  return await new Promise((resolve, reject) => {
    const queue = streamEvent('queue', streamId)
    const error = streamEvent('error', streamId)
    const done = (): void => { socket.off(queue); socket.off(error) }
    socket.on(queue, (chunk: Buffer) => { chunks.push(chunk); onChunk?.(chunk) })
    socket.on(error, (end: unknown) => {
      done()
      if (end === true) resolve(Buffer.concat(chunks))
      else reject(new Error(String(end)))
    })
    socket.emit(streamEvent('accept', streamId))
  })
}

/**
 * The failure the server reports on `streamId`, received by `socket`, without accepting the stream
 * (a listener that has not answered its dial yet); rejects on a clean end.
 */
export async function streamFailure (socket: Socket, streamId: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    socket.once(streamEvent('error', streamId), (end: unknown) => {
      if (end === true) reject(new Error(`${streamId} ended cleanly`))
      else resolve(String(end))
    })
  })
}

/** The sending end of one stream: writes wait for the receiver's `accept`. */
export class StreamSink {
  private readonly accepted: Promise<void>

  constructor (private readonly socket: Socket, private readonly streamId: string) {
    this.accepted = new Promise((resolve) => socket.once(streamEvent('accept', streamId), () => resolve()))
  }

  /** Send chunks, then a clean end unless `end` is false. Settles once emitted. */
  async send (chunks: Iterable<Uint8Array>, end = true): Promise<void> {
    await this.accepted
    for (const chunk of chunks) this.socket.emit(streamEvent('queue', this.streamId), chunk)
    if (end) this.socket.emit(streamEvent('error', this.streamId), true)
  }
}

/** Split `data` into `size`-byte chunks. */
export function chunked (data: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size))
  return out
}

/** Answer every `ss-incomming` on `peer` by echoing the dialer's stream back. */
export function echoIncoming (peer: RawPeer): void {
  peer.socket.on('ss-incomming', (dialId: string, _from: string, ack: (err?: string) => void) => {
    const sink = new StreamSink(peer.socket, `${dialId}.listener`)
    const pending: Buffer[] = []
    let ended = false
    const flush = (): void => {
      void sink.send(pending.splice(0), false)
      if (ended) void sink.send([], true)
    }
    receiveStream(peer.socket, `${dialId}.dialer`, (chunk) => { pending.push(chunk); flush() })
      .then(() => { ended = true; flush() }, () => {})
    ack()
  })
}

/** Dial `to` from `peer` and exchange `data` with an echoing listener; settles with what came back. */
export async function dialAndEcho (peer: RawPeer, to: string, data: Uint8Array, chunkSize = 64 * 1024): Promise<Buffer> {
  const dialId = crypto.randomUUID()
  const sink = new StreamSink(peer.socket, `${dialId}.dialer`)
  const [err] = await request(peer.socket, 'ss-dial', [peer.addr, to, dialId])
  if (err != null) throw new Error(String(err))
  const back = receiveStream(peer.socket, `${dialId}.listener`)
  await sink.send(chunked(data, chunkSize))
  return await back
}
