/** Plain HTTP routes beside socket.io: health, readiness, metrics and the page. */
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Registry } from 'prom-client'

/** What the routes read from the server. */
export interface RouteContext {
  /** Whether the server takes new work (false while shutting down). */
  ready: () => boolean
  /** Registry for `/metrics`, or `undefined` when metrics are off. */
  registry: Registry | undefined
  /** Figures for the status page. */
  status: () => Record<string, number | string>
}

function send (res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
  res.end(body)
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** The status page template (`web/status.html`), read once. */
const STATUS_TEMPLATE = readFileSync(new URL('../web/status.html', import.meta.url), 'utf8')

/** The page at `/`: what this server is and its figures now. */
function statusPage (figures: Record<string, number | string>): string {
  const rows = Object.entries(figures)
    .map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`)
    .join('')
  return STATUS_TEMPLATE.replace('<!-- rows -->', rows)
}

/** Handle one request that socket.io did not take. */
export function handleRoute (ctx: RouteContext, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0]
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'method not allowed\n')
  switch (path) {
    case '/healthz':
      return send(res, 200, 'text/plain', 'ok\n')
    case '/readyz':
      return ctx.ready() ? send(res, 200, 'text/plain', 'ready\n') : send(res, 503, 'text/plain', 'shutting down\n')
    case '/metrics': {
      const registry = ctx.registry
      if (registry === undefined) return send(res, 404, 'text/plain', 'metrics are disabled\n')
      registry.metrics().then(
        (text) => send(res, 200, registry.contentType, text),
        () => send(res, 500, 'text/plain', 'metrics failed\n')
      )
      return
    }
    case '/':
    case '/index.html':
      return send(res, 200, 'text/html; charset=utf-8', statusPage(ctx.status()))
    default:
      return send(res, 404, 'text/plain', 'not found\n')
  }
}
