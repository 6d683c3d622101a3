/**
 * The `starsock up` config file (TOML): one agent, its rules and services, and any number of
 * mappings (`[[forward]]`, `[[expose]]`, `[[socks]]`, `[[accept]]`). Parsed with
 * `toml-eslint-parser` (an AST with lines), checked with a strict `zod` schema (an unknown key is
 * an error: a typo never passes silently), and every error is one line naming the file, the line
 * and the field: `agent.toml:12: forward[1].listen: not [HOST:]PORT`.
 */
import { isIP } from 'node:net'
import { homedir } from 'node:os'
import path from 'node:path'
import { getStaticTOMLValue, parseTOML, type AST } from 'toml-eslint-parser'
import { z } from 'zod'
import type { SockAddress } from '../../shared/mux-frame.ts'
import { formatAddress, isHost, isPort, type SockProto } from '../../shared/sock-protocol.ts'
import { parseRule, SERVICE_NAME, type SockRule } from '../../shared/sock-rules.ts'
import { defaultKeyFile } from '../../client/identity.node.ts'
import { readSmallFile, SmallFileError } from '../../client/read-small-file.node.ts'
import { StarsockError } from '../../shared/errors.ts'
import { checkName } from '../../shared/profile.ts'
import { PEER_ID_TEXT } from '../../shared/validate.ts'
import { LOOPBACK_ONLY, parseAllowFrom } from '../../client/sock/allow-from.node.ts'

/** The kinds of mapping a config (or the control API) may hold. */
export const MAPPING_KINDS = ['forward', 'expose', 'socks', 'accept'] as const
/** A kind of mapping. */
export type MappingKind = typeof MAPPING_KINDS[number]

/** Most mappings one config may hold (each is a listener or a bind: bounded like the agent's own limits). */
export const MAX_MAPPINGS = 256
/** Most services one config may offer. */
export const MAX_SERVICES = 256
/** Largest config file read. */
export const MAX_CONFIG_BYTES = 1024 * 1024
/** Longest time a timer can wait (Node fires a longer one after 1 ms). */
export const MAX_TIMER_MS = 2_147_483_647
/** At most this many addresses in `[udp_relay] relay_ips`. */
export const MAX_RELAY_IPS = 16

/** A bad config file or mapping entry: `message` is one line, `FILE:LINE: FIELD: what is wrong`. */
export class ConfigError extends Error {
  constructor (message: string, readonly field: string, readonly problem: string, readonly line?: number) {
    super(message)
    this.name = 'ConfigError'
  }
}

interface Common {
  /** Stable within a config: the entry's `name`, or derived from what it does (see `entryId`). */
  id: string
  /** As written (also shown to the other peer's person). */
  name?: string
  peer: string
}

/** A local port whose connections (or UDP sources) reach `to`, or a `service`, through `peer`. */
export interface ForwardEntry extends Common {
  kind: 'forward'
  listen: SockAddress
  to?: SockAddress
  service?: string
  proto: SockProto
  /** Who may use the local port. @default LOOPBACK_ONLY */
  allowFrom: string[]
}

/** `peer` listens on `bindHost:port`; each connection reaches the local `to`. */
export interface ExposeEntry extends Common {
  kind: 'expose'
  port: number
  /** @default '0.0.0.0' */
  bindHost: string
  to: SockAddress
  proto: SockProto
  /** Checked on the binding peer; `undefined`: anyone. */
  allowFrom?: string[]
}

/** A SOCKS5 (and HTTP CONNECT) proxy on `listen` whose requests `peer`'s rules decide. */
export interface SocksEntry extends Common {
  kind: 'socks'
  listen: SockAddress
  /** @default LOOPBACK_ONLY */
  allowFrom: string[]
  /** Username/password authentication when given. */
  users?: Array<{ user: string, pass: string }>
}

