/**
 * The receiving side of `starsock relay --share`: take a half of a UDP relay allocation another
 * peer hands over on a `udp-relay` channel, when a `udp-relay` rule allows that peer, and bridge
 * it to a local UDP program (or tell it, for the person to use). Used by `listen` and by `up`.
 *
 * A half is taken only when its address is the UDP relay of this agent's own server (the server
 * URL's host, resolved, or an address given in `relayIps`): a bridge sends the relay's
 * registration datagrams to that address, so a half naming any other would have this host send
 * (sharer-chosen) datagrams to any host it names.
 */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import type { Channel } from '../client/mux/channel.ts'
import { writeLine } from '../client/mux/lines.ts'
import type { Muxer } from '../client/mux/muxer.ts'
import { bridgeUdpEndpoint, type UdpBridge } from '../client/sock/udp-register.node.ts'
import { canonicalIp } from '../client/sock/allow-from.node.ts'
import { readUdpHalf, type UdpHalf } from '../client/sock/udp-share.ts'
import { StarsockError, type ErrorCode } from '../shared/errors.ts'
import type { Reply } from '../shared/sock-protocol.ts'
import { matchUdpRelayRule, type SockRule } from '../shared/sock-rules.ts'

/** Halves taken at once (bridges open) in one process; past it, `E_LIMIT_TOTAL`. */
export const MAX_UDP_RELAY_SHARES = 16
/** How long the sharer has to send its half once the channel is open. */
const READ_TIMEOUT_MS = 10_000

/** What happened to a half, for the status. */
export type UdpRelayEvent =
  | { type: 'refused', peerId: string, secure: boolean, code: ErrorCode, message: string }
  | { type: 'taken', peerId: string, rule: string, half: UdpHalf, local?: { ip: string, port: number }, via?: number }
  | { type: 'failed', peerId: string, code: ErrorCode, message: string }
  | { type: 'ended', peerId: string, half: UdpHalf, local: { ip: string, port: number }, counts: UdpBridge['counts'], code?: ErrorCode }

/** Options of `takeUdpRelay`. */
export interface TakeUdpRelayOptions {
  /** The agent's rules now (a function: rules that change at run time). */
  rules: readonly SockRule[] | (() => readonly SockRule[])
  /** The local UDP program to bridge a half to; without it the half is told (`taken` event) for the person to use. */
  local?: { ip: string, port: number }
  onEvent: (event: UdpRelayEvent) => void
  /** Give the relay's registration this long. @default 10_000 */
  registerTimeoutMs?: number
  /**
   * This agent's server URL (`agent.peer.server.url`): a half whose address is one its host
   * resolves to is taken.
   */
  server?: string
  /** More addresses of the server's UDP relay (e.g. a public address its URL does not resolve to). */
  relayIps?: readonly string[]
}

/** The addresses a half may name: the server URL's host resolved, and `relayIps`. */
async function relayAddresses (options: TakeUdpRelayOptions): Promise<Set<string>> {
  const ips = new Set((options.relayIps ?? []).map(canonicalIp))
  if (options.server !== undefined) {
    const host = new URL(options.server).hostname
    const bare = host.startsWith('[') ? host.slice(1, -1) : host
    if (isIP(bare) !== 0) {
      ips.add(canonicalIp(bare))
    } else {
      try {
        for (const a of await lookup(bare, { all: true })) ips.add(canonicalIp(a.address))
      } catch (err) {
        throw new StarsockError('E_BAD_REQUEST', `The server's host ${bare} does not resolve (${(err as Error).message}): the relay half's address cannot be checked`)
      }
    }
  }
  return ips
}

let active = 0

/**
 * An `onChannel` for `udp-relay` channels: refuses (`E_DENIED`) unless a `udp-relay` rule allows
 * the sending peer (a rule naming a peer only on an end-to-end encrypted connection), then reads
 * the half and bridges it to `local` (until the sharer ends it, or the connection goes), or tells
 * it. The sharer gets `{ taken: 'bridged', via }` or `{ taken: 'printed' }`, or the error.
 */
