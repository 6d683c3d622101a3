/**
 * What many peers do at once costs the page a whole-list rebuild once a frame at most, never once
 * per event (real Chromium, real Node peers): a crowd joining and leaving together, and two peers
 * taking turns to chat while nobody is picked (each message switched the thread on show and rebuilt
 * up to 500 lines). Counted against the animation frames that passed, so the figure holds on a
 * slow machine: a rebuild per event froze the tab for seconds. And a peer's words stay its words:
 * bidi characters in chat shown inert, a file's name set apart in the prompt, offers too big for
 * the browser told in one row per peer.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { writeLine } from '../client/mux/lines.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import type { StarsockServer } from '../server/server.ts'
import { gotoJoined, launchChromium, openJoinedPage } from './helpers/browser.ts'
import { startServer, waitFor } from './helpers/server.ts'

/** In the page: count the whole rebuilds of `selector`'s children (records that remove and add at once) and the animation frames. */
async function countRebuilds (page: Page, selector: string): Promise<void> {
  await page.evaluate((sel) => {
    const w = window as unknown as { rebuilds: number, frames: number }
    w.rebuilds = 0
    w.frames = 0
    const tick = (): void => { w.frames++; requestAnimationFrame(tick) }
    requestAnimationFrame(tick)
    new MutationObserver((records) => {
      for (const r of records) if (r.removedNodes.length > 0 && r.addedNodes.length > 0) w.rebuilds++
    }).observe(document.querySelector(sel) as Element, { childList: true })
  }, selector)
}

async function counts (page: Page): Promise<{ rebuilds: number, frames: number }> {
  return await page.evaluate(() => {
    const w = window as unknown as { rebuilds: number, frames: number }
    return { rebuilds: w.rebuilds, frames: w.frames }
  })
}

