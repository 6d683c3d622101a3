/**
 * Runtime checks of every request payload that arrives from the network, in one place.
 * Each check returns the typed values, or a `StarsockError` saying what is wrong.
 */
import { MAX_ADDRESS_CHARS, MAX_DIAL_ID_CHARS, MAX_KEY_HEX_CHARS, MAX_RESUME_SECRET_CHARS } from './constants.ts'
import { StarsockError } from './errors.ts'
import { checkProfile, readProfile, type PeerProfile } from './profile.ts'
import { MAX_CREDIT_BYTES, type DisplacedInfo, type HelloReply, type HelloRequest, type JoinExtra, type PeerBatchEntry, type PeersPage, type UdpAllocation } from './events.ts'

/** A socket.io acknowledgement callback. */
export type Ack = (...args: unknown[]) => void

/** The arguments of an event, with its trailing ack split off when it has one. */
export function splitAck (args: readonly unknown[]): { args: unknown[], ack: Ack | undefined } {
  const last = args[args.length - 1]
  if (typeof last === 'function') return { args: args.slice(0, -1), ack: last as Ack }
  return { args: [...args], ack: undefined }
}

/** What a peer id looks like as text: base58 (`12D3KooW...`, `Qm...`), 32 to 128 characters. Its key is checked where it matters (the join's challenge). */
export const PEER_ID_TEXT = /^[1-9A-HJ-NP-Za-km-z]{32,128}$/

const DIAL_ID = /^[\w.-]+$/
const HEX = /^(?:[0-9a-fA-F]{2})*$/

function bad (event: string, what: string): StarsockError {
  return new StarsockError('E_BAD_REQUEST', `${event}: ${what}`)
}

function checkString (event: string, name: string, value: unknown, maxChars: number): string | StarsockError {
  if (typeof value !== 'string') return bad(event, `${name} must be a string`)
  if (value.length > maxChars) return bad(event, `${name} is longer than ${maxChars} characters`)
  return value
}

/** `ss-join(addr, keyOrSignatureHex)`. */
export function checkJoin (args: unknown[]): { addr: string, proof: string } | StarsockError {
  const addr = checkString('ss-join', 'address', args[0], MAX_ADDRESS_CHARS)
  if (addr instanceof StarsockError) return addr
  const proof = checkString('ss-join', 'key or signature', args[1] ?? '', MAX_KEY_HEX_CHARS)
  if (proof instanceof StarsockError) return proof
  return { addr, proof }
}

/** Whether a string is even-length hex (the encoding of keys and signatures in `ss-join`). */
export function isHex (text: string): boolean {
  return HEX.test(text)
}

/** `ss-leave(addr)`. */
export function checkLeave (args: unknown[]): { addr: string } | StarsockError {
  const addr = checkString('ss-leave', 'address', args[0], MAX_ADDRESS_CHARS)
  return addr instanceof StarsockError ? addr : { addr }
}

/** `ss-dial(fromAddr, toAddr, dialId)`. */
export function checkDial (args: unknown[]): { from: string, to: string, dialId: string, secure: boolean } | StarsockError {
  const from = checkString('ss-dial', 'from address', args[0], MAX_ADDRESS_CHARS)
  if (from instanceof StarsockError) return from
  const to = checkString('ss-dial', 'to address', args[1], MAX_ADDRESS_CHARS)
  if (to instanceof StarsockError) return to
  const dialId = checkString('ss-dial', 'dial id', args[2], MAX_DIAL_ID_CHARS)
  if (dialId instanceof StarsockError) return dialId
  if (!DIAL_ID.test(dialId)) return bad('ss-dial', 'dial id must be letters, digits, "_", "-" or "."')
  // A starsock dialer's fourth argument, `{ secure }`: what it says it opens (passed on as a hint only).
  const options = args[3]
  const secure = typeof options === 'object' && options !== null && (options as { secure?: unknown }).secure === true
  return { from, to, dialId, secure }
}

/** `starsock:hello(request)`. */
export function checkHello (args: unknown[]): HelloRequest | StarsockError {
  const request = args[0] ?? {}
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    return bad('starsock:hello', 'request must be an object')
  }
  const { peerEvents, peerBatch, takeover, resume, rawFrames, dialHints, profile } = request as Record<string, unknown>
  if (peerEvents !== undefined && typeof peerEvents !== 'boolean') {
    return bad('starsock:hello', 'peerEvents must be a boolean')
  }
  if (peerBatch !== undefined && typeof peerBatch !== 'boolean') {
    return bad('starsock:hello', 'peerBatch must be a boolean')
  }
  if (takeover !== undefined && typeof takeover !== 'boolean') {
    return bad('starsock:hello', 'takeover must be a boolean')
  }
  if (rawFrames !== undefined && typeof rawFrames !== 'boolean') {
    return bad('starsock:hello', 'rawFrames must be a boolean')
  }
  if (dialHints !== undefined && typeof dialHints !== 'boolean') {
    return bad('starsock:hello', 'dialHints must be a boolean')
  }
  const checkedProfile = profile === undefined ? undefined : checkProfile(profile)
  if (checkedProfile instanceof StarsockError) return bad('starsock:hello', checkedProfile.message)
  const checked: HelloRequest = { peerEvents: peerEvents === true, ...(peerBatch === true ? { peerBatch: true } : {}), takeover: takeover === true, rawFrames: rawFrames === true ? true : undefined, ...(dialHints === true ? { dialHints: true } : {}), ...(checkedProfile !== undefined ? { profile: checkedProfile } : {}) }
  if (resume !== undefined) {
    const secret = checkString('starsock:hello', 'resume', resume, MAX_RESUME_SECRET_CHARS)
    if (secret instanceof StarsockError) return secret
    if (secret === '' || !isHex(secret)) return bad('starsock:hello', 'resume must be hex')
    return { ...checked, resume: secret }
  }
  return checked
}