/** This agent listens on `listen` on behalf of `peer` (an accept mapping, no bind channel); each connection reaches the peer's `service`. */
export interface AcceptEntry extends Common {
  kind: 'accept'
  listen: SockAddress
  service: string
  proto: SockProto
  /** @default LOOPBACK_ONLY */
  allowFrom: string[]
}

/** One mapping of a config. */
export type MappingEntry = ForwardEntry | ExposeEntry | SocksEntry | AcceptEntry

/** A named service this agent offers: who may use it (`peers`, else everyone) or whether a person is asked. */
export interface ServiceConfig {
  to: SockAddress
  proto: SockProto
  /** Only these peers get it by rule; `undefined`: every peer (unless `ask`). */
  peers?: string[]
  /** No rule: a person is asked (peers in `peers` still get it by rule). */
  ask: boolean
}

/** A loaded config. */
export interface AgentConfig {
  /** The file as given. */
  file: string
  server: string
  /** The identity file, absolute (`key` is relative to the config file's folder). */
  key: string
  token?: string
  /** Display name other peers see (`name`; a reload applies it live). */
  name?: string
  insecure: boolean
  /** The `allow` rules and those the services imply. */
  rules: SockRule[]
  /** The `allow` rules alone, as written. */
  allow: SockRule[]
  timeoutMs: number
  leaseMs: number
  /** How long a person at the terminal has to answer an offer. */
  askTimeoutMs: number
  services: Record<string, ServiceConfig>
  mappings: MappingEntry[]
  control?: { listen: SockAddress, token?: string }
  /** `[udp_relay]`: where a half is bridged (`local`), and the addresses besides the server URL's host a half may name (`relay_ips`). */
  udpRelay?: { local?: SockAddress, relayIps?: string[] }
}

/** What a mapping's `name` may be (it is also its id). */
const ENTRY_NAME = /^[A-Za-z0-9][\w.:-]{0,63}$/

/** Parse `[HOST:]PORT` (IPv6 in brackets), `defaultHost` when there is none (then a bare number too). */
export function parseHostPort (value: unknown, defaultHost?: string): SockAddress | undefined {
  if (typeof value === 'number' && defaultHost !== undefined) return isPort(value) ? { ip: defaultHost, port: value } : undefined
  if (typeof value !== 'string') return undefined
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value) ?? (defaultHost === undefined ? null : /^()()(\d{1,5})$/.exec(value))
  if (m === null) return undefined
  const ip = m[1] !== undefined && m[1] !== '' ? m[1] : m[2] !== undefined && m[2] !== '' ? m[2] : defaultHost
  const port = Number(m[3])
  if (ip === undefined || !isHost(ip) || !isPort(port)) return undefined
  return { ip, port }
}

const listenAddress = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const a = parseHostPort(v, '127.0.0.1')
  if (a === undefined) ctx.addIssue({ code: 'custom', message: 'not [HOST:]PORT (e.g. 127.0.0.1:15432; port 0 to 65535)' })
  return a as SockAddress
})
const target = z.string().transform((v, ctx) => {
  const a = parseHostPort(v)
  if (a === undefined || a.port === 0) ctx.addIssue({ code: 'custom', message: 'not HOST:PORT (e.g. 127.0.0.1:5432; port 1 to 65535)' })
  return a as SockAddress
})
const peerId = z.string().regex(PEER_ID_TEXT, { message: 'not a peer id (base58, e.g. 12D3KooW...)' })
const proto = z.enum(['tcp', 'udp'], { message: 'must be "tcp" or "udp"' }).default('tcp')
const serviceName = z.string().regex(SERVICE_NAME, { message: 'not a service name (a letter or digit, then up to 63 of letters, digits, _ . -)' })
const entryName = z.string().regex(ENTRY_NAME, { message: 'not a mapping name (a letter or digit, then up to 63 of letters, digits, _ . : -)' })
const allowFrom = z.array(z.string(), { message: 'must be a list of CIDRs or addresses' }).superRefine((list, ctx) => {
  try {
    parseAllowFrom(list)
  } catch (err) {
    const at = list.findIndex((e) => { try { parseAllowFrom([e]); return false } catch { return true } })
    ctx.addIssue({ code: 'custom', message: (err as Error).message, path: at >= 0 ? [at] : [] })
  }
})
const port = z.number({ message: 'must be a port number' }).int({ message: 'must be a port number' }).min(0, { message: 'must be 0 to 65535' }).max(65535, { message: 'must be 0 to 65535' })
const loopbackListen = listenAddress.refine((a) => a === undefined || /^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(a.ip), { message: 'must be a loopback address (127.0.0.1, ::1): the control API is local only' })

