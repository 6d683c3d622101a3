/**
 * Peers you recognise (issue 17), in real Chromium (and Firefox for the names): display names
 * set on the page and kept with the identity, kind icons, short ids, arrow-key navigation of the
 * list, a chat thread per peer with unread counts, and a notification while the page is hidden.
 */
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { writeLine } from '../client/mux/lines.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { createSockAgent } from '../client/sock/agent.ts'
import type { StarsockServer } from '../server/server.ts'
import { shortId } from '../web/dom.ts'
import { MAX_MESSAGE_CHARS } from '../web/threads.ts'
import { gotoJoined, launchChromium } from './helpers/browser.ts'
import { openInFirefox, type FirefoxPage } from './helpers/firefox.ts'
import { startServer, waitFor } from './helpers/server.ts'

const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url))

/**
 * Before the page's own scripts: record every `Notification` made and every permission asked,
 * and let the test say the page is hidden (`__setHidden`), as a tab in the background is.
 */
function recordNotifications (): void {
  const w = window as unknown as { __notes: Array<{ title: string, body?: string }>, __asked: number, __setHidden: (h: boolean) => void, Notification: typeof Notification }
  w.__notes = []
  w.__asked = 0
  const Original = w.Notification
  let hidden = false
  w.__setHidden = (h) => { hidden = h }
  Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => hidden ? 'hidden' : 'visible' })
  class Recorded {
    onclick: (() => void) | null = null
    constructor (title: string, options?: NotificationOptions) { w.__notes.push({ title, body: options?.body }) }
    close (): void {}
    static get permission (): NotificationPermission { return Original.permission }
    static async requestPermission (): Promise<NotificationPermission> { w.__asked++; return await Original.requestPermission() }
  }
  w.Notification = Recorded as unknown as typeof Notification
}

