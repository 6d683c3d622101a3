/**
 * A starsock peer (Node and browser): joins a server through the crypto challenge, keeps the set
 * of online peers, dials and accepts connections with flow-controlled streams, reconnects and
 * rejoins when the server connection drops.
 */
import { io, type Socket } from 'socket.io-client'
import { errorFromWire, StarsockError, wireError } from '../shared/errors.ts'
import { EVENTS, parseStreamEvent, type HelloReply, type HelloRequest, type PeersPage, type UdpAllocation } from '../shared/events.ts'
import { checkDisplaced } from '../shared/validate.ts'
import type { Logger } from '../shared/logger.ts'
import { parseAddress } from '../shared/wsstar-address.ts'
export type { UdpAllocation } from '../shared/events.ts'
import { Connection } from './connection.ts'
import { Emitter } from './emitter.ts'
import { createIdentity, publicKeyHex, signNonce, type Identity } from './identity.ts'
import { parseServerAddress, type ServerAddress } from './server-address.ts'
import { ReceiveStream, SendStream, type StreamTransport } from './stream.ts'
import { bounded, throwIfAborted } from './waiters.ts'
import { resolvePeerOptions } from './options.ts'

/** Where the peer is with the server. */
export type PeerState = 'connecting' | 'joined' | 'reconnecting' | 'closed'

/** Another peer online. */
export interface PeerInfo {
  peerId: string
  addr: string
}

/** Options of `createPeer`. */
export interface PeerOptions {
  /** The server: `http(s)://host:port`, `ws(s)://host:port` or `/ip4/…/tcp/…/ws`. */
  server: string
  /** Who this peer is. @default a fresh Ed25519 identity */
  identity?: Identity
  /** Shared token, for servers that require one. */
  token?: string
  /**
   * Take the address over when another live client with this identity holds it (that client is
   * displaced and told); otherwise the first join fails with `E_ADDRESS_IN_USE`. @default false
   */
  takeover?: boolean
  /**
   * This client's resume id (hex, 32 to 128 characters), sent in every hello: the server binds it
   * to the identity at the first join and lets it take the identity back after a reconnect. Keep
   * it secret; pass one only to resume across peer objects (a page reload). @default a random id per peer object
   */
  resumeId?: string
  /** Transports in the order tried. @default ['websocket', 'polling'] */
  transports?: Array<'websocket' | 'polling'>
  /** Timeout of each request to the server. @default 10_000 */
  requestTimeoutMs?: number
  /** Receive window per stream (lowered to fit the server's buffer: just under 2 MiB by default). @default 2 MiB */
  windowBytes?: number
  /** Largest chunk sent (lowered to fit the server's message size). @default 128 KiB */
  chunkBytes?: number
  /** Unread bytes past which a stream from a sender that ignores the window fails. @default 16 MiB */
  receiveLimitBytes?: number
  /**
   * How long `start` waits for a first connection to the server before it fails with
   * `E_SERVER_UNREACHABLE` (a wrong address fails fast; a server that was reached and dropped
   * later is retried for ever). @default 5_000
   */
  connectTimeoutMs?: number
  /** Heartbeat period; a server that misses one is dropped and reconnected. @default 5_000 */
  heartbeatIntervalMs?: number
  /** Time a heartbeat may take. @default 5_000 */
  heartbeatTimeoutMs?: number
  /** First and largest reconnect delay. @default 500 and 5_000 */
  reconnectDelayMs?: number
  reconnectDelayMaxMs?: number
  /** Where logs go. @default silent */
  logger?: Logger
  /** More socket.io-client options (e.g. `ca` for a private certificate authority in Node). */
  socketOptions?: Record<string, unknown>
}

/** Options of calls that wait. */
export interface CallOptions {
  signal?: AbortSignal
  timeoutMs?: number
}

/** Events of a peer. */
export interface PeerEvents extends Record<string, unknown> {
  state: PeerState
  'peer:join': PeerInfo
  'peer:leave': PeerInfo
  connection: Connection
  error: StarsockError
}

const TRANSPORT_HIGH_WATER_BYTES = 1024 * 1024
const HELLO_TIMEOUT_MS = 3000

function randomId (bytes = 16): string {
  const random = crypto.getRandomValues(new Uint8Array(bytes)) // randomUUID needs a secure context
  return Array.from(random, (b) => b.toString(16).padStart(2, '0')).join('')
}

