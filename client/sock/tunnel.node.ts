/**
 * Tunnels (Node only): `forward` (a local port reaches a host through another peer) and `expose`
 * (another peer listens on a port and hands each connection or datagram to a local service).
 * Both survive the other peer or the server going away, crashed or stopped: they say so (`away`),
 * ask again with backoff (and at once when the peer is back online), and go on; a forward asks
 * again, an expose binds again (within the other peer's lease it gets its port back). A denial or
 * a kill from either side ends them.
 */
import dgram from 'node:dgram'
import net from 'node:net'
import { StarsockError } from '../../shared/errors.ts'
import type { SockAddress } from '../../shared/mux-frame.ts'
import type { SockProto } from '../../shared/sock-protocol.ts'
import { Emitter } from '../emitter.ts'
import { datagramCost, type Channel, type DatagramDrops } from '../mux/channel.ts'
import type { MappingRequest, SockAgent } from './agent.ts'
import {
  bindUdp, connectError, forEachDatagram, listenTcp, pipeSocket, resetSocket, udpBufferBytes, udpSocket, UDP_SOURCE_SOCKET_BUFFER_BYTES, type UdpBufferBytes
} from './host.node.ts'
import { addDrops, type Mapping } from './mapping.ts'
import { LOOPBACK_ONLY, parseAllowFrom, type AllowFrom } from './allow-from.node.ts'

/** Events of a tunnel. */
export interface TunnelEvents extends Record<string, unknown> {
  /** A connection (or a new UDP source) came through. */
  connection: { src: SockAddress }
  /** One connection failed; the tunnel goes on. */
  error: StarsockError
  /** The mapping is in place (again, after a drop). */
  mapping: Mapping
  /** The other peer (or the server) went away; the tunnel asks again until it is back. */
  away: StarsockError
  /** The other peer has a person deciding about the offer; the answer takes up to `timeoutMs`. */
  asking: { timeoutMs: number }
  /**
   * A local client whose address `allowFrom` does not allow was refused: a TCP connection reset,
   * UDP datagrams dropped. Told once a minute per address; every one is counted (`refusedSources`).
   */
  refused: { src: SockAddress }
  /** The tunnel stopped: killed, denied, or closed here (`undefined`). */
  close: StarsockError | undefined
}

/**
 * UDP datagrams a tunnel dropped, by cause: those of its channels (`credit`, `queue`, `window`,
 * see `DatagramDrops`), and its own: `pending` (a new source's channel was still opening and
 * `MAX_PENDING_DATAGRAM_BYTES` were held for it already), `open` (that channel could not be
 * opened), `sources` (more than `MAX_UDP_SOURCES` sources at once).
 */
export interface TunnelDrops extends DatagramDrops {
  pending: number
  open: number
  sources: number
}

/** Figures of a tunnel. */
export interface TunnelStats {
  channelsOpen: number
  connections: number
  bytesIn: number
  bytesOut: number
  droppedDatagrams: number
  /** The same drops by cause. */
  droppedBy: TunnelDrops
  failures: number
  /** Local clients refused by `allowFrom`: TCP connections reset, UDP datagrams dropped. */
  refusedSources: number
  /** `up` while the mapping is in place, `away` while the tunnel waits for the peer or the server. */
  state: TunnelState
  /** Whether the mapping in place is end-to-end encrypted, the peer's id proved; `undefined` while there is none. */
  secure?: boolean
  /** UDP forward: kernel buffers of its listening socket as the system reports them (see `UDP_SOCKET_BUFFER_BYTES`). */
  udpBufferBytes?: UdpBufferBytes
}

/** Where a tunnel is. */
export type TunnelState = 'up' | 'away' | 'closed'