/** Exactly one of `to` and `service`. */
function oneTarget (e: { to?: unknown, service?: unknown }, ctx: z.RefinementCtx): void {
  if (e.to !== undefined && e.service !== undefined) ctx.addIssue({ code: 'custom', message: 'give to or service, not both', path: ['service'] })
  else if (e.to === undefined && e.service === undefined) ctx.addIssue({ code: 'custom', message: 'needs to (HOST:PORT) or service (a name the peer offers)', path: [] })
}

const forwardSchema = z.strictObject({
  name: entryName.optional(),
  peer: peerId,
  listen: listenAddress,
  to: target.optional(),
  service: serviceName.optional(),
  proto,
  allow_from: allowFrom.optional()
}).superRefine(oneTarget)

const exposeSchema = z.strictObject({
  name: entryName.optional(),
  peer: peerId,
  port,
  bind_host: z.string().refine(isHost, { message: 'not a host name or address' }).default('0.0.0.0'),
  to: target,
  proto,
  allow_from: allowFrom.optional()
})

const socksUser = z.strictObject({
  user: z.string().min(1, { message: 'must be 1 to 255 characters' }).max(255, { message: 'must be 1 to 255 characters' }),
  pass: z.string().min(1, { message: 'must be 1 to 255 characters' }).max(255, { message: 'must be 1 to 255 characters' })
})
const socksSchema = z.strictObject({
  name: entryName.optional(),
  peer: peerId,
  listen: listenAddress,
  allow_from: allowFrom.optional(),
  users: z.array(socksUser).min(1, { message: 'must list at least one { user, pass } (leave it out for no authentication)' }).max(64, { message: 'at most 64 users' }).optional()
})

const acceptSchema = z.strictObject({
  name: entryName.optional(),
  peer: peerId,
  listen: listenAddress,
  // An accept offer carries no target: the peer connects each channel to a service of its own.
  to: z.unknown().superRefine((_v, ctx) => ctx.addIssue({ code: 'custom', message: 'an accept reaches a service the peer names (service = "NAME"), not an address: for an address there, use a [[forward]]' })).optional(),
  service: serviceName.optional(),
  proto,
  allow_from: allowFrom.optional()
}).superRefine((e, ctx) => { if (e.to === undefined && e.service === undefined) ctx.addIssue({ code: 'custom', message: 'needs service (a name the peer offers)', path: [] }) })

const ENTRY_SCHEMAS = { forward: forwardSchema, expose: exposeSchema, socks: socksSchema, accept: acceptSchema } as const

const serviceSchema = z.union([
  z.string(),
  z.strictObject({
    to: z.string(),
    proto: z.enum(['tcp', 'udp'], { message: 'must be "tcp" or "udp"' }).optional(),
    peers: z.array(peerId).max(256, { message: 'at most 256 peers' }).optional(),
    ask: z.boolean().default(false)
  })
], { message: 'must be "HOST:PORT", "udp:HOST:PORT" or { to = "HOST:PORT", proto, peers, ask }' }).transform((v, ctx): ServiceConfig => {
  const text = typeof v === 'string' ? v : v.to
  const udp = text.startsWith('udp:')
  const tcp = text.startsWith('tcp:')
  const to = parseHostPort(udp || tcp ? text.slice(4) : text)
  if (to === undefined || to.port === 0) ctx.addIssue({ code: 'custom', message: 'not [udp:]HOST:PORT (e.g. 127.0.0.1:3000 or udp:127.0.0.1:53)', path: typeof v === 'string' ? [] : ['to'] })
  const protoFromText: SockProto | undefined = udp ? 'udp' : tcp ? 'tcp' : undefined
  if (typeof v !== 'string' && v.proto !== undefined && protoFromText !== undefined && v.proto !== protoFromText) {
    ctx.addIssue({ code: 'custom', message: `proto "${v.proto}" but to says ${protoFromText}`, path: ['proto'] })
  }
  return {
    to: to as SockAddress,
    proto: (typeof v === 'string' ? undefined : v.proto) ?? protoFromText ?? 'tcp',
    peers: typeof v === 'string' ? undefined : v.peers,
    ask: typeof v === 'string' ? false : v.ask
  }
})

