/**
 * The rendezvous: join with the crypto challenge, leave, dial, discovery and the relay, as plain
 * calls on sessions. Knows nothing of socket.io; `socket-wiring.ts` translates events into calls.
 */
import { DIALER_SUFFIX, EVENTS, LISTENER_SUFFIX } from '../shared/events.ts'
import type { DisplacedInfo, DisplacedReason, HelloReply, HelloRequest, PeersPage } from '../shared/events.ts'
import { StarsockError, type ErrorCode } from '../shared/errors.ts'
import { cappedLogger, type Logger } from '../shared/logger.ts'
import { checkUdpAllocate } from '../shared/validate.ts'
import { sameProfile, type PeerProfile } from '../shared/profile.ts'
import { checkAddress } from '../shared/address-parse.ts'
import { loadAddressLibrary, needsAddressLibrary } from './address-library.ts'
import { PROTOCOL_VERSION } from '../shared/constants.ts'
import { BACKLOG_CHECK_MS, PROFILE_CHANGES_PER_IP_PER_MINUTE, SOCKET_WRITE_HIGH_WATER_BYTES } from './constants.ts'
import { Announcer } from './announcer.ts'
import { ChallengeStore, KeyCache, keyLibrariesLoaded, loadKeyLibraries, looksLikeKey, verifyNonce } from './challenge.ts'
import { decideClaim, hashSecret, identityKey, newResumeSecret, Reservations, sameSecret, StarsockHolders, type Reservation } from './identity-claims.ts'
import type { ServerMetrics } from './metrics.ts'
import { publicLimits, type ResolvedServerOptions } from './options.ts'
import { MemoryPeerDirectory, type PeerDirectory } from './peer-directory.ts'
import { PEER_LOG_CAP, PeerLog } from './peer-log.ts'
import { shownProfile, takeProfileChange } from './profiles.ts'
import { ipLimitKey, TokenBucket, WindowCounter } from './rate-limit.ts'
import { Relay } from './relay.ts'
import type { RelayStream } from './relay-stream.ts'
import { Session, type Endpoint } from './session.ts'
import { UdpRelay, type AllocationInfo } from './udp-relay.ts'
import type { HolderClaim, JoinDecision, LeaveReservation, RemoteHold, RemoteOutcome, RendezvousCluster } from './cluster/types.ts'

/** Answer to the first step of a join: the nonce to sign. */
export interface JoinChallenge { nonce: string }
/** Answer to a completed join: other peers to start with; for starsock clients, the resume credential. */
export interface JoinDone { peers: string[], resume?: string }

/** The rendezvous state of one server node. */
export class Rendezvous {
  /** Connected sessions by id. */
  readonly sessions = new Map<string, Session>()
  readonly relay: Relay
  readonly announcer: Announcer
  private readonly challenges: ChallengeStore
  /** Keys that joined lately, so a rejoin (every reconnect) skips decoding its key. */
  private readonly keys = new KeyCache()
  private readonly joinsPerIp: WindowCounter
  /** Profile changes of joined sockets, per per-IP key (`PROFILE_CHANGES_PER_IP_PER_MINUTE`). */
  private readonly profileChangesPerIp = new WindowCounter(PROFILE_CHANGES_PER_IP_PER_MINUTE, 60_000)
  private readonly allow: Set<string>
  private readonly starsockHolders = new StarsockHolders()
  private readonly reservations: Reservations
  private readonly backlogTimer: ReturnType<typeof setInterval>
  /** `ipLimitKey`, remembered for the IPs of connected sessions. */
  private readonly ipKeys = new Map<string, string>()
  /** Addresses joined now, per per-IP key (for `maxPeersPerIp`). */
  private readonly joinedPerIp = new Map<string, number>()
  /** Addresses joined now, per owner (`ownerOf`): a peer id is present while it has one. */
  private readonly joinedPerOwner = new Map<string, number>()
  /** The UDP relay, once `startUdp` made it. */
  private udpRelay: UdpRelay | undefined
  /** Called when the last open stream closed (`close` waits for it). */
  private readonly idleWaiters = new Set<() => void>()
  /** Peer ids that may call themselves `gateway` in their profile: the server's own gateway peer (`serve --gateway` adds it). */
  readonly gatewayPeers = new Set<string>()
  /** Told when an owner's first address joins (`true`) and its last one goes (`false`), after the UDP relay was told. */
  presenceChanged: (owner: string, present: boolean) => void = () => {}
  /** The cluster of nodes this one belongs to (`--redis`); `undefined` on a single node. */
  cluster: RendezvousCluster | undefined
  /** Every line of the rendezvous, the relay and the UDP relay, under one cap (`PEER_LOG_CAP`): peers can cause each. */
  private readonly logger: Logger
  /** The info lines of joins, leaves and dials. */
  private readonly peerLog: PeerLog

