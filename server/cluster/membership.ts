/**
 * The member nodes of a cluster as this node saw them last (from Redis's `starsock:nodes`, read
 * by the heartbeat and by snapshots), and what happens when one goes: its peers leave this node's
 * copy of the directory and the trunk drops its links. No Redis call here: the plane reads Redis
 * and tells this what it found.
 */
import type { Logger } from '../../shared/logger.ts'
import type { Rendezvous } from '../rendezvous.ts'
import type { ClusterDirectory } from './cluster-directory.ts'

/** What the membership is made with (by the plane). */
export interface MembershipDeps {
  /** This node's id (always a member; never taken for gone). */
  nodeId: string
  directory: ClusterDirectory
  rendezvous: Rendezvous
  logger: Logger
  /** Node `id` left the cluster: the trunk drops its links. */
  nodeGone: (id: string) => void
}

/** See the module comment. */
export class Membership {
  /** Members: id -> link address (this node's included). */
  private readonly members = new Map<string, string>()
  /** When each other node was last learned of (a log entry, a snapshot, a heartbeat), so a heartbeat read before it does not take it for gone. */
  private readonly learnedMs = new Map<string, number>()
  /** Nodes absent from Redis are not taken for gone before this (Redis may have restarted empty; they re-register). */
  private graceUntilMs = 0

  constructor (private readonly deps: MembershipDeps) {}

  /** Members seen last, this node included. */
  get size (): number {
    return this.members.size
  }

  /** The link address of member `id`; `undefined` when it is not one. */
  linkOf (id: string): string | undefined {
    return this.members.get(id)
  }

  /** Absent nodes are given until `untilMs` to register again (this node just wrote itself back into Redis). */
  graceUntil (untilMs: number): void {
    this.graceUntilMs = untilMs
  }

  /** Whether absent nodes are being waited for now. */
  inGrace (): boolean {
    return Date.now() < this.graceUntilMs
  }

  /** A log entry or a snapshot row of node `id` arrived: it exists, whatever a heartbeat read earlier said. */
  learned (id: string): void {
    if (id !== this.deps.nodeId) this.learnedMs.set(id, Date.now())
  }

  /** Node `id` is a member with `link`: logged when new to this node. */
  seen (id: string, link: string): void {
    const before = this.members.get(id)
    this.learned(id)
    this.members.set(id, link)
    if (before === undefined && id !== this.deps.nodeId) this.deps.logger.info({ node: id, link }, 'node joined the cluster')
  }

  /**
   * Redis listed `alive` (read at `askedMs`): members it no longer lists are gone, with their
   * peers, and so are nodes that hold peers in the copy without being members; not during the grace.
   */
  sweep (alive: Map<string, string>, askedMs: number): void {
    if (this.inGrace()) return
    const stale = (id: string): boolean => id !== this.deps.nodeId && !alive.has(id) && (this.learnedMs.get(id) ?? 0) < askedMs
    for (const id of [...this.members.keys()]) if (stale(id)) this.left(id)
    const orphans = new Set<string>()
    for (const e of this.deps.directory.remoteEntries()) {
      if (e.node !== undefined && !this.members.has(e.node) && stale(e.node)) orphans.add(e.node)
    }
    for (const id of orphans) this.left(id)
  }

  /** Node `id` left: its peers leave this copy, the trunk drops its links. */
  left (id: string): void {
    const known = this.members.delete(id)
    this.learnedMs.delete(id)
    let peers = 0
    for (const e of this.deps.directory.remoteEntries()) {
      if (e.node === id && this.deps.directory.dropRemote(e.addr, id)) {
        peers++
        this.deps.rendezvous.remoteLeft(e.addr)
      }
    }
    this.deps.nodeGone(id)
    if (known || peers > 0) this.deps.logger.info({ node: id, peers }, 'node left the cluster')
  }
}