export async function takeUdpRelay (channel: Channel, mux: Muxer, options: TakeUdpRelayOptions): Promise<Reply | undefined> {
  const peerId = mux.remotePeer
  const refuse = (code: ErrorCode, message: string): never => {
    options.onEvent({ type: 'refused', peerId, secure: mux.secure, code, message })
    throw new StarsockError(code, message)
  }
  if (channel.header.type !== 'udp-relay' || !channel.header.reliable) refuse('E_UNSUPPORTED', `This peer takes no ${channel.header.type} channels`)
  const rules = typeof options.rules === 'function' ? options.rules() : options.rules
  const rule = matchUdpRelayRule(rules, peerId, mux.secure)
  if (rule === undefined) {
    const named = rules.some((r) => r.kind === 'udp-relay' && r.peerId === peerId)
    refuse('E_DENIED', named && !mux.secure
      ? 'A udp-relay rule names this peer, but the connection is plaintext (the id is unverified)'
      : 'No udp-relay rule allows this peer to hand over a UDP relay half')
  }
  if (active >= MAX_UDP_RELAY_SHARES) refuse('E_LIMIT_TOTAL', `This peer holds ${MAX_UDP_RELAY_SHARES} UDP relay halves already; try later`)
  active++
  void carry(channel, peerId, mux.secure, (rule as SockRule).text, options).finally(() => { active-- })
  return undefined
}

async function carry (channel: Channel, peerId: string, secure: boolean, rule: string, options: TakeUdpRelayOptions): Promise<void> {
  let bridge: UdpBridge | undefined
  const timer = setTimeout(() => channel.abort(new StarsockError('E_TIMEOUT', `No udp-relay half within ${READ_TIMEOUT_MS} ms`)), READ_TIMEOUT_MS)
  try {
    const half = await readUdpHalf(channel, { keepOpen: true })
    clearTimeout(timer)
    const relays = await relayAddresses(options)
    if (!relays.has(canonicalIp(half.ip))) {
      // Refused (as without a rule), before a datagram is sent anywhere.
      const e = new StarsockError('E_BAD_REQUEST', relays.size === 0
        ? 'This peer knows no UDP relay address to check the half against (give it the server URL or relay addresses)'
        : `The half names ${half.ip}, not the UDP relay of this peer's server (${[...relays].join(', ')}; more with --udp-relay-ip, or relay_ips in [udp_relay])`)
      channel.abort(e)
      options.onEvent({ type: 'refused', peerId, secure, code: e.code, message: e.message })
      return
    }
    const local = options.local
    if (local === undefined) {
      options.onEvent({ type: 'taken', peerId, rule, half })
      await writeLine(channel, { taken: 'printed' })
      await channel.closeWrite()
      return
    }
    if (half.token === '') throw new StarsockError('E_BAD_REQUEST', 'A half without a token (address or open mode) cannot be bridged: the relay admits it by its source address')
    bridge = await bridgeUdpEndpoint(half, local, { timeoutMs: options.registerTimeoutMs ?? 10_000 })
    const via = bridge.socket.address().port
    options.onEvent({ type: 'taken', peerId, rule, half, local, via })
    await writeLine(channel, { taken: 'bridged', via })
    // The bridge lives as long as the channel: the sharer ends it (or its connection goes).
    await channel.whenClosed
    const code = channel.error?.code
    options.onEvent({ type: 'ended', peerId, half, local, counts: { ...bridge.counts }, code: code === 'E_STREAM_CLOSED' ? undefined : code })
  } catch (err) {
    clearTimeout(timer)
    const e = err instanceof StarsockError ? err : new StarsockError('E_BAD_REQUEST', (err as Error).message)
    channel.abort(e)
    options.onEvent({ type: 'failed', peerId, code: e.code, message: e.message })
  } finally {
    clearTimeout(timer)
    bridge?.close()
  }
}
