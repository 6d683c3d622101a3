/**
 * Sock channels between peers, with consent: one multiplexed connection per peer pair, offers
 * decided by rules or a person, mappings either side can kill, and bind leases.
 *
 * Runs in Node and the browser. What needs real sockets (connecting to a host, listening on a
 * port) goes through a `SockHost`; Node has one (`createNodeHost`), a browser has none, so it
 * denies such offers and can still ask other peers for them.
 */
import { ERROR_CODES, StarsockError, type ErrorCode } from '../../shared/errors.ts'
import { silentLogger, type Logger } from '../../shared/logger.ts'
import type { SockAddress } from '../../shared/mux-frame.ts'
import {
  checkAllowFromList, describeOffer, formatAddress, formatSize, hasFeature, isHost, isPort, isSha256, SERVICE_NAME, understandsOffer, type Offer, type Reply, type SockProto
} from '../../shared/sock-protocol.ts'
import { matchRule, parseRule, type SockRule } from '../../shared/sock-rules.ts'
import type { Connection } from '../connection.ts'
import { Emitter } from '../emitter.ts'
import type { Channel } from '../mux/channel.ts'
import { Muxer, type MuxOptions, type OfferGrant } from '../mux/muxer.ts'
import type { StarsockPeer } from '../peer.ts'
import { bounded } from '../waiters.ts'
import { addDrops, Mapping } from './mapping.ts'
import { FileQuota } from './file-quota.ts'

/** Why an agent refuses a plaintext connection (`E_SECURE_REQUIRED`), in the words users see. */
export const SECURE_REQUIRED_REASON = 'it is not end-to-end encrypted; both sides must use --insecure to allow plaintext'

/** How long a granted file offer waits for its channel before it is killed. */
export const FILE_CHANNEL_TIMEOUT_MS = 30_000
/**
 * The key a peer's per-peer budgets (mappings, leases, file quota) are counted under: its id when
 * proved (end-to-end encrypted), else a namespace of its own, so that a plaintext connection that
 * merely claims an id never spends the budget of the peer that proved it.
 */
function budgetOf (peerId: string, secure: boolean): string {
  return secure ? peerId : `plain:${peerId}`
}

/** What a granted file counts against the quotas at least, so a flood of empty files is bounded too (and so is the list of grants). */
export const FILE_QUOTA_MIN_CHARGE_BYTES = 64 * 1024

/** Runs sockets on this machine on behalf of other peers. */
export interface SockHost {
  /** Open a socket to `dst` and pipe it to `channel`; settles once connected, rejects with `E_CONNECT_*`. */
  connect: (channel: Channel, dst: SockAddress, proto: SockProto) => Promise<void>
  /** Listen on `host:port`; rejects with `E_BIND_FAILED`. */
  bind: (proto: SockProto, host: string, port: number, target: BindTarget) => Promise<HostListener>
  /** A source allowlist (`Offer.allowFrom`) ready to check; throws a `TypeError` naming a bad entry. Without it, binds with `allowFrom` are denied (`E_UNSUPPORTED`). */
  allowFrom?: (list: readonly string[]) => SourceFilter
}

/** Which sources may use a port bound for a peer (see `SockHost.allowFrom`). */
export interface SourceFilter {
  allows: (ip: string | undefined) => boolean
}

/** What a listener hands its traffic to. */
export interface BindTarget {
  /** TCP: an accept channel to the binder for a connection from `src`; rejects while no binder is attached. */
  openAccept: (src: SockAddress) => Promise<Channel>
  /**
   * Whether a client (TCP) or datagram (UDP) from `src` may come in: `false` when the binder's
   * `allowFrom` leaves it out (then it is counted and told; the host resets or drops it).
   */
  admit?: (src: SockAddress, proto: SockProto) => boolean
}

/** A port a host listens on. */
export interface HostListener {
  /** The address bound. */
  readonly address: SockAddress
  /** For a wildcard address (`0.0.0.0`, `::`): the addresses it can be reached at, interfaces not internal first, then loopback. */
  readonly addresses?: SockAddress[]
  /** UDP: carry datagrams between the bound socket and `channel` (the binder's bind channel). */
  attach: (channel: Channel) => void
  /** Stop listening and close what it accepted. */
  close: () => void
  /** UDP: datagrams the bound socket dropped, by cause (see `UdpBindDrops`). */
  drops?: () => UdpBindDrops
}

/**
 * Datagrams a UDP bind dropped: `sources` (from a new source while it remembered its maximum of
 * sources), `away` (arrived while the binder's connection was down, its lease running),
 * `unknown` (the binder sent to an address that had not sent to the port: a bind is no way to
 * reach any host).
 */
export interface UdpBindDrops {
  sources: number
  away: number
  unknown: number
}

/** An offer waiting for a decision, as a prompt shows it. */
export interface OfferRequest {
  peerId: string
  /** Whether the offer came on an end-to-end encrypted connection: `false`, the id is only the server's word. */
  secure: boolean
  offer: Offer
  /** `connect/tcp 127.0.0.1:8080 "web"`; a service shows its target here: `service/tcp web -> 127.0.0.1:3000`. */
  text: string
  /** For a service offer (or an accept for a service): the service and where this side would connect it. */
  service?: { name: string } & ServiceTarget
}

/** What a named service reaches on the side that offers it. */
export interface ServiceTarget {
  to: SockAddress
  proto: SockProto
}

/**
 * An answer about an offer: `'always'` grants it and, on a secure connection, adds a rule for it
 * from that peer; `'nobody'` denies it because nobody can be asked (a prompt's input ended): the
 * decision is then nobody's (`by: 'none'`), not a person's.
 */
export type OfferAnswer = boolean | 'always' | 'nobody'

/** What was decided about an offer. */
export interface OfferDecision extends OfferRequest {
  allowed: boolean
  /** `rule` (with the rule), `person`, `remembered`, or `none` (no rule, nobody to ask, or a limit). */
  by: 'rule' | 'person' | 'remembered' | 'none'
  rule?: string
  reason?: string
  /** The code the requester got, when denied. */
  code?: ErrorCode
  /**
   * A grant that never held: the requester gave up (a KILL) or sent no ACK in time before the
   * grant reached it. Told as a second `offer` event (`allowed: false`) after the first one that granted it.
   */
  withdrawn?: true
}

/** What `offerFile` offers. */
export interface FileOfferRequest {
  name: string
  size: number
  /** The whole file's SHA-256 (lower-case hex): lets a receiver with part of it resume (`offerFileAt`). */
  sha256?: string
  signal?: AbortSignal
  timeoutMs?: number
  /** The connection the file goes on, once known (its security, for a badge). */
  onSession?: (mux: Muxer) => void
}

/** Files other peers offer: who takes them, and how much. */
export interface FileReceiverOptions {
  /** Take one granted file: its channel carries the header line, then exactly `mapping.offer.size` bytes. */
  onFile: (channel: Channel, mapping: Mapping) => void
  /**
   * A file offer granted from a verified (secure) peer with its `sha256`: the bytes of it this side
   * has already (a partial copy), so the sender sends only the rest (`Mapping.fileOffset`). Called
   * once the offer is granted; an answer that is not an integer from 0 to the offer's size counts
   * as 0. Without it, every file starts at 0.
   */
  resumeOffset?: (request: OfferRequest) => number | Promise<number>
  /** Largest file taken; a larger offer is refused with `E_LIMIT_FILE_SIZE` before anyone is asked. @default 1 GiB */
  maxFileBytes?: number
  /** Bytes of files one peer may have granted within `quotaWindowMs` (a file counts its offered size until its mapping ends, then the bytes that arrived, at least 64 KiB); past it, `E_LIMIT_FILE_QUOTA`. @default 4 GiB */
  quotaBytesPerPeer?: number
  /** Bytes of files all peers together may have granted within `quotaWindowMs` (identities are free). @default 16 GiB */
  quotaBytesTotal?: number
  /** The quota's sliding window. @default 3_600_000 (an hour) */
  quotaWindowMs?: number
}

/** What a limit refused, as the `limit` event tells it. */
export interface LimitRefusal {
  peerId: string
  code: ErrorCode
  /** `mappings`, `ports`, `channels` (totals), `peer-mappings`, `file-size`, `file-quota`. */
  what: string
  message: string
}

