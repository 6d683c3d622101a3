/**
 * The `info` lines of peers coming and going: one per join, leave and dial outcome, and one when
 * a dial's two relayed streams are over. Short peer ids, the client kind, the transport, durations
 * and byte counts; never a key, signature, nonce, token, resume id, refusal text or payload byte.
 * The rendezvous caps its logger (`cappedLogger` with `PEER_LOG_CAP`), so a flood of joins or
 * dials costs a bounded number of lines. `docs/logs.md` lists the fields.
 */
import { StarsockError } from '../shared/errors.ts'
import type { LogCap, Logger } from '../shared/logger.ts'
import { checkAddress } from '../shared/address-parse.ts'
import type { Session } from './session.ts'

/**
 * The cap on peer lines: a burst of 200 (a restart's wave of rejoins) then 20 a second, about
 * 4 KB/s of JSON at most however many joins and dials arrive.
 */
export const PEER_LOG_CAP: LogCap = { linesPerSecond: 20, burstLines: 200 }

/** Characters of an address without a peer id that a line keeps. */
const ADDRESS_CHARS = 64

/**
 * A peer id as `QmYyQS…a3Fq9s` (its first and last six characters), or the address, cut short,
 * when it has none (or is of a shape only the multiaddr library reads, and no join loaded it yet).
 */
export function shortPeer (addr: unknown): string {
  if (typeof addr !== 'string') return typeof addr
  const id = checkAddress(addr, false)?.peerId
  if (id === undefined) return addr.length > ADDRESS_CHARS ? addr.slice(0, ADDRESS_CHARS - 1) + '…' : addr
  return id.length > 14 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id
}

/** The code of a failure (`E_INTERNAL` for what is not a `StarsockError`: a bug, logged apart). */
function codeOf (err: unknown): string {
  return err instanceof StarsockError ? err.code : 'E_INTERNAL'
}

/** What every line about a session says: its client kind and transport. */
function who (session: Session): { client: 'starsock' | 'legacy', transport: string | undefined } {
  return { client: session.starsock ? 'starsock' : 'legacy', transport: session.endpoint.transportName?.() }
}

/** The peer lines of one server. */
export class PeerLog {
  private readonly log: Logger

  /** Lines go to `logger` (capped: see the module comment) under `starsock:server:peers`. */
  constructor (logger: Logger) {
    this.log = logger.child({ ns: 'starsock:server:peers' })
  }

  /** `session` joined `addr`. */
  joined (session: Session, addr: string): void {
    this.log.info({ event: 'join', peer: shortPeer(addr), ...who(session), remote: session.remote, ms: Date.now() - session.connectedMs }, 'peer joined')
  }

  /** A join of `addr` by `session` failed with `err`. */
  joinFailed (session: Session, addr: unknown, err: unknown): void {
    this.log.info({ event: 'join', peer: shortPeer(addr), ...who(session), remote: session.remote, code: codeOf(err) }, 'join refused')
  }

  /** `session` no longer holds `addr`: `why` is `left`, `displaced`, or the disconnect reason. */
  left (session: Session, addr: string, why: string): void {
    this.log.info({ event: 'leave', peer: shortPeer(addr), ...who(session), why, s: Math.round((Date.now() - session.connectedMs) / 1000) }, 'peer left')
  }

  /** A dial by `session` from `from` to `to` settled after `ms`: accepted, refused by the listener, or failed with `err`. */
  dialed (session: Session, dial: { from: unknown, to: unknown, dialId: unknown, secure: boolean, ms: number }, outcome: { refused: boolean } | { err: unknown }): void {
    const fields = { event: 'dial', from: shortPeer(dial.from), to: shortPeer(dial.to), dial: shortDialId(dial.dialId), ...who(session), secure: dial.secure, ms: dial.ms }
    if ('err' in outcome) this.log.info({ ...fields, code: codeOf(outcome.err) }, 'dial failed')
    else if (outcome.refused) this.log.info({ ...fields, code: 'E_DIAL_REFUSED' }, 'dial refused by the listener')
    else this.log.info(fields, 'dial ok')
  }
}

/** A dial id as logged: enough to match a dial with its streams' end, never a long client string. */
export function shortDialId (dialId: unknown): string {
  return typeof dialId === 'string' ? dialId.slice(0, 16) : typeof dialId
}