/** The extra element of a join's ack (client side); `undefined` from a server that sends none or a bad one. */
export function checkJoinExtra (value: unknown): JoinExtra | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const { resume } = value as Record<string, unknown>
  if (typeof resume !== 'string' || resume === '' || resume.length > MAX_RESUME_SECRET_CHARS || !isHex(resume)) return undefined
  return { resume }
}

/** `starsock:displaced(info)` (client side); `undefined` when it is malformed. */
export function checkDisplaced (value: unknown): DisplacedInfo | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const { addr, reason, by } = value as Record<string, unknown>
  if (typeof addr !== 'string' || addr.length > MAX_ADDRESS_CHARS) return undefined
  if (reason !== 'takeover' && reason !== 'legacy-join') return undefined
  // `by` is printed to a terminal: only an `ip[:port]` (`[ipv6]:port`) shape; anything else is not
  // shown, but the notice still counts.
  return { addr, reason, by: typeof by === 'string' && isRemote(by) ? by : 'an unknown address' }
}

const REMOTE_V4 = /^\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?$/
const REMOTE_V6 = /^(?:\[[0-9A-Fa-f:.]{2,45}\]:\d{1,5}|[0-9A-Fa-f:.]{2,45})$/

/** Whether `text` is an `ip`, `ip:port` or `[ipv6]:port` as the server reports a client's address. */
function isRemote (text: string): boolean {
  return REMOTE_V4.test(text) || (text.includes(':') && REMOTE_V6.test(text))
}

/** `starsock:peers(cursor)`: the cursor of a page, 0 for the first. */
export function checkPeersCursor (args: unknown[]): number | StarsockError {
  const cursor = args[0] ?? 0
  if (typeof cursor !== 'number' || !Number.isSafeInteger(cursor) || cursor < 0) {
    return bad('starsock:peers', 'cursor must be a non-negative integer')
  }
  return cursor
}

/** Source addresses a UDP allocation request may name (`address` mode). */
export const MAX_UDP_ALLOWED_ADDRESSES = 16

/** A checked `starsock:udp-allocate` request: how endpoints register, and who may in `address` mode. */
export interface UdpAllocateRequest {
  mode: UdpAllocation['mode']
  /** Strings only here; whether each is an IP address is the server's check (it needs `node:net`). */
  addresses: string[]
}

/** `starsock:udp-allocate(request)`: `mode` (`token` by default) and `addresses` (none by default). */
export function checkUdpAllocate (args: readonly unknown[]): UdpAllocateRequest | StarsockError {
  const request = (typeof args[0] === 'object' && args[0] !== null ? args[0] : {}) as Record<string, unknown>
  const mode = request.mode ?? 'token'
  if (mode !== 'token' && mode !== 'address' && mode !== 'open') return new StarsockError('E_BAD_REQUEST', 'mode must be token, address or open')
  const addresses = request.addresses ?? []
  if (!Array.isArray(addresses) || addresses.length > MAX_UDP_ALLOWED_ADDRESSES || !addresses.every((a) => typeof a === 'string')) {
    return new StarsockError('E_BAD_REQUEST', `addresses must be at most ${MAX_UDP_ALLOWED_ADDRESSES} IP addresses`)
  }
  if (mode === 'address' && addresses.length === 0) return new StarsockError('E_BAD_REQUEST', 'address mode needs the addresses that may register')
  return { mode, addresses }
}

/**
 * Ranges the client keeps a server's announced limits in, by name: a tiny `maxMessageBytes`
 * must not shrink a sender's chunks to nothing, a huge `streamBufferBytes` or `dialTimeoutMs`
 * must not make a huge window or an endless wait. Other limits pass as given.
 */
export const ANNOUNCED_LIMIT_RANGES: Readonly<Record<string, readonly [min: number, max: number]>> = {
  maxMessageBytes: [8 * 1024, 1024 * 1024 * 1024],
  streamBufferBytes: [0, 2 * MAX_CREDIT_BYTES],
  dialTimeoutMs: [1, 5 * 60_000]
}

