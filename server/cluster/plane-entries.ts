/**
 * What the control plane reads from Redis, checked before use: change-log entries, the peers
 * hash and the nodes hash. Anything else on Redis (a hostile or broken writer) is dropped and
 * counted, never trusted: addresses, node ids and links are bounded strings, sequence numbers
 * safe integers, profiles checked as a client's would be.
 */
import { MAX_ADDRESS_CHARS } from '../../shared/constants.ts'
import { checkProfile, type PeerProfile } from '../../shared/profile.ts'
import { StarsockError } from '../../shared/errors.ts'

/** Longest node id or link address accepted from Redis. */
export const MAX_NODE_FIELD_CHARS = 256

/** One change-log entry. */
export interface LogEntry {
  /** Stream id, the follower's cursor. */
  id: string
  t: 'join' | 'leave' | 'profile'
  addr: string
  node: string
  seq: number
  profile: PeerProfile | undefined
}

/** One row of the peers hash. */
export interface PeerRow { addr: string, node: string, seq: number, profile: PeerProfile | undefined }

/** A snapshot of the directory (the `snapshot` script's reply, checked). */
export interface Snapshot {
  /** Log id to follow from. */
  lastId: string
  seq: number
  peers: PeerRow[]
  /** Member nodes: id -> link. */
  nodes: Map<string, string>
  /** Rows refused. */
  bad: number
}

const LOG_TYPES = new Set(['join', 'leave', 'profile'])

function isText (v: unknown, max: number): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= max
}

/** A sequence number as Redis returned it (a number or its decimal text), or `undefined`. */
export function readSeq (v: unknown): number | undefined {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : NaN
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined
}

/** A profile as stored (JSON text or an already-decoded value): `undefined` for none or a bad one. */
export function readStoredProfile (v: unknown): PeerProfile | undefined {
  let value = v
  if (typeof v === 'string') {
    if (v.length > 2048) return undefined
    try {
      value = JSON.parse(v)
    } catch {
      return undefined
    }
  }
  if (value === null || value === undefined) return undefined
  const checked = checkProfile(value)
  return checked instanceof StarsockError ? undefined : checked
}

/** One XREAD row `[id, [field, value, ...]]`, checked; `undefined` when malformed. */
export function readLogEntry (row: unknown): LogEntry | undefined {
  if (!Array.isArray(row) || typeof row[0] !== 'string' || !Array.isArray(row[1])) return undefined
  const fields = row[1] as unknown[]
  const f = new Map<string, unknown>()
  for (let i = 0; i + 1 < fields.length && i < 20; i += 2) f.set(String(fields[i]), fields[i + 1])
  const t = f.get('t')
  const addr = f.get('a')
  const node = f.get('n')
  const seq = readSeq(f.get('s'))
  if (typeof t !== 'string' || !LOG_TYPES.has(t) || !isText(addr, MAX_ADDRESS_CHARS) || !isText(node, MAX_NODE_FIELD_CHARS) || seq === undefined) return undefined
  return { id: row[0], t: t as LogEntry['t'], addr, node, seq, profile: readStoredProfile(f.get('p')) }
}

/** One peers-hash row (`addr`, JSON `{ n, s, p }`), checked; `undefined` when malformed. */
export function readPeerRow (addr: unknown, json: unknown): PeerRow | undefined {
  if (!isText(addr, MAX_ADDRESS_CHARS) || typeof json !== 'string' || json.length > 4096) return undefined
  let v: unknown
  try {
    v = JSON.parse(json)
  } catch {
    return undefined
  }
  if (typeof v !== 'object' || v === null) return undefined
  const { n, s, p } = v as Record<string, unknown>
  const seq = readSeq(s)
  if (!isText(n, MAX_NODE_FIELD_CHARS) || seq === undefined) return undefined
  return { addr, node: n, seq, profile: readStoredProfile(p) }
}

/** The `snapshot` script's reply, checked; throws a `TypeError` when its shape is wrong altogether. */
export function readSnapshot (reply: unknown): Snapshot {
  if (!Array.isArray(reply) || typeof reply[0] !== 'string' || !Array.isArray(reply[2]) || !Array.isArray(reply[3])) {
    throw new TypeError('snapshot reply has the wrong shape')
  }
  const seq = readSeq(reply[1]) ?? 0
  const flat = reply[2] as unknown[]
  const peers: PeerRow[] = []
  let bad = 0
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const row = readPeerRow(flat[i], flat[i + 1])
    if (row === undefined) bad++
    else peers.push(row)
  }
  const nodes = readNodes(reply[3] as unknown[], 2)
  return { lastId: reply[0], seq, peers, nodes: nodes.nodes, bad: bad + nodes.bad }
}

/** Flat `id, link[, alive]` triples or pairs (`width`), checked: the members, those alive, rows refused. */
export function readNodes (flat: unknown[], width: 2 | 3, from = 0): { nodes: Map<string, string>, lapsed: string[], bad: number } {
  const nodes = new Map<string, string>()
  const lapsed: string[] = []
  let bad = 0
  for (let i = from; i + width - 1 < flat.length; i += width) {
    const id = flat[i]
    const link = flat[i + 1]
    if (!isText(id, MAX_NODE_FIELD_CHARS) || !isText(link, MAX_NODE_FIELD_CHARS)) {
      bad++
      continue
    }
    if (width === 3 && flat[i + 2] !== 1) lapsed.push(id)
    else nodes.set(id, link)
  }
  return { nodes, lapsed, bad }
}
