/**
 * Pictures of the page's states for the README and `docs/page.md`, made from the real thing: a
 * starsock server on 127.0.0.1 (port 0) serving the built page (`dist/web/`), pages in Debian's
 * Chromium (`/usr/bin/chromium`, through playwright-core) and a Node peer, doing what a person
 * does. Each state is saved as `docs/images/page-<state>.png` (1100x800, light mode);
 * `docs/images/page.png` (README screen one) is the joined one.
 *
 * A state whose part of the page is not there (yet) is skipped with a line saying so; a state
 * that fails says why and the run exits 1 after the others. Run: `npm run screenshots`, or
 * `node --conditions=starsock-source --import tsx scripts/screenshots.ts [--only=NAME,...] [--out=DIR]`.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import type { Mapping } from '../client/sock/mapping.ts'
import { createServer, type StarsockServer } from '../server/index.ts'

const CHROMIUM = '/usr/bin/chromium'
const PAGE_INDEX = fileURLToPath(new URL('../dist/web/index.html', import.meta.url))
const VIEWPORT = { width: 1100, height: 800 }
/** How long a state's part of the page may take to show before it counts as not there. */
const SHOW_MS = 15_000
const WAIT_MS = 30_000

const args = process.argv.slice(2)
const OUT = args.find((a) => a.startsWith('--out='))?.slice('--out='.length) ?? fileURLToPath(new URL('../docs/images/', import.meta.url))
const ONLY = args.find((a) => a.startsWith('--only='))?.slice('--only='.length).split(',')

/** Thrown by a state whose part of the page is not there: the run goes on. */
class Skip extends Error {}

/** Open the page at `url` in `context` (a new one by default) and wait until it joined; settles with its peer id. */
async function openPage (browser: Browser, url: string, context?: BrowserContext, name?: string): Promise<{ page: Page, id: string }> {
  const ctx = context ?? await browser.newContext({ viewport: VIEWPORT, colorScheme: 'light', reducedMotion: 'reduce' })
  const page = await ctx.newPage()
  page.on('pageerror', (err) => process.stderr.write(`page error: ${err.message}\n`))
  await page.goto(url)
  await page.locator('#state[data-state="joined"]').waitFor({ timeout: WAIT_MS })
  await page.waitForFunction(() => /^[1-9A-Za-z]{40,}$/.test(document.getElementById('my-id')?.textContent ?? ''), undefined, { timeout: WAIT_MS })
  if (name !== undefined) await chooseName(page, name)
  return { page, id: await page.locator('#my-id').innerText() }
}

/** Give the page's peer a display name, where the page has a field for one (issue 17); nothing otherwise. */
async function chooseName (page: Page, name: string): Promise<void> {
  const field = page.getByLabel(/display name|your name/i).first()
  if (await field.count() === 0) return
  await field.fill(name)
  await field.press('Enter')
}

/** The first of `selectors` that shows on `page` within SHOW_MS; skips the state with `missing` when none does. */
async function shown (page: Page, selectors: string[], missing: string): Promise<Locator> {
  const any = page.locator(selectors.join(', ')).first()
  try {
    await any.waitFor({ state: 'visible', timeout: SHOW_MS })
  } catch {
    throw new Skip(missing)
  }
  return any
}

/** Click the granting button of the request on `page` that mentions `text` (a prompt or an offer card), once it is armed. */
async function grant (page: Page, text: string): Promise<void> {
  const request = page.locator('#prompts .prompt, #offers .offer', { hasText: text }).first()
  const button = request.getByRole('button', { name: /^(Accept|Allow|Grant|Save|Receive)/ }).first()
  await button.and(page.locator(':enabled')).waitFor({ timeout: WAIT_MS })
  await button.click()
}

/** Save `page` as `page-<name>.png` with `target` in view. */
async function save (page: Page, name: string, target?: Locator): Promise<string> {
  // The target in the middle of the picture; no focus ring or caret left over from the steps.
  await target?.evaluate((node) => { node.scrollIntoView({ block: node.getBoundingClientRect().height > innerHeight * 0.8 ? 'start' : 'center' }) })
  await page.evaluate(() => { (document.activeElement as HTMLElement | null)?.blur() })
  const path = join(OUT, `page-${name}.png`)
  await page.screenshot({ path, animations: 'disabled', caret: 'hide' })
  return path
}

/** What the states share: the server, two joined pages A and B, and a Node peer. */
interface Scene {
  browser: Browser
  server: StarsockServer
  a: { page: Page, id: string }
  b: { page: Page, id: string }
  node: StarsockPeer
  agent: SockAgent
  /** The accept mapping A granted the Node peer (the consent state makes it). */
  granted?: Mapping
  tmp: string
}

