/**
 * The `page` scenario: the page's file transfer between two real Chromium pages (Debian's
 * /usr/bin/chromium through playwright-core) through our server, end-to-end encrypted (the
 * default; ChaCha20-Poly1305 from `@noble/ciphers` in JavaScript) beside plaintext mode
 * (`?insecure=1`), in the same run. Each mode has its own pair of pages, kept open (warm); each is
 * warmed up, then measured in interleaved repeats (`bench/repeat.ts`) with the server's and all of
 * Chromium's CPU time per 64 MiB.
 *
 * A run makes a file of random bytes in the sending page (once per size), sends it through the
 * page's own form, and takes the receiving row's time (`data-seconds`: from the file's header to
 * the last byte checked, what the page's progress shows) for the MiB/s. The sender's SHA-256 of
 * the whole file before the offer is outside that time; it is in the CPU figures, as the making
 * of the file is (once per size, in the warm-up).
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Browser, Page } from 'playwright-core'
import { launchChromium } from '../test/helpers/browser.ts'
import { answerFile } from '../test/helpers/files.ts'
import { childPids, startOurs, type ServerUnderTest } from './procs.ts'
import { measurePaths, recordPath, WARMUP_BYTES, type Path } from './repeat.ts'
import type { Row } from './rows.ts'

const MiB = 1024 * 1024
/** How long one transfer may take (32 MiB at under 0.3 MiB/s is not worth waiting for). */
const RUN_LIMIT_MS = 120_000
const GROUP = 'page'
const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** What the scenario needs from the harness. */
export interface PageBenchContext {
  /** Bytes of each measured transfer. */
  bytes: number
  /** Measured runs of each mode. */
  repeats: number
  record: (row: Row) => void
}

/** The pid of the Chromium this process launched (its browser process; the renderers are its descendants). */
function chromiumPid (): number {
  const pid = childPids(process.pid).find((p) => {
    try { return /chrom/.test(readFileSync(`/proc/${p}/comm`, 'utf8')) } catch { return false }
  })
  if (pid === undefined) throw new Error('no Chromium child process found')
  return pid
}

/** A sending and a receiving page on `server`, in one mode, joined and aware of each other. */
async function pagePair (browser: Browser, server: ServerUnderTest, search: string): Promise<{ a: Page, b: Page, idB: string }> {
  const open = async (): Promise<{ page: Page, id: string }> => {
    const page = await (await browser.newContext()).newPage()
    await page.goto(`${server.url}/${search}`)
    await page.locator('#state[data-state="joined"]').waitFor({ timeout: 30_000 })
    return { page, id: await page.locator('#my-id').innerText() }
  }
  const a = await open()
  const b = await open()
  await a.page.locator(`#peer-list li[data-peer="${b.id}"]`).click({ timeout: 30_000 })
  return { a: a.page, b: b.page, idB: b.id }
}

/** Send a file of `bytes` random bytes from `a` to `b` through the page's form; settles with the receiver's MiB/s. */
async function sendThroughPage (a: Page, b: Page, bytes: number): Promise<{ mibPerSecond: number }> {
  // Rows of earlier runs go (and the received files' blob URLs with them), so the page stays small.
  for (const page of [a, b]) {
    await page.evaluate(() => {
      const list = document.getElementById('transfers') as HTMLElement
      for (const link of list.querySelectorAll('a[download]')) URL.revokeObjectURL((link as HTMLAnchorElement).href)
      list.replaceChildren()
    })
  }
  // New random bytes every run: the same file offered again by a verified sender would be resumed
  // from the copy the receiver already has (no bytes moved), and measure nothing.
  await a.evaluate((size) => {
    const data = new Uint8Array(size)
    for (let at = 0; at < size; at += 65536) crypto.getRandomValues(data.subarray(at, at + 65536))
    const file = new File([data], `bench-${size}.bin`, { type: 'application/octet-stream' })
    const files = new DataTransfer()
    files.items.add(file)
    ;(document.getElementById('file-input') as HTMLInputElement).files = files.files
  }, bytes)
  await a.click('#file-form button[type=submit]')
  await answerFile(b, 'accept', undefined, RUN_LIMIT_MS)
  const row = b.locator('#transfers li[data-direction="from"]')
  const ended = ':is([data-state="done"], [data-state="failed"], [data-state="interrupted"])'
  await b.locator(`#transfers li[data-direction="from"]${ended}`).waitFor({ timeout: RUN_LIMIT_MS })
  await a.locator(`#transfers li[data-direction="to"]${ended}`).waitFor({ timeout: 30_000 })
  if (await row.getAttribute('data-state') !== 'done') throw new Error(`the transfer failed: ${await row.locator('.result').innerText()}`)
  const offset = Number(await row.getAttribute('data-offset') ?? 0)
  if (offset !== 0) throw new Error(`the transfer resumed at ${offset}: it did not move the whole file`)
  const seconds = Number(await row.getAttribute('data-seconds'))
  if (!(seconds > 0)) throw new Error(`the receiving row has no time (${String(seconds)})`)
  return { mibPerSecond: bytes / MiB / seconds }
}

/** Run the scenario; the server and Chromium it starts are stopped before it settles. */
export async function pageBench ({ bytes, repeats, record }: PageBenchContext): Promise<void> {
  // The server serves the page built into dist/web: the project's own build (as `npm start` and
  // `npm run bench`'s prebench run it), so dist/ stays whole. A Vite build of the page alone left
  // dist/web without its .br and .gz beside a fresh build stamp, and `npm test` then failed until
  // a forced rebuild.
  const built = spawnSync(process.execPath, [`${ROOT}scripts/build.js`, '--if-stale'], { cwd: ROOT, stdio: 'inherit' })
  if (built.status !== 0) throw new Error(`the build failed (exit ${String(built.status ?? built.signal)})`)
  const server = await startOurs()
  let browser: Browser | undefined
  try {
    browser = await launchChromium()
    const chromium = chromiumPid()
    const encrypted = await pagePair(browser, server, '')
    const plaintext = await pagePair(browser, server, '?insecure=1')
    const hops = [{ role: 'server', pid: () => server.proc.pid, gc: true }, { role: 'Chromium (all processes)', pid: () => chromium }]
    const paths: Path[] = [
      { name: 'plaintext', run: async (n) => await sendThroughPage(plaintext.a, plaintext.b, n), hops },
      { name: 'encrypted', run: async (n) => await sendThroughPage(encrypted.a, encrypted.b, n), hops }
    ]
    // One warm-up run, not `WARMUP_RUNS`: at under 20 MiB/s through Chromium, 1 GiB would take a minute a path.
    const m = await measurePaths(paths, { bytes, streams: 1, repeats, warmupBytes: WARMUP_BYTES, warmupRuns: 1 })
    const label = `page to page, ${bytes / MiB} MiB`
    const plain = m.get('plaintext')
    const cpu = (role: string): { what: string, value: number } => ({ what: 'plaintext', value: plain?.cpu[role] ?? NaN })
    recordPath(plain, paths[0] as Path, { group: GROUP, what: 'file transfer, plaintext mode', label }, record)
    recordPath(m.get('encrypted'), paths[1] as Path, {
      group: GROUP,
      what: 'file transfer, end-to-end encrypted',
      label,
      reference: { what: 'plaintext', value: plain?.value ?? NaN },
      note: 'ChaCha20-Poly1305 from @noble/ciphers (JavaScript) in both pages',
      cpuReference: { server: cpu('server'), 'Chromium (all processes)': cpu('Chromium (all processes)') }
    }, record)
  } finally {
    await browser?.close()
    await server.proc.stop()
  }
}
