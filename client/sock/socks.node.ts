/**
 * A SOCKS5 and HTTP CONNECT proxy on a local port (Node only): a dynamic forward. Each request
 * (`CONNECT host:port`) becomes a `connect` offer to one peer, whose rules or person decide; a
 * denial is the proper SOCKS5 (RFC 1928) or HTTP reply code. Both protocols share the port: a
 * first byte 0x05 is SOCKS5, a letter an HTTP request.
 *
 * A granted mapping is reused for every request to the same `host:port` while it lives (released
 * after `SOCKS_MAPPING_IDLE_MS` without connections), and a denial is remembered for
 * `SOCKS_DENIAL_MEMORY_MS`, so a client that retries cannot have the far side's person asked in a
 * loop. Handshakes are bounded in time, in size and in number (in all and per source address).
 */
import crypto from 'node:crypto'
import net from 'node:net'
import { StarsockError } from '../../shared/errors.ts'
import type { SockAddress } from '../../shared/mux-frame.ts'
import { isHost } from '../../shared/sock-protocol.ts'
import type { Channel } from '../mux/channel.ts'
import type { SockAgent } from './agent.ts'
import { canonicalIp } from './allow-from.node.ts'
import { listenTcp, pipeSocket, resetSocket } from './host.node.ts'
import type { Mapping } from './mapping.ts'
import { Tunnel, type TunnelOptions } from './tunnel.node.ts'

/** A user of the proxy (RFC 1929 username/password, or HTTP `Proxy-Authorization: Basic`). */
export interface SocksUser { user: string, pass: string }

/** Options of a SOCKS5/HTTP CONNECT proxy. */
export interface SocksOptions extends Omit<TunnelOptions, 'to' | 'proto' | 'service' | 'udpIdleMs'> {
  /** Users who may use the proxy; without them it takes any client `allowFrom` allows (method 0x00). */
  users?: readonly SocksUser[]
  /** How long a client has to send its whole request. @default 10_000 */
  handshakeTimeoutMs?: number
  /** Handshakes under way at once (reading the request or waiting for the peer's answer); more are reset. @default 128 */
  maxHandshakes?: number
  /** The same, from one source address. @default 32 */
  maxHandshakesPerIp?: number
  /** A target's mapping without a connection this long is released. @default SOCKS_MAPPING_IDLE_MS (60_000) */
  mappingIdleMs?: number
  /** Denials remembered at once, of each kind (a rule's; a person's or a kill's); the oldest of that kind is forgotten first. @default 1024 */
  maxDenials?: number
}

/** Largest HTTP CONNECT request (request line and headers). */
export const MAX_HTTP_REQUEST_BYTES = 8 * 1024
/** How long a `host:port` a rule denied is answered "not allowed" without asking the peer again. */
export const SOCKS_DENIAL_MEMORY_MS = 30_000
/**
 * How long a `host:port` a person denied (or did not answer about, or killed) is answered "not
 * allowed" without asking again: the first no, the second, the third and after. Remembered while
 * the proxy runs, so a client that polls cannot have the person asked every 30 s for ever.
 */
export const SOCKS_PERSON_DENIAL_MS = [30_000, 120_000, 600_000] as const
/** Denials remembered at once, of each kind (the oldest of that kind is forgotten first). */
const MAX_DENIALS = 1024
/** A mapping without a connection this long is released (the peer's person is not asked again for it: see `release`). */
export const SOCKS_MAPPING_IDLE_MS = 60_000
/** Mappings (distinct `host:port` targets) held at once; past it an idle one is released, or the request fails. */
export const MAX_SOCKS_MAPPINGS = 32

/** How long a client that got a refusal may take to read it before its socket is destroyed. */
const ANSWERED_LINGER_MS = 5000
/** SOCKS5 reply codes (RFC 1928 section 6). */
const REP = { ok: 0x00, general: 0x01, notAllowed: 0x02, network: 0x03, host: 0x04, refused: 0x05, ttl: 0x06, command: 0x07, addressType: 0x08 } as const

