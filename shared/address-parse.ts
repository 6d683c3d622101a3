/**
 * Websocket-star addresses: the shapes legacy clients join under, and the peer id they carry.
 *
 * Addresses are compared and echoed as the exact strings peers joined with; this module only
 * checks them, it never re-serialises one (the maintained multiaddr library prints `/ipfs/` as
 * `/p2p/`, which legacy clients would not read).
 *
 * The addresses peers join with (`/ip4|dns4|…/HOST[/tcp/N]/ws|wss/p2p-websocket-star[/p2p/ID]`) are
 * read here (`readCommonAddress`), exactly as `@multiformats/multiaddr` reads them (a test
 * compares the two on valid and hostile input); any other address goes to the library, which a
 * server loads (`server/address-library.ts`) only when one arrives: it and `multiformats` are a couple of
 * MiB an idle server does not hold. `wsstar-address.ts` is this module with the library loaded.
 */
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

/** What this module needs of `@multiformats/multiaddr`'s `multiaddr()`. */
export type MultiaddrFactory = (text: string) => { protoNames: () => string[], stringTuples: () => Array<[number, string?]> }

let library: MultiaddrFactory | undefined

/**
 * Parse with `factory` (`multiaddr` of `@multiformats/multiaddr`) what this module does not read
 * itself (`wsstar-address.ts` gives it at once; the server's `address-library.ts` when needed).
 */
export function useAddressLibrary (factory: MultiaddrFactory): void {
  library ??= factory
}

/** Whether `parseAddress(text)` needs the library and none was given yet. */
export function needsAddressLibrary (text: unknown): boolean {
  return library === undefined && typeof text === 'string' && text.length > 0 && text.length <= MAX_ADDRESS_CHARS &&
    !parsedCache.has(text) && readCommonAddress(text) === undefined
}

/** Addresses `parseAddress` remembers: the server asks about the same address several times per join. */
const PARSED_CACHE_ENTRIES = 512
/** The latest answers of `parseAddress` (`null` for "not an address"), least recently used first. */
const parsedCache = new Map<string, ParsedAddress | null>()

/**
 * Parse an address string; `undefined` when it is not a string or not a valid multiaddr. The
 * answer is frozen and may be shared between callers (the last `PARSED_CACHE_ENTRIES` are kept).
 * Without the library loaded, an address only it reads is `undefined` too (and not remembered):
 * `needsAddressLibrary` says when.
 */
export function parseAddress (text: unknown): ParsedAddress | undefined {
  if (typeof text !== 'string' || text.length === 0 || text.length > MAX_ADDRESS_CHARS) return undefined
  const cached = parsedCache.get(text)
  if (cached !== undefined) {
    parsedCache.delete(text) // re-inserted last: the map stays in use order
    parsedCache.set(text, cached)
    return cached ?? undefined
  }
  const read = readCommonAddress(text)
  if (read === undefined && library === undefined) return undefined
  const parsed = read === undefined ? parseWithLibrary(text) : read ?? undefined
  parsedCache.set(text, parsed ?? null)
  if (parsedCache.size > PARSED_CACHE_ENTRIES) {
    const oldest = parsedCache.keys().next().value
    if (oldest !== undefined) parsedCache.delete(oldest)
  }
  return parsed
}

/** Protocols of the common shapes that carry no value. */
const NO_VALUE = new Set(['ws', 'wss', STAR])
/** An IPv4 address as written canonically (no leading zeros), which every IPv4 check accepts. */
const IP4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/
/** A port as the library accepts it (`parseInt(v).toString() === v`, 0 to 65535), up to the range check. */
const PORT = /^(?:0|[1-9]\d{0,4})$/

/**
 * The address read without the library, when it is made only of the protocols of websocket-star
 * addresses (`ip4`, `dns`, `dns4`, `dns6`, `dnsaddr`, `tcp`, `ws`, `wss`, `p2p-websocket-star`,
 * `p2p`/`ipfs`) with values the library accepts as they are; `null` for a string the library
 * refuses whatever it holds (not starting with `/`); `undefined` to ask the library (an `ip6`
 * host, another protocol, a value written some other way, `//`, a trailing `/`). Exported for
 * the test that compares it with the library.
 */
export function readCommonAddress (text: string): ParsedAddress | null | undefined {
  if (text === '') return undefined // the library reads it as `/`, the empty address
  if (text.charCodeAt(0) !== 0x2f) return null
  if (text.endsWith('/') || text.includes('//')) return undefined // the library folds these first
  const parts = text.split('/')
  const protocols: string[] = []
  let peerId: string | undefined
  for (let i = 1; i < parts.length; i++) {
    const name = parts[i] as string
    if (NO_VALUE.has(name)) {
      protocols.push(name)
      continue
    }
    const value = parts[++i]
    if (value === undefined) return undefined
    switch (name) {
      case 'ip4':
        if (!IP4.test(value)) return undefined
        break
      case 'tcp':
        if (!PORT.test(value) || Number(value) > 65_535) return undefined
        break
      case 'dns': case 'dns4': case 'dns6': case 'dnsaddr':
        break
      case 'p2p': case 'ipfs':
        peerId = value
        protocols.push('p2p')
        continue
      default:
        return undefined
    }
    protocols.push(name)
  }
  return Object.freeze({ text, protocols: Object.freeze(protocols), peerId: peerId === undefined ? undefined : flat(peerId) })
}

function parseWithLibrary (text: string): ParsedAddress | undefined {
  if (library === undefined) return undefined
  try {
    const ma = library(text)
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
 * keeps for as long as the peer is joined, as a key of its per-peer tables; a slice of the
 * address would keep the whole address.
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
