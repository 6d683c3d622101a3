/**
 * The local control API of an agent (as ngrok's local API or frp's admin port): JSON over HTTP on
 * a loopback port, each request with `Authorization: Bearer TOKEN`. Lists, adds and removes the
 * runner's mappings, tells the agent's state and traffic, and runs the Impervious S2S calls
 * (`/v1/socket/start`, `/sendRequest`, `/stop`) on the server's UDP relay.
 *
 * Safe by default: it refuses to listen on anything but a loopback address; a request whose Host
 * header names anything else (DNS rebinding: a web page whose name now resolves to 127.0.0.1) or
 * whose Origin is a page elsewhere is refused; bodies are JSON, at most 64 KiB, and must arrive
 * within the request timeout; no CORS headers are sent, so no other page can read an answer.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { open, readFile, rename, unlink } from 'node:fs/promises'
import http from 'node:http'
import { isIP, type AddressInfo } from 'node:net'
import { StarsockError, type ErrorCode } from '../../shared/errors.ts'
import { silentLogger, type Logger } from '../../shared/logger.ts'
import type { SockAddress } from '../../shared/mux-frame.ts'
import type { SockAgent } from '../../client/sock/agent.ts'
import { LOOPBACK_ONLY, parseAllowFrom } from '../../client/sock/allow-from.node.ts'
import { ConfigError, MAX_MAPPINGS, parseMappingEntry, type MappingEntry, type MappingKind } from './config.ts'
import type { AgentRunner, MappingStatus } from './runner.ts'
import { formatAddress } from '../../shared/sock-protocol.ts'
import { BadRequest, CONTROL_MAX_ALLOCATIONS, CONTROL_REFRESH_MS, ControlSockets, parseSocketSend, parseSocketStart, parseSocketStop } from './control-sockets.ts'

/** Largest request body taken. */
export const CONTROL_MAX_BODY_BYTES = 64 * 1024
/** A request must arrive whole, and its work be done, within this long, by default. */
export const CONTROL_REQUEST_TIMEOUT_MS = 30_000
/** `POST /v1/mappings` answers 202 (still starting) when the first attempt takes longer than this (a person asked, a peer not online yet). */
export const CONTROL_ADD_WAIT_MS = 10_000
/** Connections the API holds at once. */
const MAX_CONNECTIONS = 64
/** Headers must arrive within this long: a client sending them slowly holds a connection no longer. */
const HEADERS_TIMEOUT_MS = 3_000

/** What the control API uses of the runner. */
export type ControlRunner = Pick<AgentRunner, 'add' | 'remove' | 'list' | 'get'>

/** Options of `startControlApi`. */
export interface ControlApiOptions {
  runner: ControlRunner
  agent: SockAgent
  /** `HOST:PORT` on a loopback address: `127.0.0.1:4040`, `[::1]:4040`, `localhost:4040` (port 0: any free port), or the config's `{ ip, port }`. */
  listen: string | SockAddress
  /** The bearer token; without one, a new one is made (32 random bytes, base64url) and returned. */
  token?: string
  /** Allocations held at once for `/v1/socket/start`. @default CONTROL_MAX_ALLOCATIONS (4) */
  maxAllocations?: number
  /** How often held allocations are refreshed. @default CONTROL_REFRESH_MS (20 s) */
  refreshMs?: number
  /** A request must arrive whole, and its work be done, within this long. @default CONTROL_REQUEST_TIMEOUT_MS (30 s) */
  requestTimeoutMs?: number
  logger?: Logger
}

/** A running control API. */
export interface ControlApi {
  /** `http://127.0.0.1:PORT`. */
  url: string
  /** The bearer token (the one given, or the one made). */
  token: string
  /** Stop listening, end open requests and release the allocations held; settles once closed. */
  close: () => Promise<void>
}

