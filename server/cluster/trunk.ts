/**
 * The trunk: links to the other nodes of a cluster, dials to the node that holds the listener,
 * and the bytes of cross-node streams with a per-stream credit.
 * BASE SKELETON (issue 18): the trunk's helper fills this in. Until then `listen` binds nothing
 * and returns the configured address, and no dial leaves this node.
 */
import type { Logger } from '../../shared/logger.ts'
import type { ServerMetrics } from '../metrics.ts'
import type { ResolvedServerOptions } from '../options.ts'
import type { Rendezvous } from '../rendezvous.ts'
import type { Session } from '../session.ts'
import type { ClusterView, TrunkPart } from './types.ts'

/** What the trunk is made with (by `ClusterNode`). */
export interface TrunkDeps {
  rendezvous: Rendezvous
  view: ClusterView
  options: ResolvedServerOptions
  metrics: ServerMetrics
  logger: Logger
}

/** See the module comment. */
export class Trunk implements TrunkPart {
  constructor (private readonly deps: TrunkDeps) {}

  async listen (): Promise<string> {
    return this.deps.options.clusterAdvertise !== '' ? this.deps.options.clusterAdvertise : this.deps.options.clusterListen
  }

  remoteTarget (_to: string, _dialer: Session): Session | undefined {
    return undefined
  }

  nodeGone (_nodeId: string): void {}

  links (): number {
    return 0
  }

  async close (): Promise<void> {}
}