/** Common options of `forward` and `expose`. */
export interface TunnelOptions {
  /** The other peer's id. */
  peer: string
  /** The service the traffic reaches: through the peer (forward) or here (expose); a forward with `service` has none. */
  to?: SockAddress
  /** @default 'tcp' */
  proto?: SockProto
  /** Shown to the other peer's person. */
  name?: string
  /** A UDP source without traffic this long is forgotten. @default 60_000 */
  udpIdleMs?: number
  /** How long to wait for the other peer to answer the offer. */
  timeoutMs?: number
  signal?: AbortSignal
  /**
   * A peer not online at the start (`E_PEER_NOT_FOUND`) is waited for as if it went away (the
   * tunnel settles `away`, a forward listens and resets connections meanwhile) instead of failing.
   * @default false
   */
  waitForPeer?: boolean
  /**
   * Who may use the port: CIDRs or addresses, IPv4 and IPv6 (see `parseAllowFrom`). A forward
   * (an accept, a SOCKS proxy) checks its local clients: one not allowed is reset (TCP) or its
   * datagrams dropped (UDP), counted (`refusedSources`) and told (`refused`); default loopback only
   * (`LOOPBACK_ONLY`). An expose hands the list to the peer, which checks the clients of the port
   * it binds (a peer too old for it refuses the bind with `E_UNSUPPORTED`); default: none, anyone.
   * A bad entry throws a `TypeError` naming it.
   * @default LOOPBACK_ONLY (expose: none)
   */
  allowFrom?: readonly string[]
  /** A forward: the service the peer offers by this name (`agent.connectService`), instead of `to`. */
  service?: string
}

/**
 * Bytes (counted as channel credit, with the per-datagram overhead) held for a new UDP source
 * while its channel opens: a round trip through the server, about 390 ms of 1,000 datagrams of
 * 600 bytes a second. What comes past it is dropped and counted (`pending`).
 */
export const MAX_PENDING_DATAGRAM_BYTES = 256 * 1024
/** UDP sources a tunnel serves at once; datagrams from more are dropped and counted. */
export const MAX_UDP_SOURCES = 256
/** How long `expose` waits for the local service to accept a connection. */
const LOCAL_CONNECT_TIMEOUT_MS = 10_000
/** How long a refused address is not told again (`refused`); every connection and datagram from it is counted. */
const REFUSED_TELL_MS = 60_000
/** First and largest pause between two attempts to get a lost mapping back. */
const RECOVER_DELAY_MS = 250
const RECOVER_DELAY_MAX_MS = 5000
/** How long a UDP source whose channel could not be opened stays dropped before it is tried again. */
export const UDP_OPEN_RETRY_MS = 1000
/**
 * Errors after which asking again is pointless: a person or a rule said no, or it cannot work.
 * Not `E_SECURE_REQUIRED` nor `E_PEER_ID_MISMATCH` on a redial: a dialer reaches them on the
 * server's word (its dial hint, or an answer from the path that is not a handshake message) or
 * because the relay routed the dial to another key, so a relay could stop an encrypted tunnel for
 * good with them; they are retried like a peer that is away. (A first ask that fails with them
 * still fails the tunnel's start at once.)
 */
const FINAL_CODES = new Set(['E_DENIED', 'E_KILLED', 'E_BIND_FAILED', 'E_NO_MAPPING', 'E_UNSUPPORTED', 'E_ABORTED'])

/**
 * Whether asking again after `error` is pointless: only when decided here or said by the peer
 * inside the connection (the multiplexer's replies). An error from the wire (`remote`: a server
 * ack or a stream's error frame) is not authenticated: a relay can write any code there, e.g.
 * E_SECURE_REQUIRED or E_DENIED into the answer to a secure redial, so it is retried like any
 * failure rather than stopping an encrypted tunnel for good.
 */
function isFinal (error: StarsockError): boolean {
  return FINAL_CODES.has(error.code) && !error.remote
}

/** A running tunnel. */
export abstract class Tunnel extends Emitter<TunnelEvents> {
  /** forward: the local address listened on; expose: the address the other peer bound. */
  address: SockAddress = { ip: '', port: 0 }
  /** Settles when the tunnel stops, with the reason (`undefined` when closed here). */
  readonly done: Promise<StarsockError | undefined>
  protected current: Mapping | undefined
  protected stopped = false
  private awayWith: StarsockError | undefined
  /** The other side said a person is asked about the current request. */
  private personAsked = false
  /** An 'error' was emitted for a connection refused during this away period (one per period). */
  private awayReported = false
  private recovering = false
  /** Ends the recovery loop's current pause (the peer is back, or the tunnel stops). */
  private wakeRecovery: (() => void) | undefined
  protected readonly proto: SockProto
  protected readonly udpIdleMs: number
  private readonly totals = { connections: 0, bytesIn: 0, bytesOut: 0, droppedDatagrams: 0, failures: 0, refusedSources: 0 }
  private readonly drops: TunnelDrops = { credit: 0, queue: 0, window: 0, pending: 0, open: 0, sources: 0 }
  private resolveDone!: (err: StarsockError | undefined) => void
  /** Undo the watch on the agent's close and the signal's abort. */
  private readonly unwatch: () => void
  /** Who may use a local listener (forward, accept, socks). */
  protected readonly allowFrom: AllowFrom
  /** UDP sources refused lately, and when they were told. */
  private readonly refusedTold = new Map<string, number>()