/** Throw a `TypeError` unless `target` is a peer id or a valid multiaddr. */
function checkTarget (target: string): void {
  if (typeof target !== 'string' || target === '') throw new TypeError('dial target must be a peer id or a websocket-star address')
  if (target.startsWith('/')) {
    if (parseAddress(target) === undefined) throw new TypeError(`dial target ${target} is not a valid multiaddr`)
  } else if (!/^[1-9A-HJ-NP-Za-km-z]{32,128}$/.test(target)) {
    throw new TypeError(`dial target ${target} is not a peer id`)
  }
}

/** A peer on a starsock (or websocket-star) server. Make one with `createPeer`. */
export class StarsockPeer extends Emitter<PeerEvents> {
  /** This peer's identity. */
  readonly identity: Identity
  /** This peer's id. */
  readonly peerId: string
  /** The websocket-star address this peer joins under. */
  readonly addr: string
  /** The server, resolved. */
  readonly server: ServerAddress
  private readonly socket: Socket
  private readonly logger: Logger
  private readonly requestTimeoutMs: number
  private readonly options: Required<Pick<PeerOptions, 'windowBytes' | 'chunkBytes' | 'receiveLimitBytes' | 'heartbeatIntervalMs' | 'heartbeatTimeoutMs' | 'connectTimeoutMs'>>
  private current: PeerState = 'connecting'
  private readonly known = new Map<string, string>()
  private readonly sending = new Map<string, SendStream>()
  private readonly receiving = new Map<string, ReceiveStream>()
  private handler: ((conn: Connection) => void) | undefined
  private hello: HelloReply | undefined
  private heartbeat: ReturnType<typeof setInterval> | undefined
  private sinceDrain = 0
  private joinGeneration = 0
  private readonly takeover: boolean
  /** Sent in every hello: takes the identity back after a reconnect (never logged). */
  private readonly resumeId: string
  private readonly reconnectDelayMs: number
  private readonly reconnectDelayMaxMs: number
  private joinRetries = 0
  private joinRetry: ReturnType<typeof setTimeout> | undefined
  private joinedOnce = false
  private lastError: StarsockError | undefined
  private readonly transport: StreamTransport

  constructor (options: PeerOptions & { identity: Identity }) {
    super()
    this.server = parseServerAddress(options.server)
    this.identity = options.identity
    this.peerId = options.identity.peerId
    // `/ipfs/`: legacy clients read the peer id after the last `/ipfs/`.
    this.addr = `${this.server.prefix}/p2p-websocket-star/ipfs/${this.peerId}`
    const resolved = resolvePeerOptions(options)
    this.logger = resolved.logger.child({ ns: 'starsock:client' })
    this.requestTimeoutMs = resolved.requestTimeoutMs
    this.takeover = resolved.takeover
    this.resumeId = resolved.resumeId ?? randomId(32)
    this.reconnectDelayMs = resolved.reconnectDelayMs
    this.reconnectDelayMaxMs = resolved.reconnectDelayMaxMs
    this.options = resolved
    this.socket = io(this.server.url, {
      ...options.socketOptions,
      autoConnect: false,
      forceNew: true,
      transports: resolved.transports,
      tryAllTransports: true,
      reconnection: true,
      reconnectionDelay: this.reconnectDelayMs,
      reconnectionDelayMax: this.reconnectDelayMaxMs,
      auth: options.token !== undefined ? { token: options.token } : undefined
    })
    this.transport = {
      emit: (event, ...args) => { this.socket.emit(event, ...args) },
      room: async (signal) => await this.transportRoom(signal),
      sent: (n) => { this.sinceDrain += n }
    }
    this.wire()
  }

  /** Where the peer is with the server now. */
  get state (): PeerState {
    return this.current
  }

  /**
   * Why the peer closed by itself, once it did: e.g. `E_DISPLACED` (another client took this
   * identity over) or `E_FORBIDDEN`; `undefined` while open or after `close()`.
   */
  get closedBy (): StarsockError | undefined {
    return this.current === 'closed' ? this.lastError : undefined
  }

  /** Peers online now, as far as this peer knows. */
  peers (): PeerInfo[] {
    return [...this.known].map(([peerId, addr]) => ({ peerId, addr }))
  }

  /** Take incoming connections with `handler`; without one, dials to this peer are refused. */
  handle (handler: ((conn: Connection) => void) | undefined): void {
    this.handler = handler
  }

  /** Figures now: streams open each way. */
  stats (): { sendingStreams: number, receivingStreams: number } {
    return { sendingStreams: this.sending.size, receivingStreams: this.receiving.size }
  }

