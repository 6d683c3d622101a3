/**
 * Consent rules: `KIND[/PROTO]:HOST:PORT[@PEERID]`, e.g. `connect/tcp:127.0.0.1:8080` or
 * `bind/udp:*:40000-40100@12D3KooW…`, and `file[:*][@PEERID]` for files (within the receiver's
 * size cap and quota). An offer is allowed when some rule matches it.
 */
import { isHost, type Offer } from './sock-protocol.ts'

/** One parsed rule. */
export interface SockRule {
  kind: 'connect' | 'bind' | 'file'
  /** `tcp` for a file rule. */
  proto: 'tcp' | 'udp'
  /** A host name or address, or `*` for any (`*` for a file rule). */
  host: string
  /** Inclusive port range (`*` is 0 to 65535). */
  ports: [number, number]
  /** Only offers from this peer, when set. */
  peerId?: string
  /** The rule as written. */
  text: string
}

const RULE = /^(connect|bind)(?:\/(tcp|udp))?:(\*|\[[0-9A-Fa-f:.%\w]*:[0-9A-Fa-f:.%\w]*\]|[^:@\s[\]]+):(\*|\d{1,5}(?:-\d{1,5})?)(?:@([1-9A-HJ-NP-Za-km-z]{32,128}))?$/

const FILE_RULE = /^file(?::\*)?(?:@([1-9A-HJ-NP-Za-km-z]{32,128}))?$/

/** Parse a rule; throws a `TypeError` naming what is wrong. */
export function parseRule (text: string): SockRule {
  if (text === 'file' || text.startsWith('file:') || text.startsWith('file@')) {
    const f = FILE_RULE.exec(text)
    if (f === null) throw new TypeError(`rule "${text}" is not file[:*][@PEERID] (e.g. file:* or file@12D3KooW...)`)
    return { kind: 'file', proto: 'tcp', host: '*', ports: [0, 65535], peerId: f[1], text }
  }
  const m = RULE.exec(text)
  if (m === null) throw new TypeError(`rule "${text}" is not KIND[/PROTO]:HOST:PORT[@PEERID] (e.g. connect/tcp:127.0.0.1:8080) or file[:*][@PEERID]`)
  const [, kind, proto, rawHost, rawPorts, peerId] = m as unknown as [string, 'connect' | 'bind', 'tcp' | 'udp' | undefined, string, string, string | undefined]
  const host = rawHost.startsWith('[') ? rawHost.slice(1, -1) : rawHost
  if (host !== '*' && !isHost(host)) throw new TypeError(`rule "${text}": ${host} is not a host name or address`)
  let ports: [number, number] = [0, 65535]
  if (rawPorts !== '*') {
    const [a, b = a] = rawPorts.split('-').map(Number) as [number, number?]
    if (a > 65535 || b > 65535 || a > b) throw new TypeError(`rule "${text}": port range ${rawPorts} is not within 0-65535 low to high`)
    ports = [a, b]
  }
  return { kind, proto: proto ?? 'tcp', host, ports, peerId, text }
}

/** The first rule that allows `offer` from `peerId`, if any. */
export function matchRule (rules: readonly SockRule[], offer: Offer, peerId: string): SockRule | undefined {
  if (offer.kind === 'file') return rules.find((r) => r.kind === 'file' && (r.peerId === undefined || r.peerId === peerId))
  return rules.find((r) =>
    r.kind === offer.kind &&
    r.proto === offer.proto &&
    (r.host === '*' || r.host.toLowerCase() === offer.host.toLowerCase()) &&
    offer.port >= r.ports[0] && offer.port <= r.ports[1] &&
    (r.peerId === undefined || r.peerId === peerId))
}
