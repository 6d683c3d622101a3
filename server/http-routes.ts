/** Plain HTTP routes beside socket.io: health, readiness, metrics and the page. */
import { createReadStream, readFileSync, statSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { extname, join, normalize, sep } from 'node:path'
import type { Registry } from 'prom-client'
import { packagePath } from './package-root.ts'
import { sameSecret } from './secret.ts'

/** What the routes read from the server. */
export interface RouteContext {
  /** Whether the server takes new work (false while shutting down). */
  ready: () => boolean
  /** Registry for `/metrics`, or `undefined` when metrics are off. */
  registry: Registry | undefined
  /** Figures for the status page. */
  status: () => Record<string, number | string>
  /** Folder of the built page, or `''`. */
  webRoot: string
  /** The server token: when set, `/metrics`, `/status` and `/status.json` need it. */
  token: string
}

/**
 * Whether the request carries the token, as `Authorization: Bearer <token>` (preferred) or, for
 * a browser or a quick `curl`, `?token=` (which ends up in access logs and browser history).
 */
function hasToken (req: IncomingMessage, token: string): boolean {
  if (token === '') return true
  const header = req.headers.authorization
  if (typeof header === 'string' && /^Bearer /i.test(header)) return sameSecret(header.slice(7).trim(), token)
  try {
    return sameSecret(new URL(req.url ?? '/', 'http://x').searchParams.get('token'), token)
  } catch {
    return false
  }
}

function unauthorized (res: ServerResponse): void {
  res.writeHead(401, { 'content-type': 'text/plain', 'cache-control': 'no-store', 'www-authenticate': 'Bearer realm="starsock"' })
  res.end('this server has a token: send it as Authorization: Bearer <token> (?token=<token> works too, but ends up in access logs)\n')
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8'
}

/** The file under `root` for a URL path, if there is one (never outside `root`). */
function staticFile (root: string, path: string): string | undefined {
  if (root === '') return undefined
  let decoded: string
  try {
    decoded = decodeURIComponent(path)
  } catch {
    return undefined
  }
  if (decoded.includes('\0')) return undefined
  const file = normalize(join(root, decoded === '/' ? 'index.html' : decoded))
  if (!file.startsWith(normalize(root.endsWith(sep) ? root : root + sep))) return undefined
  try {
    return statSync(file).isFile() ? file : undefined
  } catch {
    return undefined
  }
}

function sendFile (res: ServerResponse, file: string, head: boolean): void {
  // Vite names assets by content hash: they never change; the page itself may.
  const immutable = file.includes(`${sep}assets${sep}`)
  res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache', 'x-content-type-options': 'nosniff' })
  if (head) return void res.end()
  createReadStream(file).on('error', () => res.destroy()).pipe(res)
}

function send (res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** The status page template (`web/status.html`), read once. */
const STATUS_TEMPLATE = readFileSync(packagePath('web', 'status.html'), 'utf8')

/** The page at `/`: what this server is and its figures now. */
function statusPage (figures: Record<string, number | string>): string {
  const rows = Object.entries(figures)
    .map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`)
    .join('')
  return STATUS_TEMPLATE.replace('<!-- rows -->', rows)
}

/**
 * Route one request that socket.io did not take, by its path under `prefix` (`''`, or the prefix
 * of the socket.io path, e.g. `/starsock`; `req.originalUrl` first, as Express keeps it). With
 * `next` (an attached server), a request that is not starsock's goes there untouched; without, it
 * is answered 404 or 405.
 */
export function routeRequest (ctx: RouteContext, prefix: string, req: IncomingMessage & { originalUrl?: string }, res: ServerResponse, next?: () => void): void {
  const url = req.originalUrl ?? req.url ?? '/'
  const query = url.indexOf('?')
  const pathname = query === -1 ? url : url.slice(0, query)
  if (prefix !== '' && pathname === prefix && (req.method === 'GET' || req.method === 'HEAD')) {
    // The page finds socket.io next to itself: its address must end with the prefix's `/`.
    res.writeHead(308, { location: prefix + '/' + (query === -1 ? '' : url.slice(query)), 'cache-control': 'no-store' })
    return void res.end()
  }
  if (!pathname.startsWith(prefix + '/')) return next !== undefined ? next() : send(res, 404, 'text/plain', 'not found\n')
  handleRoute(ctx, req, res, pathname.slice(prefix.length), next)
}

/** Handle one request that socket.io did not take, at `path` (relative to the prefix); unknown ones go to `next` when given. */
export function handleRoute (ctx: RouteContext, req: IncomingMessage, res: ServerResponse, path = (req.url ?? '/').split('?')[0], next?: () => void): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') return next !== undefined ? next() : send(res, 405, 'text/plain', 'method not allowed\n')
  // With a token, the figures are for those who hold it; health and readiness stay open (probes).
  const ops = path === '/metrics' || path === '/status' || path === '/status.json'
  if (ops && !hasToken(req, ctx.token)) return unauthorized(res)
  switch (path) {
    case '/healthz':
      return send(res, 200, 'text/plain', 'ok\n')
    case '/readyz':
      return ctx.ready() ? send(res, 200, 'text/plain', 'ready\n') : send(res, 503, 'text/plain', 'shutting down\n')
    case '/metrics': {
      const registry = ctx.registry
      if (registry === undefined) return next !== undefined ? next() : send(res, 404, 'text/plain', 'metrics are disabled\n')
      registry.metrics().then(
        (text) => send(res, 200, registry.contentType, text),
        () => send(res, 500, 'text/plain', 'metrics failed\n')
      )
      return
    }
    case '/status.json':
      return send(res, 200, 'application/json', JSON.stringify(ctx.status()) + '\n')
    case '/status':
      return send(res, 200, 'text/html; charset=utf-8', statusPage(ctx.status()))
    default: {
      const file = staticFile(ctx.webRoot, path ?? '/')
      if (file !== undefined) return sendFile(res, file, req.method === 'HEAD')
      // Without a built page, `/` is the status page (and says how to build the page).
      if (path === '/' || path === '/index.html') return send(res, 200, 'text/html; charset=utf-8', statusPage(hasToken(req, ctx.token) ? ctx.status() : { figures: 'behind the server token (Authorization: Bearer <token>, or /status?token=...)' }))
      return next !== undefined ? next() : send(res, 404, 'text/plain', 'not found\n')
    }
  }
}
