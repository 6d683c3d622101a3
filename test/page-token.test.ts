/**
 * The page on a server started with a token, in real Chromium (and once in Firefox): a page
 * without one is asked for it, a wrong one is refused in words (an error state) and asked again,
 * the right one joins; `#token=` in the link joins at once and leaves the address bar; the token
 * is kept for the tab only (session storage), never in the address bar or local storage.
 * (`test/http-static.test.ts` checks the figures behind the token, `?token=`, and a new identity
 * while asked.)
 */
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServer, type StarsockServer } from '../server/server.ts'
import { launchChromium } from './helpers/browser.ts'
import { openInFirefox, type FirefoxPage } from './helpers/firefox.ts'
import { startServer } from './helpers/server.ts'

/** A base64 token: `+` and `/` as typed. */
const TOKEN = 'tok+en/s3cret-0123456789=='

/** Everything the page keeps where it outlives the tab or shows: local storage, cookies, the address. */
async function lastingPlaces (page: Page): Promise<string> {
  return await page.evaluate(() => JSON.stringify({ local: { ...localStorage }, cookie: document.cookie, href: location.href, decoded: decodeURIComponent(location.href) }))
}

/** Whether `selector`'s text has the page's error colour (`--bad`). */
async function isErrorColoured (page: Page, selector: string): Promise<boolean> {
  return await page.evaluate((sel) => {
    const probe = document.createElement('span')
    probe.style.color = 'var(--bad)'
    document.body.append(probe)
    const bad = getComputedStyle(probe).color
    probe.remove()
    return getComputedStyle(document.querySelector(sel) as Element).color === bad
  }, selector)
}

describe('the page on a server with a token (Chromium)', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  beforeAll(async () => { server = await startServer({ token: TOKEN }); browser = await launchChromium() }, 60_000)
  afterAll(async () => { await browser?.close(); await server?.close() })

  const newPage = async (): Promise<Page> => {
    const page = await (await browser.newContext()).newPage()
    page.on('pageerror', (err) => { throw err })
    return page
  }

  it('asks for the token; a wrong one is refused in words and asked again; the right one joins, kept in session storage only', async () => {
    const page = await newPage()
    await page.goto(`${server.url()}/`)
    const form = page.locator('#token-form')
    await form.waitFor({ state: 'visible', timeout: 30_000 })
    expect(await page.locator('#token-text').innerText()).toContain('This server needs a token')
    expect(await page.locator('#state').getAttribute('data-state')).toBe('refused')
    expect(await form.getAttribute('data-state')).toBeNull() // a question, not yet an error
    // The field has a name a screen reader says, and has the focus.
    await page.getByRole('textbox', { name: 'Token' }).waitFor({ timeout: 5000 })
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('token-input')
    expect(server.stats().peers).toBe(0)

    await page.fill('#token-input', 'not-the-token')
    await page.press('#token-input', 'Enter')
    await page.locator('#token-form[data-state="failed"]').waitFor({ state: 'visible', timeout: 30_000 })
    expect(await page.locator('#token-text').innerText()).toContain('This server refused the token')
    expect(await page.locator('#state').innerText()).toBe('token refused')
    expect(await page.locator('#state').getAttribute('data-state')).toBe('refused')
    expect(await page.inputValue('#token-input')).toBe('') // asked again, afresh
    expect(await isErrorColoured(page, '#state'), 'the state is shown as an error').toBe(true)
    expect(server.stats().peers).toBe(0)

    await page.fill('#token-input', TOKEN)
    await page.click('#token-form button[type=submit]')
    await page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    expect(await form.isHidden()).toBe(true)
    expect(server.stats().peers).toBe(1)
    expect(await lastingPlaces(page)).not.toContain('s3cret')
    expect(await page.inputValue('#token-input')).toBe('') // not left in the page once used
    expect(await page.evaluate(() => document.documentElement.outerHTML + document.body.innerText)).not.toContain('s3cret')
    expect(await page.evaluate(() => Object.values({ ...sessionStorage }))).toContain(TOKEN)
  }, 120_000)

  it('#token= in the link joins at once and leaves the address bar; a wrong one in the link is refused and asked for', async () => {
    const page = await newPage()
    await page.goto(`${server.url()}/?slot=link#token=${TOKEN}`)
    await page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    expect(page.url()).toBe(`${server.url()}/?slot=link`)
    expect(await page.locator('#token-form').isHidden()).toBe(true)
    expect(await lastingPlaces(page)).not.toContain('s3cret')

    const wrong = await newPage()
    await wrong.goto(`${server.url()}/#token=wrong-s3cret`)
    await wrong.locator('#token-form[data-state="failed"]').waitFor({ state: 'visible', timeout: 30_000 })
    expect(await wrong.locator('#token-text').innerText()).toContain('refused the token')
    expect(wrong.url()).toBe(`${server.url()}/`)
    expect(await lastingPlaces(wrong)).not.toContain('s3cret')
  }, 120_000)
})

