/**
 * A peer's profile: the display name it chooses and its kind, as the server relays it to starsock
 * clients (`starsock:hello`'s `profile`, `starsock:profile`, `starsock:peer-join`'s second
 * argument, the `profiles` of a `starsock:peers` page, `starsock:peer-profile`). The name is the
 * peer's word only: what identifies a peer is its id, which the secure channel verifies.
 * Checked here, once, on both ends: the server refuses a bad name, a client drops one from a
 * server that sends it anyway.
 */
import { StarsockError } from './errors.ts'

/** What runs a peer: the page, a Node program (CLI, library), or a server's own gateway peer. */
export const PEER_KINDS = ['browser', 'node', 'gateway'] as const
/** One kind of peer. */
export type PeerKind = typeof PEER_KINDS[number]

/** A peer's profile. */
export interface PeerProfile {
  /** Display name: NFC, trimmed, 1 to `MAX_NAME_CHARS` characters, no control or bidi characters; absent when it set none. */
  name?: string
  kind: PeerKind
}

/** Longest display name, in characters (code points) after normalisation. */
export const MAX_NAME_CHARS = 40
/** Longest name string looked at, in UTF-16 units, before any work on it (a huge string is refused unread). */
export const MAX_NAME_INPUT_CHARS = 400

/**
 * Characters a name may not hold: controls (C0, C1), line and paragraph separators, lone
 * surrogates, and format characters (bidi embeddings, overrides and isolates, zero-width
 * spaces, the BOM), which can make a name read as another or reorder the text beside it. The
 * zero-width joiner stays: emoji sequences need it.
 */
const FORBIDDEN = /[\p{Cc}\p{Zl}\p{Zp}\p{Cs}]|(?!\u200D)\p{Cf}/u

/**
 * What reads as a short peer id inside a name, in its compatibility form (NFKC: full-width
 * letters become plain, `…` becomes `...`) with invisible characters and combining marks taken
 * out: the shape the page writes one in (`12D3…k3Xq9a`), four letters or digits of any script,
 * dots of any kind (`.`, `·`, `•`, `∙`, `⋅`, `・`, `‧`, `⋮`, `⋯`, `᠁`, `。`; spaces between them
 * or around do not help), six more, standing alone (not inside a longer word). Every name is
 * shown with the real short id beside it; a name holding another would read as that peer's,
 * verified (`Alice (12D3…2X7X8k)` then `(12D3…abcdef)`). Look-alike letters cannot get past it,
 * since any letters count. `Wait...what`, `Summer...2024`, `v1..v2` and `Mark Jordan` stay names.
 */
const SHORT_ID_LIKE = /(?<![\p{L}\p{N}])[\p{L}\p{N}]{4}[\p{Z}\u2800]*(?:[.\u00B7\u2022\u2219\u22C5\u30FB\u2027\u22EE\u22EF\u1801\u3002][\p{Z}\u2800]*)+[\p{L}\p{N}]{6}(?![\p{L}\p{N}])/u
/** A whole peer id inside a name: a run of 20 base58 characters with a digit among them (a long word is not one). */
const ID_RUN = /[1-9A-HJ-NP-Za-km-z]{20,}/g
/** Characters that show as nothing or only change the one before (variation selectors, joiners, marks), taken out before looking for an id. */
const INVISIBLE = /[\p{Default_Ignorable_Code_Point}\p{M}]/gu

/** Whether `name` holds text that reads as a peer id (`SHORT_ID_LIKE`, `ID_RUN`). */
function readsAsPeerId (name: string): boolean {
  const plain = name.normalize('NFKC').replace(INVISIBLE, '')
  if (SHORT_ID_LIKE.test(plain)) return true
  for (const m of plain.matchAll(ID_RUN)) if (/\d/.test(m[0])) return true
  return false
}

/**
 * A display name as given, checked: `undefined` for none (absent, or empty once trimmed), the
 * normalised name, or an `E_BAD_REQUEST` saying what is wrong.
 */
export function checkName (value: unknown): string | undefined | StarsockError {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') return new StarsockError('E_BAD_REQUEST', 'name must be a string')
  if (value.length > MAX_NAME_INPUT_CHARS) return new StarsockError('E_BAD_REQUEST', `name is longer than ${MAX_NAME_CHARS} characters`)
  const name = value.normalize('NFC').trim()
  if (FORBIDDEN.test(name)) return new StarsockError('E_BAD_REQUEST', 'name holds a control, separator or bidi formatting character')
  if ([...name].length > MAX_NAME_CHARS) return new StarsockError('E_BAD_REQUEST', `name is longer than ${MAX_NAME_CHARS} characters`)
  if (readsAsPeerId(name)) return new StarsockError('E_BAD_REQUEST', 'name holds text that reads as a peer id (like 12D3…k3Xq9a): the real id is shown beside every name')
  return name === '' ? undefined : name
}

/** Whether `value` is one of `PEER_KINDS`. */
export function isPeerKind (value: unknown): value is PeerKind {
  return (PEER_KINDS as readonly unknown[]).includes(value)
}

/** A profile as a client sends it (`{ name?, kind }`), checked; an `E_BAD_REQUEST` says what is wrong. */
export function checkProfile (value: unknown): PeerProfile | StarsockError {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return new StarsockError('E_BAD_REQUEST', 'profile must be an object')
  const { name, kind } = value as Record<string, unknown>
  if (!isPeerKind(kind)) return new StarsockError('E_BAD_REQUEST', `kind must be one of ${PEER_KINDS.join(', ')}`)
  const checked = checkName(name)
  if (checked instanceof StarsockError) return checked
  return checked === undefined ? { kind } : { name: checked, kind }
}

/**
 * A profile as a server relays it (client side): the same check, and anything wrong is no profile
 * (`undefined`): a hostile server's name is never shown unchecked.
 */
export function readProfile (value: unknown): PeerProfile | undefined {
  if (value === undefined || value === null) return undefined
  const checked = checkProfile(value)
  return checked instanceof StarsockError ? undefined : checked
}

/** Whether two profiles say the same. */
export function sameProfile (a: PeerProfile | undefined, b: PeerProfile | undefined): boolean {
  return a?.name === b?.name && a?.kind === b?.kind
}