/** A failure with its HTTP status, answered `{ error: { code, message } }`. */
class ApiError extends Error {
  constructor (readonly status: number, readonly code: ErrorCode, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

/** The file a generated token is kept in: next to the key, `KEY.control-token`. */
export function controlTokenFile (keyFile: string): string {
  return `${keyFile}.control-token`
}

/** Write `token` to `file` with mode 0600 (whole or not at all); settles once written. The temporary file is made anew ('wx'): a file or symlink already at its path is removed, never written through. */
export async function writeControlToken (file: string, token: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`
  await unlink(tmp).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'ENOENT') throw err })
  const handle = await open(tmp, 'wx', 0o600)
  try {
    await handle.writeFile(token + '\n')
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(tmp, file)
}

/** Remove `file` only if it still holds `token` (another process may have written its own since); settles once done, never throws. */
export async function removeControlToken (file: string, token: string): Promise<void> {
  try {
    const held = await readFile(file, 'utf8')
    if (held.trim() !== token) return
    await unlink(file)
  } catch {}
}

const loopback = parseAllowFrom(LOOPBACK_ONLY)

/** `HOST:PORT` of a loopback address, or a RangeError saying why not. */
export function parseControlListen (listen: string | SockAddress): { host: string, port: number } {
  if (typeof listen === 'object' && listen !== null) listen = formatAddress(listen)
  if (typeof listen !== 'string') throw new TypeError('control listen must be a string HOST:PORT')
  if (/^\d{1,5}$/.test(listen)) listen = `127.0.0.1:${listen}` // a bare port, as the config takes it
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(listen)
  const port = Number(m?.[3])
  if (m === null || port > 65535) throw new RangeError(`control listen "${listen.slice(0, 100)}" is not HOST:PORT (e.g. 127.0.0.1:4040)`)
  const name = m[1] ?? m[2] ?? ''
  const host = name === 'localhost' ? '127.0.0.1' : name
  if (isIP(host) === 0 || !loopback.allows(host)) {
    throw new RangeError(`control listen "${listen.slice(0, 100)}" is not a loopback address: the control API listens on 127.0.0.1, [::1] or localhost only`)
  }
  return { host, port }
}

/** Whether a Host header (or an Origin's host) names this machine's loopback: `localhost`, `127.x.x.x` or `[::1]`, with any port. */
function isLoopbackHost (value: string | undefined): boolean {
  if (value === undefined) return false
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+))(?::\d{1,5})?$/.exec(value)
  if (m === null) return false
  const name = (m[1] ?? m[2] ?? '').toLowerCase()
  if (name === 'localhost') return true
  return isIP(name) !== 0 && loopback.allows(name)
}

function isLoopbackOrigin (origin: string): boolean {
  try {
    const url = new URL(origin)
    return (url.protocol === 'http:' || url.protocol === 'https:') && isLoopbackHost(url.host)
  } catch {
    return false
  }
}

function digest (text: string): Buffer {
  return createHash('sha256').update(text).digest()
}

/**
 * Start the control API on `listen`; settles once it listens. Throws a RangeError for a listen
 * address that is not loopback, or an invalid token.
 * @example
 * const api = await startControlApi({ runner, agent, listen: '127.0.0.1:4040' })
 * // curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:4040/v1/status
 */
export async function startControlApi (options: ControlApiOptions): Promise<ControlApi> {
  const { host, port } = parseControlListen(options.listen)
  const token = options.token ?? randomBytes(32).toString('base64url')
  if (typeof token !== 'string' || !/^[\x21-\x7e]{16,512}$/.test(token)) throw new RangeError('control token must be 16 to 512 visible ASCII characters')
  const timeoutMs = options.requestTimeoutMs ?? CONTROL_REQUEST_TIMEOUT_MS
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new RangeError('requestTimeoutMs must be a positive integer')
  const logger = (options.logger ?? silentLogger).child({ ns: 'starsock:up:control' })
  const sockets = new ControlSockets(options.agent, {
    maxAllocations: options.maxAllocations ?? CONTROL_MAX_ALLOCATIONS,
    refreshMs: options.refreshMs ?? CONTROL_REFRESH_MS,
    timeoutMs,
    logger
  })
  const tokenDigest = digest(token)
  const routes = new Routes(options, sockets, Math.min(CONTROL_ADD_WAIT_MS, Math.floor(timeoutMs / 2)))

  // requireHostHeader off: a request without Host gets the same JSON 403 as one with a foreign Host.
  const server = http.createServer({ requestTimeout: timeoutMs + 5_000, headersTimeout: Math.min(timeoutMs + 1_000, HEADERS_TIMEOUT_MS), requireHostHeader: false, connectionsCheckingInterval: 1_000 }, (req, res) => {
    serve(req, res).catch((err: unknown) => {
      logger.error({ err: err instanceof Error ? err.message : String(err) }, 'control api: request failed')
      if (!res.headersSent) reply(res, 500, { error: { code: 'E_INTERNAL', message: 'Internal error' } })
      else res.destroy()
    })
  })
  server.maxConnections = MAX_CONNECTIONS
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    // Malformed HTTP, or headers (or a request) that did not arrive in time.
    const late = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    const body = JSON.stringify({ error: late ? { code: 'E_TIMEOUT', message: 'The request did not arrive in time' } : { code: 'E_BAD_REQUEST', message: 'Malformed HTTP request' } }) + '\n'
    if (socket.writable) socket.end(`HTTP/1.1 ${late ? '408 Request Timeout' : '400 Bad Request'}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
    else socket.destroy()
  })

