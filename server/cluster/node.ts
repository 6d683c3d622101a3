/**
 * One node of a cluster (`--redis`): makes the control plane and the trunk, and gives the
 * rendezvous its `RendezvousCluster` hooks. See `types.ts` for the parts, docs/cluster.md for how
 * they work together.
 */
import type { Logger } from '../../shared/logger.ts'
import type { PeerProfile } from '../../shared/profile.ts'
import type { ServerMetrics } from '../metrics.ts'
import type { ResolvedServerOptions } from '../options.ts'
import type { Rendezvous } from '../rendezvous.ts'
import type { Session } from '../session.ts'
import type { ClusterDirectory } from './cluster-directory.ts'
import { ControlPlane } from './plane.ts'
import { Trunk } from './trunk.ts'
import type { ClusterStatus, HolderClaim, JoinDecision, LeaveReservation, RemoteHold, RendezvousCluster } from './types.ts'

/** This node's part in a cluster. */
export class ClusterNode implements RendezvousCluster {
  /** The control plane (Redis): directory and membership. */
  readonly plane: ControlPlane
  /** Links to the other nodes. */
  readonly trunk: Trunk

  constructor (
    readonly rendezvous: Rendezvous,
    readonly directory: ClusterDirectory,
    readonly options: ResolvedServerOptions,
    readonly metrics: ServerMetrics,
    readonly logger: Logger
  ) {
    const log = logger.child({ ns: 'starsock:server:cluster' })
    this.plane = new ControlPlane({ rendezvous, directory, options, metrics, logger: log, nodeGone: (id) => this.trunk.nodeGone(id) })
    this.trunk = new Trunk({ rendezvous, view: this.plane, options, metrics, logger: log })
    rendezvous.cluster = this
  }

  /** This node's id. */
  get nodeId (): string {
    return this.plane.nodeId
  }

  /**
   * Listen on the internal address, connect to Redis and register this node. Settles once
   * registered, or after a few seconds when Redis does not answer (joins are then served locally
   * and written when it does).
   */
  async start (): Promise<void> {
    const link = await this.trunk.listen()
    await this.plane.start(link)
  }

  /** Whether this node is ready: false while Redis has been unreachable longer than `clusterNodeTtlMs`. */
  ready (): boolean {
    return this.plane.ready()
  }

  /** This node's view of the cluster. */
  status (): ClusterStatus {
    return {
      nodeId: this.plane.nodeId,
      nodes: this.plane.nodeCount,
      redis: this.plane.redisAnswers,
      remotePeers: this.directory.remoteSize,
      links: this.trunk.links()
    }
  }

  /** Clean shutdown, first step: remove this node's peers from the directory at once and deregister. */
  async leaving (): Promise<void> {
    await this.plane.leaving()
  }

  /** Last step: end the links and the Redis connections. */
  async close (): Promise<void> {
    await this.plane.close()
    await this.trunk.close()
  }

  remoteTarget = (to: string, dialer: Session): Session | undefined => this.trunk.remoteTarget(to, dialer)

  remoteProfile = (addr: string): PeerProfile | undefined => this.plane.remoteProfile(addr)

  remoteHolder = (addr: string, peerId: string | undefined, newcomer: Session): RemoteHold | undefined => this.plane.remoteHolder(addr, peerId, newcomer.starsock)

  joined = (_session: Session, addr: string, profile: PeerProfile | undefined, claim: HolderClaim, decision?: JoinDecision): void => this.plane.joined(addr, profile, claim, decision)

  left = (_session: Session, addr: string, reserved?: LeaveReservation): void => this.plane.left(addr, reserved)

  profileChanged = (_session: Session, addrs: readonly string[], profile: PeerProfile): void => this.plane.profileChanged(addrs, profile)
}
