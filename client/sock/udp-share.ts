/**
 * Hand one half of a UDP relay allocation (ip, port, token) to another peer over a channel of
 * type `udp-relay`: a JSON line `{ ip, port, token, expiresAt }`. The other side registers with
 * `registerUdpEndpoint(socket, half)` (`udp-register.node.ts`), or its application is a plain UDP
 * program doing the same steps (`shared/udp-relay-protocol.ts`): send the token's bytes to
 * `ip:port`, send the 16 bytes the relay answers XOR the token, wait for the confirmation, then
 * send its datagrams.
 *
 * A receiver may answer with one JSON line, `{ taken: 'bridged', via }` (it bridges the half to a
 * local UDP program for as long as the channel is open) or `{ taken: 'printed' }`, and refuses
 * with the channel's error (`E_DENIED` when no `udp-relay` rule allows the sender). An older
 * receiver just ends the channel: the half was taken.
 */
import { StarsockError } from '../../shared/errors.ts'
import { isHost } from '../../shared/sock-protocol.ts'
import type { Channel } from '../mux/channel.ts'
import { LineReader } from '../mux/lines.ts'
import type { SockAgent } from './agent.ts'

/** One endpoint's half of an allocation. */
export interface UdpHalf {
  ip: string
  port: number
  /** Hex token ('' in address or open mode). */
  token: string
  expiresAt: number
}

/** What the receiver did with a half. */
export interface UdpShareTaken {
  /** `bridged` (to a local UDP program, from its port `via`), `printed` (for its person), or unknown (an older receiver). */
  taken?: 'bridged' | 'printed'
  via?: number
}

/** A half handed over: what the receiver did, and the channel that keeps it (a bridge lives as long). */
export interface UdpShare extends UdpShareTaken {
  /** Settles when the receiver stops using the half (it closed its bridge, or the connection went). */
  readonly ended: Promise<StarsockError | undefined>
  /** Tell the receiver to stop using the half (it closes its bridge). */
  close: () => void
}

const MAX_HALF_BYTES = 4096

/** An IPv4 or IPv6 address (a relay's address; never a name to look up). */
function isIpAddress (text: string): boolean {
  return isHost(text) && (/^\d{1,3}(?:\.\d{1,3}){3}$/.test(text) || (text.includes(':') && /^[0-9a-fA-F:.]+$/.test(text)))
}

/**
 * Send `half` to `peerId`; settles once the other side took it (rejects with its refusal, e.g.
 * `E_DENIED`). A receiver that bridges it keeps the channel open until `close()` or the end of
 * the connection.
 */
export async function sendUdpHalf (agent: SockAgent, peerId: string, half: UdpHalf, options: { signal?: AbortSignal } = {}): Promise<UdpShare> {
  const mux = await agent.session(peerId, { signal: options.signal })
  const channel = await mux.open({ type: 'udp-relay', reliable: true }, { body: new TextEncoder().encode(JSON.stringify(half) + '\n'), signal: options.signal })
  await channel.closeWrite()
  const onAbort = (): void => channel.abort(new StarsockError('E_ABORTED', 'Aborted by the caller'))
  options.signal?.addEventListener('abort', onAbort, { once: true })
  let answer: unknown
  try {
    answer = await new LineReader(channel).next()
  } catch (err) {
    channel.abort(err)
    throw err instanceof StarsockError ? err : new StarsockError('E_CHANNEL_PROTOCOL', `The answer to a udp-relay half was not a JSON line: ${(err as Error).message}`)
  } finally {
    options.signal?.removeEventListener('abort', onAbort)
  }
  const taken: UdpShareTaken = {}
  if (typeof answer === 'object' && answer !== null) {
    const a = answer as Record<string, unknown>
    if (a.taken === 'bridged' || a.taken === 'printed') taken.taken = a.taken
    if (typeof a.via === 'number') taken.via = a.via
  }
  const ended = channel.whenClosed.then(() => channel.error?.code === 'E_STREAM_CLOSED' ? undefined : channel.error)
  return { ...taken, ended, close: () => channel.abort() }
}

/**
 * Read the half a `udp-relay` channel carries (from `onChannel`). It ends this side of the
 * channel too, unless `keepOpen` (the caller answers on it, and closes it).
 */
export async function readUdpHalf (channel: Channel, options: { keepOpen?: boolean } = {}): Promise<UdpHalf> {
  let text = ''
  const decoder = new TextDecoder()
  try {
    for (;;) {
      const chunk = await channel.read()
      if (chunk === null) break
      text += decoder.decode(chunk, { stream: true })
      if (text.length > MAX_HALF_BYTES) throw new StarsockError('E_BAD_REQUEST', 'udp-relay half too long')
    }
    if (options.keepOpen !== true) await channel.closeWrite()
  } catch (err) {
    channel.abort(err)
    throw err
  }
  let v: Partial<UdpHalf>
  try {
    v = JSON.parse(text) as Partial<UdpHalf>
  } catch {
    throw new StarsockError('E_BAD_REQUEST', 'not a udp-relay half (not JSON)')
  }
  if (typeof v !== 'object' || v === null || typeof v.ip !== 'string' || !isIpAddress(v.ip) || typeof v.port !== 'number' || !Number.isInteger(v.port) || v.port < 1 || v.port > 65535 ||
    typeof v.token !== 'string' || v.token.length > 64 || !/^(?:[0-9a-f]{2})*$/.test(v.token)) throw new StarsockError('E_BAD_REQUEST', 'not a udp-relay half ({ ip: an address, port: 1-65535, token: hex })')
  return { ip: v.ip, port: v.port, token: v.token, expiresAt: typeof v.expiresAt === 'number' && Number.isFinite(v.expiresAt) ? v.expiresAt : 0 }
}