describe('floods from peers rebuild the page at most once a frame (Chromium)', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  const contexts: BrowserContext[] = []
  const peers: StarsockPeer[] = []
  const agents: SockAgent[] = []

  beforeAll(async () => {
    server = await startServer({ maxJoinsPerIpPerMinute: 10_000 })
    browser = await launchChromium()
  }, 60_000)
  afterEach(async () => {
    for (const a of agents.splice(0)) await a.close()
    for (const p of peers.splice(0)) await p.close()
    for (const c of contexts.splice(0)) await c.close()
  })
  afterAll(async () => {
    await browser?.close()
    await server?.close()
  })

  const open = async (): Promise<{ page: Page, id: string }> => {
    const { page, id, context } = await openJoinedPage(browser, `${server.url()}/`)
    contexts.push(context)
    return { page, id }
  }

  it('200 peers joining and then leaving together: the peer list is made anew at most once a frame', async () => {
    const { page } = await open()
    await countRebuilds(page, '#peer-list')
    const crowd = await Promise.all(Array.from({ length: 200 }, async (_, i) => await createPeer({ server: server.url(), profile: { name: `crowd ${i}` } })))
    await page.waitForFunction(() => document.querySelectorAll('#peer-list li').length === 200, undefined, { timeout: 60_000 })
    await Promise.all(crowd.map(async (p) => await p.close()))
    await page.waitForFunction(() => document.querySelectorAll('#peer-list li').length === 0, undefined, { timeout: 60_000 })
    const { rebuilds, frames } = await counts(page)
    // One per event was 600 (a join's, and two per leave).
    expect(rebuilds).toBeLessThanOrEqual(frames + 2)
    expect(rebuilds).toBeLessThan(400)
  }, 120_000)

  it('a peer\'s words stay inert: a chat line\'s bidi override is not applied, a file name in a prompt is set apart, offers too big share one row', async () => {
    // A browser with 100 MiB of room (a full phone): only the estimate is replaced.
    const context = await browser.newContext()
    contexts.push(context)
    await context.addInitScript(() => { StorageManager.prototype.estimate = async () => ({ quota: 100 * 1024 * 1024, usage: 0 }) })
    const page = await context.newPage()
    const id = await gotoJoined(page, `${server.url()}/`)
    const agent = createSockAgent(await createPeer({ server: server.url(), profile: { name: 'words' } }), {})
    agents.push(agent)
    await waitFor('the peer to see the page', () => agent.peer.peers().some((p) => p.peerId === id), 15_000)
    const chat = await (await agent.session(id)).open({ type: 'chat', reliable: true })
    await writeLine(chat, { text: 'before \u202e gnp.exe \u202c after' })
    const shown = await page.locator('#messages li .text').first().textContent({ timeout: 10_000 })
    expect(shown).toBe('before \uFFFD gnp.exe \uFFFD after')
    // What right-to-left writing needs stays: directional marks, and a tab.
    await writeLine(chat, { text: 'שלום\u200f 1.5\tok' })
    await page.locator('#messages li .text').nth(1).waitFor({ timeout: 10_000 })
    expect(await page.locator('#messages li .text').nth(1).textContent()).toBe('שלום\u200f 1.5\tok')

    const ac = new AbortController()
    const offered = agent.offerFileAt(id, { name: 'holiday.jpg” (14 KiB) — sent by Alice', size: 1000, signal: ac.signal }).catch(() => undefined)
    const words = page.locator('#prompts .prompt q.their-words')
    await words.waitFor({ timeout: 15_000 })
    expect(await words.textContent()).toBe('holiday.jpg” (14 KiB) — sent by Alice')
    ac.abort()
    await offered

    for (let i = 0; i < 20; i++) {
      const code = await agent.offerFileAt(id, { name: 'big.bin', size: 200 * 1024 * 1024 }).then(() => 'granted', (err: { code?: string }) => err.code)
      expect(code).toBe('E_DENIED')
    }
    const rows = page.locator(`#transfers li[data-refused-from="${agent.peer.peerId}"]`)
    await page.waitForFunction((peer) => document.querySelector(`#transfers li[data-refused-from="${peer}"]`)?.getAttribute('data-count') === '20', agent.peer.peerId, { timeout: 10_000 })
    expect(await rows.count()).toBe(1)
    expect(await rows.textContent()).toMatch(/^Refused big\.bin \(200\.0 MiB\) from .*: this browser has room for 100\.0 MiB \(20 offers too big from this peer\)$/)
  }, 120_000)

  it('two peers taking turns to chat while nobody is picked: the thread is made anew at most once a frame, and shows the last message', async () => {
    const { page, id } = await open()
    const channels = []
    for (const name of ['one', 'two']) {
      const agent = createSockAgent(await createPeer({ server: server.url(), profile: { name } }), {})
      agents.push(agent)
      await waitFor('the peer to see the page', () => agent.peer.peers().some((p) => p.peerId === id), 15_000)
      channels.push(await (await agent.session(id)).open({ type: 'chat', reliable: true }))
    }
    const [one, two] = channels as [typeof channels[0], typeof channels[0]]
    for (let i = 0; i < 200; i++) {
      await writeLine(one, { text: `fill ${i}` })
      await writeLine(two, { text: `fill ${i}` })
    }
    await page.waitForFunction(() => document.querySelector('#messages li:last-child .text')?.textContent === 'fill 199', undefined, { timeout: 30_000 })
    await countRebuilds(page, '#messages')
    const turns = 400
    for (let i = 0; i < turns; i++) {
      await writeLine(one, { text: `a${i}` })
      await writeLine(two, { text: `b${i}` })
    }
    await page.waitForFunction((n) => document.querySelector('#messages li:last-child .text')?.textContent === `b${n - 1}`, turns, { timeout: 60_000 })
    const { rebuilds, frames } = await counts(page)
    // One per message was 800 rebuilds of 200 lines and more.
    expect(rebuilds).toBeLessThanOrEqual(frames + 2)
    expect(rebuilds).toBeLessThan(2 * turns)
  }, 120_000)
})
