/**
 * The UDP relay allocations the control API holds for the Impervious-style S2S calls
 * (`/v1/socket/start`, `/sendRequest`, `/stop`): made with `peer.udpAllocate`, kept refreshed
 * while the agent runs, handed half by half to peers with `sendUdpHalf`, released on `stop` or
 * when the API closes. Bounded: at most `maxAllocations` at a time, allocations under way
 * included.
 */
import { isIP } from 'node:net'
import { StarsockError } from '../../shared/errors.ts'
import type { Logger } from '../../shared/logger.ts'
import { MAX_UDP_ALLOWED_ADDRESSES, PEER_ID_TEXT } from '../../shared/validate.ts'
import type { UdpAllocation } from '../../client/peer.ts'
import type { SockAgent } from '../../client/sock/agent.ts'
import { sendUdpHalf, type UdpShare } from '../../client/sock/udp-share.ts'

/** What `/v1/socket/start` asks for, checked. */
export interface SocketStartRequest {
  protocol: 'udp'
  mode: UdpAllocation['mode']
  allowIps: string[]
}

/** An allocation as the API answers it. */
export interface SocketInfo {
  id: string
  protocol: 'udp'
  mode: UdpAllocation['mode']
  ip: string
  port1: number
  port2: number
  token1: string
  token2: string
  expiresAt: number
}

/** A bad request body: a 400 with this message. */
export class BadRequest extends Error {}

/** Allocations the control API holds at most, by default (the server's per-peer default is 4). */
export const CONTROL_MAX_ALLOCATIONS = 4
/** How often a held allocation is refreshed, by default (the server's default idle expiry is 60 s). */
export const CONTROL_REFRESH_MS = 20_000
/** Longest id or peer id taken in a body. */
const MAX_ID_CHARS = 200

/** Check a `/v1/socket/start` body: `{ protocol: 'udp', mode?, allowIps? }`. */
export function parseSocketStart (body: Record<string, unknown>): SocketStartRequest {
  onlyKeys(body, ['protocol', 'mode', 'allowIps'])
  if (body.protocol !== 'udp') throw new BadRequest(`protocol: must be "udp" (the relay carries UDP only), got ${JSON.stringify(body.protocol) ?? 'nothing'}`)
  const mode = body.mode ?? 'token'
  if (mode !== 'token' && mode !== 'address' && mode !== 'open') throw new BadRequest('mode: must be "token", "address" or "open"')
  const allowIps = body.allowIps ?? []
  if (!Array.isArray(allowIps) || allowIps.length > MAX_UDP_ALLOWED_ADDRESSES || !allowIps.every((ip) => typeof ip === 'string' && isIP(ip) !== 0)) {
    throw new BadRequest(`allowIps: must be a list of at most ${MAX_UDP_ALLOWED_ADDRESSES} IP addresses`)
  }
  if (mode === 'address' && allowIps.length === 0) throw new BadRequest('allowIps: address mode needs the addresses that may register')
  if (mode !== 'address' && allowIps.length > 0) throw new BadRequest('allowIps: only address mode takes addresses')
  return { protocol: 'udp', mode, allowIps: allowIps as string[] }
}

/** Check a `/v1/socket/sendRequest` body: `{ id, peer, endpoint?: 1 | 2 }` (endpoint 2 by default). */
export function parseSocketSend (body: Record<string, unknown>): { id: string, peer: string, endpoint: 1 | 2 } {
  onlyKeys(body, ['id', 'peer', 'endpoint'])
  const endpoint = body.endpoint ?? 2
  if (endpoint !== 1 && endpoint !== 2) throw new BadRequest('endpoint: must be 1 or 2')
  const peer = idField(body, 'peer')
  if (!PEER_ID_TEXT.test(peer)) throw new BadRequest('peer: not a peer id (base58, e.g. 12D3KooW...)')
  return { id: idField(body, 'id'), peer, endpoint }
}

