/**
 * A page in plaintext mode cannot reach a page in the default mode: the plaintext page says why in
 * words with E_SECURE_REQUIRED, the default page marks the peer it refused, and nothing is carried.
 */
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { StarsockServer } from '../server/server.ts'
import { launchChromium } from './helpers/browser.ts'
import { startServer } from './helpers/server.ts'

describe('a page in plaintext mode and a page in the default mode (Chromium)', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  beforeAll(async () => { server = await startServer(); browser = await launchChromium() }, 60_000)
  afterAll(async () => { await browser?.close(); await server?.close() })
  const open = async (search: string): Promise<{ page: Page, id: string }> => {
    const page = await (await browser.newContext()).newPage()
    page.on('pageerror', (err) => { throw err })
    await page.goto(`${server.url()}/${search}`)
    await page.locator('#state[data-state="joined"]').waitFor({ timeout: 15_000 })
    return { page, id: await page.locator('#my-id').innerText() }
  }

  it('the plaintext page\'s chat is refused with E_SECURE_REQUIRED in words on both pages, and nothing arrives', async () => {
    const plain = await open('?insecure=1')
    const secure = await open('')
    await plain.page.locator(`#peer-list li[data-peer="${secure.id}"]`).click({ timeout: 15_000 })
    await plain.page.fill('#chat-text', 'hi from plaintext')
    await plain.page.press('#chat-text', 'Enter')
    const line = plain.page.locator('#messages li', { hasText: 'not sent' })
    await line.waitFor({ timeout: 20_000 })
    expect(await line.innerText()).toContain('(E_SECURE_REQUIRED)')
    expect(await plain.page.locator(`#peer-list li[data-peer="${secure.id}"] .badge`).innerText()).toBe('not secured: the peer does not encrypt (E_SECURE_REQUIRED)')
    await secure.page.locator(`#peer-list li[data-peer="${plain.id}"] .badge[data-security="failed"]`).waitFor({ timeout: 10_000 })
    expect(await secure.page.locator(`#peer-list li[data-peer="${plain.id}"] .badge`).innerText()).toBe('not secured: the peer does not encrypt (E_SECURE_REQUIRED)')
    expect(await secure.page.locator('#messages').innerText()).not.toContain('hi from plaintext')
  }, 60_000)
})
