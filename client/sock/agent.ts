/**
 * Sock channels between peers, with consent: one multiplexed connection per peer pair, offers
 * decided by rules or a person, mappings either side can kill, and bind leases.
 *
 * Runs in Node and the browser. What needs real sockets (connecting to a host, listening on a
 * port) goes through a `SockHost`; Node has one (`createNodeHost`), a browser has none, so it
 * denies such offers and can still ask other peers for them.
 */
import { StarsockError } from '../../shared/errors.ts'
import { silentLogger, type Logger } from '../../shared/logger.ts'
import type { SockAddress } from '../../shared/mux-frame.ts'
import { describeOffer, isHost, isPort, type Offer, type Reply, type SockProto } from '../../shared/sock-protocol.ts'
import { matchRule, parseRule, type SockRule } from '../../shared/sock-rules.ts'
import type { Connection } from '../connection.ts'
import { Emitter } from '../emitter.ts'
import type { Channel } from '../mux/channel.ts'
import { Muxer, type MuxOptions } from '../mux/muxer.ts'
import type { StarsockPeer } from '../peer.ts'
import { bounded } from '../waiters.ts'
import { Mapping } from './mapping.ts'

/** Runs sockets on this machine on behalf of other peers. */
export interface SockHost {
  /** Open a socket to `dst` and pipe it to `channel`; settles once connected, rejects with `E_CONNECT_*`. */
  connect: (channel: Channel, dst: SockAddress, proto: SockProto) => Promise<void>
  /** Listen on `host:port`; rejects with `E_BIND_FAILED`. */
  bind: (proto: SockProto, host: string, port: number, target: BindTarget) => Promise<HostListener>
}

/** What a listener hands its traffic to. */
export interface BindTarget {
  /** TCP: an accept channel to the binder for a connection from `src`; rejects while no binder is attached. */
  openAccept: (src: SockAddress) => Promise<Channel>
}

/** A port a host listens on. */
export interface HostListener {
  /** The address bound. */
  readonly address: SockAddress
  /** UDP: carry datagrams between the bound socket and `channel` (the binder's bind channel). */
  attach: (channel: Channel) => void
  /** Stop listening and close what it accepted. */
  close: () => void
}

/** An offer waiting for a decision, as a prompt shows it. */
export interface OfferRequest {
  peerId: string
  offer: Offer
  /** `connect/tcp 127.0.0.1:8080 "web"`. */
  text: string
}

/** What was decided about an offer. */
export interface OfferDecision extends OfferRequest {
  allowed: boolean
  /** `rule` (with the rule), `person`, `remembered`, or `none` (no rule, nobody to ask). */
  by: 'rule' | 'person' | 'remembered' | 'none'
  rule?: string
  reason?: string
}

/** Options of a sock agent. */
export interface SockAgentOptions {
  /** Rules that grant offers without asking (`connect/tcp:127.0.0.1:8080`, ...). */
  allow?: ReadonlyArray<string | SockRule>
  /** Ask a person about an offer no rule allows; settle `true` to grant. Without it such offers are denied. */
  ask?: (request: OfferRequest, signal: AbortSignal) => boolean | Promise<boolean>
  /** How long a person has to answer. @default 60_000 */
  askTimeoutMs?: number
  /** Runs connect and bind here; without it, such offers are denied with `E_UNSUPPORTED`. */
  host?: SockHost
  /** How long a bound port stays reserved for a binder whose connection dropped. @default 30_000 */
  leaseMs?: number
  /** Mappings one peer may hold here. @default 64 */
  maxMappingsPerPeer?: number
  /** Channels of other types than `sock` (the application's own); without it they are refused. */
  onChannel?: (channel: Channel, body: Uint8Array) => Promise<Reply | undefined>
  /** Options of every multiplexed connection. */
  mux?: MuxOptions
  logger?: Logger
}

/** Events of a sock agent. */
export interface SockAgentEvents extends Record<string, unknown> {
  /** An offer from another peer was decided. */
  offer: OfferDecision
  /** A mapping was granted (either side). */
  mapping: Mapping
  /** A mapping ended. */
  'mapping:close': { mapping: Mapping, error: StarsockError }
  /** A multiplexed connection to a peer opened. */
  session: Muxer
  /** A bound port's lease: `held` for a binder whose connection dropped, then `taken` back or `expired`. */
  lease: { peerId: string, port: number, state: 'held' | 'taken' | 'expired' }
}

