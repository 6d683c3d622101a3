/**
 * One identity, one place: who gets an address (or a peer id) another live session holds, or one
 * held for a client that is reconnecting, and the resume credentials that let a client take its
 * address back. Plain functions and maps; `Rendezvous` applies the outcome.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { checkAddress } from '../shared/address-parse.ts'
import type { Session } from './session.ts'

/** What the per-identity rules (reservations, holders) key by: the peer id of `addr`, or the address when it has none. */
export function identityKey (addr: string, strictMultiaddr: boolean): string {
  return checkAddress(addr, strictMultiaddr)?.peerId ?? addr
}

/** Bytes of a resume credential the server makes for a client that presented none (sent as hex). */
const RESUME_SECRET_BYTES = 32

/** A fresh resume credential, hex. */
export function newResumeSecret (): string {
  return randomBytes(RESUME_SECRET_BYTES).toString('hex')
}

/**
 * The SHA-256 (hex) of a resume credential: what Redis, the other nodes and the reservations hold,
 * never the credential itself (whoever reads it must not be able to resume the identity).
 */
export function hashSecret (secret: string): string {
  return createHash('sha256').update(secret).digest('hex')
}

/** Whether `given` equals `expected`, in time independent of where they differ. */
export function sameSecret (given: string | undefined, expected: string | undefined): boolean {
  if (given === undefined || expected === undefined) return false
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * What happens when `newcomer` joins an identity held by someone else (a live session, or a
 * client reconnecting within the grace):
 * - `resume`: the newcomer presents the holder's resume credential (the resume id a starsock
 *   client sends in every hello): it is the same client back (its stale socket is dropped
 *   without a word, unless that socket still holds other addresses);
 * - `in-use`: refused with `E_ADDRESS_IN_USE`. With the challenge off nothing proves the newcomer
 *   holds the key; a starsock newcomer that did not ask to take over;
 * - `replace`: a legacy holder loses the address silently, as in the original (it would not
 *   understand a notice);
 * - `displace`: a starsock holder is told (`starsock:displaced`) and dropped: the newcomer asked
 *   (`takeover`), or is a legacy client, which takes over as in the original.
 */
export type ClaimOutcome = 'resume' | 'in-use' | 'replace' | 'displace'

/** What the rules need to know of the one holding an identity. */
export interface HoldInfo {
  /** Whether the holder is a starsock client (sent `starsock:hello`). */
  starsock: boolean
  /** Its resume credential for the held address, if it has one (a live session here). */
  credential?: string | undefined
  /** Or only its `hashSecret` (a holder on another node, a reservation). */
  credentialHash?: string | undefined
}

/**
 * Decide a claim (see `ClaimOutcome`). `newcomerHash` is `hashSecret(newcomer.resume)`, needed
 * only when the holder is known by its hash (computed once per join by the caller).
 */
export function decideClaim (newcomer: Session, holder: HoldInfo, cryptoChallenge: boolean, newcomerHash?: string): ClaimOutcome {
  if (sameSecret(newcomer.resume, holder.credential) || sameSecret(newcomerHash, holder.credentialHash)) return 'resume'
  if (!cryptoChallenge) return 'in-use'
  if (!holder.starsock) return 'replace'
  if (newcomer.starsock && !newcomer.takeover) return 'in-use'
  return 'displace'
}

/**
 * Addresses starsock sessions hold, by peer id: for two starsock clients one peer id under two
 * spellings of the server's address (another host name, a proxy) is the same place. Legacy
 * clients keep the original's rule, which knows only exact addresses, and are not listed.
 */
export class StarsockHolders {
  private readonly byPeerId = new Map<string, Map<string, Session>>()

  /** `session` holds `peerId` under `addr`. */
  add (peerId: string, addr: string, session: Session): void {
    let held = this.byPeerId.get(peerId)
    if (held === undefined) {
      held = new Map()
      this.byPeerId.set(peerId, held)
    }
    held.set(addr, session)
  }

  /** `session` no longer holds `addr` (no-op when another session does). */
  remove (peerId: string, addr: string, session: Session): void {
    const held = this.byPeerId.get(peerId)
    if (held === undefined || held.get(addr) !== session) return
    held.delete(addr)
    if (held.size === 0) this.byPeerId.delete(peerId)
  }

  /** A session other than `newcomer` that holds `peerId`, and under which address. */
  other (peerId: string, newcomer: Session): { holder: Session, heldAddr: string } | undefined {
    for (const [heldAddr, holder] of this.byPeerId.get(peerId) ?? []) {
      if (holder !== newcomer) return { holder, heldAddr }
    }
    return undefined
  }
}

/** An identity held for a starsock client whose socket went without leaving. */
export interface Reservation {
  /** The address it held (legacy newcomers collide only with this exact string). */
  addr: string
  /** `hashSecret` of its resume credential (never the credential: reservations come from other nodes too). */
  credentialHash: string
  /** Where it was joined from, `ip:port`. */
  remote: string
  /** When the reservation ends, in ms since the epoch. */
  untilMs: number
}

/**
 * Identities held for their owner while it reconnects, by peer id (or by address when it has no
 * peer id), for `graceMs` after the socket went; at most `maxEntries` (the oldest go first).
 */
export class Reservations {
  private readonly byKey = new Map<string, Reservation>()

  constructor (
    private readonly graceMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now
  ) {}

  /** Entries held now (expired ones included until the next call that sweeps). */
  get size (): number {
    return this.byKey.size
  }

  /**
   * Hold `key` for the client whose credential hashes to `credentialHash` that held it under
   * `addr` from `remote`, for `graceMs` (another node's grace, from its leave entry) but never
   * longer than this node's; no-op with a grace of 0.
   */
  reserve (key: string, addr: string, credentialHash: string, remote: string, graceMs = this.graceMs): void {
    const ms = Math.min(graceMs, this.graceMs)
    if (ms <= 0) return
    this.sweep()
    // Re-inserted last: the map stays in expiry order (roughly, with a shorter grace from another
    // node: an entry the sweep misses still expires in `find` and counts against `maxEntries`).
    this.byKey.delete(key)
    this.byKey.set(key, { addr, credentialHash, remote, untilMs: this.now() + ms })
    for (const oldest of this.byKey.keys()) {
      if (this.byKey.size <= this.maxEntries) break
      this.byKey.delete(oldest)
    }
  }

  /** The live reservation of `key`, if any. */
  find (key: string): Reservation | undefined {
    const found = this.byKey.get(key)
    if (found === undefined) return undefined
    if (found.untilMs > this.now()) return found
    this.byKey.delete(key)
    return undefined
  }

  /** The identity is joined again (by its owner or a newcomer allowed to have it): no longer held. */
  drop (key: string): void {
    this.byKey.delete(key)
  }

  /** Drop expired entries (they are in expiry order). */
  private sweep (): void {
    const now = this.now()
    for (const [key, r] of this.byKey) {
      if (r.untilMs > now) break
      this.byKey.delete(key)
    }
  }
}
