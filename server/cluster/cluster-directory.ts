/**
 * The peer directory of a cluster node: every joined address of the cluster in this process's
 * memory (local ones by session id, the others by node id), fed by Redis's change log.
 * BASE SKELETON (issue 18): the plane's helper fills this in.
 */
import { MemoryPeerDirectory, type PeerDirectory } from '../peer-directory.ts'

/** See the module comment. `owner` answers only for local addresses; `nodeOf` for the others. */
export class ClusterDirectory extends MemoryPeerDirectory implements PeerDirectory {}
