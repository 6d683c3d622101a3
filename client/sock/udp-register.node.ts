/**
 * Register a local UDP socket as one endpoint of a UDP relay allocation, with the relay's
 * handshake (`shared/udp-relay-protocol.ts`): send the token, answer the relay's cookie with the
 * proof (cookie XOR token), wait for the confirmation. Repeats lost steps by itself.
 */
import type dgram from 'node:dgram'
import { isIPv6 } from 'node:net'
import { StarsockError } from '../../shared/errors.ts'
import { UDP_COOKIE_BYTES, UDP_TOKEN_BYTES, udpConfirmation, udpProof } from '../../shared/udp-relay-protocol.ts'
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
  /** First wait before the handshake starts again at step 1; doubles up to 2 s. @default 250 */
  retryMs?: number
  signal?: AbortSignal
}

/** Options of `bridgeUdpEndpoint`. */
export interface BridgeUdpOptions extends RegisterUdpOptions {
  /**
   * With nothing from the relay this long, the bridge registers again from its socket (a NAT that
   * rebinds gives it a new source address, which the relay drops until a handshake moves the
   * endpoint there). @default UDP_BRIDGE_REREGISTER_IDLE_MS (5 s)
   */
  reregisterIdleMs?: number
}

/** A bridge that has heard nothing from the relay this long registers again. */
export const UDP_BRIDGE_REREGISTER_IDLE_MS = 5_000
/** Cookies (and their confirmations) an endpoint remembers, to know late duplicates. */
const REMEMBERED_COOKIES = 16

const normalize = (ip: string): string => ip.startsWith('::ffff:') ? ip.slice(7) : ip

/**
 * One endpoint's side of the handshake, kept for the life of its socket: the cookies it answered
 * and the confirmations they bring, so a late duplicate of either is known as such (and is not
 * data for the program).
 */
class EndpointHandshake {
  private readonly cookies = new Set<string>()
  private readonly confirmations = new Set<string>()

  constructor (readonly token: Buffer) {}

  /** A 16-byte datagram from the relay taken as a cookie: remember it, return the proof to send. */
  answer (cookie: Buffer): Buffer {
    const proof = Buffer.from(udpProof(cookie, this.token))
    remember(this.cookies, cookie.toString('hex'))
    remember(this.confirmations, Buffer.from(udpConfirmation(proof)).toString('hex'))
    return proof
  }

  /** Whether `msg` confirms a proof this endpoint sent. */
  isConfirmation (msg: Buffer): boolean {
    return msg.byteLength === UDP_COOKIE_BYTES && this.confirmations.has(msg.toString('hex'))
  }

  /** Whether `msg` is a cookie or a confirmation this endpoint has seen (a late duplicate). */
  isHandshake (msg: Buffer): boolean {
    return msg.byteLength === UDP_COOKIE_BYTES && (this.cookies.has(msg.toString('hex')) || this.confirmations.has(msg.toString('hex')))
  }
}

function remember (set: Set<string>, value: string): void {
  set.add(value)
  if (set.size > REMEMBERED_COOKIES) set.delete(set.values().next().value as string)
}

function tokenBytes (half: UdpRegistration): Buffer {
  const token = Buffer.from(half.token, 'hex')
  if (token.byteLength !== UDP_TOKEN_BYTES || token.toString('hex') !== half.token.toLowerCase()) throw new TypeError(`token must be ${UDP_TOKEN_BYTES} bytes of hex`)
  return token
}

/**
 * Register `socket` (bound, not connected) on `half.ip:half.port`. Settles once the relay
 * confirmed: from then on what `socket` sends to that address is forwarded. Rejects with
 * `E_TIMEOUT` (no confirmation within `timeoutMs`) or `E_ABORTED`. Call it before sending data;
 * calling it again from another socket moves the endpoint there. Late duplicates of the
 * handshake's 16-byte datagrams may still reach `socket` after it settles.
 * @example
 * await registerUdpEndpoint(socket, await readUdpHalf(channel))
 */