  /** Connect and join; settles once joined (or rejects, and the peer is closed). */
  async start (options: CallOptions = {}): Promise<void> {
    if (this.current === 'closed') throw new StarsockError('E_NOT_JOINED', 'Peer is closed')
    const joined = new Promise<void>((resolve, reject) => {
      const offState = this.on('state', (s) => {
        if (s === 'joined') { done(); resolve() }
        if (s === 'closed') { done(); reject(new StarsockError('E_NOT_JOINED', 'Peer closed before it joined')) }
      })
      const offError = this.on('error', (err) => { if (err.code !== 'E_SERVER_UNREACHABLE') { done(); reject(err) } })
      // Never reached at all (nothing listens there, or a wrong host): say so soon instead of
      // retrying in silence until the join timeout.
      let reached = false
      const onConnect = (): void => { reached = true }
      this.socket.once('connect', onConnect)
      const unreachable = setTimeout(() => {
        if (reached) return
        done()
        reject(new StarsockError('E_SERVER_UNREACHABLE', `Server ${this.server.url} could not be reached within ${this.options.connectTimeoutMs} ms: is it running, and is the address right?`))
      }, this.options.connectTimeoutMs)
      const done = (): void => { offState(); offError(); clearTimeout(unreachable); this.socket.off('connect', onConnect) }
    })
    this.socket.connect()
    try {
      await bounded('joining the server', joined, options.timeoutMs ?? this.requestTimeoutMs, options.signal)
    } catch (err) {
      const unreachable = err instanceof StarsockError && err.code === 'E_TIMEOUT' && !this.socket.connected
      await this.close()
      throw unreachable ? new StarsockError('E_SERVER_UNREACHABLE', `Server ${this.server.url} could not be reached`, { cause: err }) : err
    }
  }

  /**
   * Dial a peer by peer id (it must be online and known) or by websocket-star address; settles
   * with the connection once the other side accepted.
   */
  async dial (target: string, options: CallOptions = {}): Promise<Connection> {
    checkTarget(target)
    throwIfAborted(options.signal)
    if (this.current !== 'joined') throw new StarsockError(this.current === 'reconnecting' ? 'E_DISCONNECTED' : 'E_NOT_JOINED', `Cannot dial while ${this.current}`)
    const to = this.resolve(target)
    const dialId = randomId()
    const tx = this.openSend(`${dialId}.dialer`)
    // Registered before the dial, opened (accept) after it: an error the server sends right
    // behind the reply must find its stream.
    const rx = this.openReceive(`${dialId}.listener`, false)
    // Longer than the server's own dial timeout, so the server's answer always comes first.
    const timeoutMs = options.timeoutMs ?? Math.max(this.requestTimeoutMs, (this.hello?.limits.dialTimeoutMs ?? 10_000) + 2000)
    let reply: unknown[]
    try {
      reply = await this.request(EVENTS.DIAL, [this.addr, to, dialId], { signal: options.signal, timeoutMs })
    } catch (err) {
      // The server may still complete the dial: tell it this side gave up on both streams.
      const wire = wireError('E_STREAM_ABORTED', 'Dial abandoned')
      tx.error(wire)
      rx.abort(wire, err as StarsockError)
      throw err
    }
    if (reply[0] !== undefined && reply[0] !== null) {
      const err = errorFromWire(reply[0])
      tx.fail(err)
      rx.fail(err)
      throw err
    }
    rx.open()
    return new Connection(to, parseAddress(to)?.peerId ?? '', true, rx, tx)
  }

  /**
   * Ask the server's UDP relay for a pair of ports; settles with `{ id, ip, port1, port2, token1,
   * token2, mode, expiresAt }`. Each endpoint registers with its port's token and the relay's
   * cookie (`registerUdpEndpoint` in Node; the steps in `shared/udp-relay-protocol.ts`).
   */
  async udpAllocate (request: { mode?: 'token' | 'address' | 'open', addresses?: string[] } = {}, options: CallOptions = {}): Promise<UdpAllocation> {
    return await this.udpRequest(EVENTS.UDP_ALLOCATE, [request], options) as UdpAllocation
  }

  /** Push back an allocation's expiry; settles with its new info. */
  async udpRefresh (id: string, options: CallOptions = {}): Promise<UdpAllocation> {
    return await this.udpRequest(EVENTS.UDP_REFRESH, [id], options) as UdpAllocation
  }