  constructor (
    private readonly options: ResolvedServerOptions,
    private readonly metrics: ServerMetrics,
    private readonly version: string,
    logger: Logger,
    readonly directory: PeerDirectory = new MemoryPeerDirectory()
  ) {
    this.logger = cappedLogger(logger, PEER_LOG_CAP)
    this.peerLog = new PeerLog(this.logger)
    this.challenges = new ChallengeStore(options.nonceTtlMs)
    this.joinsPerIp = new WindowCounter(options.maxJoinsPerIpPerMinute, 60_000)
    this.allow = new Set(options.allowPeers)
    this.reservations = new Reservations(options.identityGraceMs, options.maxPeers)
    this.relay = new Relay({
      streamBufferBytes: options.streamBufferBytes,
      socketBufferBytes: options.socketBufferBytes,
      ipBufferBytes: Math.max(options.ipBufferBytes, options.socketBufferBytes),
      writeHighWaterBytes: SOCKET_WRITE_HIGH_WATER_BYTES,
      senderStallTimeoutMs: options.senderStallTimeoutMs,
      streamByteBudget: options.streamByteBudget,
      streamIdleTimeoutMs: options.streamIdleTimeoutMs
    }, {
      relayed: (n) => metrics.relayedBytes.inc(n),
      streamsChanged: (open) => {
        metrics.streams.set(open)
        if (open === 0) for (const wake of [...this.idleWaiters]) wake()
      },
      failed: (code) => {
        metrics.streamFailures.inc({ code })
        if (code.startsWith('E_LIMIT_') || code === 'E_STREAM_IDLE') metrics.limitHits.inc({ limit: code })
      }
    }, this.logger.child({ ns: 'starsock:server:relay' }))
    this.announcer = new Announcer(this.directory, this.sessions, {
      intervalMs: options.announceIntervalMs,
      batchPeers: options.announceBatchPeers,
      joinsPerSecond: options.announceJoinsPerSecond,
      maxBatchEntries: options.maxPeers,
      maxBacklogBytes: options.socketBufferBytes
    }, {
      sent: (n) => metrics.announcements.inc(n),
      held: (reason) => metrics.announcementsHeld.inc({ reason }),
      backlogged: (session, backlog) => this.dropBacklogged(session, backlog)
    })
    this.announcer.start()
    this.backlogTimer = setInterval(() => this.checkBacklogs(), BACKLOG_CHECK_MS)
    this.backlogTimer.unref?.()
  }

  /** Disconnect sockets that do not read what they are sent (no buffer grows without bound). */
  private checkBacklogs (): void {
    for (const session of this.sessions.values()) {
      const backlog = session.endpoint.backlogBytes?.() ?? 0
      if (backlog > this.options.socketBufferBytes) this.dropBacklogged(session, backlog)
    }
  }

  /** Disconnect `session`, whose output backlog (`backlog` bytes) is or would go over `socketBufferBytes`. */
  private dropBacklogged (session: Session, backlog: number): void {
    this.metrics.limitHits.inc({ limit: 'E_LIMIT_BACKLOG' })
    this.logger.warn({ session: session.id, backlog }, 'output backlog over socketBufferBytes, disconnecting')
    session.endpoint.disconnect?.()
  }

  /** A client connected (from `ip` and, when known, TCP `port`). */
  connect (id: string, ip: string, endpoint: Endpoint, port?: number): Session {
    const rate = this.options.maxDialsPerSecond
    const session = new Session(id, ip, endpoint, new TokenBucket(rate, rate * 2), undefined, port)
    this.sessions.set(id, session)
    this.metrics.sockets.set(this.sessions.size)
    return session
  }

  /**
   * A client disconnected: its addresses leave, its streams fail on the other side. A starsock
   * client that did not leave on purpose (`left`) keeps its identities reserved for the grace.
   * `reason` (socket.io's disconnect reason) goes into the leave lines.
   */
  disconnect (session: Session, left = false, reason?: string): void {
    for (const addr of [...session.addrs]) {
      const credential = session.resumeSecrets.get(addr)
      let reserved: LeaveReservation | undefined
      if (!left && session.starsock && credential !== undefined && this.options.identityGraceMs > 0) {
        // Only the hash is kept, here and (in the leave entry) on every other node of a cluster.
        reserved = { credentialHash: hashSecret(credential), remote: session.remote, graceMs: this.options.identityGraceMs }
        this.reservations.reserve(this.identityKey(addr), addr, reserved.credentialHash, reserved.remote)
      }
      this.leave(session, addr, left ? 'left' : reason ?? 'disconnected', reserved)
    }
    this.relay.dropSession(session)
    this.challenges.dropSession(session.id)
    this.announcer.drop(session)
    this.sessions.delete(session.id)
    this.metrics.sockets.set(this.sessions.size)
  }

  /**
   * Whether `session` reads so little of what it is sent that its requests should wait: they get
   * no answer at all until it catches up (counted under `<event>:congested`).
   */
  congested (session: Session, event: string): boolean {
    if (session.endpoint.congested?.() !== true) return false
    this.metrics.badRequests.inc({ event: `${event}:congested` })
    return true
  }

  /** Count one of the cheap requests (hello, peers, ping, leave, UDP) against `session`'s rate; throws `E_LIMIT_REQUEST_RATE` past it. */
  takeRequest (session: Session): void {
    if (session.requestBucket.take()) return
    this.metrics.limitHits.inc({ limit: 'E_LIMIT_REQUEST_RATE' })
    throw new StarsockError('E_LIMIT_REQUEST_RATE', 'Request rate limit reached')
  }

  /** `starsock:hello`: opt into peer events; learn the server's version and limits. */
  hello (session: Session, request: HelloRequest): HelloReply {
    this.announcer.setPeerEvents(session, request.peerEvents === true, request.peerBatch === true)
    session.starsock = true
    session.takeover = request.takeover === true
    session.resume = request.resume
    session.dialHints = request.dialHints === true
    // Once on, raw frames stay on for the connection: a lane given out stays valid.
    session.rawFrames ||= request.rawFrames === true
    if (request.profile !== undefined) this.setProfile(session, request.profile)
    return {
      protocol: PROTOCOL_VERSION,
      version: this.version,
      cryptoChallenge: this.options.cryptoChallenge,
      limits: publicLimits(this.options),
      rawFrames: session.rawFrames
    }
  }

