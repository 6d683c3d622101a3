/**
 * Node links: one authenticated WebSocket between two nodes of a cluster (`ws`, no compression,
 * bounded messages). Before anything else each side proves it knows the cluster secret with a
 * mutual challenge: both send a random nonce and answer HMAC-SHA256(secret, context, both nonces,
 * both node ids, its role), compared in constant time. An authenticated link pings; one that
 * stops answering (a frozen or unplugged node) is cut after `LINK_DEAD_MS`.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { WebSocket } from 'ws'
import type { StandIn } from './stand-in.ts'
import { decodeData, decodeHead, decodeMessage, encodeData, encodeHead, encodeMessage, LINK_KIND_HEAD, LINK_PROOF_CONTEXT, type DataHead, type DataMessage, type HelloMessage, type LinkMessage, type StreamSide } from './link-codec.ts'

/** Time a connection has to finish the handshake. */
export const LINK_AUTH_TIMEOUT_MS = 3000
/** How often an open link pings. */
export const LINK_PING_INTERVAL_MS = 1000
/** A link that heard nothing (no message, no pong) for this long is cut: about two missed pings. */
export const LINK_DEAD_MS = 3500
/** Above this many bytes waiting in a link's socket, stand-ins stop sending stream bytes on it. */
export const LINK_HIGH_WATER_BYTES = 4 * 1024 * 1024

/** Why a connection on the internal port was refused (the label of `starsock_cluster_link_refused_total`). */
export type RefusalReason = 'secret' | 'unknown-node' | 'bad-message' | 'timeout' | 'too-many' | 'wrong-node'

/** WebSocket close codes of a refused or failed link. */
export const LINK_CLOSE_CODES: Record<RefusalReason, number> = {
  secret: 4001,
  'unknown-node': 4004,
  'bad-message': 4003,
  timeout: 4008,
  'too-many': 1013,
  'wrong-node': 4009
}

/** Which side of the handshake a node played. */
export type LinkRole = 'initiator' | 'acceptor'

/** A refused handshake: why, for the count and the log. */
export class LinkRefused extends Error {
  constructor (readonly reason: RefusalReason, detail: string) {
    super(detail)
  }
}

/** What an open link tells its owner (the trunk). */
export interface LinkHandler {
  message: (link: Link, message: LinkMessage) => void
  data: (link: Link, data: DataMessage) => void
  /** A message that is not one (counted, then the link is cut). */
  bad: (link: Link, what: string) => void
  /** The socket flushed what waited in it below the high-water mark. */
  drained: (link: Link) => void
  closed: (link: Link, why: string) => void
}

/** The proof of `role` over both nonces and node ids. */
export function linkProof (secret: string, role: LinkRole, initiator: { node: string, nonce: string }, acceptor: { node: string, nonce: string }): string {
  return createHmac('sha256', secret)
    .update([LINK_PROOF_CONTEXT, initiator.nonce, acceptor.nonce, initiator.node, acceptor.node, role].join('\n'))
    .digest('hex')
}

/** Whether two hex proofs are equal, in constant time. */
export function sameProof (a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex')
  const y = Buffer.from(b, 'hex')
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y)
}

/** A fresh nonce (32 random bytes, hex). */
export function newNonce (): string {
  return randomBytes(32).toString('hex')
}

/** The next text message of `ws` during the handshake, checked; rejects on anything else, a close or after `deadline`. */
async function nextMessage (ws: WebSocket, deadline: number): Promise<LinkMessage> {
  return await new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer)
      ws.off('message', onMessage)
      ws.off('close', onClose)
    }
    const onMessage = (data: Buffer, isBinary: boolean): void => {
      done()
      const m = isBinary ? undefined : decodeMessage(data.toString())
      if (m === undefined) reject(new LinkRefused('bad-message', 'not a handshake message'))
      else resolve(m)
    }
    const onClose = (code: number): void => {
      done()
      reject(new LinkRefused(code === LINK_CLOSE_CODES.secret ? 'secret' : code === LINK_CLOSE_CODES['unknown-node'] ? 'unknown-node' : 'bad-message', `closed during the handshake (${code})`))
    }
    const timer = setTimeout(() => { done(); reject(new LinkRefused('timeout', 'no handshake in time')) }, Math.max(0, deadline - Date.now()))
    ws.on('message', onMessage)
    ws.on('close', onClose)
  })
}

