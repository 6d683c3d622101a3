/**
 * One identity, one place on the page, in real Chromium: two tabs of one browser profile share an
 * identity (IndexedDB); the second sees the first before joining, "use here" moves the identity
 * (the first tab shows it was displaced), and "new identity" gives a tab its own.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { StarsockServer } from '../server/server.ts'
import { launchChromium } from './helpers/browser.ts'
import { startServer, waitFor } from './helpers/server.ts'

async function peerIdOf (page: Page): Promise<string> {
  await page.waitForFunction(() => /^[1-9A-Za-z]{40,}$/.test(document.getElementById('my-id')?.textContent ?? ''), undefined, { timeout: 20_000 })
  return await page.locator('#my-id').innerText()
}

async function stateOf (page: Page, state: string): Promise<void> {
  await page.locator(`#state[data-state="${state}"]`).waitFor({ timeout: 15_000 })
}

describe('the page with one identity in two tabs (Chromium)', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  let context: BrowserContext

  beforeAll(async () => {
    server = await startServer()
    browser = await launchChromium()
    context = await browser.newContext()
  }, 60_000)

  afterAll(async () => {
    await context?.close()
    await browser?.close()
    await server?.close()
  })

  it('the second tab sees the first before joining; "use here" moves the identity; "new identity" gives a tab its own', async () => {
    const a = await context.newPage()
    a.on('pageerror', (err) => { throw err })
    await a.goto(server.url() + '/')
    const id = await peerIdOf(a)
    await stateOf(a, 'joined')

    const b = await context.newPage()
    b.on('pageerror', (err) => { throw err })
    await b.goto(server.url() + '/')
    await stateOf(b, 'in-use')
    expect(await peerIdOf(b)).toBe(id)
    expect(await b.locator('#conflict-text').innerText()).toContain('in use in another tab')
    // It never joined: the server has one peer, and the first tab is still joined.
    expect(server.stats().peers).toBe(1)
    expect(server.stats().sockets).toBe(1)
    await stateOf(a, 'joined')

    // Every state tab A shows from now on.
    await a.evaluate(() => {
      const w = window as unknown as { shownStates: string[] }
      w.shownStates = []
      const state = document.getElementById('state') as HTMLElement
      new MutationObserver(() => { w.shownStates.push(state.dataset.state ?? '') }).observe(state, { attributes: true, attributeFilter: ['data-state'] })
    })
    expect(await b.locator('#use-here').innerText()).toBe('Use here instead')
    await b.click('#use-here')
    await stateOf(b, 'joined')
    await stateOf(a, 'displaced')
    // The first tab says displaced and stays so: never "joined" again by itself, nothing of the old
    // session on show, and what needs a session is off and says why.
    await new Promise((resolve) => setTimeout(resolve, 3000))
    expect(await a.evaluate(() => (window as unknown as { shownStates: string[] }).shownStates)).toEqual(['displaced'])
    expect(await a.locator('#peer-list li').count()).toBe(0)
    expect(await a.locator('#chat-form button[type=submit]').isDisabled()).toBe(true)
    expect(await a.locator('#chat-form-needs').innerText()).toBe('Not joined to the server yet')
    expect(await a.locator('#identity-conflict').isVisible()).toBe(true)
    expect(await a.locator('#conflict-text').innerText()).toMatch(/now used in another tab or program \(another client took this peer id over from 127\.0\.0\.1:\d+\)/)
    await waitFor('one peer and one socket on the server', () => server.stats().peers === 1 && server.stats().sockets === 1)

    // The displaced tab takes it back the same way.
    await a.click('#use-here')
    await stateOf(a, 'joined')
    await stateOf(b, 'displaced')

    // The displaced tab takes a new identity of its own; both are online.
    await b.click('#conflict-new-identity')
    await stateOf(b, 'joined')
    const other = await peerIdOf(b)
    expect(other).not.toBe(id)
    expect(new URL(b.url()).searchParams.get('slot')).toMatch(/^tab-/)
    await waitFor('two peers on the server', () => server.stats().peers === 2)
    await stateOf(a, 'joined')
    expect(await a.locator('#my-id').innerText()).toBe(id)
    // A reload keeps each tab's identity, and neither is in use by the other.
    await b.reload()
    await stateOf(b, 'joined')
    expect(await peerIdOf(b)).toBe(other)
  }, 90_000)

  it('a tab displaced while the person types keeps their focus: Enter there never takes the identity back', async () => {
    const own = await browser.newContext()
    try {
      const a = await own.newPage()
      a.on('pageerror', (err) => { throw err })
      await a.goto(server.url() + '/?slot=typing')
      await stateOf(a, 'joined')
      await a.fill('#chat-text', 'half a message')
      await a.focus('#chat-text')

      const b = await own.newPage()
      b.on('pageerror', (err) => { throw err })
      await b.goto(server.url() + '/?slot=typing')
      await stateOf(b, 'in-use')
      await b.click('#use-here')
      await stateOf(b, 'joined')
      await stateOf(a, 'displaced')
      // Focus stays where the person was typing (as with an offer, `prompt.ts`): not on "Use here".
      expect(await a.evaluate(() => document.activeElement?.id)).toBe('chat-text')
      await a.keyboard.press('Enter')
      await new Promise((resolve) => setTimeout(resolve, 3000))
      await stateOf(a, 'displaced')
      await stateOf(b, 'joined')
      expect(await a.inputValue('#chat-text')).toBe('half a message')
    } finally {
      await own.close()
    }
  }, 90_000)

  it('without Web Locks (a page on a plain-http LAN address), the server\'s refusal still tells the second tab, and "use here instead" still moves the identity', async () => {
    const bare = await browser.newContext()
    try {
      // What a page on http://192.168.x.y:9090/ gets: no navigator.locks outside a secure context.
      await bare.addInitScript(() => { Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined, configurable: true }) })
      const a = await bare.newPage()
      a.on('pageerror', (err) => { throw err })
      await a.goto(server.url() + '/?slot=nolocks')
      const id = await peerIdOf(a)
      await stateOf(a, 'joined')
      expect(await a.evaluate(() => (navigator as Navigator & { locks?: unknown }).locks)).toBeUndefined()
      const b = await bare.newPage()
      b.on('pageerror', (err) => { throw err })
      await b.goto(server.url() + '/?slot=nolocks')
      await stateOf(b, 'in-use')
      expect(await peerIdOf(b)).toBe(id)
      expect(await b.locator('#conflict-text').innerText()).toContain('in use elsewhere')
      await stateOf(a, 'joined')
      await b.click('#use-here')
      await stateOf(b, 'joined')
      await stateOf(a, 'displaced')
    } finally {
      await bare.close()
    }
  }, 90_000)
})
