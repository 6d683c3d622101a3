/**
 * What the control plane reads from Redis, checked before use: change-log entries, the peers
 * hash and the nodes hash. Anything else on Redis (a hostile or broken writer) is dropped and
 * counted, never trusted: addresses, node ids and links are bounded strings, sequence numbers
 * safe integers, profiles checked as a client's would be.
 */
import { MAX_ADDRESS_CHARS } from '../../shared/constants.ts'
import { checkProfile, type PeerProfile } from '../../shared/profile.ts'
import { StarsockError } from '../../shared/errors.ts'
import type { HolderClaim, JoinDecision, LeaveReservation, RemoteOutcome } from './types.ts'

/** Longest node id or link address accepted from Redis. */
export const MAX_NODE_FIELD_CHARS = 256

/** Longest `ip:port` (an IPv6 one in brackets) accepted as a holder's remote. */
export const MAX_REMOTE_CHARS = 64
/** Longest claim or reservation JSON accepted from Redis. */
const MAX_CLAIM_CHARS = 512
/** Longest reservation accepted from another node's leave entry (a day; the local grace bounds it again). */
export const MAX_RESERVATION_MS = 86_400_000

/** One change-log entry. */
export interface LogEntry {
  /** Stream id, the follower's cursor. */
  id: string
  t: 'join' | 'leave' | 'profile'
  addr: string
  node: string
  seq: number
  profile: PeerProfile | undefined
  /** A join's holder claim (`c`); `undefined` from a node that wrote none. */
  claim?: HolderClaim | undefined
  /** A join's decision about the holder on another node (`o`, `x`). */
  decision?: JoinDecision | undefined
  /** A leave's reservation (`c`): a starsock client dropped without leaving. */
  reservation?: LeaveReservation | undefined
}

/** One row of the peers hash. */
export interface PeerRow {
  addr: string
  node: string
  seq: number
  profile: PeerProfile | undefined
  /** Who holds it (`c`); `undefined` from a node that wrote none. */
  claim?: HolderClaim | undefined
  /** For a log entry: what its node decided about the holder (see `LogEntry.decision`). */
  decision?: JoinDecision | undefined
}

/** Stands for "malformed" among the readers below (a missing field is `undefined`). */
const BAD = Symbol('bad')
type Read<T> = T | undefined | typeof BAD

const OUTCOMES = new Set<string>(['resume', 'replace', 'takeover', 'legacy-join'])
const HASH = /^[0-9a-f]{64}$/

/** A remote as written: within what every node reads back (`readClaim`), so a row is never refused for it. */
function writtenRemote (remote: string): string {
  return remote === '' ? '?' : remote.slice(0, MAX_REMOTE_CHARS)
}

/** A claim as the plane writes it (`c`): `{ k: 0|1, h?: hash, r: remote }`. */
export function claimJson (claim: HolderClaim): string {
  const r = writtenRemote(claim.remote)
  return JSON.stringify(claim.credentialHash === undefined
    ? { k: claim.starsock ? 1 : 0, r }
    : { k: claim.starsock ? 1 : 0, h: claim.credentialHash, r })
}

/** A reservation as the plane writes it in a leave entry (`c`): `{ h, r, g }`, the grace within `MAX_RESERVATION_MS`. */
export function reservationJson (r: LeaveReservation): string {
  return JSON.stringify({ h: r.credentialHash, r: writtenRemote(r.remote), g: Math.min(Math.max(1, Math.floor(r.graceMs)), MAX_RESERVATION_MS) })
}

/** JSON text of at most `max` characters that is an object, or `BAD`; `undefined` when absent. */
function readObject (v: unknown, max = MAX_CLAIM_CHARS): Read<Record<string, unknown>> {
  if (v === undefined) return undefined
  if (typeof v !== 'string' || v.length > max) return BAD
  let parsed: unknown
  try {
    parsed = JSON.parse(v)
  } catch {
    return BAD
  }
  return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? parsed as Record<string, unknown> : BAD
}

