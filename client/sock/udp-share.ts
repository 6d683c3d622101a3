/**
 * Hand one half of a UDP relay allocation (ip, port, token) to another peer over a channel of
 * type `udp-relay`: a JSON line `{ ip, port, token, expiresAt }`. The other side registers with
 * `registerUdpEndpoint(socket, half)` (`udp-register.node.ts`), or its application is a plain UDP
 * program doing the same steps (`shared/udp-relay-protocol.ts`): send the token's bytes to
 * `ip:port`, send the 16 bytes the relay answers XOR the token, wait for the confirmation, then
 * send its datagrams.
 */
import type { Channel } from '../mux/channel.ts'
import type { SockAgent } from './agent.ts'

/** One endpoint's half of an allocation. */
export interface UdpHalf {
  ip: string
  port: number
  /** Hex token ('' in address or open mode). */
  token: string
  expiresAt: number
}

const MAX_HALF_BYTES = 4096

/** Send `half` to `peerId`; settles once the other side took it. */
export async function sendUdpHalf (agent: SockAgent, peerId: string, half: UdpHalf): Promise<void> {
  const mux = await agent.session(peerId)
  const channel = await mux.open({ type: 'udp-relay', reliable: true }, { body: new TextEncoder().encode(JSON.stringify(half) + '\n') })
  await channel.closeWrite()
  await channel.read().catch(() => null) // the other side's end: it has the half
}

/** Read the half a `udp-relay` channel carries (from `onChannel`). */
export async function readUdpHalf (channel: Channel): Promise<UdpHalf> {
  let text = ''
  const decoder = new TextDecoder()
  try {
    for (;;) {
      const chunk = await channel.read()
      if (chunk === null) break
      text += decoder.decode(chunk, { stream: true })
      if (text.length > MAX_HALF_BYTES) throw new TypeError('udp-relay half too long')
    }
    await channel.closeWrite()
  } catch (err) {
    channel.abort(err)
    throw err
  }
  const v = JSON.parse(text) as Partial<UdpHalf>
  if (typeof v.ip !== 'string' || typeof v.port !== 'number' || typeof v.token !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(v.token)) throw new TypeError('not a udp-relay half')
  return { ip: v.ip, port: v.port, token: v.token, expiresAt: typeof v.expiresAt === 'number' ? v.expiresAt : 0 }
}
