/** The live view: the throughput chart of this page's agent, and the server's figures. */
import { ThroughputChart } from './chart.ts'
import { byId, el, formatBytes } from './dom.ts'
import type { PageContext } from './context.ts'

export function setupLive (ctx: PageContext, server: string, token: () => string | undefined): void {
  const chart = new ThroughputChart(byId<HTMLCanvasElement>('chart'), byId('rates'))
  setInterval(() => {
    const s = ctx.agent?.stats()
    if (s !== undefined) chart.sample(s.bytesIn, s.bytesOut)
  }, 1000)

  /** The token `/status.json` refused (`null`: none refused): no use asking again with it. */
  let figuresRefused: string | undefined | null = null

  const serverFigures = async (): Promise<void> => {
    if (figuresRefused !== null && figuresRefused === token()) return
    try {
      const asked = token()
      // Relative: a server with a prefix serves its figures under it.
      const res = await fetch(new URL('status.json', server.endsWith('/') ? server : server + '/'), { headers: asked === undefined ? {} : { authorization: `Bearer ${asked}` } })
      if (res.status === 401) figuresRefused = asked
      if (!res.ok) return
      const figures = await res.json() as Record<string, unknown>
      const list = byId('server-figures')
      const shown: Array<[string, string]> = [
        ['peers online', String(figures.peers ?? '?')],
        ['relayed', typeof figures.relayedBytes === 'number' ? formatBytes(figures.relayedBytes) : '?'],
        ['server', String(figures.version ?? '?')]
      ]
      list.replaceChildren(...shown.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]))
    } catch {}
  }
  setInterval(() => { void serverFigures() }, 2000)
  void serverFigures()
}
