/**
 * Runs a config's mappings on one sock agent (one server connection, one connection per remote
 * peer, shared by every mapping to it): each mapping is a tunnel of its own, so one that fails
 * never takes the others down. A mapping that fails to start, or stops, is retried with backoff
 * unless the answer was final (denied, or killed by a person). `apply` takes a whole new list and
 * touches only what changed.
 */
import { StarsockError } from '../../shared/errors.ts'
import type { SockAddress } from '../../shared/mux-frame.ts'
import { formatAddress } from '../../shared/sock-protocol.ts'
import type { SockAgent } from '../../client/sock/agent.ts'
import type { Mapping } from '../../client/sock/mapping.ts'
import net from 'node:net'
import { bindUdp, listenTcp } from '../../client/sock/host.node.ts'
import { Socks } from '../../client/sock/socks.node.ts'
import { AcceptTunnel, Expose, Forward, type Tunnel, type TunnelStats } from '../../client/sock/tunnel.node.ts'
import { canonicalEntry, MAX_MAPPINGS, type MappingEntry, type MappingKind } from './config.ts'

/** Where a mapping is: `starting` (first attempt under way), `up`, `away` (waiting for the peer or the server, asking again by itself), `failed` (see `error`; retried unless final), `closed`. */
export type MappingState = 'starting' | 'up' | 'away' | 'failed' | 'closed'

/** What `list()` says of one mapping. */
export interface MappingStatus {
  id: string
  kind: MappingKind
  entry: MappingEntry
  state: MappingState
  /** forward, socks, accept: the local address listened on; expose: a usable address the peer bound (not a wildcard when it said better). */
  address?: SockAddress
  /** Why it failed or is away. */
  error?: { code: string, message: string }
  /** A failed mapping is retried (at `retryAt`, epoch ms) unless the failure is final (denied, killed by a person). */
  final?: boolean
  retryAt?: number
  stats: TunnelStats
}

/** Runner options. */
export interface AgentRunnerOptions {
  /** Each thing worth telling: `name` for `--json`, `fields`, and one line of `text`. */
  onEvent?: (name: string, fields: Record<string, unknown>, text: string) => void
  /** How long to wait for a peer to answer an offer. @default 60_000 */
  timeoutMs?: number
  /** Make the tunnel of an entry (for socks and accept, and tests); the default knows forward and expose. */
  createTunnel?: (agent: SockAgent, entry: MappingEntry, signal: AbortSignal, timeoutMs: number) => StartableTunnel
}

/** A tunnel and how to start it. */
export interface StartableTunnel {
  tunnel: Tunnel
  start: () => Promise<void>
}

/** First and largest pause before a failed mapping is started again. */
export const RETRY_DELAY_MS = 1000
export const RETRY_DELAY_MAX_MS = 30_000

/**
 * Errors after which a mapping is not retried: a person or a rule of the peer said no, a person
 * killed it, the peer cannot do it, or the mapping itself is wrong (`E_BAD_REQUEST`: a peer that is
 * this one) and would fail the same way each time.
 */
const FINAL_CODES = new Set(['E_DENIED', 'E_KILLED', 'E_UNSUPPORTED', 'E_BAD_REQUEST'])

const EMPTY_STATS: TunnelStats = {
  channelsOpen: 0, connections: 0, bytesIn: 0, bytesOut: 0, droppedDatagrams: 0, failures: 0, refusedSources: 0, state: 'closed',
  droppedBy: { credit: 0, queue: 0, window: 0, pending: 0, open: 0, sources: 0 }
}

function asError (err: unknown): StarsockError {
  if (err instanceof StarsockError) return err
  const code = (err as { code?: string })?.code
  const message = err instanceof Error ? err.message : String(err)
  if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') return new StarsockError('E_BIND_FAILED', message)
  return new StarsockError('E_STREAM_ABORTED', message)
}

