/**
 * UDP relay allocations: two UDP ports per allocation; the endpoint that registers on each port
 * (its first packet) gets every later payload from the other port's endpoint, unchanged, both
 * ways. Safe by default: a first packet registers only if it is the port's token (`token` mode,
 * the token is not forwarded) or comes from a named address (`address` mode); `open` mode (any
 * first packet registers, as in Impervious's original) is for trusted networks only. Packets
 * from anyone else are dropped and counted. Allocations expire when idle and at a hard
 * lifetime, can be refreshed and released, and have byte and packet-rate quotas.
 */
import { randomBytes } from 'node:crypto'
import dgram from 'node:dgram'
import { isIP } from 'node:net'
import { StarsockError } from '../shared/errors.ts'
import type { UdpAllocation } from '../shared/events.ts'
import type { Logger } from '../shared/logger.ts'
import { TokenBucket } from './rate-limit.ts'

/** How an endpoint registers on its port. */
export type UdpRelayMode = UdpAllocation['mode']

/** Why a packet was dropped (a metrics label). */
export type UdpDropCause = 'unregistered' | 'bad_token' | 'address_not_allowed' | 'foreign' | 'no_peer' | 'quota_bytes' | 'quota_rate' | 'too_large'

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
  /** An allocation without packets this long expires. */
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
}

/** What a peer gets for an allocation. */
export type AllocationInfo = UdpAllocation

interface Side {
  socket: dgram.Socket
  port: number
  token: Buffer
  endpoint: { address: string, port: number } | undefined
}

interface Allocation {
  info: AllocationInfo
  owner: string
  sides: [Side, Side]
  allowed: Set<string>
  bytes: number
  bucket: TokenBucket
  lastActivity: number
  hardExpiry: number
}

/** Largest UDP payload forwarded. */
const MAX_PAYLOAD_BYTES = 65_507
const TOKEN_BYTES = 16

/** The relay. Make one per server when it is enabled. */
export class UdpRelay {
  private readonly allocations = new Map<string, Allocation>()
  private readonly usedPorts = new Set<number>()
  /** Allocations under way, per owner: they count against the limit before they exist. */
  private readonly pending = new Map<string, number>()
  private closed = false
  private readonly sweep: ReturnType<typeof setInterval>
  private nextPort: number

  constructor (private readonly options: UdpRelayOptions) {
    const [low, high] = options.ports
    if (!Number.isInteger(low) || !Number.isInteger(high) || low < 1 || high > 65535 || high - low < 1) throw new RangeError('UDP relay ports must be a range of at least two ports within 1-65535')
    this.nextPort = low
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

  /** Make an allocation for `owner` (a peer id); rejects with a limit or a port error. */
  async allocate (owner: string, request: { mode?: UdpRelayMode, addresses?: string[] } = {}): Promise<AllocationInfo> {
    const mode = request.mode ?? 'token'
    if (mode !== 'token' && mode !== 'address' && mode !== 'open') throw new StarsockError('E_BAD_REQUEST', 'mode must be token, address or open')
    const addresses = request.addresses ?? []
    if (!Array.isArray(addresses) || addresses.length > 16 || addresses.some((a) => typeof a !== 'string' || isIP(a) === 0)) throw new StarsockError('E_BAD_REQUEST', 'addresses must be at most 16 IP addresses')
    if (mode === 'address' && addresses.length === 0) throw new StarsockError('E_BAD_REQUEST', 'address mode needs the addresses that may register')
    if (this.closed) throw new StarsockError('E_SHUTDOWN', 'UDP relay is closed')
    const held = [...this.allocations.values()].filter((a) => a.owner === owner).length + (this.pending.get(owner) ?? 0)
    if (held >= this.options.maxAllocationsPerPeer) throw new StarsockError('E_LIMIT_ALLOCATIONS', `Peer holds ${held} allocations already (at most ${this.options.maxAllocationsPerPeer})`)
    this.pending.set(owner, (this.pending.get(owner) ?? 0) + 1)
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
      const n = (this.pending.get(owner) ?? 1) - 1
      if (n === 0) this.pending.delete(owner)
      else this.pending.set(owner, n)
    }
    const now = Date.now()
    const id = randomBytes(8).toString('hex')
    const sides: [Side, Side] = [
      { ...first, token: randomBytes(TOKEN_BYTES), endpoint: undefined },
      { ...second, token: randomBytes(TOKEN_BYTES), endpoint: undefined }
    ]
    const allocation: Allocation = {
      info: { id, ip: this.options.publicIp, port1: first.port, port2: second.port, token1: sides[0].token.toString('hex'), token2: sides[1].token.toString('hex'), mode, expiresAt: now + this.options.lifetimeMs },
      owner,
      sides,
      allowed: new Set(addresses.map(normalizeIp)),
      bytes: 0,
      bucket: new TokenBucket(this.options.maxPacketsPerSecond, this.options.maxPacketsPerSecond * 2),
      lastActivity: now,
      hardExpiry: now + this.options.lifetimeMs
    }
    sides.forEach((side, i) => side.socket.on('message', (msg, rinfo) => this.packet(allocation, i as 0 | 1, msg, rinfo)))
    this.allocations.set(id, allocation)
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

  /** Release everything and stop. */
  close (): void {
    this.closed = true
    clearInterval(this.sweep)
    for (const a of [...this.allocations.values()]) this.free(a, 'closed')
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
    if (side.endpoint === undefined) {
      const mode = a.info.mode
      if (mode === 'token') {
        if (msg.byteLength !== side.token.byteLength || !msg.equals(side.token)) return this.drop(mode === 'token' && msg.byteLength === side.token.byteLength ? 'bad_token' : 'unregistered')
        side.endpoint = from
        a.lastActivity = Date.now()
        return // the token registers; it is not forwarded
      }
      if (mode === 'address' && !a.allowed.has(from.address)) return this.drop('address_not_allowed')
      side.endpoint = from
    } else if (side.endpoint.address !== from.address || side.endpoint.port !== from.port) {
      return this.drop('foreign')
    }
    if (other.endpoint === undefined) return this.drop('no_peer')
    if (msg.byteLength > MAX_PAYLOAD_BYTES) return this.drop('too_large')
    if (a.bytes + msg.byteLength > this.options.maxBytes) return this.drop('quota_bytes')
    if (!a.bucket.take()) return this.drop('quota_rate')
    a.bytes += msg.byteLength
    a.lastActivity = Date.now()
    other.socket.send(msg, other.endpoint.port, other.endpoint.address)
    this.options.observer?.forwarded(msg.byteLength)
  }

  private drop (cause: UdpDropCause): void {
    this.options.observer?.dropped(cause)
  }

  private expire (): void {
    const now = Date.now()
    for (const a of [...this.allocations.values()]) {
      if (now - a.lastActivity > this.options.idleMs) this.free(a, 'idle')
      else if (now > a.hardExpiry) this.free(a, 'lifetime')
    }
  }

  private free (a: Allocation, why: string): void {
    if (!this.allocations.delete(a.info.id)) return
    for (const side of a.sides) this.closeSocket(side)
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

/** `::ffff:1.2.3.4` and `1.2.3.4` are the same source. */
function normalizeIp (ip: string): string {
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip
}