  const serve = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    try {
      if (!isLoopbackHost(req.headers.host)) throw new ApiError(403, 'E_FORBIDDEN', 'The Host header must name a loopback address (localhost, 127.0.0.1 or [::1])')
      const origin = req.headers.origin
      if (origin !== undefined && !isLoopbackOrigin(origin)) throw new ApiError(403, 'E_FORBIDDEN', 'Requests from web pages elsewhere are refused')
      const auth = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '')
      // Constant time: both sides hashed to the same length first.
      if (auth === null || !timingSafeEqual(digest(auth[1] as string), tokenDigest)) {
        throw new ApiError(401, 'E_FORBIDDEN', 'Missing or wrong token: send Authorization: Bearer TOKEN', { 'www-authenticate': 'Bearer realm="starsock"' })
      }
      const deadline = AbortSignal.timeout(timeoutMs)
      const body = await readBody(req, deadline, timeoutMs)
      const { status, value } = await routes.handle(req.method ?? 'GET', req.url ?? '/', req.headers['content-type'], body, deadline, timeoutMs)
      reply(res, status, value)
    } catch (err) {
      const e = toApiError(err)
      if (e.status >= 500) logger.warn({ code: e.code, err: e.message }, 'control api: request failed')
      reply(res, e.status, { error: { code: e.code, message: e.message } }, e.headers)
    }
  }

  // The agent stopped: the allocations are of no use any more.
  const offAgentClose = options.agent.on('close', () => { void sockets.close() })
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => { server.off('error', reject); resolve() })
    })
  } catch (err) {
    offAgentClose()
    throw new Error(`control API cannot listen on ${formatAddress({ ip: host, port })}: ${(err as Error).message}`, { cause: err })
  }
  const address = server.address() as AddressInfo
  const url = `http://${isIP(address.address) === 6 ? `[${address.address}]` : address.address}:${address.port}`
  logger.info({ url }, 'control api listening')
  let closing: Promise<void> | undefined
  return {
    url,
    token,
    close: async () => {
      closing ??= (async () => {
        offAgentClose()
        await sockets.close()
        await new Promise<void>((resolve) => {
          server.close(() => resolve())
          server.closeAllConnections()
        })
      })()
      await closing
    }
  }
}

/** Read a request body of at most `CONTROL_MAX_BODY_BYTES` before `deadline`. */
async function readBody (req: http.IncomingMessage, deadline: AbortSignal, timeoutMs: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > CONTROL_MAX_BODY_BYTES) throw tooLarge()
  const parts: Buffer[] = []
  let size = 0
  return await new Promise<Buffer>((resolve, reject) => {
    const done = (err?: Error): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      deadline.removeEventListener('abort', onAbort)
      if (err !== undefined) reject(err)
      else resolve(Buffer.concat(parts))
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.byteLength
      if (size > CONTROL_MAX_BODY_BYTES) return done(tooLarge())
      parts.push(chunk)
    }
    const onEnd = (): void => done()
    const onError = (err: Error): void => done(err)
    const onAbort = (): void => done(new ApiError(408, 'E_TIMEOUT', `The request did not arrive whole within ${timeoutMs} ms`, { connection: 'close' }))
    if (deadline.aborted) return onAbort()
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    deadline.addEventListener('abort', onAbort, { once: true })
  })
}

function tooLarge (): ApiError {
  return new ApiError(413, 'E_LIMIT_BYTES', `The body is larger than ${CONTROL_MAX_BODY_BYTES} bytes`, { connection: 'close' })
}