const ruleSchema = z.string().transform((v, ctx) => {
  try {
    return parseRule(v)
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
    return z.NEVER
  }
})

/** A whole number of milliseconds from `min` to `MAX_TIMER_MS`. */
function milliseconds (min: number): z.ZodNumber {
  const range = `a whole number of milliseconds, ${min} to ${MAX_TIMER_MS} (about 24.8 days)`
  return z.number({ message: `must be ${range}` }).int({ message: `must be ${range}` }).min(min, { message: `must be ${range}` }).max(MAX_TIMER_MS, { message: `must be ${range}` })
}

const configSchema = z.strictObject({
  server: z.string().min(1, { message: 'must be a server URL' }).optional(),
  key: z.string().min(1, { message: 'must be a file path' }).optional(),
  token: z.string().optional(),
  name: z.string().superRefine((value, check) => {
    const name = checkName(value)
    if (name instanceof StarsockError) check.addIssue({ code: 'custom', message: name.message.replace(/^name /, '') })
  }).optional(),
  insecure: z.boolean().default(false),
  allow: z.array(ruleSchema).max(1024, { message: 'at most 1024 rules' }).default([]),
  timeout_ms: milliseconds(1).default(60_000),
  lease_ms: milliseconds(0).default(30_000),
  ask_timeout_ms: milliseconds(1000).default(60_000),
  services: z.record(serviceName, serviceSchema).default({}),
  forward: z.array(z.unknown()).default([]),
  expose: z.array(z.unknown()).default([]),
  socks: z.array(z.unknown()).default([]),
  accept: z.array(z.unknown()).default([]),
  control: z.strictObject({
    listen: loopbackListen,
    token: z.string().min(16, { message: 'must be at least 16 characters (leave it out to have one made)' }).optional()
  }).optional(),
  udp_relay: z.strictObject({
    local: z.string().transform((v, ctx) => {
      const a = parseHostPort(v)
      if (a === undefined || !/^[\d.]+$|:/.test(a.ip)) ctx.addIssue({ code: 'custom', message: 'not IP:PORT (e.g. 127.0.0.1:40000)' })
      return a as SockAddress
    }).optional(),
    relay_ips: z.array(z.string().refine((v) => isIP(v) !== 0, { message: 'not an IP address (e.g. 192.0.2.7 or 2001:db8::7)' }))
      .max(MAX_RELAY_IPS, { message: `at most ${MAX_RELAY_IPS} addresses` }).optional()
  }).optional()
})

type Path = ReadonlyArray<PropertyKey>

/** `forward[1].listen` for `['forward', 1, 'listen']`. */
export function formatPath (p: Path): string {
  let out = ''
  for (const part of p) {
    if (typeof part === 'number') out += `[${part}]`
    else out += (out === '' ? '' : '.') + String(part)
  }
  return out
}

