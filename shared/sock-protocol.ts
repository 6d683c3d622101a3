/**
 * What the channel frames carry: the HELLO, channel headers (`type: "sock"` and others), offers
 * and replies, with the runtime checks of each as it arrives from the other peer.
 */
import { ERROR_CODES, StarsockError, type ErrorCode } from './errors.ts'
import { isHost, type SockAddress } from './mux-frame.ts'

export { isHost, MAX_HOST_CHARS } from './mux-frame.ts'

/** Name and version in the HELLO frame. */
export const MUX_PROTOCOL = 'starsock-mux'
export const MUX_VERSION = 1

/** What a mapping asks for: connect to a host, or bind (listen on) a port, or send accepts. */
export type SockKind = 'connect' | 'bind' | 'accept'
/**
 * What an offer asks for: a sock kind, `file` (take one file on a `file` channel), or `service`
 * (connect to the service the other peer offers under `Offer.service`; it picks the target).
 */
export type OfferKind = SockKind | 'file' | 'service'
/** Reliable (`tcp`) or unreliable (`udp`). */
export type SockProto = 'tcp' | 'udp'

/** The first frame each way. */
export interface Hello {
  protocol: typeof MUX_PROTOCOL
  version: number
  /** Receive window of every channel the sender of this HELLO takes part in. */
  window: number
  /** The sender takes an interim OFFER_REPLY (`{ asking }`) before the answer; absent in older peers. */
  interim?: true
  /** Offer kinds the sender understands; absent in older peers, which understand `OLDER_OFFER_KINDS` only. */
  offers?: OfferKind[]
  /** Wire features the sender has (`FEATURES`; unknown ones are dropped on arrival); absent in older peers: none. */
  features?: Feature[]
}

/**
 * Wire features a HELLO may announce: `ack` (a granted offer holds only once the requester
 * answers the grant with an ACK frame: the Tox draft's Offer -> Accept -> Ack-Acc), `allow-from`
 * (the sender enforces `Offer.allowFrom` on the ports it binds).
 */
export const FEATURES = ['ack', 'allow-from'] as const
/** A wire feature. */
export type Feature = typeof FEATURES[number]
/** Most features a HELLO may list. */
const MAX_HELLO_FEATURES = 32

/** Whether the sender of `hello` has `feature`. */
export function hasFeature (hello: Hello, feature: Feature): boolean {
  return hello.features?.includes(feature) === true
}

/** What a service name may be: a letter or digit, then up to 63 letters, digits, `_`, `.` or `-`. */
export const SERVICE_NAME = /^[A-Za-z0-9][\w.-]{0,63}$/
/** Most entries of a bind offer's `allowFrom` (as `MAX_ALLOW_FROM_ENTRIES` of `client/sock/allow-from.node.ts`). */
export const MAX_OFFER_ALLOW_FROM_ENTRIES = 64
/** Most addresses a bind reply lists. */
export const MAX_REPLY_ADDRESSES = 64
/**
 * The shape of an `allowFrom` entry: an IPv4 or IPv6 address, with or without a `/prefix`. Only
 * the shape: the binding peer parses it for real (`parseAllowFrom`) and denies what does not parse.
 */
const ALLOW_FROM_ENTRY = /^[0-9A-Fa-f.:]{2,45}(?:\/\d{1,3})?$/

/** Offer kinds this version understands (and lists in its HELLO). */
export const OFFER_KINDS: readonly OfferKind[] = ['connect', 'bind', 'accept', 'file', 'service']
/** Offer kinds a peer understands whose HELLO lists none (one older than `offers`). */
export const OLDER_OFFER_KINDS: readonly OfferKind[] = ['connect', 'bind', 'accept']
/** Most offer kinds a HELLO may list. */
const MAX_HELLO_OFFER_KINDS = 32

/**
 * Whether the sender of `hello` understands offers of `kind`. A HELLO without `offers` but with
 * `interim` comes from the build just before `offers`, which took `file` offers already.
 */
export function understandsOffer (hello: Hello, kind: OfferKind): boolean {
  const kinds = hello.offers ?? (hello.interim === true ? [...OLDER_OFFER_KINDS, 'file'] : OLDER_OFFER_KINDS)
  return kinds.includes(kind)
}