/** Send `value` as JSON (nothing for 204). */
function reply (res: http.ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const text = status === 204 ? '' : JSON.stringify(value) + '\n'
  res.writeHead(status, {
    ...headers,
    ...(status === 204 ? {} : { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) }),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff'
  })
  res.end(text)
}

/** The status an error answers with: the caller's mistakes 4xx, the server's or a peer's failures 502 (504 for a timeout). */
function toApiError (err: unknown): ApiError {
  if (err instanceof ApiError) return err
  if (err instanceof BadRequest) return new ApiError(400, 'E_BAD_REQUEST', err.message)
  if (err instanceof StarsockError) {
    if (err.code === 'E_UDP_NOT_FOUND') return new ApiError(404, err.code, err.message)
    if (err.code === 'E_LIMIT_ALLOCATIONS' && !err.remote && err.message.startsWith('The control API')) return new ApiError(409, err.code, err.message)
    return new ApiError(err.code === 'E_TIMEOUT' ? 504 : 502, err.code, err.message)
  }
  return new ApiError(500, 'E_INTERNAL', 'Internal error')
}

/** The API's routes. */
class Routes {
  constructor (private readonly options: ControlApiOptions, private readonly sockets: ControlSockets, private readonly addWaitMs: number) {}

  async handle (method: string, target: string, contentType: string | undefined, body: Buffer, deadline: AbortSignal, timeoutMs: number): Promise<{ status: number, value?: unknown }> {
    const path = target.split('?')[0] as string
    const id = /^\/v1\/mappings\/([^/]+)$/.exec(path)?.[1]
    const route = id !== undefined ? '/v1/mappings/:id' : path
    const allowed = ROUTES[route]
    if (allowed === undefined) throw new ApiError(404, 'E_BAD_REQUEST', `No such endpoint: ${path.slice(0, 100)}`)
    if (!allowed.includes(method)) throw new ApiError(405, 'E_BAD_REQUEST', `${path.slice(0, 100)} takes ${allowed.join(', ')}`, { allow: allowed.join(', ') })
    const json = method === 'POST' ? parseJson(body, contentType) : undefined
    const work = this.run(method, route, id, json)
    return await bound(work, deadline, timeoutMs)
  }

  private async run (method: string, route: string, rawId: string | undefined, body: Record<string, unknown> | undefined): Promise<{ status: number, value?: unknown }> {
    const { runner, agent } = this.options
    switch (`${method} ${route}`) {
      case 'GET /v1/status': return { status: 200, value: this.status() }
      case 'GET /v1/mappings': return { status: 200, value: { mappings: runner.list().map(statusJson) } }
      case 'POST /v1/mappings': {
        const { kind, ...rest } = body as Record<string, unknown>
        if (typeof kind !== 'string') throw new BadRequest('kind: must be "forward", "expose", "socks" or "accept"')
        let entry: MappingEntry
        try {
          entry = parseMappingEntry(kind as MappingKind, rest)
        } catch (err) {
          if (err instanceof ConfigError) throw new BadRequest(err.message)
          throw err
        }
        const exists = (): ApiError => new ApiError(409, 'E_BAD_REQUEST', `A mapping ${entry.id} exists already: remove it first, or give this one another name`)
        if (runner.get(entry.id) !== undefined) throw exists()
        if (runner.list().length >= MAX_MAPPINGS) throw new ApiError(409, 'E_BAD_REQUEST', `The agent runs its maximum of mappings: ${MAX_MAPPINGS} (remove one first)`)
        const adding = runner.add(entry)
        // Settles after the first attempt, which may wait for a person or a peer: not for long here.
        let timer: ReturnType<typeof setTimeout> | undefined
        const later = new Promise<undefined>((resolve) => { timer = setTimeout(() => resolve(undefined), this.addWaitMs) })
        try {
          const added = await Promise.race([adding, later])
          if (added !== undefined) return { status: 201, value: statusJson(added) }
        } catch (err) {
          if (err instanceof TypeError) throw exists() // added meanwhile by another request
          if (err instanceof RangeError) throw new ApiError(409, 'E_BAD_REQUEST', `The agent runs its maximum of mappings: ${err.message}`)
          throw err
        } finally {
          clearTimeout(timer)
        }
        adding.catch(() => {})
        const now = runner.get(entry.id)
        return { status: 202, value: now === undefined ? { id: entry.id, state: 'starting' } : statusJson(now) }
      }
      case 'DELETE /v1/mappings/:id': {
        const id = decodeId(rawId as string)
        if (!await runner.remove(id)) throw new ApiError(404, 'E_BAD_REQUEST', `No mapping ${id.slice(0, 200)}`)
        return { status: 204 }
      }
      case 'POST /v1/socket/start': return { status: 201, value: await this.sockets.start(parseSocketStart(body as Record<string, unknown>)) }
      case 'POST /v1/socket/sendRequest': {
        const { id, peer, endpoint } = parseSocketSend(body as Record<string, unknown>)
        if (peer === agent.peer.peerId) throw new BadRequest('peer: that is this agent itself')
        const half = await this.sockets.send(id, peer, endpoint)
        return { status: 200, value: { id, peer, endpoint, ...half } }
      }
      case 'POST /v1/socket/stop': {
        const { id } = parseSocketStop(body as Record<string, unknown>)
        await this.sockets.stop(id)
        return { status: 200, value: { id, stopped: true } }
      }
      default: throw new ApiError(404, 'E_BAD_REQUEST', 'No such endpoint')
    }
  }

