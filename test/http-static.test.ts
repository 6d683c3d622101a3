/**
 * The page served by the server: precompressed `.br`/`.gz` by Accept-Encoding, ETag and 304,
 * HEAD, cache headers, security headers (CSP on the page and the status page), paths confined to
 * the page folder, the status page when no page is built, and the page on a server with a token,
 * in real Chromium under the real CSP.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { packagePath } from '../server/package-root.ts'
import type { StarsockServer } from '../server/server.ts'
import { pickCoding, type Coding } from '../server/static-files.ts'
import { launchChromium } from './helpers/browser.ts'
import { answerFile } from './helpers/files.ts'
import { startServer, testBytes, within } from './helpers/server.ts'
// @ts-expect-error: a plain JavaScript build script, without declarations
import { precompress, PRECOMPRESS_MIN_BYTES } from '../scripts/precompress.js'

const WEB = packagePath('dist', 'web')
const BIN = packagePath('bin', 'starsock.js')
const ASSETS = join(WEB, 'assets')
const SCRIPT = readdirSync(ASSETS).find((name) => name.endsWith('.js')) as string
const STYLE = readdirSync(ASSETS).find((name) => name.endsWith('.css')) as string

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }

/** One raw HTTP request (the path sent as it is, no automatic decompression). */
async function get (base: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  const { hostname, port } = new URL(base)
  return await new Promise<Answer>((resolve, reject) => {
    const req = request({ host: hostname, port, path, method, headers }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }))
      res.on('error', reject)
    })
    req.setTimeout(5000, () => req.destroy(new Error(`no answer to ${method} ${path} within 5000 ms`)))
    req.on('error', reject)
    req.end()
  })
}

function decode (answer: Answer): Buffer {
  const coding = answer.headers['content-encoding']
  return coding === 'br' ? brotliDecompressSync(answer.body) : coding === 'gzip' ? gunzipSync(answer.body) : answer.body
}

const REQUIRED_CSP = ["default-src 'self'", "connect-src 'self'", "frame-ancestors 'self'", "object-src 'none'", "base-uri 'self'"]

function expectSecurityHeaders (answer: Answer): void {
  const csp = String(answer.headers['content-security-policy']).split(/;\s*/)
  for (const directive of REQUIRED_CSP) expect(csp).toContain(directive)
  expect(csp.join(';')).not.toMatch(/unsafe-inline|unsafe-eval/)
  expect(answer.headers['x-content-type-options']).toBe('nosniff')
  expect(answer.headers['referrer-policy']).toBe('no-referrer')
}