/** An interim answer to an OFFER: a person is asked, and has up to `timeoutMs` to answer. */
export interface Asking {
  timeoutMs: number
}

/** Longest wait an interim answer may announce (a day). */
export const MAX_ASKING_TIMEOUT_MS = 86_400_000

/** An offer: the request a person or a rule agrees to. */
export interface Offer {
  kind: OfferKind
  /** `tcp` for a file. */
  proto: SockProto
  /** connect: the host to reach; bind: the interface to listen on; accept: the sender's own listening host; file: `''`. */
  host: string
  /** connect: the port to reach; bind: the port to listen on (0 = any); accept: the port listened on; file: 0. */
  port: number
  /** A human-readable name for the prompt; for a file, its name. */
  name: string
  /** file: its size in bytes (the file channel must carry exactly this many). */
  size?: number
  /** file: lower-case hex SHA-256 of the whole file, when the sender knows it (a receiver may then resume a partial copy). */
  sha256?: string
  /** service (and an accept for a service): the name of the service the other peer offers (`SERVICE_NAME`). */
  service?: string
  /** bind: the sources (CIDRs or addresses, IPv4 and IPv6) the binding peer lets in; others are reset and counted. Absent: any. */
  allowFrom?: string[]
}

/** The header of an OPEN frame. */
export interface OpenHeader {
  /** `sock` for sockets; other types are the application's own (e.g. chat). */
  type: string
  sock?: SockKind
  src?: SockAddress
  dst?: SockAddress
  /** TCP (`true`) or UDP (`false`). */
  reliable: boolean
  /** The granted mapping this channel belongs to. */
  mapping?: number
  /** bind with port 0: the port this peer held before its connection dropped (its lease). */
  lease?: number
}

/** Answer to an OPEN or OFFER. */
export interface Reply {
  /** For a bind: the address the peer listens on. */
  bound?: SockAddress
  /** For a bind to a wildcard (`0.0.0.0`, `::`): addresses it can be reached at (interfaces not internal first, then loopback). */
  addresses?: SockAddress[]
  /** For a file offer granted: bytes the receiver has already (a partial copy of the same file); the sender sends from there. */
  offset?: number
  error?: { code: ErrorCode, message: string }
}

/** Longest offer name accepted. */
export const MAX_OFFER_NAME_CHARS = 200
/** Longest channel type accepted. */
export const MAX_CHANNEL_TYPE_CHARS = 64

const KINDS = new Set(['connect', 'bind', 'accept'])
/** Control, C1 and bidirectional-override characters: a name with them could forge a prompt line. */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