  private status (): unknown {
    const { agent, runner } = this.options
    const server = new URL(agent.peer.server.href)
    server.username = ''
    server.password = ''
    return {
      peer: { id: agent.peer.peerId, server: server.href === agent.peer.server.href + '/' ? agent.peer.server.href : server.href, state: agent.peer.state },
      agent: { closed: agent.isClosed, ...agent.stats() },
      sessions: agent.sessions(),
      mappings: runner.list().length,
      allocations: this.sockets.list().map(({ token1: _t1, token2: _t2, ...rest }) => rest)
    }
  }
}

const ROUTES: Readonly<Record<string, readonly string[]>> = {
  '/v1/status': ['GET'],
  '/v1/mappings': ['GET', 'POST'],
  '/v1/mappings/:id': ['DELETE'],
  '/v1/socket/start': ['POST'],
  '/v1/socket/sendRequest': ['POST'],
  '/v1/socket/stop': ['POST']
}

function decodeId (raw: string): string {
  try {
    return decodeURIComponent(raw)
  } catch {
    throw new BadRequest('The mapping id in the path is not valid percent-encoding')
  }
}

/** A POST body: `application/json`, a JSON object. */
function parseJson (body: Buffer, contentType: string | undefined): Record<string, unknown> {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase()
  if (type !== 'application/json') throw new ApiError(415, 'E_BAD_REQUEST', 'The body must be JSON: send Content-Type: application/json')
  let value: unknown
  try {
    value = JSON.parse(body.toString('utf8'))
  } catch (err) {
    throw new BadRequest(`The body is not valid JSON (${(err as Error).message.slice(0, 120)})`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new BadRequest('The body must be a JSON object')
  return value as Record<string, unknown>
}

/** Settle with `work`, or fail with a 504 once `deadline` fires (the work itself goes on). */
async function bound<T> (work: Promise<T>, deadline: AbortSignal, timeoutMs: number): Promise<T> {
  work.catch(() => {})
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([work, new Promise<never>((_resolve, reject) => {
      onAbort = () => reject(new ApiError(504, 'E_TIMEOUT', `The request was not done within ${timeoutMs} ms`))
      if (deadline.aborted) onAbort()
      else deadline.addEventListener('abort', onAbort, { once: true })
    })])
  } finally {
    if (onAbort !== undefined) deadline.removeEventListener('abort', onAbort)
  }
}

/** Field names whose values never leave the agent (a SOCKS user's password, a token). */
const SECRET_KEY = /pass(word)?|secret|token/i

/** A runner status as JSON: errors as `{ code, message }`, secrets in the entry redacted. */
function statusJson (s: MappingStatus): unknown {
  return { ...s, entry: redact(s.entry) }
}

function redact (value: unknown, depth = 0): unknown {
  if (depth > 8 || typeof value !== 'object' || value === null) return value
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1))
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_KEY.test(k) && v !== undefined ? '(redacted)' : redact(v, depth + 1)]))
}
