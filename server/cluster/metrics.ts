/**
 * The control plane's rows of `/metrics` (registered on the server's registry): nodes seen, Redis
 * health and errors, the remote part of the directory, and what the plane did.
 */
import { Counter, Gauge } from 'prom-client'
import type { ServerMetrics } from '../metrics.ts'

/** Figures read at scrape time. */
export interface PlaneGauges {
  nodes: () => number
  redisUp: () => boolean
  remotePeers: () => number
}

/** The control plane's metrics. */
export class PlaneMetrics {
  /** Redis commands (script calls, reads of the log) sent, by kind: what a join or a dial costs. */
  readonly commands: Counter<'command'>
  /** Redis commands that failed (Redis down, a timeout, a script error). */
  readonly redisErrors: Counter
  /** Log entries or snapshot rows from Redis refused as malformed. */
  readonly badEntries: Counter
  /** Full re-reads of the directory (start, reconnect, trimmed log, a gap). */
  readonly resyncs: Counter
  /** Nodes this node removed after their key lapsed. */
  readonly reaped: Counter
  /** Local addresses taken by a later join on another node. */
  readonly displacedByNode: Counter

  constructor (metrics: ServerMetrics, gauges: PlaneGauges) {
    const registers = [metrics.registry]
    this.commands = new Counter({ name: 'starsock_cluster_redis_commands_total', help: 'Redis commands sent by the control plane, by kind', labelNames: ['command'] as const, registers })
    this.redisErrors = new Counter({ name: 'starsock_cluster_redis_errors_total', help: 'Redis commands that failed (Redis down, timeout, error)', registers })
    this.badEntries = new Counter({ name: 'starsock_cluster_bad_entries_total', help: 'directory entries from Redis refused as malformed', registers })
    this.resyncs = new Counter({ name: 'starsock_cluster_resyncs_total', help: 'full re-reads of the directory from Redis', registers })
    this.reaped = new Counter({ name: 'starsock_cluster_reaped_nodes_total', help: 'nodes this node removed after their key lapsed', registers })
    this.displacedByNode = new Counter({ name: 'starsock_cluster_displaced_total', help: 'local addresses taken by a later join on another node', registers })
    new Gauge({ name: 'starsock_cluster_nodes', help: 'member nodes seen, this one included', registers, collect () { this.set(gauges.nodes()) } })
    new Gauge({ name: 'starsock_cluster_redis_up', help: '1 while Redis answers', registers, collect () { this.set(gauges.redisUp() ? 1 : 0) } })
    new Gauge({ name: 'starsock_cluster_remote_peers', help: 'peers on other nodes in this node\'s copy of the directory', registers, collect () { this.set(gauges.remotePeers()) } })
  }
}
