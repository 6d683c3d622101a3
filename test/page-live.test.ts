/**
 * The page's live view in real Chromium: the chart's series against bytes that really moved (an
 * HTTP response sent at a steady rate through a Node peer's connect and fetched by the page),
 * its axes and legend, and no CSP violation from the chart library.
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
/** 128 chunks of 64 KiB, one every 50 ms: 8 MiB at 1.25 MiB/s, for about 6.4 s. */
const BODY_BYTES = 128 * CHUNK_BYTES

/**
 * An HTTP server on 127.0.0.1 answering every request with `BODY_BYTES` bytes, one chunk every
 * `CHUNK_EVERY_MS`; `sent` says when the first and last chunks were written.
 */
async function steadyServer (): Promise<{ port: number, sent: Array<{ first: number, last: number, bytes: number }>, close: () => Promise<void> }> {
  const sent: Array<{ first: number, last: number, bytes: number }> = []
  const server = net.createServer((socket) => {
    socket.on('error', () => {})
    socket.once('data', () => {
      const head = `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${BODY_BYTES}\r\nConnection: close\r\n\r\n`
      socket.write(head)
      const record = { first: Date.now(), last: 0, bytes: head.length }
      const chunk = Buffer.alloc(CHUNK_BYTES, 7)
      let chunks = 0
      const timer = setInterval(() => {
        socket.write(chunk)
        record.bytes += chunk.byteLength
        if (++chunks < BODY_BYTES / CHUNK_BYTES) return
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

    const before = await seriesOf(page)
    await page.fill('#fetch-host', '127.0.0.1')
    await page.fill('#fetch-port', String(http.port))
    await page.click('#fetch-form button[type=submit]')
    await page.locator('#fetch-result[data-state="done"]').waitFor({ timeout: 60_000 })
    const sent = http.sent[0]
    if (sent === undefined) throw new Error('the steady server recorded no response')
    expect(await page.locator('#fetch-result').innerText()).toContain(`of ${sent.bytes} bytes are shown`)
    // Two more samples after the last byte, so the tail of the transfer is in the series.
    const lastAt = before.at.at(-1) ?? 0
    await page.waitForFunction((after) => {
      const s = JSON.parse(document.getElementById('chart')?.dataset.series ?? '{"at":[]}') as { at: number[] }
      return s.at.filter((t) => t > after).length >= 2
    }, Date.now() + 100, { timeout: 30_000 })
    const series = await seriesOf(page)
    const during: ChartSeries = { at: [], in: [], out: [] }
    series.at.forEach((t, i) => {
      if (t < lastAt) return
      during.at.push(t)
      during.in.push(series.in[i] ?? null)
      during.out.push(series.out[i] ?? null)
    })
    const moved = integrate(during, 'in')
    // Every byte the server sent crossed into the page, and the chart says so (the page's own
    // traffic meanwhile is a request head and the mux's small frames).
    expect(moved).toBeGreaterThanOrEqual(sent.bytes * 0.99)
    expect(moved).toBeLessThanOrEqual(sent.bytes * 1.01 + 16 * 1024)
    // The peak of the chart is the rate the bytes moved at, not half of it.
    const meanRate = (sent.bytes - CHUNK_BYTES) / ((sent.last - sent.first) / 1000)
    const peak = Math.max(...during.in.map((r) => r ?? 0))
    expect(peak).toBeGreaterThan(meanRate * 0.75)
    expect(peak).toBeLessThan(meanRate * 2)
    expect(await page.locator('#rates').innerText()).toMatch(/Highest in the last two minutes: [\d.]+ (KiB|MiB)\/s/)
    // The rate axis is in bytes per second, scaled to the figures.
    expect(await page.locator('#chart').getAttribute('data-rate-ticks')).toMatch(/(KiB|MiB)\/s/)
    expect(violations).toEqual([])
    mkdirSync(ARTIFACTS, { recursive: true })
    await page.locator('#throughput').screenshot({ path: `${ARTIFACTS}page-live.png` })
  }, 120_000)
})