/** What an entry does, in words: `tcp 127.0.0.1:15432 -> 127.0.0.1:5432 through PEER`. */
export function describeEntry (e: MappingEntry, address?: SockAddress): string {
  const target = (x: { to?: SockAddress, service?: string }): string => x.service !== undefined ? `service ${x.service}` : formatAddress(x.to as SockAddress)
  switch (e.kind) {
    case 'forward': return `${e.proto} ${formatAddress(address ?? e.listen)} -> ${target(e)} through ${e.peer}`
    case 'accept': return `${e.proto} ${formatAddress(address ?? e.listen)} -> ${target(e)} at ${e.peer} (accept)`
    case 'socks': return `socks5/http-connect ${formatAddress(address ?? e.listen)} through ${e.peer}`
    case 'expose': return `${e.proto} ${formatAddress(address ?? { ip: e.bindHost, port: e.port })} on ${e.peer} -> ${formatAddress(e.to)}`
  }
}

/** Make the tunnel of an entry: `Forward`, `Expose`, `Socks` or `AcceptTunnel`, always waiting for a peer not online yet. */
export function defaultTunnel (agent: SockAgent, entry: MappingEntry, signal: AbortSignal, timeoutMs: number): StartableTunnel {
  const common = { peer: entry.peer, name: entry.name, timeoutMs, signal, waitForPeer: true }
  switch (entry.kind) {
    case 'forward': {
      const t = new Forward(agent, { ...common, to: entry.to, service: entry.service, proto: entry.proto, allowFrom: entry.allowFrom })
      return { tunnel: t, start: async () => await t.start(entry.listen) }
    }
    case 'expose': {
      const t = new Expose(agent, { ...common, to: entry.to, proto: entry.proto, allowFrom: entry.allowFrom })
      return { tunnel: t, start: async () => await t.start(entry.bindHost, entry.port) }
    }
    case 'socks': {
      const t = new Socks(agent, { ...common, allowFrom: entry.allowFrom, users: entry.users })
      return { tunnel: t, start: async () => await t.start(entry.listen) }
    }
    case 'accept': {
      const t = new AcceptTunnel(agent, { ...common, service: entry.service, proto: entry.proto, allowFrom: entry.allowFrom })
      return { tunnel: t, start: async () => await t.start(entry.listen) }
    }
  }
}

interface Running {
  entry: MappingEntry
  canon: string
  state: MappingState
  tunnel: Tunnel | undefined
  abort: AbortController
  error: StarsockError | undefined
  final: boolean
  attempts: number
  retryTimer: ReturnType<typeof setTimeout> | undefined
  retryAt: number | undefined
  /** A usable address of the peer's bind (an expose's mapping may name several). */
  usable: SockAddress | undefined
  /** Figures of the tunnels this mapping had before the current one. */
  past: TunnelStats
  closed: boolean
  /** The peer said a person is asked during the current attempt: nobody answering is final then (asking again would prompt them anew). */
  asked: boolean
  offs: Array<() => void>
}

/** Runs mappings on one agent. */
export class AgentRunner {
  private readonly running = new Map<string, Running>()
  private readonly onEvent: (name: string, fields: Record<string, unknown>, text: string) => void
  private readonly timeoutMs: number
  private readonly create: (agent: SockAgent, entry: MappingEntry, signal: AbortSignal, timeoutMs: number) => StartableTunnel
  private queue: Promise<unknown> = Promise.resolve()
  private closed = false

  constructor (readonly agent: SockAgent, options: AgentRunnerOptions = {}) {
    this.onEvent = options.onEvent ?? (() => {})
    this.timeoutMs = options.timeoutMs ?? 60_000
    this.create = options.createTunnel ?? defaultTunnel
    if (!Number.isSafeInteger(this.timeoutMs) || this.timeoutMs < 1) throw new RangeError('timeoutMs must be a positive integer')
  }