interface BindState {
  key: string
  peerId: string
  listener: HostListener
  /** The mapping that owns the port now; `undefined` while leased. */
  owner: Mapping | undefined
  lease?: ReturnType<typeof setTimeout>
}

/** What to ask for with `connect`, `bind` or `offerAccept`. */
export interface MappingRequest {
  /** @default 'tcp' */
  proto?: SockProto
  /** connect: the host to reach; bind: the interface to listen on (@default '0.0.0.0'). */
  host?: string
  port: number
  /** Shown to the other peer's person. @default '' */
  name?: string
  signal?: AbortSignal
  /** How long to wait for the answer. @default the mux's offer timeout */
  timeoutMs?: number
  /** Called once if the other peer asks a person about the offer (with how long the person has). */
  onAsking?: (info: { timeoutMs: number }) => void
}

/** Sock channels of one peer. Make one with `createSockAgent`. */
export class SockAgent extends Emitter<SockAgentEvents> {
  private readonly rules: SockRule[]
  private readonly logger: Logger
  private readonly sessions = new Map<string, Muxer>()
  private readonly dialing = new Map<string, Promise<Muxer>>()
  private readonly mappingsOf = new Map<Muxer, Map<number, Mapping>>()
  private readonly binds = new Map<Mapping, BindState>()
  /** Mappings whose bind is under way (one bind per mapping). */
  private readonly binding = new Set<Mapping>()
  private readonly leases = new Map<string, BindState>()
  private readonly remembered = new Set<string>()
  private readonly leaseMs: number
  private readonly askTimeoutMs: number
  private readonly maxMappingsPerPeer: number
  private closed = false
  /** Counters of connections already closed, so the totals never go back. */
  private readonly closedCounters = { bytesIn: 0, bytesOut: 0, droppedDatagrams: 0 }

  constructor (readonly peer: StarsockPeer, private readonly options: SockAgentOptions = {}) {
    super()
    this.rules = (options.allow ?? []).map((r) => typeof r === 'string' ? parseRule(r) : r)
    this.logger = (options.logger ?? silentLogger).child({ ns: 'starsock:client:sock' })
    this.leaseMs = options.leaseMs ?? 30_000
    this.askTimeoutMs = options.askTimeoutMs ?? 60_000
    this.maxMappingsPerPeer = options.maxMappingsPerPeer ?? 64
    if (!Number.isInteger(this.leaseMs) || this.leaseMs < 0) throw new RangeError('leaseMs must be a non-negative integer')
    peer.handle((conn) => { this.adopt(conn) })
  }