  /**
   * `starsock:profile` (and a hello's `profile`): `session`'s display name and kind, as checked by
   * `checkProfile`. Before a join it is only kept (the join announces it); once joined, a change
   * counts against `takeProfileChange` (per socket and per IP; throws `E_LIMIT_PROFILE_RATE`) and goes to every other
   * peer. Returns the profile as others see it (`shownProfile`).
   */
  setProfile (session: Session, profile: PeerProfile): PeerProfile {
    const before = session.profile
    if (session.addrs.size > 0 && !sameProfile(before, profile)) {
      try {
        takeProfileChange(session, this.profileChangesPerIp, this.ipKey(session.ip))
      } catch (err) {
        this.metrics.limitHits.inc({ limit: 'E_LIMIT_PROFILE_RATE' })
        throw err
      }
    }
    session.profile = profile
    const shown = shownProfile(session, this.gatewayPeers) as PeerProfile
    if (session.addrs.size > 0 && !sameProfile(before, profile)) {
      this.announcer.profileChanged(session.addrs, session, shown)
      this.cluster?.profileChanged(session, [...session.addrs], shown)
    }
    return shown
  }

  /** The profile of the peer at `addr` as others see it, if it gave one. */
  profileAt (addr: string): PeerProfile | undefined {
    const ownerId = this.directory.owner(addr)
    if (ownerId === undefined) return this.cluster?.remoteProfile(addr)
    const owner = this.sessions.get(ownerId)
    return owner === undefined ? undefined : shownProfile(owner, this.gatewayPeers)
  }

  /** `starsock:peers`: one page of joined addresses from `cursor`, with their profiles; only for a joined, allowed peer. */
  peers (session: Session, cursor: number): PeersPage {
    if (!this.mayDiscover(session)) throw new StarsockError('E_NOT_JOINED', 'Join before asking for peers')
    const page = this.directory.page(cursor, this.options.announceBatchPeers, (addr) => session.addrs.has(addr))
    return { ...page, profiles: page.addrs.map((addr) => this.profileAt(addr) ?? null) }
  }

  /** Whether a session may see the directory: it joined, under a peer id the allowlist names. */
  mayDiscover (session: Session): boolean {
    if (this.allow.size === 0) return session.addrs.size > 0
    for (const addr of session.addrs) {
      const peerId = checkAddress(addr, false)?.peerId
      if (peerId !== undefined && this.allow.has(peerId)) return true
    }
    return false
  }

  /** Who an address belongs to, for what peers hold (UDP allocations): its peer id, else the address. */
  ownerOf (addr: string): string {
    return checkAddress(addr, false)?.peerId ?? addr
  }

  /** Whether any session has an address of `owner` joined now. */
  isPresent (owner: string): boolean {
    return this.joinedPerOwner.has(owner)
  }

  /** Addresses joined now by sessions under the per-IP key of `ip` (an IPv6 /64 is one key). */
  private peersFrom (ip: string): number {
    return this.joinedPerIp.get(this.ipKey(ip)) ?? 0
  }

  /** `session` gained (`+1`) or lost (`-1`) `addr`: keep the per-IP and per-owner counts. */
  private counted (session: Session, addr: string, delta: 1 | -1): void {
    count(this.joinedPerIp, this.ipKey(session.ip), delta)
    const owner = this.ownerOf(addr)
    const now = count(this.joinedPerOwner, owner, delta)
    // A UDP allocation's owner whose last address went keeps it for a grace; back in time, for good.
    if (delta === 1 && now === 1) {
      this.udpRelay?.ownerBack(owner)
      this.presenceChanged(owner, true)
    }
    if (delta === -1 && now === 0) {
      this.udpRelay?.ownerLeft(owner)
      this.presenceChanged(owner, false)
    }
  }

  /** `ipLimitKey`, remembered for the IPs of connected sessions. */
  private ipKey (ip: string): string {
    let key = this.ipKeys.get(ip)
    if (key === undefined) {
      if (this.ipKeys.size > 2 * this.sessions.size + 1024) this.ipKeys.clear() // only live IPs, roughly
      key = ipLimitKey(ip)
      this.ipKeys.set(ip, key)
    }
    return key
  }

  /**
   * `ss-join(addr, proof)`. With the challenge on, the first call carries the public key and is
   * answered with a nonce; the second carries the signature and completes the join.
   * Settles once the signature is checked; rejects with a `StarsockError` saying why not.
   */
  async join (session: Session, addr: string, proof: string): Promise<JoinChallenge | JoinDone> {
    try {
      const result = await this.joinSteps(session, addr, proof)
      if (!('nonce' in result)) this.peerLog.joined(session, addr)
      return result
    } catch (err) {
      this.peerLog.joinFailed(session, addr, err)
      this.metrics.joinsFailure.inc()
      if (err instanceof StarsockError && err.code.startsWith('E_LIMIT_')) this.metrics.limitHits.inc({ limit: err.code })
      throw err
    }
  }

  private async joinSteps (session: Session, addr: string, proof: string): Promise<JoinChallenge | JoinDone> {
    if (needsAddressLibrary(addr)) {
      // An address outside the common shapes loads the multiaddr library (once); the socket may
      // have gone meanwhile.
      await loadAddressLibrary()
      if (!this.sessions.has(session.id)) throw new StarsockError('E_DISCONNECTED', 'Disconnected during the join')
    }
    const parsed = checkAddress(addr, this.options.strictMultiaddr)
    // With a nonce outstanding the proof is a signature, unless the client asks again with its
    // public key (a retry), which starts over with a fresh nonce.
    if (this.options.cryptoChallenge && this.challenges.has(session.id, addr) && !this.isOwnKey(parsed?.peerId, proof)) {
      const pending = this.challenges.take(session.id, addr)
      await verifyNonce(pending.key, pending.nonce, proof)
      // It may have gone while the signature was checked: a join now would outlive its socket.
      if (!this.sessions.has(session.id)) throw new StarsockError('E_DISCONNECTED', 'Disconnected during the join')
      return this.finishJoin(session, addr, parsed?.peerId)
    }
    this.metrics.joinsTotal.inc()
    if (parsed === undefined) throw new StarsockError('E_INVALID_ADDRESS')
    if (!this.joinsPerIp.hit(this.ipKey(session.ip))) {
      throw new StarsockError('E_LIMIT_JOIN_RATE', `Join rate limit reached (maxJoinsPerIpPerMinute=${this.options.maxJoinsPerIpPerMinute})`)
    }
    if (this.allow.size > 0 && (parsed.peerId === undefined || !this.allow.has(parsed.peerId))) {
      throw new StarsockError('E_FORBIDDEN', 'Peer id not allowed on this server')
    }
    if (!this.options.cryptoChallenge) return this.finishJoin(session, addr, parsed.peerId)
    if (proof === '') throw new StarsockError('E_CHALLENGE_REQUIRED')
    if (parsed.peerId === undefined) throw new StarsockError('E_ID_MISMATCH')
    if (!keyLibrariesLoaded()) {
      // The first key to check loads the key libraries (an idle server holds no memory for them);
      // the socket may have gone meanwhile, and a nonce must not outlive it.
      await loadKeyLibraries()
      if (!this.sessions.has(session.id)) throw new StarsockError('E_DISCONNECTED', 'Disconnected during the join')
    }
    const key = this.keys.keyForPeerId(proof, parsed.peerId)
    return { nonce: this.challenges.issue(session.id, addr, key) }
  }