  /**
   * Run exactly `entries`: those whose id and content are unchanged are not touched (`kept`),
   * changed ones are closed and started anew (`changed`), new ones started (`added`), missing ones
   * closed (`removed`); a failed one whose entry is unchanged is started again at once (a reload
   * is a way to say "try again"). Settles once the diff is applied (old ones closed, new ones
   * started), not when the new ones are up: a first attempt may wait a minute for a person, and a
   * reload or a shutdown must not wait with it; their `ready`/`failed` events tell the rest.
   */
  async apply (entries: readonly MappingEntry[]): Promise<{ added: string[], changed: string[], removed: string[], kept: string[] }> {
    const seen = new Set<string>()
    for (const e of entries) {
      if (seen.has(e.id)) throw new TypeError(`two mappings have the id ${e.id}`)
      seen.add(e.id)
    }
    return await this.serial(async () => {
      const result = { added: [] as string[], changed: [] as string[], removed: [] as string[], kept: [] as string[] }
      const next = new Map(entries.map((e) => [e.id, e]))
      const stop: Running[] = []
      for (const [id, r] of this.running) {
        const e = next.get(id)
        if (e !== undefined && canonicalEntry(e) === r.canon) {
          result.kept.push(id)
          if (r.state === 'failed' && r.final) this.retryNow(r)
          continue
        }
        stop.push(r)
        if (e === undefined) result.removed.push(id)
        else result.changed.push(id)
      }
      // Gone and changed ones first: a changed mapping may want its own old port.
      await Promise.all(stop.map(async (r) => await this.stop(r, next.has(r.entry.id) ? 'changed' : 'removed')))
      for (const entry of entries) {
        if (this.running.has(entry.id)) continue
        if (!result.changed.includes(entry.id)) result.added.push(entry.id)
        void this.launch(entry) // a failure is its state, never thrown
      }
      return result
    })
  }

  /** Start one more mapping; throws a `TypeError` when its id is in use, a `RangeError` when `MAX_MAPPINGS` run. Settles with its status after the first attempt. */
  async add (entry: MappingEntry): Promise<MappingStatus> {
    const { r, first } = await this.serial(async () => {
      if (this.running.has(entry.id)) throw new TypeError(`a mapping with the id ${entry.id} exists`)
      if (this.running.size >= MAX_MAPPINGS) throw new RangeError(`${this.running.size} mappings run (at most ${MAX_MAPPINGS}): remove one first`)
      const first = this.launch(entry)
      return { r: this.running.get(entry.id) as Running, first }
    })
    await first
    return this.status(r)
  }

  /** Close and forget one mapping; `false` when there is none with `id`. */
  async remove (id: string): Promise<boolean> {
    return await this.serial(async () => {
      const r = this.running.get(id)
      if (r === undefined) return false
      await this.stop(r, 'removed')
      return true
    })
  }

  /** Every mapping, in the order added. */
  list (): MappingStatus[] {
    return [...this.running.values()].map((r) => this.status(r))
  }

  /** One mapping's status. */
  get (id: string): MappingStatus | undefined {
    const r = this.running.get(id)
    return r === undefined ? undefined : this.status(r)
  }

  /** Figures over every mapping: what the status line shows. */
  totals (): { channelsOpen: number, bytesIn: number, bytesOut: number, droppedDatagrams: number, up: number, mappings: number } {
    const t = { channelsOpen: 0, bytesIn: 0, bytesOut: 0, droppedDatagrams: 0, up: 0, mappings: this.running.size }
    for (const s of this.list()) {
      t.channelsOpen += s.stats.channelsOpen
      t.bytesIn += s.stats.bytesIn
      t.bytesOut += s.stats.bytesOut
      t.droppedDatagrams += s.stats.droppedDatagrams
      if (s.state === 'up') t.up++
    }
    return t
  }

  /** Close every mapping (the agent stays; close it after); an attempt still waiting for an answer is aborted, not awaited. */
  async close (): Promise<void> {
    this.closed = true
    await this.serial(async () => {
      await Promise.all([...this.running.values()].map(async (r) => await this.stop(r, 'closed')))
    })
  }

  private async serial<T> (task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(task, task)
    this.queue = run.catch(() => {})
    return await run
  }

  private status (r: Running): MappingStatus {
    const live = r.tunnel?.stats()
    const stats = live === undefined ? { ...r.past } : sumStats(r.past, live)
    stats.state = live?.state ?? 'closed'
    const address = r.tunnel !== undefined && r.tunnel.address.port !== 0 ? (r.usable ?? usable(r.tunnel.address)) : undefined
    return {
      id: r.entry.id,
      kind: r.entry.kind,
      entry: r.entry,
      state: r.state,
      ...(address === undefined ? {} : { address }),
      ...(r.error === undefined ? {} : { error: { code: r.error.code, message: r.error.message } }),
      ...(r.state === 'failed' ? { final: r.final } : {}),
      ...(r.retryAt === undefined ? {} : { retryAt: r.retryAt }),
      stats
    }
  }