/** A request's failure, as both protocols answer it (`retryAfter`: seconds, HTTP `Retry-After`). */
interface Refusal { rep: number, status: number, reason: string, retryAfter?: number }

/** Seconds an HTTP client is told to wait after a limit (`Retry-After`). */
const LIMIT_RETRY_AFTER_S = 5

/** A denial remembered: until when, and (a person's) how many times it was said. */
interface Denial { until: number, strikes: number }

const AWAY_CODES = new Set(['E_PEER_NOT_FOUND', 'E_PEER_GONE', 'E_PEER_SHUTDOWN', 'E_SHUTDOWN', 'E_DISCONNECTED', 'E_NOT_JOINED', 'E_SERVER_UNREACHABLE', 'E_DIAL_REFUSED'])
const DENIED_CODES = new Set(['E_DENIED', 'E_KILLED', 'E_NO_MAPPING', 'E_UNSUPPORTED', 'E_SECURE_REQUIRED'])
/** Denials remembered for a target: a rule or a person said no; not a limit (it passes) nor a connection-level refusal. */
const REMEMBERED_CODES = new Set(['E_DENIED', 'E_KILLED', 'E_UNSUPPORTED'])

/** How a failure of `connect` (the offer or the channel) is answered. */
export function socksRefusal (err: unknown): Refusal {
  const e = err instanceof StarsockError ? err : new StarsockError('E_INTERNAL', String(err))
  const reason = `${e.message} (${e.code})`
  if (DENIED_CODES.has(e.code)) return { rep: REP.notAllowed, status: 403, reason }
  // A limit (here or at the peer) is not a refusal of the target: try again later.
  if (e.code.startsWith('E_LIMIT_')) return { rep: REP.general, status: 503, reason, retryAfter: LIMIT_RETRY_AFTER_S }
  switch (e.code) {
    case 'E_CONNECT_REFUSED': return { rep: REP.refused, status: 502, reason }
    case 'E_CONNECT_UNREACHABLE': return { rep: /ENETUNREACH|ENETDOWN/.test(e.message) ? REP.network : REP.host, status: 502, reason }
    case 'E_CONNECT_TIMEOUT': case 'E_TIMEOUT': case 'E_DIAL_TIMEOUT': return { rep: REP.ttl, status: 504, reason }
  }
  if (AWAY_CODES.has(e.code)) return { rep: REP.general, status: 503, reason }
  return { rep: REP.general, status: 502, reason }
}

/** Unparsed bytes a handshake may hold while it waits for more; past it the client is cut. */
const MAX_UNPARSED_BYTES = MAX_HTTP_REQUEST_BYTES + 1024

/**
 * Reads a handshake off a socket, bounded in bytes: only what is not parsed yet counts, and only
 * while more is needed (a request and the client's data after it, in one chunk, are fine: the
 * data goes back on the socket by `release`).
 */
class Reader {
  private buf: Buffer = Buffer.alloc(0)
  private wake: (() => void) | undefined
  private over: Error | undefined
  private readonly onData = (chunk: Buffer): void => {
    if (this.over !== undefined) return
    // Nothing legitimate sends this much more while its request is still unparsed: stop reading.
    if (this.buf.byteLength > MAX_UNPARSED_BYTES) return this.fail(new Error('request too large'))
    this.buf = this.buf.byteLength === 0 ? chunk : Buffer.concat([this.buf, chunk])
    this.wake?.()
  }

  private readonly onEnd = (): void => this.fail(new Error('client closed'))

  constructor (private readonly socket: net.Socket) {
    socket.on('data', this.onData)
    socket.on('end', this.onEnd)
    socket.on('close', this.onEnd)
    socket.resume()
  }

  fail (err: Error): void {
    this.over ??= err
    this.wake?.()
  }

  private async more (): Promise<void> {
    this.check()
    if (this.buf.byteLength > MAX_UNPARSED_BYTES) throw new Error('request too large') // needs more, holds too much already
    await new Promise<void>((resolve) => { this.wake = resolve })
    this.wake = undefined
    this.check()
  }

  private check (): void {
    if (this.over !== undefined) throw this.over
  }

