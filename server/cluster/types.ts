/**
 * The contract between the parts of a cluster of server nodes (issue 18), and between them and
 * the rendezvous. A node with `--redis` runs:
 * - the control plane (`plane.ts`, `cluster-directory.ts`): Redis holds the peer directory (a hash
 *   of address -> node and an ordered change log) and node membership (a key per node with a
 *   time-to-live); every node keeps an in-memory copy fed by the log, so lookups stay local and
 *   synchronous. It implements `ClusterView`.
 * - the trunk (`trunk.ts`, `links.ts`): one authenticated WebSocket per pair of nodes on the
 *   internal address (`--cluster-listen`), carrying dials to the node that holds the listener and
 *   the bytes of cross-node streams, with a per-stream credit. It implements `TrunkPart`.
 * `node.ts` makes both and gives the rendezvous its `RendezvousCluster` hooks.
 */
import type { PeerProfile } from '../../shared/profile.ts'
import type { Session } from '../session.ts'

/**
 * What the cluster knows of the client holding an address (the `c` field of its Redis row and
 * join entry): enough for the identity rules on another node, never the resume credential itself.
 */
export interface HolderClaim {
  /** Whether it is a starsock client (sent `starsock:hello`). */
  starsock: boolean
  /** SHA-256 (hex) of its resume credential for the address (`hashSecret`); none for a legacy client. */
  credentialHash: string | undefined
  /** Where it joined from, `ip:port` (for the refusal message and `starsock:displaced`'s `by`). */
  remote: string
}

/** What the joining node decided about the holder on another node (`decideClaim`), as its join entry carries it. */
export type RemoteOutcome = 'resume' | 'replace' | 'takeover' | 'legacy-join'

/** The decision a join entry carries (fields `o` and `x`): the holder's node applies it. */
export interface JoinDecision {
  outcome: RemoteOutcome
  /** The address the holder loses when it held the peer id under another spelling; `undefined` for the same address. */
  takes: string | undefined
}

/** A starsock client's identity held for it on every node while it reconnects (a leave entry's `c`). */
export interface LeaveReservation {
  credentialHash: string
  remote: string
  /** How long, from when a node reads it. */
  graceMs: number
}

/** A client on another node holding the identity a local session joins. */
export interface RemoteHold {
  /** The address it holds (the joined one, or the same peer id under another spelling). */
  heldAddr: string
  claim: HolderClaim
}

/** What the rendezvous asks of the cluster; absent on a single node. */
export interface RendezvousCluster {
  /**
   * The client on another node holding `addr`, or (for a starsock `newcomer` with `peerId`) a
   * starsock client there holding `peerId` under another spelling; `undefined` when none is known
   * with its claim (a row written by an older node has none: the later join wins).
   */
  remoteHolder: (addr: string, peerId: string | undefined, newcomer: Session) => RemoteHold | undefined
  /**
   * A stand-in session for the peer at `to` when another node holds it (a new one per dial; its
   * endpoint's `request(ss-incomming)` asks that node), else `undefined`. Never for a dialer that
   * is itself a stand-in (a dial never goes on to a third node).
   */
  remoteTarget: (to: string, dialer: Session) => Session | undefined
  /** The profile of the peer at `addr` on another node, as others see it; `undefined` when none or not remote. */
  remoteProfile: (addr: string) => PeerProfile | undefined
  /**
   * A local session joined `addr` (the directory has it now), with its profile as others see it,
   * its claim, and what was decided about a holder on another node (`remoteHolder`), if any.
   */
  joined: (session: Session, addr: string, profile: PeerProfile | undefined, claim: HolderClaim, decision?: JoinDecision) => void
  /** A local session no longer holds `addr` (the directory released it); a dropped starsock client's identity stays `reserved`. */
  left: (session: Session, addr: string, reserved?: LeaveReservation) => void
  /** A local session that holds `addrs` has a new profile (as others see it). */
  profileChanged: (session: Session, addrs: readonly string[], profile: PeerProfile) => void
}

/** What the trunk needs to know of the cluster: the plane implements it from Redis. */
export interface ClusterView {
  /** This node's id (random per start). */
  readonly nodeId: string
  /** The node holding `addr` when that is another node; `undefined` when it is local or unknown. */
  remoteNodeOf: (addr: string) => string | undefined
  /** The internal address (`host:port`) node `nodeId` advertised, while it is a member; else `undefined`. */
  linkAddressOf: (nodeId: string) => string | undefined
}

/** The trunk as the node sees it. */
export interface TrunkPart {
  /** Listen on the internal address; settles with the bound `host:port` (what the plane advertises). */
  listen: () => Promise<string>
  /** See `RendezvousCluster.remoteTarget`. */
  remoteTarget: (to: string, dialer: Session) => Session | undefined
  /** Node `nodeId` left the cluster (its key lapsed, or it said goodbye): drop its links; their streams fail. */
  nodeGone: (nodeId: string) => void
  /** Links open now, by node id. */
  links: () => number
  /** End every link (after the rendezvous failed its streams). */
  close: () => Promise<void>
}

/** A node's view of the cluster, for `/status.json` and logs. */
export interface ClusterStatus {
  nodeId: string
  /** Member nodes seen (this one included). */
  nodes: number
  /** Whether Redis answers now. */
  redis: boolean
  /** Peers on other nodes in this node's copy of the directory. */
  remotePeers: number
  /** Node links open now. */
  links: number
}
