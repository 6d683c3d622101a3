/**
 * Files on the page (issue 17): asked first, streamed to disk (OPFS), resumed after the sender
 * reloads, checked end to end. Real server, real Chromium pages, real Node peers, real files on
 * disk; one Firefox case.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, openSync, writeSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LineReader, writeLine } from '../client/mux/lines.ts'
import { StarsockError } from '../shared/errors.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import type { StarsockServer } from '../server/server.ts'
import { launchChromium, openJoinedPage } from './helpers/browser.ts'
import { answerFile } from './helpers/files.ts'
import { FILE_IDLE_TIMEOUT_MS, fileIdleTimeoutOf } from '../web/files.ts'
import { openInFirefox, type FirefoxPage } from './helpers/firefox.ts'
import { startServer, waitFor, within } from './helpers/server.ts'

const MiB = 1024 * 1024
const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url))

/** SHA-256 (hex) of a file on disk, read as a stream. */
async function sha256OfPath (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Write `bytes` random bytes to `path` in 8 MiB pieces; returns their SHA-256. */
function writeRandomFile (path: string, bytes: number): string {
  const hash = createHash('sha256')
  const fd = openSync(path, 'w')
  try {
    for (let at = 0; at < bytes; at += 8 * MiB) {
      const piece = randomBytes(Math.min(8 * MiB, bytes - at))
      hash.update(piece)
      writeSync(fd, piece)
    }
  } finally {
    closeSync(fd)
  }
  return hash.digest('hex')
}

/** The pids under `root` (itself included), from /proc. */
function processTree (root: number): number[] {
  const children = new Map<number, number[]>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      const list = children.get(ppid) ?? []
      list.push(Number(name))
      children.set(ppid, list)
    } catch {}
  }
  const out: number[] = []
  const walk = (pid: number): void => {
    out.push(pid)
    for (const c of children.get(pid) ?? []) walk(c)
  }
  walk(root)
  return out
}

/** Resident memory (bytes) of `pid` from /proc/<pid>/status (0 when it is gone). */
function rssOf (pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m?.[1] === undefined ? 0 : Number(m[1]) * 1024
  } catch {
    return 0
  }
}

/** The command line of `pid`. */
function cmdlineOf (pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')
  } catch {
    return ''
  }
}