  /** Exactly `n` bytes. */
  async bytes (n: number): Promise<Buffer> {
    while (this.buf.byteLength < n) await this.more()
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(n)
    return out
  }

  async byte (): Promise<number> {
    return (await this.bytes(1))[0] as number
  }

  /** The bytes up to and with the first `\r\n\r\n`, at most `max`; `undefined` when longer. */
  async head (max: number): Promise<Buffer | undefined> {
    for (;;) {
      const end = this.buf.indexOf('\r\n\r\n')
      if (end >= 0 && end + 4 <= max) return await this.bytes(end + 4)
      if (end >= 0 || this.buf.byteLength >= max) return undefined
      await this.more()
    }
  }

  /** Stop reading; the socket is paused and what came past the handshake is put back on it. */
  release (): void {
    this.socket.off('data', this.onData)
    this.socket.off('end', this.onEnd)
    this.socket.off('close', this.onEnd)
    this.socket.pause()
    if (this.buf.byteLength > 0) this.socket.unshift(this.buf)
    this.buf = Buffer.alloc(0)
  }
}

/** A target's mapping (granted, or being asked for) and the connects under way on it (not yet counted as channels). */
interface TargetEntry { mapping: Promise<Mapping>, live: Mapping | undefined, idle: ReturnType<typeof setTimeout> | undefined, connecting: number }

/** A request parsed from either protocol. */
interface Target { host: string, port: number }

