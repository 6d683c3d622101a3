/**
 * Why a server could not be reached, in words a person can act on. After the client gave up
 * (`E_SERVER_UNREACHABLE`, which only says it never connected), one short probe of the server's
 * address finds the first thing wrong: a name that does not resolve, nothing listening, TLS on one
 * side only, or a program that accepts connections and answers nothing.
 */
import { lookup } from 'node:dns/promises'
import { connect as connectTcp, isIP, type Socket } from 'node:net'
import { connect as connectTls, TLSSocket } from 'node:tls'
import { parseServerAddress } from '../client/server-address.ts'
import { StarsockError } from '../shared/errors.ts'

/**
 * How long the probe may take in all: a wrong `--server` still fails within 5 s (start-up, the
 * 2.5 s connect timeout and this).
 */
export const PROBE_TIMEOUT_MS = 1000

/** How much of a refusal the probe reads. */
const MAX_ANSWER_CHARS = 4096

/** What a probe step settles with when the probe's time ran out. */
const TIMEOUT = Symbol('timeout')

/** What the probe found: the reason, and the host name when it is a name that does not resolve. */
export interface Unreachable {
  reason: string
  unresolved?: string
}

/** The probe's one connection, each step bounded by what is left of the probe's time. */
class Probe {
  private readonly deadline: number

  constructor (readonly host: string, readonly port: number, timeoutMs: number) {
    this.deadline = Date.now() + timeoutMs
  }

  get where (): string {
    return `${isIP(this.host) === 6 ? `[${this.host}]` : this.host}:${this.port}`
  }