/** What the handshake learnt of the other node: its id, and whether it takes chunks as a head and the chunk (`link-codec.ts`). */
export interface LinkPeer { node: string, heads: boolean }

/**
 * Accept side of the handshake on a new connection: settles with the other node once it proved
 * the secret; rejects with `LinkRefused` (the caller closes and counts).
 */
export async function acceptLink (ws: WebSocket, me: string, secret: string, known: (node: string) => boolean): Promise<LinkPeer> {
  const deadline = Date.now() + LINK_AUTH_TIMEOUT_MS
  const hello = await nextMessage(ws, deadline)
  if (hello.t !== 'hello') throw new LinkRefused('bad-message', `expected hello, got ${hello.t}`)
  if (hello.node === me || !known(hello.node)) throw new LinkRefused('unknown-node', `node ${hello.node.slice(0, 64)} is not a member`)
  const initiator = { node: hello.node, nonce: hello.nonce }
  const acceptor = { node: me, nonce: newNonce() }
  const reply: HelloMessage = { t: 'hello', ...acceptor, proof: linkProof(secret, 'acceptor', initiator, acceptor), heads: true }
  ws.send(encodeMessage(reply))
  const proof = await nextMessage(ws, deadline)
  if (proof.t !== 'proof') throw new LinkRefused('bad-message', `expected proof, got ${proof.t}`)
  if (!sameProof(proof.proof, linkProof(secret, 'initiator', initiator, acceptor))) throw new LinkRefused('secret', 'wrong proof')
  ws.send(encodeMessage({ t: 'ok' }))
  return { node: hello.node, heads: hello.heads === true }
}

/** Initiator side: prove the secret to node `expected` on `ws` (open); settles with it once it said ok, rejects with `LinkRefused`. */
export async function initiateLink (ws: WebSocket, me: string, expected: string, secret: string): Promise<LinkPeer> {
  const deadline = Date.now() + LINK_AUTH_TIMEOUT_MS
  const initiator = { node: me, nonce: newNonce() }
  ws.send(encodeMessage({ t: 'hello', ...initiator, heads: true }))
  const hello = await nextMessage(ws, deadline)
  if (hello.t !== 'hello' || hello.proof === undefined) throw new LinkRefused('bad-message', 'expected hello with a proof')
  if (hello.node !== expected) throw new LinkRefused('wrong-node', `expected node ${expected}, got ${hello.node.slice(0, 64)}`)
  const acceptor = { node: hello.node, nonce: hello.nonce }
  if (!sameProof(hello.proof, linkProof(secret, 'acceptor', initiator, acceptor))) throw new LinkRefused('secret', 'wrong proof')
  ws.send(encodeMessage({ t: 'proof', proof: linkProof(secret, 'initiator', initiator, acceptor) }))
  const ok = await nextMessage(ws, deadline)
  if (ok.t !== 'ok') throw new LinkRefused('bad-message', `expected ok, got ${ok.t}`)
  return { node: hello.node, heads: hello.heads === true }
}

/** An authenticated link to node `node`, and the dials it carries by key. */
export class Link {
  /** The stand-ins of the dials on this link, by dial key. */
  readonly dials = new Map<number, StandIn>()
  /** Keys this side gives out: even for the initiator, odd for the acceptor (a link carries dials both ways). */
  private nextKey: number
  private lastHeardMs = Date.now()
  private readonly pinger: ReturnType<typeof setInterval>
  private isOpen = true
  /** Its node left the cluster while the link still answered: no new dial goes on it; it closes once its dials are over. */
  retiring = false
  /** Stand-ins stopped by the high-water mark wait for a `drained`. */
  private behind = false
  /** A head message received: the next binary message is its chunk. */
  private head: DataHead | undefined

