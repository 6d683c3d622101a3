/**
 * UDP relay allocations: two UDP ports per allocation; the endpoint that registers on each port
 * gets every later payload from the other port's endpoint, unchanged, both ways. Safe by default:
 * in `token` mode an endpoint registers with the handshake of `shared/udp-relay-protocol.ts` (the
 * port's token, then the relay's cookie XOR the token), which proves it receives at its source
 * address and is no mere echo, so neither a forged source nor an echo service turns the relay into
 * a reflector or a loop; a completed handshake from a new source takes the port over. In `address` mode (a named
 * source IP) and `open` mode (any source, as in Impervious's original; trusted networks only) the
 * first packet registers, but the relay sends such an endpoint only a few datagrams until it has
 * done the handshake. Sources that are the relay's own ports never register (no loops). Packets
 * from anyone else are dropped and counted. Allocations expire when idle and at a hard lifetime,
 * can be refreshed and released, end a grace period after their owner left, and have byte and
 * packet-rate quotas; per-peer and per-IP caps bound what one party holds.
 */
import { createHmac, randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { isIP } from 'node:net'
import { networkInterfaces } from 'node:os'
import { UDP_CHALLENGES_PER_SECOND, UDP_COOKIE_BYTES, UDP_TOKEN_BYTES, UDP_UNVERIFIED_BUDGET_DATAGRAMS, udpConfirmation, udpProof } from '../shared/udp-relay-protocol.ts'
import { UDP_OWNER_GRACE_MS } from './constants.ts'
import { StarsockError } from '../shared/errors.ts'
import { checkUdpAllocate, type UdpAllocateRequest } from '../shared/validate.ts'
import type { UdpAllocation } from '../shared/events.ts'
import type { Logger } from '../shared/logger.ts'
import { ipLimitKey, TokenBucket } from './rate-limit.ts'

/** How an endpoint registers on its port. */
export type UdpRelayMode = UdpAllocation['mode']

/** Why a packet was dropped (a metrics label). */
export type UdpDropCause = 'unregistered' | 'bad_token' | 'address_not_allowed' | 'foreign' | 'no_peer' | 'quota_bytes' | 'quota_rate' | 'too_large' | 'unverified' | 'loop' | 'challenge_rate' | 'reflected' | 'send_error'

/** Why an allocation ended (a metrics label). */
export type UdpEndCause = 'released' | 'idle' | 'lifetime' | 'owner_left' | 'closed'

/** Options of the relay. */
export interface UdpRelayOptions {
  /** Inclusive port range the allocations' ports come from. */
  ports: [number, number]
  /** Address the sockets bind to. */
  bindHost: string
  /** Address given to peers in allocations. */
  publicIp: string
  /** Allocations one peer may hold. */
  maxAllocationsPerPeer: number
  /** Allocations the peers of one client IP may hold together. @default Infinity */
  maxAllocationsPerIp?: number
  /** Allocations of an owner that left end this long after, unless it comes back. @default UDP_OWNER_GRACE_MS (30 s) */
  ownerGraceMs?: number
  /** Other ports of this server (its TCP port): a source with one of them on a local address never registers. */
  ownPorts?: readonly number[]
  /** An allocation without a forwarded packet or a completed handshake this long expires (tokens alone do not count). */
  idleMs: number
  /** An allocation expires this long after it was made or last refreshed. */
  lifetimeMs: number
  /** Bytes one allocation may forward in all. */
  maxBytes: number
  /** Packets per second one allocation may forward (bursts of twice this). */
  maxPacketsPerSecond: number
  logger: Logger
  /** Counts for metrics. */
  observer?: UdpRelayObserver
}

/** What the relay reports to metrics. */
export interface UdpRelayObserver {
  forwarded: (bytes: number) => void
  dropped: (cause: UdpDropCause) => void
  /** An allocation ended. */
  ended?: (cause: UdpEndCause) => void
}

/** What a peer gets for an allocation. */
export type AllocationInfo = UdpAllocation

interface Side {
  socket: dgram.Socket
  port: number
  token: Buffer
  endpoint: { address: string, port: number } | undefined
  /** The endpoint proved it receives at its address (the handshake). */
  verified: boolean
  /** Datagrams sent to it while not verified. */
  unverifiedSent: number
  /** Cookies this port may still answer. */
  challenges: TokenBucket
}

interface Allocation {
  info: AllocationInfo
  owner: string
  /** Per-IP key (`ipLimitKey`) of the owner's client IP when it asked (for the per-IP cap). */
  ip: string
  sides: [Side, Side]
  allowed: Set<string>
  bytes: number
  bucket: TokenBucket
  lastActivity: number
  hardExpiry: number
}

/** Largest UDP payload forwarded. */
const MAX_PAYLOAD_BYTES = 65_507

/** The relay. Make one per server when it is enabled. */
export class UdpRelay {
  private readonly allocations = new Map<string, Allocation>()
  /** The allocations of each owner. */
  private readonly byOwner = new Map<string, Set<Allocation>>()
  /** Allocations held per client IP key. */
  private readonly perIp = new Map<string, number>()
  private readonly usedPorts = new Set<number>()
  /** Allocations under way, per owner: they count against the limit before they exist. */
  private readonly pending = new Map<string, number>()
  /** The same, per client IP. */
  private readonly pendingIp = new Map<string, number>()
  /** Owners that left, with the timer that ends their allocations. */
  private readonly leaving = new Map<string, ReturnType<typeof setTimeout>>()
  /** Key of the cookies (HMAC), new for each relay. */
  private readonly secret = randomBytes(32)
  private readonly ownPorts: Set<number>
  private localAddresses: Set<string>
  private closed = false
  private readonly sweep: ReturnType<typeof setInterval>
  private nextPort: number

  constructor (private readonly options: UdpRelayOptions) {
    const [low, high] = options.ports
    if (!Number.isInteger(low) || !Number.isInteger(high) || low < 1 || high > 65535 || high - low < 1) throw new RangeError('UDP relay ports must be a range of at least two ports within 1-65535')
    const perIp = options.maxAllocationsPerIp
    if (perIp !== undefined && perIp !== Infinity && !(Number.isInteger(perIp) && perIp >= 1)) throw new RangeError(`maxAllocationsPerIp must be an integer of at least 1 or Infinity, got ${String(perIp)}`)
    const grace = options.ownerGraceMs
    if (grace !== undefined && !(Number.isInteger(grace) && grace >= 0)) throw new RangeError(`ownerGraceMs must be an integer number of milliseconds of at least 0, got ${String(grace)}`)
    this.nextPort = low
    this.ownPorts = new Set(options.ownPorts ?? [])
    this.localAddresses = localAddresses(options)
    this.sweep = setInterval(() => this.expire(), Math.min(1000, options.idleMs))
    this.sweep.unref()
  }

  /** Allocations held now. */
  get size (): number {
    return this.allocations.size
  }

  /** Endpoints registered now. */
  get endpoints (): number {
    let n = 0
    for (const a of this.allocations.values()) for (const s of a.sides) if (s.endpoint !== undefined) n++
    return n
  }

  /** Make an allocation for `owner` (a peer id) asking from client IP `ip`; rejects with a limit or a port error. */
  async allocate (owner: string, request: Partial<UdpAllocateRequest> = {}, ip = ''): Promise<AllocationInfo> {
    const { mode, addresses } = checkIpAddresses(checkUdpAllocate([request]))
    if (this.closed) throw new StarsockError('E_SHUTDOWN', 'UDP relay is closed')
    const held = (this.byOwner.get(owner)?.size ?? 0) + (this.pending.get(owner) ?? 0)
    if (held >= this.options.maxAllocationsPerPeer) throw new StarsockError('E_LIMIT_ALLOCATIONS', `Peer holds ${held} allocations already (at most ${this.options.maxAllocationsPerPeer})`)
    const key = ipLimitKey(ip) // an IPv6 /64 is one key
    const maxIp = this.options.maxAllocationsPerIp ?? Infinity
    const heldIp = (this.perIp.get(key) ?? 0) + (this.pendingIp.get(key) ?? 0)
    if (heldIp >= maxIp) throw new StarsockError('E_LIMIT_ALLOCATIONS_PER_IP', `Peers from this IP address hold ${heldIp} allocations already (udpMaxAllocationsPerIp=${maxIp})`)
    this.pending.set(owner, (this.pending.get(owner) ?? 0) + 1)
    this.pendingIp.set(key, (this.pendingIp.get(key) ?? 0) + 1)
    let first: { socket: dgram.Socket, port: number } | undefined
    let second: { socket: dgram.Socket, port: number }
    try {
      first = await this.bindFree()
      second = await this.bindFree()
      if (this.closed) {
        this.closeSocket(second)
        throw new StarsockError('E_SHUTDOWN', 'UDP relay is closed')
      }
    } catch (err) {
      if (first !== undefined) this.closeSocket(first)
      throw err
    } finally {
      decrement(this.pending, owner)
      decrement(this.pendingIp, key)
    }
    const now = Date.now()
    const id = randomBytes(8).toString('hex')
    const side = (s: { socket: dgram.Socket, port: number }): Side => ({
      ...s,
      token: randomBytes(UDP_TOKEN_BYTES),
      endpoint: undefined,
      verified: false,
      unverifiedSent: 0,
      challenges: new TokenBucket(UDP_CHALLENGES_PER_SECOND, 2 * UDP_CHALLENGES_PER_SECOND)
    })
    const sides: [Side, Side] = [side(first), side(second)]
    const allocation: Allocation = {
      info: { id, ip: this.options.publicIp, port1: first.port, port2: second.port, token1: sides[0].token.toString('hex'), token2: sides[1].token.toString('hex'), mode, expiresAt: now + this.options.lifetimeMs },
      owner,
      ip: key,
      sides,
      allowed: new Set(addresses.map(normalizeIp)),
      bytes: 0,
      bucket: new TokenBucket(this.options.maxPacketsPerSecond, this.options.maxPacketsPerSecond * 2),
      lastActivity: now,
      hardExpiry: now + this.options.lifetimeMs
    }
    sides.forEach((side, i) => side.socket.on('message', (msg, rinfo) => this.packet(allocation, i as 0 | 1, msg, rinfo)))
    this.allocations.set(id, allocation)
    const mine = this.byOwner.get(owner) ?? new Set()
    this.byOwner.set(owner, mine.add(allocation))
    this.perIp.set(key, (this.perIp.get(key) ?? 0) + 1)
    this.options.logger.info({ id, owner, ports: [first.port, second.port], mode }, 'udp allocation')
    return { ...allocation.info }
  }

  /** Push back the expiry of an allocation `owner` holds; settles with its new info. */
  refresh (owner: string, id: unknown): AllocationInfo {
    const a = this.owned(owner, id)
    const now = Date.now()
    a.hardExpiry = now + this.options.lifetimeMs
    a.lastActivity = now
    a.info.expiresAt = a.hardExpiry
    return { ...a.info }
  }

  /** Release an allocation `owner` holds; its ports are free at once. */
  release (owner: string, id: unknown): void {
    this.free(this.owned(owner, id), 'released')
  }

  /**
   * The owner left (its last socket for that peer id went): its allocations, and those still
   * being made, end after `ownerGraceMs` unless `ownerBack` is called first.
   */
  ownerLeft (owner: string): void {
    if (this.leaving.has(owner) || this.closed) return
    if (!this.holds(owner)) return
    const timer = setTimeout(() => {
      this.leaving.delete(owner)
      for (const a of [...this.byOwner.get(owner) ?? []]) this.free(a, 'owner_left')
    }, this.options.ownerGraceMs ?? UDP_OWNER_GRACE_MS)
    timer.unref?.()
    this.leaving.set(owner, timer)
  }

  /** The owner joined again: it keeps its allocations. */
  ownerBack (owner: string): void {
    const timer = this.leaving.get(owner)
    if (timer === undefined) return
    clearTimeout(timer)
    this.leaving.delete(owner)
  }

  /** Whether `owner` holds an allocation or is getting one. */
  holds (owner: string): boolean {
    return this.pending.has(owner) || this.byOwner.has(owner)
  }

  /** Release everything and stop; settles once the allocations' sockets are closed. */
  async close (): Promise<void> {
    this.closed = true
    clearInterval(this.sweep)
    for (const timer of this.leaving.values()) clearTimeout(timer)
    this.leaving.clear()
    const allocations = [...this.allocations.values()]
    const closed = allocations.flatMap((a) => a.sides.map(async (side) => await new Promise<void>((resolve) => side.socket.once('close', resolve))))
    for (const a of allocations) this.free(a, 'closed')
    await Promise.all(closed)
  }

  private owned (owner: string, id: unknown): Allocation {
    const a = typeof id === 'string' ? this.allocations.get(id) : undefined
    if (a === undefined || a.owner !== owner) throw new StarsockError('E_UDP_NOT_FOUND', 'No such allocation of this peer (expired or released?)')
    return a
  }

  private packet (a: Allocation, i: 0 | 1, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const side = a.sides[i]
    const other = a.sides[i === 0 ? 1 : 0]
    const from = { address: normalizeIp(rinfo.address), port: rinfo.port }
    // A source that is one of our own ports is a forged one: registering it would loop.
    if (this.isOwn(from)) return this.drop('loop')
    // Handshake steps come first, from any source: a completed handshake from a new source takes
    // the port over (a NAT rebinding, a restarted program), whoever held it.
    if (msg.byteLength === UDP_TOKEN_BYTES && this.handshake(a, i, msg, from)) return
    if (side.endpoint === undefined) {
      const mode = a.info.mode
      if (mode === 'token') return this.drop(msg.byteLength === UDP_TOKEN_BYTES ? 'bad_token' : 'unregistered')
      if (mode === 'address' && !a.allowed.has(from.address)) return this.drop('address_not_allowed')
      side.endpoint = from // not verified: it gets only a small budget until it does the handshake
      side.unverifiedSent = 0
    } else if (side.endpoint.address !== from.address || side.endpoint.port !== from.port) {
      return this.drop('foreign') // a first packet never displaces an endpoint; only a handshake does
    }
    if (other.endpoint === undefined) return this.drop('no_peer')
    if (this.isOwn(other.endpoint)) return this.drop('loop') // a port the relay bound after it registered
    if (msg.byteLength > MAX_PAYLOAD_BYTES) return this.drop('too_large')
    if (a.bytes + msg.byteLength > this.options.maxBytes) return this.drop('quota_bytes')
    if (!other.verified && other.unverifiedSent >= UDP_UNVERIFIED_BUDGET_DATAGRAMS) return this.drop('unverified')
    if (!a.bucket.take()) return this.drop('quota_rate')
    if (!other.verified) other.unverifiedSent++
    a.bytes += msg.byteLength
    a.lastActivity = Date.now()
    this.send(other.socket, msg, other.endpoint, () => this.options.observer?.forwarded(msg.byteLength))
  }

  /**
   * Send from one of the relay's sockets. Addresses are kept without `::ffff:` (so a source
   * compares the same either way); an IPv6 socket (bound to `::`) needs it back to reach an IPv4
   * address. A failed send is counted as a drop (`send_error`), a sent one calls `sent`.
   */
  private send (socket: dgram.Socket, msg: Uint8Array, to: { address: string, port: number }, sent?: () => void): void {
    const address = isIP(to.address) === 4 && isIP(this.options.bindHost) === 6 ? `::ffff:${to.address}` : to.address
    try {
      socket.send(msg, to.port, address, (err) => {
        if (err !== null && err !== undefined) this.drop('send_error')
        else sent?.()
      })
    } catch {
      this.drop('send_error') // a socket closed meanwhile
    }
  }

  /**
   * A 16-byte packet that is a step of the handshake (the token, the proof) or one of the relay's
   * own answers coming back (the cookie, the confirmation: an echo service, never an endpoint):
   * handled here, never forwarded. `false` for data that merely has the size.
   */
  private handshake (a: Allocation, i: 0 | 1, msg: Buffer, from: { address: string, port: number }): boolean {
    const side = a.sides[i]
    if (msg.equals(side.token)) {
      this.challenge(a, i, from)
      return true
    }
    const cookie = this.cookie(a, i, from)
    const proof = udpProof(cookie, side.token)
    if (msg.equals(proof)) {
      this.confirm(a, side, from, proof)
      return true
    }
    if (!msg.equals(cookie) && !msg.equals(udpConfirmation(proof))) return false
    this.drop('reflected')
    return true
  }

  /** A token: answer with the cookie for this source (a few per second per port: no flood). */
  private challenge (a: Allocation, i: 0 | 1, from: { address: string, port: number }): void {
    if (a.info.mode === 'address' && !a.allowed.has(from.address)) return this.drop('address_not_allowed')
    if (!a.sides[i].challenges.take()) return this.drop('challenge_rate')
    this.send(a.sides[i].socket, this.cookie(a, i, from), from)
  }

  /**
   * The proof for this source's cookie came back: the source receives at its address and knows
   * the token. It is the port's endpoint from now on (taking over from any other), verified.
   */
  private confirm (a: Allocation, side: Side, from: { address: string, port: number }, proof: Uint8Array): void {
    if (a.info.mode === 'address' && !a.allowed.has(from.address)) return this.drop('address_not_allowed')
    const before = side.endpoint
    if (before !== undefined && (before.address !== from.address || before.port !== from.port)) {
      this.options.logger.debug({ id: a.info.id, port: side.port }, 'udp endpoint moved')
    }
    side.endpoint = from
    side.verified = true
    side.unverifiedSent = 0
    a.lastActivity = Date.now()
    this.send(side.socket, udpConfirmation(proof), from)
  }

  /** The cookie of one source on one port: unguessable without the relay's secret, the same on every ask. */
  private cookie (a: Allocation, i: 0 | 1, from: { address: string, port: number }): Buffer {
    return createHmac('sha256', this.secret).update(`${a.info.id}|${i}|${from.address}|${from.port}`).digest().subarray(0, UDP_COOKIE_BYTES)
  }

  /**
   * Whether an address is one of this relay's bound ports or the server's own, on a local address.
   * Only bound ports: the unbound rest of the range may be a local program's ephemeral port (the
   * default range lies inside Linux's ephemeral range); a port bound later is caught when forwarding.
   */
  private isOwn (from: { address: string, port: number }): boolean {
    if (!this.usedPorts.has(from.port) && !this.ownPorts.has(from.port)) return false
    return isLoopback(from.address) || this.localAddresses.has(from.address)
  }

  private drop (cause: UdpDropCause): void {
    this.options.observer?.dropped(cause)
  }

  private expire (): void {
    const now = Date.now()
    this.localAddresses = localAddresses(this.options) // interfaces may come and go
    for (const a of [...this.allocations.values()]) {
      if (now - a.lastActivity > this.options.idleMs) this.free(a, 'idle')
      else if (now > a.hardExpiry) this.free(a, 'lifetime')
    }
  }

  private free (a: Allocation, why: UdpEndCause): void {
    if (!this.allocations.delete(a.info.id)) return
    const mine = this.byOwner.get(a.owner)
    mine?.delete(a)
    if (mine?.size === 0) this.byOwner.delete(a.owner)
    decrement(this.perIp, a.ip)
    for (const side of a.sides) this.closeSocket(side)
    this.options.observer?.ended?.(why)
    this.options.logger.info({ id: a.info.id, owner: a.owner, why, bytes: a.bytes }, 'udp allocation ended')
  }

  private closeSocket (s: { socket: dgram.Socket, port: number }): void {
    this.usedPorts.delete(s.port)
    try { s.socket.close() } catch {}
  }

  /** Bind a UDP socket on the next free port of the range, or fail with `E_UDP_NO_PORTS`. */
  private async bindFree (): Promise<{ socket: dgram.Socket, port: number }> {
    const [low, high] = this.options.ports
    const count = high - low + 1
    for (let tried = 0; tried < count; tried++) {
      const port = this.nextPort
      this.nextPort = port >= high ? low : port + 1
      if (this.usedPorts.has(port)) continue
      this.usedPorts.add(port)
      const socket = dgram.createSocket(isIP(this.options.bindHost) === 6 ? 'udp6' : 'udp4')
      const ok = await new Promise<boolean>((resolve) => {
        socket.once('error', () => resolve(false))
        socket.bind(port, this.options.bindHost, () => resolve(true))
      })
      if (ok) {
        socket.on('error', () => {})
        return { socket, port }
      }
      this.usedPorts.delete(port)
      try { socket.close() } catch {}
    }
    throw new StarsockError('E_UDP_NO_PORTS', `No free pair of UDP ports in ${low}-${high}`)
  }
}

/** The checked request, its addresses IP addresses; else throws its `E_BAD_REQUEST`. */
function checkIpAddresses (request: UdpAllocateRequest | StarsockError): UdpAllocateRequest {
  if (request instanceof StarsockError) throw request
  const bad = request.addresses.find((a) => isIP(a) === 0)
  if (bad !== undefined) throw new StarsockError('E_BAD_REQUEST', `addresses must be IP addresses: ${JSON.stringify(bad.slice(0, 64))} is not one`)
  return request
}

function decrement (counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 1) - 1
  if (n <= 0) counts.delete(key)
  else counts.set(key, n)
}

function isLoopback (ip: string): boolean {
  return ip.startsWith('127.') || ip === '::1' || ip === '0.0.0.0' || ip === '::'
}

/** This host's addresses (every interface, the bound and the public one), normalized. */
function localAddresses (options: UdpRelayOptions): Set<string> {
  const out = new Set([normalizeIp(options.bindHost), normalizeIp(options.publicIp)])
  for (const list of Object.values(networkInterfaces())) for (const info of list ?? []) out.add(normalizeIp(info.address.split('%')[0] ?? info.address))
  return out
}

/** `::ffff:1.2.3.4` and `1.2.3.4` are the same source. */
function normalizeIp (ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip
}