  /** The connection to `peerId`, dialed when there is none. */
  async session (peerId: string, options: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<Muxer> {
    if (this.closed) throw new StarsockError('E_NOT_JOINED', 'Sock agent is closed')
    const live = this.sessions.get(peerId)
    if (live !== undefined && !live.closed) return live
    let dialing = this.dialing.get(peerId)
    if (dialing === undefined) {
      // Shared by every caller, so it carries no caller's signal; each caller waits with its own.
      dialing = (async () => {
        const mux = this.adopt(await this.peer.dial(peerId))
        await mux.ready
        return mux
      })().finally(() => this.dialing.delete(peerId))
      dialing.catch(() => {})
      this.dialing.set(peerId, dialing)
    }
    return await bounded(`connecting to ${peerId}`, dialing, options.timeoutMs, options.signal)
  }

  /** Ask `peerId` to connect to `host:port` for us; settles with the granted mapping (open channels with `mapping.connect()`). */
  async connect (peerId: string, request: MappingRequest): Promise<Mapping> {
    if (request.host === undefined || !isHost(request.host)) throw new TypeError('connect needs a host name or address')
    if (!isPort(request.port) || request.port === 0) throw new TypeError('connect needs a port from 1 to 65535')
    return await this.ask(peerId, 'connect', request)
  }

  /** Ask `peerId` to listen on `host:port` for us; settles once it is bound (`mapping.bound`). */
  async bind (peerId: string, request: MappingRequest & { lease?: number }): Promise<Mapping> {
    const host = request.host ?? '0.0.0.0'
    if (!isHost(host)) throw new TypeError('bind needs a host name or address to listen on')
    if (!isPort(request.port)) throw new TypeError('bind needs a port from 0 to 65535')
    const mapping = await this.ask(peerId, 'bind', { ...request, host })
    try {
      const channel = await mapping.mux.open({
        type: 'sock', sock: 'bind', reliable: mapping.offer.proto === 'tcp', mapping: mapping.id, dst: { ip: host, port: request.port }, lease: request.port === 0 ? request.lease : undefined
      }, { signal: request.signal })
      mapping.bound = channel.bound
      mapping.bindChannel = channel
      // The bind channel is the binding: when it ends, so does the mapping.
      void channel.whenClosed.then(() => mapping.end(new StarsockError('E_STREAM_CLOSED', 'Bind channel closed')))
    } catch (err) {
      mapping.kill('bind failed')
      throw err
    }
    return mapping
  }

  /** Tell `peerId` we will send it accept channels (it listens for them); settles once it agrees. */
  async offerAccept (peerId: string, request: MappingRequest): Promise<Mapping> {
    return await this.ask(peerId, 'accept', { ...request, host: request.host ?? '0.0.0.0' })
  }

  /** Send an accept channel under an accept mapping this side offered. */
  async sendAccept (mapping: Mapping, src: SockAddress, signal?: AbortSignal): Promise<Channel> {
    if (!mapping.local || mapping.offer.kind !== 'accept') throw new TypeError('sendAccept() is for accept mappings this side offered')
    const channel = await mapping.mux.open({
      type: 'sock', sock: 'accept', reliable: mapping.offer.proto === 'tcp', mapping: mapping.id, src, dst: { ip: mapping.offer.host, port: mapping.offer.port }
    }, { signal })
    mapping.add(channel)
    return channel
  }

  /** Every live mapping, both directions. */
  mappings (): Mapping[] {
    return [...this.mappingsOf.values()].flatMap((m) => [...m.values()])
  }

  /** Figures of every connection: bytes each way, datagrams dropped, channels open. */
  stats (): { peers: number, channelsOpen: number, mappings: number, bytesIn: number, bytesOut: number, droppedDatagrams: number } {
    const s = { peers: 0, channelsOpen: 0, mappings: 0, ...this.closedCounters }
    for (const [mux, mappings] of this.mappingsOf) {
      if (!mux.closed) s.peers++
      s.channelsOpen += mux.list().length
      s.mappings += mappings.size
      s.bytesIn += mux.counters.bytesIn
      s.bytesOut += mux.counters.bytesOut
      s.droppedDatagrams += mux.counters.droppedDatagrams
    }
    return s
  }

  /**
   * Close every connection and free every port (leases too); the peer stays joined. The other
   * peers learn that this side stopped (`E_PEER_SHUTDOWN`), not that it refused: their tunnels
   * ask again when it is back.
   */
  async close (): Promise<void> {
    this.closed = true
    this.peer.handle(undefined)
    for (const mapping of this.mappings()) mapping.kill('the peer is stopping', 'E_PEER_SHUTDOWN')
    await Promise.all([...this.mappingsOf.keys()].map(async (mux) => await mux.close()))
    for (const state of this.leases.values()) this.release(state)
  }

  private async ask (peerId: string, kind: Offer['kind'], request: MappingRequest): Promise<Mapping> {
    const proto = request.proto ?? 'tcp'
    if (proto !== 'tcp' && proto !== 'udp') throw new TypeError('proto must be tcp or udp')
    const offer: Offer = { kind, proto, host: request.host as string, port: request.port, name: (request.name ?? '').slice(0, 200) }
    const mux = await this.session(peerId, { signal: request.signal, timeoutMs: request.timeoutMs })
    const id = await mux.offer(offer, { signal: request.signal, timeoutMs: request.timeoutMs, onAsking: request.onAsking })
    return this.track(mux, id, offer, true)
  }

  private track (mux: Muxer, id: number, offer: Offer, local: boolean): Mapping {
    const mapping = new Mapping(id, offer, mux.remotePeer, local, mux, (m, err) => this.ended(m, err))
    const table = this.mappingsOf.get(mux)
    if (table === undefined || mux.closed) {
      mapping.end(new StarsockError('E_DISCONNECTED', 'Connection to the peer closed'))
      throw mapping.error
    }
    table.set(id, mapping)
    this.emit('mapping', mapping)
    return mapping
  }

  /** Run the multiplexer on a connection (dialed or incoming). */
  private adopt (conn: Connection): Muxer {
    const mux: Muxer = new Muxer(conn, {
      onOpen: async (channel, body) => await this.incomingOpen(mux, channel, body),
      onOffer: async (id, offer, signal, asking) => await this.incomingOffer(mux, id, offer, signal, asking),
      onKill: (id, err) => this.mappingsOf.get(mux)?.get(id)?.end(err)
    }, { ...this.options.mux, logger: this.options.logger })
    this.mappingsOf.set(mux, new Map())
    this.sessions.set(conn.remotePeer, mux)
    mux.on('close', (err) => {
      for (const mapping of this.mappingsOf.get(mux)?.values() ?? []) mapping.end(err)
      this.mappingsOf.delete(mux)
      this.closedCounters.bytesIn += mux.counters.bytesIn
      this.closedCounters.bytesOut += mux.counters.bytesOut
      this.closedCounters.droppedDatagrams += mux.counters.droppedDatagrams
      if (this.sessions.get(mux.remotePeer) === mux) this.sessions.delete(mux.remotePeer)
    })
    mux.ready.then(() => this.emit('session', mux), () => {})
    return mux
  }

  private async incomingOffer (mux: Muxer, id: number, offer: Offer, signal: AbortSignal, asking: (info: { timeoutMs: number }) => void): Promise<void> {
    const peerId = mux.remotePeer
    const request: OfferRequest = { peerId, offer, text: describeOffer(offer) }
    const decide = (allowed: boolean, by: OfferDecision['by'], extra: Partial<OfferDecision> = {}): void => {
      this.emit('offer', { ...request, allowed, by, ...extra })
      this.logger.info({ peer: peerId, offer: request.text, allowed, by }, 'offer decided')
    }
    const deny = (code: 'E_DENIED' | 'E_UNSUPPORTED' | 'E_LIMIT_MAPPINGS', reason: string): never => {
      decide(false, 'none', { reason })
      throw new StarsockError(code, reason)
    }
    if (this.closed) deny('E_DENIED', 'This peer is closing')
    if (offer.kind !== 'accept' && this.options.host === undefined) deny('E_UNSUPPORTED', `This peer cannot ${offer.kind}: it has no sockets (a browser?)`)
    if (this.mappingsOf.get(mux)?.has(id) === true) throw new StarsockError('E_CHANNEL_PROTOCOL', `Mapping id ${id} is in use`)
    // Ports held on lease count too: a peer cannot pile them up by dropping and redialing.
    const held = this.mappings().filter((m) => !m.local && m.peerId === peerId).length + [...this.leases.values()].filter((l) => l.peerId === peerId).length
    if (held >= this.maxMappingsPerPeer) deny('E_LIMIT_MAPPINGS', `Peer ${peerId} already holds ${held} mappings here`)
    const key = `${peerId}|${offer.kind}|${offer.proto}|${offer.host}|${offer.port}`
    const rule = offer.kind === 'accept' ? undefined : matchRule(this.rules, offer, peerId)
    if (rule !== undefined) decide(true, 'rule', { rule: rule.text })
    else if (this.remembered.has(key)) decide(true, 'remembered')
    else if (this.options.ask !== undefined) {
      asking({ timeoutMs: this.askTimeoutMs }) // the requester may say it waits for a person
      const answer = await this.askPerson(request, signal)
      if (answer === 'withdrawn') throw new StarsockError('E_KILLED', 'The requester gave up on the offer')
      decide(answer === 'yes', answer === 'timeout' ? 'none' : 'person', answer === 'timeout' ? { reason: 'no answer in time' } : {})
      if (answer !== 'yes') throw new StarsockError('E_DENIED', answer === 'timeout' ? `Nobody answered about ${request.text} in time` : `Peer denied ${request.text}`)
      this.remembered.add(key) // the same offer again (after a reconnect) is not asked twice
    } else {
      deny('E_DENIED', `No rule allows ${request.text}`)
    }
    if (signal.aborted) throw new StarsockError('E_KILLED', 'The requester gave up on the offer')
    this.track(mux, id, offer, false)
  }

  /** Ask the person: `yes`, `no`, `timeout` (no answer in time) or `withdrawn` (the requester gave up). */
  private async askPerson (request: OfferRequest, gaveUp: AbortSignal): Promise<'yes' | 'no' | 'timeout' | 'withdrawn'> {
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort('timeout'), this.askTimeoutMs)
    gaveUp.addEventListener('abort', () => ac.abort('withdrawn'), { once: true })
    try {
      const allowed = await Promise.race([
        Promise.resolve((this.options.ask as NonNullable<SockAgentOptions['ask']>)(request, ac.signal)),
        new Promise<false>((resolve) => ac.signal.addEventListener('abort', () => resolve(false), { once: true }))
      ])
      if (ac.signal.aborted) return ac.signal.reason === 'withdrawn' ? 'withdrawn' : 'timeout'
      return allowed === true ? 'yes' : 'no'
    } catch {
      return 'no'
    } finally {
      clearTimeout(timer)
      ac.abort()
    }
  }