/** `text` with control characters escaped (`\\u001b`): an error is one line, and a file cannot drive the terminal. */
export function escapeControls (text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/** A zod failure as one line: the first issue (after the path, the message). */
function firstIssue (error: z.ZodError, base: Path, input: unknown): { path: PropertyKey[], message: string } {
  const issue = error.issues[0] as z.core.$ZodIssue
  let p = [...base, ...issue.path]
  let message = issue.message
  if (issue.code === 'unrecognized_keys') {
    p = [...p, issue.keys[0] as string]
    message = `unknown key${issue.keys.length > 1 ? ` (also: ${issue.keys.slice(1).join(', ')})` : ''}: a typo? ` + allowedKeysText(base, issue.path)
  } else if (issue.code === 'invalid_key') {
    message = `name: ${issue.issues[0]?.message ?? 'not a valid name'}`
  } else if (issue.code === 'invalid_type' && valueAt(input, issue.path) === undefined) {
    message = 'missing (required)'
  } else if (issue.code === 'invalid_type' && issue.expected === 'int') {
    if (/^Invalid input/.test(message)) message = 'must be a whole number'
  } else if (issue.code === 'invalid_type') {
    message = `must be ${issue.expected === 'number' ? 'a number' : issue.expected === 'boolean' ? 'true or false' : issue.expected === 'array' ? 'a list' : issue.expected === 'object' ? 'a table' : `a ${issue.expected}`}`
  } else if (issue.code === 'too_big' && /^Too big/.test(message)) {
    message = `must be at most ${String(issue.maximum)}${issue.origin === 'string' ? ' characters' : issue.origin === 'array' ? ' entries' : ''}`
  } else if (issue.code === 'too_small' && /^Too small/.test(message)) {
    message = `must be at least ${String(issue.minimum)}${issue.origin === 'string' ? ' characters' : issue.origin === 'array' ? ' entries' : ''}`
  }
  return { path: p.map((x) => typeof x === 'string' ? escapeControls(x) : x), message: escapeControls(message) }
}

/** The value at `p` inside `input` (`undefined` when there is none). */
function valueAt (input: unknown, p: Path): unknown {
  let v = input
  for (const part of p) {
    if (v === null || typeof v !== 'object') return undefined
    v = (v as Record<PropertyKey, unknown>)[part]
  }
  return v
}

/** The keys a table may have, for an unknown-key error. */
function allowedKeysText (base: Path, rest: Path): string {
  const where = [...base, ...rest].filter((p) => typeof p === 'string')
  const kind = where[0]
  const keys = where.length === 0
    ? Object.keys(configSchema.shape)
    : kind !== undefined && kind in ENTRY_SCHEMAS && where.length === 1
      ? Object.keys(ENTRY_SCHEMAS[kind as MappingKind].shape)
      : undefined
  const service = where[0] === 'services' && where.length === 2 ? ['to', 'proto', 'peers', 'ask'] : undefined
  if (service !== undefined) return `known keys: ${service.join(', ')}`
  return keys === undefined ? 'not a known key here' : `known keys: ${keys.join(', ')}`
}

/** Where each path of the document is (its first line), from the TOML AST. */
function lineIndex (ast: AST.TOMLProgram): Map<string, number> {
  const lines = new Map<string, number>()
  const mark = (p: Path, line: number): void => {
    const key = JSON.stringify(p)
    if (!lines.has(key)) lines.set(key, line)
  }
  const keyNames = (kv: AST.TOMLKeyValue): string[] => kv.key.keys.map((k) => k.type === 'TOMLBare' ? k.name : String(k.value))
  const walkValue = (p: Path, node: AST.TOMLContentNode): void => {
    mark(p, node.loc.start.line)
    if (node.type === 'TOMLInlineTable') for (const kv of node.body) walkKeyValue(p, kv)
    else if (node.type === 'TOMLArray') node.elements.forEach((e, i) => walkValue([...p, i], e))
  }
  const walkKeyValue = (base: Path, kv: AST.TOMLKeyValue): void => {
    const names = keyNames(kv)
    for (let i = 1; i < names.length; i++) mark([...base, ...names.slice(0, i)], kv.loc.start.line)
    walkValue([...base, ...names], kv.value)
  }
  for (const top of ast.body) {
    for (const node of top.body) {
      if (node.type === 'TOMLKeyValue') walkKeyValue([], node)
      else {
        const key = node.resolvedKey
        for (let i = 1; i <= key.length; i++) mark(key.slice(0, i), node.loc.start.line)
        for (const kv of node.body) walkKeyValue(key, kv)
      }
    }
  }
  return lines
}

/** The line of `p`, or of its nearest ancestor in the file (1 for the top level). */
function lineOf (lines: Map<string, number>, p: Path): number {
  for (let n = p.length; n > 0; n--) {
    const line = lines.get(JSON.stringify(p.slice(0, n)))
    if (line !== undefined) return line
  }
  return 1
}

type ForwardRaw = z.output<typeof forwardSchema>
type ExposeRaw = z.output<typeof exposeSchema>
type SocksRaw = z.output<typeof socksSchema>
type AcceptRaw = z.output<typeof acceptSchema>

/** Turn a checked entry (TOML or JSON field names) into a `MappingEntry`; its id is its name, or derived from what it does. */
function toEntry (kind: MappingKind, raw: unknown): MappingEntry {
  const named = (e: { name?: string, peer: string }, derived: string): { id: string, name?: string, peer: string } =>
    ({ id: e.name ?? derived, ...(e.name === undefined ? {} : { name: e.name }), peer: e.peer })
  const target = (e: { to?: SockAddress, service?: string }): { to?: SockAddress, service?: string } => e.service === undefined ? { to: e.to } : { service: e.service }
  switch (kind) {
    case 'forward': {
      const e = raw as ForwardRaw
      return { kind, ...named(e, `forward/${e.proto}:${formatAddress(e.listen)}`), listen: e.listen, ...target(e), proto: e.proto, allowFrom: e.allow_from ?? [...LOOPBACK_ONLY] }
    }
    case 'accept': {
      const e = raw as AcceptRaw
      return { kind, ...named(e, `accept/${e.proto}:${formatAddress(e.listen)}`), listen: e.listen, service: e.service as string, proto: e.proto, allowFrom: e.allow_from ?? [...LOOPBACK_ONLY] }
    }
    case 'socks': {
      const e = raw as SocksRaw
      return { kind, ...named(e, `socks:${formatAddress(e.listen)}`), listen: e.listen, allowFrom: e.allow_from ?? [...LOOPBACK_ONLY], ...(e.users === undefined ? {} : { users: e.users }) }
    }
    case 'expose': {
      const e = raw as ExposeRaw
      const derived = `expose/${e.proto}:${e.peer.slice(-8)}:${formatAddress({ ip: e.bind_host, port: e.port })}`
      return { kind, ...named(e, derived), port: e.port, bindHost: e.bind_host, to: e.to, proto: e.proto, ...(e.allow_from === undefined ? {} : { allowFrom: e.allow_from }) }
    }
  }
}

/**
 * Check one mapping entry (a config table, or a control API JSON body with the same field names:
 * `peer`, `listen`, `to`, `service`, `proto`, `allow_from`, ...); throws a `ConfigError` whose
 * message is `FIELD: what is wrong`.
 */
export function parseMappingEntry (kind: MappingKind, value: unknown): MappingEntry {
  if (!(MAPPING_KINDS as readonly string[]).includes(kind)) throw new ConfigError(`kind: not one of ${MAPPING_KINDS.join(', ')}`, 'kind', `not one of ${MAPPING_KINDS.join(', ')}`)
  const r = ENTRY_SCHEMAS[kind].safeParse(value)
  if (!r.success) {
    const { path: p, message } = firstIssue(r.error, [kind], value)
    const field = formatPath(p.slice(1)) || kind
    throw new ConfigError(`${field}: ${message}`, field, message)
  }
  return toEntry(kind, r.data)
}

/** A stable text of an entry, equal for equal entries whatever the key order (for `apply`'s diff). */
export function canonicalEntry (entry: MappingEntry): string {
  // The same allowlist in another order or spelling ("127.0.0.1" and "127.0.0.1/32") is no change: it must not restart the mapping.
  const normal: Record<string, unknown> = { ...entry }
  if (entry.allowFrom !== undefined) normal.allowFrom = [...new Set(entry.allowFrom.map(normalCidr))].sort()
  if (entry.kind === 'socks' && entry.users !== undefined) normal.users = [...new Map(entry.users.map((u) => [JSON.stringify([u.user, u.pass]), u])).entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([, u]) => u)
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort)
    if (v === null || typeof v !== 'object') return v
    const o = v as Record<string, unknown>
    return Object.fromEntries(Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) => [k, sort(o[k])]))
  }
  return JSON.stringify(sort(normal))
}

