/**
 * A starsock peer (Node and browser): joins a server through the crypto challenge, keeps the set
 * of online peers, dials and accepts connections with flow-controlled streams, reconnects and
 * rejoins when the server connection drops. The work is done by the server link
 * (`server-link.ts`), the join (`join.ts`), the peer list (`peer-list.ts`), the stream table
 * (`stream-table.ts`), the dials (`dials.ts`) and the UDP requests (`udp-requests.ts`); this class
 * ties them together and keeps the public API.
 */
import { StarsockError } from '../shared/errors.ts'
import { EVENTS, type UdpAllocation } from '../shared/events.ts'
import { readProfile, type PeerProfile } from '../shared/profile.ts'
import { errorFromWire } from '../shared/errors.ts'
import { FRAME_EVENT } from '../shared/raw-frame.ts'
import type { Logger } from '../shared/logger.ts'
import type { Connection } from './connection.ts'
import { Emitter } from './emitter.ts'
import { createIdentity, randomHex, type Identity } from './identity.ts'
import { Dials, type DialOptions } from './dials.ts'
import { aead, dh } from '#noise-aead'
import { Join } from './join.ts'
import { resolvePeerOptions, resolveProfile, type PeerOptions, type ResolvedPeerOptions } from './options.ts'
import { checkDialTarget, PeerList, type PeerInfo } from './peer-list.ts'
import type { CallOptions, PeerEvents, PeerState } from './peer-events.ts'
import { parseServerAddress, type ServerAddress } from './server-address.ts'
import { ServerLink } from './server-link.ts'
import { StreamTable } from './stream-table.ts'
import { UdpRequests, type UdpAllocateRequest } from './udp-requests.ts'
import { bounded, throwIfAborted } from './waiters.ts'
export type { UdpAllocation } from '../shared/events.ts'
export type { PeerOptions } from './options.ts'
export type { PeerInfo } from './peer-list.ts'
export type { CallOptions, PeerEvents, PeerState } from './peer-events.ts'


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
  private readonly link: ServerLink
  private readonly join: Join
  private readonly known: PeerList
  private readonly streams: StreamTable
  private readonly dials: Dials
  private readonly udp: UdpRequests
  private readonly logger: Logger
  private readonly options: ResolvedPeerOptions
  private current: PeerState = 'connecting'
  private handler: ((conn: Connection) => void) | undefined
  private lastError: StarsockError | undefined
  /** This peer's profile, sent in every hello and by `setProfile`. */
  private ownProfile: PeerProfile
  /** The profile the last hello carried: a `setProfile` between that hello and the join it starts is sent once joined. */
  private helloProfile: PeerProfile | undefined

  constructor (options: PeerOptions & { identity: Identity }) {
    super()
    this.server = parseServerAddress(options.server, options.path, options.socketOptions?.path)
    this.identity = options.identity
    this.peerId = options.identity.peerId
    // `/ipfs/`: legacy clients read the peer id after the last `/ipfs/`.
    this.addr = `${this.server.prefix}/p2p-websocket-star/ipfs/${this.peerId}`
    const o = this.options = resolvePeerOptions(options)
    this.ownProfile = o.profile
    this.logger = o.logger.child({ ns: 'starsock:client' })
    this.link = new ServerLink({ ...o, url: this.server.url, path: this.server.path, token: options.token, socketOptions: options.socketOptions, logger: this.logger })
    this.known = new PeerList(this.peerId, (info) => this.emit('peer:join', info), (info) => this.emit('peer:leave', info), (info) => this.emit('peer:profile', info))
    this.streams = new StreamTable(this.link.streams, o, () => this.join.hello?.limits, () => this.join.hello?.rawFrames === true)
    this.dials = new Dials(this.link, this.streams, this.addr, o.requestTimeoutMs, () => this.join.hello?.limits.dialTimeoutMs, {
      privateKey: this.identity.privateKey,
      aead,
      dh,
      secure: o.secure,
      starsockServer: () => this.join.hello !== undefined,
      logger: this.logger
    })
    this.udp = new UdpRequests(this.link, () => this.mustBeJoined('use the UDP relay'))
    this.join = new Join(this.link, this.known, { ...o, identity: this.identity, addr: this.addr, resumeId: o.resumeId ?? randomHex(32), logger: this.logger, profile: () => (this.helloProfile = this.ownProfile) }, {
      closed: () => this.current === 'closed',
      joined: (starsock) => { if (starsock) this.link.startHeartbeat(); this.setState('joined'); if (starsock) this.sendLateProfile() },
      error: (err) => this.emit('error', err),
      fail: (err) => this.fail(err)
    })
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

  /** Peers online now, as far as this peer knows (with their display names and kinds where a starsock server relays them). */
  peers (): PeerInfo[] {
    return this.known.list()
  }

  /** This peer's profile (display name and kind) as it gives it. */
  get profile (): PeerProfile {
    return { ...this.ownProfile }
  }

  /**
   * Change this peer's display name (`undefined` or `''` removes it); throws a `TypeError` for a
   * bad one (see `PeerOptions.profile`). Kept for every later hello; while joined to a starsock
   * server, settles once it took it (and told the other peers), with the profile as they see it,
   * or rejects with its refusal (e.g. `E_LIMIT_PROFILE_RATE`). Not joined, settles at once.
   */
  async setProfile (profile: { name?: string }, options: CallOptions = {}): Promise<PeerProfile> {
    const next = resolveProfile({ name: profile.name, kind: this.ownProfile.kind })
    throwIfAborted(options.signal)
    const before = this.ownProfile
    this.ownProfile = next
    if (this.current !== 'joined' || this.join.hello === undefined) return { ...next }
    const [err, shown] = await this.link.request(EVENTS.PROFILE, [next], { timeoutMs: options.timeoutMs, signal: options.signal })
    if (err != null) {
      // Refused (a limit): the server keeps the one before, and so does the next hello.
      if (this.ownProfile === next) this.ownProfile = before
      throw errorFromWire(err)
    }
    return readProfile(shown) ?? { ...next }
  }

  /**
   * Once joined: a profile set after the hello went (while joining, `setProfile` settles at once)
   * is sent now; a refusal is told as an `error` event (a drop meanwhile: the next hello carries it).
   */
  private sendLateProfile (): void {
    const profile = this.ownProfile
    if (profile === this.helloProfile) return
    this.helloProfile = profile
    this.link.request(EVENTS.PROFILE, [profile]).then(([err]) => {
      if (err != null) this.emit('error', errorFromWire(err))
    }, () => {})
  }

  /**
   * Take incoming connections with `handler`; without one, dials to this peer are refused. The
   * handler gets each connection once classified: `secure: true` after a completed handshake (its
   * `remotePeer` proved), `secure: false` from a plaintext dialer (a legacy peer, or one that
   * dialed with `secure: false`), whose `remotePeer` is only the server's word.
   */
  handle (handler: ((conn: Connection) => void) | undefined): void {
    this.handler = handler
  }

  /** Figures now: streams open each way. */
  stats (): { sendingStreams: number, receivingStreams: number } {
    return this.streams.counts
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
      const { connectTimeoutMs } = this.options
      const offUnreachable = this.link.unlessConnectedWithin(connectTimeoutMs, () => {
        done()
        reject(new StarsockError('E_SERVER_UNREACHABLE', `Server ${this.server.href} could not be reached within ${connectTimeoutMs} ms: is it running, and is the address right?`))
      })
      const done = (): void => { offState(); offError(); offUnreachable() }
    })
    this.link.connect()
    try {
      await bounded('joining the server', joined, options.timeoutMs ?? this.options.requestTimeoutMs, options.signal)
    } catch (err) {
      const unreachable = err instanceof StarsockError && err.code === 'E_TIMEOUT' && !this.link.connected
      await this.close()
      throw unreachable ? new StarsockError('E_SERVER_UNREACHABLE', `Server ${this.server.href} could not be reached`, { cause: err }) : err
    }
  }

  /**
   * Dial a peer by peer id (it must be online and known) or by websocket-star address; settles
   * with the connection once the other side accepted and, for a secure dial (`secure`, by default
   * the peer's option, itself `true`), once it proved it is that peer: `conn.secure` is then true
   * and `conn.remotePeer` the proved id. A secure dial never falls back to plaintext: it fails with
   * `E_SECURE_REQUIRED` (a legacy peer: dial with `secure: false`), `E_PEER_ID_MISMATCH` or
   * `E_SECURE_HANDSHAKE`.
   */
  async dial (target: string, options: CallOptions & Pick<DialOptions, 'secure'> = {}): Promise<Connection> {
    checkDialTarget(target)
    throwIfAborted(options.signal)
    // By its id a peer is never online to itself (the list leaves it out): a wait for it to come
    // online would never end. Its own address is dialed as any (the server relays a dial to oneself).
    if (target === this.peerId) throw new StarsockError('E_BAD_REQUEST', `${target} is this peer itself: a peer does not dial its own id (dial its address, ${this.addr}, to reach itself)`)
    this.mustBeJoined('dial')
    return await this.dials.dial(this.known.addressOf(target), options)
  }

  /**
   * Ask the server's UDP relay for a pair of ports; settles with `{ id, ip, port1, port2, token1,
   * token2, mode, expiresAt }`. Each endpoint registers with its port's token and the relay's
   * cookie (`registerUdpEndpoint` in Node; the steps in `shared/udp-relay-protocol.ts`).
   */
  async udpAllocate (request: UdpAllocateRequest = {}, options: CallOptions = {}): Promise<UdpAllocation> {
    return await this.udp.allocate(request, options)
  }

  /** Push back an allocation's expiry; settles with its new info. */
  async udpRefresh (id: string, options: CallOptions = {}): Promise<UdpAllocation> {
    return await this.udp.refresh(id, options)
  }

  /** Release an allocation: its ports are free at once. */
  async udpRelease (id: string, options: CallOptions = {}): Promise<void> {
    await this.udp.release(id, options)
  }

  /** Leave the server and close every connection; settles once disconnected. */
  async close (): Promise<void> {
    if (this.current === 'closed') return
    this.streams.failAll(new StarsockError('E_DISCONNECTED', 'Peer closed'))
    this.link.stopHeartbeat()
    this.join.cancel()
    this.setState('closed')
    this.link.close()
  }

  private mustBeJoined (what: string): void {
    if (this.current !== 'joined') throw new StarsockError(this.current === 'reconnecting' ? 'E_DISCONNECTED' : 'E_NOT_JOINED', `Cannot ${what} while ${this.current}`)
  }

  private setState (state: PeerState): void {
    if (this.current === state || this.current === 'closed') return
    this.current = state
    this.logger.debug({ state }, 'state')
    this.emit('state', state)
  }

  private wire (): void {
    const link = this.link
    link.on('connect', () => { void this.join.run() })
    link.on('disconnect', (reason) => {
      this.streams.failAll(new StarsockError('E_DISCONNECTED', `Connection to the server dropped (${reason})`))
      this.setState('reconnecting')
    })
    // E_FORBIDDEN closes the peer (closedBy says why); E_SHUTDOWN and an unreachable server are retried.
    link.on('error', (err) => { if (err.code === 'E_FORBIDDEN') this.fail(err); else this.emit('error', err) })
    link.onServer(EVENTS.DISPLACED, (info) => this.join.displaced(info))
    link.onServer(EVENTS.PEER, (addr) => this.known.learn(addr))
    link.onServer(EVENTS.PEER_JOIN, (addr, profile) => this.known.learn(addr, profile))
    link.onServer(EVENTS.PEER_PROFILE, (addr, profile) => this.known.changeProfile(addr, profile))
    link.onServer(EVENTS.PEER_LEAVE, (addr) => this.known.forget(addr))
    link.onServer(EVENTS.PEER_BATCH, (entries) => this.known.applyBatch(entries))
    // A starsock server adds a hint about the dialer before the ack (`IncomingHint`); the original sends none.
    // The handler runs once the connection is classified (after a handshake): a throw there is the
    // application's, logged rather than left an unhandled rejection.
    link.onServer(EVENTS.INCOMING, (dialId, from, hintOrAck, ack) => {
      this.dials.incoming(dialId, from, hintOrAck, ack, () => this.handler, (conn) => this.emit('connection', conn))
        .catch((err: unknown) => this.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'connection handler threw'))
    })
    // Frames and stream events in one listener, in the order they came (ends never overtake data).
    link.onAnyServer((event, value, lane) => {
      if (event === FRAME_EVENT) this.streams.dispatchFrame(value)
      else this.streams.dispatch(event, value, lane)
    })
  }

  /** Close because of `err`, which `closedBy` keeps. */
  private fail (err: StarsockError): void {
    this.lastError = err
    this.emit('error', err)
    void this.close()
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
