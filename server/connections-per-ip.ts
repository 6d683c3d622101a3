/**
 * The cap on engine.io connections from one client IP (`--max-connections-per-ip`). A connection
 * costs memory from its handshake on, joined or not, for as long as it answers pings: without a
 * cap one address could open connections until the server runs out of memory (150,000 polling
 * handshakes held 1.2 GB). Checked in engine.io's `allowRequest`, before a session exists; a
 * refused handshake gets an HTTP error with the reason in its body (long-polling: 403 and JSON;
 * WebSocket: 400 and text).
 *
 * An IPv6 /48 (a site, which has 65,536 /64s to take addresses from) may hold `SITE_FACTOR`
 * times the cap, and the whole server `TOTAL_FACTOR` times `maxPeers`: many addresses then cost
 * new clients their place, not the server its memory. And not even that while connections that
 * never joined hold it: a handshake that finds the server full closes the oldest connection that
 * has not joined within `idleAfterMs` (the join challenge's lifetime) and takes its place, so
 * idle connections from many addresses cannot lock clients out.
 *
 * A handshake that passes reserves a place at once (many can arrive in one read, before any
 * becomes a connection); the connection takes it over, or, if the handshake failed on the way,
 * it is given back once the event loop has turned. It is given back when the connection closes.
 */
import type { IncomingMessage } from 'node:http'
import type { Server as EngineServer, Socket as EngineSocket } from 'engine.io'
import { wireError } from '../shared/errors.ts'
import type { Logger } from '../shared/logger.ts'
import { clientIpOf } from './client-ip.ts'
import type { ServerMetrics } from './metrics.ts'
import { ipAndSiteKeys, SITE_FACTOR } from './rate-limit.ts'

/** Where a handshake's reservation is kept on its request until its connection takes it: the keys it counts under. */
const RESERVED = Symbol('starsock:connection-reserved')
/** At most one warning per this long about refused handshakes. */
const WARN_EVERY_MS = 60_000
/** The whole server may hold this many times `maxPeers` connections, joined or not. */
export const TOTAL_FACTOR = 2
/** The key every connection also counts under (for the server's total). */
const TOTAL = '*'

type Reserved = IncomingMessage & { [RESERVED]?: string[] }

/** An open connection, as counted: its keys, since when, and (once socket.io has it) its session's addresses. */
interface Counted {
  keys: readonly string[]
  sinceMs: number
  /** Given back already (evicted): its close does not give it back again. */
  released: boolean
  /** The addresses its session joined (none: it never joined), once bound. */
  addrs: ReadonlySet<string> | undefined
}

/**
 * Counts of connections per IP key (`ipLimitKey`), per IPv6 /48 and in all, and the
 * `allowRequest` that keeps them under `max`, `SITE_FACTOR` times it and `maxTotal`.
 */
export class ConnectionsPerIp {
  private readonly counts = new Map<string, number>()
  /** Open connections not known to have joined, oldest first (a joined one leaves at the next look). */
  private readonly open = new Map<EngineSocket, Counted>()
  private lastWarning = -Infinity
  private refusedSinceWarning = 0

  constructor (
    private readonly max: number,
    private readonly maxTotal: number,
    private readonly trustProxy: boolean,
    private readonly metrics: ServerMetrics,
    private readonly logger: Logger,
    /** How long a connection may go without joining before a newcomer to a full server may take its place. */
    private readonly idleAfterMs: number,
    private readonly now: () => number = Date.now
  ) {}

  /** engine.io's `allowRequest`: called for each handshake (a request without a session id). */
  readonly allowRequest = (req: IncomingMessage, callback: (err: string | null | undefined, success: boolean) => void): void => {
    const ipKeys = ipAndSiteKeys(clientIpOf(req.headers, req.socket.remoteAddress ?? '', this.trustProxy))
    const [key, site] = ipKeys
    const refusal = (this.counts.get(key) ?? 0) >= this.max
      ? wireError('E_LIMIT_CONNECTIONS_PER_IP', `Connection limit of this IP address reached (maxConnectionsPerIp=${this.max})`)
      : site !== undefined && (this.counts.get(site) ?? 0) >= SITE_FACTOR * this.max
        ? wireError('E_LIMIT_CONNECTIONS_PER_IP', `Connection limit of this IPv6 /48 network reached (${SITE_FACTOR} x maxConnectionsPerIp=${SITE_FACTOR * this.max})`)
        : (this.counts.get(TOTAL) ?? 0) >= this.maxTotal && !this.evictIdle()
            ? wireError('E_LIMIT_PEERS', `Connection limit of this server reached (${TOTAL_FACTOR} x maxPeers=${this.maxTotal})`)
            : undefined
    if (refusal !== undefined) {
      this.refused(key, refusal)
      return callback(refusal, false)
    }
    const keys = [...ipKeys, TOTAL]
    for (const k of keys) this.counts.set(k, (this.counts.get(k) ?? 0) + 1)
    ;(req as Reserved)[RESERVED] = keys
    // engine.io makes the connection within this turn of the event loop, or never.
    setImmediate(() => {
      if ((req as Reserved)[RESERVED] === undefined) return
      delete (req as Reserved)[RESERVED]
      this.release(keys)
    })
    callback(null, true)
  }

  /** Take over handshakes' reservations as their connections open, and free them as they close. */
  attach (engine: EngineServer): void {
    engine.on('connection', (conn: EngineSocket) => {
      const req = conn.request as Reserved | null
      const keys = req?.[RESERVED]
      if (keys === undefined) return
      delete req?.[RESERVED]
      const counted: Counted = { keys, sinceMs: this.now(), released: false, addrs: undefined }
      this.open.set(conn, counted)
      conn.once('close', () => {
        this.open.delete(conn)
        if (counted.released) return
        counted.released = true
        this.release(keys)
      })
    })
  }

  /** `conn`'s session is `addrs` (the addresses it joins): a connection with none may be evicted for a newcomer. */
  bind (conn: unknown, addrs: ReadonlySet<string>): void {
    const counted = this.open.get(conn as EngineSocket)
    if (counted !== undefined) counted.addrs = addrs
  }

  /** The server is full: close the oldest connection that has not joined within `idleAfterMs`, if any, and say whether one went. */
  private evictIdle (): boolean {
    const now = this.now()
    for (const [conn, counted] of this.open) {
      if (now - counted.sinceMs < this.idleAfterMs) return false // the rest are younger
      if (counted.addrs !== undefined && counted.addrs.size > 0) {
        this.open.delete(conn) // joined: never evicted (and not looked at again)
        continue
      }
      this.open.delete(conn)
      counted.released = true
      this.release(counted.keys)
      this.metrics.limitHits.inc({ limit: 'evicted-unjoined' })
      conn.close()
      return true
    }
    return false
  }

  private release (keys: readonly string[]): void {
    for (const key of keys) {
      const n = (this.counts.get(key) ?? 1) - 1
      if (n <= 0) this.counts.delete(key)
      else this.counts.set(key, n)
    }
  }

  private refused (key: string, reason: string): void {
    this.metrics.limitHits.inc({ limit: reason.endsWith('[E_LIMIT_PEERS]') ? 'E_LIMIT_PEERS' : 'E_LIMIT_CONNECTIONS_PER_IP' })
    this.refusedSinceWarning++
    const now = Date.now()
    if (now - this.lastWarning < WARN_EVERY_MS) return
    this.logger.warn({ ip: key, reason, refused: this.refusedSinceWarning }, 'connections refused: a connection limit was reached')
    this.lastWarning = now
    this.refusedSinceWarning = 0
  }
}