  private async incomingOpen (mux: Muxer, channel: Channel, body: Uint8Array): Promise<Reply | undefined> {
    const { header } = channel
    if (header.type !== 'sock') {
      if (this.options.onChannel === undefined) throw new StarsockError('E_UNSUPPORTED', `This peer takes no ${header.type} channels`)
      return await this.options.onChannel(channel, body)
    }
    const mapping = header.mapping === undefined ? undefined : this.mappingsOf.get(mux)?.get(header.mapping)
    if (mapping === undefined || mapping.closed) throw new StarsockError('E_NO_MAPPING', `Channel names no granted mapping (${String(header.mapping)})`)
    const { offer } = mapping
    if (header.reliable !== (offer.proto === 'tcp')) throw new StarsockError('E_NO_MAPPING', `Mapping ${mapping.label} is ${offer.proto}`)
    const host = this.options.host
    switch (header.sock) {
      case 'connect': {
        const dst = header.dst
        if (mapping.local || offer.kind !== 'connect' || dst === undefined || dst.ip !== offer.host || dst.port !== offer.port) throw new StarsockError('E_NO_MAPPING', `Mapping ${mapping.label} does not allow connect to ${dst?.ip ?? '?'}:${dst?.port ?? '?'}`)
        if (host === undefined) throw new StarsockError('E_UNSUPPORTED', 'This peer has no sockets')
        await host.connect(channel, dst, offer.proto)
        mapping.add(channel)
        return undefined
      }
      case 'bind': return await this.incomingBind(mapping, channel)
      case 'accept': {
        const ours = mapping.local ? mapping.offer.kind === 'bind' : mapping.offer.kind === 'accept'
        if (!ours) throw new StarsockError('E_NO_MAPPING', `Mapping ${mapping.label} takes no accept channels`)
        if (mapping.acceptHandler === undefined) throw new StarsockError('E_UNSUPPORTED', `Nothing takes accept channels of ${mapping.label} here`)
        mapping.add(channel)
        mapping.acceptHandler(channel)
        return undefined
      }
      default: throw new StarsockError('E_CHANNEL_PROTOCOL', 'sock channel without a kind')
    }
  }

