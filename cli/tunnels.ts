/** `starsock forward` and `starsock expose`: tunnels through another peer. */
import { InvalidArgumentError, Option } from 'commander'
import type { StarsockError } from '../shared/errors.ts'
import type { SockAddress } from '../shared/mux-frame.ts'
import { isHost } from '../shared/sock-protocol.ts'
import type { SockAgent } from '../client/sock/agent.ts'
import { Expose, Forward, type Tunnel } from '../client/sock/tunnel.node.ts'
import { hostPort, identityError, interrupted, lost, sockCommand, startAgent, stopAgent, type SockFlags } from './sock-runtime.ts'
import { port } from './options.ts'
import { securityText, StatusReporter } from './status.ts'
import { reportServer } from './listen.ts'

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

/** Why a tunnel is away, in words: the other peer stopped or went, or the server did. */
function awayText (peer: string, err: StarsockError): string {
  switch (err.code) {
    case 'E_PEER_SHUTDOWN': return `${peer} stopped`
    case 'E_PEER_GONE': return `${peer} went away`
    case 'E_PEER_NOT_FOUND': return `${peer} is not online`
    case 'E_SHUTDOWN': return 'the server is shutting down'
    case 'E_DISCONNECTED': return 'the connection to the server dropped'
    default: return `the connection to ${peer} broke`
  }
}

/**
 * Run a tunnel until it stops (denied or killed: exit 1) or a signal (exit 0). While the other
 * peer or the server is away it says so and waits; it never exits for that.
 */
async function run (flags: TunnelFlags, create: (agent: SockAgent, signal: AbortSignal) => Tunnel, begin: (t: Tunnel) => Promise<void>, describe: (t: Tunnel) => string): Promise<number> {
  // A signal while the offer waits for a person gives up on it cleanly (exit 0), as later on.
  const stopping = new AbortController()
  const signalled = interrupted().then(() => stopping.abort())
  const agent = await startAgent(flags, {})
  const tunnel = create(agent, stopping.signal)
  const status = new StatusReporter(flags.json === true, () => {
    const s = tunnel.stats()
    return { ...s, security: s.secure === undefined ? undefined : securityText(s.secure) }
  })
  let away = false
  tunnel.on('asking', ({ timeoutMs }) => {
    const seconds = Math.round(Math.min(timeoutMs, flags.timeoutMs) / 1000)
    status.event('asking', { peer: flags.peer, timeoutMs: Math.min(timeoutMs, flags.timeoutMs) }, `waiting for ${flags.peer} to answer the offer (a person is asked), up to ${seconds} s`)
  })
  let upOnce = false
  // Told as it happens: a peer not online at the start is waited for (the tunnel is away at once).
  tunnel.on('away', (err) => {
    const text = !upOnce && err.code === 'E_PEER_NOT_FOUND'
      ? `waiting for ${flags.peer} to come online`
      : `${awayText(flags.peer, err)} (${err.code}); asking again until it is back`
    away = true
    status.event('away', { peer: flags.peer, code: err.code, message: err.message }, text)
  })
  try {
    await begin(tunnel)
  } catch (err) {
    await stopAgent(agent)
    if (stopping.signal.aborted) return 0
    const why = agent.peer.closedBy
    throw why !== undefined ? identityError(why, flags.key) : err
  }
  if (tunnel.state === 'up') upOnce = true
  reportServer(agent, status)
  tunnel.on('connection', ({ src }) => status.event('connection', { src }, `connection from ${src.ip}:${src.port}`))
  tunnel.on('error', (err) => status.event('error', { code: err.code, message: err.message }, `${err.message} (${err.code})`))
  tunnel.on('mapping', (m) => {
    upOnce = true
    // forward: the address listened on here; expose: the one the peer bound (maybe new).
    if (away) status.event('back', { mapping: m.id, bound: m.bound, address: m.bound ?? tunnel.address, secure: m.secure }, `back: mapping ${m.label} in place again; ${securityText(m.secure)}`)
    else status.event('mapping', { mapping: m.id, bound: m.bound, secure: m.secure }, `mapping ${m.label} in place; ${securityText(m.secure)}`)
    away = false
  })
  // The connection to the peer, when the tunnel is up (a tunnel waiting for its peer has none yet).
  const secure = tunnel.stats().secure
  status.event('ready', { peerId: agent.peer.peerId, peer: flags.peer, address: tunnel.address, to: flags.to, proto: flags.udp === true ? 'udp' : 'tcp', secure: secure ?? null },
    `${describe(tunnel)}${secure === undefined ? '' : `; ${securityText(secure)}`}`)
  status.start()
  const outcome = await Promise.race([tunnel.done, signalled.then(() => undefined), lost(agent.peer, flags.key)])
  status.stop()
  await tunnel.close()
  await stopAgent(agent)
  // A tunnel fails too when its peer is displaced: the identity line says why.
  const why = agent.peer.closedBy
  // A signal aborts the tunnel too (E_ABORTED): that is the clean way out.
  if (outcome !== undefined && !stopping.signal.aborted) throw why !== undefined ? identityError(why, flags.key) : outcome
  return 0
}

/** The `forward` command; `started` receives the promise of its exit code. */
export function forwardCommand (started: (run: Promise<number>) => void) {
  return tunnelCommand('forward', 'listen here; each connection (or UDP source) reaches --to through --peer')
    .requiredOption('--listen <[host:]port>', 'local address to listen on (host defaults to 127.0.0.1)', hostPort('127.0.0.1'))
    .action((flags: TunnelFlags & { listen: SockAddress }) => {
      started(run(flags, (agent, signal) => new Forward(agent, { peer: flags.peer, to: flags.to, proto: flags.udp === true ? 'udp' : 'tcp', name: flags.name, timeoutMs: flags.timeoutMs, signal, waitForPeer: true }),
        async (t) => await (t as Forward).start(flags.listen),
        (t) => `forwarding ${flags.udp === true ? 'udp' : 'tcp'} ${t.address.ip}:${t.address.port} -> ${flags.to.ip}:${flags.to.port} through ${flags.peer}`))
    })
}

/** The `expose` command; `started` receives the promise of its exit code. */
export function exposeCommand (started: (run: Promise<number>) => void) {
  return tunnelCommand('expose', '--peer listens on --port; each connection (or datagram) reaches the local --to')
    .requiredOption('--port <port>', 'port the other peer listens on (0: any)', port)
    .option('--bind-host <host>', 'address the other peer listens on', host, '0.0.0.0')
    .action((flags: TunnelFlags & { port: number, bindHost: string }) => {
      started(run(flags, (agent, signal) => new Expose(agent, { peer: flags.peer, to: flags.to, proto: flags.udp === true ? 'udp' : 'tcp', name: flags.name, timeoutMs: flags.timeoutMs, signal, waitForPeer: true }),
        async (t) => await (t as Expose).start(flags.bindHost, flags.port),
        (t) => `exposing ${flags.udp === true ? 'udp' : 'tcp'} ${t.address.ip}:${t.address.port} on ${flags.peer} -> ${flags.to.ip}:${flags.to.port}`))
    })
}