  /** `step`'s result, or `TIMEOUT` once the probe's time is up. */
  async bounded<T> (step: Promise<T>): Promise<T | typeof TIMEOUT> {
    let timer: ReturnType<typeof setTimeout> | undefined
    const left = Math.max(0, this.deadline - Date.now())
    try {
      return await Promise.race([step, new Promise<typeof TIMEOUT>((resolve) => { timer = setTimeout(() => resolve(TIMEOUT), left) })])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Open a socket (`tls`: a TLS handshake too); settles with it, its error, or `TIMEOUT` (the socket destroyed). */
  async open (tls: boolean): Promise<Socket | NodeJS.ErrnoException | typeof TIMEOUT> {
    let socket: Socket | undefined
    const opened = new Promise<Socket | NodeJS.ErrnoException>((resolve) => {
      const s = tls
        ? connectTls({ host: this.host, port: this.port, servername: isIP(this.host) === 0 ? this.host : undefined, rejectUnauthorized: false }, () => resolve(s))
        : connectTcp({ host: this.host, port: this.port }, () => resolve(s))
      socket = s
      s.once('error', (err: NodeJS.ErrnoException) => resolve(err))
    })
    const result = await this.bounded(opened)
    if (result === TIMEOUT || result instanceof Error) socket?.destroy()
    return result
  }

  /**
   * Send an HTTP request for socket.io's handshake at `path` on `socket`; settles with the first
   * bytes of the answer (of a refusal, up to `MAX_ANSWER_CHARS` of it: its body says why), `''`
   * when it closed without one, or `TIMEOUT` when nothing HTTP came in time.
   */
  async ask (socket: Socket, path: string): Promise<string | typeof TIMEOUT> {
    let got = ''
    const answer = new Promise<string>((resolve) => {
      socket.on('data', (d: Buffer) => {
        got += d.toString('latin1')
        if ((got.length >= 12 && got.slice(9, 12) === '200') || got.length >= MAX_ANSWER_CHARS || answerComplete(got)) resolve(got.slice(0, MAX_ANSWER_CHARS))
      })
      socket.once('close', () => resolve(got))
      socket.once('error', () => resolve(got))
    })
    socket.write(`GET ${path}/?EIO=4&transport=polling HTTP/1.1\r\nHost: ${this.where}\r\nConnection: close\r\n\r\n`)
    try {
      const answered = await this.bounded(answer)
      return answered === TIMEOUT && got.startsWith('HTTP/') ? got : answered
    } finally {
      socket.destroy()
    }
  }
}

/**
 * The reason in an engine.io refusal's body (`{"code":N,"message":"..."}`, in one chunk of a
 * chunked body or as the whole body), printable; `undefined` without one.
 */
function refusalOf (answer: string): string | undefined {
  const body = answer.slice(answer.indexOf('\r\n\r\n') + 4)
  try {
    const message = (JSON.parse(body.slice(body.indexOf('{'), body.lastIndexOf('}') + 1)) as { message?: unknown }).message
    return typeof message === 'string' && message !== '' ? message.slice(0, 300).replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, ' ') : undefined
  } catch {
    return undefined
  }
}

/** Whether an HTTP answer is all there: its body as long as its `Content-Length`, or a chunked body's last chunk (a server that keeps the connection open is not waited for). */
function answerComplete (answer: string): boolean {
  const end = answer.indexOf('\r\n\r\n')
  if (end < 0) return false
  const head = answer.slice(0, end).toLowerCase()
  const length = /\r\ncontent-length: *(\d+)/.exec(head)
  if (length !== null) return answer.length - end - 4 >= Number(length[1])
  return /\r\ntransfer-encoding: *chunked/.test(head) && answer.endsWith('0\r\n\r\n')
}

/** Whether `err` is what a TLS client sees from a server that does not speak TLS. */
function notTls (err: NodeJS.ErrnoException): boolean {
  return err.code === 'EPROTO' || /wrong version number|packet length too long|unknown protocol/i.test(err.message)
}

/**
 * Probe the server `server` (a URL or multiaddr) for at most `timeoutMs`; settles with why it
 * cannot be reached, or `undefined` when the probe found nothing wrong (or ran out of time before
 * it knew). Never rejects.
 */
export async function whyUnreachable (server: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<Unreachable | undefined> {
  let url: URL
  let path: string
  try {
    const address = parseServerAddress(server)
    url = new URL(address.url)
    path = address.path
  } catch {
    return undefined
  }
  const tls = url.protocol === 'https:'
  const probe = new Probe(url.hostname.replace(/^\[|\]$/g, ''), Number(url.port !== '' ? url.port : tls ? 443 : 80), timeoutMs)
  if (isIP(probe.host) === 0) {
    const found = await probe.bounded(lookup(probe.host).then(() => undefined, (err: NodeJS.ErrnoException) => err.code))
    if (found === 'ENOTFOUND' || found === 'EAI_AGAIN') return { reason: `the name ${probe.host} does not resolve`, unresolved: probe.host }
    if (found === TIMEOUT) return undefined // a slow resolver: no reason rather than a guess
  }
  const socket = await probe.open(tls)
  if (socket === TIMEOUT) return { reason: `${probe.where} does not answer${tls ? ' the TLS handshake' : ''} (a firewall dropping packets, or a program that accepts and says nothing?)` }
  if (socket instanceof Error) {
    if (socket.code === 'ECONNREFUSED') return { reason: `nothing listens on ${probe.where}` }
    if (socket.code === 'EHOSTUNREACH' || socket.code === 'ENETUNREACH') return { reason: `no route to ${probe.host}` }
    if (tls && notTls(socket)) return { reason: `${probe.where} does not speak TLS: try http:// (or ws://)` }
    return { reason: `${probe.where}: ${socket.code ?? socket.message}` }
  }
  const untrusted = socket instanceof TLSSocket && !socket.authorized ? String(socket.authorizationError) : undefined
  const answer = await probe.ask(socket, path)
  if (untrusted !== undefined) return { reason: `its TLS certificate is not trusted here (${untrusted}): NODE_EXTRA_CA_CERTS=FILE trusts its CA` }
  if (answer !== TIMEOUT && answer.startsWith('HTTP/')) {
    const status = answer.slice(9, 12)
    if (status === '404') return { reason: `${probe.where} is an HTTP server, but no socket.io answers at ${path} (a server started with --path? give its prefix, e.g. ${url.origin}/PREFIX/)` }
    if (status !== '200' && /^\d{3}$/.test(status)) {
      const said = refusalOf(answer)
      return { reason: `${probe.where} answers HTTP ${status} for socket.io at ${path}${said === undefined ? '' : `: ${said}`}` }
    }
    return undefined // socket.io answers: the trouble is further on
  }
  if (!tls) {
    // Nothing HTTP came back: a TLS server drops a plaintext request. Ask it for TLS.
    const again = await probe.open(true)
    if (again !== TIMEOUT && !(again instanceof Error)) {
      again.destroy()
      return { reason: `${probe.where} speaks TLS: try https:// (or wss://)` }
    }
  }
  if (answer === TIMEOUT) return { reason: `${probe.where} accepts connections but answers nothing (not a starsock server?)` }
  return { reason: `${probe.where} is not an HTTP server (not a starsock server?)` }
}

/** `E_SERVER_UNREACHABLE` with the reason `whyUnreachable` found in its message. */
export class UnreachableError extends StarsockError {
  constructor (message: string, /** The host name, when it does not resolve. */ readonly unresolved: string | undefined, cause: unknown) {
    super('E_SERVER_UNREACHABLE', message, { cause })
  }
}

/**
 * `err` with the reason the probe found (an `UnreachableError`), when it is `E_SERVER_UNREACHABLE`
 * and the probe found one; any other error as it is. Settles within `PROBE_TIMEOUT_MS` and a little.
 */
export async function explainUnreachable (err: unknown, server: string): Promise<unknown> {
  if (!(err instanceof StarsockError) || err.code !== 'E_SERVER_UNREACHABLE' || err instanceof UnreachableError) return err
  const why = await whyUnreachable(server)
  if (why === undefined) return err
  const message = err.message.replace(/: is it running, and is the address right\?$/, '')
  return new UnreachableError(`${message}: ${why.reason}`, why.unresolved, err)
}