  constructor (protected readonly agent: SockAgent, protected readonly options: TunnelOptions) {
    super()
    this.allowFrom = parseAllowFrom(options.allowFrom ?? LOOPBACK_ONLY)
    this.proto = options.proto ?? 'tcp'
    this.udpIdleMs = options.udpIdleMs ?? 60_000
    this.done = new Promise((resolve) => { this.resolveDone = resolve })
    // Nothing left to recover for: the tunnel stops with its agent, or when its signal aborts.
    const offClose = agent.on('close', () => this.stop(new StarsockError('E_ABORTED', 'The sock agent closed')))
    const signal = options.signal
    const onAbort = (): void => this.stop(new StarsockError('E_ABORTED', 'Tunnel aborted'))
    signal?.addEventListener('abort', onAbort, { once: true })
    this.unwatch = () => { offClose(); signal?.removeEventListener('abort', onAbort) }
  }

  /** Where the tunnel is now. */
  get state (): TunnelState {
    return this.stopped ? 'closed' : this.awayWith !== undefined ? 'away' : 'up'
  }

  /** Figures now, over every mapping the tunnel has had. */
  stats (): TunnelStats {
    const s: TunnelStats = { ...this.totals, droppedBy: { ...this.drops }, channelsOpen: 0, state: this.state, ...this.extraStats() }
    for (const mapping of this.liveMappings()) {
      const m = mapping.stats()
      s.secure = m.secure
      s.channelsOpen += m.channelsOpen
      s.bytesIn += m.bytesIn
      s.bytesOut += m.bytesOut
      s.droppedDatagrams += m.droppedDatagrams
      addDrops(s.droppedBy, m.droppedBy)
    }
    return s
  }

  /** The mappings in place now (their figures count in `stats()`). */
  protected liveMappings (): Mapping[] {
    return this.current?.closed === false ? [this.current] : []
  }

  /** Keep the figures of a mapping that ended. */
  protected absorb (mapping: Mapping): void {
    const s = mapping.stats()
    this.totals.bytesIn += s.bytesIn
    this.totals.bytesOut += s.bytesOut
    this.totals.droppedDatagrams += s.droppedDatagrams
    addDrops(this.drops, s.droppedBy)
  }

  /**
   * Whether a local client at `src` may use the listener (`allowFrom`); if not it is counted and
   * told (`refused`, once per address per `REFUSED_TELL_MS`), and the caller resets or drops it.
   */
  protected admits (src: SockAddress): boolean {
    if (this.allowFrom.allows(src.ip)) return true
    this.totals.refusedSources++
    // Told once per address per REFUSED_TELL_MS: a flood from outside must not flood the log too.
    const now = Date.now()
    const told = this.refusedTold.get(src.ip)
    if (told !== undefined && now - told < REFUSED_TELL_MS) return false
    if (this.refusedTold.size >= MAX_UDP_SOURCES) this.refusedTold.clear() // bounded: a spoofing flood only repeats the telling
    this.refusedTold.set(src.ip, now)
    this.emit('refused', { src })
    return false
  }

  /** Figures of a kind of tunnel. */
  protected extraStats (): Partial<TunnelStats> {
    return {}
  }

  /** Stop: kill the mapping (the other peer closes its side) and stop listening. */
  async close (): Promise<void> {
    this.stop(undefined)
  }

  protected counted (what: 'connections' | 'failures', n = 1): void {
    this.totals[what] += n
  }

  /** Count `n` datagrams the tunnel itself dropped. */
  protected droppedHere (cause: 'pending' | 'open' | 'sources', n = 1): void {
    this.totals.droppedDatagrams += n
    this.drops[cause] += n
  }

