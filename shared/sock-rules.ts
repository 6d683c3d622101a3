/**
 * Consent rules: `KIND[/PROTO]:HOST:PORT[@PEERID]`, e.g. `connect/tcp:127.0.0.1:8080` or
 * `bind/udp:*:40000-40100@12D3KooW…` (KIND `connect`, `bind`, or `accept`: connections the other
 * peer takes on its HOST:PORT handed to this one's `onAccept`, what a page grants "always"); `file[:*][@PEERID]` for files (within the receiver's
 * size cap and quota); `service:NAME[@PEERID]` (or `service:*`) for a named service this peer
 * offers; `udp-relay[@PEERID]` for halves of UDP relay allocations other peers hand over. An offer
 * is allowed when some rule matches it.
 */
import { isHost, SERVICE_NAME, type Offer } from './sock-protocol.ts'

export { SERVICE_NAME }

/** One parsed rule. */
export interface SockRule {
  kind: 'connect' | 'bind' | 'accept' | 'file' | 'service' | 'udp-relay'
  /** `tcp` for a file, service or udp-relay rule (a service's protocol is the service's own). */
  proto: 'tcp' | 'udp'
  /** A host name or address, or `*` for any (`*` for a file or udp-relay rule); a service rule: the service's name, or `*`. */
  host: string
  /** Inclusive port range (`*` is 0 to 65535). */
  ports: [number, number]
  /** Only offers from this peer, when set. */
  peerId?: string
  /** The rule as written. */
  text: string
}

const RULE = /^(connect|bind|accept)(?:\/(tcp|udp))?:(\*|\[[0-9A-Fa-f:.%\w]*:[0-9A-Fa-f:.%\w]*\]|[^:@\s[\]]+):(\*|\d{1,5}(?:-\d{1,5})?)(?:@([1-9A-HJ-NP-Za-km-z]{32,128}))?$/

const FILE_RULE = /^file(?::\*)?(?:@([1-9A-HJ-NP-Za-km-z]{32,128}))?$/

const SERVICE_RULE = /^service:(\*|[A-Za-z0-9][\w.-]{0,63})(?:@([1-9A-HJ-NP-Za-km-z]{32,128}))?$/

const UDP_RELAY_RULE = /^udp-relay(?::\*)?(?:@([1-9A-HJ-NP-Za-km-z]{32,128}))?$/


/** Parse a rule; throws a `TypeError` naming what is wrong. */
export function parseRule (text: string): SockRule {
  if (text === 'file' || text.startsWith('file:') || text.startsWith('file@')) {
    const f = FILE_RULE.exec(text)
    if (f === null) throw new TypeError(`rule "${text}" is not file[:*][@PEERID] (e.g. file:* or file@12D3KooW...)`)
    return { kind: 'file', proto: 'tcp', host: '*', ports: [0, 65535], peerId: f[1], text }
  }
  if (text.startsWith('service')) {
    const m = SERVICE_RULE.exec(text)
    if (m === null) throw new TypeError(`rule "${text}" is not service:NAME[@PEERID] (e.g. service:web or service:*)`)
    return { kind: 'service', proto: 'tcp', host: m[1] as string, ports: [0, 65535], peerId: m[2], text }
  }
  if (text.startsWith('udp-relay')) {
    const m = UDP_RELAY_RULE.exec(text)
    if (m === null) throw new TypeError(`rule "${text}" is not udp-relay[:*][@PEERID] (e.g. udp-relay or udp-relay@12D3KooW...)`)
    return { kind: 'udp-relay', proto: 'tcp', host: '*', ports: [0, 65535], peerId: m[1], text }
  }
  const m = RULE.exec(text)
  if (m === null) throw new TypeError(`rule "${text}" is not KIND[/PROTO]:HOST:PORT[@PEERID] (e.g. connect/tcp:127.0.0.1:8080), file[:*][@PEERID], service:NAME[@PEERID] or udp-relay[@PEERID]`)
  const [, kind, proto, rawHost, rawPorts, peerId] = m as unknown as [string, 'connect' | 'bind' | 'accept', 'tcp' | 'udp' | undefined, string, string, string | undefined]
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

/**
 * The first rule that allows `offer` from `peerId`, if any. A service offer (`kind: 'service'`)
 * matches a service rule naming its `service` (or `*`). Rules naming a peer are for peers that
 * proved their id: the caller leaves them out on a plaintext connection.
 */
export function matchRule (rules: readonly SockRule[], offer: Offer, peerId: string): SockRule | undefined {
  const forPeer = (r: SockRule): boolean => r.peerId === undefined || r.peerId === peerId
  if (offer.kind === 'file') return rules.find((r) => r.kind === 'file' && forPeer(r))
  if (offer.kind === 'service') return rules.find((r) => r.kind === 'service' && (r.host === '*' || r.host === offer.service) && forPeer(r))
  return rules.find((r) =>
    r.kind === offer.kind &&
    r.proto === offer.proto &&
    (r.host === '*' || r.host.toLowerCase() === offer.host.toLowerCase()) &&
    offer.port >= r.ports[0] && offer.port <= r.ports[1] &&
    (r.peerId === undefined || r.peerId === peerId))
}

/**
 * The first `udp-relay` rule that lets `peerId` hand this peer a half of a UDP relay allocation.
 * A rule naming a peer matches only when `secure` (the id proved end to end).
 */
export function matchUdpRelayRule (rules: readonly SockRule[], peerId: string, secure: boolean): SockRule | undefined {
  return rules.find((r) => r.kind === 'udp-relay' && (r.peerId === undefined || (secure && r.peerId === peerId)))
}