  private launch (entry: MappingEntry): Promise<void> {
    const r: Running = {
      entry, canon: canonicalEntry(entry), state: 'starting', tunnel: undefined, abort: new AbortController(), error: undefined, final: false,
      attempts: 0, retryTimer: undefined, retryAt: undefined, usable: undefined, past: { ...EMPTY_STATS, droppedBy: { ...EMPTY_STATS.droppedBy } }, closed: false, asked: false, offs: []
    }
    // Registered at once: the caller's lock covers the table, not the wait for the peer's answer.
    this.running.set(entry.id, r)
    return this.attempt(r)
  }

  /** One try at starting `r`'s tunnel; a failure is its state (and a retry), never thrown. */
  private async attempt (r: Running): Promise<void> {
    if (r.closed || this.closed) return
    r.attempts++
    r.retryAt = undefined
    r.asked = false
    r.abort = new AbortController()
    const { entry } = r
    // A port taken here fails before the peer is asked: a retry must not prompt its person each time.
    try {
      await probeListen(entry)
    } catch (err) {
      this.failed(r, asError(err), false)
      return
    }
    if (r.closed || this.closed) return
    let started: StartableTunnel
    try {
      started = this.create(this.agent, entry, r.abort.signal, this.timeoutMs)
    } catch (err) {
      this.failed(r, asError(err), true)
      return
    }
    const { tunnel } = started
    r.tunnel = tunnel
    r.usable = undefined
    r.offs = [
      tunnel.on('away', (err) => {
        if (r.tunnel !== tunnel || r.closed) return
        const first = r.state === 'starting' && err.code === 'E_PEER_NOT_FOUND'
        r.state = 'away'
        r.error = err
        this.event('away', r, { code: err.code, message: err.message }, first ? `waiting for ${entry.peer} to come online` : `away: ${err.message} (${err.code}); asking again until it is back`)
      }),
      tunnel.on('mapping', (m: Mapping) => {
        if (r.tunnel !== tunnel || r.closed) return
        r.usable = usableOf(m, tunnel.address)
        const back = r.state === 'away'
        r.state = 'up'
        r.error = undefined
        r.attempts = 0
        if (back) this.event('back', r, { address: r.usable ?? tunnel.address, secure: m.secure }, `back: ${describeEntry(entry, r.usable)}`)
      }),
      tunnel.on('asking', ({ timeoutMs }) => {
        if (r.tunnel !== tunnel || r.closed) return
        r.asked = true
        this.event('asking', r, { timeoutMs }, `waiting for ${entry.peer} to answer (a person is asked), up to ${Math.round(Math.min(timeoutMs, this.timeoutMs) / 1000)} s`)
      }),
      tunnel.on('connection', ({ src }) => this.event('connection', r, { src }, `connection from ${formatAddress(src)}`)),
      tunnel.on('error', (err) => this.event('error', r, { code: err.code, message: err.message }, `${err.message} (${err.code})`)),
      tunnel.on('refused', ({ src }) => this.event('refused', r, { src }, `refused ${formatAddress(src)}: not in allow_from`))
    ]
    try {
      await started.start()
    } catch (err) {
      if (r.tunnel === tunnel) this.ended(r, tunnel)
      await tunnel.close()
      this.failed(r, asError(err), false)
      return
    }
    if (r.closed || r.tunnel !== tunnel) return
    if (tunnel.state === 'up') {
      r.state = 'up'
      r.error = undefined
      r.attempts = 0
    }
    r.usable ??= usable(tunnel.address)
    const secure = tunnel.stats().secure
    this.event('ready', r, { address: r.usable ?? tunnel.address, state: r.state, secure: secure ?? null }, `${r.state === 'up' ? 'ready' : 'listening, peer away'}: ${describeEntry(entry, r.usable)}`)
    void tunnel.done.then((err) => {
      if (r.tunnel !== tunnel || r.closed) return
      this.ended(r, tunnel)
      this.failed(r, err ?? new StarsockError('E_ABORTED', 'The tunnel stopped'), false)
    })
  }

  /** Keep the figures of `tunnel` (it is over) and stop listening to it. */
  private ended (r: Running, tunnel: Tunnel): void {
    for (const off of r.offs) off()
    r.offs = []
    r.past = sumStats(r.past, tunnel.stats())
    if (r.tunnel === tunnel) r.tunnel = undefined
  }