describe('the page over HTTP', () => {
  let server: StarsockServer & { port: number }
  const servers: StarsockServer[] = []
  const dirs: string[] = []

  beforeAll(async () => {
    server = await startServer()
  })
  afterEach(async () => {
    while (servers.length > 0) await servers.pop()?.close()
    while (dirs.length > 0) rmSync(dirs.pop() as string, { recursive: true, force: true })
  })
  afterAll(async () => { await server?.close() })

  const tempDir = (): string => {
    const dir = mkdtempSync(join(tmpdir(), 'starsock-static-'))
    dirs.push(dir)
    return dir
  }
  const serverOn = async (options: Parameters<typeof startServer>[0]): Promise<StarsockServer> => {
    const s = await startServer(options)
    servers.push(s)
    return s
  }

  it('the build wrote .br and .gz beside the page, its script and its style (not the browser bundle, which the server does not serve)', () => {
    for (const file of [join(WEB, 'index.html'), join(ASSETS, SCRIPT), join(ASSETS, STYLE)]) {
      const plain = readFileSync(file)
      expect(brotliDecompressSync(readFileSync(`${file}.br`)).equals(plain)).toBe(true)
      expect(gunzipSync(readFileSync(`${file}.gz`)).equals(plain)).toBe(true)
    }
    const bundle = packagePath('dist', 'browser', 'starsock-client.js')
    expect(existsSync(bundle)).toBe(true)
    expect(existsSync(`${bundle}.br`) || existsSync(`${bundle}.gz`)).toBe(false)
  })

  it('sends brotli, gzip or the file itself by Accept-Encoding (q-values, q=0), with Vary and the right Content-Length', async () => {
    const url = server.url()
    const plain = readFileSync(join(ASSETS, SCRIPT))
    const cases: Array<[Record<string, string>, string | undefined]> = [
      [{}, undefined],
      [{ 'accept-encoding': '' }, undefined],
      [{ 'accept-encoding': 'gzip, deflate, br' }, 'br'],
      [{ 'accept-encoding': 'gzip' }, 'gzip'],
      [{ 'accept-encoding': 'x-gzip' }, 'gzip'],
      [{ 'accept-encoding': 'br;q=0.5, gzip;q=0.9' }, 'gzip'],
      [{ 'accept-encoding': 'br;q=0, gzip' }, 'gzip'],
      [{ 'accept-encoding': 'br;q=0, gzip;q=0' }, undefined],
      [{ 'accept-encoding': 'gzip;q=0.5, identity' }, undefined],
      [{ 'accept-encoding': '*' }, 'br'],
      [{ 'accept-encoding': '*;q=0.3, br;q=0' }, 'gzip'],
      [{ 'accept-encoding': 'deflate' }, undefined],
      [{ 'accept-encoding': 'br;q=2' }, undefined],
      [{ 'accept-encoding': 'BR' }, 'br']
    ]
    for (const [headers, coding] of cases) {
      const answer = await get(url, `/assets/${SCRIPT}`, headers)
      expect({ headers, status: answer.status, coding: answer.headers['content-encoding'] }).toEqual({ headers, status: 200, coding })
      expect(answer.headers.vary).toBe('Accept-Encoding')
      expect(answer.headers['content-type']).toBe('text/javascript; charset=utf-8')
      expect(Number(answer.headers['content-length'])).toBe(answer.body.byteLength)
      expect(decode(answer).equals(plain)).toBe(true)
      if (coding !== undefined) expect(answer.body.byteLength).toBeLessThan(plain.byteLength / 2)
    }
  })

  it('pickCoding: the table', () => {
    const both = new Set<Coding>(['br', 'gzip'])
    const gz = new Set<Coding>(['gzip'])
    expect(pickCoding('br', gz)).toBe('identity')
    expect(pickCoding('br, gzip', gz)).toBe('gzip')
    expect(pickCoding(['gzip', 'br'], both)).toBe('br')
    expect(pickCoding('identity;q=0, gzip;q=0.1', both)).toBe('gzip')
    expect(pickCoding('identity;q=0', both)).toBe('identity')
    expect(pickCoding('br;q=0.001', both)).toBe('br')
    expect(pickCoding('br;q=0.001, identity;q=0.5', both)).toBe('identity')
    expect(pickCoding('gzip;q=0.5, identity', both)).toBe('identity')
    expect(pickCoding('br;q=0.001, identity;q=0', both)).toBe('br')
    expect(pickCoding('br;q=1.000, gzip;q=1', both)).toBe('br')
    expect(pickCoding('br;q=0.5;q=1', both)).toBe('br')
    expect(pickCoding('br;q=abc', both)).toBe('identity')
    expect(pickCoding('br;q=0.1234', both)).toBe('identity')
    expect(pickCoding(' , ;;, br ; q = 0.8 ', both)).toBe('br')
    expect(pickCoding('gzip', new Set())).toBe('identity')
  })

  it('ETag per representation, If-None-Match -> 304 with no body; HEAD has the headers of GET and no body', async () => {
    const url = server.url()
    for (const path of ['/', `/assets/${SCRIPT}`]) {
      for (const coding of ['br', 'gzip', 'identity']) {
        const headers = { 'accept-encoding': coding }
        const first = await get(url, path, headers)
        const tag = String(first.headers.etag)
        expect(tag).toMatch(/^"[\w-]+"$/)
        const again = await get(url, path, { ...headers, 'if-none-match': tag })
        expect(again.status).toBe(304)
        expect(again.body.byteLength).toBe(0)
        expect(again.headers.etag).toBe(tag)
        expect(again.headers['cache-control']).toBe(first.headers['cache-control'])
        expect((await get(url, path, { ...headers, 'if-none-match': `"nope", W/${tag}` })).status).toBe(304)
        expect((await get(url, path, { ...headers, 'if-none-match': '"nope"' })).status).toBe(200)
        const head = await get(url, path, headers, 'HEAD')
        expect(head.status).toBe(200)
        expect(head.body.byteLength).toBe(0)
        for (const h of ['etag', 'content-length', 'content-encoding', 'content-type', 'cache-control', 'vary', 'content-security-policy']) expect([path, coding, h, head.headers[h]]).toEqual([path, coding, h, first.headers[h]])
      }
      // A tag of one coding does not validate another: a cache must not get brotli for gzip.
      const br = await get(url, path, { 'accept-encoding': 'br' })
      expect((await get(url, path, { 'accept-encoding': 'gzip', 'if-none-match': String(br.headers.etag) })).status).toBe(200)
      expect((await get(url, path, { 'if-none-match': String(br.headers.etag) })).status).toBe(200)
    }
  })

  it('hashed assets are immutable, the page revalidates; the page and the status page carry the CSP and the security headers', async () => {
    const url = server.url()
    expect((await get(url, `/assets/${SCRIPT}`)).headers['cache-control']).toBe('public, max-age=31536000, immutable')
    expect((await get(url, `/assets/${STYLE}`)).headers['cache-control']).toBe('public, max-age=31536000, immutable')
    const page = await get(url, '/')
    expect(page.headers['cache-control']).toBe('no-cache')
    expect(page.body.toString()).toContain('<script type="module"')
    expectSecurityHeaders(page)
    expectSecurityHeaders(await get(url, '/index.html'))
    expectSecurityHeaders(await get(url, '/status'))
    expect((await get(url, '/status')).headers['content-security-policy']).toMatch(/style-src 'sha256-/)
    expect((await get(url, `/assets/${SCRIPT}`)).headers['x-content-type-options']).toBe('nosniff')
  })

  it('never leaves the page folder: .., encoded .., NUL, backslashes, dot files, .br/.gz by name, symlinks out (404, never the bytes)', async () => {
    const base = tempDir()
    const root = join(base, 'web')
    mkdirSync(join(root, 'assets'), { recursive: true })
    const secret = 'SECRET-OUTSIDE-THE-ROOT'
    writeFileSync(join(base, 'secret.txt'), secret)
    writeFileSync(join(root, '.hidden'), secret)
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>ok</title>')
    const script = 'console.log("a script of the page")\n'.repeat(100)
    writeFileSync(join(root, 'assets', 'app.js'), script)
    precompress(root)
    symlinkSync(join(base, 'secret.txt'), join(root, 'assets', 'link.js'))
    symlinkSync(base, join(root, 'up'))
    writeFileSync(join(root, 'inside.txt'), 'inside')
    symlinkSync(join(root, 'inside.txt'), join(root, 'assets', 'inside-link.txt'))
    const s = await serverOn({ webRoot: root })
    const url = s.url()
    const refused = [
      '/../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt', '/%2E%2E/secret.txt', '/%2e%2e%2fsecret.txt',
      '/assets/%2e%2e/%2e%2e/secret.txt', '/..%2fsecret.txt', '/..%5csecret.txt', '/assets%5c..%5c..%5csecret.txt',
      '/index.html%00', '/%00', '/index.html%00.js', '/.hidden', '/assets/./app.js', '/%2ehidden',
      '/assets/app.js.br', '/assets/app.js.gz', '/index.html.br', '/assets/link.js', '/up/secret.txt',
      '/assets/', '/assets', '/%E0%A4%A', '/%', '//secret.txt', '/' + 'a/'.repeat(500)
    ]
    for (const path of refused) {
      for (const headers of [{}, { 'accept-encoding': 'br, gzip' }] as Array<Record<string, string>>) {
        const answer = await get(url, path, headers)
        expect([path, answer.status]).toEqual([path, 404])
        expect(answer.body.toString()).not.toContain(secret)
        expect(answer.headers['content-encoding']).toBeUndefined()
      }
    }
    // What is inside still answers, a symlink that stays inside included.
    expect(decode(await get(url, '/assets/app.js', { 'accept-encoding': 'br' })).toString()).toBe(script)
    expect((await get(url, '/assets/app.js', { 'accept-encoding': 'br' })).headers['content-encoding']).toBe('br')
    expect((await get(url, '/assets/inside-link.txt')).body.toString()).toBe('inside')
    expect((await get(url, '/')).body.toString()).toContain('<title>ok</title>')
    // Other methods are refused.
    const post = await get(url, '/', {}, 'POST')
    expect([post.status, post.headers.allow]).toEqual([405, 'GET, HEAD'])
  })

  it('a file too big to hash (a sparse 3 GiB one) is served with an identity tag, read by no one on the event loop; the server lives on', async () => {
    const root = tempDir()
    writeFileSync(join(root, 'index.html'), '<!doctype html><title>ok</title>')
    truncateSync(join(root, 'index.html'), 3 * 1024 ** 3) // sparse: above what readFileSync can read
    writeFileSync(join(root, 'big.bin'), '')
    truncateSync(join(root, 'big.bin'), 20 * 1024 * 1024)
    const s = await serverOn({ webRoot: root })
    for (const [path, size] of [['/', 3 * 1024 ** 3], ['/big.bin', 20 * 1024 * 1024]] as const) {
      const head = await get(s.url(), path, {}, 'HEAD')
      expect([path, head.status, Number(head.headers['content-length'])]).toEqual([path, 200, size])
      expect(String(head.headers.etag)).toMatch(/^"i-[\w-]{22}"$/)
      const again = await get(s.url(), path, { 'if-none-match': String(head.headers.etag) }, 'HEAD')
      expect(again.status).toBe(304)
    }
    expect((await get(s.url(), '/healthz')).status).toBe(200)
  })

  it('a .br or .gz older than its file (left from an earlier build) is not sent', async () => {
    const root = tempDir()
    const text = 'body { color: red }\n'.repeat(200)
    writeFileSync(join(root, 'app.css'), 'old '.repeat(1000))
    precompress(root)
    await new Promise((resolve) => setTimeout(resolve, 20))
    writeFileSync(join(root, 'app.css'), text)
    const s = await serverOn({ webRoot: root })
    const answer = await get(s.url(), '/app.css', { 'accept-encoding': 'br, gzip' })
    expect(answer.headers['content-encoding']).toBeUndefined()
    expect(answer.body.toString()).toBe(text)
    // Compressed again, they are.
    precompress(root)
    const fresh = await get(s.url(), '/app.css', { 'accept-encoding': 'br, gzip' })
    expect(fresh.headers['content-encoding']).toBe('br')
    expect(decode(fresh).toString()).toBe(text)
  })

  it('without a built page (no folder, an empty one, or none configured) / is the status page, saying the page is not built', async () => {
    const empty = tempDir()
    for (const webRoot of [join(empty, 'missing'), empty, '']) {
      const s = await serverOn({ webRoot })
      for (const path of ['/', '/index.html']) {
        const answer = await get(s.url(), path)
        expect(answer.status).toBe(200)
        const html = answer.body.toString()
        expect(html).toContain('<h1>starsock</h1>')
        expect(html).toContain('relayedBytes')
        expect(html).toMatch(webRoot === '' ? /serves no page/ : /The page is not built/)
        if (webRoot !== '') expect(html).toContain('npm run build')
        expectSecurityHeaders(answer)
      }
      await servers.pop()?.close()
    }
  })

  it('with a token, / and /status say how to get in; the figures stay behind the token', async () => {
    const s = await serverOn({ token: 'page-s3cret-token', webRoot: '' })
    const home = (await get(s.url(), '/')).body.toString()
    expect(home).toContain('This server needs a token.')
    expect(home).toContain('/#token=&lt;token&gt;')
    expect(home).not.toContain('relayedBytes')
    expect(home).not.toContain('page-s3cret-token')
    const status = await get(s.url(), '/status', { authorization: 'Bearer page-s3cret-token' })
    expect(status.body.toString()).toContain('This server needs a token.')
    expect(status.body.toString()).toContain('relayedBytes')
    const refused = await get(s.url(), '/status')
    expect(refused.status).toBe(401)
    expect(refused.body.toString()).toMatch(/this server needs a token: .*Authorization: Bearer <token>.*\/#token=<token>/)
    // Without a token, no such line.
    expect((await get(server.url(), '/status')).body.toString()).not.toContain('needs a token')
  })

  it('under a prefix, the texts give the prefixed addresses; ?token= takes a base64 token with + and / as typed', async () => {
    const token = 'ab+cd/ef+gh=='
    const s = await serverOn({ token, webRoot: '', path: '/starsock/socket.io' })
    const origin = s.url().replace(/\/starsock\/$/, '')
    const home = (await get(origin, '/starsock/')).body.toString()
    expect(home).toContain('<code>/starsock/#token=&lt;token&gt;</code>')
    expect(home).toContain('<code>/starsock/status?token=&lt;token&gt;</code>')
    const refused = await get(origin, '/starsock/status')
    expect(refused.status).toBe(401)
    expect(refused.body.toString()).toContain('the page takes it as /starsock/#token=<token>')
    expect((await get(origin, `/starsock/status.json?token=${token}`)).status).toBe(200)
    expect((await get(origin, `/starsock/status.json?x=1&token=${encodeURIComponent(token)}`)).status).toBe(200)
    expect((await get(origin, '/starsock/status.json?token=ab%20cd/ef+gh==')).status).toBe(401)
    expect((await get(origin, '/starsock/status.json?token=%zz')).status).toBe(401)
    // The redirect to the prefix's `/` carries the security headers too.
    const redirect = await get(origin, '/starsock')
    expect([redirect.status, redirect.headers.location, redirect.headers['x-content-type-options'], redirect.headers['referrer-policy']]).toEqual([308, '/starsock/', 'nosniff', 'no-referrer'])
  })

  it('precompress: text assets of at least 1 KiB get .br and .gz, only when smaller; small, binary and incompressible files none', () => {
    const root = tempDir()
    mkdirSync(join(root, 'deep', 'er'), { recursive: true })
    const files: Record<string, Uint8Array | string> = {
      'small.js': 'x'.repeat(PRECOMPRESS_MIN_BYTES - 1),
      'page.html': '<p>hello</p>\n'.repeat(200),
      'deep/er/data.json': JSON.stringify({ list: Array.from({ length: 300 }, (_, i) => i) }),
      'noise.js': testBytes(8192),
      'image.png': new Uint8Array(8192)
    }
    for (const [name, data] of Object.entries(files)) writeFileSync(join(root, name), data)
    precompress(root)
    const made = readdirSync(root, { recursive: true }).map(String).filter((n) => /\.(br|gz)$/.test(n)).sort()
    expect(made).toEqual(['deep/er/data.json.br', 'deep/er/data.json.gz', 'page.html.br', 'page.html.gz'])
    // A missing folder is nothing to do, not an error.
    expect(precompress(join(root, 'missing')).files).toBe(0)
  })
})

/** A TCP port free on 127.0.0.1 a moment ago. */
async function freePort (): Promise<number> {
  const probe = createNetServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as AddressInfo
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  return port
}

describe('starsock serve (the compiled program)', () => {
  let child: ChildProcess | undefined
  afterEach(() => { if (child?.exitCode === null) child.kill('SIGKILL') })

  it('serves the page built into the package at /, precompressed, with its CSP; /status too', async () => {
    const port = await freePort()
    const proc = spawn(process.execPath, [BIN, 'serve', '--host', '127.0.0.1', '--port', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] })
    child = proc
    let errors = ''
    proc.stderr.on('data', (d: Buffer) => { errors += d.toString() })
    const url = `http://127.0.0.1:${port}`
    await within('starsock serve to answer /healthz', (async () => {
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`starsock serve exited with ${proc.exitCode}: ${errors}`)
        try {
          if ((await get(url, '/healthz')).status === 200) return
        } catch {}
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    })(), 15_000)
    const page = await get(url, '/', { 'accept-encoding': 'br' })
    expect(page.headers['content-encoding']).toBe('br')
    expect(decode(page).equals(readFileSync(join(WEB, 'index.html')))).toBe(true)
    expectSecurityHeaders(page)
    const script = await get(url, `/assets/${SCRIPT}`, { 'accept-encoding': 'gzip' })
    expect([script.status, script.headers['content-encoding'], script.headers['cache-control']]).toEqual([200, 'gzip', 'public, max-age=31536000, immutable'])
    const status = await get(url, '/status')
    expect(status.body.toString()).toContain('relayedBytes')
    expectSecurityHeaders(status)
  })
})