  private isOwnKey (peerId: string | undefined, proof: string): boolean {
    if (peerId === undefined || !looksLikeKey(proof)) return false
    try {
      this.keys.keyForPeerId(proof, peerId)
      return true
    } catch {
      return false // a signature after all, or another key: the challenge goes on
    }
  }

  private finishJoin (session: Session, addr: string, peerId: string | undefined): JoinDone {
    if (!session.addrs.has(addr)) {
      if (session.addrs.size >= this.options.maxAddressesPerSocket) {
        throw new StarsockError('E_LIMIT_ADDRESSES', `Address limit reached (maxAddressesPerSocket=${this.options.maxAddressesPerSocket})`)
      }
      const ownerId = this.directory.owner(addr)
      const owner = ownerId === undefined ? undefined : this.sessions.get(ownerId)
      // One identity, one place: the same address, or for two starsock clients the same peer id.
      const held = owner !== undefined ? { holder: owner, heldAddr: addr }
        : session.starsock && peerId !== undefined ? this.starsockHolders.other(peerId, session) : undefined
      // An address that moves between sockets of one IP (a reconnect, a takeover) does not add to its count.
      const sameKey = held !== undefined && this.ipKey(held.holder.ip) === this.ipKey(session.ip)
      if (this.peersFrom(session.ip) - (sameKey ? 1 : 0) >= this.options.maxPeersPerIp) {
        throw new StarsockError('E_LIMIT_PEERS_PER_IP', `Peer limit of this IP address reached (maxPeersPerIp=${this.options.maxPeersPerIp})`)
      }
      // Hashed once per join: holders on other nodes and reservations are known by the hash.
      const newcomerHash = session.resume === undefined ? undefined : hashSecret(session.resume)
      let after: (() => void) | undefined
      if (held !== undefined) after = this.claim(session, held.holder, held.heldAddr, addr)
      const remote = held === undefined ? this.cluster?.remoteHolder(addr, peerId, session) : undefined
      const decision = remote === undefined ? undefined : this.claimRemote(session, remote, addr, newcomerHash)
      const key = peerId ?? addr
      const reserved = held === undefined && remote === undefined ? this.reservations.find(key) : undefined
      // Legacy newcomers keep the original's exact-address rule here too.
      const reservedHere = reserved !== undefined && (session.starsock || reserved.addr === addr)
      if (reservedHere) this.claimReserved(session, reserved, newcomerHash)
      if (owner === undefined && this.directory.localSize >= this.options.maxPeers) {
        throw new StarsockError('E_LIMIT_PEERS', `Server peer limit reached (maxPeers=${this.options.maxPeers})`)
      }
      // Known before the cluster hears of the join: its row carries the credential's hash.
      const credential = session.starsock ? session.resumeSecrets.get(addr) ?? session.resume ?? newResumeSecret() : undefined
      if (credential !== undefined) session.resumeSecrets.set(addr, credential)
      this.directory.set(addr, session.id)
      session.addrs.add(addr)
      this.counted(session, addr, 1)
      if (session.starsock && peerId !== undefined) this.starsockHolders.add(peerId, addr, session)
      this.metrics.peers.set(this.directory.size)
      const shown = shownProfile(session, this.gatewayPeers)
      this.announcer.joined(addr, session, shown)
      if (this.cluster !== undefined) {
        const claim: HolderClaim = {
          starsock: session.starsock,
          credentialHash: credential === undefined ? undefined : credential === session.resume ? newcomerHash : hashSecret(credential),
          remote: session.remote
        }
        this.cluster.joined(session, addr, shown, claim, decision)
      }
      if (reservedHere) this.reservations.drop(key)
      // Only now that the address is the newcomer's: disconnecting the old holder runs its
      // disconnect handler at once, which must find the directory settled.
      after?.()
    }
    this.metrics.joinsSuccess.inc()
    this.logger.debug({ session: session.id, addr }, 'joined')
    if (!session.starsock) return { peers: this.announcer.sample(session) }
    // The credential is the resume id the client sends in every hello, so a reconnect never
    // depends on an ack getting through. A client that sent none (an older starsock client) gets
    // one in the ack; when it presents it again, that is its id from then on.
    let resume = session.resumeSecrets.get(addr)
    if (resume === undefined) {
      resume = session.resume ?? newResumeSecret()
      session.resumeSecrets.set(addr, resume)
    }
    return { peers: this.announcer.sample(session), resume }
  }

  /** What the per-identity rules key by: the peer id, or the address when it has none. */
  private identityKey (addr: string): string {
    return identityKey(addr, this.options.strictMultiaddr)
  }

