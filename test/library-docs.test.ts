/**
 * The examples of docs/library.md, run as they are written (ports and the server's address
 * replaced, each replacement checked), by package name against the built package: a plain server,
 * attaching to plain Node, Express and Fastify, the Node client with a tunnel, and the browser
 * bundle in real Chromium.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer as createNetServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createPeer } from '../client/peer.ts'
import { createServer, type StarsockServer } from '../server/server.ts'
import { launchChromium, serveStatic } from './helpers/browser.ts'
import { readAll } from './helpers/connections.ts'
import { startServer, waitFor, within } from './helpers/server.ts'
import { tcpEcho } from './helpers/sockets.ts'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const DOC = readFileSync(join(ROOT, 'docs', 'library.md'), 'utf8')

/** The ```js blocks of the doc, by the heading above each (the first block under it). */
function examples (): Map<string, string> {
  const blocks = new Map<string, string>()
  let heading = ''
  const lines = DOC.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? ''
    if (line.startsWith('#')) heading = line.replace(/^#+ /, '')
    if (line === '```js') {
      const end = lines.indexOf('```', i + 1)
      if (!blocks.has(heading)) blocks.set(heading, lines.slice(i + 1, end).join('\n'))
      i = end
    }
  }
  return blocks
}

/** The doc's example under `heading`, with each `[from, to]` replaced (each must be there once). */
function example (heading: string, replacements: Array<[string, string]>): string {
  let code = examples().get(heading)
  if (code === undefined) throw new Error(`docs/library.md has no js example under "${heading}"`)
  for (const [from, to] of replacements) {
    expect(code.split(from).length - 1, `"${from}" once in the example under "${heading}"`).toBe(1)
    code = code.replace(from, to)
  }
  return code
}

// Inside the package, so that `import ... from 'starsock/server'` resolves to this package
// (self-reference through its `exports`), as it does in a project that installed it.
const DIR = (() => {
  mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true })
  return mkdtempSync(join(ROOT, 'test-artifacts', 'library-docs-'))
})()

/** Run `code` as an ES module with node; settles with what it printed after `RESULT `. */
async function run (name: string, code: string): Promise<Record<string, unknown>> {
  const file = join(DIR, `${name}.mjs`)
  writeFileSync(file, code)
  const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  try {
    const code = await within(`the ${name} example to exit`, new Promise<number | null>((resolve) => child.once('exit', resolve)), 30_000)
    const line = out.split('\n').find((l) => l.startsWith('RESULT '))
    if (code !== 0 || line === undefined) throw new Error(`the ${name} example exited with ${String(code)}:\n${out}\n${err}`)
    return { ...JSON.parse(line.slice(7)) as Record<string, unknown>, stdout: out }
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL')
  }
}

/** What the test adds after an attach example: two peers through it, its routes and the app's, then close. */
const ATTACH_CHECK = `
;{
const { once } = await import('node:events')
const { createPeer } = await import('starsock')
if (!starsock.http.listening) await once(starsock.http, 'listening')
const base = starsock.url()
const a = await createPeer({ server: base })
const b = await createPeer({ server: base })
b.handle(async (conn) => { for await (const c of conn) await conn.write(c); await conn.closeWrite() })
const conn = await a.dial(b.peerId)
await conn.write(new TextEncoder().encode('ping'))
await conn.closeWrite()
let echoed = ''
for await (const c of conn) echoed += new TextDecoder().decode(c)
const health = await (await fetch(new URL('healthz', base))).text()
const page = (await fetch(base)).status
const app = await (await fetch(new URL('/', base))).text()
await a.close()
await b.close()
await starsock.close()
const afterClose = await (await fetch(new URL('/', base))).text()
console.log('RESULT ' + JSON.stringify({ base, echoed, health, page, app, afterClose, listening: starsock.http.listening }))
process.exit(0)
}
`