/** Options of a sock agent. */
export interface SockAgentOptions {
  /** Rules that grant offers without asking (`connect/tcp:127.0.0.1:8080`, ...). */
  allow?: ReadonlyArray<string | SockRule>
  /**
   * Ask a person about an offer no rule allows; settle `true` to grant, `'always'` to grant and (on
   * an end-to-end encrypted connection) add a rule for this offer from this peer (`rule` event).
   * Without it such offers are denied.
   */
  ask?: (request: OfferRequest, signal: AbortSignal) => OfferAnswer | Promise<OfferAnswer>
  /**
   * Whether anyone can be asked now (a prompt whose input ended cannot). When it says no, offers
   * no rule allows are denied as nobody's decision, and the requester is not told a person is asked.
   * @default always
   */
  askable?: () => boolean
  /** Services this agent offers by name (`service:NAME` rules or a person grant them); this side picks the target. */
  services?: Record<string, ServiceTarget>
  /**
   * Takes the accept channels of accept offers granted here (without a service); without it,
   * such offers are denied up front (`E_UNSUPPORTED`).
   */
  onAccept?: (channel: Channel, mapping: Mapping) => void
  /** How long a person has to answer. @default 60_000 */
  askTimeoutMs?: number
  /** Runs connect and bind here; without it, such offers are denied with `E_UNSUPPORTED`. */
  host?: SockHost
  /** How long a bound port stays reserved for a binder whose connection dropped. @default 30_000 */
  leaseMs?: number
  /** Mappings one peer may hold here (ports on lease count). @default 64 */
  maxMappingsPerPeer?: number
  /**
   * Mappings all other peers together may hold here (ports on lease count): identities are free,
   * so per-peer limits alone do not bound an agent. Past it, offers get `E_LIMIT_TOTAL`. @default 1024
   */
  maxMappingsTotal?: number
  /** Ports this agent listens on for all other peers together (bound, being bound, or on lease); past it, bind offers get `E_LIMIT_TOTAL`. @default 256 */
  maxBoundPortsTotal?: number
  /** Channels open on all connections together, both directions; past it, new channels (accepts included) get `E_LIMIT_TOTAL`. @default 4096 */
  maxChannelsTotal?: number
  /** Take files other peers offer (`file` offers, granted by a `file` rule or a person); without it they get `E_UNSUPPORTED`. */
  files?: FileReceiverOptions
  /** Channels of other types than `sock` (the application's own); without it they are refused. */
  onChannel?: (channel: Channel, body: Uint8Array, mux: Muxer) => Promise<Reply | undefined>
  /** Options of every multiplexed connection. */
  mux?: MuxOptions
  /**
   * Also run plaintext connections (`conn.secure === false`: a starsock peer that dialed with
   * `secure: false`, or a legacy one), and dial with `{ secure: false }`. Both sides must opt in:
   * without it a plaintext connection is refused with `E_SECURE_REQUIRED`, either way it came.
   * On a plaintext connection the other peer's id is the server's word: `@PEERID` rules do not
   * match it, remembered answers are not taken over it, and leases of verified peers are not
   * handed to it. @default false
   */
  insecure?: boolean
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
  /** A multiplexed connection to a peer opened (`mux.secure` says whether it is end-to-end encrypted). */
  session: Muxer
  /** A connection was refused before it carried anything: plaintext where this agent requires end-to-end encryption (`E_SECURE_REQUIRED`). */
  refused: { peerId: string, initiator: boolean, error: StarsockError }
  /** A bound port's lease: `held` for a binder whose connection dropped, then `taken` back or `expired`. */
  lease: { peerId: string, port: number, state: 'held' | 'taken' | 'expired' }
  /** A limit refused an offer or a channel (also counted in `stats().refused`). */
  limit: LimitRefusal
  /** A person answered `'always'`: this rule was added (see `rules()`). */
  rule: { rule: SockRule, peerId: string }
  /**
   * A client (TCP, reset) or datagram (UDP, dropped) of a port bound here came from a source the
   * binder's `allowFrom` leaves out. Every one is counted (`stats().refusedSources`); told at most
   * `REFUSED_TELL_PER_SECOND` a second per mapping (a UDP source once), `untold`: how many since
   * the last one told were not.
   */
  'refused-source': { peerId: string, mapping: Mapping, src: SockAddress, untold?: number }
  /** `close()` was called: the agent takes and asks nothing more (tunnels on it stop). */
  close: undefined
}

/** Figures of a sock agent. */
export interface SockAgentStats {
  /** Peers with a live connection. */
  peers: number
  channelsOpen: number
  /** Mappings, both directions. */
  mappings: number
  /** Mappings other peers hold here (ports on lease count), against `maxMappingsTotal`. */
  mappingsGranted: number
  /** Ports listened on for other peers (bound, being bound, or on lease), against `maxBoundPortsTotal`. */
  boundPorts: number
  bytesIn: number
  bytesOut: number
  droppedDatagrams: number
  /** Offers and channels refused by a limit, by code (`E_LIMIT_TOTAL`, `E_LIMIT_MAPPINGS`, ...). */
  refused: Partial<Record<ErrorCode, number>>
  /** Datagrams the UDP ports bound for other peers dropped, by cause (ports bound now). */
  udpBindDrops: UdpBindDrops
  /** Clients reset and datagrams dropped by ports bound here because their source was not in the binder's `allowFrom`. */
  refusedSources: number
}

/** One connection to another peer, as `agent.sessions()` lists it. */
export interface SessionInfo {
  peerId: string
  /** End-to-end encrypted, `peerId` proved by the other side; `false`: plaintext (`insecure` agents only), `peerId` is the server's word. */
  secure: boolean
  /** Whether this side dialed. */
  initiator: boolean
  channelsOpen: number
  bytesIn: number
  bytesOut: number
}