  protected failed (err: unknown): void {
    const error = err instanceof StarsockError ? err : new StarsockError('E_STREAM_ABORTED', String(err))
    this.counted('failures')
    this.emit('error', error)
    // A code from the wire is not authenticated (a relay can write any): only our own or the
    // peer's word inside the connection stops the tunnel.
    if ((error.code === 'E_DENIED' || error.code === 'E_KILLED') && !error.remote) this.stop(error)
  }

  /** Like `failed`, but while the tunnel is away only the first failure is told ('error'); the rest are counted. */
  protected failedOnce (err: unknown): void {
    if (this.state !== 'away') return this.failed(err)
    if (this.awayReported) return this.counted('failures')
    this.awayReported = true
    this.failed(err)
  }

  /** While away: the error a new connection or UDP source gets at once (the recovery loop does the asking). */
  protected awayError (): StarsockError | undefined {
    const away = this.awayWith
    if (away === undefined || this.stopped) return undefined
    const error = new StarsockError(away.code, `${this.options.peer} is away (${away.message}); the tunnel asks again by itself`)
    error.remote = away.remote // the away error's origin decides, as in `failed`
    return error
  }

  /** At the start: whether `err` is a peer not online yet, to wait for (`waitForPeer`); then the tunnel is away. */
  protected waitsFor (err: unknown): err is StarsockError {
    return this.options.waitForPeer === true && err instanceof StarsockError && err.code === 'E_PEER_NOT_FOUND' && !this.stopped
  }

  /** Ask for a mapping (a forward's connect, an expose's bind), again after a drop. */
  protected abstract restore (): Promise<unknown>

  /** Watch a new mapping: keep its figures when it ends; a kill ends the tunnel. */
  protected watch (mapping: Mapping): Mapping {
    if (this.stopped) {
      // Granted after the tunnel was closed (a re-bind or re-ask under way): undo it.
      mapping.kill('tunnel closed')
      throw new StarsockError('E_KILLED', 'Tunnel closed')
    }
    this.current = mapping
    this.recovered()
    mapping.on('close', (err) => {
      this.absorb(mapping)
      if (this.current === mapping) this.current = undefined
      if (err.code === 'E_KILLED' && !err.remote && !this.stopped) this.stop(err)
      else if (!this.stopped) this.dropped(err)
    })
    this.emit('mapping', mapping)
    return mapping
  }

  /** The peer is reachable again: no longer away. */
  protected recovered (): void {
    this.awayWith = undefined
    this.awayReported = false
  }

  /**
   * The mapping ended without a kill: the other peer or the server went away (crashed, or stopped
   * with `E_PEER_SHUTDOWN`/`E_SHUTDOWN`). Say so, and ask again with backoff until it works, a
   * final answer comes (a denial), or the tunnel stops; the wait is cut short when the peer
   * comes back online or this peer rejoins the server.
   */
  protected dropped (err: StarsockError): void {
    this.awayWith = err
    this.emit('away', err)
    if (this.recovering) return
    this.recovering = true
    const peer = this.agent.peer
    const offJoin = peer.on('peer:join', ({ peerId }) => { if (peerId === this.options.peer) this.wakeRecovery?.() })
    const offState = peer.on('state', (state) => { if (state === 'joined') this.wakeRecovery?.() })
    void (async () => {
      try {
        for (let delay = RECOVER_DELAY_MS; !this.stopped; delay = Math.min(delay * 2, RECOVER_DELAY_MAX_MS)) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, delay)
            this.wakeRecovery = () => { clearTimeout(timer); resolve() }
          })
          this.wakeRecovery = undefined
          if (this.stopped) return
          if (this.current !== undefined && !this.current.closed) return // back by a connection of a forward
          try {
            this.personAsked = false
            await this.restore()
            return
          } catch (e) {
            if (this.stopped) return
            const error = e instanceof StarsockError ? e : new StarsockError('E_STREAM_ABORTED', String(e))
            if (isFinal(error) || this.agent.isClosed || this.options.signal?.aborted === true) return this.stop(error)
            // A person was asked and nobody answered in time: asking again would prompt them anew
            // every timeout, for ever (whichever of our timeout or their E_DENIED comes first).
            if (error.code === 'E_TIMEOUT' && this.personAsked) return this.stop(new StarsockError('E_DENIED', `Nobody answered at ${this.options.peer} in time (a person was asked): ${error.message}`))
            this.awayWith = error
          }
        }
      } finally {
        offJoin()
        offState()
        this.wakeRecovery = undefined
        this.recovering = false
      }
    })()
  }

  protected stop (err: StarsockError | undefined): void {
    if (this.stopped) return
    this.stopped = true
    this.unwatch()
    this.wakeRecovery?.() // no pause left behind
    this.current?.kill(err === undefined ? 'tunnel closed' : err.message)
    this.shutdown()
    this.emit('close', err)
    this.resolveDone(err)
  }

  protected abstract shutdown (): void

  protected request (extra: Partial<MappingRequest>): MappingRequest {
    return {
      proto: this.proto,
      name: this.options.name,
      timeoutMs: this.options.timeoutMs,
      signal: this.options.signal,
      port: 0,
      onAsking: (info) => { this.personAsked = true; this.emit('asking', info) },
      ...extra
    }
  }
}

