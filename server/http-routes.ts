/** Plain HTTP routes beside socket.io: health, readiness, metrics and the page. */
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

/** The page at `/`: what this server is and its figures now. */
function statusPage (figures: Record<string, number | string>): string {
  const rows = Object.entries(figures)
    .map(([k, v]) => `<tr><th scope="row">${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`)
    .join('')
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>starsock</title><style>body{font:16px system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}th{text-align:left;padding-right:1rem}</style></head>
<body><h1>starsock</h1><p>A websocket-star rendezvous and relay server. Peers connect with socket.io on this address.</p>
<table>${rows}</table><p><a href="/metrics">metrics</a> · <a href="/healthz">health</a> · <a href="/readyz">readiness</a></p></body></html>`
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