  /**
   * `newcomer` joins an identity held for a client reconnecting within the grace (see
   * `decideClaim`): throws the refusal unless it may have it.
   */
  private claimReserved (newcomer: Session, reserved: Reservation, newcomerHash: string | undefined): void {
    const outcome = decideClaim(newcomer, { starsock: true, credentialHash: reserved.credentialHash }, this.options.cryptoChallenge, newcomerHash)
    if (outcome === 'in-use') {
      this.metrics.addressInUse.inc({ holder: 'reserved' })
      const where = this.options.cryptoChallenge ? ` (joined from ${reserved.remote})` : ''
      const seconds = Math.max(1, Math.ceil((reserved.untilMs - Date.now()) / 1000))
      throw new StarsockError('E_ADDRESS_IN_USE', `Address in use: this peer id is reserved for a reconnecting client${where} for up to ${seconds} s more`)
    }
    if (outcome !== 'resume') {
      // Taken while its client was away: it hears so (E_ADDRESS_IN_USE) when it comes back.
      const reason: DisplacedReason = newcomer.starsock ? 'takeover' : 'legacy-join'
      this.metrics.displaced.inc({ reason })
      this.logger.info({ by: newcomer.id, reason }, 'took an identity reserved for a reconnecting client')
    }
  }

  /**
   * `newcomer` joins `addr` while a client on another node holds the same identity (`remote`, see
   * `decideClaim`). Throws the refusal, or returns the decision its join entry carries: that
   * node applies it when it reads the entry (`displacedByNode`).
   */
  private claimRemote (newcomer: Session, remote: RemoteHold, addr: string, newcomerHash: string | undefined): JoinDecision {
    const { claim, heldAddr } = remote
    const outcome = decideClaim(newcomer, { starsock: claim.starsock, credentialHash: claim.credentialHash }, this.options.cryptoChallenge, newcomerHash)
    if (outcome === 'in-use') {
      this.metrics.addressInUse.inc({ holder: 'other-node' })
      const where = this.options.cryptoChallenge ? ` from ${claim.remote}` : ''
      throw new StarsockError('E_ADDRESS_IN_USE', `Address in use: this peer id is joined on another server node${where}`)
    }
    const decided: RemoteOutcome = outcome !== 'displace' ? outcome : newcomer.starsock ? 'takeover' : 'legacy-join'
    this.logger.debug({ session: newcomer.id, outcome: decided }, 'claimed an identity held on another node')
    return { outcome: decided, takes: heldAddr === addr ? undefined : heldAddr }
  }

  /**
   * `newcomer` joins `addr` while the live session `holder` holds the same identity under
   * `heldAddr` (see `decideClaim`). Throws the refusal, or returns what to do with the holder
   * once the address is the newcomer's.
   */
  private claim (newcomer: Session, holder: Session, heldAddr: string, addr: string): () => void {
    const outcome = decideClaim(newcomer, { starsock: holder.starsock, credential: holder.resumeSecrets.get(heldAddr) }, this.options.cryptoChallenge)
    if (outcome === 'in-use') throw this.inUse(holder)
    this.release(holder, heldAddr, addr)
    if (outcome === 'replace') return () => {}
    if (outcome === 'resume') {
      this.metrics.displaced.inc({ reason: 'resume' })
      this.logger.debug({ session: newcomer.id, stale: holder.id }, 'resumed from a stale socket')
      // Resumption is per address: a stale socket that still holds others stays for them.
      return () => { if (holder.addrs.size === 0) holder.endpoint.disconnect?.() }
    }
    const reason: DisplacedReason = newcomer.starsock ? 'takeover' : 'legacy-join'
    this.metrics.displaced.inc({ reason })
    this.logger.info({ session: holder.id, by: newcomer.id, reason }, 'displaced')
    return () => {
      const info: DisplacedInfo = { addr: heldAddr, reason, by: newcomer.remote }
      holder.endpoint.emit(EVENTS.DISPLACED, info)
      // A client may join several addresses on one socket: only one left with nothing goes.
      if (holder.addrs.size === 0) holder.endpoint.disconnect?.()
    }
  }

  /** The refusal; where the holder is only for a newcomer that proved the key (the challenge is on). */
  private inUse (holder: Session): StarsockError {
    this.metrics.addressInUse.inc({ holder: 'here' })
    const where = this.options.cryptoChallenge ? `from ${holder.remote}` : 'elsewhere'
    return new StarsockError('E_ADDRESS_IN_USE', `Address in use: this peer id is joined ${where}`)
  }

  /**
   * `holder` loses `heldAddr` to a session joining `addr`: the same address is handed over (its
   * directory entry is about to be overwritten); another one leaves.
   */
  private release (holder: Session, heldAddr: string, addr: string): void {
    if (heldAddr !== addr) {
      this.leave(holder, heldAddr, 'displaced')
      return
    }
    if (holder.addrs.delete(addr)) this.counted(holder, addr, -1)
    holder.resumeSecrets.delete(addr)
    this.unindex(holder, addr)
  }

  private unindex (session: Session, addr: string): void {
    const peerId = checkAddress(addr, this.options.strictMultiaddr)?.peerId
    if (peerId !== undefined) this.starsockHolders.remove(peerId, addr, session)
  }

  /**
   * `ss-leave(addr)`: no reply; ignored unless this session holds the address. `why` goes into the
   * leave line; `reserved` (a starsock client dropped) goes to the other nodes of a cluster.
   */
  leave (session: Session, addr: string, why = 'left', reserved?: LeaveReservation): boolean {
    if (!session.addrs.delete(addr)) return false
    this.peerLog.left(session, addr, why)
    this.counted(session, addr, -1)
    session.resumeSecrets.delete(addr)
    this.unindex(session, addr)
    if (this.directory.release(addr, session.id)) {
      this.metrics.peers.set(this.directory.size)
      this.announcer.left(addr)
      this.cluster?.left(session, addr, reserved)
    }
    return true
  }

