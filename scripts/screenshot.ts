/**
 * Make `docs/images/page.png`, the README's picture of the page, from the real thing: a starsock
 * server on 127.0.0.1 (port 0) serving the built page (`dist/web/`, so run `npm run build` first),
 * two pages in Debian's Chromium (`/usr/bin/chromium`, through playwright-core) that find each
 * other, and a line of chat each way; then page A is captured at 1100x760.
 *
 * Run: `node --conditions=starsock-source --import tsx scripts/screenshot.ts [OUT.png]`.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Page } from 'playwright-core'
import { createServer } from '../server/index.ts'

const CHROMIUM = '/usr/bin/chromium'
const OUT = process.argv[2] ?? fileURLToPath(new URL('../docs/images/page.png', import.meta.url))
const PAGE_INDEX = fileURLToPath(new URL('../dist/web/index.html', import.meta.url))
const WAIT_MS = 20_000

/** Open the page in a context of its own and wait until it joined; settles with its peer id. */
async function openPage (browser: Browser, url: string): Promise<{ page: Page, id: string }> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 }, colorScheme: 'light' })
  const page = await context.newPage()
  page.on('pageerror', (err) => { throw err })
  await page.goto(url)
  await page.locator('#state[data-state="joined"]').waitFor({ timeout: WAIT_MS })
  await page.waitForFunction(() => /^[1-9A-Za-z]{40,}$/.test(document.getElementById('my-id')?.textContent ?? ''), undefined, { timeout: WAIT_MS })
  return { page, id: await page.locator('#my-id').innerText() }
}

/** Pick `peerId` in the page's peer list, say `text`, and wait until `other` shows it. */
async function say (from: Page, peerId: string, text: string, other: Page): Promise<void> {
  await from.locator(`#peer-list li[data-peer="${peerId}"]`).click({ timeout: WAIT_MS })
  await from.fill('#chat-text', text)
  await from.press('#chat-text', 'Enter')
  await other.locator('#messages', { hasText: text }).waitFor({ timeout: WAIT_MS })
}

async function main (): Promise<void> {
  if (!existsSync(PAGE_INDEX)) throw new Error(`${PAGE_INDEX} is missing: run npm run build first`)
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/ensure-system-deps.sh (apt-get install chromium)`)
  const server = createServer({ shutdownGraceMs: 0 })
  await server.listen(0, '127.0.0.1')
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] })
  try {
    const a = await openPage(browser, server.url() + '/')
    const b = await openPage(browser, server.url() + '/')
    await a.page.locator(`#peer-list li[data-peer="${b.id}"]`).waitFor({ timeout: WAIT_MS })
    await say(a.page, b.id, 'hi from A: end-to-end encrypted through the relay', b.page)
    await say(b.page, a.id, 'hello A, B here', a.page)
    mkdirSync(dirname(OUT), { recursive: true })
    await a.page.screenshot({ path: OUT })
    process.stdout.write(`${OUT}: ${statSync(OUT).size} bytes\n`)
  } finally {
    await browser.close()
    await server.close()
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`screenshot: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