  /** Release an allocation: its ports are free at once. */
  async udpRelease (id: string, options: CallOptions = {}): Promise<void> {
    await this.udpRequest(EVENTS.UDP_RELEASE, [id], options)
  }

  private async udpRequest (event: string, args: unknown[], options: CallOptions): Promise<unknown> {
    if (this.current !== 'joined') throw new StarsockError(this.current === 'reconnecting' ? 'E_DISCONNECTED' : 'E_NOT_JOINED', `Cannot use the UDP relay while ${this.current}`)
    const reply = await this.request(event, args, options)
    if (reply[0] !== null && reply[0] !== undefined) throw errorFromWire(reply[0])
    return reply[1]
  }

  /** Leave the server and close every connection; settles once disconnected. */
  async close (): Promise<void> {
    if (this.current === 'closed') return
    this.failStreams(new StarsockError('E_DISCONNECTED', 'Peer closed'))
    this.stopHeartbeat()
    clearTimeout(this.joinRetry)
    this.setState('closed')
    this.socket.disconnect()
  }

  /** The address to dial for a checked target: itself, or the known address of a peer id. */
  private resolve (target: string): string {
    if (target.startsWith('/')) return target
    const addr = this.known.get(target)
    if (addr === undefined) throw new StarsockError('E_PEER_NOT_FOUND', `Peer ${target} is not online`)
    return addr
  }

  private async request (event: string, args: unknown[], options: CallOptions = {}): Promise<unknown[]> {
    if (!this.socket.connected) throw new StarsockError('E_DISCONNECTED', `Not connected to ${this.server.url}`)
    const reply = new Promise<unknown[]>((resolve) => {
      this.socket.emit(event, ...args, (...r: unknown[]) => resolve(r))
    })
    return await bounded(event, reply, options.timeoutMs ?? this.requestTimeoutMs, options.signal)
  }

  private openSend (id: string): SendStream {
    const chunk = Math.min(this.options.chunkBytes, (this.hello?.limits.maxMessageBytes ?? 1_000_000) - 4096)
    const tx = new SendStream(this.transport, id, chunk, () => { if (this.sending.get(id) === tx) this.sending.delete(id) })
    this.sending.set(id, tx)
    return tx
  }

  private openReceive (id: string, open = true): ReceiveStream {
    const serverBuffer = this.hello?.limits.streamBufferBytes
    // Keep the window under half the server's per-stream buffer, where it would start pushing back.
    const window = Math.max(64 * 1024, Math.min(this.options.windowBytes, serverBuffer !== undefined ? Math.floor(serverBuffer / 2) - this.options.chunkBytes : Infinity))
    const rx = new ReceiveStream(this.transport, id, window, Math.max(window, this.options.receiveLimitBytes), () => {
      if (this.receiving.get(id) === rx) this.receiving.delete(id)
    })
    this.receiving.set(id, rx)
    if (open) rx.open()
    return rx
  }