function bad (what: string): StarsockError {
  return new StarsockError('E_CHANNEL_PROTOCOL', what)
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Whether `value` is a port number (0 to 65535). */
export function isPort (value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 65535
}

function address (what: string, value: unknown): SockAddress | undefined {
  if (value === undefined) return undefined
  if (!isObject(value) || !isHost(value.ip) || !isPort(value.port)) throw bad(`${what} must be { ip, port }`)
  return { ip: value.ip, port: value.port }
}

/** A checked HELLO. */
export function parseHello (value: unknown): Hello {
  if (!isObject(value) || value.protocol !== MUX_PROTOCOL) throw bad('not a starsock-mux connection')
  if (value.version !== MUX_VERSION) throw bad(`mux version ${JSON.stringify(value.version) ?? 'undefined'} is not ${MUX_VERSION}`)
  if (typeof value.window !== 'number' || !Number.isInteger(value.window) || value.window < 1024 || value.window > 2 ** 31) throw bad('HELLO window must be an integer from 1024 to 2^31')
  let offers: OfferKind[] | undefined
  if (value.offers !== undefined) {
    if (!Array.isArray(value.offers) || value.offers.length > MAX_HELLO_OFFER_KINDS || !value.offers.every((k) => typeof k === 'string')) throw bad(`HELLO offers must be a list of at most ${MAX_HELLO_OFFER_KINDS} offer kinds`)
    // Kinds this version does not know are left out: it never sends them.
    offers = value.offers.filter((k): k is OfferKind => (OFFER_KINDS as readonly string[]).includes(k))
  }
  let features: Feature[] | undefined
  if (value.features !== undefined) {
    if (!Array.isArray(value.features) || value.features.length > MAX_HELLO_FEATURES || !value.features.every((f) => typeof f === 'string')) throw bad(`HELLO features must be a list of at most ${MAX_HELLO_FEATURES} strings`)
    // Features this version does not know are left out: it never uses them.
    features = value.features.filter((f): f is Feature => (FEATURES as readonly string[]).includes(f))
  }
  return {
    protocol: MUX_PROTOCOL,
    version: MUX_VERSION,
    window: value.window,
    ...(value.interim === true ? { interim: true as const } : {}),
    ...(offers !== undefined ? { offers } : {}),
    ...(features !== undefined ? { features } : {})
  }
}

/** The interim answer an OFFER_REPLY carries (`{ asking: { timeoutMs } }`), or `undefined` for a final answer. */
export function parseAsking (value: unknown): Asking | undefined {
  if (!isObject(value) || value.asking === undefined) return undefined
  const asking = value.asking
  if (!isObject(asking) || typeof asking.timeoutMs !== 'number' || !Number.isInteger(asking.timeoutMs) || asking.timeoutMs < 0 || asking.timeoutMs > MAX_ASKING_TIMEOUT_MS) {
    throw bad(`asking must be { timeoutMs } with an integer from 0 to ${MAX_ASKING_TIMEOUT_MS}`)
  }
  return { timeoutMs: asking.timeoutMs }
}

/** A checked offer. */
export function parseOffer (value: unknown): Offer {
  if (!isObject(value)) throw bad('offer must be an object')
  const { kind, proto, host, port, name } = value
  if (kind === 'file') return parseFileOffer(value)
  if (kind === 'service') return parseServiceOffer(value)
  if (typeof kind !== 'string' || !KINDS.has(kind)) throw bad('offer kind must be connect, bind, accept, file or service')
  if (proto !== 'tcp' && proto !== 'udp') throw bad('offer proto must be tcp or udp')
  if (!isHost(host)) throw bad('offer host must be a host name or address')
  if (!isPort(port)) throw bad('offer port must be 0 to 65535')
  const offer: Offer = { kind: kind as SockKind, proto, host, port, name: checkName(name) }
  if (value.service !== undefined) {
    if (kind !== 'accept') throw bad('only service and accept offers name a service')
    offer.service = checkService(value.service)
  }
  if (value.allowFrom !== undefined) {
    if (kind !== 'bind') throw bad('only bind offers carry allowFrom')
    offer.allowFrom = checkAllowFrom(value.allowFrom)
  }
  return offer
}

/** A service name (`SERVICE_NAME`), or a protocol error. */
function checkService (service: unknown): string {
  if (typeof service !== 'string' || !SERVICE_NAME.test(service)) throw bad('offer service must be a name of letters, digits, _ . - (at most 64, a letter or digit first)')
  return service
}

/** Whether `list` is shaped like an allowlist a bind offer may carry (`allowFrom`): at most 64 address or CIDR strings. */
export function isAllowFromList (list: unknown): list is string[] {
  return Array.isArray(list) && list.length <= MAX_OFFER_ALLOW_FROM_ENTRIES && list.every((e) => typeof e === 'string' && ALLOW_FROM_ENTRY.test(e))
}

function isIPv4 (text: string): boolean {
  const parts = text.split('.')
  return parts.length === 4 && parts.every((p) => /^(?:0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255)
}

function isIPv6 (text: string): boolean {
  const halves = text.split('::')
  if (halves.length > 2) return false
  const groups = halves.map((h) => h === '' ? [] : h.split(':'))
  const all = groups.flat()
  let count = 0
  for (const [i, g] of all.entries()) {
    // A dotted tail only as the last group of the text (`::1.2.3.4`, never `1.2.3.4::`).
    if (i === all.length - 1 && halves[halves.length - 1] !== '' && g.includes('.')) {
      if (!isIPv4(g)) return false
      count += 2
    } else if (/^[0-9A-Fa-f]{1,4}$/.test(g)) {
      count++
    } else {
      return false
    }
  }
  return halves.length === 2 ? count <= 7 : count === 8
}

/**
 * What is wrong with an `allowFrom` entry, or `undefined` when it is an IPv4 or IPv6 address
 * (dotted quad, or IPv6 with `::` and an IPv4 tail), optionally with a `/prefix` up to 32 or 128.
 * Browser-safe: the same check the binding peer's parser makes, so a bad entry fails here.
 */
export function allowFromEntryProblem (entry: unknown): string | undefined {
  if (typeof entry !== 'string') return 'is not a string'
  const m = /^([^/]*)(?:\/(\d{1,3}))?$/.exec(entry)
  const address = m?.[1] ?? ''
  const v4 = isIPv4(address)
  if (m === null || (!v4 && !isIPv6(address))) return 'is not an IPv4 or IPv6 address or CIDR (e.g. 127.0.0.1/32, 10.0.0.0/8, ::1/128)'
  const max = v4 ? 32 : 128
  if (m[2] !== undefined && Number(m[2]) > max) return `has prefix /${m[2]}, over /${max}`
  return undefined
}

/** Check an allowlist before it is offered: a `TypeError` names the first bad entry, or says there are too many. */
export function checkAllowFromList (list: unknown): string[] {
  if (!Array.isArray(list)) throw new TypeError('allowFrom must be a list of IPv4 or IPv6 addresses or CIDRs')
  if (list.length > MAX_OFFER_ALLOW_FROM_ENTRIES) throw new TypeError(`allowFrom has ${list.length} entries; at most ${MAX_OFFER_ALLOW_FROM_ENTRIES}`)
  for (const entry of list as unknown[]) {
    const problem = allowFromEntryProblem(entry)
    if (problem !== undefined) throw new TypeError(`allowFrom entry ${JSON.stringify(entry)} ${problem}`)
  }
  return (list as string[]).slice()
}

function checkAllowFrom (list: unknown): string[] {
  if (!isAllowFromList(list)) throw bad(`offer allowFrom must be a list of at most ${MAX_OFFER_ALLOW_FROM_ENTRIES} addresses or CIDRs`)
  return list.slice()
}

/** A service offer: `{ kind: 'service', proto, name, service }` (host and port are not used: the granting side picks the target). */
function parseServiceOffer (value: Record<string, unknown>): Offer {
  if (value.proto !== 'tcp' && value.proto !== 'udp') throw bad('offer proto must be tcp or udp')
  return { kind: 'service', proto: value.proto, host: '', port: 0, name: checkName(value.name), service: checkService(value.service) }
}

function checkName (name: unknown): string {
  if (typeof name !== 'string' || name.length > MAX_OFFER_NAME_CHARS) throw bad(`offer name must be a string of at most ${MAX_OFFER_NAME_CHARS} characters`)
  if (UNPRINTABLE.test(name)) throw bad('offer name must not hold control or direction characters')
  return name
}

/** Whether `value` is a SHA-256 in lower-case hex. */
export function isSha256 (value: unknown): value is string {
  return typeof value === 'string' && /^[0-9a-f]{64}$/.test(value)
}

/** A file offer: `{ kind: 'file', name, size, sha256? }` (host and port are not used). */
function parseFileOffer (value: Record<string, unknown>): Offer {
  const name = checkName(value.name)
  if (name === '') throw bad('a file offer needs a name')
  const size = value.size
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw bad('a file offer needs a size in bytes (a non-negative integer)')
  if (value.sha256 !== undefined && !isSha256(value.sha256)) throw bad('a file offer\'s sha256 must be 64 lower-case hex digits')
  return { kind: 'file', proto: 'tcp', host: '', port: 0, name, size, ...(value.sha256 !== undefined ? { sha256: value.sha256 } : {}) }
}

/** A checked OPEN header. */
export function parseOpenHeader (value: unknown): OpenHeader {
  if (!isObject(value)) throw bad('open header must be an object')
  const { type, sock, reliable, mapping, lease } = value
  if (typeof type !== 'string' || type === '' || type.length > MAX_CHANNEL_TYPE_CHARS) throw bad('open header type must be a short string')
  if (typeof reliable !== 'boolean') throw bad('open header reliable must be a boolean')
  if (sock !== undefined && (typeof sock !== 'string' || !KINDS.has(sock))) throw bad('open header sock must be connect, bind or accept')
  if (type === 'sock' && sock === undefined) throw bad('a sock channel needs sock: connect, bind or accept')
  if (mapping !== undefined && (typeof mapping !== 'number' || !Number.isInteger(mapping) || mapping < 1 || mapping > 0xffffffff)) throw bad('open header mapping must be a mapping id')
  if (lease !== undefined && (!isPort(lease) || lease === 0)) throw bad('open header lease must be a port from 1 to 65535')
  return {
    type,
    lease,
    sock: sock as SockKind | undefined,
    src: address('src', value.src),
    dst: address('dst', value.dst),
    reliable,
    mapping
  }
}

/** A checked reply. */
export function parseReply (value: unknown): Reply {
  if (!isObject(value)) throw bad('reply must be an object')
  if (value.error !== undefined) return { error: parseError(value.error) }
  const reply: Reply = { bound: address('bound', value.bound) }
  if (value.addresses !== undefined) {
    if (!Array.isArray(value.addresses) || value.addresses.length > MAX_REPLY_ADDRESSES) throw bad(`addresses must be a list of at most ${MAX_REPLY_ADDRESSES} { ip, port }`)
    reply.addresses = value.addresses.map((a) => address('an address', a) as SockAddress)
  }
  if (value.offset !== undefined) {
    if (typeof value.offset !== 'number' || !Number.isSafeInteger(value.offset) || value.offset < 0) throw bad('reply offset must be a non-negative integer')
    reply.offset = value.offset
  }
  return reply
}

/** A checked `{ code, message }` (an unknown code reads as a protocol error). */
export function parseError (value: unknown): { code: ErrorCode, message: string } {
  if (!isObject(value)) return { code: 'E_CHANNEL_PROTOCOL', message: 'error without a code' }
  const code = typeof value.code === 'string' && Object.hasOwn(ERROR_CODES, value.code) ? value.code as ErrorCode : 'E_CHANNEL_PROTOCOL'
  const message = typeof value.message === 'string' ? value.message.slice(0, 500) : ERROR_CODES[code]
  return { code, message }
}

/** `{ code, message }` of an error, for the wire (never a stack). */
export function errorToWire (err: unknown): { code: ErrorCode, message: string } {
  if (err instanceof StarsockError) return { code: err.code, message: err.message }
  return { code: 'E_CHANNEL_PROTOCOL', message: err instanceof Error ? err.message : String(err) }
}

/** `IP:PORT`, an IPv6 address in brackets: `127.0.0.1:80`, `[::1]:80`. */
export function formatAddress (a: { ip: string, port: number }): string {
  return a.ip.includes(':') ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`
}

/**
 * The offer as one line, as a prompt or a log shows it: `connect/tcp 127.0.0.1:8080 "web"`,
 * `service/tcp web`, `bind/tcp 0.0.0.0:8080 from 10.0.0.0/8`, `accept/tcp 127.0.0.1:2222 to service ssh`.
 */
export function describeOffer (offer: Offer): string {
  if (offer.kind === 'file') return `file ${JSON.stringify(offer.name)}, ${formatSize(offer.size ?? 0)}`
  const name = offer.name === '' ? '' : ` ${JSON.stringify(offer.name)}`
  if (offer.kind === 'service') return `service/${offer.proto} ${offer.service ?? '?'}${name}`
  const service = offer.service === undefined ? '' : ` to service ${offer.service}`
  const from = offer.allowFrom === undefined ? '' : ` from ${offer.allowFrom.length === 0 ? 'nobody' : offer.allowFrom.join(', ')}`
  return `${offer.kind}/${offer.proto} ${formatAddress({ ip: offer.host, port: offer.port })}${service}${from}${name}`
}

/** `2.0 MiB (2097152 bytes)`, or `512 bytes`. */
export function formatSize (bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  if (bytes < 1024) return `${bytes} bytes`
  let value = bytes / 1024
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${value.toFixed(1)} ${units[unit] as string} (${bytes} bytes)`
}
