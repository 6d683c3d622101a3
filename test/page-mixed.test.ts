/**
 * A page in plaintext mode cannot reach a page in the default mode: the plaintext page says why in
 * words with E_SECURE_REQUIRED, the default page marks the id it refused (as a claim), and nothing is
 * carried. Also: forms used with no peer picked say so.
 */
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { StarsockServer } from '../server/server.ts'
import { launchChromium, openJoinedPage } from './helpers/browser.ts'
import { startServer } from './helpers/server.ts'

describe('a page in plaintext mode and a page in the default mode (Chromium)', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  beforeAll(async () => { server = await startServer(); browser = await launchChromium() }, 60_000)
  afterAll(async () => { await browser?.close(); await server?.close() })
  const open = async (search: string): Promise<{ page: Page, id: string }> => await openJoinedPage(browser, `${server.url()}/${search}`)

  it('the plaintext page\'s chat is refused with E_SECURE_REQUIRED in words on both pages, and nothing arrives', async () => {
    const plain = await open('?insecure=1')
    const secure = await open('')
    await plain.page.locator(`#peer-list li[data-peer="${secure.id}"]`).click({ timeout: 15_000 })
    await plain.page.fill('#chat-text', 'hi from plaintext')
    await plain.page.press('#chat-text', 'Enter')
    const line = plain.page.locator('#messages li', { hasText: 'not sent' })
    await line.waitFor({ timeout: 20_000 })
    expect(await line.innerText()).toContain('the peer requires end-to-end encryption; this page is in plaintext mode (E_SECURE_REQUIRED)')
    // The refusal is the other side's word: the plaintext page keeps no failure on that peer.
    expect(await plain.page.locator(`#peer-list li[data-peer="${secure.id}"] .badge`).count()).toBe(0)
    await secure.page.locator(`#peer-list li[data-peer="${plain.id}"] .badge[data-security="failed"]`).waitFor({ timeout: 10_000 })
    expect(await secure.page.locator(`#peer-list li[data-peer="${plain.id}"] .badge`).innerText()).toBe('refused a plaintext connection claiming this id (E_SECURE_REQUIRED)')
    expect(await secure.page.locator('#messages').innerText()).not.toContain('hi from plaintext')
  }, 60_000)

  it('chat, fetch and serve with no peer picked say "Pick a peer first" (no unhandled rejection)', async () => {
    const { page } = await open('')
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    await page.fill('#chat-text', 'to nobody')
    await page.press('#chat-text', 'Enter')
    await page.locator('#messages li', { hasText: 'not sent: Error: Pick a peer first' }).waitFor({ timeout: 10_000 })
    await page.fill('#fetch-port', '80')
    await page.locator('#fetch-form').evaluate((form) => { (form as HTMLFormElement).requestSubmit() })
    await page.locator('#fetch-result[data-state="failed"]', { hasText: 'Error: Pick a peer first' }).waitFor({ timeout: 10_000 })
    await page.setInputFiles('#serve-file', { name: 'a.txt', mimeType: 'text/plain', buffer: Buffer.from('a') })
    await page.locator('#serve-form').evaluate((form) => { (form as HTMLFormElement).requestSubmit() })
    await page.locator('#serve-result[data-state="failed"]', { hasText: 'Error: Pick a peer first' }).waitFor({ timeout: 10_000 })
    expect(errors).toEqual([])
  }, 60_000)
})
