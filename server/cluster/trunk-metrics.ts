/** The trunk's rows of `/metrics`, on the server's registry. */
import { Counter, Gauge } from 'prom-client'
import type { ServerMetrics } from '../metrics.ts'
import type { RefusalReason } from './links.ts'

/** How a cross-node dial ended, on the dialer's node. */
export type CrossDialOutcome = 'accepted' | 'refused' | 'failed'

/** Metrics of one node's trunk. */
export class TrunkMetrics {
  readonly bytes: Counter<'direction'>
  readonly dials: Counter<'outcome'>
  readonly refused: Counter<'reason'>
  readonly badMessages: Counter<'what'>

  /** `links` is read at scrape time. */
  constructor (metrics: ServerMetrics, links: () => number) {
    const registers = [metrics.registry]
    this.bytes = new Counter({ name: 'starsock_cluster_trunk_bytes_total', help: 'stream bytes sent (out) and received (in) on links to other nodes', labelNames: ['direction'] as const, registers })
    this.dials = new Counter({ name: 'starsock_cluster_dials_total', help: 'dials to peers on other nodes, by outcome (accepted, refused, failed)', labelNames: ['outcome'] as const, registers })
    this.refused = new Counter({ name: 'starsock_cluster_link_refused_total', help: 'connections on the internal port (or links this node opened) refused: secret, unknown-node, bad-message, timeout, too-many, wrong-node', labelNames: ['reason'] as const, registers })
    this.badMessages = new Counter({ name: 'starsock_cluster_link_bad_messages_total', help: 'malformed messages on authenticated links (the link is cut)', labelNames: ['what'] as const, registers })
    new Gauge({ name: 'starsock_cluster_links', help: 'links to other nodes open now', registers, collect () { this.set(links()) } })
  }

  /** A refusal, counted. */
  refusal (reason: RefusalReason): void {
    this.refused.inc({ reason })
  }
}