export async function registerUdpEndpoint (socket: dgram.Socket, half: UdpRegistration, options: RegisterUdpOptions = {}): Promise<void> {
  await handshake(socket, half, new EndpointHandshake(tokenBytes(half)), options)
}

/**
 * The handshake on `socket`. Every retry starts again at step 1 (the token): a 16-byte datagram
 * that was not the cookie (a spoofed one, or data forwarded to an endpoint registering again) only
 * costs one wrong proof, which the relay does not confirm.
 */
async function handshake (socket: dgram.Socket, half: UdpRegistration, hs: EndpointHandshake, options: RegisterUdpOptions): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5_000
  let retryMs = options.retryMs ?? 250
  const relayIp = normalize(half.ip)
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
      send(hs.token)
      retry = setTimeout(step, retryMs)
      retryMs = Math.min(2 * retryMs, 2000)
    }
    const onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
      if (normalize(rinfo.address) !== relayIp || rinfo.port !== half.port || msg.byteLength !== UDP_COOKIE_BYTES) return
      if (hs.isConfirmation(msg)) return finish()
      send(hs.answer(msg))
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
  /** Datagrams carried from the relay to the program and back; completed registrations. */
  readonly counts: { toLocal: number, toRelay: number, registrations: number }
  close: () => void
}

/**
 * Make the unmodified UDP program at `target` one endpoint of an allocation: bind a socket,
 * register it (`registerUdpEndpoint`), then carry datagrams both ways, relay to `target` and
 * `target` to relay; datagrams from anyone else, and the handshake's own, are not passed on. With
 * nothing from the relay for `reregisterIdleMs` it registers again (a NAT rebinding; a failed
 * attempt is tried again after the next idle period). Settles once registered; rejects as
 * `registerUdpEndpoint` does (and with `E_BIND_FAILED`).
 */
export async function bridgeUdpEndpoint (half: UdpRegistration, target: { ip: string, port: number }, options: BridgeUdpOptions = {}): Promise<UdpBridge> {
  const hs = new EndpointHandshake(tokenBytes(half))
  const idleMs = options.reregisterIdleMs ?? UDP_BRIDGE_REREGISTER_IDLE_MS
  if (!(idleMs > 0)) throw new RangeError('reregisterIdleMs must be a positive number of milliseconds')
  const socket = await bindUdp(isIPv6(half.ip) ? '::' : '0.0.0.0', 0)
  try {
    await handshake(socket, half, hs, options)
  } catch (err) {
    socket.close()
    throw err
  }
  const relayIp = normalize(half.ip)
  const targetIp = normalize(target.ip)
  const counts = { toLocal: 0, toRelay: 0, registrations: 1 }
  let lastFromRelay = Date.now()
  let registering = false
  const closing = new AbortController()
  socket.on('message', (msg, rinfo) => {
    const from = normalize(rinfo.address)
    if (from === relayIp && rinfo.port === half.port) {
      lastFromRelay = Date.now()
      if (hs.isHandshake(msg)) return // a late duplicate of a cookie or a confirmation
      // While registering again, a new 16-byte datagram is taken for the cookie (the handshake's
      // own listener answers it); data of that size arriving in that moment is not passed on.
      if (registering && msg.byteLength === UDP_COOKIE_BYTES) return
      counts.toLocal++
      socket.send(msg, target.port, target.ip)
    } else if (from === targetIp && rinfo.port === target.port) {
      counts.toRelay++
      socket.send(msg, half.port, half.ip)
    }
  })
  const idle = setInterval(() => {
    if (registering || Date.now() - lastFromRelay < idleMs) return
    registering = true
    handshake(socket, half, hs, { ...options, signal: closing.signal }).then(() => { counts.registrations++ }, () => {}).finally(() => {
      registering = false
      lastFromRelay = Date.now() // the next attempt, if need be, after another idle period
    })
  }, Math.max(20, Math.min(1000, idleMs / 4)))
  idle.unref()
  return {
    socket,
    counts,
    close: () => {
      clearInterval(idle)
      closing.abort()
      try { socket.close() } catch {}
    }
  }
}
