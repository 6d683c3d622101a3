/**
 * Source allowlists (`allow_from`): which client addresses may use a port listened on, as CIDRs
 * or single addresses, IPv4 and IPv6 (an IPv4-mapped IPv6 source matches the IPv4 entries).
 * Matching is Node's `net.BlockList`.
 */
import net from 'node:net'

/** Loopback only: the default of a port listened on here for a local program. */
export const LOOPBACK_ONLY: readonly string[] = ['127.0.0.0/8', '::1/128']

/** Most entries an allowlist may have (a bind offer carries its list to the other peer). */
export const MAX_ALLOW_FROM_ENTRIES = 64

/** A parsed allowlist. */
export class AllowFrom {
  private readonly blocks = new net.BlockList()

  /** Use `parseAllowFrom`. */
  constructor (readonly list: readonly string[]) {
    for (const entry of list) {
      const { address, prefix, family } = parseEntry(entry)
      this.blocks.addSubnet(address, prefix, family)
    }
  }

  /** Whether a client at `ip` may connect (an address as `socket.remoteAddress` gives it). */
  allows (ip: string | undefined): boolean {
    if (ip === undefined) return false
    const bare = ip.replace(/%.*$/, '') // a zone id is not part of the match
    const family = net.isIP(bare)
    if (family === 0) return false
    return this.blocks.check(bare, family === 4 ? 'ipv4' : 'ipv6')
  }

  /** The list as written, for logs and prompts: `127.0.0.0/8, ::1/128`. */
  toString (): string {
    return this.list.join(', ')
  }
}

function parseEntry (entry: string): { address: string, prefix: number, family: 'ipv4' | 'ipv6' } {
  if (typeof entry !== 'string') throw new TypeError('allow_from entries must be strings (CIDRs or addresses)')
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(entry)
  const address = m?.[1] ?? ''
  const kind = net.isIP(address)
  if (m === null || kind === 0) throw new TypeError(`allow_from entry "${entry}" is not an IPv4 or IPv6 address or CIDR (e.g. 127.0.0.1/32, 10.0.0.0/8, ::1/128)`)
  const max = kind === 4 ? 32 : 128
  const prefix = m[2] === undefined ? max : Number(m[2])
  if (prefix > max) throw new TypeError(`allow_from entry "${entry}": prefix /${prefix} is over /${max}`)
  return { address, prefix, family: kind === 4 ? 'ipv4' : 'ipv6' }
}

/**
 * An IP address in one spelling: IPv4 as is, IPv6 in its short lower-case form (RFC 5952), an
 * IPv4-mapped IPv6 address as the IPv4 one; brackets dropped. Anything else comes back lower case.
 */
export function canonicalIp (ip: string): string {
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip
  const kind = net.isIP(bare)
  if (kind === 4) return bare
  if (kind !== 6) return bare.toLowerCase()
  const v6 = new URL(`http://[${bare}]/`).hostname.slice(1, -1)
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6)
  if (mapped === null) return v6
  const hi = parseInt(mapped[1] as string, 16)
  const lo = parseInt(mapped[2] as string, 16)
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}

/** Parse an allowlist; throws a `TypeError` naming the first bad entry, or when there are too many. */
export function parseAllowFrom (list: readonly string[]): AllowFrom {
  const value: unknown = list
  if (!Array.isArray(value)) throw new TypeError('allow_from must be a list of CIDRs or addresses')
  if (list.length > MAX_ALLOW_FROM_ENTRIES) throw new TypeError(`allow_from has ${list.length} entries; at most ${MAX_ALLOW_FROM_ENTRIES}`)
  return new AllowFrom(list.slice())
}
