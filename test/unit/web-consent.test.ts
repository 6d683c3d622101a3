import { afterEach, describe, expect, it, vi } from 'vitest'
import { addAlways, loadAlways, removeAlways, type AlwaysEntry } from '../../web/always.ts'
import { askTimeoutOf, offerWords, ruleWords } from '../../web/consent.ts'
import type { Offer } from '../../shared/sock-protocol.ts'
import { parseRule } from '../../shared/sock-rules.ts'

const PEER = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'

describe('askTimeoutOf (?ask-timeout=SECONDS)', () => {
  it.each<[string, number | undefined]>([
    ['', undefined],
    ['?ask-timeout=3', 3000],
    ['?ask-timeout=2', 2000],
    ['?ask-timeout=600', 600_000],
    ['?ask-timeout=1', undefined],
    ['?ask-timeout=601', undefined],
    ['?ask-timeout=0', undefined],
    ['?ask-timeout=-5', undefined],
    ['?ask-timeout=1e3', undefined],
    ['?ask-timeout=3.5', undefined],
    ['?ask-timeout=', undefined],
    ['?ask-timeout=abc', undefined]
  ])('%s -> %s', (search, expected) => {
    expect(askTimeoutOf(search)).toBe(expected)
  })
})

describe('offerWords (what a prompt says after the peer\'s name)', () => {
  it.each<[string, Offer, string]>([
    ['a plain accept', { kind: 'accept', proto: 'tcp', host: '127.0.0.1', port: 8080, name: '' }, 'wants to forward to this page the connections it takes on its 127.0.0.1:8080 (TCP); the page answers each with the file it serves, or a greeting'],
    ['an accept for a service', { kind: 'accept', proto: 'udp', host: '::1', port: 53, name: '', service: 'dns' }, 'wants to forward the connections it takes on its [::1]:53 (UDP) to your service dns'],
    ['a connect', { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port: 5432, name: 'db' }, 'wants to reach 127.0.0.1:5432 (TCP) on this computer through your browser'],
    ['a bind with allowFrom', { kind: 'bind', proto: 'tcp', host: '0.0.0.0', port: 80, name: '', allowFrom: ['10.0.0.0/8'] }, 'wants this computer to listen on 0.0.0.0:80 (TCP) for it, for 10.0.0.0/8'],
    ['a service', { kind: 'service', proto: 'tcp', host: '', port: 0, name: '', service: 'web' }, 'wants to use your service web'],
    ['a file', { kind: 'file', proto: 'tcp', host: '', port: 0, name: 'a "b".txt', size: 3 }, 'wants to send you the file "a \\"b\\".txt"']
  ])('%s', (_, offer, words) => {
    expect(offerWords(offer)).toBe(words)
  })
})

describe('ruleWords (what a kept rule lets its peer do)', () => {
  it.each<[string, string]>([
    [`accept/tcp:127.0.0.1:8080@${PEER}`, 'may forward to this page the connections it takes on its 127.0.0.1:8080 (TCP)'],
    [`connect/udp:[::1]:50-60@${PEER}`, 'may reach [::1]:50-60 (UDP) through this page'],
    [`bind:*:*@${PEER}`, 'may have this page listen on any address:0-65535 (TCP)'],
    [`service:web@${PEER}`, 'may use your service web']
  ])('%s', (rule, words) => {
    expect(ruleWords(parseRule(rule))).toBe(words)
  })
})

describe('always.ts where storage takes nothing', () => {
  afterEach(() => { vi.unstubAllGlobals() })

  it('every rule added stays listed for the page\'s life, and Forget removes it', () => {
    // A browser with storage blocked: reads find nothing, writes throw (as Chromium's SecurityError or a full quota).
    vi.stubGlobal('localStorage', { getItem: () => null, setItem: () => { throw new Error('QuotaExceededError') } })
    const self = `${PEER.slice(0, -1)}X`
    const entry = (port: number): AlwaysEntry => ({ rule: `accept/tcp:127.0.0.1:${port}@${PEER}`, peerId: PEER, at: port })
    expect(addAlways(self, entry(1))?.map((e) => e.rule)).toEqual([entry(1).rule])
    expect(addAlways(self, entry(2))?.map((e) => e.rule)).toEqual([entry(1).rule, entry(2).rule])
    expect(loadAlways(self).map((e) => e.rule)).toEqual([entry(1).rule, entry(2).rule])
    expect(removeAlways(self, entry(1).rule).map((e) => e.rule)).toEqual([entry(2).rule])
    expect(loadAlways(self).map((e) => e.rule)).toEqual([entry(2).rule])
  })
})