  /** A peer on another node joined `addr` (the directory has it now): announce it to the peers here. */
  remoteJoined (addr: string, profile: PeerProfile | undefined): void {
    this.metrics.peers.set(this.directory.size)
    this.announcer.joined(addr, undefined, profile)
  }

  /** The peer at `addr` on another node left (the directory no longer has it). */
  remoteLeft (addr: string): void {
    this.metrics.peers.set(this.directory.size)
    this.announcer.left(addr)
  }

  /** The peer at `addr` on another node has a new profile. */
  remoteProfileChanged (addr: string, profile: PeerProfile): void {
    this.announcer.profileChanged([addr], undefined, profile)
  }

  /**
   * A later join on another node took `addr` from the local session holding it (one identity, one
   * place, across nodes too). That node applied `decideClaim` to the holder its copy knew, which
   * may lag (another holder, or none: a race of one log round trip), so the outcome is decided
   * again here against the holder there is (`outcomeHere`): `resume` drops the stale socket
   * without a word (unless it holds other addresses), `replace` takes it from a legacy holder
   * silently (it keeps its socket, as on one node), `takeover` and `legacy-join` tell the holder
   * `starsock:displaced` with `by` the newcomer's `ip:port`. A join from a node that wrote no
   * claim (`newcomer` undefined) is a takeover by `another server node`. A socket left with no
   * address is disconnected. Call before the directory records the other node. For another
   * spelling (`otherSpelling`) of the peer id only a starsock holder gives way, as on one node.
   * Returns whether a holder here lost the address.
   */
  displacedByNode (addr: string, newcomer?: HolderClaim, otherSpelling = false): boolean {
    const ownerId = this.directory.owner(addr)
    const holder = ownerId === undefined ? undefined : this.sessions.get(ownerId)
    if (holder === undefined || (otherSpelling && !holder.starsock)) return false
    const outcome = newcomer === undefined ? 'takeover' : this.outcomeHere(holder, addr, newcomer)
    this.leave(holder, addr, outcome === 'resume' ? 'resumed on another node' : 'displaced')
    if (outcome === 'replace') return true
    this.metrics.displaced.inc({ reason: outcome })
    if (outcome !== 'resume') {
      const info: DisplacedInfo = { addr, reason: outcome, by: newcomer?.remote ?? 'another server node' }
      holder.endpoint.emit(EVENTS.DISPLACED, info)
    }
    if (holder.addrs.size === 0) holder.endpoint.disconnect?.()
    return true
  }

  /**
   * `decideClaim` on the holder's node, for a join that happened (refusing it is no longer an
   * option): `resume` when the newcomer's credential hash is `holder`'s, `replace` for a legacy
   * holder, else a takeover (`legacy-join` by a legacy newcomer).
   */
  private outcomeHere (holder: Session, addr: string, newcomer: HolderClaim): RemoteOutcome {
    const secret = holder.resumeSecrets.get(addr)
    if (secret !== undefined && sameSecret(newcomer.credentialHash, hashSecret(secret))) return 'resume'
    if (!holder.starsock) return 'replace'
    return newcomer.starsock ? 'takeover' : 'legacy-join'
  }

  /**
   * The identity of `addr` joined on another node: a reservation of it here is over, as for a join
   * here (a legacy client's only at the reserved address).
   */
  joinedElsewhere (addr: string, starsock: boolean): void {
    const key = this.identityKey(addr)
    if (starsock || this.reservations.find(key)?.addr === addr) this.reservations.drop(key)
  }

  /**
   * A starsock client on another node dropped without leaving `addr`: its identity is held for it
   * here too (`reserved.graceMs`, at most this node's grace), unless a client here has it already.
   */
  reservedElsewhere (addr: string, reserved: LeaveReservation): void {
    const key = this.identityKey(addr)
    if (this.isPresent(this.ownerOf(addr)) || this.directory.owner(addr) !== undefined) return
    this.reservations.reserve(key, addr, reserved.credentialHash, reserved.remote, reserved.graceMs)
  }

  /**
   * `ss-dial(from, to, dialId, [{ secure }])`: open the two streams and ask the listener with
   * `ss-incomming`. Settles with `undefined` when the listener accepts, or with its refusal when
   * that is a string (passed on as is); rejects with a `StarsockError` when it refuses otherwise,
   * times out or disconnects, or the dial is not allowed. `accepted` learns whether the listener
   * is a starsock client (for the dialer's hint).
   */
  async dial (session: Session, from: string, to: string, dialId: string, secure = false, accepted?: (listenerStarsock: boolean) => void): Promise<string | undefined> {
    this.metrics.dialsTotal.inc()
    const startedMs = Date.now()
    const dial = { from, to, dialId, secure }
    let refusal: string | undefined
    try {
      refusal = await this.dialSteps(session, from, to, dialId, secure, accepted)
    } catch (err) {
      this.peerLog.dialed(session, { ...dial, ms: Date.now() - startedMs }, { err })
      this.metrics.dialsFailure.inc()
      if (err instanceof StarsockError && err.code.startsWith('E_LIMIT_')) this.metrics.limitHits.inc({ limit: err.code })
      throw err
    }
    this.peerLog.dialed(session, { ...dial, ms: Date.now() - startedMs }, { refused: refusal !== undefined })
    if (refusal === undefined) this.metrics.dialsSuccess.inc()
    else this.metrics.dialsFailure.inc()
    return refusal
  }