interface UdpSource {
  channel: Channel | undefined
  /** Its channel could not be opened: its datagrams are dropped (`open`) until then, and it is tried again after. */
  failedUntil: number | undefined
  /** Datagrams that came while the channel opened, and their cost in credit. */
  pending: Uint8Array[]
  pendingBytes: number
  timer: ReturnType<typeof setTimeout> | undefined
}

class UdpSources {
  private readonly map = new Map<string, UdpSource>()

  constructor (private readonly idleMs: number, private readonly onDrop: (cause: 'pending' | 'open' | 'sources', n: number) => void) {}

  /** Send `data` from `src` on its channel, opened with `open` on its first datagram. */
  send (src: SockAddress, data: Uint8Array, open: () => Promise<Channel>, onChannel: (channel: Channel) => void): void {
    const key = `${src.ip}|${src.port}`
    let entry = this.map.get(key)
    if (entry?.failedUntil !== undefined) {
      if (Date.now() < entry.failedUntil) return this.onDrop('open', 1)
      this.forget(key)
      entry = undefined
    }
    if (entry === undefined && this.map.size >= MAX_UDP_SOURCES) return this.onDrop('sources', 1)
    if (entry === undefined) {
      const fresh: UdpSource = { channel: undefined, failedUntil: undefined, pending: [], pendingBytes: 0, timer: undefined }
      entry = fresh
      this.map.set(key, fresh)
      open().then((channel) => {
        if (this.map.get(key) !== fresh) return channel.abort(new StarsockError('E_STREAM_IDLE', 'UDP source idle')) // went idle while opening
        fresh.channel = channel
        for (const d of fresh.pending) channel.send(d)
        fresh.pending = []
        fresh.pendingBytes = 0
        onChannel(channel)
        void channel.whenClosed.then(() => { if (this.map.get(key) === fresh) this.forget(key) })
      }, () => {
        this.onDrop('open', fresh.pending.length)
        fresh.pending = []
        fresh.pendingBytes = 0
        if (this.map.get(key) !== fresh) return
        // Kept as failed for a while: a source that sends on must not ask again per datagram.
        fresh.failedUntil = Date.now() + UDP_OPEN_RETRY_MS
        clearTimeout(fresh.timer)
        fresh.timer = setTimeout(() => { if (this.map.get(key) === fresh) this.forget(key) }, UDP_OPEN_RETRY_MS)
        fresh.timer.unref?.()
      })
    }
    if (entry.channel !== undefined) entry.channel.send(data)
    else if (entry.pendingBytes + datagramCost(data.byteLength) <= MAX_PENDING_DATAGRAM_BYTES) {
      entry.pending.push(data)
      entry.pendingBytes += datagramCost(data.byteLength)
    } else this.onDrop('pending', 1)
    clearTimeout(entry.timer)
    const idle = entry
    entry.timer = setTimeout(() => { idle.channel?.abort(new StarsockError('E_STREAM_IDLE', 'UDP source idle')); this.forget(key) }, this.idleMs)
    entry.timer.unref?.()
  }

  private forget (key: string): void {
    const entry = this.map.get(key)
    if (entry === undefined) return
    clearTimeout(entry.timer)
    this.map.delete(key)
  }