  private async incomingBind (mapping: Mapping, channel: Channel): Promise<Reply> {
    const { offer } = mapping
    const dst = channel.header.dst ?? { ip: offer.host, port: offer.port }
    if (mapping.local || offer.kind !== 'bind' || dst.ip !== offer.host || dst.port !== offer.port) throw new StarsockError('E_NO_MAPPING', `Mapping ${mapping.label} does not allow bind on ${dst.ip}:${dst.port}`)
    if (this.binds.has(mapping) || this.binding.has(mapping)) throw new StarsockError('E_NO_MAPPING', `Mapping ${mapping.label} is already bound`)
    const host = this.options.host
    if (host === undefined) throw new StarsockError('E_UNSUPPORTED', 'This peer has no sockets')
    this.binding.add(mapping)
    try {
      return await this.bindNow(mapping, channel, host, dst)
    } finally {
      this.binding.delete(mapping)
    }
  }

  private async bindNow (mapping: Mapping, channel: Channel, host: SockHost, dst: SockAddress): Promise<Reply> {
    const { offer } = mapping
    const key = `${mapping.peerId}|${offer.proto}|${dst.ip}|`
    // A lease is only ever taken back by the peer that held it (the key starts with its id).
    const wanted = dst.port !== 0 ? dst.port : channel.header.lease
    let state = wanted === undefined ? undefined : this.leases.get(key + String(wanted))
    if (state !== undefined) {
      clearTimeout(state.lease)
      this.leases.delete(state.key)
      this.logger.info({ peer: mapping.peerId, port: state.listener.address.port }, 'bind lease taken back')
      this.emit('lease', { peerId: mapping.peerId, port: state.listener.address.port, state: 'taken' })
    } else {
      const fresh: BindState = { key: '', peerId: mapping.peerId, listener: undefined as unknown as HostListener, owner: undefined }
      fresh.listener = await host.bind(offer.proto, dst.ip, dst.port, {
        openAccept: async (src) => {
          const owner = fresh.owner
          if (owner === undefined || owner.closed) throw new StarsockError('E_DISCONNECTED', 'The binder is away (its lease is running)')
          const accept = await owner.mux.open({ type: 'sock', sock: 'accept', reliable: true, mapping: owner.id, src, dst: owner.bound })
          owner.add(accept)
          return accept
        }
      })
      fresh.key = key + String(fresh.listener.address.port)
      state = fresh
    }
    if (mapping.closed) {
      this.release(state)
      throw mapping.error as StarsockError
    }
    state.owner = mapping
    this.binds.set(mapping, state)
    mapping.bound = state.listener.address
    mapping.bindChannel = channel
    if (offer.proto === 'udp') state.listener.attach(channel)
    void channel.whenClosed.then(() => mapping.end(new StarsockError('E_STREAM_CLOSED', 'Bind channel closed')))
    return { bound: state.listener.address }
  }