describe('files on the page: asked first, to disk, resumed (Chromium)', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  const contexts: BrowserContext[] = []
  const dirs: string[] = []
  const agents: SockAgent[] = []

  const tempDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'starsock-page-files-'))
    dirs.push(dir)
    return dir
  }
  const open = async (): Promise<{ page: Page, id: string, context: BrowserContext }> => {
    const opened = await openJoinedPage(browser, server.url() + '/')
    contexts.push(opened.context)
    return opened
  }
  const pick = async (page: Page, peerId: string): Promise<void> => {
    await page.locator(`#peer-list li[data-peer="${peerId}"]`).click({ timeout: 30_000 })
  }
  /** A Node peer on the server, with `files` when it takes files. */
  const nodeAgent = async (options: Parameters<typeof createSockAgent>[1] = {}): Promise<SockAgent> => {
    const agent = createSockAgent(await createPeer({ server: server.url() }), options)
    agents.push(agent)
    return agent
  }
  const knows = async (agent: SockAgent, peerId: string): Promise<void> => {
    await waitFor(`the Node peer to see ${peerId}`, () => agent.peer.peers().some((p) => p.peerId === peerId), 30_000)
  }

  beforeAll(async () => {
    server = await startServer()
    browser = await launchChromium()
  }, 60_000)

  afterAll(async () => {
    for (const a of agents) {
      await a.close()
      await a.peer.close()
    }
    for (const c of contexts) await c.close()
    await browser?.close()
    await server?.close()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  it('a declined offer moves no bytes: a Node receiver that says no gets no channel, and a page that declines leaves the sender saying "Declined by"', async () => {
    // The page offers to a Node peer whose person says no: the bytes that reached it are counted.
    let asked = 0
    let files = 0
    const node = await nodeAgent({ ask: async () => { asked++; return false }, files: { onFile: () => { files++ } } })
    const a = await open()
    const b = await open()
    await pick(a.page, node.peer.peerId)
    const dir = tempDir()
    writeRandomFile(join(dir, 'no.bin'), 8 * MiB)
    await a.page.setInputFiles('#file-input', join(dir, 'no.bin'))
    await a.page.click('#file-form button[type=submit]')
    const row = a.page.locator('#transfers li[data-direction="to"][data-state="declined"]')
    await row.waitFor({ timeout: 60_000 })
    expect(await row.getAttribute('data-code')).toBe('E_DENIED')
    expect(await row.locator('.result').innerText()).toMatch(/^Declined by /)
    expect(asked).toBe(1)
    expect(files).toBe(0)
    const session = node.sessions().find((s) => s.peerId === a.id)
    // The offer, its answer and the handshake only: far less than one MiB of the file.
    expect(session?.bytesIn ?? 0).toBeLessThan(64 * 1024)
    expect(node.mappings()).toHaveLength(0)

    // Page to page: B's person declines; A says who declined, B received nothing.
    await pick(a.page, b.id)
    await a.page.setInputFiles('#file-input', join(dir, 'no.bin'))
    await a.page.click('#file-form button[type=submit]')
    await b.page.locator('#prompts .prompt[data-kind="file"]').waitFor({ timeout: 30_000 })
    mkdirSync(ARTIFACTS, { recursive: true })
    await b.page.screenshot({ path: `${ARTIFACTS}page-file-offer.png` })
    await answerFile(b.page, 'decline', a.id)
    const declined = a.page.locator(`#transfers li[data-direction="to"][data-peer="${b.id}"][data-state="declined"]`)
    await declined.waitFor({ timeout: 30_000 })
    expect(await declined.locator('.result').innerText()).toMatch(/^Declined by .*Peer denied file/)
    expect(await b.page.locator('#transfers li[data-direction="from"]').count()).toBe(0)
  }, 120_000)

  it('a 300 MiB file from a file on disk is received byte-exact into OPFS with the receiving page\'s memory growing far less than the file', async () => {
    const dir = tempDir()
    const path = join(dir, 'big.bin')
    const size = 300 * MiB
    const sha = writeRandomFile(path, size)
    const a = await open()
    // The receiver in a profile on disk (a fresh context of its own keeps OPFS in memory).
    const profile = tempDir()
    const receiver = await chromium.launchPersistentContext(profile, {
      executablePath: '/usr/bin/chromium', headless: true, acceptDownloads: true, viewport: { width: 1280, height: 900 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync']
    })
    contexts.push(receiver)
    const b = receiver.pages()[0] ?? await receiver.newPage()
    b.on('pageerror', (err) => { throw err })
    await b.goto(server.url() + '/')
    await b.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    const idB = await b.locator('#my-id').innerText()
    await waitFor('the receiver\'s id', () => /^[1-9A-Za-z]{40,}$/.test(idB), 1000)
    // Its browser process is the one started with this profile; its renderers are under it.
    const rootPid = processTree(1).find((pid) => cmdlineOf(pid).includes(`--user-data-dir=${profile}`) && !cmdlineOf(pid).includes('--type='))
    expect(rootPid, 'the receiving browser\'s process').toBeDefined()
    const renderers = (): number[] => processTree(rootPid as number).filter((pid) => cmdlineOf(pid).includes('--type=renderer'))
    const rendererRss = (): number => renderers().reduce((sum, pid) => sum + rssOf(pid), 0)
    // The whole receiving browser too: OPFS writes go through its browser process, which must not hold the file either.
    const browserRss = (): number => processTree(rootPid as number).reduce((sum, pid) => sum + rssOf(pid), 0)
    expect(renderers().length).toBeGreaterThan(0)

    await pick(a.page, idB)
    await a.page.setInputFiles('#file-input', path)
    await a.page.click('#file-form button[type=submit]')
    const before = rendererRss()
    const browserBefore = browserRss()
    await answerFile(b, 'accept', a.id, 60_000)
    const started = Date.now()
    let peak = before
    let browserPeak = browserBefore
    const sampler = setInterval(() => {
      peak = Math.max(peak, rendererRss())
      browserPeak = Math.max(browserPeak, browserRss())
    }, 200)
    const row = b.locator('#transfers li[data-direction="from"]')
    try {
      await b.locator('#transfers li[data-direction="from"]:is([data-state="done"], [data-state="failed"], [data-state="interrupted"])').waitFor({ timeout: 240_000 })
    } finally {
      clearInterval(sampler)
    }
    const seconds = (Date.now() - started) / 1000
    expect(await row.getAttribute('data-state'), await row.locator('.result').innerText()).toBe('done')
    expect(await row.getAttribute('data-sha256')).toBe(sha)
    console.log(`300 MiB page to page: ${(size / MiB / seconds).toFixed(1)} MiB/s (${seconds.toFixed(1)} s from accept to done); receiving renderers' RSS ${(before / MiB).toFixed(0)} MiB before, ${(peak / MiB).toFixed(0)} MiB at the peak (growth ${((peak - before) / MiB).toFixed(0)} MiB); the whole receiving browser's ${(browserBefore / MiB).toFixed(0)} MiB before, ${(browserPeak / MiB).toFixed(0)} MiB at the peak (growth ${((browserPeak - browserBefore) / MiB).toFixed(0)} MiB)`)
    // Held whole, the file alone would add 300 MiB. What grows is garbage between collections
    // (decrypted chunks, the mux window up to 8 MiB): 46-85 MiB in runs on a loaded 2-core machine.
    expect(peak - before).toBeLessThan(128 * MiB)
    // Nor the browser behind it (47 MiB seen): the file held anywhere in it would add 300 MiB.
    expect(browserPeak - browserBefore).toBeLessThan(200 * MiB)
    await a.page.locator('#transfers li[data-direction="to"][data-state="done"]').waitFor({ timeout: 30_000 })
    expect(await a.page.locator('#transfers li[data-direction="to"] .result').innerText()).toContain(sha)

    // What the Save link gives is the file (from OPFS, on disk): hashed here, not on the page's word.
    const download = b.waitForEvent('download', { timeout: 60_000 })
    await row.locator('a.save').click()
    const saved = await (await download).path()
    expect(await sha256OfPath(saved)).toBe(sha)
    expect(await row.locator('.saved').count()).toBe(1)
  }, 360_000)

  it('a transfer interrupted by reloading the sender resumes from the bytes written, moves fewer bytes the second time, and ends byte-exact', async () => {
    const dir = tempDir()
    const path = join(dir, 'resume.bin')
    const size = 96 * MiB
    const sha = writeRandomFile(path, size)
    const a = await open()
    const b = await open()
    await pick(a.page, b.id)
    await a.page.setInputFiles('#file-input', path)
    await a.page.click('#file-form button[type=submit]')
    await answerFile(b.page, 'accept', a.id, 60_000)
    const first = b.page.locator('#transfers li[data-direction="from"]').first()
    // Reload the sender once some bytes are written on the receiver.
    await b.page.waitForFunction(() => Number(document.querySelector('#transfers li[data-direction="from"]')?.getAttribute('data-moved') ?? 0) >= 4 * 1024 * 1024, undefined, { timeout: 60_000, polling: 20 })
    await a.page.reload()
    await b.page.locator('#transfers li[data-direction="from"][data-state="interrupted"]').waitFor({ timeout: 30_000 })
    const kept = Number(await first.getAttribute('data-moved'))
    expect(kept).toBeGreaterThan(0)
    expect(kept).toBeLessThan(size)
    console.log(`interrupted after ${(kept / MiB).toFixed(1)} MiB: ${await first.locator('.result').innerText()}`)

    // The reloaded sender lists it and resumes when the person picks the same file again.
    await a.page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    const listed = a.page.locator(`#transfers li.interrupted[data-sha256="${sha}"]`)
    await listed.waitFor({ timeout: 30_000 })
    expect(await listed.innerText()).toContain('Resume: pick the same file again')
    await listed.locator('input.resume-input').setInputFiles(path)
    const card = b.page.locator(`#prompts .prompt[data-kind="file"][data-peer="${a.id}"]`)
    await card.waitFor({ timeout: 60_000 })
    expect(await card.innerText()).toContain('resumes after them')
    await answerFile(b.page, 'accept', a.id, 60_000)
    const second = b.page.locator('#transfers li[data-direction="from"]').first()
    await b.page.locator('#transfers li[data-direction="from"]:is([data-state="done"], [data-state="failed"])').first().waitFor({ timeout: 120_000 })
    expect(await second.getAttribute('data-state'), await second.locator('.result').innerText()).toBe('done')
    const offset = Number(await second.getAttribute('data-offset'))
    const moved = Number(await second.getAttribute('data-moved'))
    console.log(`resumed at ${(offset / MiB).toFixed(1)} MiB; the second leg moved ${(moved / MiB).toFixed(1)} MiB of ${size / MiB} MiB`)
    expect(offset).toBeGreaterThan(0)
    expect(moved).toBe(size - offset)
    expect(moved).toBeLessThan(size)
    expect(await second.getAttribute('data-sha256')).toBe(sha)
    expect(await second.locator('.result').innerText()).toContain('resumed after')
    await a.page.locator('#transfers li[data-direction="to"][data-state="done"]').waitFor({ timeout: 30_000 })
    // Discard on the first leg's row now drops that row only: the partial is the second leg's file.
    await b.page.locator('#transfers li[data-direction="from"][data-state="interrupted"] button.discard').click()
    expect(await b.page.locator('#transfers li[data-direction="from"][data-state="interrupted"]').count()).toBe(0)
    // The bytes on disk, not the page's word: saved and hashed here.
    const download = b.page.waitForEvent('download', { timeout: 60_000 })
    await second.locator('a.save').click()
    expect(await sha256OfPath(await (await download).path())).toBe(sha)
    // Done: the sender forgets it (no "resume" row after another reload).
    await a.page.reload()
    await a.page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    expect(await a.page.locator('#transfers li.interrupted').count()).toBe(0)
  }, 300_000)

  /** Click *New identity* on `page`; settles with the new peer id once it is joined under it. */
  const newIdentity = async (page: Page): Promise<string> => {
    const before = await page.locator('#my-id').innerText()
    await page.click('#new-identity')
    await page.waitForFunction((old) => { const id = document.getElementById('my-id')?.textContent ?? ''; return id !== old && /^[1-9A-Za-z]{40,}$/.test(id) }, before, { timeout: 30_000 })
    await page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    return await page.locator('#my-id').innerText()
  }

  it('a New identity on the receiver starts afresh: the same file offered again is granted offset 0, not the old identity\'s partial', async () => {
    const node = await nodeAgent()
    const b = await open()
    await knows(node, b.id)
    const data = randomBytes(4 * MiB)
    const sha = createHash('sha256').update(data).digest('hex')
    const file = { name: 'whose.bin', size: data.byteLength, sha256: sha }
    // A partial on B: the Node sender sends 2 MiB, then resets the channel once the page has some.
    const first = node.offerFileAt(b.id, file)
    await answerFile(b.page, 'accept', node.peer.peerId)
    const granted = await within('the first grant', first, 30_000)
    expect(granted.offset).toBe(0)
    await writeLine(granted.channel, { ...file, offset: 0 })
    await granted.channel.write(data.subarray(0, 2 * MiB))
    await b.page.waitForFunction(() => Number(document.querySelector('#transfers li[data-direction="from"]')?.getAttribute('data-moved') ?? 0) > 0, undefined, { timeout: 30_000, polling: 20 })
    granted.channel.abort(new Error('the sender went'))
    const interrupted = b.page.locator('#transfers li[data-direction="from"][data-state="interrupted"]', { hasText: 'whose.bin' })
    await interrupted.waitFor({ timeout: 30_000 })
    const kept = Number(await interrupted.getAttribute('data-moved'))
    expect(kept).toBeGreaterThan(0)

    // The control: offered again to the same identity, it resumes after the bytes kept.
    const again = node.offerFileAt(b.id, file)
    await answerFile(b.page, 'accept', node.peer.peerId)
    const resumed = await within('the grant to the same identity', again, 30_000)
    expect(resumed.offset).toBe(kept)
    resumed.channel.abort(new Error('not now'))
    await b.page.locator('#transfers li[data-direction="from"][data-state="failed"]', { hasText: 'whose.bin' }).waitFor({ timeout: 30_000 })

    // New identity on B: the same sender offering the same file learns nothing of the old one.
    const newId = await newIdentity(b.page)
    await knows(node, newId)
    const fresh = node.offerFileAt(newId, file)
    const card = b.page.locator(`#prompts .prompt[data-kind="file"][data-peer="${node.peer.peerId}"]`)
    await card.waitFor({ timeout: 30_000 })
    expect(await card.innerText()).not.toContain('resumes after them')
    await answerFile(b.page, 'accept', node.peer.peerId)
    const afresh = await within('the grant to the new identity', fresh, 30_000)
    expect(afresh.offset).toBe(0)
    await writeLine(afresh.channel, { ...file, offset: 0 })
    await afresh.channel.write(data)
    await afresh.channel.closeWrite()
    expect(await within('the answer of the new identity', new LineReader(afresh.channel).next(), 30_000)).toEqual({ ok: true, sha256: sha })
  }, 120_000)

  it('a New identity on the sender does not list the old identity\'s interrupted sends for "Resume"', async () => {
    // A Node receiver that accepts, then resets the file's channel: the page's send stays remembered.
    const node = await nodeAgent({ ask: async () => true, files: { onFile: (channel) => { channel.abort(new Error('the receiver went')) } } })
    const a = await open()
    await pick(a.page, node.peer.peerId)
    const data = randomBytes(MiB + 3)
    const sha = createHash('sha256').update(data).digest('hex')
    await a.page.setInputFiles('#file-input', { name: 'mine.bin', mimeType: 'application/octet-stream', buffer: data })
    await a.page.click('#file-form button[type=submit]')
    await a.page.locator('#transfers li[data-direction="to"][data-state="failed"]').waitFor({ timeout: 60_000 })
    // The control: the same identity, reloaded, lists it.
    await a.page.reload()
    await a.page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    const listed = a.page.locator(`#transfers li.interrupted[data-sha256="${sha}"]`)
    await listed.waitFor({ timeout: 30_000 })
    await newIdentity(a.page)
    expect(await listed.count()).toBe(0)
    await a.page.reload()
    await a.page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    await a.page.locator('#transfers').waitFor({ state: 'attached', timeout: 10_000 })
    expect(await listed.count()).toBe(0)
  }, 120_000)

  it('a sender that stops sending fails the transfer after the idle timeout (?file-idle-timeout=2), with words; the partial stays, and the same offer resumes there', async () => {
    const node = await nodeAgent()
    const opened = await openJoinedPage(browser, server.url() + '/?file-idle-timeout=2')
    contexts.push(opened.context)
    const b = opened
    await knows(node, b.id)
    const data = randomBytes(3 * MiB)
    const sha = createHash('sha256').update(data).digest('hex')
    const file = { name: 'drip.bin', size: data.byteLength, sha256: sha }
    const first = node.offerFileAt(b.id, file)
    await answerFile(b.page, 'accept', node.peer.peerId)
    const { channel } = await within('the grant', first, 30_000)
    await writeLine(channel, { ...file, offset: 0 })
    await channel.write(data.subarray(0, MiB))
    // Then nothing: the channel stays open, no byte comes.
    const senderSaw = channel.read().then(() => 'no reset', (err: StarsockError) => err.code)
    const row = b.page.locator('#transfers li[data-direction="from"]', { hasText: 'drip.bin' })
    const stalled = Date.now()
    await b.page.locator('#transfers li[data-direction="from"][data-state="interrupted"]', { hasText: 'drip.bin' }).waitFor({ timeout: 20_000 })
    console.log(`the stalled transfer ended ${Date.now() - stalled} ms after the sender stopped: ${await row.locator('.result').innerText()}`)
    expect(await row.locator('.result').innerText()).toMatch(/^Interrupted after .*no byte came from .* for 2 s \(E_STREAM_IDLE\).*it resumes there/)
    expect(await within('the sender to see the reset', senderSaw, 10_000)).toBe('E_STREAM_IDLE')
    const kept = Number(await row.getAttribute('data-moved'))
    expect(kept).toBe(MiB)
    // The partial was kept (and its claim given back): the same offer resumes after it, and ends byte-exact.
    const again = node.offerFileAt(b.id, file)
    await answerFile(b.page, 'accept', node.peer.peerId)
    const resumed = await within('the resumed grant', again, 30_000)
    expect(resumed.offset).toBe(kept)
    await writeLine(resumed.channel, { ...file, offset: kept })
    await resumed.channel.write(data.subarray(kept))
    await resumed.channel.closeWrite()
    expect(await within('the answer after the resume', new LineReader(resumed.channel).next(), 30_000)).toEqual({ ok: true, sha256: sha })
  }, 120_000)

  it('the receiving row\'s rate (data-rate) matches the bytes moved: a Node peer sending at a paced 2 MiB/s shows 0.6x..1.5x of it while it runs', async () => {
    const RATE = 2 * MiB // bytes per second, paced by the clock (a late timer is caught up on the next tick)
    const SECONDS = 4
    const node = await nodeAgent()
    const b = await open()
    await knows(node, b.id)
    const data = randomBytes(RATE * SECONDS)
    const sha = createHash('sha256').update(data).digest('hex')
    const file = { name: 'paced.bin', size: data.byteLength, sha256: sha }
    const offered = node.offerFileAt(b.id, file)
    await answerFile(b.page, 'accept', node.peer.peerId)
    const { channel } = await within('the grant', offered, 30_000)
    await writeLine(channel, { ...file, offset: 0 })
    const row = b.page.locator('#transfers li[data-direction="from"]', { hasText: 'paced.bin' })
    const started = performance.now()
    let sent = 0
    const sending = (async () => {
      while (sent < data.byteLength) {
        const target = Math.min(data.byteLength, Math.floor(RATE * (performance.now() - started) / 1000))
        if (target > sent) {
          await channel.write(data.subarray(sent, target))
          sent = target
        }
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
      await channel.closeWrite()
    })()
    // The figure shown while it runs, from 1 s in (the meter's first samples span less than its 2 s window) to the last byte sent.
    const shown: number[] = []
    while (sent < data.byteLength) {
      await new Promise((resolve) => setTimeout(resolve, 200))
      if (performance.now() - started < 1000 || sent >= data.byteLength) continue
      const [state, rate] = await row.evaluate((li) => [li.getAttribute('data-state'), li.getAttribute('data-rate')])
      if (state === 'receiving' && rate !== null) shown.push(Number(rate))
    }
    await within('the paced sender to end', sending, 30_000)
    const paced = data.byteLength / ((performance.now() - started) / 1000)
    console.log(`paced at ${(RATE / MiB).toFixed(2)} MiB/s (${(paced / MiB).toFixed(2)} MiB/s over the whole send); the row showed ${shown.map((r) => (r / MiB).toFixed(2)).join(', ')} MiB/s`)
    expect(await within('the answer', new LineReader(channel).next(), 30_000)).toEqual({ ok: true, sha256: sha })
    expect(shown.length, 'rates shown while it ran').toBeGreaterThanOrEqual(8)
    for (const rate of shown) {
      expect(rate / RATE, `a shown rate of ${rate} B/s against ${RATE} B/s paced`).toBeGreaterThanOrEqual(0.6)
      expect(rate / RATE, `a shown rate of ${rate} B/s against ${RATE} B/s paced`).toBeLessThanOrEqual(1.5)
    }
  }, 90_000)

  it('a hostile Node sender that announces another size, sha256 or offset than it offered, or sends more bytes, fails cleanly on both sides', async () => {
    const node = await nodeAgent()
    const b = await open()
    await knows(node, b.id)
    const data = randomBytes(256 * 1024)
    const sha = createHash('sha256').update(data).digest('hex')
    const cases: Array<{ what: string, header: Record<string, unknown>, extra?: number, words: string }> = [
      { what: 'size', header: { name: 'x.bin', size: data.byteLength + 1, sha256: sha, offset: 0 }, words: 'file size 262145 refused' },
      { what: 'sha256', header: { name: 'x.bin', size: data.byteLength, sha256: 'f'.repeat(64), offset: 0 }, words: 'another sha256' },
      { what: 'offset', header: { name: 'x.bin', size: data.byteLength, sha256: sha, offset: 1000 }, words: 'starts at byte 1000, the grant at 0' },
      { what: 'more bytes', header: { name: 'x.bin', size: data.byteLength, sha256: sha, offset: 0 }, extra: 10, words: 'more bytes than announced' }
    ]
    for (const c of cases) {
      const offered = node.offerFileAt(b.id, { name: `hostile-${c.what}.bin`, size: data.byteLength, sha256: sha })
      await answerFile(b.page, 'accept', node.peer.peerId)
      const { channel, offset } = await within(`the grant of the ${c.what} case`, offered, 30_000)
      expect(offset).toBe(0)
      await writeLine(channel, c.header)
      const failedHere = (async (): Promise<string> => {
        try {
          await channel.write(data)
          if (c.extra !== undefined) await channel.write(randomBytes(c.extra))
          await channel.closeWrite()
          const answer = await new LineReader(channel).next()
          return `answered ${JSON.stringify(answer)}`
        } catch (err) {
          return (err as Error).message
        }
      })()
      const row = b.page.locator('#transfers li[data-direction="from"][data-state="failed"]', { hasText: `hostile-${c.what}.bin` })
      await row.waitFor({ timeout: 30_000 })
      expect(await row.locator('.result').innerText()).toContain(c.words)
      expect(await row.locator('a.save').count()).toBe(0)
      const sender = await within(`the Node sender to learn the ${c.what} case failed`, failedHere, 30_000)
      expect(sender, `the ${c.what} case on the sender`).not.toMatch(/"ok":true/)
      console.log(`hostile ${c.what}: the page says "${await row.locator('.result').innerText()}"; the sender: ${sender}`)
    }
  }, 180_000)

  it('"Save as…" streams into the file the person picked (the picker stubbed with a file handle, as the dialog would give)', async () => {
    const a = await open()
    const context = await browser.newContext()
    contexts.push(context)
    // Headless Chromium has no dialog: the picker answers with a real writable handle (in OPFS, outside the page's folder).
    await context.addInitScript(() => {
      (window as unknown as { showSaveFilePicker: unknown }).showSaveFilePicker = async (options: { suggestedName?: string }) => {
        (window as unknown as { suggested?: string }).suggested = options.suggestedName
        return await (await navigator.storage.getDirectory()).getFileHandle('picked.bin', { create: true })
      }
    })
    const b = await context.newPage()
    b.on('pageerror', (err) => { throw err })
    await b.goto(server.url() + '/')
    await b.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    const idB = await b.locator('#my-id').innerText()
    await pick(a.page, idB)
    const data = randomBytes(3 * MiB + 5)
    const sha = createHash('sha256').update(data).digest('hex')
    await a.page.setInputFiles('#file-input', { name: 'chosen.bin', mimeType: 'application/octet-stream', buffer: data })
    await a.page.click('#file-form button[type=submit]')
    await answerFile(b, 'saveas', a.id)
    const row = b.locator('#transfers li[data-direction="from"][data-state="done"]')
    await row.waitFor({ timeout: 60_000 })
    expect(await row.locator('.result').innerText()).toMatch(/^Saved to picked\.bin, SHA-256 [0-9a-f]{64}, the same as /)
    expect(await row.locator('a.save').count()).toBe(0)
    expect(await b.evaluate(() => (window as unknown as { suggested?: string }).suggested)).toBe('chosen.bin')
    const written = await b.evaluate(async () => {
      const file = await (await (await navigator.storage.getDirectory()).getFileHandle('picked.bin')).getFile()
      return [...new Uint8Array(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()))].map((x) => x.toString(16).padStart(2, '0')).join('')
    })
    expect(written).toBe(sha)
    await a.page.locator('#transfers li[data-direction="to"][data-state="done"]').waitFor({ timeout: 30_000 })
  }, 90_000)

  it('an accepted offer whose sender then gives up before any byte ends its row ("No bytes came"), not "waiting" for ever', async () => {
    const node = await nodeAgent()
    const b = await open()
    await knows(node, b.id)
    const mux = await node.session(b.id)
    const offered = mux.offer({ kind: 'file', proto: 'tcp', host: '', port: 0, name: 'never.bin', size: 1000, sha256: 'ab'.repeat(32) })
    await answerFile(b.page, 'accept', node.peer.peerId)
    const id = await within('the grant', offered, 30_000)
    const row = b.page.locator('#transfers li[data-direction="from"]', { hasText: 'never.bin' })
    await row.locator('.figures', { hasText: 'waiting for' }).waitFor({ timeout: 30_000 })
    // The sender kills the granted mapping without opening its channel.
    mux.kill(id, new StarsockError('E_KILLED', 'the sender gave up'))
    await b.page.locator('#transfers li[data-direction="from"][data-state="failed"]', { hasText: 'never.bin' }).waitFor({ timeout: 30_000 })
    expect(await row.locator('.result').innerText()).toMatch(/^No bytes came from /)
  }, 60_000)

  it('a file name from the wire is shown as text, never as HTML, in the prompt and the row', async () => {
    const node = await nodeAgent()
    const b = await open()
    await knows(node, b.id)
    const name = '<img src=x onerror="window.pwned=1">.bin'
    const data = randomBytes(1000)
    const sha = createHash('sha256').update(data).digest('hex')
    const offered = node.offerFileAt(b.id, { name, size: data.byteLength, sha256: sha })
    const card = b.page.locator('#prompts .prompt[data-kind="file"]')
    await card.waitFor({ timeout: 30_000 })
    expect(await card.innerText()).toContain(name)
    await answerFile(b.page, 'accept', node.peer.peerId)
    const { channel } = await within('the grant', offered, 30_000)
    await writeLine(channel, { name, size: data.byteLength, sha256: sha, offset: 0 })
    await channel.write(data)
    await channel.closeWrite()
    expect(await within('the answer', new LineReader(channel).next(), 30_000)).toEqual({ ok: true, sha256: sha })
    const row = b.page.locator('#transfers li[data-direction="from"][data-state="done"]')
    await row.waitFor({ timeout: 30_000 })
    expect(await row.innerText()).toContain(name)
    expect(await b.page.locator('#transfers img, #prompts img').count()).toBe(0)
    expect(await b.page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined()
    expect(await row.locator('a.save').getAttribute('download')).toBe(name)
  }, 60_000)

  it('drag and drop of two files onto the files section queues both; both arrive byte-exact', async () => {
    const a = await open()
    const b = await open()
    await pick(a.page, b.id)
    const one = randomBytes(3 * MiB)
    const two = randomBytes(2 * MiB)
    const dt = await a.page.evaluateHandle(({ one, two }) => {
      const transfer = new DataTransfer()
      transfer.items.add(new File([Uint8Array.from(atob(one), (c) => c.charCodeAt(0))], 'one.bin'))
      transfer.items.add(new File([Uint8Array.from(atob(two), (c) => c.charCodeAt(0))], 'two.bin'))
      return transfer
    }, { one: one.toString('base64'), two: two.toString('base64') })
    await a.page.dispatchEvent('#files', 'dragover', { dataTransfer: dt })
    await a.page.dispatchEvent('#files', 'drop', { dataTransfer: dt })
    const rows = a.page.locator('#transfers li[data-direction="to"]')
    await a.page.waitForFunction(() => document.querySelectorAll('#transfers li[data-direction="to"]').length === 2, undefined, { timeout: 10_000 })
    // One after the other to the same peer: while the first waits for the receiver, the second is queued.
    expect(await a.page.locator('#transfers li[data-direction="to"][data-state="queued"]').count()).toBe(1)
    expect(await rows.count()).toBe(2)
    await answerFile(b.page, 'accept', a.id)
    await answerFile(b.page, 'accept', a.id)
    await a.page.waitForFunction(() => document.querySelectorAll('#transfers li[data-direction="to"][data-state="done"]').length === 2, undefined, { timeout: 60_000 })
    const shas = await b.page.locator('#transfers li[data-direction="from"][data-state="done"]').evaluateAll((list) => list.map((li) => li.getAttribute('data-sha256')))
    mkdirSync(ARTIFACTS, { recursive: true })
    await b.page.locator('#files').screenshot({ path: `${ARTIFACTS}page-file-transfers.png` })
    expect(shas.sort()).toEqual([createHash('sha256').update(one).digest('hex'), createHash('sha256').update(two).digest('hex')].sort())
  }, 120_000)

  it('a second tab of the same browser leaves the first tab\'s received files alone: its Save still gives the file', async () => {
    const a = await open()
    const b = await open()
    await pick(a.page, b.id)
    const data = randomBytes(2 * MiB + 7)
    const sha = createHash('sha256').update(data).digest('hex')
    await a.page.setInputFiles('#file-input', { name: 'kept.bin', mimeType: 'application/octet-stream', buffer: data })
    await a.page.click('#file-form button[type=submit]')
    await answerFile(b.page, 'accept', a.id)
    const row = b.page.locator('#transfers li[data-direction="from"][data-state="done"]')
    await row.waitFor({ timeout: 60_000 })
    // Another tab on the same origin (the same OPFS) opens the page: it must not clean up what B still offers to save.
    const second = await b.context.newPage()
    await second.goto(server.url() + '/')
    // Its file store is open (and cleaned up what it may) once #files says where files go.
    await second.locator('#files[data-store="disk"]').waitFor({ state: 'attached', timeout: 30_000 })
    await second.close()
    const download = b.page.waitForEvent('download', { timeout: 30_000 })
    await row.locator('a.save').click()
    expect(await sha256OfPath(await (await download).path())).toBe(sha)
  }, 120_000)

  it('a browser without OPFS keeps a received file in memory and says so; it still arrives byte-exact', async () => {
    const a = await open()
    const context = await browser.newContext()
    contexts.push(context)
    // As a browser without the private file system: getDirectory is missing.
    await context.addInitScript(() => { Object.defineProperty(StorageManager.prototype, 'getDirectory', { value: undefined }) })
    const b = await context.newPage()
    b.on('pageerror', (err) => { throw err })
    await b.goto(server.url() + '/')
    await b.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    const idB = await b.locator('#my-id').innerText()
    await b.locator('#files-note', { hasText: 'kept in memory' }).waitFor({ timeout: 10_000 })
    await pick(a.page, idB)
    const data = randomBytes(2 * MiB)
    await a.page.setInputFiles('#file-input', { name: 'mem.bin', mimeType: 'application/octet-stream', buffer: data })
    await a.page.click('#file-form button[type=submit]')
    const card = b.locator('#prompts .prompt[data-kind="file"]')
    await card.waitFor({ timeout: 30_000 })
    expect(await card.innerText()).toContain('keeps it in memory')
    await answerFile(b, 'accept', a.id)
    const row = b.locator('#transfers li[data-direction="from"][data-state="done"]')
    await row.waitFor({ timeout: 60_000 })
    expect(await row.getAttribute('data-sha256')).toBe(createHash('sha256').update(data).digest('hex'))
    const download = b.waitForEvent('download', { timeout: 30_000 })
    await row.locator('a.save').click()
    expect(await sha256OfPath(await (await download).path())).toBe(createHash('sha256').update(data).digest('hex'))
  }, 120_000)
})

describe('?file-idle-timeout=SECONDS (fileIdleTimeoutOf)', () => {
  it.each([
    ['', undefined], ['?file-idle-timeout=2', 2000], ['?file-idle-timeout=600', 600_000], ['?file-idle-timeout=1', undefined],
    ['?file-idle-timeout=601', undefined], ['?file-idle-timeout=0', undefined], ['?file-idle-timeout=2.5', undefined], ['?file-idle-timeout=-5', undefined], ['?file-idle-timeout=x', undefined]
  ])('%j gives %j ms (anything out of 2..600 keeps the 60 s default)', (search, ms) => {
    expect(fileIdleTimeoutOf(search)).toBe(ms)
    expect(FILE_IDLE_TIMEOUT_MS).toBe(60_000)
  })
})

describe('files on the page in Debian\'s Firefox', () => {
  let server: StarsockServer & { port: number }
  let agent: SockAgent | undefined
  let page: FirefoxPage | undefined

  beforeAll(async () => { server = await startServer() })
  afterAll(async () => {
    await page?.close()
    await agent?.close()
    await agent?.peer.close()
    await server?.close()
  })

  it('a small file offered by a Node peer is asked, accepted, written to OPFS and saved byte-exact', async () => {
    agent = createSockAgent(await createPeer({ server: server.url() }), {})
    page = await openInFirefox(server.url() + '/')
    const p = page
    let id = ''
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      id = String(await p.evaluate("document.getElementById('state').dataset.state === 'joined' ? document.getElementById('my-id').textContent : ''"))
      if (/^12D3KooW/.test(id)) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    expect(id).toMatch(/^12D3KooW/)
    const node = agent
    await waitFor('the Node peer to see the Firefox page', () => node.peer.peers().some((x) => x.peerId === id), 30_000)
    const data = randomBytes(MiB + 123)
    const sha = createHash('sha256').update(data).digest('hex')
    const offered = node.offerFileAt(id, { name: 'firefox.bin', size: data.byteLength, sha256: sha })
    // A person's click, after the prompt armed its buttons.
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      if (await p.evaluate("document.querySelector('#prompts .prompt[data-kind=\"file\"]') !== null") === true) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    await new Promise((resolve) => setTimeout(resolve, 1000))
    await p.evaluate("document.querySelector('#prompts .prompt[data-kind=\"file\"] button[data-answer=\"accept\"]').click()")
    const { channel } = await within('the grant from Firefox', offered, 30_000)
    await writeLine(channel, { name: 'firefox.bin', size: data.byteLength, sha256: sha, offset: 0 })
    await channel.write(data)
    await channel.closeWrite()
    const answer = await within('the answer line from Firefox', new LineReader(channel).next(), 30_000)
    expect(answer).toEqual({ ok: true, sha256: sha })
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      if (await p.evaluate("document.querySelector('#transfers li[data-direction=from][data-state=done] a.save') !== null") === true) break
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    expect(await p.evaluate("document.querySelector('#transfers li[data-direction=from][data-state=done] a.save') !== null")).toBe(true)
    // The file in OPFS (what the Save link points at), read back and hashed in the page.
    const saved = await p.evaluate(`(async () => {
      const dir = await (await navigator.storage.getDirectory()).getDirectoryHandle('starsock-files')
      const out = []
      for await (const [, handle] of dir.entries()) {
        const bytes = await (await handle.getFile()).arrayBuffer()
        out.push([...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))].map((b) => b.toString(16).padStart(2, '0')).join(''))
      }
      return out.join(',')
    })()`)
    expect(saved).toBe(sha)
  }, 120_000)
})
