/** Plain HTTP routes beside socket.io: health, readiness, metrics and the page. */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Registry } from 'prom-client'
import { PACKAGE_FOUND, packagePath } from './package-root.ts'
import { sameSecret } from './secret.ts'
import { findStaticFile, sendStaticFile } from './static-files.ts'

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
  /** The prefix the routes live under (`''` or e.g. `/starsock`), for the addresses the texts give. */
  prefix?: string
}

/**
 * Whether the request carries the token, as `Authorization: Bearer <token>` (preferred) or, for
 * a browser or a quick `curl`, `?token=` (which ends up in access logs and browser history).
 */
function hasToken (req: IncomingMessage, token: string): boolean {
  if (token === '') return true
  const header = req.headers.authorization
  if (typeof header === 'string' && /^Bearer /i.test(header)) return sameSecret(header.slice(7).trim(), token)
  // By hand: `URLSearchParams` turns a `+` (base64 tokens have them) into a space.
  const url = req.url ?? '/'
  const query = url.indexOf('?')
  if (query === -1) return false
  const part = url.slice(query + 1).split('#')[0]?.split('&').find((p) => p.startsWith('token='))
  if (part === undefined) return false
  try {
    return sameSecret(decodeURIComponent(part.slice('token='.length)), token)
  } catch {
    return false
  }
}

function unauthorized (res: ServerResponse, prefix: string): void {
  res.writeHead(401, { ...BASE_HEADERS, 'content-type': 'text/plain', 'cache-control': 'no-store', 'www-authenticate': 'Bearer realm="starsock"' })
  res.end(`this server needs a token: send it as Authorization: Bearer <token> (?token=<token> works too, but ends up in access logs); the page takes it as ${prefix}/#token=<token>\n`)
}

/** Headers on every answer: no type sniffing, no `Referer` to other sites. */
const BASE_HEADERS = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' } as const

/**
 * The page's `Content-Security-Policy`: its own scripts, styles and fetches only (no inline
 * script or style, no `eval`), socket.io to this host only (`'self'` covers its `ws:`/`wss:` in CSP
 * level 3, which Chromium and Firefox follow), framed only by this origin. `blob:`
 * links (a received file's "Save") are downloads, which no directive governs.
 */
export const PAGE_CSP = "default-src 'self'; connect-src 'self'; frame-ancestors 'self'; object-src 'none'; base-uri 'self'; form-action 'self'"

/** The status page template (`web/status.html`), read once. */
const STATUS_TEMPLATE = ((): string => {
  try {
    if (PACKAGE_FOUND) return readFileSync(packagePath('web', 'status.html'), 'utf8')
  } catch {}
  // The server bundled without its package's files: a plain page, the same figures.
  return '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8"><title>starsock</title></head>\n<body>\n  <h1>starsock</h1>\n  <!-- notes -->\n  <table><!-- rows --></table>\n</body>\n</html>\n'
})()

/** The status page's policy: the page's, and its own inline `<style>`, allowed by its hash. */
const STATUS_CSP = ((): string => {
  const style = /<style>([\s\S]*?)<\/style>/.exec(STATUS_TEMPLATE)?.[1] ?? ''
  return `${PAGE_CSP}; style-src 'sha256-${createHash('sha256').update(style).digest('base64')}'`
})()

function send (res: ServerResponse, status: number, type: string, body: string, headers: OutgoingHttpHeaders = {}): void {
  res.writeHead(status, { ...BASE_HEADERS, ...headers, 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** What the status page says on a server with a token (its routes under `prefix`): who needs it and how to give it. */
function tokenNote (prefix: string): string {
  const p = escapeHtml(prefix)
  return '<p id="token-needed"><strong>This server needs a token.</strong> Ask whoever runs it. ' +
    'Peers join with it (<code>--token &lt;token&gt;</code> or <code>STARSOCK_TOKEN</code>); ' +
    `the page takes it in its address as <code>${p}/#token=&lt;token&gt;</code> (after <code>#</code>, it is not sent to the server) ` +
    `or in the field it shows; these figures need it too (<code>Authorization: Bearer &lt;token&gt;</code>, or <code>${p}/status?token=&lt;token&gt;</code>, which ends up in access logs).</p>`
}

/** What `/` says when there is no page to serve. */
function noPageNote (webRoot: string): string {
  return webRoot === ''
    ? '<p id="no-page">This server serves no page (its page folder is empty by configuration), so <code>/</code> shows its status.</p>'
    : '<p id="no-page">The page is not built, so <code>/</code> shows this status instead. In a clone of the repository, <code>npm run build</code> builds it ' +
      '(<code>npm start</code> does too); the npm package comes with it built.</p>'
}

/** The status page: what this server is, its figures now (when shown), and `notes`. */
function statusPage (figures: Record<string, number | string>, notes: string[]): string {
  const rows = Object.entries(figures)
    .map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`)
    .join('')
  return STATUS_TEMPLATE.replace('<!-- notes -->', notes.join('\n  ')).replace('<!-- rows -->', rows)
}

function sendStatus (res: ServerResponse, html: string): void {
  send(res, 200, 'text/html; charset=utf-8', html, { 'content-security-policy': STATUS_CSP })
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
    res.writeHead(308, { ...BASE_HEADERS, location: prefix + '/' + (query === -1 ? '' : url.slice(query)), 'cache-control': 'no-store' })
    return void res.end()
  }
  if (!pathname.startsWith(prefix + '/')) return next !== undefined ? next() : send(res, 404, 'text/plain', 'not found\n')
  handleRoute(ctx, req, res, pathname.slice(prefix.length), next)
}

/** Handle one request that socket.io did not take, at `path` (relative to the prefix); unknown ones go to `next` when given. */
export function handleRoute (ctx: RouteContext, req: IncomingMessage, res: ServerResponse, path = (req.url ?? '/').split('?')[0], next?: () => void): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') return next !== undefined ? next() : send(res, 405, 'text/plain', 'method not allowed\n', { allow: 'GET, HEAD' })
  // With a token, the figures are for those who hold it; health and readiness stay open (probes).
  const ops = path === '/metrics' || path === '/status' || path === '/status.json'
  if (ops && !hasToken(req, ctx.token)) return unauthorized(res, ctx.prefix ?? '')
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
      return sendStatus(res, statusPage(ctx.status(), ctx.token === '' ? [] : [tokenNote(ctx.prefix ?? '')]))
    default: {
      const file = findStaticFile(ctx.webRoot, path ?? '/')
      if (file !== undefined) return sendStaticFile(req, res, file, file.path.endsWith('.html') ? { ...BASE_HEADERS, 'content-security-policy': PAGE_CSP } : BASE_HEADERS)
      // Without a built page, `/` is the status page, which says why (and the figures only with the token).
      if (path === '/' || path === '/index.html') {
        const notes = [noPageNote(ctx.webRoot), ...(ctx.token === '' ? [] : [tokenNote(ctx.prefix ?? '')])]
        return sendStatus(res, statusPage(hasToken(req, ctx.token) ? ctx.status() : {}, notes))
      }
      return next !== undefined ? next() : send(res, 404, 'text/plain', 'not found\n')
    }
  }
}
