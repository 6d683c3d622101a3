import { describe, expect, it } from 'vitest'
import { ruleForOffer } from '../../client/sock/agent.ts'
import type { Offer, SockKind, SockProto } from '../../shared/sock-protocol.ts'
import { matchRule, matchUdpRelayRule, parseRule, type SockRule } from '../../shared/sock-rules.ts'

const PEER = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'
const OTHER_PEER = 'QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N'

/** The message for a rule that does not have the rule's shape at all. */
const shapeMessage = (text: string): string =>
  `rule "${text}" is not KIND[/PROTO]:HOST:PORT[@PEERID] (e.g. connect/tcp:127.0.0.1:8080), file[:*][@PEERID], service:NAME[@PEERID] or udp-relay[@PEERID]`
const fileMessage = (text: string): string =>
  `rule "${text}" is not file[:*][@PEERID] (e.g. file:* or file@12D3KooW...)`
const rangeMessage = (text: string, ports: string): string =>
  `rule "${text}": port range ${ports} is not within 0-65535 low to high`
const hostMessage = (text: string, host: string): string =>
  `rule "${text}": ${host} is not a host name or address`

describe('parseRule', () => {
  it.each<[string, Omit<SockRule, 'text'>]>([
    ['connect/tcp:127.0.0.1:8080', { kind: 'connect', proto: 'tcp', host: '127.0.0.1', ports: [8080, 8080], peerId: undefined }],
    ['connect:localhost:22', { kind: 'connect', proto: 'tcp', host: 'localhost', ports: [22, 22], peerId: undefined }],
    ['connect/udp:dns.example.org:53', { kind: 'connect', proto: 'udp', host: 'dns.example.org', ports: [53, 53], peerId: undefined }],
    [`bind/udp:*:40000-40100@${PEER}`, { kind: 'bind', proto: 'udp', host: '*', ports: [40000, 40100], peerId: PEER }],
    [`accept/tcp:127.0.0.1:8080@${PEER}`, { kind: 'accept', proto: 'tcp', host: '127.0.0.1', ports: [8080, 8080], peerId: PEER }],
    ['bind:*:*', { kind: 'bind', proto: 'tcp', host: '*', ports: [0, 65535], peerId: undefined }],
    ['bind/tcp:0.0.0.0:1-1024', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', ports: [1, 1024], peerId: undefined }],
    ['connect/tcp:[::1]:443', { kind: 'connect', proto: 'tcp', host: '::1', ports: [443, 443], peerId: undefined }],
    ['connect:[2001:db8::1]:8000-8999', { kind: 'connect', proto: 'tcp', host: '2001:db8::1', ports: [8000, 8999], peerId: undefined }],
    ['connect:[fe80::1%eth0]:80', { kind: 'connect', proto: 'tcp', host: 'fe80::1%eth0', ports: [80, 80], peerId: undefined }],
    ['connect:Example.COM:80', { kind: 'connect', proto: 'tcp', host: 'Example.COM', ports: [80, 80], peerId: undefined }],
    ['connect:my-host_1:0', { kind: 'connect', proto: 'tcp', host: 'my-host_1', ports: [0, 0], peerId: undefined }],
    ['connect:h:65535', { kind: 'connect', proto: 'tcp', host: 'h', ports: [65535, 65535], peerId: undefined }],
    ['connect:h:0-65535', { kind: 'connect', proto: 'tcp', host: 'h', ports: [0, 65535], peerId: undefined }],
    ['connect:h:5-5', { kind: 'connect', proto: 'tcp', host: 'h', ports: [5, 5], peerId: undefined }],
    [`connect:*:*@${OTHER_PEER}`, { kind: 'connect', proto: 'tcp', host: '*', ports: [0, 65535], peerId: OTHER_PEER }],
    ['file', { kind: 'file', proto: 'tcp', host: '*', ports: [0, 65535], peerId: undefined }],
    ['file:*', { kind: 'file', proto: 'tcp', host: '*', ports: [0, 65535], peerId: undefined }],
    [`file@${PEER}`, { kind: 'file', proto: 'tcp', host: '*', ports: [0, 65535], peerId: PEER }],
    [`file:*@${PEER}`, { kind: 'file', proto: 'tcp', host: '*', ports: [0, 65535], peerId: PEER }],
    ['service:web', { kind: 'service', proto: 'tcp', host: 'web', ports: [0, 65535], peerId: undefined }],
    [`service:*@${PEER}`, { kind: 'service', proto: 'tcp', host: '*', ports: [0, 65535], peerId: PEER }],
    ['udp-relay', { kind: 'udp-relay', proto: 'tcp', host: '*', ports: [0, 65535], peerId: undefined }],
    [`udp-relay@${PEER}`, { kind: 'udp-relay', proto: 'tcp', host: '*', ports: [0, 65535], peerId: PEER }]
  ])('parses %s', (text, expected) => {
    const rule = parseRule(text)
    expect(rule).toEqual({ ...expected, text })
    expect(rule.ports[0]).toBeTypeOf('number')
  })

  it.each<[string, string, string]>([
    ['the empty string', '', shapeMessage('')],
    ['a kind alone', 'connect', shapeMessage('connect')],
    ['the kind accept without a port', 'accept:h', shapeMessage('accept:h')],
    ['an unknown kind', 'listen:h:80', shapeMessage('listen:h:80')],
    ['an upper-case kind', 'Connect:h:80', shapeMessage('Connect:h:80')],
    ['an unknown proto', 'connect/sctp:h:80', shapeMessage('connect/sctp:h:80')],
    ['an upper-case proto', 'connect/TCP:h:80', shapeMessage('connect/TCP:h:80')],
    ['an empty proto', 'connect/:h:80', shapeMessage('connect/:h:80')],
    ['no port', 'connect:h', shapeMessage('connect:h')],
    ['an empty port', 'connect:h:', shapeMessage('connect:h:')],
    ['an empty host', 'connect::80', shapeMessage('connect::80')],
    ['an unbracketed IPv6 address', 'connect:::1:80', shapeMessage('connect:::1:80')],
    ['empty brackets', 'connect:[]:80', shapeMessage('connect:[]:80')],
    ['a bracketed *', 'connect:[*]:22', shapeMessage('connect:[*]:22')],
    ['a bracketed name', 'connect:[example.com]:80', shapeMessage('connect:[example.com]:80')],
    ['a bracket inside a name', 'connect:a[b:80', shapeMessage('connect:a[b:80')],
    ['two ports', 'connect:h:80:90', shapeMessage('connect:h:80:90')],
    ['a port of six digits', 'connect:h:123456', shapeMessage('connect:h:123456')],
    ['a negative port', 'connect:h:-80', shapeMessage('connect:h:-80')],
    ['an open range', 'connect:h:80-', shapeMessage('connect:h:80-')],
    ['a range from *', 'connect:h:*-80', shapeMessage('connect:h:*-80')],
    ['a service name as port', 'connect:h:http', shapeMessage('connect:h:http')],
    ['a space in the host', 'connect:my host:80', shapeMessage('connect:my host:80')],
    ['a space after a colon', 'connect: h:80', shapeMessage('connect: h:80')],
    ['a space before the port', 'connect:h: 80', shapeMessage('connect:h: 80')],
    ['a leading space', ' connect:h:80', shapeMessage(' connect:h:80')],
    ['a trailing space', 'connect:h:80 ', shapeMessage('connect:h:80 ')],
    ['a trailing newline', 'connect:h:80\n', shapeMessage('connect:h:80\n')],
    ['an empty peer id', 'connect:h:80@', shapeMessage('connect:h:80@')],
    ['a short peer id', 'connect:h:80@12D3KooW', shapeMessage('connect:h:80@12D3KooW')],
    ['a peer id with non-base58 characters', `connect:h:80@${PEER.slice(0, -4)}0OIl`, shapeMessage(`connect:h:80@${PEER.slice(0, -4)}0OIl`)],
    ['a peer id over 128 characters', `connect:h:80@${'z'.repeat(129)}`, shapeMessage(`connect:h:80@${'z'.repeat(129)}`)],
    ['two peer ids', `connect:h:80@${PEER}@${PEER}`, shapeMessage(`connect:h:80@${PEER}@${PEER}`)],
    ['a port over 65535', 'connect:h:65536', rangeMessage('connect:h:65536', '65536')],
    ['a five-digit port over 65535', 'connect:h:99999', rangeMessage('connect:h:99999', '99999')],
    ['a range ending over 65535', 'bind:*:1-65536', rangeMessage('bind:*:1-65536', '1-65536')],
    ['a reversed range', 'bind/udp:*:40100-40000', rangeMessage('bind/udp:*:40100-40000', '40100-40000')],
    ['a host with a bad character', 'connect:h!st:80', hostMessage('connect:h!st:80', 'h!st')],
    ['a host over 255 characters', `connect:${'a'.repeat(256)}:80`, hostMessage(`connect:${'a'.repeat(256)}:80`, 'a'.repeat(256))],
    ['a bracketed address with a space', 'connect:[::1 ]:80', shapeMessage('connect:[::1 ]:80')],
    ['a file rule with a host', 'file:127.0.0.1:80', fileMessage('file:127.0.0.1:80')],
    ['a file rule with a proto', 'file/udp:*', shapeMessage('file/udp:*')],
    ['a file rule with a size', 'file:100', fileMessage('file:100')],
    ['a file rule with an empty peer id', 'file@', fileMessage('file@')],
    ['a file rule with a short peer id', 'file@12D3KooW', fileMessage('file@12D3KooW')],
    ['an upper-case file kind', 'FILE:*', shapeMessage('FILE:*')],
    ['a service rule without a name', 'service:', 'rule "service:" is not service:NAME[@PEERID] (e.g. service:web or service:*)'],
    ['a service name with a space', 'service:a b', 'rule "service:a b" is not service:NAME[@PEERID] (e.g. service:web or service:*)'],
    ['a udp-relay rule with a host', 'udp-relay:h:80', 'rule "udp-relay:h:80" is not udp-relay[:*][@PEERID] (e.g. udp-relay or udp-relay@12D3KooW...)']
  ])('refuses %s', (_, text, message) => {
    expect(() => parseRule(text)).toThrow(new TypeError(message))
  })
})

describe('matchRule', () => {
  const offer = (kind: SockKind, proto: SockProto, host: string, port: number): Offer => ({ kind, proto, host, port, name: 'n' })
  const rules = (...texts: string[]): SockRule[] => texts.map(parseRule)

  it.each<[string, string[], Offer, string | undefined]>([
    ['no rules', [], offer('connect', 'tcp', '127.0.0.1', 80), undefined],
    ['the same kind, proto, host and port', ['connect/tcp:127.0.0.1:8080'], offer('connect', 'tcp', '127.0.0.1', 8080), 'connect/tcp:127.0.0.1:8080'],
    ['another kind', ['connect/tcp:127.0.0.1:8080'], offer('bind', 'tcp', '127.0.0.1', 8080), undefined],
    ['an accept offer against connect and bind rules', ['connect:*:*', 'bind:*:*'], offer('accept', 'tcp', '127.0.0.1', 80), undefined],
    ['an accept offer against an accept rule', ['connect:*:*', 'accept/tcp:127.0.0.1:80'], offer('accept', 'tcp', '127.0.0.1', 80), 'accept/tcp:127.0.0.1:80'],
    ['a connect offer against an accept rule', ['accept:*:*'], offer('connect', 'tcp', '127.0.0.1', 80), undefined],
    ['another proto', ['connect/tcp:127.0.0.1:8080'], offer('connect', 'udp', '127.0.0.1', 8080), undefined],
    ['udp against a rule without proto (tcp)', ['connect:127.0.0.1:53'], offer('connect', 'udp', '127.0.0.1', 53), undefined],
    ['tcp against a rule without proto', ['connect:127.0.0.1:53'], offer('connect', 'tcp', '127.0.0.1', 53), 'connect:127.0.0.1:53'],
    ['another host', ['connect:127.0.0.1:80'], offer('connect', 'tcp', '127.0.0.2', 80), undefined],
    ['a host that only starts the same', ['connect:example.com:80'], offer('connect', 'tcp', 'example.com.evil.net', 80), undefined],
    ['a host in other case', ['connect:Example.COM:80'], offer('connect', 'tcp', 'example.com', 80), 'connect:Example.COM:80'],
    ['an offer host in other case', ['connect:example.com:80'], offer('connect', 'tcp', 'EXAMPLE.com', 80), 'connect:example.com:80'],
    ['an IPv6 rule host', ['connect:[::1]:80'], offer('connect', 'tcp', '::1', 80), 'connect:[::1]:80'],
    ['any host', ['connect:*:80'], offer('connect', 'tcp', 'anything.example', 80), 'connect:*:80'],
    ['the low end of a range', ['bind/udp:*:40000-40100'], offer('bind', 'udp', '0.0.0.0', 40000), 'bind/udp:*:40000-40100'],
    ['the high end of a range', ['bind/udp:*:40000-40100'], offer('bind', 'udp', '0.0.0.0', 40100), 'bind/udp:*:40000-40100'],
    ['one below a range', ['bind/udp:*:40000-40100'], offer('bind', 'udp', '0.0.0.0', 39999), undefined],
    ['one above a range', ['bind/udp:*:40000-40100'], offer('bind', 'udp', '0.0.0.0', 40101), undefined],
    ['port 0 against any port', ['bind:*:*'], offer('bind', 'tcp', '0.0.0.0', 0), 'bind:*:*'],
    ['port 65535 against any port', ['bind:*:*'], offer('bind', 'tcp', '0.0.0.0', 65535), 'bind:*:*'],
    ['port 0 against a single port', ['bind:*:8080'], offer('bind', 'tcp', '0.0.0.0', 0), undefined],
    ['the first matching rule', ['connect:a:1', 'connect:*:80', 'connect:h:80'], offer('connect', 'tcp', 'h', 80), 'connect:*:80'],
    ['a later rule when earlier ones do not match', ['connect:a:1', 'connect/udp:h:80', 'connect:h:70-90'], offer('connect', 'tcp', 'h', 80), 'connect:h:70-90']
  ])('with %s', (_, texts, o, expected) => {
    expect(matchRule(rules(...texts), o, PEER)?.text).toBe(expected)
  })

  it.each<[string, string, string | undefined]>([
    ['the named peer', PEER, `connect:*:*@${PEER}`],
    ['another peer', OTHER_PEER, undefined],
    ['a peer id in other case', PEER.toLowerCase(), undefined]
  ])('with a peer restriction, allows %s only', (_, from, expected) => {
    expect(matchRule(rules(`connect:*:*@${PEER}`), offer('connect', 'tcp', 'h', 80), from)?.text).toBe(expected)
  })

  it('a rule for one peer does not hide a later rule for everyone', () => {
    const list = rules(`connect:*:*@${PEER}`, 'connect:h:80')
    expect(matchRule(list, offer('connect', 'tcp', 'h', 80), OTHER_PEER)?.text).toBe('connect:h:80')
    expect(matchRule(list, offer('connect', 'tcp', 'h', 80), PEER)?.text).toBe(`connect:*:*@${PEER}`)
  })

  const file = (name = 'a.txt', size = 10): Offer => ({ kind: 'file', proto: 'tcp', host: '', port: 0, name, size })
  it.each<[string, string[], string, string | undefined]>([
    ['no rules', [], PEER, undefined],
    ['connect and bind rules for anything', ['connect:*:*', 'bind:*:*', 'bind/udp:*:*'], PEER, undefined],
    ['a file rule', ['connect:*:*', 'file:*'], PEER, 'file:*'],
    ['a file rule for the peer', [`file@${PEER}`], PEER, `file@${PEER}`],
    ['a file rule for another peer', [`file@${PEER}`], OTHER_PEER, undefined]
  ])('a file offer with %s', (_, texts, from, expected) => {
    expect(matchRule(rules(...texts), file(), from)?.text).toBe(expected)
  })

  it('a file rule allows no connect or bind', () => {
    expect(matchRule(rules('file:*'), offer('connect', 'tcp', 'h', 80), PEER)).toBeUndefined()
    expect(matchRule(rules('file:*'), offer('bind', 'tcp', '0.0.0.0', 0), PEER)).toBeUndefined()
  })

  it('returns the rule object itself', () => {
    const list = rules('connect:a:1', 'connect:h:80')
    expect(matchRule(list, offer('connect', 'tcp', 'h', 80), PEER)).toBe(list[1])
  })
})

describe('service and udp-relay rules', () => {
  const rules = (...texts: string[]): SockRule[] => texts.map(parseRule)
  const service = (name: string): Offer => ({ kind: 'service', proto: 'tcp', host: '', port: 0, name: '', service: name })

  it('match a service offer by name, or any with *', () => {
    expect(matchRule(rules('service:db', 'service:web'), service('web'), PEER)?.text).toBe('service:web')
    expect(matchRule(rules('service:db'), service('web'), PEER)).toBeUndefined()
    expect(matchRule(rules('service:*'), service('web'), PEER)?.text).toBe('service:*')
    expect(matchRule(rules(`service:web@${OTHER_PEER}`), service('web'), PEER)).toBeUndefined()
    expect(matchRule(rules('connect:*:*', 'bind:*:*', 'file'), service('web'), PEER)).toBeUndefined()
    expect(matchRule(rules('service:*'), { kind: 'connect', proto: 'tcp', host: 'web', port: 80, name: '' }, PEER)).toBeUndefined()
  })

  it('a udp-relay rule naming a peer needs a proved id', () => {
    expect(matchUdpRelayRule(rules('udp-relay'), PEER, false)?.text).toBe('udp-relay')
    expect(matchUdpRelayRule(rules(`udp-relay@${PEER}`), PEER, true)?.text).toBe(`udp-relay@${PEER}`)
    expect(matchUdpRelayRule(rules(`udp-relay@${PEER}`), PEER, false)).toBeUndefined()
    expect(matchUdpRelayRule(rules(`udp-relay@${PEER}`), OTHER_PEER, true)).toBeUndefined()
    expect(matchUdpRelayRule(rules('connect:*:*', 'service:*'), PEER, true)).toBeUndefined()
  })
})

describe('ruleForOffer (what an always answer adds)', () => {
  const OTHER = OTHER_PEER
  it.each<[string, Offer, string | undefined]>([
    ['a connect', { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: 5432, name: '' }, `connect/tcp:127.0.0.1:5432@${PEER}`],
    ['a UDP connect to IPv6', { kind: 'connect', proto: 'udp', host: '::1', port: 53, name: '' }, `connect/udp:[::1]:53@${PEER}`],
    ['a bind of any port', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 0, name: '' }, `bind/tcp:0.0.0.0:0@${PEER}`],
    ['a service', { kind: 'service', proto: 'tcp', host: '', port: 0, name: '', service: 'web' }, `service:web@${PEER}`],
    ['an accept for a service', { kind: 'accept', proto: 'tcp', host: '127.0.0.1', port: 22, name: '', service: 'ssh' }, `service:ssh@${PEER}`],
    ['a plain accept (onAccept takes its connections)', { kind: 'accept', proto: 'tcp', host: '127.0.0.1', port: 22, name: '' }, `accept/tcp:127.0.0.1:22@${PEER}`],
    // Each file is asked: a yes to one is no yes to every file from that peer.
    ['a file (each file is asked)', { kind: 'file', proto: 'tcp', host: '', port: 0, name: 'a.txt', size: 1 }, undefined],
    // A rule cannot carry the list: it would grant the same bind open to anyone.
    ['a bind with allowFrom', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 8080, name: '', allowFrom: ['10.0.0.0/8'] }, undefined]
  ])('%s', (_, offer, expected) => {
    const text = ruleForOffer(offer, PEER)
    expect(text).toBe(expected)
    if (text === undefined) return
    const rule = parseRule(text)
    const asMatched: Offer = offer.kind === 'accept' && offer.service !== undefined ? { ...offer, kind: 'service' } : offer
    expect(matchRule([rule], asMatched, PEER)).toBe(rule)
    expect(matchRule([rule], asMatched, OTHER)).toBeUndefined()
  })
})
