/**
 * Register a local UDP socket as one endpoint of a UDP relay allocation, with the relay's
 * handshake (`shared/udp-relay-protocol.ts`): send the token, echo the cookie the relay answers,
 * wait for the token to come back. Repeats lost steps by itself.
 */
import type dgram from 'node:dgram'
import { isIPv6 } from 'node:net'
import { StarsockError } from '../../shared/errors.ts'
import { UDP_COOKIE_BYTES, UDP_TOKEN_BYTES } from '../../shared/udp-relay-protocol.ts'
import { bindUdp } from './host.node.ts'

/** Where an endpoint registers: one half of an allocation (`UdpHalf` fits). */
export interface UdpRegistration {
  ip: string
  port: number
  /** Hex token of the port. */
  token: string
}

/** Options of `registerUdpEndpoint`. */
export interface RegisterUdpOptions {
  /** Give up after this long. @default 5_000 */
  timeoutMs?: number
  /** First wait before a step is repeated; doubles up to 2 s. @default 250 */
  retryMs?: number
  signal?: AbortSignal
}

const normalize = (ip: string): string => ip.startsWith('::ffff:') ? ip.slice(7) : ip

/**
 * Register `socket` (bound, not connected) on `half.ip:half.port`. Settles once the relay
 * confirmed: from then on what `socket` sends to that address is forwarded. Rejects with
 * `E_TIMEOUT` (no confirmation within `timeoutMs`) or `E_ABORTED`. Call it before sending data.
 * @example
 * await registerUdpEndpoint(socket, await readUdpHalf(channel))
 */
export async function registerUdpEndpoint (socket: dgram.Socket, half: UdpRegistration, options: RegisterUdpOptions = {}): Promise<void> {
  const token = Buffer.from(half.token, 'hex')
  if (token.byteLength !== UDP_TOKEN_BYTES || token.toString('hex') !== half.token.toLowerCase()) throw new TypeError(`token must be ${UDP_TOKEN_BYTES} bytes of hex`)
  const timeoutMs = options.timeoutMs ?? 5_000
  let retryMs = options.retryMs ?? 250
  const relayIp = normalize(half.ip)
  let cookie: Buffer | undefined
  const send = (data: Buffer): void => { try { socket.send(data, half.port, half.ip) } catch {} }
  await new Promise<void>((resolve, reject) => {
    let retry: ReturnType<typeof setTimeout> | undefined
    const finish = (err?: Error): void => {
      clearTimeout(retry)
      clearTimeout(deadline)
      socket.off('message', onMessage)
      options.signal?.removeEventListener('abort', onAbort)
      if (err === undefined) resolve()
      else reject(err)
    }
    const step = (): void => {
      send(cookie ?? token) // the echo when there is a cookie to echo, else the token again
      retry = setTimeout(step, retryMs)
      retryMs = Math.min(2 * retryMs, 2000)
    }
    const onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
      if (normalize(rinfo.address) !== relayIp || rinfo.port !== half.port) return
      if (msg.equals(token)) return finish() // the confirmation
      if (msg.byteLength !== UDP_COOKIE_BYTES) return
      cookie = msg
      clearTimeout(retry)
      step()
    }
    const onAbort = (): void => finish(new StarsockError('E_ABORTED', 'Aborted by the caller', { cause: options.signal?.reason }))
    const deadline = setTimeout(() => finish(new StarsockError('E_TIMEOUT', `UDP relay ${half.ip}:${half.port} did not confirm the registration within ${timeoutMs} ms`)), timeoutMs)
    if (options.signal?.aborted === true) return onAbort()
    options.signal?.addEventListener('abort', onAbort, { once: true })
    socket.on('message', onMessage)
    step()
  })
}

/** A local UDP program bridged to one endpoint of an allocation. */
export interface UdpBridge {
  /** The bridge's own socket: the program gets the relay's datagrams from it and may send to it. */
  readonly socket: dgram.Socket
  /** Datagrams carried from the relay to the program and back. */
  readonly counts: { toLocal: number, toRelay: number }
  close: () => void
}

/**
 * Make the unmodified UDP program at `target` one endpoint of an allocation: bind a socket,
 * register it (`registerUdpEndpoint`), then carry datagrams both ways, relay to `target` and
 * `target` to relay; datagrams from anyone else are ignored. Settles once registered; rejects as
 * `registerUdpEndpoint` does (and with `E_BIND_FAILED`).
 */
export async function bridgeUdpEndpoint (half: UdpRegistration, target: { ip: string, port: number }, options: RegisterUdpOptions = {}): Promise<UdpBridge> {
  const socket = await bindUdp(isIPv6(half.ip) ? '::' : '0.0.0.0', 0)
  try {
    await registerUdpEndpoint(socket, half, options)
  } catch (err) {
    socket.close()
    throw err
  }
  const token = Buffer.from(half.token, 'hex')
  const relayIp = normalize(half.ip)
  const targetIp = normalize(target.ip)
  const counts = { toLocal: 0, toRelay: 0 }
  socket.on('message', (msg, rinfo) => {
    const from = normalize(rinfo.address)
    if (from === relayIp && rinfo.port === half.port) {
      if (msg.equals(token)) return // a late duplicate of the confirmation
      counts.toLocal++
      socket.send(msg, target.port, target.ip)
    } else if (from === targetIp && rinfo.port === target.port) {
      counts.toRelay++
      socket.send(msg, half.port, half.ip)
    }
  })
  return { socket, counts, close: () => { try { socket.close() } catch {} } }
}