describe('peers you recognise, in real Chromium', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  let node: StarsockPeer
  const contexts: BrowserContext[] = []

  /** A page of its own, joined; `notify` grants the notification permission first. */
  const openPage = async (notify = false): Promise<{ page: Page, id: string }> => {
    const context = await browser.newContext({ viewport: { width: 1100, height: 760 }, colorScheme: 'light' })
    contexts.push(context)
    await context.addInitScript(recordNotifications)
    if (notify) await context.grantPermissions(['notifications'], { origin: server.url() })
    const page = await context.newPage()
    page.on('pageerror', (err) => { throw err })
    return { page, id: await gotoJoined(page, server.url() + '/') }
  }

  const setName = async (page: Page, name: string): Promise<void> => {
    await page.fill('#my-name', name)
    await page.press('#my-name', 'Enter')
    await page.locator('#name-result[data-state="done"]').waitFor({ timeout: 30_000 })
  }

  const row = (page: Page, peerId: string) => page.locator(`#peer-list li[data-peer="${peerId}"]`)

  const send = async (page: Page, to: string, text: string): Promise<void> => {
    await row(page, to).click({ timeout: 30_000 })
    await page.fill('#chat-text', text)
    await page.press('#chat-text', 'Enter')
    await page.locator('#messages li.mine', { hasText: text }).waitFor({ timeout: 30_000 })
  }

  beforeAll(async () => {
    server = await startServer()
    browser = await launchChromium()
    node = await createPeer({ server: server.url(), profile: { name: 'build box' } })
  }, 60_000)

  // Each test's pages leave with it: the next one's lists hold only its own peers.
  afterEach(async () => {
    for (const c of contexts.splice(0)) await c.close()
  })

  afterAll(async () => {
    for (const c of contexts) await c.close()
    await browser?.close()
    await node?.close()
    await server?.close()
  })

  it('two pages set names and see each other\'s with the browser icon and short id; a Node peer has the node icon; the name stays after a reload', async () => {
    await node.setProfile({ name: '<img src=x onerror="window.owned=1">' })
    const a = await openPage()
    const b = await openPage()
    await setName(a.page, 'Alice')
    await setName(b.page, 'Bob ✨')
    const bOnA = row(a.page, b.id)
    await bOnA.locator('.peer-name', { hasText: 'Bob ✨' }).waitFor({ timeout: 30_000 })
    expect(await bOnA.locator('.kind').getAttribute('data-kind')).toBe('browser')
    expect(await bOnA.locator('.kind').getAttribute('aria-label')).toBe('browser')
    expect(await bOnA.locator('.peer-short').innerText()).toBe(shortId(b.id))
    expect(await bOnA.getAttribute('title')).toBe(b.id)
    await row(b.page, a.id).locator('.peer-name', { hasText: 'Alice' }).waitFor({ timeout: 30_000 })
    // The Node peer: node icon, and its name shown as text, never as HTML.
    const nodeRow = row(a.page, node.peerId)
    await nodeRow.waitFor({ timeout: 30_000 })
    expect(await nodeRow.locator('.kind').getAttribute('data-kind')).toBe('node')
    expect(await nodeRow.locator('.peer-name').innerText()).toBe('<img src=x onerror="window.owned=1">')
    expect(await a.page.locator('#peer-list img').count()).toBe(0)
    expect(await a.page.evaluate(() => (window as unknown as { owned?: number }).owned)).toBeUndefined()
    // Others name the peer "name (short id)": the picked line says so.
    await bOnA.click()
    expect(await a.page.locator('#picked').innerText()).toContain(`Picked Bob ✨ (${shortId(b.id)})`)
    // Kept with the identity: a reload joins with the same name, and the other page still shows it.
    await a.page.reload()
    await a.page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    expect(await a.page.locator('#my-name').inputValue()).toBe('Alice')
    await row(b.page, a.id).locator('.peer-name', { hasText: 'Alice' }).waitFor({ timeout: 30_000 })
    // A bad name is refused on the page, in words, styled as an error; the name others see stays.
    await a.page.fill('#my-name', 'x'.repeat(41))
    await a.page.press('#my-name', 'Enter')
    await a.page.locator('#name-result[data-state="failed"]', { hasText: 'longer than 40 characters' }).waitFor({ timeout: 10_000 })
    expect(await row(b.page, a.id).locator('.peer-name').innerText()).toBe('Alice')
    // A kept name that a rule now refuses (here one that reads as a peer id) is not used, and the page says so.
    await a.page.evaluate(([key, bad]) => { localStorage.setItem(key as string, bad as string) }, [`starsock:name:${a.id}`, 'Alice (12D3…2X7X8k)'])
    await a.page.reload()
    await a.page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    await a.page.locator('#name-result[data-state="failed"]', { hasText: 'Your saved name "Alice (12D3…2X7X8k)" is not used: name holds text that reads as a peer id' }).waitFor({ timeout: 10_000 })
    expect(await a.page.locator('#my-name').inputValue()).toBe('')
    await row(b.page, a.id).locator('.peer-name').waitFor({ state: 'detached', timeout: 30_000 })
    // Nobody was asked for notification permission on load.
    expect(await a.page.evaluate(() => (window as unknown as { __asked: number }).__asked)).toBe(0)
  }, 120_000)

  it('arrow keys move through the list (Up, Down, Home, End) and Enter picks; one row takes Tab', async () => {
    const a = await openPage()
    const b = await openPage()
    await row(a.page, b.id).waitFor({ timeout: 30_000 })
    await row(a.page, node.peerId).waitFor({ timeout: 30_000 })
    const ids = await a.page.locator('#peer-list li').evaluateAll((items) => items.map((i) => (i as HTMLElement).dataset.peer ?? ''))
    expect(ids.length).toBeGreaterThanOrEqual(2)
    const focused = async (): Promise<string | undefined> => await a.page.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.peer)
    expect(await a.page.locator('#peer-list li[tabindex="0"]').count()).toBe(1)
    await a.page.locator('#peer-list li[tabindex="0"]').focus()
    expect(await focused()).toBe(ids[0])
    await a.page.keyboard.press('ArrowDown')
    expect(await focused()).toBe(ids[1])
    await a.page.keyboard.press('End')
    expect(await focused()).toBe(ids[ids.length - 1])
    await a.page.keyboard.press('Home')
    expect(await focused()).toBe(ids[0])
    await a.page.keyboard.press('ArrowUp') // stays at the first
    expect(await focused()).toBe(ids[0])
    await a.page.keyboard.press('ArrowDown')
    await a.page.keyboard.press('Enter')
    expect(await row(a.page, ids[1] as string).getAttribute('aria-selected')).toBe('true')
    expect(await a.page.locator('#peer-list li[aria-selected="true"]').count()).toBe(1)
    expect(await a.page.locator('#peer-list li[tabindex="0"]').getAttribute('data-peer')).toBe(ids[1])
    await a.page.keyboard.press('ArrowUp')
    await a.page.keyboard.press(' ')
    expect(await row(a.page, ids[0] as string).getAttribute('aria-selected')).toBe('true')
    // Tab leaves the list and Shift+Tab comes back to the row last on.
    await a.page.keyboard.press('Tab')
    expect(await focused()).toBeUndefined()
    await a.page.keyboard.press('Shift+Tab')
    expect(await focused()).toBe(ids[0])
  }, 120_000)

  it('keeps a thread per peer: each holds only its peer\'s messages; unread counts rise and clear', async () => {
    const a = await openPage()
    const b = await openPage()
    const c = await openPage()
    await setName(a.page, 'Alice')
    await setName(b.page, 'Bob')
    await setName(c.page, 'Chloé')
    await send(a.page, b.id, 'A to B')
    await b.page.locator('#messages li.theirs', { hasText: 'A to B' }).waitFor({ timeout: 30_000 })
    await send(b.page, a.id, 'B to A')
    await a.page.locator('#messages li.theirs', { hasText: 'B to A' }).waitFor({ timeout: 30_000 })
    // C writes while A has B's thread on show: counted unread on C's row, not shown.
    await send(c.page, a.id, 'C to A, one')
    await send(c.page, a.id, 'C to A, two')
    const cOnA = row(a.page, c.id)
    await cOnA.locator('.unread[data-count="2"]').waitFor({ timeout: 30_000 })
    expect(await cOnA.locator('.unread').textContent()).toBe('2 unread')
    expect(await a.page.locator('#messages').innerText()).not.toContain('C to A')
    // A rename shows live (peer:profile). Then the picture of it for docs/page.md: names, kinds,
    // short ids, badges, an unread count, a thread.
    await node.setProfile({ name: 'build box' })
    await row(a.page, node.peerId).locator('.peer-name', { hasText: 'build box' }).waitFor({ timeout: 30_000 })
    await row(a.page, c.id).locator('.peer-name', { hasText: 'Chloé' }).waitFor({ timeout: 30_000 })
    mkdirSync(ARTIFACTS, { recursive: true })
    await a.page.screenshot({ path: `${ARTIFACTS}page-peers.png` })
    // Picking C shows its thread, only its, and clears its count.
    await cOnA.click()
    await a.page.locator('#messages li.theirs', { hasText: 'C to A, two' }).waitFor({ timeout: 10_000 })
    const cThread = await a.page.locator('#messages').innerText()
    expect(cThread).toContain('C to A, one')
    expect(cThread).not.toContain('A to B')
    expect(cThread).not.toContain('B to A')
    expect(await cOnA.locator('.unread').count()).toBe(0)
    // B's thread is as it was, and B, on show before, has no count.
    await row(a.page, b.id).click()
    const bThread = await a.page.locator('#messages').innerText()
    expect(bThread).toContain('A to B')
    expect(bThread).toContain('B to A')
    expect(bThread).not.toContain('C to A')
    expect(await row(a.page, b.id).locator('.unread').count()).toBe(0)
  }, 120_000)

  it('bounds what a peer writes: a flood keeps the last 500 lines of its thread, a huge message is cut, as text', async () => {
    const a = await openPage()
    await row(a.page, node.peerId).waitFor({ timeout: 30_000 })
    const agent = createSockAgent(node, {})
    try {
      const mux = await agent.session(a.id)
      const channel = await mux.open({ type: 'chat', reliable: true })
      await writeLine(channel, { text: `<b>${'z'.repeat(60_000)}</b>` })
      const big = a.page.locator('#messages li.theirs .text').first()
      await big.waitFor({ timeout: 30_000 })
      expect(await big.innerText()).toBe(`<b>${'z'.repeat(3997)}`) // cut at 4000 characters, shown as text
      for (let i = 0; i < 600; i++) await writeLine(channel, { text: `flood ${i}` })
      // Nothing picked: the thread of the peer who wrote is on show.
      await a.page.locator('#messages li.theirs', { hasText: 'flood 599' }).waitFor({ timeout: 60_000 })
      expect(await a.page.locator('#messages li').count()).toBe(500)
      expect(await a.page.locator('#messages li').first().locator('.text').innerText()).toBe('flood 100')
      expect(await a.page.locator('#messages b').count()).toBe(0)
      await a.page.locator('#peer-list li').first().focus() // still usable
    } finally {
      await agent.close()
    }
  }, 120_000)

  it('keeps a message too long to send in the field and says so; nothing goes, and the next one does', async () => {
    const a = await openPage()
    const b = await openPage()
    await row(a.page, b.id).click({ timeout: 30_000 })
    const long = 'x'.repeat(MAX_MESSAGE_CHARS + 1)
    await a.page.fill('#chat-text', long)
    await a.page.press('#chat-text', 'Enter')
    await a.page.locator('#messages li.note', { hasText: `at most ${MAX_MESSAGE_CHARS}` }).waitFor({ timeout: 30_000 })
    expect(await a.page.inputValue('#chat-text')).toBe(long)
    await send(a.page, b.id, 'the short one')
    await b.page.locator('#messages li.theirs', { hasText: 'the short one' }).waitFor({ timeout: 30_000 })
    expect(await b.page.locator('#messages li.theirs').count()).toBe(1)
  }, 120_000)

  it('shows a notification naming the peer while the page is hidden, with the first 100 characters, rate-limited; none while visible', async () => {
    const a = await openPage(true)
    const b = await openPage()
    await setName(b.page, 'Bob')
    // Permission is granted already: the button says so and asks nothing.
    expect(await a.page.locator('#notify').isDisabled()).toBe(true)
    expect(await a.page.locator('#notify-status').innerText()).toContain('show a notification')
    const notes = async (): Promise<Array<{ title: string, body?: string }>> => await a.page.evaluate(() => (window as unknown as { __notes: Array<{ title: string, body?: string }> }).__notes)
    await send(b.page, a.id, 'while visible')
    await a.page.locator('#messages li.theirs', { hasText: 'while visible' }).waitFor({ timeout: 30_000 })
    expect(await notes()).toEqual([])

    await a.page.evaluate(() => { (window as unknown as { __setHidden: (h: boolean) => void }).__setHidden(true) })
    const long = 'L'.repeat(150)
    await b.page.fill('#chat-text', long)
    await b.page.press('#chat-text', 'Enter')
    await a.page.waitForFunction(() => (window as unknown as { __notes: unknown[] }).__notes.length === 1, undefined, { timeout: 30_000 })
    expect(await notes()).toEqual([{ title: `Message from Bob (${shortId(b.id)})`, body: `${'L'.repeat(100)}…` }])
    // A flood shows at most three in the window, whatever comes.
    for (let i = 0; i < 6; i++) {
      await b.page.fill('#chat-text', `flood ${i}`)
      await b.page.press('#chat-text', 'Enter')
    }
    await a.page.locator('#messages li.theirs', { hasText: 'flood 5' }).waitFor({ timeout: 30_000 })
    expect((await notes()).length).toBe(3)
  }, 120_000)
})