interface BindState {
  key: string
  peerId: string
  /** Whether the binder's connection was end-to-end encrypted (its id proved). */
  secure: boolean
  listener: HostListener
  /** The mapping that owns the port now; `undefined` while leased. */
  owner: Mapping | undefined
  /** The last owner: its `allowFrom` holds while the port is on lease too. */
  lastOwner?: Mapping
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

/** What to ask for with `connectService`. */
export interface ServiceRequest {
  /** The service's name on the other peer (`SERVICE_NAME`). */
  service: string
  /** @default 'tcp' */
  proto?: SockProto
  /** Shown to the other peer's person. @default '' */
  name?: string
  signal?: AbortSignal
  /** How long to wait for the answer. @default the mux's offer timeout */
  timeoutMs?: number
  /** Called once if the other peer asks a person about the offer. */
  onAsking?: (info: { timeoutMs: number }) => void
}

/** Refused sources told per second, per mapping, after a burst of `REFUSED_TELL_BURST` (the rest is counted, and summed up). */
export const REFUSED_TELL_PER_SECOND = 10
/** Refused sources told at once, per mapping, before the rate holds. */
export const REFUSED_TELL_BURST = 20
/** UDP sources per mapping remembered as told (each told at most once); past it, the rate alone bounds the telling. */
export const REFUSED_TOLD_SOURCES = 1024

/** The telling of refused sources of one mapping: a token bucket, what went untold, the sources told. */
interface RefusalTelling {
  tokens: number
  at: number
  untold: number
  sources: Set<string>
  summary?: ReturnType<typeof setTimeout>
}

/** A granted offer whose requester has not acknowledged it yet: counted against the limits, not yet a mapping. */
interface PendingGrant {
  peerId: string
  secure: boolean
  offer: Offer
}

/**
 * The key a person's answer about `offer` from `peerId` is remembered under: a service's target
 * is part of it (a yes to `web -> 127.0.0.1:3000` is no yes to `web` once it points elsewhere),
 * and so is a bind's `allowFrom` (a yes to a bind for one network is no yes to one for anyone).
 */
function rememberKey (peerId: string, offer: Offer, target?: ServiceTarget): string {
  const to = target === undefined ? '' : `${target.proto}:${target.to.ip}:${target.to.port}`
  return `${peerId}|${offer.kind}|${offer.proto}|${offer.host}|${offer.port}|${offer.service ?? ''}|${to}|${offer.allowFrom?.join(',') ?? '*'}`
}

/**
 * The rule an `'always'` answer adds: this offer, from this peer only; `undefined` when no rule
 * says it without saying more (then `'always'` is a remembered yes): a file (each file is asked),
 * a bind with `allowFrom` (a rule would grant it without the list). A service's rule
 * (`service:NAME@PEERID`) follows the name: once `setServices` points the name elsewhere, the
 * rule grants the new target too (a remembered yes holds for the target answered about only).
 */
export function ruleForOffer (offer: Offer, peerId: string): string | undefined {
  const host = offer.host.includes(':') ? `[${offer.host}]` : offer.host
  switch (offer.kind) {
    case 'connect': return `${offer.kind}/${offer.proto}:${host}:${offer.port}@${peerId}`
    // A rule cannot carry a bind's allowFrom: it would grant the same bind to anyone, so none.
    case 'bind': return offer.allowFrom === undefined ? `${offer.kind}/${offer.proto}:${host}:${offer.port}@${peerId}` : undefined
    // A service rule names the service, not its target: it follows the name (see `setServices`).
    case 'service': return `service:${offer.service ?? ''}@${peerId}`
    // A plain accept: connections the peer takes on its HOST:PORT, handed to this side's `onAccept`.
    case 'accept': return offer.service === undefined ? `accept/${offer.proto}:${host}:${offer.port}@${peerId}` : `service:${offer.service}@${peerId}`
    // Each file is asked: a yes to one is no yes to every file from that peer.
    case 'file': return undefined
  }
}

function checkServices (services: Record<string, ServiceTarget>): Map<string, ServiceTarget> {
  if (typeof services !== 'object' || services === null) throw new TypeError('services must be an object of name -> { to, proto }')
  const out = new Map<string, ServiceTarget>()
  for (const [name, target] of Object.entries(services)) {
    if (!SERVICE_NAME.test(name)) throw new TypeError(`service name "${name}" must be letters, digits, _ . - (at most 64, a letter or digit first)`)
    if (typeof target !== 'object' || target === null || !isHost(target.to?.ip) || !isPort(target.to?.port) || target.to.port === 0) throw new TypeError(`service ${name} needs to: { ip, port } with a port from 1 to 65535`)
    if (target.proto !== 'tcp' && target.proto !== 'udp') throw new TypeError(`service ${name}: proto must be tcp or udp`)
    out.set(name, { to: { ip: target.to.ip, port: target.to.port }, proto: target.proto })
  }
  return out
}

/** Sock channels of one peer. Make one with `createSockAgent`. */
export class SockAgent extends Emitter<SockAgentEvents> {
  private ruleList: SockRule[]
  private serviceTargets: Map<string, ServiceTarget>
  /** Grants sent, waiting for the requester's ACK. */
  private readonly pendingGrants = new Set<PendingGrant>()
  private refusedSources = 0
  /** How refused sources of each binder's ports are told (rate-limited; see `admitSource`). */
  private readonly telling = new WeakMap<Mapping, RefusalTelling>()
  private readonly logger: Logger
  private readonly byPeer = new Map<string, Muxer>()
  private readonly dialing = new Map<string, Promise<Muxer>>()
  private readonly mappingsOf = new Map<Muxer, Map<number, Mapping>>()
  private readonly binds = new Map<Mapping, BindState>()
  /** Mappings whose bind is under way (one bind per mapping). */
  private readonly binding = new Set<Mapping>()
  private readonly leases = new Map<string, BindState>()
  /** Offers a person allowed, by `peerId|kind|proto|host|port`: taken again only on secure connections. */
  private readonly remembered = new Set<string>()
  /** The same for plaintext connections: only on the connection where the person answered. */
  private readonly rememberedOn = new WeakMap<Muxer, Set<string>>()
  private readonly insecure: boolean
  private readonly leaseMs: number
  /** How long a person has to answer an offer (`askTimeoutMs`): a prompt's countdown shows this figure. */
  readonly askTimeoutMs: number
  private readonly maxMappingsPerPeer: number
  private readonly maxMappingsTotal: number
  private readonly maxBoundPortsTotal: number
  private readonly maxChannelsTotal: number
  private readonly files: (Required<Omit<FileReceiverOptions, 'resumeOffset'>> & Pick<FileReceiverOptions, 'resumeOffset'>) | undefined
  /** Bytes of files granted, by peer, within the quota window. */
  private readonly fileQuota: FileQuota | undefined
  private readonly refused: Partial<Record<ErrorCode, number>> = {}
  private closed = false

  /** Whether `close()` was called. */
  get isClosed (): boolean {
    return this.closed
  }
  /** Counters of connections already closed, so the totals never go back. */
  private readonly closedCounters = { bytesIn: 0, bytesOut: 0, droppedDatagrams: 0 }

  constructor (readonly peer: StarsockPeer, private readonly options: SockAgentOptions = {}) {
    super()
    this.ruleList = (options.allow ?? []).map((r) => typeof r === 'string' ? parseRule(r) : r)
    this.serviceTargets = checkServices(options.services ?? {})
    if (options.onAccept !== undefined && typeof options.onAccept !== 'function') throw new TypeError('onAccept must be a function')
    this.logger = (options.logger ?? silentLogger).child({ ns: 'starsock:client:sock' })
    this.leaseMs = options.leaseMs ?? 30_000
    this.askTimeoutMs = options.askTimeoutMs ?? 60_000
    this.maxMappingsPerPeer = options.maxMappingsPerPeer ?? 64
    this.maxMappingsTotal = options.maxMappingsTotal ?? 1024
    this.maxBoundPortsTotal = options.maxBoundPortsTotal ?? 256
    this.maxChannelsTotal = options.maxChannelsTotal ?? 4096
    this.insecure = options.insecure === true
    if (!Number.isInteger(this.leaseMs) || this.leaseMs < 0) throw new RangeError('leaseMs must be a non-negative integer')
    for (const name of ['maxMappingsPerPeer', 'maxMappingsTotal', 'maxBoundPortsTotal', 'maxChannelsTotal'] as const) {
      if (!Number.isSafeInteger(this[name]) || this[name] < 0) throw new RangeError(`${name} must be a non-negative integer`)
    }
    const f = options.files
    if (f !== undefined) {
      if (typeof f.onFile !== 'function') throw new TypeError('files.onFile must be a function')
      this.files = {
        onFile: f.onFile,
        resumeOffset: f.resumeOffset,
        maxFileBytes: f.maxFileBytes ?? 1024 ** 3,
        quotaBytesPerPeer: f.quotaBytesPerPeer ?? 4 * 1024 ** 3,
        quotaBytesTotal: f.quotaBytesTotal ?? 16 * 1024 ** 3,
        quotaWindowMs: f.quotaWindowMs ?? 3_600_000
      }
      for (const name of ['maxFileBytes', 'quotaBytesPerPeer', 'quotaBytesTotal', 'quotaWindowMs'] as const) {
        if (!Number.isSafeInteger(this.files[name]) || this.files[name] < 0) throw new RangeError(`files.${name} must be a non-negative integer`)
      }
      this.fileQuota = new FileQuota(this.files.quotaWindowMs)
    }
    peer.handle((conn) => { if (this.refuseIfPlaintext(conn) === undefined) this.adopt(conn) })
  }

