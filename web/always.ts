/**
 * The rules a person's "Always for this peer" answers added, kept per identity of the page (its
 * own peer id) in `localStorage`, so the next session of that identity (a reload) starts with
 * them. Each names one verified peer (`...@PEERID`); at most `MAX_ALWAYS_RULES` per identity.
 * What is read back is checked as if another page had written it: a rule that does not parse, or
 * names no peer, or is of a kind an answer never adds, is dropped.
 */
import { parseRule } from '../shared/sock-rules.ts'

/** One kept rule: its text (`accept/tcp:127.0.0.1:8080@12D3KooW…`), the peer it names, when it was added (ms since the epoch). */
export interface AlwaysEntry {
  rule: string
  peerId: string
  at: number
}

/** Rules kept per identity at most: past it, the prompt offers no "always" until one is forgotten. */
export const MAX_ALWAYS_RULES = 100

/** Longest rule text kept (a rule with a 128-character peer id and a 253-character host name fits). */
const MAX_RULE_CHARS = 512

/** The kinds an "always" answer adds (`ruleForOffer`). */
const KINDS = new Set(['accept', 'connect', 'bind', 'service'])

const keyOf = (self: string): string => `starsock:always:${self}`

/**
 * Lists that storage would not take (unavailable, full), per identity: they stand in for what is
 * stored for the rest of this page's life, so every rule the running agent has stays listed (and
 * can be forgotten) even when nothing can be written.
 */
const unsaved = new Map<string, AlwaysEntry[]>()

/** Whether `value` is an entry to keep: a rule of an answer's kind naming the entry's peer. */
function isEntry (value: unknown): value is AlwaysEntry {
  if (typeof value !== 'object' || value === null) return false
  const { rule, peerId, at } = value as Record<string, unknown>
  if (typeof rule !== 'string' || rule.length > MAX_RULE_CHARS || typeof peerId !== 'string' || typeof at !== 'number') return false
  try {
    const parsed = parseRule(rule)
    return KINDS.has(parsed.kind) && parsed.peerId === peerId
  } catch {
    return false
  }
}

/** The rules kept for identity `self` (none when storage is unavailable or holds nothing valid). */
export function loadAlways (self: string): AlwaysEntry[] {
  const held = unsaved.get(self)
  if (held !== undefined) return held.map((e) => ({ ...e }))
  let raw: unknown
  try {
    raw = JSON.parse(localStorage.getItem(keyOf(self)) ?? '[]')
  } catch {
    return []
  }
  if (!Array.isArray(raw)) return []
  const seen = new Set<string>()
  const out: AlwaysEntry[] = []
  for (const item of raw) {
    if (out.length >= MAX_ALWAYS_RULES) break
    if (!isEntry(item) || seen.has(item.rule)) continue
    seen.add(item.rule)
    out.push({ rule: item.rule, peerId: item.peerId, at: item.at })
  }
  return out
}

/** Write the list; a full or unavailable storage keeps it in memory for this page's life only (`unsaved`). */
function save (self: string, entries: AlwaysEntry[]): void {
  try {
    localStorage.setItem(keyOf(self), JSON.stringify(entries))
    unsaved.delete(self)
  } catch {
    unsaved.set(self, entries.map((e) => ({ ...e })))
  }
}

/** Keep `entry` for `self`; settles the list, or `undefined` when it is full (`MAX_ALWAYS_RULES`) or the entry is not one to keep. */
export function addAlways (self: string, entry: AlwaysEntry): AlwaysEntry[] | undefined {
  const list = loadAlways(self)
  if (list.some((e) => e.rule === entry.rule)) return list
  if (list.length >= MAX_ALWAYS_RULES || !isEntry(entry)) return undefined
  list.push(entry)
  save(self, list)
  return list
}

/** Forget the rule `rule` of `self`; returns the list left. */
export function removeAlways (self: string, rule: string): AlwaysEntry[] {
  const list = loadAlways(self).filter((e) => e.rule !== rule)
  save(self, list)
  return list
}
