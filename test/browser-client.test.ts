import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { build } from 'vite'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Connection } from '../client/connection.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import type { StarsockServer } from '../server/server.ts'
import { launchChromium, serveStatic } from './helpers/browser.ts'
import { startServer, testBytes, waitFor, within } from './helpers/server.ts'
import { expectBytes } from './helpers/bytes.ts'

const PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>starsock test</title></head><body>
<script type="module">
  import * as starsock from './starsock-client.js'
  window.starsock = starsock
  window.ready = true
</script></body></html>`

/** The same deterministic bytes as `testBytes`, made in the page. */
const PAGE_BYTES = `(size, seed) => { const out = new Uint8Array(size); let x = seed >>> 0 || 1
  for (let i = 0; i < size; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; out[i] = x & 0xff } return out }`

describe('the Vite-built client in real Chromium', () => {
  let server: StarsockServer & { port: number }
  let site: { url: string, close: () => Promise<void> }
  let browser: Browser
  let page: Page
  let node: StarsockPeer
  const outDir = mkdtempSync(join(tmpdir(), 'starsock-browser-'))

  beforeAll(async () => {
    await build({ configFile: join(import.meta.dirname, '..', 'vite.config.ts'), mode: 'client', logLevel: 'warn', build: { outDir, sourcemap: false } })
    server = await startServer()
    site = await serveStatic(outDir, { '/': PAGE })
    browser = await launchChromium()
    page = await browser.newPage()
    await page.goto(site.url)
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true, undefined, { timeout: 10_000 })
    node = await createPeer({ server: server.url() })
  }, 60_000)

  afterAll(async () => {
    await node?.close()
    await browser?.close()
    await site?.close()
    await server?.close()
    rmSync(outDir, { recursive: true, force: true })
  })

  it('a page peer and a Node peer dial each other, end-to-end encrypted with the ids proved both ways (the bundle\'s @noble/ciphers AEAD), and echo 1 MiB byte-exact', async () => {
    const pagePeer = await page.evaluate(async ([serverUrl, makeBytes]) => {
      const s = (window as any).starsock
      const { identity } = await s.loadOrCreateBrowserIdentity('test')
      const peer = await s.createPeer({ server: serverUrl, identity })
      ;(window as any).peer = peer
      ;(window as any).makeBytes = (0, eval)(makeBytes)
      ;(window as any).incoming = []
      peer.handle(async (conn: any) => {
        ;(window as any).incoming.push({ secure: conn.secure, remotePeer: conn.remotePeer })
        for await (const chunk of conn) await conn.write(chunk)
        await conn.closeWrite()
      })
      return { peerId: peer.peerId, addr: peer.addr }
    }, [server.url(), PAGE_BYTES] as const)
    expect(pagePeer.peerId).toMatch(/^12D3KooW/)

    // Node dials the page
    await waitFor('Node to see the page peer', () => node.peers().some((p) => p.peerId === pagePeer.peerId))
    const data = testBytes(1024 * 1024, 5)
    const conn = await node.dial(pagePeer.peerId)
    expect({ secure: conn.secure, remotePeer: conn.remotePeer }).toEqual({ secure: true, remotePeer: pagePeer.peerId })
    const chunks: Uint8Array[] = []
    const reading = (async () => { for await (const c of conn) chunks.push(c) })()
    await conn.write(data)
    await conn.closeWrite()
    await within('echo through the page', reading, 20_000)
    expectBytes(Buffer.concat(chunks), data, 'the echo through the page')
    expect(await page.evaluate(() => (window as any).incoming)).toEqual([{ secure: true, remotePeer: node.peerId }])
    // Raw frames both ways: the page reads them as ArrayBuffers and sends them from its WebSocket.
    expect(server.rendezvous.relay.frames.out, 'frames to the page').toBeGreaterThan(0)
    expect(server.rendezvous.relay.frames.in, 'every frame from Node and from the page went on as a frame').toBe(server.rendezvous.relay.frames.out)

    // the page dials Node
    node.handle((c: Connection) => {
      void (async () => {
        for await (const chunk of c) await c.write(chunk)
        await c.closeWrite()
      })()
    })
    const result = await page.evaluate(async (nodePeerId) => {
      const w = window as any
      const conn = await w.peer.dial(nodePeerId)
      const sent = w.makeBytes(1024 * 1024, 9)
      const parts: Uint8Array[] = []
      const reading = (async () => { for await (const c of conn) parts.push(c) })()
      await conn.write(sent)
      await conn.closeWrite()
      await reading
      let length = 0
      for (const p of parts) length += p.byteLength
      const got = new Uint8Array(length)
      let at = 0
      for (const p of parts) { got.set(p, at); at += p.byteLength }
      const same = got.length === sent.length && got.every((b: number, i: number) => b === sent[i])
      return { same, length, secure: conn.secure, remotePeer: conn.remotePeer }
    }, node.peerId)
    expect(result).toEqual({ same: true, length: 1024 * 1024, secure: true, remotePeer: node.peerId })
  })

  it('keeps the page identity in IndexedDB across a reload', async () => {
    const before = await page.evaluate(async () => (await (window as any).starsock.loadOrCreateBrowserIdentity('test')).identity.peerId)
    await page.reload()
    await page.waitForFunction(() => (window as unknown as { ready?: boolean }).ready === true)
    const after = await page.evaluate(async () => {
      const { identity, created } = await (window as any).starsock.loadOrCreateBrowserIdentity('test')
      return { peerId: identity.peerId, created }
    })
    expect(after).toEqual({ peerId: before, created: false })
  })
})
