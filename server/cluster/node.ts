/**
 * One node of a cluster (`--redis`): makes the control plane and the trunk, and gives the
 * rendezvous its `RendezvousCluster` hooks. See `types.ts` for the parts.
 * BASE SKELETON (issue 18): the plane's helper fills this in.
 */
import type { Logger } from '../../shared/logger.ts'
import type { ServerMetrics } from '../metrics.ts'
import type { ResolvedServerOptions } from '../options.ts'
import type { Rendezvous } from '../rendezvous.ts'
import type { ClusterDirectory } from './cluster-directory.ts'
import type { ClusterStatus } from './types.ts'

/** This node's part in a cluster. */
export class ClusterNode {
  constructor (
    readonly rendezvous: Rendezvous,
    readonly directory: ClusterDirectory,
    readonly options: ResolvedServerOptions,
    readonly metrics: ServerMetrics,
    readonly logger: Logger
  ) {
    throw new Error('issue 18: ClusterNode is not built yet')
  }

  /** Listen on the internal address, connect to Redis (never waiting for it: joins are served locally and written when it answers), register this node. */
  async start (): Promise<void> {}

  /** Whether this node is ready: false while Redis has been unreachable longer than `clusterNodeTtlMs`. */
  ready (): boolean { return false }

  /** This node's view of the cluster. */
  status (): ClusterStatus { throw new Error('not built') }

  /** Clean shutdown, first step: remove this node's peers from the directory at once and deregister. */
  async leaving (): Promise<void> {}

  /** Last step: end the links and the Redis connections. */
  async close (): Promise<void> {}
}
