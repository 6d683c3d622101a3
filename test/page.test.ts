import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import type { StarsockServer } from '../server/server.ts'
import { launchChromium } from './helpers/browser.ts'
import { startServer, testBytes, within } from './helpers/server.ts'
import { httpGet, httpServer } from './helpers/sockets.ts'
import { wasReset, watch } from './helpers/tcp-watch.ts'
import net from 'node:net'
import { expectBytes } from './helpers/bytes.ts'
import { answerFile } from './helpers/files.ts'

const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url))
const BIN = fileURLToPath(new URL('../bin/starsock.js', import.meta.url))

/** The page's peer id once it shows one. */
async function peerIdOf (page: Page): Promise<string> {
  await page.waitForFunction(() => /^[1-9A-Za-z]{40,}$/.test(document.getElementById('my-id')?.textContent ?? ''), undefined, { timeout: 20_000 })
  return await page.locator('#my-id').innerText()
}

/**
 * Put a file of `size` bytes of `fill` into the file input `selector`, made in the page: a large
 * buffer through playwright's `setInputFiles` crosses the DevTools protocol in base64, which on a
 * loaded machine can take longer than the step's timeout.
 */
async function fillFileInPage (page: Page, selector: string, name: string, size: number, fill: number): Promise<void> {
  await page.evaluate(({ selector, name, size, fill }) => {
    const files = new DataTransfer()
    files.items.add(new File([new Uint8Array(size).fill(fill)], name, { type: 'application/octet-stream' }))
    ;(document.querySelector(selector) as HTMLInputElement).files = files.files
  }, { selector, name, size, fill })
}

async function pick (page: Page, peerId: string): Promise<void> {
  await page.locator(`#peer-list li[data-peer="${peerId}"]`).click({ timeout: 15_000 })
}