  private async dialSteps (session: Session, from: string, to: string, dialId: string, secure: boolean, accepted?: (listenerStarsock: boolean) => void): Promise<string | undefined> {
    if (!session.dialBucket.take()) {
      throw new StarsockError('E_LIMIT_DIAL_RATE', `Dial rate limit reached (maxDialsPerSecond=${this.options.maxDialsPerSecond})`)
    }
    if (!session.addrs.has(from)) throw new StarsockError('E_NOT_AUTHORIZED')
    const ownerId = this.directory.owner(to)
    // A peer on another node is reached through a stand-in for it; a stand-in's dial stays here.
    const target = ownerId !== undefined ? this.sessions.get(ownerId)
      : session.node === undefined ? this.cluster?.remoteTarget(to, session) : undefined
    if (target === undefined) throw new StarsockError('E_PEER_NOT_FOUND')
    const out = dialId + DIALER_SUFFIX
    const back = dialId + LISTENER_SUFFIX
    if (this.relay.pairInUse(session, target, out, back)) {
      throw new StarsockError('E_DIAL_ID_IN_USE', 'Dial id in use')
    }
    const max = this.options.maxStreamsPerSocket
    const extra = session === target ? 4 : 2
    if (this.relay.streamCount(session) + extra > max) throw streamLimit('Stream limit reached', max)
    if (this.relay.streamCount(target) + extra > max) throw streamLimit('Stream limit of the dialed peer reached', max)
    // The dials of one address may take at most a quarter of a peer's streams (identities cost
    // nothing: one socket dialing a peer over and over would otherwise leave it undialable, and
    // unable to dial). The peer's own dials to that address do not count.
    // A stand-in for a dialer on another node has no address of its own here: not counted.
    if (session !== target && session.node === undefined && session.ip !== '') {
      const key = this.ipKey(session.ip)
      const share = Math.max(4, Math.floor(max / 4))
      if (2 * this.relay.dialsFromIp(target, (ip) => ip !== '' && this.ipKey(ip) === key) + extra > share) {
        throw streamLimit(`Streams of the dialed peer with this address reached (at most ${share}, a quarter of its streams)`, max)
      }
    }

    const [forward] = this.relay.openPair(session, target, out, back)
    let reply: unknown[]
    try {
      // A listener that asked for dial hints learns what the dialer is and says it opens (issue 14:
      // it waits for a secure dialer's first bytes, not for a plaintext one's); a legacy listener's
      // arguments never move.
      const args = target.dialHints ? [dialId, from, { starsock: session.starsock, secure: session.starsock && secure }] : [dialId, from]
      const askedMs = Date.now()
      const asked = target.endpoint.request(EVENTS.INCOMING, args, this.options.dialTimeoutMs)
      // A stand-in's dial (`trunkDial`) is logged on the dialer's node.
      const lateRefusal = (): void => { if (session.node === undefined) this.peerLog.dialed(session, { from, to, dialId, secure, ms: Date.now() - askedMs }, { refused: true }) }
      if (!target.starsock && target.node === undefined && await this.acceptedFirst(forward, asked, lateRefusal)) {
        accepted?.(target.starsock)
        return undefined
      }
      reply = await asked
    } catch (err) {
      // A stand-in for a peer on another node rejects with that node's word (E_PEER_NOT_FOUND,
      // E_LIMIT_STREAMS, ...): its code passes through.
      const failure = err instanceof StarsockError ? err : dialFailure(err, this.options.dialTimeoutMs)
      // A listener that acks late has handed out a connection already: it must hear the failure.
      this.relay.fail(forward, failure.code, failure.message)
      throw failure
    }
    const refusal = reply[0]
    if (isRefusal(refusal)) {
      this.relay.fail(forward, 'E_DIAL_REFUSED', 'Dial refused')
      if (typeof refusal === 'string') return refusal.slice(0, 256)
      throw new StarsockError('E_DIAL_REFUSED', 'Dial refused')
    }
    // The streams may already be over (a dialer may end its stream as soon as it is accepted,
    // before the listener's ack arrives); a listener that left made `request` reject instead.
    accepted?.(target.starsock)
    return undefined
  }

  /**
   * For a legacy listener on this node: settles with `true` as soon as it accepts the dialer's
   * stream (`accept` of `<dialId>.dialer`), or with `false` when its answer to `ss-incomming`
   * (`asked`) comes first (rejects when that does). The published listener accepts
   * the stream and then acks, never with a refusal, but engine.io-client 3 holds a packet sent
   * within a millisecond of the one before (its "fake drain", a `setTimeout(0)`), so its ack
   * follows its accept by about a millisecond: answering the dialer on the accept saves it that
   * wait. The ack still counts when it comes: a refusal after the accept fails both streams
   * (`E_DIAL_REFUSED`, which each end hears); a late or missing one is ignored, since the listener
   * is reading the stream it accepted (a listener that leaves fails its streams anyway). The
   * dial's log line says it went through, and a later refusal adds a `dial refused` line. An ack
   * and an accept handled in the same turn (one long-polling payload) count as the accept, even
   * in the other order: the ack settles `asked` a few microtasks later.
   */
  private async acceptedFirst (forward: RelayStream, asked: Promise<unknown[]>, lateRefusal: () => void): Promise<boolean> {
    const first = await Promise.race([
      asked.then(() => false),
      new Promise<boolean>((resolve) => { forward.onAccept = () => { resolve(true) } })
    ]).finally(() => { forward.onAccept = undefined })
    if (first) {
      asked.then((reply) => {
        if (!isRefusal(reply[0])) return
        lateRefusal()
        this.relay.fail(forward, 'E_DIAL_REFUSED', 'Dial refused')
      }, () => {})
    }
    return first
  }

  /**
   * A dial from a peer on another node, whose stand-in here is `stub` (`stub.node` set, `from` in
   * its addresses), to the local peer at `to`: the same checks, streams and question to the
   * listener as `dial`, without its metrics and log line (the dialer's node has them). Settles with
   * the listener's refusal string, if any, and whether the listener is a starsock client.
   */
  async trunkDial (stub: Session, from: string, to: string, dialId: string, secure: boolean): Promise<{ refusal: string | undefined, listenerStarsock: boolean }> {
    let listenerStarsock = false
    const refusal = await this.dialSteps(stub, from, to, dialId, secure, (starsock) => { listenerStarsock = starsock })
    return { refusal, listenerStarsock }
  }