/** A claim (`c` of a row or join entry), checked. */
export function readClaim (v: unknown): Read<HolderClaim> {
  const o = readObject(v)
  if (o === undefined || o === BAD) return o
  const { k, h, r } = o
  if ((k !== 0 && k !== 1) || !isText(r, MAX_REMOTE_CHARS) || (h !== undefined && (typeof h !== 'string' || !HASH.test(h)))) return BAD
  // A legacy client has no credential: a hash with it is not something this code writes.
  if (k === 0 && h !== undefined) return BAD
  return { starsock: k === 1, credentialHash: h, remote: r }
}

/** A reservation (`c` of a leave entry), checked. */
export function readReservation (v: unknown): Read<LeaveReservation> {
  const o = readObject(v)
  if (o === undefined || o === BAD) return o
  const { h, r, g } = o
  if (typeof h !== 'string' || !HASH.test(h) || !isText(r, MAX_REMOTE_CHARS) || typeof g !== 'number' || !Number.isSafeInteger(g) || g < 1 || g > MAX_RESERVATION_MS) return BAD
  return { credentialHash: h, remote: r, graceMs: g }
}

/** A join entry's decision (`o` and the optional `x`), checked. */
function readDecision (o: unknown, x: unknown): Read<JoinDecision> {
  if (o === undefined) return x === undefined ? undefined : BAD
  if (typeof o !== 'string' || !OUTCOMES.has(o)) return BAD
  if (x !== undefined && !isText(x, MAX_ADDRESS_CHARS)) return BAD
  return { outcome: o as RemoteOutcome, takes: x }
}

/** A snapshot of the directory (the `snapshot` script's reply, checked). */
export interface Snapshot {
  /** Log id to follow from. */
  lastId: string
  seq: number
  peers: PeerRow[]
  /** Member nodes: id -> link. */
  nodes: Map<string, string>
  /** Live reservations of leaves (their grace: what is left of it at the snapshot's instant; `seq`: the reserved address' join). */
  reservations: Array<{ addr: string, reservation: LeaveReservation, seq?: number | undefined }>
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
  const entry: LogEntry = { id: row[0], t: t as LogEntry['t'], addr, node, seq, profile: readStoredProfile(f.get('p')) }
  if (t === 'join') {
    const claim = readClaim(f.get('c'))
    const decision = readDecision(f.get('o'), f.get('x'))
    if (claim === BAD || decision === BAD) return undefined
    entry.claim = claim
    entry.decision = decision
  } else if (t === 'leave') {
    const reservation = readReservation(f.get('c'))
    if (reservation === BAD) return undefined
    entry.reservation = reservation
  }
  return entry
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
  const { n, s, p, c } = v as Record<string, unknown>
  const seq = readSeq(s)
  const claim = readClaim(c)
  if (!isText(n, MAX_NODE_FIELD_CHARS) || seq === undefined || claim === BAD) return undefined
  return { addr, node: n, seq, profile: readStoredProfile(p), claim }
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
  const reservations = readReservations(Array.isArray(reply[4]) ? reply[4] as unknown[] : [])
  return { lastId: reply[0], seq, peers, nodes: nodes.nodes, reservations: reservations.live, bad: bad + nodes.bad + reservations.bad }
}

/** Flat `identity, { a: address, c: reservation JSON, s: join seq }, ms left` triples (the snapshot's fifth part), checked; the grace is what is left. */
function readReservations (flat: unknown[]): { live: Snapshot['reservations'], bad: number } {
  const live: Snapshot['reservations'] = []
  let bad = 0
  for (let i = 0; i + 2 < flat.length; i += 3) {
    // An address (escaped in JSON: at worst 6 characters each) and a reservation's JSON text, escaped too.
    const held = readObject(flat[i + 1], 6 * (MAX_ADDRESS_CHARS + MAX_CLAIM_CHARS) + 32)
    const [addr, left] = [held === BAD ? undefined : held?.a, Number(flat[i + 2])]
    const reservation = held === BAD ? BAD : readReservation(held?.c)
    if (!isText(addr, MAX_ADDRESS_CHARS) || reservation === undefined || reservation === BAD || !Number.isSafeInteger(left) || left < 1) {
      bad++
      continue
    }
    const seq = held === BAD ? undefined : held?.s
    live.push({ addr, reservation: { ...reservation, graceMs: Math.min(left, reservation.graceMs) }, seq: Number.isSafeInteger(seq) ? seq as number : undefined })
  }
  return { live, bad }
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