describe('the browser page in real Chromium', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  const contexts: BrowserContext[] = []
  let node: SockAgent
  let web: { port: number, close: () => Promise<void> }
  const pageText = 'hello through the tunnel '.repeat(40)

  const openPage = async (): Promise<Page> => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    contexts.push(context)
    const page = await context.newPage()
    page.on('pageerror', (err) => { throw err })
    await page.goto(server.url() + '/')
    return page
  }

  beforeAll(async () => {
    server = await startServer()
    browser = await launchChromium()
    web = await httpServer(new TextEncoder().encode(pageText))
    node = createSockAgent(await createPeer({ server: server.url() }), {
      host: createNodeHost(),
      allow: [`connect/tcp:127.0.0.1:${web.port}`, 'bind/tcp:127.0.0.1:0']
    })
  }, 60_000)

  afterAll(async () => {
    await node?.close()
    await node?.peer.close()
    for (const c of contexts) await c.close()
    await browser?.close()
    await web?.close()
    await server?.close()
  })

  it('two pages discover each other, chat, and send a 20 MiB file byte-exact with progress; a screenshot is saved', async () => {
    const a = await openPage()
    const b = await openPage()
    const [idA, idB] = [await peerIdOf(a), await peerIdOf(b)]
    await a.locator('#state[data-state="joined"]').waitFor({ timeout: 15_000 })
    await expectText(a.locator('#peer-list'), idB)
    await expectText(b.locator('#peer-list'), idA)

    await pick(a, idB)
    await a.fill('#chat-text', 'hi from A')
    await a.press('#chat-text', 'Enter')
    await expectText(b.locator('#messages'), 'hi from A')

    const file = Buffer.from(testBytes(20 * 1024 * 1024))
    const sha = createHash('sha256').update(file).digest('hex')
    await a.setInputFiles('#file-input', { name: 'big.bin', mimeType: 'application/octet-stream', buffer: file })
    await a.click('#file-form button[type=submit]')
    await answerFile(b, 'accept', idA)
    const received = b.locator('#transfers li[data-direction="from"]')
    await received.waitFor({ timeout: 15_000 })
    // Progress shows while it runs: the figures line has a rate and a time left.
    await expectText(received.locator('.figures'), '/s')
    await b.locator('#transfers li[data-direction="from"][data-state="done"]').waitFor({ timeout: 60_000 })
    expect(await received.getAttribute('data-sha256')).toBe(sha)
    expect(await received.locator('progress').getAttribute('value')).toBe(String(file.byteLength))
    await a.locator('#transfers li[data-direction="to"][data-state="done"]').waitFor({ timeout: 15_000 })
    expect(await a.locator('#transfers li[data-direction="to"] .result').innerText()).toContain(sha)

    mkdirSync(ARTIFACTS, { recursive: true })
    await a.screenshot({ path: `${ARTIFACTS}page-two-peers.png`, fullPage: true })
  }, 120_000)

  it('consent: deny opens nothing, accept opens the mapping, kill closes it', async () => {
    const page = await openPage()
    const id = await peerIdOf(page)
    await page.locator('#state[data-state="joined"]').waitFor({ timeout: 15_000 })
    await within('the Node peer to know the page', (async () => { while (!node.peer.peers().some((p) => p.peerId === id)) await new Promise((resolve) => setTimeout(resolve, 50)) })(), 10_000)

    const denied = node.offerAccept(id, { host: '127.0.0.1', port: 8080, name: 'from node' }).then(() => 'granted', (err: { code?: string }) => err.code)
    await page.locator('.prompt').waitFor({ timeout: 15_000 })
    expect(await page.locator('.prompt').innerText()).toContain('wants to forward to this page the connections it takes on its 127.0.0.1:8080 (TCP)')
    await page.click('.prompt button.refuse')
    expect(await within('the offer to be denied on the page', denied)).toBe('E_DENIED')
    expect(await page.locator('#mappings tbody tr').count()).toBe(0)

    const granted = node.offerAccept(id, { host: '127.0.0.1', port: 8080, name: 'from node' })
    // Allow is armed 700 ms after the prompt appears (playwright waits while it is aria-disabled).
    await page.click('.prompt button.grant', { timeout: 15_000 })
    const mapping = await within('the offer to be accepted on the page', granted)
    await page.locator('#mappings tbody tr').waitFor({ timeout: 5000 })
    // The page answers what arrives on the mapping.
    const channel = await node.sendAccept(mapping, { ip: '127.0.0.1', port: 40000 })
    await channel.write(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    const parts: Uint8Array[] = []
    for await (const c of channel) parts.push(c)
    expect(Buffer.concat(parts).toString()).toContain(`hello from the starsock page ${id}`)

    const closed = new Promise<string>((resolve) => mapping.on('close', (err) => resolve(err.code)))
    await page.click('#mappings tbody tr button.kill')
    expect(await within('the kill to reach the Node peer', closed, 10_000)).toBe('E_KILLED')
    await page.locator('#mappings tbody tr').waitFor({ state: 'detached', timeout: 5000 })
  }, 60_000)

  it('fetches an HTTP page from a local server through a Node peer\'s connect', async () => {
    const page = await openPage()
    await peerIdOf(page)
    await pick(page, node.peer.peerId)
    await page.fill('#fetch-host', '127.0.0.1')
    await page.fill('#fetch-port', String(web.port))
    await page.click('#fetch-form button[type=submit]')
    await page.locator('#fetch-result[data-state="done"]').waitFor({ timeout: 15_000 })
    const text = await page.locator('#fetch-result').innerText()
    expect(text).toMatch(/^HTTP\/1\.1 200 OK/)
    expect(text).toContain(pageText.trim())
  }, 60_000)

  it('serves a file through a Node peer\'s bind, and a plain HTTP client downloads it byte-exact', async () => {
    const page = await openPage()
    await peerIdOf(page)
    await pick(page, node.peer.peerId)
    const file = Buffer.from(testBytes(3 * 1024 * 1024, 7))
    await page.setInputFiles('#serve-file', { name: 'served.bin', mimeType: 'application/octet-stream', buffer: file })
    await page.fill('#serve-host', '127.0.0.1')
    await page.fill('#serve-port', '0')
    await page.click('#serve-form button[type=submit]')
    await page.locator('#serve-result[data-state="done"]').waitFor({ timeout: 15_000 })
    const port = Number(await page.locator('#serve-result').getAttribute('data-port'))
    expect(port).toBeGreaterThan(0)
    const res = await within('the download through the bound port', httpGet(`http://127.0.0.1:${port}/`), 20_000)
    expect(res.status).toBe(200)
    expectBytes(res.body, file, 'the download through the bound port')
  }, 60_000)

  it('a download of a file the page serves is reset, not ended cleanly, when the page goes away mid-transfer', async () => {
    const page = await openPage()
    const pageId = await peerIdOf(page)
    await pick(page, node.peer.peerId)
    const size = 48 * 1024 * 1024
    await fillFileInPage(page, '#serve-file', 'big.bin', size, 3)
    await page.fill('#serve-host', '127.0.0.1')
    await page.fill('#serve-port', '0')
    await page.click('#serve-form button[type=submit]')
    await page.locator('#serve-result[data-state="done"]').waitFor({ timeout: 15_000 })
    const port = Number(await page.locator('#serve-result').getAttribute('data-port'))
    const client = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true })
    client.on('error', () => {})
    const w = watch(client, 1024 * 1024)
    client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')
    await within('1 MiB of the served file', w.paused, 20_000)
    await page.context().close() // the page goes away with the download in flight
    await within('the Node peer to lose the page', (async () => { while (node.mappings().some((m) => m.peerId === pageId)) await new Promise((resolve) => setTimeout(resolve, 50)) })(), 15_000)
    w.resume()
    const outcome = await within('the download to close', w.outcome, 15_000)
    expect(wasReset(outcome), `a reset, got ${JSON.stringify(outcome)}`).toBe(true)
    expect(outcome.bytes).toBeLessThan(size)
  }, 60_000)

  it('a fetch through a Node peer that drops mid-response reports an error, never a short success', async () => {
    // A service that sends a head promising 1 MB, 1000 bytes of body, then waits.
    const held = new Set<net.Socket>()
    const stall = net.createServer((socket) => {
      held.add(socket)
      socket.on('error', () => {})
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n${'x'.repeat(1000)}`)
    })
    await new Promise<void>((resolve) => stall.listen(0, '127.0.0.1', resolve))
    const stallPort = (stall.address() as net.AddressInfo).port
    const other = createSockAgent(await createPeer({ server: server.url() }), { host: createNodeHost(), allow: [`connect/tcp:127.0.0.1:${stallPort}`] })
    try {
      const page = await openPage()
      await peerIdOf(page)
      await pick(page, other.peer.peerId)
      await page.fill('#fetch-host', '127.0.0.1')
      await page.fill('#fetch-port', String(stallPort))
      await page.click('#fetch-form button[type=submit]')
      await within('the service to get the request', (async () => { while (held.size === 0) await new Promise((resolve) => setTimeout(resolve, 50)) })(), 15_000)
      await other.peer.close() // the peer drops from the server, as a crash would
      await page.locator('#fetch-result[data-state="failed"]').waitFor({ timeout: 15_000 })
      expect(await page.locator('#fetch-result').innerText()).toMatch(/\(E_[A-Z_]+\)$/)
    } finally {
      await other.close()
      stall.close()
      for (const s of held) s.destroy()
    }
  }, 60_000)

  it('cancel from the receiving side stops both sides', async () => {
    const a = await openPage()
    const b = await openPage()
    const idB = await peerIdOf(b)
    await peerIdOf(a)
    await pick(a, idB)
    await fillFileInPage(a, '#file-input', 'huge.bin', 32 * 1024 * 1024, 1)
    // The receiver's Cancel is pressed the moment its row appears, while bytes still flow: a click
    // from the test could come after a fast transfer had finished (and the button was disabled).
    await b.evaluate(() => {
      const list = document.getElementById('transfers') as HTMLElement
      new MutationObserver((_, observer) => {
        const button = list.querySelector<HTMLButtonElement>('li[data-direction="from"] button')
        if (button === null) return
        observer.disconnect()
        button.click()
      }).observe(list, { childList: true, subtree: true })
    })
    await a.click('#file-form button[type=submit]')
    await answerFile(b, 'accept')
    await b.locator('#transfers li[data-direction="from"]').waitFor({ timeout: 20_000 })
    await b.locator('#transfers li[data-direction="from"][data-state="failed"]').waitFor({ timeout: 10_000 })
    await a.locator('#transfers li[data-direction="to"][data-state="failed"]').waitFor({ timeout: 10_000 })
    expect(await a.locator('#transfers li[data-direction="to"] .result').innerText()).toContain('Cancelled by the receiver')
  }, 60_000)

  /** Run `starsock listen --files DIR` with `flags`; `event` settles with its first JSON event of a name. */
  const listenFiles = (dir: string, flags: string[]): { proc: ReturnType<typeof spawn>, event: (name: string) => Promise<Record<string, unknown>> } => {
    const proc = spawn(process.execPath, [BIN, 'listen', '--server', server.url(), '--key', join(dir, 'key'), '--files', join(dir, 'in'), '--json', ...flags], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    proc.stdout?.on('data', (d: Buffer) => { out += d.toString() })
    const event = async (name: string): Promise<Record<string, unknown>> => await within(`a "${name}" event from starsock listen`, (async () => {
      for (;;) {
        const line = out.split('\n').find((l) => l.includes(`"event":"${name}"`))
        if (line !== undefined) return JSON.parse(line) as Record<string, unknown>
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })(), 20_000)
    return { proc, event }
  }

  it('sends a file from the page to a Node peer running `starsock listen --files` with a file rule', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'starsock-files-'))
    const { proc, event } = listenFiles(dir, ['--allow', 'file:*'])
    try {
      const listenerId = String((await event('ready')).peerId)
      const page = await openPage()
      await peerIdOf(page)
      await pick(page, listenerId)
      const file = Buffer.from(testBytes(2 * 1024 * 1024, 3))
      await page.setInputFiles('#file-input', { name: '../../evil name.bin', mimeType: 'application/octet-stream', buffer: file })
      await page.click('#file-form button[type=submit]')
      const saved = await event('file')
      expect(saved).toMatchObject({ ok: true, size: file.byteLength, sha256: createHash('sha256').update(file).digest('hex'), name: 'evil name.bin' })
      expect(await event('offer')).toMatchObject({ allowed: true, by: 'rule', rule: 'file:*', offer: 'file "../../evil name.bin", 2.0 MiB (2097152 bytes)' })
      expect(readdirSync(join(dir, 'in'))).toHaveLength(1)
      expectBytes(readFileSync(String(saved.path)), file, 'the saved file')
      await page.locator('#transfers li[data-direction="to"][data-state="done"]').waitFor({ timeout: 10_000 })
    } finally {
      proc.kill('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)

  it('a file to `starsock listen --files` with no file rule and nobody to ask is refused before a byte is sent, and the page says so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'starsock-files-'))
    const { proc, event } = listenFiles(dir, ['--no-prompt'])
    try {
      const listenerId = String((await event('ready')).peerId)
      const page = await openPage()
      await peerIdOf(page)
      await pick(page, listenerId)
      await page.setInputFiles('#file-input', { name: 'unwanted.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(100_000, 9) })
      await page.click('#file-form button[type=submit]')
      const row = page.locator('#transfers li[data-direction="to"][data-state="declined"]')
      await row.waitFor({ timeout: 15_000 })
      expect(await row.getAttribute('data-code')).toBe('E_DENIED')
      expect(await row.locator('.result').innerText()).toMatch(/^Declined by .+: No rule allows file "unwanted\.bin", 97\.7 KiB \(100000 bytes\) \(E_DENIED\)$/)
      expect(await event('offer')).toMatchObject({ allowed: false, code: 'E_DENIED' })
      expect(readdirSync(join(dir, 'in'))).toEqual([])
    } finally {
      proc.kill('SIGTERM')
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)

  it('is usable with the keyboard, fits a narrow screen, and makes a new identity that persists', async () => {
    const context = await browser.newContext({ viewport: { width: 380, height: 800 } })
    contexts.push(context)
    const page = await context.newPage()
    await page.goto(server.url() + '/')
    await peerIdOf(page)
    const item = page.locator(`#peer-list li[data-peer="${node.peer.peerId}"]`)
    await item.waitFor({ timeout: 15_000 })
    await item.focus()
    await page.keyboard.press('Enter')
    expect(await item.getAttribute('aria-selected')).toBe('true')
    await page.keyboard.press('Tab')
    const wide = await page.evaluate(() => [...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > window.innerWidth).map((e) => `${e.tagName}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`))
    expect(wide).toEqual([])
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBe(380) // nothing wider than the screen
    mkdirSync(ARTIFACTS, { recursive: true })
    await page.screenshot({ path: `${ARTIFACTS}page-narrow.png`, fullPage: true })
    // New identity: another peer id, joined again; a reload keeps the new one (IndexedDB).
    const before = await peerIdOf(page)
    await page.click('#new-identity')
    await page.waitForFunction((old) => { const id = document.getElementById('my-id')?.textContent ?? ''; return id !== old && id.startsWith('12D3KooW') }, before, { timeout: 15_000 })
    const after = await page.locator('#my-id').innerText()
    await page.locator('#state[data-state="joined"]').waitFor({ timeout: 15_000 })
    await page.reload()
    expect(await peerIdOf(page)).toBe(after)
  }, 60_000)
})

async function expectText (locator: ReturnType<Page['locator']>, text: string): Promise<void> {
  await locator.filter({ hasText: text }).waitFor({ timeout: 15_000 })
}