/** Check a `/v1/socket/stop` body: `{ id }`. */
export function parseSocketStop (body: Record<string, unknown>): { id: string } {
  onlyKeys(body, ['id'])
  return { id: idField(body, 'id') }
}

function onlyKeys (body: Record<string, unknown>, keys: readonly string[]): void {
  const extra = Object.keys(body).find((k) => !keys.includes(k))
  if (extra !== undefined) throw new BadRequest(`${extra.slice(0, 40)}: unknown field (known: ${keys.join(', ')})`)
}

function idField (body: Record<string, unknown>, name: string): string {
  const v = body[name]
  if (typeof v !== 'string' || v === '' || v.length > MAX_ID_CHARS) throw new BadRequest(`${name}: must be a non-empty string of at most ${MAX_ID_CHARS} characters`)
  return v
}

interface Held {
  info: SocketInfo
  timer: ReturnType<typeof setInterval>
  /** Halves handed out and still in use (a receiver that bridges one keeps its channel open). */
  shares: Set<UdpShare>
  /** Halves being handed over now (they count against the maximum too). */
  sending: number
}

/** Halves of one allocation handed out and in use at once. */
export const CONTROL_MAX_SHARES_PER_ALLOCATION = 8

/** The allocations of one control API. */
export class ControlSockets {
  private readonly held = new Map<string, Held>()
  private pending = 0
  private closed = false

  constructor (
    private readonly agent: SockAgent,
    private readonly options: { maxAllocations: number, refreshMs: number, timeoutMs: number, logger: Logger }
  ) {}

  /** The allocations held now. */
  list (): SocketInfo[] {
    return [...this.held.values()].map((h) => ({ ...h.info }))
  }

  /**
   * Make an allocation and hold it, refreshed every `refreshMs`; settles with it. Rejects with
   * `E_LIMIT_ALLOCATIONS` when the API holds its maximum, or with the server's error.
   */
  async start (request: SocketStartRequest): Promise<SocketInfo> {
    if (this.closed) throw new StarsockError('E_NOT_JOINED', 'The control API is closing')
    const { maxAllocations } = this.options
    if (this.held.size + this.pending >= maxAllocations) {
      throw new StarsockError('E_LIMIT_ALLOCATIONS', `The control API holds ${this.held.size + this.pending} allocations (at most ${maxAllocations}); stop one first`)
    }
    this.pending++
    let a: UdpAllocation
    try {
      a = await this.agent.peer.udpAllocate({ mode: request.mode, addresses: request.allowIps }, { timeoutMs: this.options.timeoutMs })
    } finally {
      this.pending--
    }
    const info: SocketInfo = { id: a.id, protocol: 'udp', mode: a.mode, ip: a.ip, port1: a.port1, port2: a.port2, token1: a.token1, token2: a.token2, expiresAt: a.expiresAt }
    if (this.closed) {
      await this.release(a.id)
      throw new StarsockError('E_NOT_JOINED', 'The control API closed while the allocation was made')
    }
    const timer = setInterval(() => { void this.refresh(a.id) }, this.options.refreshMs)
    timer.unref()
    this.held.set(a.id, { info, timer, shares: new Set(), sending: 0 })
    this.options.logger.info({ id: a.id, ports: [a.port1, a.port2], mode: a.mode }, 'control api: udp allocation')
    return { ...info }
  }