/** `ADDRESS/PREFIX` with the address in its usual form (IPv6 compressed, lower case); an entry that is not one stays as is. */
function normalCidr (entry: string): string {
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(entry)
  if (m === null) return entry
  const address = m[1] as string
  const v6 = address.includes(':')
  let ip = address
  if (v6) {
    try { ip = new URL(`http://[${address}]`).hostname.slice(1, -1) } catch { return entry }
  }
  return `${ip}/${m[2] === undefined ? (v6 ? 128 : 32) : Number(m[2])}`
}

/** The rules the services imply: `service:NAME` for everyone, or `service:NAME@PEERID` for each of `peers`. */
export function serviceRules (services: Record<string, ServiceConfig>): SockRule[] {
  const rules: SockRule[] = []
  for (const [name, s] of Object.entries(services)) {
    if (s.peers !== undefined) for (const p of s.peers) rules.push(parseRule(`service:${name}@${p}`))
    else if (!s.ask) rules.push(parseRule(`service:${name}`))
  }
  return rules
}

/**
 * Parse and check config `text` (from `file`, for messages and the key's folder); `env` gives
 * `STARSOCK_SERVER`, `STARSOCK_TOKEN` and `STARSOCK_KEY` when the file has no `server`, `token` or `key`. Throws a
 * `ConfigError` with one line.
 */