  /** The connection to `peerId`, dialed when there is none. */
  async session (peerId: string, options: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<Muxer> {
    if (this.closed) throw new StarsockError('E_NOT_JOINED', 'Sock agent is closed')
    const live = this.byPeer.get(peerId)
    if (live !== undefined && !live.closed) return live
    let dialing = this.dialing.get(peerId)
    if (dialing === undefined) {
      // Shared by every caller, so it carries no caller's signal; each caller waits with its own.
      dialing = (async () => {
        // Secure unless this side opted out: never the peer's default, which may be plaintext.
        const conn = await this.peer.dial(peerId, { secure: !this.insecure })
        const refused = this.refuseIfPlaintext(conn)
        if (refused !== undefined) throw refused
        const mux = this.adopt(conn)
        await mux.ready
        return mux
      })().finally(() => this.dialing.delete(peerId))
      dialing.catch(() => {})
      this.dialing.set(peerId, dialing)
    }
    return await bounded(`connecting to ${peerId}`, dialing, options.timeoutMs, options.signal)
  }

  /** The rules that grant offers without asking now (`allow`, then `setRules`, plus what `'always'` answers added). */
  rules (): SockRule[] {
    return this.ruleList.slice()
  }

  /** Replace the rules (strings are parsed: a `TypeError` names a bad one, and nothing changes). Live mappings stay. */
  setRules (rules: ReadonlyArray<string | SockRule>): void {
    this.ruleList = rules.map((r) => typeof r === 'string' ? parseRule(r) : r)
  }

  /**
   * Forget every yes a person gave to offers from `peerId` (a yes holds for the agent's life, on
   * every secure connection, and on the plaintext one it was given on): its next offer is asked
   * again. Rules stay (`setRules` removes them); live mappings stay (`kill` ends them).
   */
  forgetAnswers (peerId: string): void {
    for (const key of this.remembered) if (key.startsWith(`${peerId}|`)) this.remembered.delete(key)
    for (const mux of this.mappingsOf.keys()) if (mux.remotePeer === peerId) this.rememberedOn.get(mux)?.clear()
  }

  /** The services this agent offers now, by name. */
  services (): Record<string, ServiceTarget> {
    return Object.fromEntries([...this.serviceTargets].map(([name, t]) => [name, { to: { ...t.to }, proto: t.proto }]))
  }

  /** Replace the services (checked first: a `TypeError` names a bad one, and nothing changes). Live mappings keep the target they were granted with. */
  setServices (services: Record<string, ServiceTarget>): void {
    this.serviceTargets = checkServices(services)
  }

  /** Ask `peerId` to connect to `host:port` for us; settles with the granted mapping (open channels with `mapping.connect()`). */
  async connect (peerId: string, request: MappingRequest): Promise<Mapping> {
    if (request.host === undefined || !isHost(request.host)) throw new TypeError('connect needs a host name or address')
    if (!isPort(request.port) || request.port === 0) throw new TypeError('connect needs a port from 1 to 65535')
    return await this.ask(peerId, { kind: 'connect', host: request.host, port: request.port }, request)
  }

  /**
   * Ask `peerId` for its service `service`: it picks the target (its `services`) and grants by a
   * `service:` rule or a person. Settles with the mapping (open channels with `mapping.connect()`);
   * rejects with `E_DENIED` (also for a name it does not offer, or the wrong proto) or
   * `E_UNSUPPORTED` (a peer that takes no service offers: an older starsock).
   */
  async connectService (peerId: string, request: ServiceRequest): Promise<Mapping> {
    if (typeof request.service !== 'string' || !SERVICE_NAME.test(request.service)) throw new TypeError('connectService needs a service name (letters, digits, _ . -, at most 64)')
    return await this.ask(peerId, { kind: 'service', host: '', port: 0, service: request.service }, request)
  }

  /**
   * Ask `peerId` to listen on `host:port` for us; settles once it is bound (`mapping.bound`, and
   * for a wildcard host `mapping.addresses`). With `allowFrom`, the peer resets every TCP client
   * and drops every datagram from elsewhere; a peer that cannot do that (an older starsock) gets
   * no offer: `E_UNSUPPORTED`.
   */
  async bind (peerId: string, request: MappingRequest & { lease?: number, allowFrom?: readonly string[] }): Promise<Mapping> {
    const host = request.host ?? '0.0.0.0'
    if (!isHost(host)) throw new TypeError('bind needs a host name or address to listen on')
    if (!isPort(request.port)) throw new TypeError('bind needs a port from 0 to 65535')
    // Checked here as the binding peer would: a bad entry is this caller's TypeError, not a remote E_DENIED.
    const allowFrom = request.allowFrom === undefined ? undefined : checkAllowFromList(request.allowFrom)
    const mapping = await this.ask(peerId, { kind: 'bind', host, port: request.port, ...(allowFrom !== undefined ? { allowFrom } : {}) }, request)
    try {
      const channel = await mapping.mux.open({
        type: 'sock', sock: 'bind', reliable: mapping.offer.proto === 'tcp', mapping: mapping.id, dst: { ip: host, port: request.port }, lease: request.port === 0 ? request.lease : undefined
      }, { signal: request.signal })
      mapping.bound = channel.bound
      mapping.addresses = channel.addresses
      mapping.bindChannel = channel
      // The bind channel is the binding: when it ends, so does the mapping.
      void channel.whenClosed.then(() => mapping.end(new StarsockError('E_STREAM_CLOSED', 'Bind channel closed')))
    } catch (err) {
      mapping.kill('bind failed')
      throw err
    }
    return mapping
  }

  /**
   * Tell `peerId` we will send it accept channels (`sendAccept`): connections this side takes on
   * `host:port` for it. With `service`, it connects each one to that service of its own (granted
   * like a service offer); without, its `onAccept` takes them (a peer without one denies the offer
   * up front, `E_UNSUPPORTED`). Settles once it agrees.
   */
  async offerAccept (peerId: string, request: MappingRequest & { service?: string }): Promise<Mapping> {
    const host = request.host ?? '0.0.0.0'
    if (!isHost(host)) throw new TypeError('offerAccept needs the host name or address listened on')
    if (!isPort(request.port)) throw new TypeError('offerAccept needs the port listened on (0 to 65535)')
    if (request.service !== undefined && (typeof request.service !== 'string' || !SERVICE_NAME.test(request.service))) throw new TypeError('service must be a service name (letters, digits, _ . -, at most 64)')
    return await this.ask(peerId, { kind: 'accept', host, port: request.port, ...(request.service !== undefined ? { service: request.service } : {}) }, request)
  }

  /**
   * Offer `peerId` a file of `size` bytes named `name`; settles with the channel to send it on
   * (a header line `{ name, size, sha256 }`, exactly `size` bytes, then read the answer line) once
   * the peer agreed. Rejects with `E_DENIED`, `E_UNSUPPORTED`, `E_LIMIT_FILE_SIZE` or
   * `E_LIMIT_FILE_QUOTA` before any byte is sent. The mapping ends with the channel. It never
   * resumes (its caller could not learn the offset): a `sha256` given here is not offered, so the
   * receiver grants from 0; `offerFileAt` resumes.
   */
  async offerFile (peerId: string, request: FileOfferRequest): Promise<Channel> {
    const { sha256: _notOffered, ...fromStart } = request
    return (await this.offerFileAt(peerId, fromStart)).channel
  }

  /**
   * `offerFile`, also telling where to start: with `sha256` (the whole file's, lower-case hex) a
   * receiver that has part of the same file grants an `offset`; then send the header with that
   * `offset` and only the bytes after it. Settles as `offerFile` does.
   */
  async offerFileAt (peerId: string, request: FileOfferRequest): Promise<{ channel: Channel, offset: number }> {
    if (typeof request.name !== 'string' || request.name === '') throw new TypeError('offerFile needs a name')
    if (!Number.isSafeInteger(request.size) || request.size < 0) throw new TypeError('offerFile needs a size in bytes (a non-negative integer)')
    if (request.sha256 !== undefined && !isSha256(request.sha256)) throw new TypeError('offerFile sha256 must be 64 lower-case hex digits')
    // The name goes to a prompt: no control characters, at most 200 of them.
    const name = request.name.replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, '_').slice(0, 200)
    const offer: Offer = { kind: 'file', proto: 'tcp', host: '', port: 0, name, size: request.size, ...(request.sha256 !== undefined ? { sha256: request.sha256 } : {}) }
    const mux = await this.session(peerId, { signal: request.signal, timeoutMs: request.timeoutMs })
    request.onSession?.(mux) // the connection the file goes on (its security, for a badge)
    let offset = 0
    const id = await mux.offer(offer, { signal: request.signal, timeoutMs: request.timeoutMs, onGranted: (reply) => { offset = reply.offset ?? 0 } })
    const mapping = this.track(mux, id, offer, true)
    try {
      // Only a sender that named the file's sha256 can be resumed; anything else from the wire is refused.
      if (offset > request.size || (offset > 0 && request.sha256 === undefined)) throw new StarsockError('E_CHANNEL_PROTOCOL', `the receiver granted offset ${offset} of a ${request.size}-byte file`)
      mapping.fileOffset = offset
      const channel = await mux.open({ type: 'file', reliable: true, mapping: id }, { signal: request.signal })
      mapping.add(channel)
      void channel.whenClosed.then(() => mapping.end(channel.error ?? new StarsockError('E_STREAM_CLOSED', 'File sent')))
      return { channel, offset }
    } catch (err) {
      mapping.kill('file channel failed')
      throw err
    }
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

  /** Every live connection to another peer, with whether it is end-to-end encrypted. */
  sessions (): SessionInfo[] {
    return [...this.mappingsOf.keys()].filter((mux) => !mux.closed).map((mux) => ({
      peerId: mux.remotePeer, secure: mux.secure, initiator: mux.conn.initiator, channelsOpen: mux.list().length, bytesIn: mux.counters.bytesIn, bytesOut: mux.counters.bytesOut
    }))
  }

  /** Every live mapping, both directions. */
  mappings (): Mapping[] {
    return [...this.mappingsOf.values()].flatMap((m) => [...m.values()])
  }

  /** Figures of every connection: bytes each way, datagrams dropped, channels open, what limits refused. */
  stats (): SockAgentStats {
    const udpBindDrops: UdpBindDrops = { sources: 0, away: 0, unknown: 0 }
    for (const state of new Set([...this.binds.values(), ...this.leases.values()])) {
      const d = state.listener.drops?.()
      if (d !== undefined) addDrops(udpBindDrops, d)
    }
    const s = { peers: 0, channelsOpen: 0, mappings: 0, mappingsGranted: this.grantedTotal(), boundPorts: this.boundPorts(), ...this.closedCounters, refused: { ...this.refused }, udpBindDrops, refusedSources: this.refusedSources }
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
    if (!this.closed) {
      this.closed = true
      this.emit('close', undefined)
    }
    this.peer.handle(undefined)
    for (const mapping of this.mappings()) mapping.kill('the peer is stopping', 'E_PEER_SHUTDOWN')
    await Promise.all([...this.mappingsOf.keys()].map(async (mux) => await mux.close()))
    for (const state of this.leases.values()) this.release(state)
  }

  /** Mappings other peers hold here, ports on lease included. */
  private grantedTotal (): number {
    return this.mappings().filter((m) => !m.local).length + this.leases.size
  }

  /** Ports listened on for other peers: bind mappings granted (each binds at most one) and leases. */
  private boundPorts (): number {
    return this.mappings().filter((m) => !m.local && m.offer.kind === 'bind').length + this.leases.size
  }

  private channelsOpen (): number {
    let n = 0
    for (const mux of this.mappingsOf.keys()) n += mux.list().length
    return n
  }

  /** Count a refusal by a limit and tell it; returns the error to throw. */
  private limited (peerId: string, code: ErrorCode, what: string, message: string): StarsockError {
    this.refused[code] = (this.refused[code] ?? 0) + 1
    this.logger.warn({ peer: peerId, code, what }, 'refused by a limit')
    this.emit('limit', { peerId, code, what, message })
    return new StarsockError(code, message)
  }

  /** The limit an offer from `peerId` would break now, if any (checked before and after a person answers). */
  private overLimit (peerId: string, offer: Offer, secure: boolean): StarsockError | undefined {
    // A bind that may take back a lease of its own is not counted twice: it adds nothing while the
    // lease is there (`bindNow` checks again if it binds afresh after all).
    const reclaim = offer.kind === 'bind' && this.ownLease(peerId, offer, secure) ? 1 : 0
    return this.overTotals(peerId, secure, offer, -reclaim) ?? this.overFileLimit(peerId, secure, offer)
  }

  /**
   * The limit `offer` breaks with the counts as they are plus `extra` (0 before a grant, -1 for a
   * lease it takes back; after a grant the mapping is counted already, so 1 must still fit: -1).
   */
  private overTotals (peerId: string, secure: boolean, offer: Offer, extra: number): StarsockError | undefined {
    // Ports held on lease count too: a peer cannot pile them up by dropping and redialing.
    // Grants waiting for their ACK count too: they may all hold a moment later.
    const budget = budgetOf(peerId, secure)
    const pending = [...this.pendingGrants]
    const held = this.mappings().filter((m) => !m.local && budgetOf(m.peerId, m.secure) === budget).length + [...this.leases.values()].filter((l) => budgetOf(l.peerId, l.secure) === budget).length +
      pending.filter((g) => budgetOf(g.peerId, g.secure) === budget).length + extra
    if (held >= this.maxMappingsPerPeer) return this.limited(peerId, 'E_LIMIT_MAPPINGS', 'peer-mappings', `Peer ${peerId} already holds ${held} mappings here (at most ${this.maxMappingsPerPeer} per peer)`)
    const total = this.grantedTotal() + pending.length + extra
    if (total >= this.maxMappingsTotal) return this.limited(peerId, 'E_LIMIT_TOTAL', 'mappings', `This peer runs ${total} mappings for other peers, its total for all peers together (maxMappingsTotal ${this.maxMappingsTotal}); try later`)
    if (offer.kind === 'bind') {
      const ports = this.boundPorts() + pending.filter((g) => g.offer.kind === 'bind').length + extra
      if (ports >= this.maxBoundPortsTotal) return this.limited(peerId, 'E_LIMIT_TOTAL', 'ports', `This peer listens on ${ports} ports for other peers, its total for all peers together (maxBoundPortsTotal ${this.maxBoundPortsTotal}); try later`)
    }
    return undefined
  }

  /** Whether `peerId` holds a lease a bind `offer` of it may take back (same proto and host; same port unless it asks for 0; a verified lease only over a secure connection). */
  private ownLease (peerId: string, offer: Offer, secure: boolean): boolean {
    const prefix = `${peerId}|${offer.proto}|${offer.host}|`
    for (const [key, state] of this.leases) {
      if (state.secure && !secure) continue
      if (key === prefix + String(offer.port) || (offer.port === 0 && key.startsWith(prefix))) return true
    }
    return false
  }

  /** The file limits an offer from `peerId` would break now, if any. */
  private overFileLimit (peerId: string, secure: boolean, offer: Offer): StarsockError | undefined {
    if (offer.kind === 'file' && this.files !== undefined) {
      const size = offer.size ?? 0
      const charge = Math.max(size, FILE_QUOTA_MIN_CHARGE_BYTES)
      const { maxFileBytes, quotaBytesPerPeer, quotaBytesTotal, quotaWindowMs } = this.files
      if (size > maxFileBytes) return this.limited(peerId, 'E_LIMIT_FILE_SIZE', 'file-size', `${formatSize(size)} is over the ${formatSize(maxFileBytes)} this peer takes in one file`)
      const { mine, all } = (this.fileQuota as FileQuota).used(budgetOf(peerId, secure))
      const minutes = Math.round(quotaWindowMs / 60_000)
      if (mine + charge > quotaBytesPerPeer) return this.limited(peerId, 'E_LIMIT_FILE_QUOTA', 'file-quota', `Peer ${peerId} was granted ${formatSize(mine)} of files in the last ${minutes} min; ${formatSize(size)} more is over its quota of ${formatSize(quotaBytesPerPeer)}`)
      if (all + charge > quotaBytesTotal) return this.limited(peerId, 'E_LIMIT_FILE_QUOTA', 'file-quota', `This peer took ${formatSize(all)} of files from all peers in the last ${minutes} min; ${formatSize(size)} more is over its total quota of ${formatSize(quotaBytesTotal)}`)
    }
    return undefined
  }

  private async ask (peerId: string, what: Omit<Offer, 'proto' | 'name'>, request: { proto?: SockProto, name?: string, signal?: AbortSignal, timeoutMs?: number, onAsking?: (info: { timeoutMs: number }) => void }): Promise<Mapping> {
    const proto = request.proto ?? 'tcp'
    if (proto !== 'tcp' && proto !== 'udp') throw new TypeError('proto must be tcp or udp')
    const name = (request.name ?? '').replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, '_').slice(0, 200)
    const offer: Offer = { ...what, proto, name }
    const mux = await this.session(peerId, { signal: request.signal, timeoutMs: request.timeoutMs })
    const hello = await mux.ready
    // What an older peer would not enforce is never offered to it: it would grant it without.
    if (offer.service !== undefined && !understandsOffer(hello, 'service')) throw new StarsockError('E_UNSUPPORTED', `${peerId} does not take service offers (an older starsock?)`)
    if (offer.allowFrom !== undefined && !hasFeature(hello, 'allow-from')) throw new StarsockError('E_UNSUPPORTED', `${peerId} cannot limit the sources of a bind (allowFrom): an older starsock?`)
    const id = await mux.offer(offer, { signal: request.signal, timeoutMs: request.timeoutMs, onAsking: request.onAsking })
    return this.track(mux, id, offer, true)
  }