/** Pick `peerId` on `from`, say `text`, and wait until `to` shows it. */
async function say (from: Page, peerId: string, text: string, to: Page): Promise<void> {
  await from.locator(`#peer-list li[data-peer="${peerId}"]`).click({ timeout: WAIT_MS })
  await from.fill('#chat-text', text)
  await from.press('#chat-text', 'Enter')
  await to.locator('#messages', { hasText: text }).waitFor({ timeout: WAIT_MS })
}

/** The states, in order (later ones use what earlier ones did). Each settles with the files saved. */
const STATES: Array<{ name: string, what: string, take: (s: Scene) => Promise<string[]> }> = [
  {
    name: 'joined',
    what: 'two pages and a Node peer online, a chat between the pages',
    take: async ({ a, b }) => {
      await say(a.page, b.id, 'hi from A: end-to-end encrypted through the relay', b.page)
      await say(b.page, a.id, 'hello A, B here', a.page)
      const path = await save(a.page, 'joined')
      copyFileSync(path, join(OUT, 'page.png'))
      return [path, join(OUT, 'page.png')]
    }
  },
  {
    name: 'threads',
    what: 'a thread per peer: page A reads the Node peer\'s, page B writes twice, counted unread on B\'s row',
    take: async ({ a, b, node }) => {
      await a.page.locator(`#peer-list li[data-peer="${node.peerId}"]`).click({ timeout: WAIT_MS })
      await b.page.locator(`#peer-list li[data-peer="${a.id}"]`).click({ timeout: WAIT_MS })
      for (const text of ['are you there?', 'the photos are ready']) {
        await b.page.fill('#chat-text', text)
        await b.page.press('#chat-text', 'Enter')
      }
      await a.page.locator(`#peer-list li[data-peer="${b.id}"] .unread[data-count="2"]`).waitFor({ timeout: WAIT_MS })
      return [await save(a.page, 'threads')]
    }
  },
  {
    name: 'consent',
    what: 'the Node peer asks page A to take connections (an accept offer): the prompt',
    take: async (s) => {
      const answer = s.agent.offerAccept(s.a.id, { host: '127.0.0.1', port: 8080, name: 'the laptop\'s web server' })
      answer.catch(() => {}) // awaited below, or dropped with the state
      const prompt = await shown(s.a.page, ['#prompts .prompt', '#offers .offer'], 'no prompt or offer card shows on the page')
      const path = await save(s.a.page, 'consent', prompt)
      await grant(s.a.page, '8080')
      s.granted = await answer
      return [path]
    }
  },
  {
    name: 'mappings',
    what: 'the mapping page A granted, with traffic on it',
    take: async (s) => {
      if (s.granted === undefined) throw new Skip('no mapping was granted (the consent state did not run or was skipped)')
      for (let i = 0; i < 3; i++) {
        const channel = await s.agent.sendAccept(s.granted, { ip: '127.0.0.1', port: 40000 + i })
        await channel.write(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'))
        let answered = 0
        for await (const chunk of channel) answered += chunk.byteLength // the page's answer, to its end
        if (answered === 0) throw new Error('the page answered an accept channel with nothing')
        await channel.closeWrite()
      }
      const table = await shown(s.a.page, ['#mappings tbody tr'], 'no row in the mappings table')
      return [await save(s.a.page, 'mappings', table)]
    }
  },
  {
    name: 'file-offer',
    what: 'the Node peer offers page B a file: the offer, before any byte',
    take: async (s) => {
      const cancel = new AbortController()
      const offered = s.agent.offerFile(s.b.id, { name: 'holiday-photos.zip', size: 48 * 1024 * 1024, signal: cancel.signal })
      offered.then((channel) => channel.abort(new Error('only a picture')), () => {})
      try {
        const offer = await shown(s.b.page, ['#prompts .prompt:has-text("holiday-photos.zip")', '[data-offer]:has-text("holiday-photos.zip")'],
          'no file offer shows on the page (it takes files unasked)')
        return [await save(s.b.page, 'file-offer', offer)]
      } finally {
        cancel.abort()
      }
    }
  },
  {
    name: 'transfer',
    what: 'page A sends page B a 64 MiB file: progress on both sides',
    take: async (s) => {
      const file = join(s.tmp, 'dataset-2026.bin')
      writeFileSync(file, Buffer.alloc(64 * 1024 * 1024, 7))
      await s.a.page.locator(`#peer-list li[data-peer="${s.b.id}"]`).click({ timeout: WAIT_MS })
      await s.a.page.setInputFiles('#file-input', file)
      await s.a.page.click('#file-form button[type=submit]')
      // B grants it where the page asks (files as offers), else it is taken unasked.
      void grant(s.b.page, 'dataset-2026.bin').catch(() => {})
      const row = s.a.page.locator('#transfers li[data-direction="to"]').first()
      await row.locator('progress').waitFor({ timeout: WAIT_MS })
      await s.a.page.waitForFunction(() => {
        const bar = document.querySelector<HTMLProgressElement>('#transfers li[data-direction="to"] progress')
        return bar !== null && bar.value > bar.max * 0.2
      }, undefined, { timeout: 120_000, polling: 50 })
      const path = await save(s.a.page, 'transfer', s.a.page.locator('#files'))
      await s.a.page.locator('#transfers li[data-direction="to"][data-state="done"]').first().waitFor({ timeout: 180_000 })
      return [path]
    }
  },
  {
    name: 'chart',
    what: 'the throughput chart after the transfer',
    take: async ({ a }) => [await save(a.page, 'chart', await shown(a.page, ['#throughput'], 'no throughput section'))]
  },
  {
    name: 'invite',
    what: 'the invite: a "dial me" link and its QR code',
    take: async ({ a }) => {
      const qr = await shown(a.page, ['#invite-qr'], 'no invite QR code on the page')
      // "Dial me": the link a phone opens to reach this page's peer.
      await a.page.check('#invite-dial')
      await a.page.waitForFunction(() => document.querySelector<HTMLInputElement>('#invite-link')?.value.includes('#dial=') === true, undefined, { timeout: WAIT_MS })
      return [await save(a.page, 'invite', qr)]
    }
  },
  {
    name: 'token',
    what: 'a server with a token: the page asks for it',
    take: async ({ browser }) => {
      const server = createServer({ shutdownGraceMs: 0, token: 'the-token' })
      await server.listen(0, '127.0.0.1')
      const context = await browser.newContext({ viewport: VIEWPORT, colorScheme: 'light', reducedMotion: 'reduce' })
      try {
        const page = await context.newPage()
        await page.goto(server.url() + '/')
        const form = await shown(page, ['#token-form'], 'no token form')
        return [await save(page, 'token', form)]
      } finally {
        await context.close()
        await server.close()
      }
    }
  },
  {
    name: 'second-tab',
    what: 'the same identity opened in a second tab: "Use here instead" or a new identity',
    take: async ({ browser, server }) => {
      const context = await browser.newContext({ viewport: VIEWPORT, colorScheme: 'light', reducedMotion: 'reduce' })
      try {
        await openPage(browser, server.url() + '/', context)
        const second = await context.newPage()
        await second.goto(server.url() + '/')
        const conflict = await shown(second, ['#identity-conflict'], 'no identity conflict shows')
        return [await save(second, 'second-tab', conflict)]
      } finally {
        await context.close()
      }
    }
  }
]

async function main (): Promise<void> {
  if (!existsSync(PAGE_INDEX)) throw new Error(`${PAGE_INDEX} is missing: run npm run build first`)
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/ensure-system-deps.sh (apt-get install chromium)`)
  mkdirSync(OUT, { recursive: true })
  const server = createServer({ shutdownGraceMs: 0 })
  await server.listen(0, '127.0.0.1')
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu'] })
  const node = await createPeer({ server: server.url(), profile: { name: 'build box' } })
  const agent = createSockAgent(node, {})
  const tmp = mkdtempSync(join(tmpdir(), 'starsock-screenshots-'))
  let failed = 0
  try {
    const a = await openPage(browser, server.url() + '/?slot=a', undefined, 'Laptop')
    const b = await openPage(browser, server.url() + '/?slot=b', undefined, 'Phone')
    await a.page.locator(`#peer-list li[data-peer="${b.id}"]`).waitFor({ timeout: WAIT_MS })
    const scene: Scene = { browser, server, a, b, node, agent, tmp }
    for (const state of STATES) {
      if (ONLY !== undefined && !ONLY.includes(state.name)) continue
      try {
        const paths = await state.take(scene)
        for (const path of paths) process.stdout.write(`saved   ${state.name}: ${path} (${Math.round(statSync(path).size / 1024)} KiB): ${state.what}\n`)
      } catch (err) {
        if (err instanceof Skip) {
          process.stdout.write(`skipped ${state.name}: ${err.message}\n`)
        } else {
          failed++
          process.stdout.write(`FAILED  ${state.name}: ${err instanceof Error ? err.message.split('\n')[0] ?? '' : String(err)}\n`)
        }
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true })
    await agent.close()
    await node.close()
    await browser.close()
    await server.close()
  }
  if (failed > 0) process.exitCode = 1
}

main().catch((err: unknown) => {
  process.stderr.write(`screenshots: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