describe('a token refused on a reconnect (Chromium)', () => {
  it('asks for the token again without taking the focus from the message being typed', async () => {
    let first: (StarsockServer & { port: number }) | undefined = await startServer({ token: TOKEN })
    const port = first.port
    const browser = await launchChromium()
    let second: StarsockServer | undefined
    try {
      const page = await (await browser.newContext()).newPage()
      page.on('pageerror', (err) => { throw err })
      await page.goto(`${first.url()}/#token=${TOKEN}`)
      await page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
      await page.fill('#chat-text', 'half a message')
      await page.focus('#chat-text')
      // The server comes back on the same port with another token.
      await first.close()
      first = undefined
      second = createServer({ shutdownGraceMs: 0, token: 'another-token' })
      await second.listen(port, '127.0.0.1')
      await page.locator('#token-form[data-state="failed"]').waitFor({ state: 'visible', timeout: 60_000 })
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('chat-text')
      expect(await page.inputValue('#chat-text')).toBe('half a message')
    } finally {
      await browser.close()
      await first?.close()
      await second?.close()
    }
  }, 120_000)
})

describe('the page on a server with a token (Firefox)', () => {
  let server: StarsockServer & { port: number }
  let page: FirefoxPage | undefined
  beforeAll(async () => { server = await startServer({ token: TOKEN }) })
  afterAll(async () => { await page?.close(); await server?.close() })

  /** Poll `expression` in the page until it is true; fails saying what it waited for. */
  const until = async (what: string, expression: string, timeoutMs = 30_000): Promise<void> => {
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
      if (await page?.evaluate(expression) === true) return
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    throw new Error(`no ${what} in Firefox within ${timeoutMs} ms`)
  }

  it('asks for the token, refuses a wrong one in words, joins with the right one', async () => {
    page = await openInFirefox(`${server.url()}/`)
    await until('token field', "!document.getElementById('token-form').hidden && document.getElementById('state').dataset.state === 'refused'")
    expect(await page.evaluate("document.getElementById('token-text').textContent")).toContain('This server needs a token')
    await page.evaluate("document.getElementById('token-input').value = 'wrong'; document.getElementById('token-form').requestSubmit()")
    await until('refusal of the wrong token', "document.getElementById('token-form').dataset.state === 'failed' && !document.getElementById('token-form').hidden")
    expect(await page.evaluate("document.getElementById('token-text').textContent")).toContain('refused the token')
    await page.evaluate(`document.getElementById('token-input').value = ${JSON.stringify(TOKEN)}; document.getElementById('token-form').requestSubmit()`)
    await until('join with the right token', "document.getElementById('state').dataset.state === 'joined'")
    expect(await page.evaluate("document.getElementById('token-form').hidden")).toBe(true)
    // Joined, but no peer picked: the buttons that need one are off.
    expect(await page.evaluate("document.querySelector('#chat-form button[type=submit]').disabled")).toBe(true)
    expect(await page.evaluate('JSON.stringify({ ...localStorage }) + location.href')).not.toContain('s3cret')
  }, 90_000)
})