  private track (mux: Muxer, id: number, offer: Offer, local: boolean, init?: (mapping: Mapping) => void): Mapping {
    const mapping = new Mapping(id, offer, mux.remotePeer, local, mux, (m, err) => this.ended(m, err))
    init?.(mapping)
    const table = this.mappingsOf.get(mux)
    if (table === undefined || mux.closed) {
      mapping.end(new StarsockError('E_DISCONNECTED', 'Connection to the peer closed'))
      throw mapping.error as StarsockError
    }
    table.set(id, mapping)
    this.emit('mapping', mapping)
    return mapping
  }

  /**
   * Why `conn` may not run here: plaintext (`secure: false`) while this agent requires end-to-end
   * encryption. Then it is aborted with `E_SECURE_REQUIRED` (the other side sees the code) and told
   * (`refused`); two starsock agents never carry anything in plaintext unless both opted in.
   */
  private refuseIfPlaintext (conn: Connection): StarsockError | undefined {
    if (conn.secure === true || this.insecure) return undefined
    // Short enough to cross whole (an abort's wire string keeps 200 characters); who it was goes in the event.
    const err = new StarsockError('E_SECURE_REQUIRED', `${this.peer.peerId} refused a plaintext connection: ${SECURE_REQUIRED_REASON}`)
    conn.abort(err)
    this.logger.warn({ peer: conn.remotePeer, initiator: conn.initiator }, 'plaintext connection refused')
    this.emit('refused', { peerId: conn.remotePeer, initiator: conn.initiator, error: err })
    return err
  }