  /** A mapping ended: forget it; a bind keeps its port on lease unless it was killed. */
  private ended (mapping: Mapping, err: StarsockError): void {
    this.mappingsOf.get(mapping.mux)?.delete(mapping.id)
    if (err.code === 'E_KILLED') this.remembered.delete(`${mapping.peerId}|${mapping.offer.kind}|${mapping.offer.proto}|${mapping.offer.host}|${mapping.offer.port}`)
    this.emit('mapping:close', { mapping, error: err })
    const state = this.binds.get(mapping)
    if (state === undefined) return
    this.binds.delete(mapping)
    state.owner = undefined
    // Only a dropped connection or a binder (or server) that stops to restart leases the port; a
    // kill or a clean close frees it.
    const dropped = err.code === 'E_DISCONNECTED' || err.code === 'E_STREAM_ABORTED' || err.code === 'E_PEER_GONE' || err.code === 'E_TIMEOUT' ||
      err.code === 'E_PEER_SHUTDOWN' || err.code === 'E_SHUTDOWN'
    if (!dropped || this.leaseMs === 0 || this.closed) return this.release(state)
    state.lease = setTimeout(() => {
      this.logger.info({ peer: mapping.peerId, port: state.listener.address.port }, 'bind lease expired')
      this.release(state)
      this.emit('lease', { peerId: mapping.peerId, port: state.listener.address.port, state: 'expired' })
    }, this.leaseMs)
    state.lease.unref?.()
    this.leases.set(state.key, state)
    this.emit('lease', { peerId: mapping.peerId, port: state.listener.address.port, state: 'held' })
  }

  private release (state: BindState): void {
    clearTimeout(state.lease)
    if (this.leases.get(state.key) === state) this.leases.delete(state.key)
    state.listener.close()
  }
}

/**
 * Run sock channels on `peer`: it takes incoming connections as multiplexed channels.
 *
 * @example
 * const agent = createSockAgent(peer, { allow: ['connect/tcp:127.0.0.1:8080'], host: createNodeHost() })
 * const mapping = await agent.connect(otherPeerId, { host: '127.0.0.1', port: 8080 })
 * const channel = await mapping.connect()
 */
export function createSockAgent (peer: StarsockPeer, options: SockAgentOptions = {}): SockAgent {
  return new SockAgent(peer, options)
}