/** A server's announced limits: non-negative finite numbers only, each clamped to its range. */
function checkLimits (value: unknown): Record<string, number> {
  const limits: Record<string, number> = {}
  if (typeof value !== 'object' || value === null) return limits
  for (const [name, n] of Object.entries(value)) {
    if (typeof n !== 'number' || !Number.isFinite(n) || n < 0) continue
    const range = ANNOUNCED_LIMIT_RANGES[name]
    limits[name] = range === undefined ? n : Math.min(range[1], Math.max(range[0], n))
  }
  return limits
}

/** The reply to `starsock:hello` (client side), limits clamped; `undefined` when it is not an object (not a starsock server). */
export function checkHelloReply (value: unknown): HelloReply | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const { protocol, version, cryptoChallenge, limits, rawFrames } = value as Record<string, unknown>
  return {
    protocol: typeof protocol === 'number' && Number.isSafeInteger(protocol) ? protocol : 0,
    version: typeof version === 'string' ? version.slice(0, 64) : '',
    cryptoChallenge: cryptoChallenge !== false,
    limits: checkLimits(limits),
    rawFrames: rawFrames === true ? true : undefined
  }
}

/** The reply to `starsock:peers` (client side), or an `E_BAD_REQUEST` saying what is wrong. */
export function checkPeersPage (value: unknown): PeersPage | StarsockError {
  if (typeof value !== 'object' || value === null) return bad('starsock:peers reply', 'must be an object')
  const { addrs, next, profiles } = value as Record<string, unknown>
  if (!Array.isArray(addrs)) return bad('starsock:peers reply', 'addrs must be an array')
  if (next !== null && (typeof next !== 'number' || !Number.isSafeInteger(next) || next < 0)) {
    return bad('starsock:peers reply', 'next must be a non-negative integer or null')
  }
  // Profiles go with their addresses (a parallel array); a bad one is none, never shown.
  const kept: string[] = []
  const keptProfiles: Array<PeerProfile | null> = []
  addrs.forEach((a: unknown, i) => {
    if (typeof a !== 'string' || a.length > MAX_ADDRESS_CHARS) return
    kept.push(a)
    keptProfiles.push(Array.isArray(profiles) ? readProfile(profiles[i]) ?? null : null)
  })
  return Array.isArray(profiles) ? { addrs: kept, next, profiles: keptProfiles } : { addrs: kept, next }
}

/**
 * The entries of a `starsock:peer-batch` (client side), in order: a malformed entry is skipped, a
 * bad profile is none (a `profile` entry without a valid one is skipped). `undefined` when the
 * payload is not an array.
 */
export function readPeerBatch (value: unknown): PeerBatchEntry[] | undefined {
  if (!Array.isArray(value)) return undefined
  const entries: PeerBatchEntry[] = []
  for (const entry of value as unknown[]) {
    if (!Array.isArray(entry)) continue
    const [kind, addr, profile] = entry as unknown[]
    if (typeof addr !== 'string' || addr.length > MAX_ADDRESS_CHARS) continue
    const checked = readProfile(profile)
    if (kind === 'leave') entries.push(['leave', addr])
    else if (kind === 'join') entries.push(checked === undefined ? ['join', addr] : ['join', addr, checked])
    else if (kind === 'profile' && checked !== undefined) entries.push(['profile', addr, checked])
  }
  return entries
}

const UDP_MODES: ReadonlyArray<UdpAllocation['mode']> = ['token', 'address', 'open']

function isPort (n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0 && n < 65536
}

/** A UDP allocation answered by `starsock:udp-allocate` / `-refresh` (client side), or an `E_BAD_REQUEST`. */
export function checkUdpAllocation (event: string, value: unknown): UdpAllocation | StarsockError {
  const what = `${event} reply`
  if (typeof value !== 'object' || value === null) return bad(what, 'must be an object')
  const { id, ip, port1, port2, token1, token2, mode, expiresAt } = value as Record<string, unknown>
  if (typeof id !== 'string' || id === '' || id.length > MAX_DIAL_ID_CHARS) return bad(what, 'id must be a string')
  if (typeof ip !== 'string' || ip === '' || ip.length > 64) return bad(what, 'ip must be a string')
  if (!isPort(port1) || !isPort(port2)) return bad(what, 'ports must be integers from 1 to 65535')
  if (typeof token1 !== 'string' || typeof token2 !== 'string' || !isHex(token1) || !isHex(token2) || token1.length > 256 || token2.length > 256) {
    return bad(what, 'tokens must be hex')
  }
  if (!UDP_MODES.includes(mode as UdpAllocation['mode'])) return bad(what, 'mode must be token, address or open')
  if (typeof expiresAt !== 'number' || !Number.isFinite(expiresAt)) return bad(what, 'expiresAt must be a number')
  return { id, ip, port1, port2, token1, token2, mode: mode as UdpAllocation['mode'], expiresAt }
}