  /** Run the multiplexer on a connection (dialed or incoming). */
  private adopt (conn: Connection): Muxer {
    const mux: Muxer = new Muxer(conn, {
      onOpen: async (channel, body) => await this.incomingOpen(mux, channel, body),
      onOffer: async (id, offer, signal, asking) => await this.incomingOffer(mux, id, offer, signal, asking),
      onKill: (id, err) => this.mappingsOf.get(mux)?.get(id)?.end(err),
      mappingInUse: (id) => this.mappingsOf.get(mux)?.has(id) === true
    }, { ...this.options.mux, logger: this.options.logger })
    this.mappingsOf.set(mux, new Map())
    // A plaintext connection claims its id on the server's word only: it never takes the place of
    // a live connection whose peer proved that id.
    const live = this.byPeer.get(conn.remotePeer)
    if (conn.secure === true || live === undefined || live.closed || !live.secure) this.byPeer.set(conn.remotePeer, mux)
    mux.on('close', (err) => {
      for (const mapping of this.mappingsOf.get(mux)?.values() ?? []) mapping.end(err)
      this.mappingsOf.delete(mux)
      this.closedCounters.bytesIn += mux.counters.bytesIn
      this.closedCounters.bytesOut += mux.counters.bytesOut
      this.closedCounters.droppedDatagrams += mux.counters.droppedDatagrams
      if (this.byPeer.get(mux.remotePeer) === mux) this.byPeer.delete(mux.remotePeer)
    })
    mux.ready.then(() => this.emit('session', mux), () => {})
    return mux
  }

  /** The service an offer names (a service offer, or an accept for a service), checked against what this side offers; throws `E_DENIED`. */
  private serviceOf (offer: Offer): ({ name: string } & ServiceTarget) | undefined {
    if (offer.service === undefined) return undefined
    const target = this.serviceTargets.get(offer.service)
    if (target === undefined) throw new StarsockError('E_DENIED', `This peer offers no service named "${offer.service}"`)
    if (target.proto !== offer.proto) throw new StarsockError('E_DENIED', `Service ${offer.service} is ${target.proto}, not ${offer.proto}`)
    return { name: offer.service, to: { ...target.to }, proto: target.proto }
  }

  /**
   * Decide an offer from `mux`'s peer: by a rule, a remembered answer or a person. Settles with
   * what to do once the grant holds (the requester's ACK: then the mapping exists, counts and
   * may carry channels) or never will (withdrawn); rejects to deny.
   */
  private async incomingOffer (mux: Muxer, id: number, offer: Offer, signal: AbortSignal, asking: (info: { timeoutMs: number }) => void): Promise<OfferGrant> {
    const peerId = mux.remotePeer
    // What the requester may read back: never the target of a service (this side's business).
    const wireText = describeOffer(offer)
    const request: OfferRequest = { peerId, secure: mux.secure, offer, text: wireText }
    const decide = (allowed: boolean, by: OfferDecision['by'], extra: Partial<OfferDecision> = {}): void => {
      this.emit('offer', { ...request, allowed, by, ...extra })
      this.logger.info({ peer: peerId, offer: request.text, allowed, by }, 'offer decided')
    }
    const deny = (code: ErrorCode, reason: string): never => {
      decide(false, 'none', { reason, code })
      throw new StarsockError(code, reason)
    }
    const checkLimits = (): void => {
      const over = this.overLimit(peerId, offer, mux.secure)
      if (over !== undefined) deny(over.code, over.message)
    }
    const host = this.options.host
    if (this.closed) deny('E_DENIED', 'This peer is closing')
    if (offer.kind === 'file' && this.files === undefined) deny('E_UNSUPPORTED', 'This peer takes no files')
    if (offer.kind === 'accept' && offer.service === undefined && this.options.onAccept === undefined) deny('E_UNSUPPORTED', 'This peer takes no accept channels (offer an accept for one of its services, or ask it to bind)')
    const needsSockets = offer.kind === 'connect' || offer.kind === 'bind' || offer.service !== undefined
    if (needsSockets && host === undefined) deny('E_UNSUPPORTED', `This peer cannot ${offer.service !== undefined ? 'run services' : offer.kind}: it has no sockets (a browser?)`)
    let service: ({ name: string } & ServiceTarget) | undefined
    try {
      service = this.serviceOf(offer)
    } catch (err) {
      deny('E_DENIED', (err as StarsockError).message)
    }
    if (service !== undefined) {
      request.service = service
      request.text += ` -> ${formatAddress(service.to)}`
    }
    let filter: SourceFilter | undefined
    if (offer.allowFrom !== undefined) {
      if (host?.allowFrom === undefined) deny('E_UNSUPPORTED', 'This peer cannot limit the sources of a bind (allowFrom)')
      try {
        filter = (host as SockHost & { allowFrom: NonNullable<SockHost['allowFrom']> }).allowFrom(offer.allowFrom)
      } catch (err) {
        deny('E_DENIED', err instanceof Error ? err.message : String(err))
      }
    }
    if (this.mappingsOf.get(mux)?.has(id) === true) throw new StarsockError('E_CHANNEL_PROTOCOL', `Mapping id ${id} is in use`)
    checkLimits()
    const key = rememberKey(peerId, offer, service)
    // On a plaintext connection the id is the server's word: rules naming a peer do not match, and
    // only answers given on this very connection are remembered. An accept for a service is
    // granted as that service would be; a plain accept by an `accept` rule (what a page's "always" adds).
    const ruleOffer: Offer = offer.kind === 'accept' && service !== undefined ? { ...offer, kind: 'service' } : offer
    const rule = matchRule(mux.secure ? this.ruleList : this.ruleList.filter((r) => r.peerId === undefined), ruleOffer, peerId)
    const remembered = this.rememberedFor(mux)
    let by: OfferDecision['by']
    if (rule !== undefined) {
      by = 'rule'
      decide(true, by, { rule: rule.text })
    } else if (offer.kind !== 'file' && remembered.has(key)) {
      by = 'remembered'
      decide(true, by)
    } else if (this.options.ask !== undefined && this.options.askable?.() === false) {
      by = 'none'
      decide(false, by, { reason: 'nobody to ask', code: 'E_DENIED' })
      throw new StarsockError('E_DENIED', `Nobody is there to ask about ${wireText}, and no rule allows it`)
    } else if (this.options.ask !== undefined) {
      asking({ timeoutMs: this.askTimeoutMs }) // the requester may say it waits for a person
      const answer = await this.askPerson(request, signal)
      // A KILL that came with the answer: nothing is decided, remembered or added.
      if (answer === 'withdrawn' || signal.aborted) throw new StarsockError('E_KILLED', 'The requester gave up on the offer')
      const yes = answer === 'yes' || answer === 'always'
      if (yes && service !== undefined) {
        // The services may have changed while the person thought: grant only what was asked about.
        let now: ({ name: string } & ServiceTarget) | undefined
        try {
          now = this.serviceOf(offer)
        } catch {}
        if (now === undefined) deny('E_DENIED', `Service ${service.name} was removed while a person was asked`)
        else if (now.proto !== service.proto || now.to.ip !== service.to.ip || now.to.port !== service.to.port) deny('E_DENIED', `Service ${service.name} changed while a person was asked; ask again`)
      }
      // Others may have been granted while the person thought: the totals hold all the same.
      if (yes) checkLimits()
      const unanswered = answer === 'timeout' ? 'no answer in time' : answer === 'nobody' ? 'nobody to ask' : undefined
      by = unanswered !== undefined ? 'none' : 'person'
      decide(yes, by, unanswered !== undefined ? { reason: unanswered, code: 'E_DENIED' } : yes ? {} : { code: 'E_DENIED' })
      if (!yes) throw new StarsockError('E_DENIED', answer === 'timeout' ? `Nobody answered about ${wireText} in time` : answer === 'nobody' ? `Nobody is there to ask about ${wireText}, and no rule allows it` : `Peer denied ${wireText}`)
      // The same offer again is not asked twice: on any secure connection (after a reconnect too),
      // on a plaintext one only on that very connection (`rememberedFor`); each file is asked.
      if (offer.kind !== 'file') remembered.add(key)
      if (answer === 'always') this.addRuleFor(offer, peerId, mux.secure)
    } else {
      by = deny('E_DENIED', `No rule allows ${wireText}`)
    }
    if (signal.aborted) throw new StarsockError('E_KILLED', 'The requester gave up on the offer')
    const offset = offer.kind === 'file' ? await this.fileResumeOffset(request) : 0
    if (signal.aborted) throw new StarsockError('E_KILLED', 'The requester gave up on the offer')
    const pending: PendingGrant = { peerId, secure: mux.secure, offer }
    this.pendingGrants.add(pending)
    return {
      ...(offset > 0 ? { reply: { offset } } : {}),
      commit: () => {
        this.pendingGrants.delete(pending)
        let mapping: Mapping
        try {
          mapping = this.track(mux, id, offer, false, (m) => {
            m.target = service
            m.sourceFilter = filter
            m.fileOffset = offset
          })
        } catch {
          return // the connection closed meanwhile
        }
        if (offer.kind === 'file') this.chargeFile(mapping)
      },
      cancel: (err) => {
        this.pendingGrants.delete(pending)
        const reason = err.code === 'E_TIMEOUT'
          ? 'the requester sent no ACK of the grant in time'
          : err.code === 'E_KILLED' ? 'the requester gave up before the grant reached it' : `the connection ended before the requester took the grant (${err.code})`
        this.logger.info({ peer: peerId, offer: request.text }, 'grant withdrawn')
        this.emit('offer', { ...request, allowed: false, by, reason, code: err.code, withdrawn: true })
      }
    }
  }

