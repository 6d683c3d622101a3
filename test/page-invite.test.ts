/**
 * Invites in real Chromium (and the chart and QR code in Firefox): the QR code decodes to the
 * link shown, a "dial me" link opened in another browser picks the first page's peer and chats
 * with it, a `#dial=` of a peer not online yet waits for it, garbage in `#dial=` is ignored with a
 * message, Copy puts the link on the clipboard, and the token goes into a link only when asked.
 */
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import jsQR from 'jsqr'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createIdentity } from '../client/identity.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import type { StarsockServer } from '../server/server.ts'
import { launchChromium, openJoinedPage } from './helpers/browser.ts'
import { openInFirefox, type FirefoxPage } from './helpers/firefox.ts'
import { startServer } from './helpers/server.ts'

const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url))

/** The text of the QR code on show, read from its canvas' pixels. */
async function qrText (page: Page): Promise<string | undefined> {
  const image = await page.evaluate(() => {
    const canvas = document.getElementById('invite-qr') as HTMLCanvasElement
    const data = canvas.getContext('2d')?.getImageData(0, 0, canvas.width, canvas.height)
    return data === undefined ? undefined : { width: data.width, height: data.height, pixels: Array.from(data.data) }
  })
  if (image === undefined) return undefined
  return jsQR(Uint8ClampedArray.from(image.pixels), image.width, image.height)?.data
}

describe('invites in real Chromium', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  const contexts: BrowserContext[] = []
  const peers: StarsockPeer[] = []

  const open = async (url: string): Promise<{ page: Page, id: string }> => {
    const opened = await openJoinedPage(browser, url)
    contexts.push(opened.context)
    return opened
  }

  beforeAll(async () => {
    server = await startServer()
    browser = await launchChromium()
  }, 60_000)

  afterAll(async () => {
    for (const p of peers) await p.close()
    for (const c of contexts) await c.close()
    await browser?.close()
    await server?.close()
  })

  it('shows the page link and its QR code; "dial me" opened in another browser picks this page\'s peer, which it chats with', async () => {
    const a = await open(server.url() + '/')
    const pageLink = server.url() + '/'
    await expect.poll(async () => await a.page.inputValue('#invite-link'), { timeout: 10_000 }).toBe(pageLink)
    expect(await qrText(a.page)).toBe(pageLink)
    expect(await a.page.locator('#invite-token-choice').isHidden()).toBe(true)

    await a.page.check('#invite-dial')
    const dialLink = `${pageLink}#dial=${a.id}`
    await expect.poll(async () => await a.page.inputValue('#invite-link'), { timeout: 10_000 }).toBe(dialLink)
    expect(await qrText(a.page)).toBe(dialLink)
    mkdirSync(ARTIFACTS, { recursive: true })
    await a.page.locator('#invite').screenshot({ path: `${ARTIFACTS}page-invite.png` })

    const b = await open(dialLink)
    await b.page.locator(`#peer-list li[data-peer="${a.id}"][aria-selected="true"]`).waitFor({ timeout: 30_000 })
    await b.page.locator('#dial-status[data-state="done"]').waitFor({ timeout: 10_000 })
    expect(b.page.url()).toBe(pageLink)
    await b.page.locator('#invite').screenshot({ path: `${ARTIFACTS}page-invite-dialled.png` })
    await b.page.fill('#chat-text', 'hi from the dial link')
    await b.page.press('#chat-text', 'Enter')
    await a.page.locator('#messages', { hasText: 'hi from the dial link' }).waitFor({ timeout: 30_000 })
  }, 120_000)

  it('a #dial= of a peer not online yet waits for it, then picks it', async () => {
    const identity = await createIdentity()
    const { page } = await open(`${server.url()}/#dial=${identity.peerId}`)
    await page.locator('#dial-status[data-state="waiting"]', { hasText: 'Waiting for' }).waitFor({ timeout: 10_000 })
    expect(await page.locator('#dial-status').innerText()).toContain(identity.peerId.slice(-6))
    expect(page.url()).toBe(server.url() + '/')
    peers.push(await createPeer({ server: server.url(), identity }))
    await page.locator(`#peer-list li[data-peer="${identity.peerId}"][aria-selected="true"]`).waitFor({ timeout: 30_000 })
    await page.locator('#dial-status[data-state="done"]').waitFor({ timeout: 10_000 })
  }, 60_000)

  it('a #dial= still waiting gives way to the person\'s own pick: the peer coming online later does not take it', async () => {
    const later = await createIdentity()
    const chosen = await createPeer({ server: server.url() })
    peers.push(chosen)
    const { page } = await open(`${server.url()}/#dial=${later.peerId}`)
    await page.locator('#dial-status[data-state="waiting"]').waitFor({ timeout: 10_000 })
    await page.locator(`#peer-list li[data-peer="${chosen.peerId}"]`).click({ timeout: 30_000 })
    await page.locator('#dial-status[data-state="done"]', { hasText: 'Not waiting' }).waitFor({ timeout: 10_000 })
    peers.push(await createPeer({ server: server.url(), identity: later }))
    await page.locator(`#peer-list li[data-peer="${later.peerId}"]`).waitFor({ timeout: 30_000 })
    // Give the page time to act on the join (it would pick at once).
    await new Promise((resolve) => setTimeout(resolve, 2000))
    expect(await page.locator(`#peer-list li[data-peer="${chosen.peerId}"]`).getAttribute('aria-selected')).toBe('true')
    expect(await page.locator(`#peer-list li[data-peer="${later.peerId}"]`).getAttribute('aria-selected')).not.toBe('true')
  }, 60_000)

  it('garbage in #dial= is ignored with a message, never an exception (openJoinedPage fails on any page error)', async () => {
    for (const garbage of ['nope', '%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E', '%E0%A4%A', 'Qm' + 'x'.repeat(5000), '12D3KooW' + '0'.repeat(44)]) {
      const { page } = await open(`${server.url()}/#dial=${garbage}`)
      await page.locator('#dial-status[data-state="failed"]', { hasText: 'not a peer id' }).waitFor({ timeout: 10_000 })
      expect(await page.locator('#dial-status img').count()).toBe(0)
      expect(page.url()).toBe(server.url() + '/')
      expect(await page.locator('#picked').innerText()).not.toMatch(/^Picked/)
    }
  }, 120_000)

  it('Copy puts the link on the clipboard', async () => {
    const { page } = await open(server.url() + '/')
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url() })
    await page.check('#invite-dial')
    await page.click('#invite-copy')
    await page.locator('#invite-status', { hasText: 'Copied' }).waitFor({ timeout: 10_000 })
    expect(await page.evaluate(async () => await navigator.clipboard.readText())).toBe(await page.inputValue('#invite-link'))
  }, 60_000)

  it('where the page may not write the clipboard, Copy selects the link and says so', async () => {
    const { page } = await open(server.url() + '/')
    await page.evaluate(() => {
      Object.defineProperty(navigator, 'clipboard', { value: { writeText: async () => { throw new DOMException('Write permission denied.', 'NotAllowedError') } } })
    })
    await page.click('#invite-copy')
    await page.locator('#invite-status[data-state="failed"]', { hasText: 'selected' }).waitFor({ timeout: 10_000 })
    const selected = await page.evaluate(() => {
      const input = document.getElementById('invite-link') as HTMLInputElement
      return document.activeElement === input ? input.value.slice(input.selectionStart ?? 0, input.selectionEnd ?? 0) : ''
    })
    expect(selected).toBe(server.url() + '/')
  }, 60_000)
})