/** An IPv6 address of 16 bytes in its short text form (RFC 5952: the longest run of zero groups as `::`). */
function ipv6Text (b: Buffer): string {
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i))
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) { best = i; bestLen = j - i }
    i = j
  }
  const hex = groups.map((g) => g.toString(16))
  if (best < 0) return hex.join(':')
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`
}

/** An RFC 1123 host name (letters, digits, `-`, `_` in labels of 1 to 63, at most 253 in all), after `canonicalHost` took off a trailing dot. */
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9_-]{1,63}(?:\.[A-Za-z0-9_-]{1,63})*$/

/**
 * A target host in the one form it is keyed, offered and shown by: an IPv4 address as is, an IPv6
 * address in its short form (RFC 5952), an IPv4-mapped IPv6 address as the IPv4 one, a name lower
 * case without a trailing dot; `undefined` for anything else (a zone `%`, a port, brackets, ...).
 */
export function canonicalHost (text: string): string | undefined {
  if (net.isIPv4(text)) return text
  if (net.isIPv6(text)) {
    if (text.includes('%')) return undefined // a zone names an interface here, not there
    return canonicalIp(text)
  }
  const name = text.endsWith('.') ? text.slice(0, -1) : text
  // A last label of digits (or hex) is no name (RFC 1123 2.1) but an address in another spelling
  // (`127.1`, `2130706433`, `0x7f000001` resolve to 127.0.0.1): shown as a name, it would mislead.
  if (!HOST_NAME.test(name) || /^(?:\d+|0x[0-9a-f]*)$/i.test(name.slice(name.lastIndexOf('.') + 1))) return undefined
  return name.toLowerCase()
}

/** Compare two strings in time that depends on neither's content (digests of equal length). */
function sameSecret (a: string, b: string): boolean {
  const da = crypto.createHash('sha256').update(a).digest()
  const db = crypto.createHash('sha256').update(b).digest()
  return crypto.timingSafeEqual(da, db)
}

/** A request's answer was sent, or the client is gone: nothing more to say. */
class Answered extends Error {}

/**
 * A SOCKS5 and HTTP CONNECT proxy on a local port whose requests `options.peer` decides. It has
 * the `Tunnel` surface: `state` is `away` while the peer or the server is (requests then fail at
 * once with 0x01 / 503, and the proxy asks again by itself), `stats()` sums its mappings.
 *
 * @example
 * const socks = new Socks(agent, { peer: otherPeerId, users: [{ user: 'me', pass: 'secret' }] })
 * await socks.start({ ip: '127.0.0.1', port: 1080 })
 */
export class Socks extends Tunnel {
  private server: net.Server | undefined
  private readonly users: readonly SocksUser[] | undefined
  private readonly handshakeTimeoutMs: number
  private readonly maxHandshakes: number
  private readonly maxHandshakesPerIp: number
  private readonly mappingIdleMs: number
  /** Mappings by `host:port`: granted, or being asked for. */
  private readonly targets = new Map<string, TargetEntry>()
  /** Denials by a rule, by `host:port`, with when they are forgotten. */
  private readonly denials = new Map<string, Denial>()
  /** Denials by a person or a kill, by `host:port`: kept (bounded by their own count) to back off further on each. */
  private readonly personDenials = new Map<string, Denial>()
  private readonly maxDenials: number
  /** Errors already told ('error') once: a remembered denial, a request while away. */
  private readonly quiet = new WeakSet<Error>()
  /** A request failed for the peer being away was told during this away period. */
  private awayTold = false
  private readonly handshakes = new Map<string, number>()
  private handshakesNow = 0
  /** Client sockets not yet piped (handshaking, waiting for the peer's answer, or reading a refusal): reset on close. */
  private readonly pending = new Set<net.Socket>()
  /** Mappings ended here for want of use (not a sign the peer went away). */
  private readonly released = new WeakSet<Mapping>()

  constructor (agent: SockAgent, options: SocksOptions) {
    // Checked before `super`, which watches the agent and the signal: a throw leaves nothing behind.
    const users = options.users
    if (users !== undefined) {
      const list: unknown = users
      if (!Array.isArray(list) || list.length === 0) throw new TypeError('users must be a non-empty list of { user, pass }')
      for (const u of users as Array<Partial<SocksUser> | undefined>) {
        if (typeof u?.user !== 'string' || typeof u.pass !== 'string' || u.user === '' || Buffer.byteLength(u.user) > 255 || Buffer.byteLength(u.pass) > 255) {
          throw new TypeError('each user needs a user and a pass, strings of 1 to 255 bytes (RFC 1929)')
        }
      }
    }
    const numbers = {
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      maxHandshakes: options.maxHandshakes ?? 128,
      maxHandshakesPerIp: options.maxHandshakesPerIp ?? 32,
      mappingIdleMs: options.mappingIdleMs ?? SOCKS_MAPPING_IDLE_MS,
      maxDenials: options.maxDenials ?? MAX_DENIALS
    }
    for (const [name, value] of Object.entries(numbers)) {
      if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer`)
    }
    super(agent, { ...options, proto: 'tcp' })
    this.users = users?.map((u) => ({ user: u.user, pass: u.pass }))
    this.handshakeTimeoutMs = numbers.handshakeTimeoutMs
    this.maxHandshakes = numbers.maxHandshakes
    this.maxHandshakesPerIp = numbers.maxHandshakesPerIp
    this.mappingIdleMs = numbers.mappingIdleMs
    this.maxDenials = numbers.maxDenials
  }

  /**
   * Listen on `listen`; settles once listening. The peer is dialed at once: one not online rejects
   * with `E_PEER_NOT_FOUND`, or with `waitForPeer` leaves the proxy `away` until it comes.
   */
  async start (listen: SockAddress): Promise<void> {
    let offline: StarsockError | undefined
    try {
      await this.agent.session(this.options.peer, { signal: this.options.signal, timeoutMs: this.options.timeoutMs })
    } catch (err) {
      if (!this.waitsFor(err)) {
        this.stop(err instanceof StarsockError ? err : undefined) // nothing left watching the agent or the signal
        throw err
      }
      offline = err
    }
    // Closed while the peer was dialed: nothing is listened on.
    if (this.stopped) throw new StarsockError('E_ABORTED', 'Proxy closed while it started')
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.take(socket))
    try {
      this.address = await listenTcp(server, listen.ip, listen.port)
    } catch (err) {
      this.stop(undefined)
      throw err
    }
    // Kept only once listening: `shutdown` closing it mid-listen would leave `listenTcp` waiting for ever.
    this.server = server
    if (this.stopped) {
      // Closed while the port was bound: free it.
      server.close()
      throw new StarsockError('E_ABORTED', 'Proxy closed while it started')
    }
    if (offline !== undefined) this.dropped(offline)
  }

  protected override liveMappings (): Mapping[] {
    const out: Mapping[] = []
    for (const t of this.targets.values()) if (t.live !== undefined && !t.live.closed) out.push(t.live)
    return out
  }

  /** After the peer or the server went away: back once the peer can be dialed again. */
  protected async restore (): Promise<void> {
    await this.agent.session(this.options.peer, { signal: this.options.signal, timeoutMs: this.options.timeoutMs })
    if (!this.stopped) this.recovered()
  }

  protected shutdown (): void {
    this.server?.close()
    for (const s of this.pending) resetSocket(s)
    this.pending.clear()
    for (const t of this.targets.values()) {
      clearTimeout(t.idle)
      t.live?.kill('proxy closed')
    }
    this.targets.clear()
  }

  /** A new client: checked against `allowFrom` and the handshake limits, then served. */
  private take (socket: net.Socket): void {
    socket.on('error', () => {})
    const ip = socket.remoteAddress
    // Reset before it was taken: no address to check or count.
    if (ip === undefined) return void socket.destroy()
    const src = { ip, port: socket.remotePort ?? 0 }
    if (!this.admits(src)) return resetSocket(socket)
    const mine = this.handshakes.get(ip) ?? 0
    if (this.stopped || this.handshakesNow >= this.maxHandshakes || mine >= this.maxHandshakesPerIp) {
      this.counted('failures')
      return resetSocket(socket)
    }
    this.handshakesNow++
    this.handshakes.set(ip, mine + 1)
    this.pending.add(socket)
    const done = (): void => {
      this.handshakesNow--
      const n = (this.handshakes.get(ip) ?? 1) - 1
      if (n <= 0) this.handshakes.delete(ip)
      else this.handshakes.set(ip, n)
    }
    this.serve(socket, src).catch((err: unknown) => {
      // Any failure ends this client only, never the proxy.
      if (!(err instanceof Answered)) {
        this.counted('failures')
        this.pending.delete(socket)
        return resetSocket(socket)
      }
      // Answered (a refusal written, then a FIN): a client that does not read it is not kept,
      // and close() resets it (it stays in `pending` until it is gone).
      if (socket.destroyed) this.pending.delete(socket)
      else socket.once('close', () => this.pending.delete(socket))
      setTimeout(() => socket.destroy(), ANSWERED_LINGER_MS).unref()
    }).finally(done)
  }

  private async serve (socket: net.Socket, src: SockAddress): Promise<void> {
    const reader = new Reader(socket)
    const timer = setTimeout(() => reader.fail(new Error('handshake timeout')), this.handshakeTimeoutMs)
    let first: number
    let request: { target: Target, answer: (refusal: Refusal | undefined) => void }
    try {
      first = await reader.byte()
      if (first === 0x05) request = await this.socks5(socket, reader)
      else if (first >= 0x41 && first <= 0x5a) request = await this.http(socket, reader, first)
      else if (first === 0x04) {
        // SOCKS4: not spoken here; "request rejected" so the client says why.
        socket.end(Buffer.from([0x00, 0x5b, 0, 0, 0, 0, 0, 0]))
        throw new Answered()
      } else throw new Error('not a SOCKS5 or HTTP request')
    } finally {
      clearTimeout(timer)
    }
    const { target, answer } = request
    reader.release()
    let channel
    try {
      channel = await this.open(target, src)
    } catch (err) {
      const refusal = socksRefusal(err)
      this.failedHere(err)
      answer(refusal)
      throw new Answered()
    }
    if (socket.destroyed) {
      channel.abort(new StarsockError('E_STREAM_ABORTED', 'client gone'))
      throw new Answered()
    }
    answer(undefined)
    this.pending.delete(socket)
    pipeSocket(socket, channel)
  }

  /** SOCKS5 after its first byte: methods, RFC 1929 auth when users are set, then the request. */
  private async socks5 (socket: net.Socket, reader: Reader): Promise<{ target: Target, answer: (refusal: Refusal | undefined) => void }> {
    const methods = await reader.bytes(await reader.byte())
    const want = this.users === undefined ? 0x00 : 0x02
    if (!methods.includes(want)) {
      socket.end(Buffer.from([0x05, 0xff]))
      throw new Answered()
    }
    socket.write(Buffer.from([0x05, want]))
    if (this.users !== undefined) {
      if (await reader.byte() !== 0x01) {
        socket.end(Buffer.from([0x01, 0xff])) // not the sub-negotiation version: a failure, then close (RFC 1929)
        throw new Answered()
      }
      const user = (await reader.bytes(await reader.byte())).toString('utf8')
      const pass = (await reader.bytes(await reader.byte())).toString('utf8')
      if (!this.knows(user, pass)) {
        socket.end(Buffer.from([0x01, 0x01]))
        throw new Answered()
      }
      socket.write(Buffer.from([0x01, 0x00]))
    }
    const [ver, cmd, , atyp] = await reader.bytes(4)
    const reply = (rep: number): void => {
      // BND.ADDR/BND.PORT: the far side's socket is not known here; 0.0.0.0:0 (clients ignore it).
      const out = Buffer.from([0x05, rep, 0x00, 0x01, 0, 0, 0, 0, 0, 0])
      if (rep === REP.ok) socket.write(out)
      else socket.end(out)
    }
    if (ver !== 0x05) throw new Error('bad SOCKS version in the request')
    let host: string
    if (atyp === 0x01) host = [...await reader.bytes(4)].join('.')
    else if (atyp === 0x04) host = ipv6Text(await reader.bytes(16))
    else if (atyp === 0x03) host = (await reader.bytes(await reader.byte())).toString('latin1') // an IP here is taken as that IP (canonicalHost)
    else {
      reply(REP.addressType)
      throw new Answered()
    }
    const port = (await reader.bytes(2)).readUInt16BE(0)
    if (cmd !== 0x01) {
      reply(REP.command) // BIND and UDP ASSOCIATE are not offered
      throw new Answered()
    }
    const canonical = canonicalHost(host)
    if (canonical === undefined || !isHost(canonical) || port === 0) {
      reply(REP.host) // before any offer: the peer's person never sees a misleading target
      throw new Answered()
    }
    return { target: { host: canonical, port }, answer: (refusal) => reply(refusal?.rep ?? REP.ok) }
  }

  /** An HTTP request after its first byte: only CONNECT host:port, with Basic auth when users are set. */
  private async http (socket: net.Socket, reader: Reader, first: number): Promise<{ target: Target, answer: (refusal: Refusal | undefined) => void }> {
    const status = (code: number, text: string, extra = ''): void => {
      const body = `${text}\n`
      socket.end(`HTTP/1.1 ${code} ${text}\r\n${extra}Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
    }
    const head = await reader.head(MAX_HTTP_REQUEST_BYTES - 1)
    if (head === undefined) {
      status(431, 'Request Header Fields Too Large')
      throw new Answered()
    }
    const lines = (String.fromCharCode(first) + head.toString('latin1')).split('\r\n')
    const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0] ?? '')
    if (m === null) {
      status(400, 'Bad Request')
      throw new Answered()
    }
    if (m[1] !== 'CONNECT') {
      status(405, 'Method Not Allowed', 'Allow: CONNECT\r\n')
      throw new Answered()
    }
    if (this.users !== undefined) {
      const auth = lines.slice(1).find((l) => /^proxy-authorization:/i.test(l))
      const basic = /^proxy-authorization:\s*basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(auth ?? '')
      const pair = basic === null ? '' : Buffer.from(basic[1] as string, 'base64').toString('utf8')
      const colon = pair.indexOf(':')
      if (colon < 0 || !this.knows(pair.slice(0, colon), pair.slice(colon + 1))) {
        status(407, 'Proxy Authentication Required', 'Proxy-Authenticate: Basic realm="starsock"\r\n')
        throw new Answered()
      }
    }
    const t = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(m[2] as string)
    const inBrackets = t?.[1]
    // In brackets only IPv6; without, an IPv4 address or a host name.
    const host = inBrackets !== undefined ? (net.isIPv6(inBrackets) ? canonicalHost(inBrackets) : undefined) : canonicalHost(t?.[2] ?? '')
    const port = Number(t?.[3] ?? 0)
    if (t === null || host === undefined || !isHost(host) || port < 1 || port > 65535) {
      status(400, 'Bad Request')
      throw new Answered()
    }
    const texts: Record<number, string> = { 403: 'Forbidden', 502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Gateway Timeout' }
    return {
      target: { host, port },
      answer: (refusal) => {
        if (refusal === undefined) socket.write('HTTP/1.1 200 Connection established\r\n\r\n')
        else {
          const retry = refusal.retryAfter === undefined ? '' : `Retry-After: ${refusal.retryAfter}\r\n`
          status(refusal.status, texts[refusal.status] ?? 'Bad Gateway', `${retry}X-Starsock-Reason: ${refusal.reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 200)}\r\n`)
        }
      }
    }
  }

  /** Whether `user`/`pass` is one of `users`; every entry is compared, each in constant time. */
  private knows (user: string, pass: string): boolean {
    let ok = 0
    for (const u of this.users ?? []) {
      // Both compared always (no `&&`): the time does not tell whether the user name was right.
      ok |= Number(sameSecret(u.user, user)) & Number(sameSecret(u.pass, pass))
    }
    return ok === 1
  }

  /** A channel to `target` through the peer: its mapping (reused, or asked for), then a connect. */
  private async open (target: Target, src: SockAddress): Promise<Channel> {
    const away = this.awayError()
    if (away !== undefined) {
      // Told once per away period; every one is counted.
      if (this.awayTold) this.quiet.add(away)
      this.awayTold = true
      throw away
    }
    const key = `${target.host}|${target.port}` // canonical (canonicalHost)
    const now = Date.now()
    const denied = [this.personDenials.get(key), this.denials.get(key)].find((d) => d !== undefined && now < d.until)
    if (denied !== undefined) {
      // The denial itself was told; its repeats are counted only.
      const err = new StarsockError('E_DENIED', `${target.host}:${target.port} was denied lately; not asking ${this.options.peer} again for ${Math.ceil((denied.until - now) / 1000)} s`)
      this.quiet.add(err)
      throw err
    }
    this.denials.delete(key) // a person's is kept: the next no backs off further
    const mapping = await this.mappingFor(key, target)
    this.counted('connections')
    this.emit('connection', { src })
    const t = this.targets.get(key)
    if (t !== undefined) {
      clearTimeout(t.idle)
      t.connecting++ // its channel is not counted until it opens: not idle meanwhile
    }
    try {
      return await mapping.connect({ src, signal: this.options.signal })
    } finally {
      if (t !== undefined) t.connecting--
      this.idleLater(key, mapping)
    }
  }

  /** The mapping for `key`: the live one, the one being asked for, or a new offer. */
  private async mappingFor (key: string, target: Target): Promise<Mapping> {
    const known = this.targets.get(key)
    if (known !== undefined && (known.live === undefined || !known.live.closed)) return await known.mapping
    if (this.targets.size >= MAX_SOCKS_MAPPINGS) this.releaseIdle()
    if (this.targets.size >= MAX_SOCKS_MAPPINGS) throw new StarsockError('E_LIMIT_MAPPINGS', `The proxy holds ${MAX_SOCKS_MAPPINGS} targets with connections open; try later`)
    let personAsked = false
    const entry: TargetEntry = { mapping: undefined as unknown as Promise<Mapping>, live: undefined, idle: undefined, connecting: 0 }
    entry.mapping = this.agent.connect(this.options.peer, this.request({
      host: target.host,
      port: target.port,
      onAsking: (info) => { personAsked = true; this.emit('asking', info) }
    })).then((mapping) => {
      if (this.stopped || this.targets.get(key) !== entry) {
        mapping.kill('proxy closed')
        throw new StarsockError('E_ABORTED', 'Proxy closed')
      }
      entry.live = mapping
      this.personDenials.delete(key) // a yes now: a later no starts afresh
      mapping.on('close', (err) => this.mappingClosed(key, entry, mapping, err))
      this.recovered()
      this.emit('mapping', mapping)
      return mapping
    }, (err: unknown) => {
      if (this.targets.get(key) === entry) this.targets.delete(key)
      const e = err instanceof StarsockError ? err : new StarsockError('E_INTERNAL', String(err))
      // Said by the peer (not the wire), or a person who did not answer: not asked again for a while.
      if ((REMEMBERED_CODES.has(e.code) && !e.remote) || (e.code === 'E_TIMEOUT' && personAsked)) this.deny(key, personAsked)
      if (AWAY_CODES.has(e.code) && !this.stopped) this.dropped(e)
      throw e
    })
    entry.mapping.catch(() => {})
    this.targets.set(key, entry)
    return await entry.mapping
  }

  private mappingClosed (key: string, entry: { idle: ReturnType<typeof setTimeout> | undefined }, mapping: Mapping, err: StarsockError): void {
    clearTimeout(entry.idle)
    this.absorb(mapping)
    if (this.targets.get(key) === entry) this.targets.delete(key)
    if (this.stopped) return
    // A kill by the peer (its person or application) is a denial of that target, not of the proxy.
    if (this.released.has(mapping)) return
    if (err.code === 'E_KILLED' && !err.remote) return this.deny(key, true)
    if (AWAY_CODES.has(err.code) || err.code === 'E_STREAM_ABORTED' || err.code === 'E_TIMEOUT') this.dropped(err)
  }

  /**
   * Remember a denial of `key`: a rule's for `SOCKS_DENIAL_MEMORY_MS`; a person's (or a kill's)
   * longer on each (`SOCKS_PERSON_DENIAL_MS`), in a map of its own so rule denials never push it out.
   */
  private deny (key: string, person: boolean): void {
    const map = person ? this.personDenials : this.denials
    const strikes = (map.get(key)?.strikes ?? 0) + 1
    map.delete(key) // set again below: the newest last, the oldest forgotten first
    if (map.size >= this.maxDenials) map.delete(map.keys().next().value as string)
    const ms = person ? SOCKS_PERSON_DENIAL_MS[Math.min(strikes, SOCKS_PERSON_DENIAL_MS.length) - 1] as number : SOCKS_DENIAL_MEMORY_MS
    map.set(key, { until: Date.now() + ms, strikes })
  }

  protected override recovered (): void {
    super.recovered()
    this.awayTold = false
  }

  /** Release `key`'s mapping once it has had no channel for `mappingIdleMs`. */
  private idleLater (key: string, mapping: Mapping): void {
    const t = this.targets.get(key)
    if (t === undefined || t.live !== mapping) return
    clearTimeout(t.idle)
    const check = (): void => {
      if (mapping.closed) return
      if (mapping.stats().channelsOpen > 0 || t.connecting > 0) {
        t.idle = setTimeout(check, this.mappingIdleMs)
        t.idle.unref?.()
      } else this.release(mapping)
    }
    t.idle = setTimeout(check, this.mappingIdleMs)
    t.idle.unref?.()
  }

  /** Release the mappings without channels now (to make room). */
  private releaseIdle (): void {
    for (const t of [...this.targets.values()]) {
      if (t.live !== undefined && !t.live.closed && t.live.stats().channelsOpen === 0 && t.connecting === 0) this.release(t.live)
    }
  }

  /**
   * End a mapping nobody uses. Ended as `E_PEER_SHUTDOWN` ("not a refusal: ask again"), not as a
   * kill: the far side forgets a person's yes on a kill, and would ask again at the next request.
   */
  private release (mapping: Mapping): void {
    this.released.add(mapping)
    mapping.kill('idle in the SOCKS proxy', 'E_PEER_SHUTDOWN')
  }

  /** Count a failed request; tell it ('error') unless it was told already (`quiet`). */
  private failedHere (err: unknown): void {
    const e = err instanceof StarsockError ? err : new StarsockError('E_INTERNAL', String(err))
    this.counted('failures')
    if (!this.quiet.has(e)) this.emit('error', e)
  }
}