  /** Forget the sources that failed: the mapping is back, they may open at once. */
  retryFailed (): void {
    for (const [key, entry] of this.map) if (entry.failedUntil !== undefined) this.forget(key)
  }

  clear (): void {
    for (const [key, entry] of this.map) {
      entry.channel?.abort()
      this.forget(key)
    }
  }
}

/**
 * A local listener (checked against `allowFrom`) whose connections (or UDP sources) each get a
 * channel to the other peer under one mapping, asked for again after a drop: `Forward` and
 * `AcceptTunnel`.
 */
abstract class LocalListener extends Tunnel {
  private server: net.Server | undefined
  private udp: dgram.Socket | undefined
  private asking: Promise<Mapping> | undefined
  /** Listen before asking (the offer names the address listened on). */
  protected listenFirst = false

  /** Ask the peer for the mapping (once; again after a drop). */
  protected abstract ask (): Promise<Mapping>

  /** A channel for a local client from `src` under `mapping`. */
  protected abstract channelOf (mapping: Mapping, src: SockAddress): Promise<Channel>

  /** Ask for the mapping and listen on `listen` (an accept: the other way round); settles once both are done. */
  async start (listen: SockAddress): Promise<void> {
    let offline: StarsockError | undefined
    const ask = async (): Promise<void> => {
      try {
        await this.mapping()
      } catch (err) {
        if (!this.waitsFor(err)) {
          this.stop(err instanceof StarsockError ? err : undefined) // nothing left listening or watching
          throw err
        }
        offline = err
      }
    }
    if (!this.listenFirst) await ask()
    try {
      if (this.proto === 'tcp') await this.listenTcp(listen)
      else await this.listenUdp(listen)
    } catch (err) {
      this.stop(undefined)
      throw err
    }
    if (this.stopped) {
      // Closed while the port was bound (`shutdown` came before the listening): freed, nothing started.
      this.shutdown()
      throw new StarsockError('E_ABORTED', 'Tunnel closed while it started')
    }
    if (this.listenFirst) await ask()
    if (offline !== undefined) this.dropped(offline) // listening; asks until the peer is online
  }

  protected async restore (): Promise<Mapping> {
    return await this.mapping()
  }

  /** The live mapping, asked for again after a drop. */
  private async mapping (): Promise<Mapping> {
    if (this.current !== undefined && !this.current.closed) return this.current
    this.asking ??= this.ask()
      .then((m) => this.watch(m))
      .finally(() => { this.asking = undefined })
    return await this.asking
  }

  private async open (src: SockAddress): Promise<Channel> {
    // While away, the recovery loop asks (with backoff): traffic must not ask once per connection or datagram.
    const away = this.awayError()
    if (away !== undefined) throw away
    const mapping = await this.mapping()
    this.counted('connections')
    this.emit('connection', { src })
    return await this.channelOf(mapping, src)
  }

  private async listenTcp (listen: SockAddress): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
      socket.on('error', () => {})
      // Reset before it was taken: no address to check or count.
      if (socket.remoteAddress === undefined) return void socket.destroy()
      const src = { ip: socket.remoteAddress, port: socket.remotePort ?? 0 }
      if (!this.admits(src)) return resetSocket(socket)
      this.open(src)
        .then((channel) => pipeSocket(socket, channel), (err: unknown) => { resetSocket(socket); this.failedOnce(err) })
    })
    this.address = await listenTcp(server, listen.ip, listen.port)
    // Kept only once listening: `shutdown` closing it mid-listen would leave `listenTcp` waiting
    // for ever; a close meanwhile is seen by `start`, which frees the port.
    this.server = server
  }

  private async listenUdp (listen: SockAddress): Promise<void> {
    const socket = await bindUdp(listen.ip, listen.port)
    this.udp = socket
    const sources = new UdpSources(this.udpIdleMs, (cause, n) => this.droppedHere(cause, n))
    this.sources = sources
    this.on('mapping', () => sources.retryFailed())
    socket.on('message', (msg, rinfo) => {
      const src = { ip: rinfo.address, port: rinfo.port }
      if (!this.admits(src)) return
      sources.send(src, msg, async () => await this.open(src).catch((err: unknown) => { this.failedOnce(err); throw err }), (channel) => {
        void forEachDatagram(channel, (item) => socket.send(item.data, src.port, src.ip))
      })
    })
    const a = socket.address()
    this.address = { ip: a.address, port: a.port }
  }

  private sources: UdpSources | undefined

  protected override extraStats (): Partial<TunnelStats> {
    return this.udp === undefined || this.stopped ? {} : { udpBufferBytes: udpBufferBytes(this.udp) }
  }

  protected shutdown (): void {
    this.server?.close()
    this.sources?.clear()
    try { this.udp?.close() } catch {}
  }
}

