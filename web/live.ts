/** The live view: the throughput chart of this page's agent, and the server's figures. */
import type { SockAgent } from '../client/sock/agent.ts'
import { ThroughputChart } from './chart.ts'
import { byId, el, formatBytes } from './dom.ts'
import type { PageContext } from './context.ts'
import { RateMeter } from './rate.ts'

/**
 * How often the chart takes the agent's byte totals. A point is the mean rate over its interval,
 * so a transfer shorter than two intervals shows below its rate (spread over two points): once a
 * second, a 20 MiB file sent in 1.5 s peaked at about half its rate; four times a second, only
 * transfers shorter than half a second do.
 */
const SAMPLE_INTERVAL_MS = 250

/**
 * Rates since the sample before, of one agent. A new session (joined, new identity, "use here")
 * starts from its own zero when it starts (`start`), so its bytes before the next sample count
 * too; an agent this never saw start gets a baseline sample first (no rate).
 */
class AgentRates {
  private agent: SockAgent | undefined
  // A window of 1 ms: each rate is over the interval since the sample before, so the chart's
  // points integrate to the bytes that moved.
  private bytesIn = new RateMeter(1)
  private bytesOut = new RateMeter(1)
  private samples = 0

  /** `agent` started at `at` (ms, `performance.now()`), with no bytes moved yet. */
  start (agent: SockAgent, at: number): void {
    this.reset(agent)
    this.bytesIn.sample(0, at)
    this.bytesOut.sample(0, at)
    this.samples = 1
  }

  /** Take the totals of `agent` now; the rates since the last sample (`null`: a baseline, or no agent). */
  sample (agent: SockAgent | undefined, at: number): { in: number | null, out: number | null } {
    if (agent !== this.agent) this.reset(agent)
    if (agent === undefined) return { in: null, out: null }
    const s = agent.stats()
    const rates = { in: this.bytesIn.sample(s.bytesIn, at), out: this.bytesOut.sample(s.bytesOut, at) }
    return this.samples++ === 0 ? { in: null, out: null } : rates
  }

  private reset (agent: SockAgent | undefined): void {
    this.agent = agent
    this.bytesIn = new RateMeter(1)
    this.bytesOut = new RateMeter(1)
    this.samples = 0
  }
}

/** The chart (sampled every `SAMPLE_INTERVAL_MS` from the agent on show) and the server's figures (every 2 s). */
export function setupLive (ctx: PageContext, server: string, token: () => string | undefined): void {
  const chart = new ThroughputChart(byId('chart'), byId('rates'))
  const rates = new AgentRates()
  ctx.on('session', ({ agent }) => {
    // A point where the session starts, so the first rate is drawn over the interval it is over.
    const now = performance.now()
    rates.start(agent, now)
    chart.add({ at: performance.timeOrigin + now, in: null, out: null })
  })
  const tick = (): void => {
    const agent = ctx.agent?.isClosed === false ? ctx.agent : undefined
    // One clock for the time on the axis and the rates' intervals.
    const now = performance.now()
    chart.add({ at: performance.timeOrigin + now, ...rates.sample(agent, now) })
  }
  tick()
  setInterval(tick, SAMPLE_INTERVAL_MS)
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
