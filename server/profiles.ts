/**
 * Profiles (issue 17): the display name and kind each starsock client gives, kept with its
 * session and shown to other starsock clients as the server believes it. One place for the
 * server's rules, so a shared peer directory (issue 18) can carry the same small value.
 */
import { checkAddress } from '../shared/address-parse.ts'
import { StarsockError } from '../shared/errors.ts'
import type { PeerProfile } from '../shared/profile.ts'
import { PROFILE_CHANGES_PER_IP_PER_MINUTE, PROFILE_CHANGES_PER_MINUTE, PROFILE_CHANGE_BURST } from './constants.ts'
import { TokenBucket, type WindowCounter } from './rate-limit.ts'
import type { Session } from './session.ts'

/**
 * The profile of `session` as others see it: the kind `gateway` only for a session joined under a
 * peer id in `gatewayPeers` (the server's own gateway peer), anyone else claiming it is `node`.
 * `undefined` for a session that gave none (a legacy or older starsock client).
 */
export function shownProfile (session: Session, gatewayPeers: ReadonlySet<string>): PeerProfile | undefined {
  const claimed = session.profile
  if (claimed === undefined || claimed.kind !== 'gateway') return claimed
  for (const addr of session.addrs) {
    const peerId = checkAddress(addr, false)?.peerId
    if (peerId !== undefined && gatewayPeers.has(peerId)) return claimed
  }
  return { ...claimed, kind: 'node' }
}

/**
 * Count one profile change of a joined `session` (each is announced to every other peer: O(peers)
 * messages) against its own limit and against `perIp` under `ipKey` (its client IP's key: sockets
 * are free); throws `E_LIMIT_PROFILE_RATE` past `PROFILE_CHANGES_PER_MINUTE` or
 * `PROFILE_CHANGES_PER_IP_PER_MINUTE`.
 */
export function takeProfileChange (session: Session, perIp: WindowCounter, ipKey: string): void {
  session.profileBucket ??= new TokenBucket(PROFILE_CHANGES_PER_MINUTE / 60, PROFILE_CHANGE_BURST)
  if (!session.profileBucket.take()) {
    throw new StarsockError('E_LIMIT_PROFILE_RATE', `Profile change rate limit reached (${PROFILE_CHANGES_PER_MINUTE} a minute, bursts of ${PROFILE_CHANGE_BURST})`)
  }
  if (!perIp.hit(ipKey)) {
    throw new StarsockError('E_LIMIT_PROFILE_RATE', `Profile change rate limit of this IP address reached (${PROFILE_CHANGES_PER_IP_PER_MINUTE} a minute)`)
  }
}
