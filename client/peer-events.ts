/** The states, events and call options of a peer (`StarsockPeer`). */
import type { StarsockError } from '../shared/errors.ts'
import type { Connection } from './connection.ts'
import type { PeerInfo } from './peer-list.ts'

/** Where the peer is with the server. */
export type PeerState = 'connecting' | 'joined' | 'reconnecting' | 'closed'

/** Options of calls that wait. */
export interface CallOptions {
  signal?: AbortSignal
  timeoutMs?: number
}

/** Events of a peer. */
export interface PeerEvents extends Record<string, unknown> {
  state: PeerState
  'peer:join': PeerInfo
  'peer:leave': PeerInfo
  /** A known peer changed its profile (display name or kind); the info carries the new one. */
  'peer:profile': PeerInfo
  connection: Connection
  error: StarsockError
}