  /**
   * Where a granted file starts: the receiver's `resumeOffset` for a verified sender that named
   * the file's sha256 (an older sender names none, and sends from 0); 0 for anything else, or
   * for an answer that is not an integer from 0 to the size.
   */
  private async fileResumeOffset (request: OfferRequest): Promise<number> {
    const hook = this.files?.resumeOffset
    if (hook === undefined || !request.secure || request.offer.sha256 === undefined) return 0
    let offset: number
    try {
      offset = await hook(request)
    } catch (err) {
      this.logger.warn({ peer: request.peerId, err: err instanceof Error ? err.message : String(err) }, 'resumeOffset failed; the file starts at 0')
      return 0
    }
    return Number.isSafeInteger(offset) && offset >= 0 && offset <= (request.offer.size ?? 0) ? offset : 0
  }

  /** A file mapping granted: charge the quota, and kill it if its channel does not come. */
  private chargeFile (mapping: Mapping): void {
    const { offer } = mapping
    // Charged the bytes still to come (a resumed file sends only the rest) while they may come;
    // once over, what arrived (at least the minimum charge), so offers that send nothing do not
    // lock files out for everyone for the whole window.
    const quota = this.fileQuota as FileQuota
    const charge = quota.charge(budgetOf(mapping.peerId, mapping.secure), Math.max((offer.size ?? 0) - mapping.fileOffset, FILE_QUOTA_MIN_CHARGE_BYTES))
    // A granted file that never comes must not hold its place under the limits.
    const timer = setTimeout(() => { if (mapping.stats().channelsTotal === 0) mapping.kill('no file channel in time') }, FILE_CHANNEL_TIMEOUT_MS)
    timer.unref?.()
    mapping.on('close', () => {
      clearTimeout(timer)
      quota.settle(charge, Math.max(mapping.stats().bytesIn, FILE_QUOTA_MIN_CHARGE_BYTES))
    })
  }

  /** An `'always'` answer: on a secure connection, a rule for this offer from this peer (told by `rule`); on a plaintext one, nothing more than a yes. */
  private addRuleFor (offer: Offer, peerId: string, secure: boolean): void {
    if (!secure) return
    const text = ruleForOffer(offer, peerId)
    if (text === undefined || this.ruleList.some((r) => r.text === text)) return
    let rule: SockRule
    try {
      rule = parseRule(text)
    } catch {
      return // a host no rule can name
    }
    this.ruleList.push(rule)
    this.logger.info({ peer: peerId, rule: text }, 'rule added (always)')
    this.emit('rule', { rule, peerId })
  }

  /** The answers a person gave that hold on `mux`: every secure connection shares them; a plaintext one has its own. */
  private rememberedFor (mux: Muxer): Set<string> {
    if (mux.secure) return this.remembered
    let own = this.rememberedOn.get(mux)
    if (own === undefined) {
      own = new Set()
      this.rememberedOn.set(mux, own)
    }
    return own
  }

  /** Ask the person: `yes`, `always`, `no`, `timeout` (no answer in time) or `withdrawn` (the requester gave up). */
  private async askPerson (request: OfferRequest, gaveUp: AbortSignal): Promise<'yes' | 'always' | 'no' | 'nobody' | 'timeout' | 'withdrawn'> {
    const ac = new AbortController()
    const timer = setTimeout(() => ac.abort('timeout'), this.askTimeoutMs)
    gaveUp.addEventListener('abort', () => ac.abort('withdrawn'), { once: true })
    try {
      const allowed: OfferAnswer = await Promise.race([
        Promise.resolve((this.options.ask as NonNullable<SockAgentOptions['ask']>)(request, ac.signal)),
        new Promise<false>((resolve) => ac.signal.addEventListener('abort', () => resolve(false), { once: true }))
      ])
      if (ac.signal.aborted) return ac.signal.reason === 'withdrawn' ? 'withdrawn' : 'timeout'
      return allowed === 'always' ? 'always' : allowed === 'nobody' ? 'nobody' : allowed === true ? 'yes' : 'no'
    } catch {
      return 'no'
    } finally {
      clearTimeout(timer)
      ac.abort()
    }
  }

  private async incomingOpen (mux: Muxer, channel: Channel, body: Uint8Array): Promise<Reply | undefined> {
    const { header } = channel
    // The new channel is in its connection's list already.
    const open = this.channelsOpen()
    if (open > this.maxChannelsTotal) throw this.limited(mux.remotePeer, 'E_LIMIT_TOTAL', 'channels', `This peer has ${open - 1} channels open with all peers together (maxChannelsTotal ${this.maxChannelsTotal}); try later`)
    if (header.type === 'file' && this.files !== undefined) return this.incomingFile(mux, channel)
    if (header.type !== 'sock') {
      if (this.options.onChannel === undefined) throw new StarsockError('E_UNSUPPORTED', `This peer takes no ${header.type} channels`)
      return await this.options.onChannel(channel, body, mux)
    }
    const mapping = header.mapping === undefined ? undefined : this.mappingsOf.get(mux)?.get(header.mapping)
    if (mapping === undefined || mapping.closed) throw new StarsockError('E_NO_MAPPING', `Channel names no granted mapping (${String(header.mapping)})`)
    const { offer } = mapping
    if (header.reliable !== (offer.proto === 'tcp')) throw new StarsockError('E_NO_MAPPING', `Mapping ${mapping.label} is ${offer.proto}`)
    const host = this.options.host
    switch (header.sock) {
      case 'connect': {
        if (!mapping.local && offer.kind === 'service') {
          // The requester names no destination: this side connects to the target it granted.
          const target = mapping.target
          if (target === undefined || host === undefined) throw new StarsockError('E_UNSUPPORTED', 'This peer has no sockets')
          await this.connectServiceTarget(host, channel, offer.service ?? '?', target)
          mapping.add(channel)
          return undefined
        }
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
        if (!mapping.local && mapping.target !== undefined) {
          // An accept for a service: each connection goes to the service's target, picked here.
          if (host === undefined) throw new StarsockError('E_UNSUPPORTED', 'This peer has no sockets')
          await this.connectServiceTarget(host, channel, offer.service ?? '?', mapping.target)
          mapping.add(channel)
          return undefined
        }
        const onAccept = this.options.onAccept
        const handler = mapping.acceptHandler ?? (mapping.local || onAccept === undefined ? undefined : (c: Channel) => onAccept(c, mapping))
        if (handler === undefined) throw new StarsockError('E_UNSUPPORTED', `Nothing takes accept channels of ${mapping.label} here`)
        mapping.add(channel)
        handler(channel)
        return undefined
      }
      default: throw new StarsockError('E_CHANNEL_PROTOCOL', 'sock channel without a kind')
    }
  }

