/** `starsock forward` and `starsock expose`: tunnels through another peer, one or more on one agent. */
import { InvalidArgumentError, Option } from 'commander'
import { StarsockError } from '../shared/errors.ts'
import type { SockAddress } from '../shared/mux-frame.ts'
import { isHost } from '../shared/sock-protocol.ts'
import type { SockAgent } from '../client/sock/agent.ts'
import { Expose, Forward, type Tunnel } from '../client/sock/tunnel.node.ts'
import { MAX_ALLOW_FROM_ENTRIES, parseAllowFrom } from '../client/sock/allow-from.node.ts'
import { SERVICE_NAME } from '../shared/sock-rules.ts'
import { hostPort, identityError, interrupted, lost, once, onParse, sockCommand, startAgent, stopAgent, type SockFlags } from './sock-runtime.ts'
import { peerId, port } from './options.ts'
import { addressList, securityText, StatusReporter } from './status.ts'
import { reportServer } from './listen.ts'

interface TunnelFlags extends SockFlags {
  peer: string
  udp?: boolean
  name?: string
  allowFrom?: string[]
}

/** Where a forward's traffic goes: an address through the peer, or a service the peer names. */
type Target = { to: SockAddress, service?: undefined } | { to?: undefined, service: string }

/** One `--allow-from` entry (checked now: a bad one is one line), collected. */
function allowFromList (value: string, previous: string[] = []): string[] {
  const list = [...previous, value]
  if (list.length > MAX_ALLOW_FROM_ENTRIES) throw new InvalidArgumentError(`At most ${MAX_ALLOW_FROM_ENTRIES} entries.`)
  try {
    parseAllowFrom([value])
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
  return list
}

function serviceName (value: string): string {
  if (!SERVICE_NAME.test(value)) throw new InvalidArgumentError('Not a service name (a letter or digit, then up to 63 letters, digits, _ . -).')
  return value
}

/** Tunnels one process runs at most (each is one mapping on the one connection to the peer). */
export const MAX_TUNNELS = 64


function host (value: string): string {
  if (!isHost(value)) throw new InvalidArgumentError('Not a host name or address.')
  return value
}

/** A repeatable option parsed by `parse` into a list, in the order given. */
function repeated<T> (parse: (value: string) => T): (value: string, previous?: T[]) => T[] {
  return (value, previous = []) => {
    if (previous.length >= MAX_TUNNELS) throw new InvalidArgumentError(`At most ${MAX_TUNNELS} tunnels in one process.`)
    return [...previous, parse(value)]
  }
}

/**
 * The flags both commands have. `targets` receives every `--to` (and a forward's `--service`) in
 * the order given, so pairs keep the command line's order; it is emptied at the start of each
 * parse. `--peer`, `--udp`, `--name` (and expose's `--bind-host`) are taken once: one process
 * talks to one peer; more peers are more processes, or `starsock up`.
 */
function tunnelCommand (name: string, description: string, targets: Target[], allowFromHelp: string) {
  const target = (make: (value: string) => Target) => (value: string): Target[] => {
    if (targets.length >= MAX_TUNNELS) throw new InvalidArgumentError(`At most ${MAX_TUNNELS} tunnels in one process.`)
    targets.push(make(value))
    return targets
  }
  const to = hostPort(undefined)
  const command = sockCommand(name, description)
    .requiredOption('--peer <peerId>', 'the other peer (once: one process talks to one peer)', peerId)
    .option('--to <host:port>', 'where the traffic goes (repeatable: the nth --to goes with the nth --listen/--port)', target((v) => ({ to: to(v) })))
    .option('--udp', 'carry UDP datagrams instead of TCP connections (for every tunnel of the process)')
    .option('--allow-from <cidr>', allowFromHelp, allowFromList)
    .addOption(new Option('--name <text>', 'a name the other peer is shown when asked'))
  onParse(command, () => { targets.length = 0 })
  return once(command, {
    peer: `one ${name} process talks to one peer; run another process or use starsock up`,
    udp: '',
    name: 'one name for every tunnel of the process'
  })
}

/**
 * Pair the nth `--listen`/`--port` with the nth `--to`; a count that differs is one readable line
 * (never the last one silently kept).
 */
export function pairs<A, B> (command: string, left: string, lefts: readonly A[], rights: readonly B[], right = '--to'): Array<[A, B]> {
  if (lefts.length !== rights.length) {
    throw new Error(`${lefts.length} ${left} but ${rights.length} ${right}: give one ${right} for each ${left}, in order (e.g. starsock ${command} ${left} A --to B ${left} C --to D)`)
  }
  return lefts.map((l, i) => [l, rights[i] as B])
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

/** One tunnel of a command: how to make and start it, and its words. */
interface TunnelSpec {
  /** Where the traffic goes (`--to`), or the service asked for (`--service`). */
  target: Target
  create: (agent: SockAgent, signal: AbortSignal) => Tunnel
  begin: (t: Tunnel) => Promise<void>
  describe: (t: Tunnel) => string
  /** An expose to a wildcard address: where the peer's port can be reached. */
  addresses?: (t: Tunnel) => SockAddress[] | undefined
}

/**
 * Run tunnels on one agent (one connection to the peer) until every one stops (denied or killed:
 * exit 1) or a signal (exit 0). While the other peer or the server is away each says so and
 * waits; it never exits for that. With several tunnels every event names its tunnel (`tunnel`: 1,
 * 2, ... in the order given; the text starts `tunnel N: `); one that stops leaves the others
 * running. One that cannot start stops them all (exit 1), as a single tunnel does.
 */
async function run (flags: TunnelFlags, specs: TunnelSpec[]): Promise<number> {
  // A signal while an offer waits for a person gives up on it cleanly (exit 0), as later on.
  const stopping = new AbortController()
  const signalled = interrupted().then(() => stopping.abort())
  const agent = await startAgent(flags, {})
  const several = specs.length > 1
  const tunnels = specs.map((spec) => spec.create(agent, stopping.signal))
  const status = new StatusReporter(flags.json === true, () => {
    const all = tunnels.map((t) => t.stats())
    const sum = (k: 'channelsOpen' | 'bytesIn' | 'bytesOut' | 'droppedDatagrams'): number => all.reduce((n, s) => n + s[k], 0)
    const states = all.map((s) => s.state)
    const secure = all.find((s) => s.secure !== undefined)?.secure
    const state = states.every((s) => s === 'up') ? 'up' : several ? states.map((s, i) => `${i + 1} ${s}`).join(', ') : states[0]
    return { channelsOpen: sum('channelsOpen'), bytesIn: sum('bytesIn'), bytesOut: sum('bytesOut'), droppedDatagrams: sum('droppedDatagrams'), state, security: secure === undefined ? undefined : securityText(secure) }
  })
  const tunnelEvents = tunnels.map((tunnel, i) => {
    const n = i + 1
    const prefix = several ? `tunnel ${n}: ` : ''
    const event = (name: string, fields: Record<string, unknown>, text: string): void => status.event(name, { tunnel: n, ...fields }, prefix + text)
    let away = false
    let upOnce = false
    tunnel.on('asking', ({ timeoutMs }) => {
      const seconds = Math.round(Math.min(timeoutMs, flags.timeoutMs) / 1000)
      event('asking', { peer: flags.peer, timeoutMs: Math.min(timeoutMs, flags.timeoutMs) }, `waiting for ${flags.peer} to answer the offer (a person is asked), up to ${seconds} s`)
    })
    // Told as it happens: a peer not online at the start is waited for (the tunnel is away at once).
    tunnel.on('away', (err) => {
      const text = !upOnce && err.code === 'E_PEER_NOT_FOUND'
        ? `waiting for ${flags.peer} to come online`
        : `${awayText(flags.peer, err)} (${err.code}); asking again until it is back`
      away = true
      event('away', { peer: flags.peer, code: err.code, message: err.message }, text)
    })
    /** Once started: report the rest. */
    const started = (): void => {
      if (tunnel.state === 'up') upOnce = true
      tunnel.on('connection', ({ src }) => event('connection', { src }, `connection from ${src.ip}:${src.port}`))
      tunnel.on('refused', ({ src }) => event('refused', { src }, `refused a client from ${addressList([src])}: not in --allow-from${flags.allowFrom === undefined ? ' (default: loopback only)' : ''}`))
      tunnel.on('error', (err) => event('error', { code: err.code, message: err.message }, `${err.message} (${err.code})`))
      tunnel.on('mapping', (m) => {
        upOnce = true
        // forward: the address listened on here; expose: the one the peer bound (maybe new).
        const reach = m.addresses === undefined || m.addresses.length === 0 ? '' : `; reach it at ${addressList(m.addresses)}`
        if (away) event('back', { mapping: m.id, bound: m.bound, addresses: m.addresses, address: m.bound ?? tunnel.address, secure: m.secure }, `back: mapping ${m.label} in place again${reach}; ${securityText(m.secure)}`)
        else event('mapping', { mapping: m.id, bound: m.bound, addresses: m.addresses, secure: m.secure }, `mapping ${m.label} in place${reach}; ${securityText(m.secure)}`)
        away = false
      })
      // The connection to the peer, when the tunnel is up (a tunnel waiting for its peer has none yet).
      const secure = tunnel.stats().secure
      const spec = specs[i] as TunnelSpec
      const addresses = spec.addresses?.(tunnel)
      // An expose whose peer bound nothing yet has no address (null), never port 0.
      event('ready', { peerId: agent.peer.peerId, peer: flags.peer, address: tunnel.address.port === 0 ? null : tunnel.address, ...(addresses === undefined ? {} : { addresses }), to: spec.target.to ?? null, ...(spec.target.service === undefined ? {} : { service: spec.target.service }), proto: flags.udp === true ? 'udp' : 'tcp', allowFrom: flags.allowFrom ?? null, secure: secure ?? null },
        `${spec.describe(tunnel)}${secure === undefined ? '' : `; ${securityText(secure)}`}`)
    }
    return { started, event }
  })
  const begun = await Promise.allSettled(tunnels.map(async (t, i) => await (specs[i] as TunnelSpec).begin(t)))
  const failed = begun.findIndex((r) => r.status === 'rejected')
  if (failed >= 0) {
    await Promise.all(tunnels.map(async (t) => await t.close()))
    await stopAgent(agent)
    if (stopping.signal.aborted) return 0
    const why = agent.peer.closedBy
    if (why !== undefined) throw identityError(why, flags.key)
    const err = (begun[failed] as PromiseRejectedResult).reason as Error
    if (several) err.message = `tunnel ${failed + 1} (${targetText((specs[failed] as TunnelSpec).target)}): ${err.message}`
    throw err
  }
  reportServer(agent, status)
  for (const t of tunnelEvents) t.started()
  status.start()
  // Each tunnel that stops by itself says why; the process goes on while any runs.
  /** The tunnels' errors in the order they stopped. */
  const inOrder: StarsockError[] = []
  const outcomes = tunnels.map(async (t, i) => {
    const err = await t.done
    if (err !== undefined) inOrder.push(err)
    if (err !== undefined && several && !stopping.signal.aborted) (tunnelEvents[i] as { event: (name: string, fields: Record<string, unknown>, text: string) => void }).event('stopped', { code: err.code, message: err.message }, `stopped: ${err.message} (${err.code})`)
    return err
  })
  const all = Promise.all(outcomes)
  const outcome = await Promise.race([all, signalled.then(() => undefined), lost(agent.peer, flags.key)])
  status.stop()
  await Promise.all(tunnels.map(async (t) => await t.close()))
  await stopAgent(agent)
  // A tunnel fails too when its peer is displaced: the identity line says why.
  const why = agent.peer.closedBy
  if (stopping.signal.aborted) return 0
  if (why !== undefined) throw identityError(why, flags.key)
  // A signal aborts the tunnels too (E_ABORTED): that is the clean way out.
  const errors: StarsockError[] = Array.isArray(outcome) ? outcome.filter((e): e is StarsockError => e !== undefined) : outcome === undefined ? [] : [outcome]
  const first = inOrder.find((e) => errors.includes(e)) ?? errors[0]
  if (first === undefined) return 0
  if (!several) throw first
  // Each one's `stopped` event said why; the last line names the reason of the first to stop.
  throw new StarsockError(first.code, `every tunnel stopped; ${errors.length} of ${tunnels.length} with an error, the first: ${first.message}`)
}

/** `--to HOST:PORT` or `--service NAME`, as a command line says it. */
function targetText (t: Target): string {
  return t.to !== undefined ? `--to ${t.to.ip}:${t.to.port}` : `--service ${t.service}`
}

type ForwardFlags = TunnelFlags & { listen: SockAddress[] }
type ExposeFlags = TunnelFlags & { port: number[], bindHost: string }

/** The `forward` command; `started` receives the promise of its exit code. */
export function forwardCommand (started: (run: Promise<number>) => void) {
  const targets: Target[] = []
  const service = (value: string): Target[] => {
    if (targets.length >= MAX_TUNNELS) throw new InvalidArgumentError(`At most ${MAX_TUNNELS} tunnels in one process.`)
    targets.push({ service: serviceName(value) })
    return targets
  }
  return tunnelCommand('forward', 'listen here; each connection (or UDP source) reaches --to (or the peer\'s --service) through --peer (repeat --listen/--to for more tunnels on one connection)', targets,
    'who may connect to the local listener: an address or CIDR, IPv4 or IPv6 (repeatable; default loopback only); others are reset (UDP: dropped) and counted')
    .requiredOption('--listen <[host:]port>', 'local address to listen on (host defaults to 127.0.0.1; repeatable)', repeated(hostPort('127.0.0.1')))
    .option('--service <name>', 'instead of --to: a service the peer offers by name (its listen --service NAME=...); it picks the target (repeatable, in order with --to)', service)
    .action((flags: ForwardFlags) => {
      const proto = flags.udp === true ? 'udp' : 'tcp'
      started((async () => await run(flags, pairs('forward', '--listen', flags.listen, targets, '--to (or --service)').map(([listen, target]) => ({
        target,
        create: (agent, signal) => new Forward(agent, { peer: flags.peer, to: target.to, service: target.service, proto, name: flags.name, allowFrom: flags.allowFrom, timeoutMs: flags.timeoutMs, signal, waitForPeer: true }),
        begin: async (t) => await (t as Forward).start(listen),
        describe: (t) => `forwarding ${proto} ${t.address.ip}:${t.address.port} -> ${target.to !== undefined ? `${target.to.ip}:${target.to.port}` : `service ${target.service}`} through ${flags.peer}${flags.allowFrom === undefined ? '' : ` (clients from ${flags.allowFrom.join(', ')})`}`
      }))))())
    })
}

/** The `expose` command; `started` receives the promise of its exit code. */
export function exposeCommand (started: (run: Promise<number>) => void) {
  const targets: Target[] = []
  const command = tunnelCommand('expose', '--peer listens on --port; each connection (or datagram) reaches the local --to (repeat --port/--to for more tunnels on one connection)', targets,
    'who may connect to the port the peer listens on: an address or CIDR, IPv4 or IPv6 (repeatable; default anyone); the peer resets others (UDP: drops them) and counts them')
    .requiredOption('--port <port>', 'port the other peer listens on (0: any; repeatable)', repeated(port))
    .option('--bind-host <host>', 'address the other peer listens on, for every --port (once; ports on several addresses: run another process or use starsock up)', host, '0.0.0.0')
    .action((flags: ExposeFlags) => {
      const proto = flags.udp === true ? 'udp' : 'tcp'
      started((async () => await run(flags, pairs('expose', '--port', flags.port, targets).map(([bindPort, target]) => {
        const to = target.to as SockAddress
        let addresses: SockAddress[] | undefined
        return {
          target,
          create: (agent, signal) => {
            const t = new Expose(agent, { peer: flags.peer, to, proto, name: flags.name, allowFrom: flags.allowFrom, timeoutMs: flags.timeoutMs, signal, waitForPeer: true })
            t.on('mapping', (m) => { addresses = m.addresses })
            return t
          },
          begin: async (t) => await (t as Expose).start(flags.bindHost, bindPort),
          // A wildcard bind says where the port can be reached (the peer's interface addresses).
          addresses: () => addresses,
          // Before the peer bound anything (it is not online yet): what is asked for, said as such, never port 0.
          describe: (t) => `${t.address.port === 0 ? `will expose ${proto} ${flags.bindHost}${bindPort === 0 ? ' (any port)' : `:${bindPort}`} once ${flags.peer} is online, nothing bound yet` : `exposing ${proto} ${t.address.ip}:${t.address.port}${addresses === undefined || addresses.length === 0 ? '' : ` (reach it at ${addressList(addresses)})`} on ${flags.peer}`} -> ${to.ip}:${to.port}${flags.allowFrom === undefined ? '' : ` (clients from ${flags.allowFrom.join(', ')})`}`
        } satisfies TunnelSpec
      })))())
    })
  return once(command, { 'bind-host': 'one address for every --port; ports on several addresses: run another process or use starsock up' })
}