  /** The UDP relay, when `startUdp` made one. */
  get udp (): UdpRelay | undefined {
    return this.udpRelay
  }

  /**
   * Make the UDP relay (`udpRelay` on): its sockets bind to `bindHost`, and `ownPort` (the server's
   * TCP port) never registers as an endpoint.
   */
  startUdp (bindHost: string, ownPort: number): void {
    const o = this.options
    const metrics = this.metrics
    this.udpRelay = new UdpRelay({
      ports: o.udpPorts,
      bindHost,
      publicIp: o.udpPublicIp !== '' ? o.udpPublicIp : bindHost === '0.0.0.0' || bindHost === '::' ? '127.0.0.1' : bindHost,
      maxAllocationsPerPeer: o.udpMaxAllocationsPerPeer,
      maxAllocationsPerIp: o.udpMaxAllocationsPerIp,
      ownerGraceMs: o.udpOwnerGraceMs,
      ownPorts: [ownPort],
      idleMs: o.udpIdleMs,
      lifetimeMs: o.udpLifetimeMs,
      maxBytes: o.udpMaxBytes,
      maxPacketsPerSecond: o.udpMaxPacketsPerSecond,
      logger: this.logger.child({ ns: 'starsock:server:udp' }),
      observer: {
        forwarded: (n) => { metrics.udpPackets.inc(); metrics.udpBytes.inc(n) },
        dropped: (cause) => metrics.udpDropped.inc({ cause }),
        ended: (cause) => metrics.udpEnded.inc({ cause })
      }
    })
  }

  /** `starsock:udp-allocate(request)`: a UDP allocation for `session`'s peer id; rejects with a `StarsockError`. */
  async udpAllocate (session: Session, request: unknown): Promise<AllocationInfo> {
    const { relay, owner } = this.udpOwner(session)
    const checked = checkUdpAllocate([request])
    if (checked instanceof StarsockError) throw checked
    let allocation: AllocationInfo
    try {
      allocation = await relay.allocate(owner, checked, session.ip)
    } catch (err) {
      if (err instanceof StarsockError && (err.code.startsWith('E_LIMIT') || err.code === 'E_UDP_NO_PORTS')) this.metrics.limitHits.inc({ limit: err.code })
      throw err
    }
    if (!this.isPresent(owner)) relay.ownerLeft(owner) // it left while the ports were bound
    return allocation
  }

  /** `starsock:udp-refresh(id)`: push back the expiry of an allocation of `session`'s peer id. */
  udpRefresh (session: Session, id: unknown): AllocationInfo {
    const { relay, owner } = this.udpOwner(session)
    return relay.refresh(owner, id)
  }

  /** `starsock:udp-release(id)`: end an allocation of `session`'s peer id now. */
  udpRelease (session: Session, id: unknown): void {
    const { relay, owner } = this.udpOwner(session)
    relay.release(owner, id)
  }

  /**
   * Who a UDP request of `session` acts for: the owner (`ownerOf`) of the first address it joined.
   * Throws `E_UDP_DISABLED` without a relay, `E_NOT_JOINED` before a join.
   */
  private udpOwner (session: Session): { relay: UdpRelay, owner: string } {
    const relay = this.udpRelay
    if (relay === undefined) throw new StarsockError('E_UDP_DISABLED', 'This server runs no UDP relay (serve --udp-relay)')
    const addr = session.addrs.values().next()
    if (addr.done === true) throw new StarsockError('E_NOT_JOINED', 'Join before asking for a UDP allocation')
    return { relay, owner: this.ownerOf(addr.value) }
  }

  /**
   * Shut down: open streams get up to `graceMs` to finish, then fail with `E_SHUTDOWN`; timers
   * stop and the UDP relay closes. Settles once the streams are over and the relay's sockets closed.
   */
  async close (graceMs: number): Promise<void> {
    await this.streamsOver(graceMs)
    this.relay.failAll('E_SHUTDOWN', 'Server shutting down')
    const udp = this.udpRelay?.close()
    this.stop()
    await udp
  }

  /** Settles when no stream is open, or after `graceMs`, whichever comes first. */
  private async streamsOver (graceMs: number): Promise<void> {
    if (this.relay.openStreams === 0) return
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.idleWaiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, graceMs)
      this.idleWaiters.add(done)
    })
  }

  /** Stop timers (see `close` for a graceful end). */
  stop (): void {
    clearInterval(this.backlogTimer)
    this.announcer.stop()
    this.relay.stop()
  }
}

/** Add `delta` to the count under `key` (a count of 0 is no entry); returns the new count. */
function count (counts: Map<string, number>, key: string, delta: number): number {
  const n = (counts.get(key) ?? 0) + delta
  if (n <= 0) counts.delete(key)
  else counts.set(key, n)
  return Math.max(n, 0)
}

/** Whether a listener's answer to `ss-incomming` refuses the dial (anything but nothing, `false` or `''`). */
function isRefusal (answer: unknown): boolean {
  return answer !== undefined && answer !== null && answer !== false && answer !== ''
}

/** A socket endpoint's rejected dial request as the dialer hears it: the listener left, or did not answer in time. */
function dialFailure (err: unknown, dialTimeoutMs: number): StarsockError {
  const code: ErrorCode = (err as { code?: unknown }).code === 'E_PEER_GONE' ? 'E_PEER_GONE' : 'E_DIAL_TIMEOUT'
  return new StarsockError(code, code === 'E_PEER_GONE' ? 'Peer disconnected during the dial' : `Listener did not answer within ${dialTimeoutMs} ms`)
}

function streamLimit (what: string, max: number): StarsockError {
  return new StarsockError('E_LIMIT_STREAMS', `${what} (maxStreamsPerSocket=${max})`)
}