  /**
   * Hand endpoint `endpoint` of allocation `id` to `peerId` (`sendUdpHalf`); settles once the
   * peer took it, with what it did (`taken`: `bridged` from its local port `via`, or `printed`;
   * nothing from an older peer). Rejects with `E_UDP_NOT_FOUND` for an allocation this API does
   * not hold, `E_LIMIT_ALLOCATIONS` when its halves in use are at their maximum, `E_TIMEOUT`
   * after `timeoutMs`, or with the peer's refusal (`E_DENIED`, `E_UNSUPPORTED`, ...). The half
   * stays handed out until `stop`.
   */
  async send (id: string, peerId: string, endpoint: 1 | 2): Promise<{ ip: string, port: number, taken?: 'bridged' | 'printed', via?: number }> {
    const info = this.get(id)
    const held = this.held.get(id) as Held
    const shares = held.shares
    if (shares.size + held.sending >= CONTROL_MAX_SHARES_PER_ALLOCATION) {
      throw new StarsockError('E_LIMIT_ALLOCATIONS', `The control API handed out ${shares.size + held.sending} halves of ${id} still in use (at most ${CONTROL_MAX_SHARES_PER_ALLOCATION}); stop it first`)
    }
    const half = endpoint === 1
      ? { ip: info.ip, port: info.port1, token: info.token1, expiresAt: info.expiresAt }
      : { ip: info.ip, port: info.port2, token: info.token2, expiresAt: info.expiresAt }
    const signal = AbortSignal.timeout(this.options.timeoutMs)
    let share: UdpShare
    held.sending++
    try {
      share = await sendUdpHalf(this.agent, peerId, half, { signal })
    } catch (err) {
      if (signal.aborted) throw new StarsockError('E_TIMEOUT', `Peer ${peerId} did not take the half within ${this.options.timeoutMs} ms`, { cause: err })
      throw err
    } finally {
      held.sending--
    }
    if (this.held.get(id) !== held) {
      share.close() // stopped meanwhile
      throw new StarsockError('E_UDP_NOT_FOUND', `Allocation ${id} was stopped while its half was handed over`)
    }
    shares.add(share)
    void share.ended.then(() => shares.delete(share))
    return { ip: half.ip, port: half.port, ...(share.taken === undefined ? {} : { taken: share.taken }), ...(share.via === undefined ? {} : { via: share.via }) }
  }

  /** Release allocation `id` (its ports are free at once); rejects with `E_UDP_NOT_FOUND` for one this API does not hold. */
  async stop (id: string): Promise<void> {
    this.get(id)
    this.forget(id)
    await this.release(id)
  }

  /** Release every allocation held (best effort); no new ones start. */
  async close (): Promise<void> {
    this.closed = true
    const ids = [...this.held.keys()]
    for (const id of ids) this.forget(id)
    await Promise.all(ids.map(async (id) => await this.release(id)))
  }

  private get (id: string): SocketInfo {
    const h = this.held.get(id)
    if (h === undefined) throw new StarsockError('E_UDP_NOT_FOUND', `No allocation ${id.slice(0, MAX_ID_CHARS)} is held by this control API (expired, stopped, or never started here)`)
    return h.info
  }

  /** Stop holding `id`: no more refreshes, and every peer it was handed to is told to stop using it. */
  private forget (id: string): void {
    const h = this.held.get(id)
    if (h === undefined) return
    clearInterval(h.timer)
    this.held.delete(id)
    for (const share of h.shares) share.close()
    h.shares.clear()
  }

  private async release (id: string): Promise<void> {
    await this.agent.peer.udpRelease(id, { timeoutMs: this.options.timeoutMs }).catch((err: Error) => {
      this.options.logger.warn({ id, err: err.message }, 'control api: udp release failed')
    })
  }

  /** Push back the expiry of `id`; an allocation the server no longer knows is forgotten. */
  private async refresh (id: string): Promise<void> {
    try {
      const a = await this.agent.peer.udpRefresh(id, { timeoutMs: this.options.timeoutMs })
      const h = this.held.get(id)
      if (h !== undefined) h.info.expiresAt = a.expiresAt
    } catch (err) {
      const code = err instanceof StarsockError ? err.code : undefined
      this.options.logger.warn({ id, code, err: (err as Error).message }, 'control api: udp refresh failed')
      // Expired, or the server restarted: it is gone. Other failures (a reconnect) are tried again.
      if (code === 'E_UDP_NOT_FOUND') this.forget(id)
    }
  }
}
