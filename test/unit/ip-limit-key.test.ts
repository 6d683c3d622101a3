import { describe, expect, it } from 'vitest'
import { ipLimitKey } from '../../server/rate-limit.ts'

describe('ipLimitKey', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:10.1.2.3', '10.1.2.3'],
    ['::1', '0:0:0:0::/64'],
    ['2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['2001:DB8:0001:0002:ffff::9', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:db8:1::', '2001:db8:1:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
    ['not an ip', 'not an ip']
  ])('%s counts as %s', (ip, key) => {
    expect(ipLimitKey(ip)).toBe(key)
  })

  it('puts every address of one /64 under one key and another /64 under another', () => {
    expect(new Set(['2001:db8:5:6::1', '2001:db8:5:6::2', '2001:db8:5:6:ffff:ffff:ffff:ffff'].map(ipLimitKey)).size).toBe(1)
    expect(ipLimitKey('2001:db8:5:7::1')).not.toBe(ipLimitKey('2001:db8:5:6::1'))
  })
})