/** A local listener whose connections (or UDP sources) reach `to`, or the peer's `service`, through the other peer. */
export class Forward extends LocalListener {
  constructor (agent: SockAgent, options: TunnelOptions) {
    // Checked before `super`, which watches the agent and the signal: a throw leaves nothing behind.
    if (options.to === undefined && options.service === undefined) throw new TypeError('forward needs `to` (host and port) or `service` (a name the peer offers)')
    if (options.to !== undefined && options.service !== undefined) throw new TypeError('forward takes `to` or `service`, not both')
    super(agent, options)
  }

  protected async ask (): Promise<Mapping> {
    const { peer, to, service } = this.options
    if (service !== undefined) {
      const { proto, name, timeoutMs, signal, onAsking } = this.request({})
      return await this.agent.connectService(peer, { service, proto, name, timeoutMs, signal, onAsking })
    }
    const dst = to as SockAddress
    return await this.agent.connect(peer, this.request({ host: dst.ip, port: dst.port }))
  }

  protected async channelOf (mapping: Mapping, src: SockAddress): Promise<Channel> {
    return await mapping.connect({ src })
  }
}

/**
 * This agent listens on a port on behalf of the other peer (an accept, without a bind): each
 * local connection (or UDP source) is handed to it as an accept channel. With `service` the peer
 * connects each to that service of its own; without, its `onAccept` takes them (a peer without
 * one denies the offer up front, `E_UNSUPPORTED`). Recovers like a forward: offers again after a drop.
 */
export class AcceptTunnel extends LocalListener {
  protected override listenFirst = true

  protected async ask (): Promise<Mapping> {
    const { proto, name, timeoutMs, signal, onAsking } = this.request({})
    return await this.agent.offerAccept(this.options.peer, { host: this.address.ip, port: this.address.port, proto, name, timeoutMs, signal, onAsking, service: this.options.service })
  }

  protected async channelOf (mapping: Mapping, src: SockAddress): Promise<Channel> {
    return await this.agent.sendAccept(mapping, src, this.options.signal)
  }
}

/** The other peer listens on a port; each connection (or datagram) reaches the local `to`. */
export class Expose extends Tunnel {
  private readonly udpSockets = new Map<string, { socket: dgram.Socket, timer: ReturnType<typeof setTimeout> | undefined }>()
  private bindHost = '0.0.0.0'
  private requestedPort = 0
  private bindChannel: Channel | undefined
  private readonly to: SockAddress

  constructor (agent: SockAgent, options: TunnelOptions) {
    // Checked before `super`, which watches the agent and the signal: a throw leaves nothing behind.
    if (options.to === undefined) throw new TypeError('expose needs `to`: the local host and port each connection reaches')
    super(agent, options)
    this.to = options.to
  }

  /** Ask the peer to bind `host:port`; settles once it is bound (`address`). */
  async start (host: string, port: number): Promise<void> {
    this.bindHost = host
    this.requestedPort = port
    try {
      await this.bind()
    } catch (err) {
      if (!this.waitsFor(err)) throw err
      this.dropped(err) // binds once the peer is online
    }
  }

  /** Bind (again): the port asked for, and with port 0 the port held before as a lease hint. */
  private async bind (): Promise<void> {
    const lease = this.address.port === 0 ? undefined : this.address.port
    // The peer checks the clients of the port it binds (`allowFrom`); without a list, anyone.
    const request: MappingRequest & { lease?: number, allowFrom?: string[] } = { ...this.request({ host: this.bindHost, port: this.requestedPort }), lease }
    if (this.options.allowFrom !== undefined) request.allowFrom = this.allowFrom.list.slice()
    const mapping = this.watch(await this.agent.bind(this.options.peer, request))
    this.address = mapping.bound ?? { ip: this.bindHost, port: this.requestedPort }
    if (this.proto === 'tcp') mapping.acceptHandler = (channel) => this.acceptTcp(channel)
    else if (mapping.bindChannel !== undefined) this.carryUdp(mapping.bindChannel)
  }