  private async transportRoom (signal?: AbortSignal): Promise<void> {
    for (;;) {
      const ws = (this.socket.io.engine?.transport as unknown as { ws?: { bufferedAmount?: number } } | undefined)?.ws
      if (this.sinceDrain + (ws?.bufferedAmount ?? 0) < TRANSPORT_HIGH_WATER_BYTES) return
      if (!this.socket.connected) throw new StarsockError('E_DISCONNECTED', 'Connection to the server dropped')
      throwIfAborted(signal)
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
  }

  private setState (state: PeerState): void {
    if (this.current === state || this.current === 'closed') return
    this.current = state
    this.logger.debug({ state }, 'state')
    this.emit('state', state)
  }

  private failStreams (err: StarsockError): void {
    for (const rx of [...this.receiving.values()]) rx.fail(err)
    for (const tx of [...this.sending.values()]) tx.fail(err)
  }

  private learn (addr: unknown): void {
    const peerId = parseAddress(addr)?.peerId
    if (typeof addr !== 'string' || peerId === undefined || peerId === this.peerId) return
    if (this.known.get(peerId) === addr) return
    this.known.set(peerId, addr)
    this.emit('peer:join', { peerId, addr })
  }

  private forget (addr: unknown): void {
    const peerId = parseAddress(addr)?.peerId
    if (typeof addr !== 'string' || peerId === undefined || this.known.get(peerId) !== addr) return
    this.known.delete(peerId)
    this.emit('peer:leave', { peerId, addr })
  }

  private wire (): void {
    const socket = this.socket
    socket.io.on('open', () => {
      this.sinceDrain = 0
      socket.io.engine.on('drain', () => { this.sinceDrain = 0 })
    })
    socket.on('connect', () => { void this.join() })
    socket.on('disconnect', (reason) => {
      this.stopHeartbeat()
      this.failStreams(new StarsockError('E_DISCONNECTED', `Connection to the server dropped (${reason})`))
      if (this.current === 'closed') return
      this.setState('reconnecting')
      // The client does not reconnect by itself after the server disconnected it.
      if (reason === 'io server disconnect') setTimeout(() => { if (this.current !== 'closed') socket.connect() }, 500)
    })
    socket.on('connect_error', (err) => {
      const wire = errorFromWire(err.message)
      if (wire.code === 'E_FORBIDDEN') this.fail(wire) // emits it and closes; closedBy says why
      else if (wire.code === 'E_SHUTDOWN') this.emit('error', wire)
      else this.emit('error', new StarsockError('E_SERVER_UNREACHABLE', err.message))
    })
    socket.on(EVENTS.DISPLACED, (info: unknown) => this.displaced(info))
    socket.on(EVENTS.PEER, (addr: unknown) => this.learn(addr))
    socket.on(EVENTS.PEER_JOIN, (addr: unknown) => this.learn(addr))
    socket.on(EVENTS.PEER_LEAVE, (addr: unknown) => this.forget(addr))
    socket.on(EVENTS.INCOMING, (dialId: unknown, from: unknown, ack: unknown) => this.incoming(dialId, from, ack))
    socket.onAny((event: string, value: unknown) => {
      const parsed = parseStreamEvent(event)
      if (parsed === undefined) return
      const { type, streamId } = parsed
      if (type === 'queue') this.receiving.get(streamId)?.push(value)
      else if (type === 'error') this.receiving.get(streamId)?.finish(value)
      else if (type === 'accept') this.sending.get(streamId)?.onAccept(value)
      else if (type === 'credit') this.sending.get(streamId)?.onCredit(value)
      else this.sending.get(streamId)?.onAbort(value)
    })
  }

  /** Another client took this identity over: say so and close, rather than reconnect into a fight. */
  private displaced (payload: unknown): void {
    const info = checkDisplaced(payload)
    if (info === undefined || info.addr !== this.addr || this.current === 'closed') return
    const how = info.reason === 'takeover' ? 'took this peer id over' : 'joined this peer id (a websocket-star client)'
    this.fail(new StarsockError('E_DISPLACED', `Displaced: another client ${how} from ${info.by}`))
  }

  /** Close because of `err`, which `closedBy` keeps. */
  private fail (err: StarsockError): void {
    this.lastError = err
    this.emit('error', err)
    void this.close()
  }

  private incoming (dialId: unknown, from: unknown, ack: unknown): void {
    if (typeof ack !== 'function') return
    const reply = ack as (err?: string) => void
    if (typeof dialId !== 'string' || typeof from !== 'string') return reply(wireError('E_BAD_REQUEST', 'Bad incoming dial'))
    const handler = this.handler
    if (handler === undefined) return reply(wireError('E_DIAL_REFUSED', 'This peer takes no connections'))
    const rx = this.openReceive(`${dialId}.dialer`)
    const tx = this.openSend(`${dialId}.listener`)
    reply()
    const conn = new Connection(from, parseAddress(from)?.peerId ?? '', false, rx, tx)
    handler(conn)
    this.emit('connection', conn)
  }

  /** Run hello and the challenge on a fresh server connection, then load the peer list. */
  private async join (): Promise<void> {
    // A join belongs to one server connection; after any await, a newer connection wins.
    const generation = ++this.joinGeneration
    const stale = (): boolean => generation !== this.joinGeneration || this.current === 'closed'
    try {
      // Take over only on the first join: after a drop, the resume id proves the stale socket is
      // this client's own, and any other holder took the identity while this one was away.
      const request: HelloRequest = { peerEvents: true, takeover: this.takeover && !this.joinedOnce, resume: this.resumeId }
      const hello = await this.request(EVENTS.HELLO, [request], { timeoutMs: HELLO_TIMEOUT_MS })
        .then(([err, reply]) => err == null ? reply as HelloReply : undefined, () => undefined) // the original server does not answer
      if (stale()) return
      this.hello = hello
      const before = new Map(this.known)
      const [err1, nonce, firstPeers] = await this.request(EVENTS.JOIN, [this.addr, publicKeyHex(this.identity)])
      if (stale()) return
      if (err1 != null) throw this.joinError(err1)
      let peers = firstPeers
      if (typeof nonce === 'string') {
        const [err2, , joinedPeers] = await this.request(EVENTS.JOIN, [this.addr, await signNonce(this.identity, nonce)])
        if (stale()) return
        if (err2 != null) throw this.joinError(err2)
        peers = joinedPeers
      }
      const found = new Map<string, string>()
      const collect = (addr: unknown): void => {
        const peerId = parseAddress(addr)?.peerId
        if (typeof addr === 'string' && peerId !== undefined && peerId !== this.peerId) found.set(peerId, addr)
      }
      for (const addr of Array.isArray(peers) ? peers : []) collect(addr)
      if (hello !== undefined) await this.loadPeers(collect)
      if (stale()) return
      // Swap the list in one step, telling only what changed since before the reconnect.
      // Peers learned from live events meanwhile stay; those gone since the last connection leave.
      for (const [peerId, addr] of before) if (found.get(peerId) !== addr && this.known.get(peerId) === addr) this.forget(addr)
      for (const addr of found.values()) this.learn(addr)
      if (hello !== undefined) this.startHeartbeat()
      this.joinedOnce = true
      this.joinRetries = 0
      this.setState('joined')
    } catch (err) {
      if (stale()) return
      const e = err instanceof StarsockError ? err : new StarsockError('E_BAD_REQUEST', String(err))
      this.logger.warn({ code: e.code }, 'join failed')
      if (e.code === 'E_DISCONNECTED' || e.code === 'E_TIMEOUT') this.emit('error', e)
      else if (this.joinedOnce && e.code.startsWith('E_LIMIT_')) this.retryJoin(e, generation)
      else this.fail(e)
    }
  }

  /**
   * A rejoin refused by a limit that passes (join rate, peers per IP, peers): say so and try again
   * on the same connection with backoff, still `reconnecting`. A first join fails instead.
   */
  private retryJoin (err: StarsockError, generation: number): void {
    this.emit('error', err)
    const delay = Math.min(this.reconnectDelayMaxMs, this.reconnectDelayMs * 2 ** this.joinRetries++) * (0.5 + Math.random() / 2)
    clearTimeout(this.joinRetry)
    this.joinRetry = setTimeout(() => {
      // A newer connection runs its own join.
      if (generation === this.joinGeneration && this.current !== 'closed' && this.socket.connected) void this.join()
    }, delay)
  }

  /** A join refused: the address held elsewhere after this peer had it means it was taken while away. */
  private joinError (wire: unknown): StarsockError {
    const err = errorFromWire(wire)
    if (err.code !== 'E_ADDRESS_IN_USE' || !this.joinedOnce) return err
    return new StarsockError('E_DISPLACED', `Displaced while disconnected: ${err.message.replace(/^Address in use: /, '')}`)
  }

  private async loadPeers (collect: (addr: unknown) => void): Promise<void> {
    let cursor: number | null = 0
    while (cursor !== null) {
      const [err, page] = await this.request(EVENTS.PEERS, [cursor])
      if (err != null) throw errorFromWire(err)
      const { addrs, next } = page as PeersPage
      for (const addr of addrs) collect(addr)
      cursor = next
    }
  }

  private startHeartbeat (): void {
    this.stopHeartbeat()
    if (this.current === 'closed') return
    this.heartbeat = setInterval(() => {
      this.request(EVENTS.PING, [], { timeoutMs: this.options.heartbeatTimeoutMs }).catch(() => {
        // A server that misses a heartbeat is gone: drop the transport so the client reconnects.
        this.logger.warn('heartbeat missed, reconnecting')
        this.socket.io.engine?.close()
      })
    }, this.options.heartbeatIntervalMs)
  }

  private stopHeartbeat (): void {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat)
    this.heartbeat = undefined
  }
}

/**
 * Create a peer, connect and join; settles once joined.
 * @example
 * const peer = await createPeer({ server: 'http://127.0.0.1:9090' })
 * peer.handle(async (conn) => { for await (const chunk of conn) await conn.write(chunk); await conn.closeWrite() })
 * const conn = await peer.dial(otherPeerId)
 */
export async function createPeer (options: PeerOptions & CallOptions): Promise<StarsockPeer> {
  const identity = options.identity ?? await createIdentity()
  const peer = new StarsockPeer({ ...options, identity })
  await peer.start({ signal: options.signal, timeoutMs: options.timeoutMs })
  return peer
}
