/** Rate limits: a token bucket per socket and a fixed-window counter per key (IP address). */
import { isIPv4, isIPv6 } from 'node:net'

/** A token bucket: `ratePerSecond` sustained, bursts up to `burst`. */
export class TokenBucket {
  private tokens: number
  private last: number

  constructor (private readonly ratePerSecond: number, private readonly burst: number, private readonly now: () => number = Date.now) {
    this.tokens = burst
    this.last = now()
  }

  /** Take one token; `false` when the bucket is empty. */
  take (): boolean {
    const t = this.now()
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.ratePerSecond)
    this.last = t
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}

/** Counts per key in fixed windows; memory is the keys seen in the current window only. */
export class WindowCounter {
  private counts = new Map<string, number>()
  private windowStart: number

  constructor (private readonly limit: number, private readonly windowMs: number, private readonly now: () => number = Date.now) {
    this.windowStart = now()
  }

  /** Count one hit for `key`; `false` when the key is over its limit in this window. */
  hit (key: string): boolean {
    const t = this.now()
    if (t - this.windowStart >= this.windowMs) {
      this.counts = new Map()
      this.windowStart = t
    }
    const n = (this.counts.get(key) ?? 0) + 1
    this.counts.set(key, n)
    return n <= this.limit
  }
}

/**
 * The key a per-IP limit counts under: an IPv4 address as is (`::ffff:` removed), an IPv6
 * address by its /64 prefix, since one host or one home network gets a whole /64 and could
 * otherwise take a fresh address for every request. Anything else (a proxy's odd header) as is.
 */
export function ipLimitKey (ip: string): string {
  const plain = ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip
  if (!isIPv6(plain)) return plain
  const [head = '', tail] = plain.split('%')[0]?.split('::') ?? ['']
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  // An embedded IPv4 tail (`::1.2.3.4`) counts as two groups; the /64 never reaches it.
  const groups = right.length > 0 && right[right.length - 1]?.includes('.') === true ? 7 : 8
  const full = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, groups - left.length - right.length)).fill('0'), ...right]
  return full.slice(0, 4).map((g) => (parseInt(g, 16) || 0).toString(16)).join(':') + '::/64'
}

/** The IPv6 /48 (a site, with 65,536 /64s) of an `ipLimitKey` /64 key; `undefined` for any other key. */
function sitePrefixOf (key: string): string | undefined {
  if (!key.endsWith('::/64')) return undefined
  return key.split(':').slice(0, 3).join(':') + '::/48'
}

/** The keys a per-IP limit on `ip` counts under: its `ipLimitKey`, and for IPv6 its /48's (`sitePrefixOf`) too. */
export function ipAndSiteKeys (ip: string): [ip: string] | [ip: string, site: string] {
  const key = ipLimitKey(ip)
  const site = sitePrefixOf(key)
  return site === undefined ? [key] : [key, site]
}

/** How many times a per-IP limit an IPv6 /48 (`sitePrefixOf`) may take in all. */
export const SITE_FACTOR = 4