  private acceptTcp (channel: Channel): void {
    this.counted('connections')
    if (channel.header.src !== undefined) this.emit('connection', { src: channel.header.src })
    const to = this.to
    const socket = net.connect({ host: to.ip, port: to.port, allowHalfOpen: true, timeout: LOCAL_CONNECT_TIMEOUT_MS })
    socket.pause()
    socket.once('timeout', () => { if (socket.connecting) socket.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })) })
    socket.once('connect', () => { socket.setTimeout(0); pipeSocket(socket, channel) })
    socket.once('error', (err) => {
      if (socket.connecting || !socket.readable) {
        const e = connectError(err, to)
        channel.abort(e)
        this.failed(e)
      }
    })
  }

  private carryUdp (bindChannel: Channel): void {
    this.bindChannel = bindChannel
    const to = this.to
    void forEachDatagram(bindChannel, ({ data, addr }) => {
      if (addr === undefined) return
      const socket = this.udpSocketFor(addr)
      if (socket === undefined) this.droppedHere('sources')
      else socket.send(data, to.port, to.ip)
    })
  }

  /** One local socket per remote source, so the service's replies find their way back. */
  private udpSocketFor (src: SockAddress): dgram.Socket | undefined {
    const key = `${src.ip}|${src.port}`
    let entry = this.udpSockets.get(key)
    if (entry === undefined) {
      if (this.udpSockets.size >= MAX_UDP_SOURCES) return undefined
      const socket = udpSocket(this.to.ip, UDP_SOURCE_SOCKET_BUFFER_BYTES)
      socket.on('error', () => {})
      // Replies go on the bind channel of now: after a re-bind, the new one.
      socket.on('message', (msg) => { this.bindChannel?.send(msg, src) })
      entry = { socket, timer: undefined }
      this.udpSockets.set(key, entry)
      this.counted('connections')
      this.emit('connection', { src })
    }
    const { socket } = entry
    clearTimeout(entry.timer)
    entry.timer = setTimeout(() => {
      this.udpSockets.delete(key)
      try { socket.close() } catch {}
    }, this.udpIdleMs)
    entry.timer.unref?.()
    return socket
  }

  protected async restore (): Promise<void> {
    await this.bind()
  }

  protected shutdown (): void {
    for (const { socket, timer } of this.udpSockets.values()) {
      clearTimeout(timer)
      try { socket.close() } catch {}
    }
    this.udpSockets.clear()
  }
}

/**
 * Listen on `listen`; every connection (or UDP source) reaches `options.to` through `options.peer`.
 * Settles once the peer agreed and the port is open (with `waitForPeer`, also once the port is open
 * and the tunnel is `away`, waiting for a peer not online). The tunnel stops (`E_ABORTED`) when the agent
 * closes or `options.signal` aborts.
 */
export async function forward (agent: SockAgent, options: TunnelOptions & { listen: SockAddress }): Promise<Forward> {
  const tunnel = new Forward(agent, options)
  try {
    await tunnel.start(options.listen)
  } catch (err) {
    await tunnel.close() // no watch on the agent or the signal left behind
    throw err
  }
  return tunnel
}

/** Listen on `options.listen` for `options.peer` (an accept); settles once the port is open and the peer agreed (see `forward`). */
export async function accept (agent: SockAgent, options: TunnelOptions & { listen: SockAddress }): Promise<AcceptTunnel> {
  const tunnel = new AcceptTunnel(agent, options)
  try {
    await tunnel.start(options.listen)
  } catch (err) {
    await tunnel.close()
    throw err
  }
  return tunnel
}

/** Have `options.peer` listen on `host:port` (host default `0.0.0.0`); each connection reaches the local `options.to`. Settles once bound. */
export async function expose (agent: SockAgent, options: TunnelOptions & { host?: string, port: number }): Promise<Expose> {
  const tunnel = new Expose(agent, options)
  try {
    await tunnel.start(options.host ?? '0.0.0.0', options.port)
  } catch (err) {
    await tunnel.close()
    throw err
  }
  return tunnel
}
