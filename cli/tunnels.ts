/** `starsock forward` and `starsock expose`: tunnels through another peer, one or more on one agent. */
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
  udp?: boolean
  name?: string
}

/** Tunnels one process runs at most (each is one mapping on the one connection to the peer). */
export const MAX_TUNNELS = 64

const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{32,128}$/

function peerId (value: string): string {
  if (!PEER_ID.test(value)) throw new InvalidArgumentError('Not a peer id.')
  return value
}

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

function tunnelCommand (name: string, description: string) {
  return sockCommand(name, description)
    .requiredOption('--peer <peerId>', 'the other peer', peerId)
    .requiredOption('--to <host:port>', 'where the traffic goes (repeatable: the nth --to goes with the nth --listen/--port)', repeated(hostPort(undefined)))
    .option('--udp', 'carry UDP datagrams instead of TCP connections')
    .addOption(new Option('--name <text>', 'a name the other peer is shown when asked'))
}

/**
 * Pair the nth `--listen`/`--port` with the nth `--to`; a count that differs is one readable line
 * (never the last one silently kept).
 */
export function pairs<A, B> (command: string, left: string, lefts: readonly A[], rights: readonly B[]): Array<[A, B]> {
  if (lefts.length !== rights.length) {
    throw new Error(`${lefts.length} ${left} but ${rights.length} --to: give one --to for each ${left}, in order (e.g. starsock ${command} ${left} A --to B ${left} C --to D)`)
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
  /** Where the traffic goes (`--to`). */
  to: SockAddress
  create: (agent: SockAgent, signal: AbortSignal) => Tunnel
  begin: (t: Tunnel) => Promise<void>
  describe: (t: Tunnel) => string
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
      tunnel.on('error', (err) => event('error', { code: err.code, message: err.message }, `${err.message} (${err.code})`))
      tunnel.on('mapping', (m) => {
        upOnce = true
        // forward: the address listened on here; expose: the one the peer bound (maybe new).
        if (away) event('back', { mapping: m.id, bound: m.bound, address: m.bound ?? tunnel.address, secure: m.secure }, `back: mapping ${m.label} in place again; ${securityText(m.secure)}`)
        else event('mapping', { mapping: m.id, bound: m.bound, secure: m.secure }, `mapping ${m.label} in place; ${securityText(m.secure)}`)
        away = false
      })
      // The connection to the peer, when the tunnel is up (a tunnel waiting for its peer has none yet).
      const secure = tunnel.stats().secure
      const spec = specs[i] as TunnelSpec
      event('ready', { peerId: agent.peer.peerId, peer: flags.peer, address: tunnel.address, to: spec.to, proto: flags.udp === true ? 'udp' : 'tcp', secure: secure ?? null },
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
    if (several) err.message = `tunnel ${failed + 1} (--to ${(specs[failed] as TunnelSpec).to.ip}:${(specs[failed] as TunnelSpec).to.port}): ${err.message}`
    throw err
  }
  reportServer(agent, status)
  for (const t of tunnelEvents) t.started()
  status.start()
  // Each tunnel that stops by itself says why; the process goes on while any runs.
  const outcomes = tunnels.map(async (t, i) => {
    const err = await t.done
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
  if (errors.length === 0) return 0
  if (!several) throw errors[0] as StarsockError
  process.stderr.write(`starsock: every tunnel stopped; ${errors.length} of ${tunnels.length} with an error\n`)
  return 1
}

type ForwardFlags = TunnelFlags & { listen: SockAddress[], to: SockAddress[] }
type ExposeFlags = TunnelFlags & { port: number[], to: SockAddress[], bindHost: string }

/** The `forward` command; `started` receives the promise of its exit code. */
export function forwardCommand (started: (run: Promise<number>) => void) {
  return tunnelCommand('forward', 'listen here; each connection (or UDP source) reaches --to through --peer (repeat --listen/--to for more tunnels on one connection)')
    .requiredOption('--listen <[host:]port>', 'local address to listen on (host defaults to 127.0.0.1; repeatable)', repeated(hostPort('127.0.0.1')))
    .action((flags: ForwardFlags) => {
      const proto = flags.udp === true ? 'udp' : 'tcp'
      started((async () => await run(flags, pairs('forward', '--listen', flags.listen, flags.to).map(([listen, to]) => ({
          to,
          create: (agent, signal) => new Forward(agent, { peer: flags.peer, to, proto, name: flags.name, timeoutMs: flags.timeoutMs, signal, waitForPeer: true }),
          begin: async (t) => await (t as Forward).start(listen),
          describe: (t) => `forwarding ${proto} ${t.address.ip}:${t.address.port} -> ${to.ip}:${to.port} through ${flags.peer}`
        }))))())
    })
}

/** The `expose` command; `started` receives the promise of its exit code. */
export function exposeCommand (started: (run: Promise<number>) => void) {
  return tunnelCommand('expose', '--peer listens on --port; each connection (or datagram) reaches the local --to (repeat --port/--to for more tunnels on one connection)')
    .requiredOption('--port <port>', 'port the other peer listens on (0: any; repeatable)', repeated(port))
    .option('--bind-host <host>', 'address the other peer listens on', host, '0.0.0.0')
    .action((flags: ExposeFlags) => {
      const proto = flags.udp === true ? 'udp' : 'tcp'
      started((async () => await run(flags, pairs('expose', '--port', flags.port, flags.to).map(([bindPort, to]) => ({
          to,
          create: (agent, signal) => new Expose(agent, { peer: flags.peer, to, proto, name: flags.name, timeoutMs: flags.timeoutMs, signal, waitForPeer: true }),
          begin: async (t) => await (t as Expose).start(flags.bindHost, bindPort),
          describe: (t) => `exposing ${proto} ${t.address.ip}:${t.address.port} on ${flags.peer} -> ${to.ip}:${to.port}`
        }))))())
    })
}
