/**
 * Websocket-star addresses: the shapes legacy clients join under, and the peer id they carry.
 *
 * Addresses are compared and echoed as the exact strings peers joined with; this module only
 * checks them, it never re-serialises one (the maintained multiaddr library prints `/ipfs/` as
 * `/p2p/`, which legacy clients would not read).
 */
import { multiaddr } from '@multiformats/multiaddr'
import { MAX_ADDRESS_CHARS } from './constants.ts'

const HOSTS = new Set(['ip4', 'ip6', 'dns', 'dns4', 'dns6', 'dnsaddr'])
const DNS_HOSTS = new Set(['dns', 'dns4', 'dns6', 'dnsaddr'])
const WS = new Set(['ws', 'wss'])
const STAR = 'p2p-websocket-star'

/** An address that parsed, with its protocol names and the peer id it ends with, if any. */
export interface ParsedAddress {
  /** The exact string as given. */
  text: string
  /** Protocol names in order (`/ipfs/` reads as `p2p`). */
  protocols: readonly string[]
  /** The value of the last `/ipfs/` or `/p2p/` component. */
  peerId: string | undefined
}

/** Addresses `parseAddress` remembers: the server asks about the same address several times per join. */
const PARSED_CACHE_ENTRIES = 512
/** The latest answers of `parseAddress` (`null` for "not an address"), least recently used first. */
const parsedCache = new Map<string, ParsedAddress | null>()

/**
 * Parse an address string; `undefined` when it is not a string or not a valid multiaddr. The
 * answer is frozen and may be shared between callers (the last `PARSED_CACHE_ENTRIES` are kept).
 */
export function parseAddress (text: unknown): ParsedAddress | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_ADDRESS_CHARS) return undefined
  const cached = parsedCache.get(text)
  if (cached !== undefined) {
    parsedCache.delete(text) // re-inserted last: the map stays in use order
    parsedCache.set(text, cached)
    return cached ?? undefined
  }
  const parsed = parseUncached(text)
  parsedCache.set(text, parsed ?? null)
  if (parsedCache.size > PARSED_CACHE_ENTRIES) {
    const oldest = parsedCache.keys().next().value
    if (oldest !== undefined) parsedCache.delete(oldest)
  }
  return parsed
}

function parseUncached (text: string): ParsedAddress | undefined {
  try {
    const ma = multiaddr(text)
    const protocols = ma.protoNames()
    const tuples = ma.stringTuples()
    let peerId: string | undefined
    for (let i = 0; i < protocols.length; i++) {
      if (protocols[i] === 'p2p') peerId = tuples[i]?.[1]
    }
    return Object.freeze({ text, protocols: Object.freeze(protocols), peerId: peerId === undefined ? undefined : flat(peerId) })
  } catch {
    return undefined
  }
}

/**
 * `text` as one flat string. The multiaddr library builds a peer id one base58 digit at a time,
 * which leaves a tree of about 40 concatenated pieces (1.2 KB for 46 characters) that a server
 * keeps for as long as the peer is joined, as a key of its per-peer tables.
 */
function flat (text: string): string {
  return JSON.parse(JSON.stringify(text)) as string
}

/**
 * Whether protocol names form a websocket-star address as the original's strict mode
 * (mafmt `WebSocketStar`) accepted: `[host [tcp]] ws|wss p2p-websocket-star [p2p]`, where a bare
 * name host may skip `tcp`, or a bare `p2p-websocket-star [p2p]`.
 */
export function isWebsocketStarShape (protocols: readonly string[]): boolean {
  let i = 0
  const at = (): string | undefined => protocols[i]
  if (at() !== STAR) {
    const host = at()
    if (host === undefined || !HOSTS.has(host)) return false
    i++
    if (at() === 'tcp') i++
    else if (!DNS_HOSTS.has(host)) return false
    const ws = at()
    if (ws === undefined || !WS.has(ws)) return false
    i++
    if (at() !== STAR) return false
  }
  i++
  if (at() === 'p2p') i++
  return i === protocols.length
}

/** Parse an address and check its websocket-star shape when `strict`; `undefined` when it fails. */
export function checkAddress (text: unknown, strict: boolean): ParsedAddress | undefined {
  const parsed = parseAddress(text)
  if (parsed === undefined) return undefined
  if (strict && !isWebsocketStarShape(parsed.protocols)) return undefined
  return parsed
}