describe('invites to a server with a token, in real Chromium', () => {
  const TOKEN = 'a+b/c=d&e'
  let server: StarsockServer & { port: number }
  let browser: Browser
  let context: BrowserContext | undefined

  beforeAll(async () => {
    server = await startServer({ token: TOKEN })
    browser = await launchChromium()
  }, 60_000)

  afterAll(async () => {
    await context?.close()
    await browser?.close()
    await server?.close()
  })

  it('the token goes into the link only when ticked, with a warning; the QR code follows', async () => {
    const opened = await openJoinedPage(browser, `${server.url()}/#token=${encodeURIComponent(TOKEN)}`)
    context = opened.context
    const page = opened.page
    await page.locator('#invite-token-choice').waitFor({ timeout: 10_000 })
    expect(await page.isChecked('#invite-token')).toBe(false)
    expect(await page.inputValue('#invite-link')).toBe(server.url() + '/')
    expect(await page.locator('#invite-token-warning').isHidden()).toBe(true)
    await page.check('#invite-token')
    await page.check('#invite-dial')
    const link = `${server.url()}/#dial=${opened.id}&token=${encodeURIComponent(TOKEN)}`
    await expect.poll(async () => await page.inputValue('#invite-link'), { timeout: 10_000 }).toBe(link)
    expect(await page.locator('#invite-token-warning').isVisible()).toBe(true)
    expect(await qrText(page)).toBe(link)
    // The link joins: a second browser opened with it takes the token and dials this page's peer.
    const other = await openJoinedPage(browser, link)
    try {
      await other.page.locator(`#peer-list li[data-peer="${opened.id}"][aria-selected="true"]`).waitFor({ timeout: 30_000 })
      expect(other.page.url()).toBe(server.url() + '/')
    } finally {
      await other.context.close()
    }
  }, 120_000)
})

describe('the chart and the QR code in Debian\'s Firefox', () => {
  let server: StarsockServer & { port: number }
  let page: FirefoxPage | undefined

  beforeAll(async () => { server = await startServer() })
  afterAll(async () => {
    await page?.close()
    await server?.close()
  })

  it('draws the chart with its legend and a QR code that decodes to the link', async () => {
    page = await openInFirefox(server.url() + '/')
    const p = page
    let ready = false
    for (const deadline = Date.now() + 30_000; Date.now() < deadline && !ready;) {
      ready = await p.evaluate("document.getElementById('state').dataset.state === 'joined' && document.querySelectorAll('#chart .u-legend .u-series').length === 3 && (JSON.parse(document.getElementById('chart').dataset.series || '{\"at\":[]}').at.length >= 2)") === true
      if (!ready) await new Promise((resolve) => setTimeout(resolve, 250))
    }
    expect(ready).toBe(true)
    expect(await p.evaluate("document.querySelectorAll('#chart canvas').length")).toBeGreaterThanOrEqual(1)
    const image = JSON.parse(String(await p.evaluate("(() => { const c = document.getElementById('invite-qr'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height); return JSON.stringify({ width: d.width, height: d.height, pixels: Array.from(d.data) }) })()"))) as { width: number, height: number, pixels: number[] }
    const link = String(await p.evaluate("document.getElementById('invite-link').value"))
    expect(link).toBe(server.url() + '/')
    expect(jsQR(Uint8ClampedArray.from(image.pixels), image.width, image.height)?.data).toBe(link)
  }, 90_000)
})
