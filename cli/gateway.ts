/**
 * `starsock serve --gateway`: a built-in peer on the server's own host, joined to the server over
 * loopback, that runs offers the `--allow` rules allow (nobody is asked). A peer behind NAT can
 * then expose a port on the server's host, or reach a service there, without a second machine.
 */
import { hostname } from 'node:os'
import { loadOrCreateIdentity } from '../client/identity.node.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import { describeOffer } from '../shared/sock-protocol.ts'
import type { Logger } from '../shared/logger.ts'
import type { SockRule } from '../shared/sock-rules.ts'

/** Options of the gateway peer. */
export interface GatewayOptions {
  /** The server's own URL, as it listens. */
  serverUrl: string
  allow: SockRule[]
  keyFile: string
  token?: string
  leaseMs?: number
  /** Told the gateway's peer id before it joins (the server believes its `gateway` kind: `Rendezvous.gatewayPeers`). */
  trust?: (peerId: string) => void
  /** Also run plaintext connections (`--gateway-insecure`; the other peer must pass `--insecure` too). @default false */
  insecure?: boolean
  logger: Logger
}

/** The URL to reach a server listening on `url` from its own host (a wildcard address becomes loopback; a `--path` prefix stays). */
export function loopbackUrl (url: string): string {
  const u = new URL(url)
  if (u.hostname === '0.0.0.0') u.hostname = '127.0.0.1'
  if (u.hostname === '[::]') u.hostname = '[::1]'
  return u.pathname === '/' ? u.origin : u.origin + u.pathname
}

/** The gateway's display name: `gateway on HOST` (the server's host name, cut to fit 40 characters). */
export function gatewayName (serverUrl: string): string {
  const u = new URL(serverUrl)
  const host = u.hostname === '0.0.0.0' || u.hostname === '[::]' ? hostname() : u.hostname
  return `gateway on ${host}`.slice(0, 40).trim()
}

/** Join the server as its gateway peer; settles once joined. */
export async function startGateway (options: GatewayOptions): Promise<SockAgent> {
  const logger = options.logger.child({ ns: 'starsock:gateway' })
  const { identity } = await loadOrCreateIdentity(options.keyFile)
  options.trust?.(identity.peerId)
  const peer = await createPeer({
    // Named after the server's host, so a peer list tells this server's gateway from another's.
    profile: { name: gatewayName(options.serverUrl), kind: 'gateway' },
    server: loopbackUrl(options.serverUrl),
    identity,
    token: options.token,
    // Our own server over loopback: its certificate may be for the public name, not 127.0.0.1.
    socketOptions: { rejectUnauthorized: false }
  })
  const agent = createSockAgent(peer, { host: createNodeHost(), allow: options.allow, leaseMs: options.leaseMs, insecure: options.insecure === true, logger })
  agent.on('refused', ({ peerId, error }) => logger.warn({ peer: peerId, code: error.code }, error.message))
  agent.on('mapping', (m) => { if (!m.local) logger.info({ peer: m.peerId, mapping: m.id, offer: describeOffer(m.offer) }, 'mapping open') })
  agent.on('mapping:close', ({ mapping, error }) => logger.info({ peer: mapping.peerId, mapping: mapping.id, code: error.code }, 'mapping closed'))
  return agent
}