  private failed (r: Running, error: StarsockError, final: boolean): void {
    if (r.closed) return
    r.state = 'failed'
    r.error = error
    // A person was asked and nobody answered in time: trying again would prompt them anew each time, for ever.
    const unanswered = error.code === 'E_TIMEOUT' && r.asked
    r.final = final || unanswered || (FINAL_CODES.has(error.code) && error.remote !== true) || this.agent.isClosed
    if (r.final) {
      const why = unanswered ? ' (a person was asked and nobody answered): reload the config to ask again' : FINAL_CODES.has(error.code) ? ' (a final answer): reload the config to try again' : ''
      this.event('failed', r, { code: error.code, message: error.message, final: true }, `failed: ${error.message} (${error.code}); not retried${why}`)
      return
    }
    const delay = Math.min(RETRY_DELAY_MS * 2 ** Math.min(r.attempts - 1, 10), RETRY_DELAY_MAX_MS)
    r.retryAt = Date.now() + delay
    this.event('failed', r, { code: error.code, message: error.message, final: false, retryMs: delay }, `failed: ${error.message} (${error.code}); trying again in ${Math.round(delay / 100) / 10} s`)
    r.retryTimer = setTimeout(() => { r.retryTimer = undefined; void this.attempt(r) }, delay)
    r.retryTimer.unref?.()
  }

  private retryNow (r: Running): void {
    clearTimeout(r.retryTimer)
    r.retryTimer = undefined
    r.attempts = 0
    r.final = false
    r.state = 'starting'
    void this.attempt(r)
  }

  private async stop (r: Running, why: string): Promise<void> {
    r.closed = true
    clearTimeout(r.retryTimer)
    r.abort.abort()
    const tunnel = r.tunnel
    if (tunnel !== undefined) {
      await tunnel.close()
      this.ended(r, tunnel)
    }
    r.state = 'closed'
    this.running.delete(r.entry.id)
    this.event('closed', r, { why }, `closed (${why})`)
  }

  private event (name: string, r: Running, fields: Record<string, unknown>, text: string): void {
    const e = r.entry
    this.onEvent(name, { id: e.id, kind: e.kind, peer: e.peer, ...fields }, `${e.kind} ${e.id}: ${text}`)
  }
}

/** Whether the local address `entry` listens on is free (listen and close at once); rejects with `E_BIND_FAILED`. */
async function probeListen (entry: MappingEntry): Promise<void> {
  if (entry.kind === 'expose' || entry.listen.port === 0) return
  const { ip, port } = entry.listen
  if (entry.kind !== 'socks' && entry.proto === 'udp') {
    const socket = await bindUdp(ip, port)
    await new Promise<void>((resolve) => socket.close(() => resolve()))
    return
  }
  const server = net.createServer()
  await listenTcp(server, ip, port)
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

/** A wildcard address listened on here is reached on loopback. */
function usable (a: SockAddress): SockAddress | undefined {
  if (a.port === 0) return undefined
  if (a.ip === '0.0.0.0') return { ip: '127.0.0.1', port: a.port }
  if (a.ip === '::') return { ip: '::1', port: a.port }
  return a
}

/** An expose's mapping may name the peer's usable addresses (a wildcard bind): the first of them. */
function usableOf (m: Mapping, address: SockAddress): SockAddress | undefined {
  const wildcard = address.ip === '0.0.0.0' || address.ip === '::' || address.ip === ''
  const addresses = m.addresses
  if (m.local && wildcard && addresses !== undefined && addresses.length > 0) {
    const a = addresses[0] as SockAddress
    return { ip: a.ip, port: address.port !== 0 ? address.port : a.port }
  }
  return address.port === 0 ? undefined : wildcard ? address : address
}

function sumStats (a: TunnelStats, b: TunnelStats): TunnelStats {
  const droppedBy = { ...a.droppedBy }
  for (const k of Object.keys(b.droppedBy) as Array<keyof typeof droppedBy>) droppedBy[k] = (droppedBy[k] ?? 0) + (b.droppedBy[k] ?? 0)
  return {
    ...b,
    channelsOpen: b.channelsOpen,
    connections: a.connections + b.connections,
    bytesIn: a.bytesIn + b.bytesIn,
    bytesOut: a.bytesOut + b.bytesOut,
    droppedDatagrams: a.droppedDatagrams + b.droppedDatagrams,
    failures: a.failures + b.failures,
    refusedSources: a.refusedSources + b.refusedSources,
    droppedBy
  }
}