/** One spelling per address: localhost is 127.0.0.1, IPv6 lower case and compressed (`0:0:0:0:0:0:0:1` is `::1`). */
function canonicalIp (ip: string): string {
  if (ip === 'localhost') return '127.0.0.1'
  if (isIP(ip) !== 6) return ip
  return new URL(`http://[${ip}]/`).hostname.slice(1, -1)
}

export function parseConfig (text: string, file: string, env: Record<string, string | undefined> = {}): AgentConfig {
  const shown = file
  const fail = (line: number, field: string, problem: string): never => {
    throw new ConfigError(escapeControls(`${shown}:${line}: ${field}: ${problem}`), field, problem, line)
  }
  let ast: ReturnType<typeof parseTOML>
  try {
    ast = parseTOML(text.startsWith('\ufeff') ? text.slice(1) : text)
  } catch (err) {
    const e = err as { lineNumber?: number, message?: string }
    return fail(e.lineNumber ?? 1, 'syntax', `not valid TOML: ${(e.message ?? String(err)).split('\n')[0] ?? ''}`)
  }
  const lines = lineIndex(ast)
  const value = getStaticTOMLValue(ast)
  const top = configSchema.safeParse(value)
  if (!top.success) {
    const { path: p, message } = firstIssue(top.error, [], value)
    return fail(lineOf(lines, p), formatPath(p) || 'config', message)
  }
  const c = top.data
  const server = c.server ?? env.STARSOCK_SERVER
  if (server === undefined || server === '') fail(1, 'server', 'missing: set server = "http://HOST:PORT" here, or STARSOCK_SERVER')
  const mappings: MappingEntry[] = []
  const ids = new Map<string, string>()
  const listens: Array<{ proto: string, ip: string, port: number, where: string }> = []
  for (const kind of MAPPING_KINDS) {
    const list = c[kind]
    list.forEach((raw, i) => {
      const r = ENTRY_SCHEMAS[kind].safeParse(raw)
      if (!r.success) {
        const { path: p, message } = firstIssue(r.error, [kind, i], raw)
        fail(lineOf(lines, p), formatPath(p), message)
      }
      const entry = toEntry(kind, r.data)
      const where = formatPath([kind, i])
      const idAt = ids.get(entry.id)
      if (idAt !== undefined) fail(lineOf(lines, [kind, i, 'name']), `${where}${entry.name === undefined ? '' : '.name'}`, `id "${entry.id}" is already used by ${idAt} (give each a distinct name)`)
      ids.set(entry.id, where)
      if (entry.kind !== 'expose' && entry.listen.port !== 0) {
        const p = entry.kind === 'socks' ? 'tcp' : entry.proto
        const ip = canonicalIp(entry.listen.ip)
        // A wildcard takes the port on every address of its family: 0.0.0.0 the IPv4 ones, :: (dual-stack) all of them.
        const clash = (a: string, b: string): boolean => a === b || a === '::' || b === '::' || (a === '0.0.0.0' && isIP(b) === 4) || (b === '0.0.0.0' && isIP(a) === 4)
        const at = listens.find((l) => l.proto === p && l.port === entry.listen.port && clash(l.ip, ip))
        if (at !== undefined) fail(lineOf(lines, [kind, i, 'listen']), `${where}.listen`, `${p} ${formatAddress({ ip, port: entry.listen.port })} is already listened on by ${at.where}${at.ip === ip ? '' : ` (${formatAddress(at)}: a wildcard address takes the port on every address${at.ip === '0.0.0.0' || ip === '0.0.0.0' ? ' of its family' : ''})`}`)
        listens.push({ proto: p, ip, port: entry.listen.port, where })
      }
      mappings.push(entry)
    })
  }
  if (mappings.length > MAX_MAPPINGS) fail(1, 'config', `${mappings.length} mappings; at most ${MAX_MAPPINGS}`)
  if (Object.keys(c.services).length > MAX_SERVICES) fail(lineOf(lines, ['services']), 'services', `at most ${MAX_SERVICES} services`)
  const folder = path.dirname(path.resolve(file))
  // Checked by the schema: normalised here (NFC, trimmed; empty is none).
  const name = c.name === undefined ? undefined : checkName(c.name)
  return {
    file,
    server: server as string,
    key: c.key === undefined ? env.STARSOCK_KEY ?? defaultKeyFile() : path.resolve(folder, c.key === '~' || c.key.startsWith('~/') ? path.join(homedir(), c.key.slice(1)) : c.key),
    token: c.token ?? env.STARSOCK_TOKEN,
    ...(typeof name === 'string' ? { name } : {}),
    insecure: c.insecure,
    allow: c.allow,
    rules: [...c.allow, ...serviceRules(c.services)],
    timeoutMs: c.timeout_ms,
    leaseMs: c.lease_ms,
    askTimeoutMs: c.ask_timeout_ms,
    services: c.services,
    mappings,
    ...(c.control === undefined ? {} : { control: c.control }),
    ...(c.udp_relay === undefined ? {} : { udpRelay: { ...(c.udp_relay.local === undefined ? {} : { local: c.udp_relay.local }), ...(c.udp_relay.relay_ips === undefined ? {} : { relayIps: c.udp_relay.relay_ips }) } })
  }
}

/** Read and check the config file `file` (see `parseConfig`). */
export async function loadConfig (file: string, env: Record<string, string | undefined> = {}): Promise<AgentConfig> {
  let text: string
  try {
    text = readSmallFile(file, MAX_CONFIG_BYTES).toString('utf8')
  } catch (err) {
    if (err instanceof SmallFileError) throw new ConfigError(`${file}:1: config: ${err.reason}`, 'config', err.reason, 1)
    throw new ConfigError(`${file}: cannot read it: ${(err as Error).message}`, 'config', (err as Error).message)
  }
  return parseConfig(text, file, env)
}
