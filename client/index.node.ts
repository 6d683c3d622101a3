/**
 * The Node entry of the peer library (`import { createPeer } from 'starsock'` or `'starsock/client'`):
 * everything in `index.ts`, plus identity files and the TCP/UDP tunnels and SOCKS proxy.
 */
export * from './index.ts'
export { defaultKeyFile, loadIdentity, saveIdentity, loadOrCreateIdentity } from './identity.node.ts'
export { Tunnel, Forward, AcceptTunnel, Expose, forward, accept, expose, type TunnelEvents, type TunnelStats, type TunnelState, type TunnelOptions, type TunnelDrops } from './sock/tunnel.node.ts'
export { Socks, type SocksOptions, type SocksUser } from './sock/socks.node.ts'
export { createNodeHost, type NodeHostOptions } from './sock/host.node.ts'
