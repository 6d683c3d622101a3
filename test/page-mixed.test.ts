/**
 * A page in plaintext mode cannot reach a page in the default mode: the plaintext page says why in
 * words with E_SECURE_REQUIRED, the default page marks the id it refused (as a claim), and nothing is
 * carried. Also: forms that need a peer are disabled until one online is picked, and say why.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { StarsockServer } from '../server/server.ts'
import { launchChromium, openJoinedPage } from './helpers/browser.ts'
import { startServer } from './helpers/server.ts'

describe('a page in plaintext mode and a page in the default mode (Chromium)', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  beforeAll(async () => { server = await startServer(); browser = await launchChromium() }, 60_000)
  afterAll(async () => { await browser?.close(); await server?.close() })
  const open = async (search: string): Promise<{ page: Page, id: string, context: BrowserContext }> => await openJoinedPage(browser, `${server.url()}/${search}`)

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

  it('chat, file, fetch and serve are disabled with no peer picked and say "Pick a peer first"; picking a peer enables them, its leaving says it is offline', async () => {
    const { page } = await open('')
    const errors: string[] = []
    page.on('pageerror', (err) => errors.push(err.message))
    const buttons = ['#chat-form', '#file-form', '#fetch-form', '#serve-form'].map((form) => `${form} button[type=submit]`)
    for (const button of buttons) {
      expect(await page.locator(button).isDisabled(), `${button} is disabled`).toBe(true)
      expect(await page.locator(button).getAttribute('title')).toBe('Pick a peer first')
    }
    for (const form of ['chat-form', 'file-form', 'fetch-form', 'serve-form']) expect(await page.locator(`#${form}-needs`).innerText()).toBe('Pick a peer first')
    // Enter in the message field submits nothing (its form's button is disabled): the text stays.
    await page.fill('#chat-text', 'to nobody')
    await page.press('#chat-text', 'Enter')
    // A form submitted anyway (by script) still says it in place, as an error.
    await page.fill('#fetch-port', '80')
    await page.locator('#fetch-form').evaluate((form) => { (form as HTMLFormElement).requestSubmit() })
    await page.locator('#fetch-result[data-state="failed"]', { hasText: 'Error: Pick a peer first' }).waitFor({ timeout: 10_000 })
    expect(await page.locator('#messages li').count()).toBe(0)
    expect(await page.inputValue('#chat-text')).toBe('to nobody')

    const other = await open('')
    await page.locator(`#peer-list li[data-peer="${other.id}"]`).click({ timeout: 15_000 })
    for (const button of buttons) await page.locator(button).and(page.locator(':enabled')).waitFor({ timeout: 10_000 })
    expect(await page.locator('#chat-form-needs').isHidden()).toBe(true)
    expect(await page.locator('#chat-form button[type=submit]').getAttribute('title')).toBeNull()
    // The picked peer leaves: the buttons go off again and say so.
    await other.context.close()
    await page.locator('#chat-form button[type=submit]:disabled').waitFor({ timeout: 20_000 })
    expect(await page.locator('#chat-form-needs').innerText()).toMatch(/ is offline: pick a peer online$/)
    expect(errors).toEqual([])
  }, 60_000)
})
