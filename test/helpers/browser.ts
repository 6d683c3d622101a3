/**
 * Real Chromium for tests: Debian's /usr/bin/chromium driven by playwright-core, and a static
 * HTTP server on 127.0.0.1 for the pages it loads.
 */
import { createReadStream, existsSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { extname, join, normalize } from 'node:path'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

const CHROMIUM = '/usr/bin/chromium'

/** Launch headless Chromium; throws with the fix when it is not installed. */
export async function launchChromium (): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/ensure-system-deps.sh (apt-get install chromium)`)
  return await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync']
  })
}

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.map': 'application/json' }

/** Serve the files in `dir` (and `pages`, by path) on 127.0.0.1; settles with its URL. */
export async function serveStatic (dir: string, pages: Record<string, string> = {}): Promise<{ url: string, close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = normalize(decodeURIComponent((req.url ?? '/').split('?')[0] ?? '/'))
    const page = pages[path]
    if (page !== undefined) {
      res.writeHead(200, { 'content-type': 'text/html' })
      return res.end(page)
    }
    const file = join(dir, path)
    if (!file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404)
      return res.end()
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' })
    createReadStream(file).pipe(res)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/**
 * Open the page at `url` in a context of its own, failing the test on any page error, and wait
 * until it has joined; returns it with its peer id.
 */
export async function openJoinedPage (browser: Browser, url: string): Promise<{ page: Page, id: string, context: BrowserContext }> {
  const context = await browser.newContext()
  const page = await context.newPage()
  page.on('pageerror', (err) => { throw err })
  return { page, id: await gotoJoined(page, url), context }
}

/** Load the page at `url` in `page` and wait until it has joined; settles with its peer id. */
export async function gotoJoined (page: Page, url: string, timeoutMs = 30_000): Promise<string> {
  await page.goto(url)
  await page.locator('#state[data-state="joined"]').waitFor({ timeout: timeoutMs })
  await page.waitForFunction(() => /^[1-9A-Za-z]{40,}$/.test(document.getElementById('my-id')?.textContent ?? ''), undefined, { timeout: timeoutMs })
  return await page.locator('#my-id').innerText()
}