async function freePort (): Promise<number> {
  const s = createNetServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as AddressInfo
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

describe('docs/library.md, its examples run', () => {
  afterAll(() => { rmSync(DIR, { recursive: true, force: true }) })

  it('A server of its own', async () => {
    const code = example('A server of its own', [["listen(9090, '0.0.0.0')", "listen(0, '127.0.0.1')"]]) + `
const url = server.url()
const health = await (await fetch(url + '/healthz')).text()
await server.close()
console.log('RESULT ' + JSON.stringify({ url, health }))
process.exit(0)
`
    expect(await run('own-server', code)).toMatchObject({ url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), health: 'ok\n' })
  })

  it.each<[string, Array<[string, string]>]>([
    ['Plain Node', [['http.listen(8080)', "http.listen(0, '127.0.0.1')"]]],
    ['Express', [['app.listen(8080)', "app.listen(0, '127.0.0.1')"]]],
    ['Fastify', [['{ port: 8080 }', "{ port: 0, host: '127.0.0.1' }"]]]
  ])('%s: two peers through the attached server, its routes under /starsock/, the app\'s own at /, still after close()', async (heading, replacements) => {
    const result = await run(`attach-${heading.split(' ')[0]?.toLowerCase() ?? ''}`, example(heading, replacements) + ATTACH_CHECK)
    expect(result).toMatchObject({
      base: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/starsock\/$/),
      echoed: 'ping',
      health: 'ok\n',
      page: 200,
      app: 'my app\n',
      afterClose: 'my app\n',
      listening: true
    })
  })

  it('The Node client: an echo and a TCP tunnel', async () => {
    const server = await startServer()
    const service = await tcpEcho()
    const port = await freePort()
    try {
      const code = example('The Node client', [
        ["'http://127.0.0.1:9090'", `'${server.url()}'`],
        ["'connect/tcp:127.0.0.1:22'", `'connect/tcp:127.0.0.1:${service.port}'`],
        ['port: 2222', `port: ${port}`],
        ['port: 22 }', `port: ${service.port} }`]
      ]) + `
;{
const net = await import('node:net')
const socket = net.connect(${port}, '127.0.0.1')
socket.end('through the tunnel')
let through = ''
for await (const c of socket) through += c.toString()
await tunnel.close()
await peer.close()
await echo.close()
console.log('RESULT ' + JSON.stringify({ through }))
process.exit(0)
}
`
      const result = await run('node-client', code)
      expect(result.through).toBe('through the tunnel')
      expect(String(result.stdout).split('\n')[0]).toBe('hello')
    } finally {
      service.close()
      await server.close()
    }
  })
})

describe('docs/library.md, the browser example in real Chromium', () => {
  let browser: Browser
  let server: StarsockServer
  let site: { url: string, close: () => Promise<void> }
  beforeAll(async () => {
    browser = await launchChromium()
    server = createServer({ path: '/starsock/socket.io', shutdownGraceMs: 0 })
    await server.listen(0, '127.0.0.1')
    const code = example('The browser client', [
      ["'starsock/browser'", "'./starsock-client.js'"],
      ["'https://example.org/starsock/'", `'${server.url()}'`]
    ])
    site = await serveStatic(join(ROOT, 'dist', 'browser'), {
      '/': `<!doctype html><html><head><meta charset="utf-8"><title>example</title></head><body><script type="module">
${code}
window.peerId = peer.peerId
</script></body></html>`
    })
  }, 30_000)
  afterAll(async () => {
    await browser?.close()
    await site?.close()
    await server?.close()
  })

  it('joins the server with a prefix from the bundle, and echoes what a Node peer sends', async () => {
    const page = await browser.newPage()
    page.on('pageerror', (err) => { throw err })
    await page.goto(site.url)
    await page.waitForFunction(() => typeof (window as unknown as { peerId?: string }).peerId === 'string', undefined, { timeout: 20_000 })
    const id = await page.evaluate(() => (window as unknown as { peerId: string }).peerId)
    const node = await createPeer({ server: server.url() })
    try {
      await waitFor('the page peer in the Node peer\'s list', () => node.peers().some((p) => p.peerId === id))
      const conn = await node.dial(id)
      const back = readAll(conn)
      await conn.write(new TextEncoder().encode('hello page'))
      await conn.closeWrite()
      expect((await within('the page\'s echo', back, 15_000)).toString()).toBe('hello page')
    } finally {
      await node.close()
    }
  })
})