  /**
   * Connect a channel of a service mapping to the service's target. A failure keeps its code but
   * not its words, which name the target: the requester is told the service failed, not where it points.
   */
  private async connectServiceTarget (host: SockHost, channel: Channel, name: string, target: ServiceTarget): Promise<void> {
    try {
      await host.connect(channel, target.to, target.proto)
    } catch (err) {
      const code: ErrorCode = err instanceof StarsockError ? err.code : 'E_CONNECT_UNREACHABLE'
      this.logger.info({ service: name, target: `${target.to.ip}:${target.to.port}`, code, err: err instanceof Error ? err.message : String(err) }, 'service target failed')
      throw new StarsockError(code, `Service ${name} failed: ${ERROR_CODES[code]}`)
    }
  }

  /** A `file` channel: only under a granted file offer, one channel per offer; the mapping ends with it. */
  private incomingFile (mux: Muxer, channel: Channel): undefined {
    const id = channel.header.mapping
    if (id === undefined) throw new StarsockError('E_DENIED', 'A file needs a file offer first (is the sender\'s starsock older than this peer\'s?)')
    const mapping = this.mappingsOf.get(mux)?.get(id)
    if (mapping === undefined || mapping.closed || mapping.local || mapping.offer.kind !== 'file') throw new StarsockError('E_NO_MAPPING', `Channel names no granted file offer (${id})`)
    if (mapping.stats().channelsTotal > 0) throw new StarsockError('E_NO_MAPPING', `File offer ${id} was used already`)
    mapping.add(channel)
    void channel.whenClosed.then(() => mapping.end(channel.error ?? new StarsockError('E_STREAM_CLOSED', 'File received')))
    ;(this.files as Required<FileReceiverOptions>).onFile(channel, mapping)
    return undefined
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
    // A port leased to a peer that proved its id is not handed to a plaintext connection that only claims it.
    if (state !== undefined && state.secure && !mapping.mux.secure) {
      if (dst.port !== 0) throw new StarsockError('E_BIND_FAILED', `Port ${dst.port} is on lease to ${mapping.peerId} as verified on an end-to-end encrypted connection; a plaintext connection cannot take it back`)
      state = undefined // port 0 with a lease hint: a fresh port
    }
    if (state !== undefined) {
      clearTimeout(state.lease)
      this.leases.delete(state.key)
      this.logger.info({ peer: mapping.peerId, port: state.listener.address.port }, 'bind lease taken back')
      this.emit('lease', { peerId: mapping.peerId, port: state.listener.address.port, state: 'taken' })
    } else {
      // Granted as taking back a lease that is not there (expired, or another port): the totals
      // must hold with this port added.
      const over = this.overTotals(mapping.peerId, mapping.secure, offer, -1)
      if (over !== undefined) throw over
      const fresh: BindState = { key: '', peerId: mapping.peerId, secure: mapping.mux.secure, listener: undefined as unknown as HostListener, owner: undefined }
      fresh.listener = await host.bind(offer.proto, dst.ip, dst.port, {
        admit: (src, proto) => this.admitSource(fresh, src, proto),
        openAccept: async (src) => {
          const owner = fresh.owner
          if (owner === undefined || owner.closed) throw new StarsockError('E_DISCONNECTED', 'The binder is away (its lease is running)')
          const open = this.channelsOpen()
          if (open >= this.maxChannelsTotal) throw this.limited(owner.peerId, 'E_LIMIT_TOTAL', 'channels', `This peer has ${open} channels open with all peers together (maxChannelsTotal ${this.maxChannelsTotal})`)
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
    state.lastOwner = mapping
    state.secure = mapping.mux.secure
    this.binds.set(mapping, state)
    mapping.bound = state.listener.address
    mapping.addresses = state.listener.addresses
    mapping.bindChannel = channel
    if (offer.proto === 'udp') state.listener.attach(channel)
    void channel.whenClosed.then(() => mapping.end(new StarsockError('E_STREAM_CLOSED', 'Bind channel closed')))
    return state.listener.addresses === undefined ? { bound: state.listener.address } : { bound: state.listener.address, addresses: state.listener.addresses }
  }

  /**
   * Whether a client or datagram from `src` may use the port of `state`: its owner's `allowFrom`
   * (none: anyone). Every refusal is counted; the telling (event and log line) is rate-limited per
   * mapping (`REFUSED_TELL_PER_SECOND`, bursts of `REFUSED_TELL_BURST`), and a UDP source is told
   * at most once (of the first `REFUSED_TOLD_SOURCES` sources), so a flood from spoofed sources is
   * counted in full, not told a thousand times. What was not told is summed up in the next one
   * told (`untold`) and in a log line a second after a flood.
   */
  private admitSource (state: BindState, src: SockAddress, proto: SockProto): boolean {
    // While the port is on lease, its last binder's list still holds.
    const owner = state.owner ?? state.lastOwner
    const filter = owner?.sourceFilter
    if (owner === undefined || filter === undefined || filter.allows(src.ip)) return true
    this.refusedSources++
    let telling = this.telling.get(owner)
    const now = Date.now()
    if (telling === undefined) {
      telling = { tokens: REFUSED_TELL_BURST, at: now, untold: 0, sources: new Set() }
      this.telling.set(owner, telling)
    }
    telling.tokens = Math.min(REFUSED_TELL_BURST, telling.tokens + Math.max(0, now - telling.at) * REFUSED_TELL_PER_SECOND / 1000) // a clock set back adds nothing
    telling.at = now
    // A UDP source already told is not told again (it is counted all the same).
    if (proto === 'udp' && telling.sources.has(src.ip)) return false
    if (telling.tokens < 1) {
      telling.untold++
      this.summarizeLater(owner, telling)
      return false
    }
    telling.tokens--
    if (proto === 'udp' && telling.sources.size < REFUSED_TOLD_SOURCES) telling.sources.add(src.ip)
    const untold = telling.untold
    telling.untold = 0
    this.logger.info({ peer: owner.peerId, mapping: owner.id, src: src.ip, ...(untold > 0 ? { untold } : {}) }, 'source refused (allowFrom)')
    this.emit('refused-source', { peerId: owner.peerId, mapping: owner, src, ...(untold > 0 ? { untold } : {}) })
    return false
  }

  /** A second after refusals went untold, log how many (if none was told meanwhile). */
  private summarizeLater (owner: Mapping, telling: RefusalTelling): void {
    if (telling.summary !== undefined) return
    telling.summary = setTimeout(() => {
      telling.summary = undefined
      if (telling.untold === 0) return
      this.logger.info({ peer: owner.peerId, mapping: owner.id, untold: telling.untold }, 'sources refused (allowFrom), not told one by one')
      telling.untold = 0
    }, 1000)
    telling.summary.unref?.()
  }

  /** A mapping ended: forget it; a bind keeps its port on lease unless it was killed. */
  private ended (mapping: Mapping, err: StarsockError): void {
    this.mappingsOf.get(mapping.mux)?.delete(mapping.id)
    if (err.code === 'E_KILLED') this.rememberedFor(mapping.mux).delete(rememberKey(mapping.peerId, mapping.offer, mapping.target))
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