describe('peers you recognise, in Firefox', () => {
  let server: StarsockServer & { port: number }
  let node: StarsockPeer
  let page: FirefoxPage | undefined

  beforeAll(async () => {
    server = await startServer()
    node = await createPeer({ server: server.url(), profile: { name: 'Node in Firefox' } })
  })
  afterAll(async () => {
    await page?.close()
    await node?.close()
    await server?.close()
  })

  it('shows the Node peer\'s name and kind, and takes a name the Node peer then sees', async () => {
    page = await openInFirefox(server.url() + '/')
    const p = page
    const nameShown = `document.querySelector('#peer-list li[data-peer="${node.peerId}"] .peer-name')?.textContent ?? ''`
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      if (await p.evaluate(nameShown) === 'Node in Firefox') break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    expect(await p.evaluate(nameShown)).toBe('Node in Firefox')
    expect(await p.evaluate(`document.querySelector('#peer-list li[data-peer="${node.peerId}"] .kind').dataset.kind`)).toBe('node')
    const id = String(await p.evaluate("document.getElementById('my-id').textContent"))
    await p.evaluate("document.getElementById('my-name').value = 'Fox'; document.getElementById('name-form').requestSubmit()")
    await waitFor('the Node peer to see the Firefox page\'s name', () => node.peers().some((i) => i.peerId === id && i.name === 'Fox' && i.kind === 'browser'), 30_000)
  }, 90_000)
})
