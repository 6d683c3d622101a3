/**
 * One identity, one place: who gets an address (or a peer id) another live session holds, and
 * the resume secrets that let a client take its address back from its own stale socket.
 * Plain functions and a map; `Rendezvous` applies the outcome.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { Session } from './session.ts'

/** Bytes of a resume secret (sent as hex). */
const RESUME_SECRET_BYTES = 32

/** A fresh resume secret, hex. */
export function newResumeSecret (): string {
  return randomBytes(RESUME_SECRET_BYTES).toString('hex')
}

/** Whether `given` equals `expected`, in time independent of where they differ. */
export function sameSecret (given: string | undefined, expected: string | undefined): boolean {
  if (given === undefined || expected === undefined) return false
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * What happens when `newcomer` joins while `holder` holds the identity under `heldAddr`:
 * - `resume`: the newcomer presents the holder's resume secret (or the one the holder itself
 *   resumed with, in case the ack with the newer one was lost): the holder is this client's stale
 *   socket (a network drop the server has not noticed yet), dropped without a word;
 * - `in-use`: refused with `E_ADDRESS_IN_USE`. With the challenge off nothing proves the newcomer
 *   holds the key; a starsock newcomer that did not ask to take over;
 * - `replace`: a legacy holder loses the address silently, as in the original (it would not
 *   understand a notice);
 * - `displace`: a starsock holder is told (`starsock:displaced`) and dropped: the newcomer asked
 *   (`takeover`), or is a legacy client, which takes over as in the original.
 */
export type ClaimOutcome = 'resume' | 'in-use' | 'replace' | 'displace'

/** Decide a claim (see `ClaimOutcome`). */
export function decideClaim (newcomer: Session, holder: Session, heldAddr: string, cryptoChallenge: boolean): ClaimOutcome {
  if (sameSecret(newcomer.resume, holder.resumeSecrets.get(heldAddr)) || sameSecret(newcomer.resume, holder.resumedWith)) return 'resume'
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
