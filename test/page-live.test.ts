/**
 * The page's live view in real Chromium: the chart's series against bytes that really moved (an
 * HTTP response sent at a steady rate through a Node peer's connect and fetched by the page),
 * its axes (wall-clock time, bytes per second) and legend, the mappings row's rate, and no CSP
 * violation from the chart library.
 */
import { mkdirSync } from 'node:fs'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import type { StarsockServer } from '../server/server.ts'
import { launchChromium, openJoinedPage } from './helpers/browser.ts'
import { startServer } from './helpers/server.ts'

const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url))

/** The chart's series as the page puts it on `#chart`. */
interface ChartSeries { at: number[], in: Array<number | null>, out: Array<number | null> }

const CHUNK_BYTES = 64 * 1024
const CHUNK_EVERY_MS = 50
/** `GET /chunks/N`: N chunks of 64 KiB, one every 50 ms, at 1.25 MiB/s (128: 8 MiB for 6.4 s). */
const MAX_CHUNKS = 1024

/**
 * An HTTP server on 127.0.0.1 answering `GET /chunks/N` with N chunks of `CHUNK_BYTES`, one every
 * `CHUNK_EVERY_MS`; `sent` says when the first and last chunks were written.
 */
async function steadyServer (): Promise<{ port: number, sent: Array<{ first: number, last: number, bytes: number }>, close: () => Promise<void> }> {
  const sent: Array<{ first: number, last: number, bytes: number }> = []
  const server = net.createServer((socket) => {
    socket.on('error', () => {})
    socket.once('data', (request: Buffer) => {
      const total = Math.min(MAX_CHUNKS, Number(/^GET \/chunks\/(\d+)/.exec(request.toString('latin1'))?.[1] ?? 1))
      const head = `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total * CHUNK_BYTES}\r\nConnection: close\r\n\r\n`
      socket.write(head)
      const record = { first: Date.now(), last: 0, bytes: head.length }
      const chunk = Buffer.alloc(CHUNK_BYTES, 7)
      let chunks = 0
      const timer = setInterval(() => {
        socket.write(chunk)
        record.bytes += chunk.byteLength
        if (++chunks < total) return
        clearInterval(timer)
        record.last = Date.now()
        sent.push(record)
        socket.end()
      }, CHUNK_EVERY_MS)
      socket.on('close', () => clearInterval(timer))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    sent,
    close: async () => await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/** The chart's series now. */
async function seriesOf (page: Page): Promise<ChartSeries> {
  return JSON.parse(await page.locator('#chart').getAttribute('data-series') ?? '{"at":[],"in":[],"out":[]}') as ChartSeries
}

/** Bytes the points of `rates` stand for: each is the mean rate over the interval since the point before. */
function integrate (series: ChartSeries, key: 'in' | 'out'): number {
  let bytes = 0
  for (let i = 1; i < series.at.length; i++) {
    const rate = series[key][i]
    if (rate !== null && rate !== undefined) bytes += rate * ((series.at[i] as number) - (series.at[i - 1] as number)) / 1000
  }
  return bytes
}

describe('the live view in real Chromium', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  let node: SockAgent
  let http: Awaited<ReturnType<typeof steadyServer>>
  const contexts: BrowserContext[] = []

  beforeAll(async () => {
    server = await startServer()
    browser = await launchChromium()
    http = await steadyServer()
    node = createSockAgent(await createPeer({ server: server.url() }), { host: createNodeHost(), allow: [`connect/tcp:127.0.0.1:${http.port}`] })
  }, 60_000)

  afterAll(async () => {
    await node?.close()
    await node?.peer.close()
    for (const c of contexts) await c.close()
    await browser?.close()
    await http?.close()
    await server?.close()
  })

  /**
   * Fetch `chunks` chunks from the steady server through the Node peer in `page`, and wait for two
   * samples after the end; settles with what the server sent and the chart's series meanwhile.
   */
  const fetchSteady = async (page: Page, chunks: number): Promise<{ sent: { first: number, last: number, bytes: number }, during: ChartSeries, meanRate: number }> => {
    const before = await seriesOf(page)
    const count = http.sent.length
    await page.fill('#fetch-host', '127.0.0.1')
    await page.fill('#fetch-port', String(http.port))
    await page.fill('#fetch-path', `/chunks/${chunks}`)
    await page.click('#fetch-form button[type=submit]')
    await page.locator('#fetch-result[data-state="done"]').waitFor({ timeout: 60_000 })
    const sent = http.sent[count]
    if (sent === undefined) throw new Error('the steady server recorded no response')
    expect(await page.locator('#fetch-result').innerText()).toContain(`of ${sent.bytes} bytes are shown`)
    // Two more samples after the last byte, so the tail of the transfer is in the series.
    await page.waitForFunction((after) => {
      const s = JSON.parse(document.getElementById('chart')?.dataset.series ?? '{"at":[]}') as { at: number[] }
      return s.at.filter((t) => t > after).length >= 2
    }, Date.now() + 100, { timeout: 30_000 })
    const series = await seriesOf(page)
    const from = before.at.at(-1) ?? 0
    const during: ChartSeries = { at: [], in: [], out: [] }
    series.at.forEach((t, i) => {
      if (t < from) return
      during.at.push(t)
      during.in.push(series.in[i] ?? null)
      during.out.push(series.out[i] ?? null)
    })
    // The rate the chunks after the first went at: one every CHUNK_EVERY_MS.
    return { sent, during, meanRate: (sent.bytes - CHUNK_BYTES) / ((sent.last - sent.first) / 1000) }
  }

  it('the chart\'s series integrates to the bytes fetched through a Node peer, and its peak is the rate they moved at', async () => {
    const { page, context } = await openJoinedPage(browser, server.url() + '/')
    contexts.push(context)
    const violations: string[] = []
    page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()) })
    await page.locator(`#peer-list li[data-peer="${node.peer.peerId}"]`).click({ timeout: 30_000 })
    // Axes with units and a legend naming both series.
    await page.locator('#chart .u-legend').waitFor({ timeout: 10_000 })
    expect(await page.locator('#chart .u-legend .u-series .u-label').allInnerTexts()).toEqual(expect.arrayContaining(['in', 'out']))
    expect(await page.locator('#chart .u-axis').count()).toBe(2)

    // 8 MiB over 6.4 s.
    const steady = await fetchSteady(page, 128)
    const moved = integrate(steady.during, 'in')
    // Every byte the server sent crossed into the page, and the chart says so (the page's own
    // traffic meanwhile is a request head and the mux's small frames).
    expect(moved).toBeGreaterThanOrEqual(steady.sent.bytes * 0.99)
    expect(moved).toBeLessThanOrEqual(steady.sent.bytes * 1.01 + 16 * 1024)
    // The peak of the chart is the rate the bytes moved at, not half of it.
    const peak = Math.max(...steady.during.in.map((r) => r ?? 0))
    // (Not above it by much either on average, which the integral checks: a quarter-second point
    // may well be above it, when the page took chunks in a clump.)
    expect(peak).toBeGreaterThan(steady.meanRate * 0.75)
    expect(await page.locator('#rates').innerText()).toMatch(/Highest in the last two minutes: [\d.]+ (KiB|MiB)\/s/)
    // The rate axis is in bytes per second, scaled to the figures.
    expect(await page.locator('#chart').getAttribute('data-rate-ticks')).toMatch(/(KiB|MiB)\/s/)
    // The time axis and the legend's time are wall-clock HH:MM:SS, not uPlot's `:54.000 :54.500`.
    const timeTicks = (await page.locator('#chart').getAttribute('data-time-ticks') ?? '').split(', ')
    expect(timeTicks.length).toBeGreaterThan(0)
    for (const label of timeTicks) expect(label).toMatch(/^\d{2}:\d{2}:\d{2}$/)
    const legendTime = page.locator('#chart .u-legend .u-series').first().locator('.u-value')
    expect(await legendTime.innerText()).toMatch(/^\d{2}:\d{2}:\d{2}$/)
    const plot = await page.locator('#chart .u-over').boundingBox()
    if (plot === null) throw new Error('the chart has no plot area')
    await page.mouse.move(plot.x + plot.width * 0.9, plot.y + plot.height / 2)
    expect(await legendTime.innerText()).toMatch(/^\d{2}:\d{2}:\d{2}$/)
    expect(violations).toEqual([])
    mkdirSync(ARTIFACTS, { recursive: true })
    await page.locator('#throughput').screenshot({ path: `${ARTIFACTS}page-live.png` })

    // A burst shorter than a second (1 MiB over 0.8 s) peaks at its rate too: sampled once a
    // second, it fell across two samples and showed as little as half its rate (0.55-0.68x).
    const burst = await fetchSteady(page, 16)
    expect(integrate(burst.during, 'in')).toBeGreaterThanOrEqual(burst.sent.bytes * 0.99)
    expect(integrate(burst.during, 'in')).toBeLessThanOrEqual(burst.sent.bytes * 1.01 + 16 * 1024)
    const burstPeak = Math.max(...burst.during.in.map((r) => r ?? 0))
    expect(burstPeak).toBeGreaterThan(burst.meanRate * 0.75)
  }, 120_000)
  it('the mappings row\'s rate is the rate the bytes move at while they flow through the page\'s connect', async () => {
    const { page, context } = await openJoinedPage(browser, server.url() + '/')
    contexts.push(context)
    await page.locator(`#peer-list li[data-peer="${node.peer.peerId}"]`).click({ timeout: 30_000 })
    // Every 100 ms, the rate the row of the page's connect mapping shows (`data-rate-in`), and when.
    await page.evaluate((peer) => {
      const w = window as unknown as { rowRates: Array<{ at: number, rate: number }> }
      w.rowRates = []
      setInterval(() => {
        const rate = document.querySelector<HTMLElement>(`#mappings tbody tr[data-direction="asked"][data-peer="${peer}"]`)?.dataset.rateIn
        if (rate !== undefined) w.rowRates.push({ at: Date.now(), rate: Number(rate) })
      }, 100)
    }, node.peer.peerId)
    // 6 MiB over 4.8 s at 1.25 MiB/s.
    const { sent, meanRate } = await fetchSteady(page, 96)
    const rowRates = await page.evaluate(() => (window as unknown as { rowRates: Array<{ at: number, rate: number }> }).rowRates)
    // While it runs: from 2.5 s in (the row's rate is over the last two seconds) to the last chunk.
    const during = rowRates.filter((r) => r.at >= sent.first + 2500 && r.at <= sent.last)
    expect(during.length, 'samples of the row\'s rate while the bytes flowed').toBeGreaterThanOrEqual(10)
    for (const r of during) {
      expect(r.rate, `the row's rate ${r.rate} B/s at ${r.at - sent.first} ms against ${Math.round(meanRate)} B/s moved`).toBeGreaterThan(meanRate * 0.6)
      expect(r.rate, `the row's rate ${r.rate} B/s at ${r.at - sent.first} ms against ${Math.round(meanRate)} B/s moved`).toBeLessThan(meanRate * 1.5)
    }
  }, 120_000)
})
