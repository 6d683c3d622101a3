/**
 * Register a local UDP socket as one endpoint of a UDP relay allocation, with the relay's
 * handshake (`shared/udp-relay-protocol.ts`): send the token, echo the cookie the relay answers,
 * wait for the token to come back. Repeats lost steps by itself.
 */
import type dgram from 'node:dgram'
import { StarsockError } from '../../shared/errors.ts'
import { UDP_COOKIE_BYTES, UDP_TOKEN_BYTES } from '../../shared/udp-relay-protocol.ts'

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
