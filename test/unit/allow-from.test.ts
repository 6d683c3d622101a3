import { describe, expect, it } from 'vitest'
import { LOOPBACK_ONLY, MAX_ALLOW_FROM_ENTRIES, parseAllowFrom } from '../../client/sock/allow-from.node.ts'

describe('parseAllowFrom', () => {
  it('lets in loopback only by default', () => {
    const a = parseAllowFrom(LOOPBACK_ONLY)
    expect(a.allows('127.0.0.1')).toBe(true)
    expect(a.allows('127.0.0.2')).toBe(true)
    expect(a.allows('::1')).toBe(true)
    expect(a.allows('::ffff:127.0.0.2')).toBe(true)
    expect(a.allows('10.0.0.1')).toBe(false)
    expect(a.allows('::2')).toBe(false)
    expect(a.allows(undefined)).toBe(false)
    expect(a.allows('not an address')).toBe(false)
  })

  it('matches single addresses, IPv4 and IPv6 CIDRs', () => {
    const a = parseAllowFrom(['127.0.0.1', '10.1.0.0/16', '2001:db8::/32', 'fe80::1'])
    expect(a.allows('127.0.0.1')).toBe(true)
    expect(a.allows('127.0.0.2')).toBe(false)
    expect(a.allows('10.1.200.3')).toBe(true)
    expect(a.allows('10.2.0.1')).toBe(false)
    expect(a.allows('2001:db8:ffff::1')).toBe(true)
    expect(a.allows('2001:db9::1')).toBe(false)
    expect(a.allows('fe80::1%eth0')).toBe(true)
    expect(a.toString()).toBe('127.0.0.1, 10.1.0.0/16, 2001:db8::/32, fe80::1')
  })

  it('lets everyone in with 0.0.0.0/0 and ::/0', () => {
    expect(parseAllowFrom(['0.0.0.0/0']).allows('203.0.113.9')).toBe(true)
    expect(parseAllowFrom(['::/0']).allows('2001:db8::9')).toBe(true)
    expect(parseAllowFrom([]).allows('127.0.0.1')).toBe(false)
  })

  it.each([
    ['10.0.0.0/33', /prefix \/33 is over \/32/],
    ['::/129', /prefix \/129 is over \/128/],
    ['example.com', /not an IPv4 or IPv6 address or CIDR/],
    ['10.0.0.0/', /not an IPv4 or IPv6 address or CIDR/],
    ['10.0.0.0/8 ', /not an IPv4 or IPv6 address or CIDR/],
    ['', /not an IPv4 or IPv6 address or CIDR/]
  ])('refuses %j', (entry, message) => {
    expect(() => parseAllowFrom([entry])).toThrow(message)
  })

  it('refuses too many entries', () => {
    expect(() => parseAllowFrom(Array.from({ length: MAX_ALLOW_FROM_ENTRIES + 1 }, (_, i) => `10.0.${i}.0/24`))).toThrow(/at most 64/)
  })
})
