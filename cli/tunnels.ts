/** `starsock forward` and `starsock expose`: tunnels through another peer. */
import { InvalidArgumentError, Option } from 'commander'
import type { SockAddress } from '../shared/mux-frame.ts'
import { isHost } from '../shared/sock-protocol.ts'
import type { SockAgent } from '../client/sock/agent.ts'
import { expose, forward, type Tunnel } from '../client/sock/tunnel.node.ts'
import { hostPort, identityError, interrupted, lost, sockCommand, startAgent, stopAgent, type SockFlags } from './sock-runtime.ts'
import { port } from './options.ts'
import { StatusReporter } from './status.ts'

interface TunnelFlags extends SockFlags {
  peer: string
  to: SockAddress
  udp?: boolean
  name?: string
}

const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{32,128}$/

function peerId (value: string): string {
  if (!PEER_ID.test(value)) throw new InvalidArgumentError('Not a peer id.')
  return value
}

function host (value: string): string {
  if (!isHost(value)) throw new InvalidArgumentError('Not a host name or address.')
  return value
}

function tunnelCommand (name: string, description: string) {
  return sockCommand(name, description)
    .requiredOption('--peer <peerId>', 'the other peer', peerId)
    .requiredOption('--to <host:port>', 'where the traffic goes', hostPort(undefined))
    .option('--udp', 'carry UDP datagrams instead of TCP connections')
    .addOption(new Option('--name <text>', 'a name the other peer is shown when asked'))
}

/** Run `start` until the tunnel stops (killed: exit 1) or a signal (exit 0). */
async function run (flags: TunnelFlags, start: (agent: SockAgent, signal: AbortSignal) => Promise<Tunnel>, describe: (t: Tunnel) => string): Promise<number> {
  // A signal while the offer waits for a person gives up on it cleanly (exit 0), as later on.
  const stopping = new AbortController()
  const signalled = interrupted().then(() => stopping.abort())
  const agent = await startAgent(flags, {})
  let tunnel: Tunnel
  try {
    tunnel = await start(agent, stopping.signal)
  } catch (err) {
    await stopAgent(agent)
    if (stopping.signal.aborted) return 0
    const why = agent.peer.closedBy
    throw why !== undefined ? identityError(why, flags.key) : err
  }
  const status = new StatusReporter(flags.json === true, () => tunnel.stats())
  tunnel.on('connection', ({ src }) => status.event('connection', { src }, `connection from ${src.ip}:${src.port}`))
  tunnel.on('error', (err) => status.event('error', { code: err.code, message: err.message }, `${err.message} (${err.code})`))
  tunnel.on('mapping', (m) => status.event('mapping', { mapping: m.id, bound: m.bound }, `mapping ${m.label} in place`))
  status.event('ready', { peerId: agent.peer.peerId, peer: flags.peer, address: tunnel.address, to: flags.to, proto: flags.udp === true ? 'udp' : 'tcp' }, describe(tunnel))
  status.start()
  const outcome = await Promise.race([tunnel.done, signalled.then(() => undefined), lost(agent.peer, flags.key)])
  status.stop()
  await tunnel.close()
  await stopAgent(agent)
  // A tunnel fails too when its peer is displaced: the identity line says why.
  const why = agent.peer.closedBy
  if (outcome !== undefined) throw why !== undefined ? identityError(why, flags.key) : outcome
  return 0
}

/** The `forward` command; `started` receives the promise of its exit code. */
export function forwardCommand (started: (run: Promise<number>) => void) {
  return tunnelCommand('forward', 'listen here; each connection (or UDP source) reaches --to through --peer')
    .requiredOption('--listen <[host:]port>', 'local address to listen on (host defaults to 127.0.0.1)', hostPort('127.0.0.1'))
    .action((flags: TunnelFlags & { listen: SockAddress }) => {
      started(run(flags, async (agent, signal) => await forward(agent, { peer: flags.peer, listen: flags.listen, to: flags.to, proto: flags.udp === true ? 'udp' : 'tcp', name: flags.name, timeoutMs: flags.timeoutMs, signal }),
        (t) => `forwarding ${flags.udp === true ? 'udp' : 'tcp'} ${t.address.ip}:${t.address.port} -> ${flags.to.ip}:${flags.to.port} through ${flags.peer}`))
    })
}

/** The `expose` command; `started` receives the promise of its exit code. */
export function exposeCommand (started: (run: Promise<number>) => void) {
  return tunnelCommand('expose', '--peer listens on --port; each connection (or datagram) reaches the local --to')
    .requiredOption('--port <port>', 'port the other peer listens on (0: any)', port)
    .option('--bind-host <host>', 'address the other peer listens on', host, '0.0.0.0')
    .action((flags: TunnelFlags & { port: number, bindHost: string }) => {
      started(run(flags, async (agent, signal) => await expose(agent, { peer: flags.peer, host: flags.bindHost, port: flags.port, to: flags.to, proto: flags.udp === true ? 'udp' : 'tcp', name: flags.name, timeoutMs: flags.timeoutMs, signal }),
        (t) => `exposing ${flags.udp === true ? 'udp' : 'tcp'} ${t.address.ip}:${t.address.port} on ${flags.peer} -> ${flags.to.ip}:${flags.to.port}`))
    })
}