  constructor (
    readonly node: string,
    readonly role: LinkRole,
    private readonly ws: WebSocket,
    private readonly handler: LinkHandler,
    /** The other node takes chunks as a head message and the chunk (it said so in its hello). */
    private readonly heads: boolean
  ) {
    this.nextKey = role === 'initiator' ? 0 : 1
    ws.on('message', (data: Buffer, isBinary: boolean) => this.received(data, isBinary))
    ws.on('pong', () => { this.lastHeardMs = Date.now() })
    ws.on('close', (code: number) => this.closed(`closed (${code})`))
    ws.on('error', () => {}) // a close follows
    this.pinger = setInterval(() => this.check(), LINK_PING_INTERVAL_MS)
    this.pinger.unref?.()
  }

  /** Whether the link still carries messages. */
  get open (): boolean {
    return this.isOpen
  }

  /** A new dial key of this side. */
  newKey (): number {
    const k = this.nextKey
    this.nextKey = (this.nextKey + 2) % 0x100000000
    return k
  }

  /** Milliseconds since the other node was last heard (a message or a pong). */
  silentMs (): number {
    return Date.now() - this.lastHeardMs
  }

  /** Bytes waiting in the socket. */
  get bufferedAmount (): number {
    return this.ws.bufferedAmount
  }

  /** Whether stream bytes should wait (the socket is far behind). */
  congested (): boolean {
    if (this.ws.bufferedAmount < LINK_HIGH_WATER_BYTES) return false
    this.behind = true
    return true
  }

  /** Send a text message (dropped once the link closed). */
  send (message: LinkMessage): void {
    if (this.isOpen) this.ws.send(encodeMessage(message))
  }

  /**
   * Send a chunk of stream `s` of dial `k`: a head message and the chunk as it is (no copy), or one
   * data message to a node that does not take heads. The owner hears `drained` once the socket
   * caught up, when it was behind.
   */
  sendData (k: number, s: StreamSide, chunk: Uint8Array): void {
    if (!this.isOpen) return
    if (!this.heads) return this.sendBinary(encodeData(k, s, chunk))
    this.ws.send(encodeHead(k, s))
    this.sendBinary(chunk)
  }

  private sendBinary (data: Uint8Array): void {
    this.ws.send(data, () => {
      if (this.behind && this.ws.bufferedAmount < LINK_HIGH_WATER_BYTES / 2) {
        this.behind = false
        this.handler.drained(this)
      }
    })
  }

  /** Settles once what waits in the socket was written, or after `ms`. */
  async flush (ms: number): Promise<void> {
    const deadline = Date.now() + ms
    while (this.isOpen && this.ws.bufferedAmount > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }

  /** Close the link (going away); its dials fail on the owner's side as for any close. */
  close (code = 1001, reason = 'going away'): void {
    this.ws.close(code, reason)
    // A peer that does not answer the close frame is cut.
    setTimeout(() => this.ws.terminate(), 1000).unref?.()
  }

  /** Cut the link now. */
  terminate (why: string): void {
    this.ws.terminate()
    this.closed(why)
  }

  private received (data: Buffer, isBinary: boolean): void {
    this.lastHeardMs = Date.now()
    if (!this.isOpen) return
    const head = this.head
    if (head !== undefined) {
      // A head's chunk comes right behind it, nothing else.
      this.head = undefined
      if (!isBinary) return this.handler.bad(this, 'data')
      return this.handler.data(this, { k: head.k, s: head.s, payload: data })
    }
    if (isBinary) {
      if (data[0] === LINK_KIND_HEAD) {
        this.head = decodeHead(data)
        return this.head === undefined ? this.handler.bad(this, 'data') : undefined
      }
      const d = decodeData(data)
      if (d === undefined) return this.handler.bad(this, 'data')
      return this.handler.data(this, d)
    }
    const m = decodeMessage(data.toString())
    if (m === undefined) return this.handler.bad(this, 'message')
    this.handler.message(this, m)
  }

  private check (): void {
    if (Date.now() - this.lastHeardMs > LINK_DEAD_MS) return this.terminate(`no answer for ${LINK_DEAD_MS} ms`)
    this.ws.ping()
  }

  private closed (why: string): void {
    if (!this.isOpen) return
    this.isOpen = false
    clearInterval(this.pinger)
    this.handler.closed(this, why)
  }
}