/** Violations of the CSP a page reports (collected from the first script on). */
async function violationsOf (page: Page): Promise<string[]> {
  return await page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations)
}

describe('the page in Chromium under its CSP', () => {
  let browser: Browser
  const contexts: BrowserContext[] = []
  const servers: StarsockServer[] = []

  beforeAll(async () => { browser = await launchChromium() }, 60_000)
  afterEach(async () => {
    while (contexts.length > 0) await contexts.pop()?.close()
    while (servers.length > 0) await servers.pop()?.close()
  })
  afterAll(async () => { await browser?.close() })

  /** A page in a context of its own that records CSP violations, from the console and the event. */
  const newPage = async (): Promise<{ page: Page, messages: string[] }> => {
    const context = await browser.newContext()
    contexts.push(context)
    await context.addInitScript(() => {
      const w = window as unknown as { cspViolations: string[] }
      w.cspViolations = []
      document.addEventListener('securitypolicyviolation', (e) => { w.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`) })
    })
    const page = await context.newPage()
    const messages: string[] = []
    page.on('console', (m) => { if (/Content Security Policy|Refused to/i.test(m.text())) messages.push(m.text()) })
    page.on('pageerror', (err) => { messages.push(`page error: ${err.message}`) })
    return { page, messages }
  }

  it('loads and joins with no CSP violation; two pages chat; the status page keeps its style', async () => {
    const server = await startServer()
    servers.push(server)
    const a = await newPage()
    const b = await newPage()
    await a.page.goto(server.url() + '/')
    await b.page.goto(server.url() + '/')
    for (const { page } of [a, b]) await page.locator('#state[data-state="joined"]').waitFor({ timeout: 20_000 })
    const idB = await b.page.locator('#my-id').innerText()
    await a.page.locator(`#peer-list li[data-peer="${idB}"]`).click({ timeout: 15_000 })
    await a.page.fill('#chat-text', 'hello under the CSP')
    await a.page.press('#chat-text', 'Enter')
    await b.page.locator('#messages', { hasText: 'hello under the CSP' }).waitFor({ timeout: 15_000 })
    // A file, and its "Save" link (a blob: URL), work under the policy.
    const file = Buffer.from(testBytes(50_000, 7))
    await a.page.setInputFiles('#file-input', { name: 'small.bin', mimeType: 'application/octet-stream', buffer: file })
    await a.page.click('#file-form button[type=submit]')
    // The receiving page asks its person first; its OPFS file and the Save link work under the policy.
    await answerFile(b.page, 'accept')
    const received = b.page.locator('#transfers li[data-direction="from"][data-state="done"]')
    await received.waitFor({ timeout: 20_000 })
    const [download] = await Promise.all([b.page.waitForEvent('download', { timeout: 10_000 }), received.locator('a[download]').click()])
    expect(readFileSync(await download.path()).equals(file)).toBe(true)
    // The server figures come from /status.json (a fetch the policy must allow).
    await a.page.locator('#server-figures dd').first().waitFor({ timeout: 10_000 })
    const csp = await a.page.evaluate(async () => (await fetch('/')).headers.get('content-security-policy'))
    expect(csp).toContain("frame-ancestors 'self'")
    for (const { page, messages } of [a, b]) {
      expect(await violationsOf(page)).toEqual([])
      expect(messages).toEqual([])
    }
    const status = await newPage()
    await status.page.goto(server.url() + '/status')
    expect(await status.page.evaluate(() => getComputedStyle(document.body).maxWidth)).toBe('640px')
    expect(await violationsOf(status.page)).toEqual([])
    expect(status.messages).toEqual([])
  }, 90_000)

  it('on a --token server: joins with #token= (which leaves the address bar), says "this server needs a token" without it and joins with the token typed in', async () => {
    // A base64 token: `+` and `/` typed into the address as they are (`+` is not a space).
    const token = 'page+token/0123456789=='
    const server = await startServer({ token })
    servers.push(server)

    const withToken = await newPage()
    await withToken.page.goto(`${server.url()}/?slot=t1#token=${token}`)
    await withToken.page.locator('#state[data-state="joined"]').waitFor({ timeout: 20_000 })
    expect(withToken.page.url()).toBe(`${server.url()}/?slot=t1`)
    expect(await withToken.page.locator('#token-form').isHidden()).toBe(true)
    // With the token the server figures show too (/status.json needs it).
    await withToken.page.locator('#server-figures dd').first().waitFor({ timeout: 10_000 })
    // A reload in the same tab joins again (the tab kept the token).
    await withToken.page.reload()
    await withToken.page.locator('#state[data-state="joined"]').waitFor({ timeout: 20_000 })

    const without = await newPage()
    await without.page.goto(`${server.url()}/`)
    await without.page.locator('#token-form').waitFor({ state: 'visible', timeout: 20_000 })
    expect(await without.page.locator('#token-text').innerText()).toContain('This server needs a token')
    expect(await without.page.locator('#state').innerText()).toBe('this server needs a token')
    // A new identity meanwhile fails the same way; still one field, and one join after it, as the new identity.
    const firstId = await without.page.locator('#my-id').innerText()
    await without.page.click('#new-identity')
    await without.page.waitForFunction((old) => document.getElementById('my-id')?.textContent !== old, firstId, { timeout: 10_000 })
    await without.page.locator('#state', { hasText: 'this server needs a token' }).waitFor({ timeout: 10_000 })
    const newId = await without.page.locator('#my-id').innerText()
    await without.page.fill('#token-input', token)
    await without.page.click('#token-form button[type=submit]')
    await without.page.locator('#state[data-state="joined"]').waitFor({ timeout: 20_000 })
    expect(await without.page.locator('#token-form').isHidden()).toBe(true)
    await withToken.page.locator(`#peer-list li[data-peer="${newId}"]`).waitFor({ timeout: 10_000 })
    // Joined once: a second join of the same identity would be refused (in use) and show.
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect([await without.page.locator('#state').getAttribute('data-state'), await without.page.locator('#identity-conflict').isHidden()]).toEqual(['joined', true])
    expect(await withToken.page.locator(`#peer-list li[data-peer="${firstId}"]`).count()).toBe(0)

    const wrong = await newPage()
    await wrong.page.goto(`${server.url()}/?token=wrong-token`)
    await wrong.page.locator('#token-form').waitFor({ state: 'visible', timeout: 20_000 })
    expect(await wrong.page.locator('#token-text').innerText()).toContain('refused the token')
    expect(wrong.page.url()).toBe(`${server.url()}/`)

    for (const { page, messages } of [withToken, without, wrong]) {
      expect(await violationsOf(page)).toEqual([])
      expect(messages).toEqual([])
    }
  }, 120_000)
})
