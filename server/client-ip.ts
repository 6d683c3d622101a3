/** Who a request or a socket comes from: the client IP address every per-IP limit keys on. */
import { isIP } from 'node:net'
import type { IncomingHttpHeaders } from 'node:http'

/**
 * The IP address the trusted proxy saw, from `X-Forwarded-For`: its rightmost entry, the one the
 * proxy itself appended (entries to its left were written by the client and prove nothing).
 * `undefined` without the header or when that entry is not an IP address.
 */
export function forwardedIp (headers: IncomingHttpHeaders): string | undefined {
  const header = headers['x-forwarded-for']
  const joined = Array.isArray(header) ? header.join(',') : header // repeated headers, in order
  const last = joined?.split(',').pop()?.trim()
  return last !== undefined && isIP(last) !== 0 ? last : undefined
}

/**
 * The client's IP address: behind a trusted proxy what it saw (`forwardedIp`), else `address`
 * (the TCP peer's), with `::ffff:` taken off (one key per client, whichever family it came in on).
 */
export function clientIpOf (headers: IncomingHttpHeaders, address: string, trustProxy: boolean): string {
  const ip = (trustProxy ? forwardedIp(headers) : undefined) ?? address
  return ip.startsWith('::ffff:') ? ip.slice(7) : ip
}
