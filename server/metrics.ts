/**
 * Prometheus metrics: the original server's names (so existing dashboards keep working) plus
 * streams, relayed and buffered bytes, and limits hit. One registry per server instance.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'

/** The metrics of one server. */
export class ServerMetrics {
  /** Registry to serve at `/metrics`. */
  readonly registry = new Registry()
  readonly peers = new Gauge({ name: 'rendezvous_peers', help: 'peers online now', registers: [this.registry] })
  readonly joinsTotal = new Counter({ name: 'rendezvous_joins_total', help: 'all joins since server started', registers: [this.registry] })
  readonly joinsSuccess = new Counter({ name: 'rendezvous_joins_total_success', help: 'successfully completed joins since server started', registers: [this.registry] })
  readonly joinsFailure = new Counter({ name: 'rendezvous_joins_total_failure', help: 'failed joins since server started', registers: [this.registry] })
  readonly dialsTotal = new Counter({ name: 'rendezvous_dials_total', help: 'all dials since server started', registers: [this.registry] })
  readonly dialsSuccess = new Counter({ name: 'rendezvous_dials_total_success', help: 'successfully completed dials since server started', registers: [this.registry] })
  readonly dialsFailure = new Counter({ name: 'rendezvous_dials_total_failure', help: 'failed dials since server started', registers: [this.registry] })
  readonly sockets = new Gauge({ name: 'starsock_sockets', help: 'connected sockets now', registers: [this.registry] })
  readonly streams = new Gauge({ name: 'starsock_streams', help: 'relayed one-way streams open now', registers: [this.registry] })
  readonly relayedBytes = new Counter({ name: 'starsock_relayed_bytes_total', help: 'stream bytes forwarded to receivers', registers: [this.registry] })
  readonly bufferedBytes: Gauge
  readonly announcements = new Counter({ name: 'starsock_ws_peer_messages_total', help: 'ws-peer messages sent', registers: [this.registry] })
  readonly announcementsHeld = new Counter({ name: 'starsock_announcements_held_total', help: 'joins not announced at once to legacy clients (budget: the rotation brings them), peer-batch entries dropped at the cap (batch-cap)', labelNames: ['reason'] as const, registers: [this.registry] })
  readonly limitHits = new Counter({ name: 'starsock_limit_hits_total', help: 'requests or streams refused by a limit', labelNames: ['limit'] as const, registers: [this.registry] })
  readonly streamFailures = new Counter({ name: 'starsock_stream_failures_total', help: 'streams that ended with an error', labelNames: ['code'] as const, registers: [this.registry] })
  readonly displaced = new Counter({ name: 'starsock_displaced_total', help: 'addresses moved from one live socket to another: takeover (asked), legacy-join (a legacy client joined), resume (own stale socket)', labelNames: ['reason'] as const, registers: [this.registry] })
  readonly addressInUse = new Counter({ name: 'starsock_address_in_use_total', help: 'joins refused with E_ADDRESS_IN_USE, by holder: a client on this node (here), one reconnecting within the grace (reserved), one on another cluster node (other-node)', labelNames: ['holder'] as const, registers: [this.registry] })
  readonly badRequests = new Counter({ name: 'starsock_bad_requests_total', help: 'requests with bad arguments or for unknown streams', labelNames: ['event'] as const, registers: [this.registry] })

  readonly udpPackets = new Counter({ name: 'starsock_udp_packets_total', help: 'UDP relay packets forwarded', registers: [this.registry] })
  readonly udpBytes = new Counter({ name: 'starsock_udp_bytes_total', help: 'UDP relay payload bytes forwarded', registers: [this.registry] })
  readonly udpDropped = new Counter({ name: 'starsock_udp_dropped_total', help: 'UDP relay packets dropped, by cause', labelNames: ['cause'] as const, registers: [this.registry] })
  readonly udpEnded = new Counter({ name: 'starsock_udp_allocations_ended_total', help: 'UDP relay allocations ended, by cause', labelNames: ['cause'] as const, registers: [this.registry] })

  /** Gauges of the UDP relay, read at scrape time. */
  udpGauges (read: () => { allocations: number, endpoints: number }): void {
    new Gauge({ name: 'starsock_udp_allocations', help: 'UDP relay allocations held now', registers: [this.registry], collect () { this.set(read().allocations) } })
    new Gauge({ name: 'starsock_udp_endpoints', help: 'UDP relay endpoints registered now', registers: [this.registry], collect () { this.set(read().endpoints) } })
  }

  /** `bufferedBytes` is read at scrape time; `defaults` adds Node's process metrics. */
  constructor (defaults: boolean, bufferedBytes: () => number) {
    this.bufferedBytes = new Gauge({
      name: 'starsock_buffered_bytes',
      help: 'stream bytes held in server queues now',
      registers: [this.registry],
      collect () { this.set(bufferedBytes()) }
    })
    if (defaults) collectDefaultMetrics({ register: this.registry })
  }
}
