/**
 * Consent on the page, in real Chromium (and the basics in Firefox) with a real Node peer: an
 * offer's prompt never takes focus and Enter never grants, Allow works only once armed (a new
 * prompt, or one that moved; not one another peer's churn leaves in place), Deny is
 * the default (Escape, timeout, the requester giving up), "always for this peer" is kept across a
 * reload until Forget, and the mappings table shows the bytes a real tunnel moved, with a Kill
 * that resets it.
 */
import { mkdirSync } from 'node:fs'
import net from 'node:net'
import { fileURLToPath } from 'node:url'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Channel } from '../client/mux/channel.ts'
import { writeLine } from '../client/mux/lines.ts'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import type { Mapping } from '../client/sock/mapping.ts'
import { accept, type AcceptTunnel } from '../client/sock/tunnel.node.ts'
import type { StarsockServer } from '../server/server.ts'
import { gotoJoined, launchChromium, openJoinedPage } from './helpers/browser.ts'
import { openInFirefox, type FirefoxPage } from './helpers/firefox.ts'
import { startServer, waitFor, within } from './helpers/server.ts'
import { wasReset, watch } from './helpers/tcp-watch.ts'

const ARTIFACTS = fileURLToPath(new URL('../test-artifacts/', import.meta.url))

/** What an offer came to: the mapping, or the code it was refused with. */
type Outcome = { granted: Mapping } | { code: string }

describe('consent on the page (Chromium, a Node peer)', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  let node: SockAgent
  const contexts: BrowserContext[] = []
  const tunnels: AcceptTunnel[] = []
  /** Chat lines the Node peer heard from pages. */
  let heard = ''

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true })
    server = await startServer()
    browser = await launchChromium()
    node = createSockAgent(await createPeer({ server: server.url() }), {
      onChannel: async (channel: Channel) => {
        void (async () => { for await (const chunk of channel) heard += new TextDecoder().decode(chunk) })().catch(() => {})
        return undefined
      }
    })
  }, 60_000)
  afterEach(async () => {
    for (const t of tunnels.splice(0)) await t.close()
    for (const c of contexts.splice(0)) await c.close()
  })
  afterAll(async () => {
    await node?.close()
    await node?.peer.close()
    await browser?.close()
    await server?.close()
  })

  /** A joined page (`query`: the URL's search), known to the Node peer. */
  const open = async (query = ''): Promise<{ page: Page, id: string }> => {
    const { page, id, context } = await openJoinedPage(browser, `${server.url()}/${query}`)
    contexts.push(context)
    await waitFor('the Node peer to see the page', () => node.peer.peers().some((p) => p.peerId === id), 15_000)
    return { page, id }
  }

  /** The Node peer offers the page an accept of 127.0.0.1:`port`; `asked` is set once the page asks a person. */
  const offer = (id: string, port = 8080, signal?: AbortSignal): { outcome: Promise<Outcome>, asked: () => boolean } => {
    let asked = false
    const outcome = node.offerAccept(id, { host: '127.0.0.1', port, name: 'from node', signal, timeoutMs: 120_000, onAsking: () => { asked = true } })
      .then((granted): Outcome => ({ granted }), (err: { code?: string }): Outcome => ({ code: err.code ?? String(err) }))
    return { outcome, asked: () => asked }
  }

  /** Whether `p` is still pending after the page had time to act on what was just done (other promises are awaited for real). */
  const stillPending = async (p: Promise<unknown>, ms = 1500): Promise<boolean> => {
    const pending = Symbol('pending')
    return await Promise.race([p, new Promise((resolve) => setTimeout(() => resolve(pending), ms))]) === pending
  }

  const activeId = async (page: Page): Promise<string> => await page.evaluate(() => document.activeElement?.id ?? '')

  it('Enter pressed while typing a chat message as an offer arrives grants nothing; the message goes and focus stays in the chat input', async () => {
    const { page, id } = await open()
    await page.locator(`#peer-list li[data-peer="${node.peer.peerId}"]`).click({ timeout: 15_000 })
    await page.focus('#chat-text')
    await page.keyboard.type('hello ')
    const { outcome } = offer(id)
    const prompt = page.locator('.prompt[data-kind="accept"]')
    await prompt.waitFor({ timeout: 15_000 })
    expect(await activeId(page)).toBe('chat-text')
    // The words: who, the badge of the connection, what, and the peer's own label as its words.
    const text = await prompt.locator('.prompt-text').innerText()
    expect(text).toContain('wants to forward to this page the connections it takes on its 127.0.0.1:8080 (TCP)')
    expect(text).toContain('end-to-end encrypted · verified')
    expect(text).toContain('from node')
    expect(await prompt.locator('.countdown').innerText()).toMatch(/^Denied in (1 min 0 s|[1-5]\d s) unless you answer$/)
    await page.screenshot({ path: `${ARTIFACTS}page-consent-prompt.png` })

    await page.keyboard.type('world')
    await page.keyboard.press('Enter')
    await waitFor('the chat line at the Node peer', () => heard.includes('{"text":"hello world"}'), 15_000)
    // (chat.ts empties the input once the line went: typing on before that would be lost.)
    await page.waitForFunction(() => (document.getElementById('chat-text') as HTMLInputElement).value === '', undefined, { timeout: 15_000 })
    await page.keyboard.type('second line')
    await page.keyboard.press('Enter')
    await page.keyboard.press('Enter')
    await waitFor('the second chat line at the Node peer', () => heard.includes('{"text":"second line"}'), 15_000)
    expect(await activeId(page)).toBe('chat-text')
    expect(await stillPending(outcome)).toBe(true)
    expect(await prompt.count()).toBe(1)

    // Even with focus on Allow (armed by now), Enter is no answer.
    await page.focus('.prompt button.grant')
    await page.keyboard.press('Enter')
    await page.keyboard.down('Enter')
    await page.keyboard.up('Enter')
    expect(await stillPending(outcome)).toBe(true)
    expect(await prompt.count()).toBe(1)
    // Escape inside the prompt denies, and focus goes back to where it was (no focus left on nothing).
    await page.keyboard.press('Escape')
    expect(await within('the offer to be denied by Escape', outcome, 15_000)).toEqual({ code: 'E_DENIED' })
    await prompt.waitFor({ state: 'detached', timeout: 5000 })
    expect(await activeId(page)).toBe('chat-text')
    expect(await page.locator('#mappings tbody tr').count()).toBe(0)
  }, 90_000)

  it('a flood of offers from one peer shows at most MAX_PROMPTS_PER_PEER prompts and denies the rest at once, leaving room for another peer; their words stay text', async () => {
    const { page, id } = await open()
    const name = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    // 16: the most offers one connection may have waiting (the mux's maxPendingOffers).
    const outcomes = Array.from({ length: 16 }, (_, i) => node.offerAccept(id, { host: '127.0.0.1', port: 9000 + i, name, timeoutMs: 120_000 })
      .then(() => 'granted', (err: { code?: string }) => err.code ?? String(err)))
    const settled: string[] = []
    for (const o of outcomes) void o.then((code) => settled.push(code))
    await waitFor('12 offers past the 4 of one peer on show to be denied', () => settled.length === 12, 20_000)
    expect(new Set(settled)).toEqual(new Set(['E_DENIED']))
    expect(await page.locator('.prompt').count()).toBe(4)
    expect(await page.locator('.prompt b, .prompt img').count()).toBe(0)
    expect(await page.locator('.prompt .their-words').first().innerText()).toBe(name)
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined()
    await page.screenshot({ path: `${ARTIFACTS}page-consent-prompts.png` })
    // Another peer is still asked about, while the flood waits.
    const other = createSockAgent(await createPeer({ server: server.url() }))
    try {
      await waitFor('the other Node peer to see the page', () => other.peer.peers().some((p) => p.peerId === id), 15_000)
      const theirs = other.offerAccept(id, { host: '127.0.0.1', port: 9100, name: 'other', timeoutMs: 120_000 })
        .then(() => 'granted', (err: { code?: string }) => err.code ?? String(err))
      await page.locator(`.prompt[data-peer="${other.peer.peerId}"]`).waitFor({ timeout: 15_000 })
      expect(await page.locator('.prompt').count()).toBe(5)
      await page.locator(`.prompt[data-peer="${other.peer.peerId}"] button.refuse`).click({ timeout: 10_000 })
      expect(await within('the other peer\'s offer to be denied by Deny', theirs, 15_000)).toBe('E_DENIED')
    } finally {
      await other.close()
      await other.peer.close()
    }
    // Escape on each denies it; nothing was granted.
    for (let left = 4; left > 0; left--) {
      await page.focus('.prompt button.refuse')
      await page.keyboard.press('Escape')
      await waitFor(`${left - 1} prompts left`, () => settled.length === 16 - left + 1, 15_000)
    }
    expect(new Set(settled)).toEqual(new Set(['E_DENIED']))
    expect(await page.locator('#mappings tbody tr').count()).toBe(0)
  }, 90_000)

  it('Allow does nothing within the arm delay of a new prompt, nor of one another prompt leaving moved; a prompt that stays put stays armed', async () => {
    const { page, id } = await open()
    // At each change of the prompts: the Allow buttons' states (`aria-disabled`, top to bottom),
    // and, while `clickFirst`, a click on the first prompt's Allow at that very moment.
    await page.evaluate(() => {
      const w = window as unknown as { early: string[], clickFirst: boolean }
      w.early = []
      w.clickFirst = true
      new MutationObserver(() => {
        const grants = [...document.querySelectorAll<HTMLButtonElement>('.prompt button.grant')]
        w.early.push(grants.map((b) => b.getAttribute('aria-disabled') ?? '').join(','))
        if (w.clickFirst) grants[0]?.click()
      }).observe(document.getElementById('prompts') as HTMLElement, { childList: true })
    })
    const clickFirst = async (on: boolean): Promise<void> => { await page.evaluate((v) => { (window as unknown as { clickFirst: boolean }).clickFirst = v }, on) }
    const early = async (): Promise<string[]> => await page.evaluate(() => (window as unknown as { early: string[] }).early)

    // A new prompt: Allow clicked as it appears does nothing.
    const one = offer(id, 8081)
    await page.locator('.prompt').first().waitFor({ timeout: 15_000 })
    expect(await stillPending(one.outcome)).toBe(true)
    await page.locator('.prompt button.grant[aria-disabled="false"]').first().waitFor({ timeout: 10_000 })
    // A second prompt below it: the first does not move, and stays armed; the new one is not.
    await clickFirst(false)
    const two = offer(id, 8082)
    await page.locator('.prompt').nth(1).waitFor({ timeout: 15_000 })
    expect(await early()).toEqual(['true', 'false,true'])
    await page.locator('.prompt').nth(1).locator('button.grant[aria-disabled="false"]').waitFor({ timeout: 10_000 })

    // The first leaves (denied): the second moves up into its place, and its Allow, clicked as it
    // moves, does nothing.
    await clickFirst(true)
    await page.locator('.prompt').first().locator('button.refuse').click({ timeout: 10_000 })
    expect(await within('the first offer to be denied', one.outcome, 15_000)).toEqual({ code: 'E_DENIED' })
    expect((await early()).at(-1)).toBe('true')
    expect(await stillPending(two.outcome)).toBe(true)
    await clickFirst(false)

    // Once armed again, Allow grants.
    await page.locator('.prompt').first().locator('button.grant[aria-disabled="false"]').click({ timeout: 10_000 })
    const granted = await within('the second offer to be granted', two.outcome, 15_000)
    expect('granted' in granted).toBe(true)
    await page.locator('#mappings tbody tr[data-direction="granted"]').waitFor({ timeout: 10_000 })
  }, 90_000)

  it('a prompt moved by anything (the page scrolled) is disarmed at once, a click as it moves included; a chat line from a peer never scrolls the page', async () => {
    // A phone-sized window, where the page scrolls and a prompt moves with it.
    const context = await browser.newContext({ viewport: { width: 390, height: 700 } })
    contexts.push(context)
    const page = await context.newPage()
    const id = await gotoJoined(page, `${server.url()}/`)
    await waitFor('the Node peer to see the page', () => node.peer.peers().some((p) => p.peerId === id), 15_000)
    // Room to scroll, whatever the page's own height.
    await page.evaluate(() => { document.body.append(Object.assign(document.createElement('div'), { style: 'height: 3000px' })) })
    const asked = offer(id, 8085)
    const allow = page.locator('.prompt button.grant')
    await page.locator('.prompt button.grant[aria-disabled="false"]').waitFor({ timeout: 15_000 })

    // A chat line from the peer: the thread scrolls in its own box, the page does not move.
    const chat = await (await node.session(id)).open({ type: 'chat', reliable: true })
    const scrolled = await page.evaluate(() => window.scrollY)
    await writeLine(chat, { text: 'hello' })
    await page.locator('#messages li').first().waitFor({ timeout: 10_000 })
    expect(await page.evaluate(() => window.scrollY)).toBe(scrolled)
    expect(await allow.getAttribute('aria-disabled')).toBe('false')

    // The page scrolls and Allow is clicked in the same turn, before any frame: the click does nothing.
    const moved = await page.evaluate(() => {
      const button = document.querySelector('.prompt button.grant') as HTMLButtonElement
      const before = button.getBoundingClientRect().top
      window.scrollBy(0, 40)
      const after = button.getBoundingClientRect().top
      button.click()
      return { before, after, disabled: button.getAttribute('aria-disabled') }
    })
    expect(moved.after).not.toBe(moved.before)
    expect(moved.disabled).toBe('true')
    expect(await stillPending(asked.outcome)).toBe(true)
    // Moved with nothing clicking: disarmed within a frame, armed again after ARM_MS.
    await page.evaluate(() => { window.scrollBy(0, 40) })
    await page.locator('.prompt button.grant[aria-disabled="true"]').waitFor({ timeout: 5000 })
    await page.locator('.prompt button.grant[aria-disabled="false"]').click({ timeout: 10_000 })
    expect('granted' in await within('the offer to be granted', asked.outcome, 15_000)).toBe(true)
  }, 90_000)

  it('while one peer keeps offering and withdrawing, another peer\'s prompt that does not move can be allowed', async () => {
    const { page, id } = await open()
    const churner = createSockAgent(await createPeer({ server: server.url() }), {})
    let churning = true
    let churned = 0
    try {
      await waitFor('the churning peer to see the page', () => churner.peer.peers().some((p) => p.peerId === id), 15_000)
      const steady = offer(id, 8090)
      const prompt = page.locator(`.prompt[data-peer="${node.peer.peerId}"]`)
      await prompt.waitFor({ timeout: 15_000 })
      // Offers from the other peer, each withdrawn 200 ms after the page shows it, one after the other:
      // a prompt appears or leaves below the steady one about every 100-300 ms.
      const churn = (async () => {
        while (churning) {
          const ac = new AbortController()
          const seen = churned
          void churner.offerAccept(id, { host: '127.0.0.1', port: 9000 + (seen % 100), name: 'churn', signal: ac.signal, timeoutMs: 60_000, onAsking: () => { churned++ } }).catch(() => {})
          await waitFor('a churn prompt to be asked', () => churned > seen || !churning, 15_000)
          await new Promise((resolve) => setTimeout(resolve, 200))
          ac.abort()
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
      })()
      await waitFor('the churn to be under way', () => churned >= 5, 30_000)
      expect(await prompt.locator('button.grant').getAttribute('aria-disabled')).toBe('false')
      await prompt.locator('button.grant').click({ timeout: 10_000 })
      expect('granted' in await within('the steady peer\'s offer to be granted during the churn', steady.outcome, 15_000)).toBe(true)
      expect(churned).toBeGreaterThanOrEqual(5)
      churning = false
      await within('the churn to stop', churn, 15_000)
    } finally {
      churning = false
      await churner.close()
      await churner.peer.close()
    }
  }, 90_000)

  it('Deny, a timeout (?ask-timeout=3) and the requester giving up all deny, and the prompt goes', async () => {
    const { page, id } = await open('?ask-timeout=3')
    const denied = offer(id, 8083)
    await page.locator('.prompt').waitFor({ timeout: 15_000 })
    await page.click('.prompt button.refuse')
    expect(await within('Deny to deny', denied.outcome, 15_000)).toEqual({ code: 'E_DENIED' })

    const late = offer(id, 8084)
    const countdown = page.locator('.prompt .countdown')
    await countdown.waitFor({ timeout: 15_000 })
    expect(await countdown.innerText()).toMatch(/^Denied in [1-3] s unless you answer$/)
    expect(await within('the timeout to deny', late.outcome, 30_000)).toEqual({ code: 'E_DENIED' })
    await page.locator('.prompt').waitFor({ state: 'detached', timeout: 10_000 })

    const ac = new AbortController()
    const withdrawn = offer(id, 8085, ac.signal)
    await page.locator('.prompt').waitFor({ timeout: 15_000 })
    ac.abort()
    expect('code' in await within('the withdrawn offer to fail', withdrawn.outcome, 15_000)).toBe(true)
    await page.locator('.prompt').waitFor({ state: 'detached', timeout: 15_000 })
    expect(await page.locator('#mappings tbody tr').count()).toBe(0)
  }, 90_000)

  it('"always for this peer" grants the same offer again without asking, after a reload too, until Forget', async () => {
    const { page, id } = await open()
    const first = offer(id, 8086)
    await page.locator('.prompt').waitFor({ timeout: 15_000 })
    await page.check('.prompt .always input')
    await page.click('.prompt button.grant')
    expect('granted' in await within('the first offer to be granted', first.outcome, 15_000)).toBe(true)
    expect(first.asked()).toBe(true)
    const rule = `accept/tcp:127.0.0.1:8086@${node.peer.peerId}`
    await page.locator(`#always-list li[data-rule="${rule}"]`).waitFor({ timeout: 10_000 })
    await page.locator('#consent').screenshot({ path: `${ARTIFACTS}page-consent-always.png` })

    const again = offer(id, 8086)
    expect('granted' in await within('the same offer to be granted by the rule', again.outcome, 15_000)).toBe(true)
    expect(again.asked()).toBe(false)
    // Another port is another offer: asked.
    const other = offer(id, 8087)
    await page.locator('.prompt').waitFor({ timeout: 15_000 })
    await page.click('.prompt button.refuse')
    expect(await within('another port to be asked, and denied', other.outcome, 15_000)).toEqual({ code: 'E_DENIED' })

    await page.reload()
    await page.locator('#state[data-state="joined"]').waitFor({ timeout: 20_000 })
    expect(await page.locator('#my-id').innerText()).toBe(id)
    await page.locator(`#always-list li[data-rule="${rule}"]`).waitFor({ timeout: 10_000 })
    await waitFor('the Node peer to see the page again', () => node.peer.peers().some((p) => p.peerId === id), 15_000)
    const afterReload = offer(id, 8086)
    expect('granted' in await within('the offer after a reload to be granted by the kept rule', afterReload.outcome, 30_000)).toBe(true)
    expect(afterReload.asked()).toBe(false)

    // Forget with the keyboard: the rule leaves the list, the storage and the running agent.
    await page.focus(`#always-list li[data-rule="${rule}"] button.forget`)
    await page.keyboard.press('Space')
    await page.locator(`#always-list li[data-rule="${rule}"]`).waitFor({ state: 'detached', timeout: 10_000 })
    expect(await page.evaluate((self) => localStorage.getItem(`starsock:always:${self}`), id)).toBe('[]')
    const forgotten = offer(id, 8086)
    await page.locator('.prompt').waitFor({ timeout: 15_000 })
    expect(forgotten.asked()).toBe(true)
    await page.click('.prompt button.refuse')
    expect(await within('the forgotten offer to be asked, and denied', forgotten.outcome, 15_000)).toEqual({ code: 'E_DENIED' })
  }, 120_000)

  it('kept rules are read back as untrusted: one naming no peer, another peer or another kind is dropped; a full list offers no "always"', async () => {
    const { page, id } = await open()
    const other = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA'
    const bad = [
      { rule: 'accept/tcp:*:*', peerId: '', at: 0 },
      { rule: `accept/tcp:127.0.0.1:8090@${other}`, peerId: node.peer.peerId, at: 0 },
      { rule: `file@${node.peer.peerId}`, peerId: node.peer.peerId, at: 0 },
      { rule: 'accept/tcp:127.0.0.1:8090', peerId: node.peer.peerId, at: 0 },
      'accept/tcp:*:*'
    ]
    // 100 (MAX_ALWAYS_RULES), 3 of them again, and a 101st: 100 are read back.
    const full = Array.from({ length: 100 }, (_, i) => ({ rule: `accept/tcp:127.0.0.1:${20000 + i}@${other}`, peerId: other, at: i }))
    await page.evaluate(({ key, list }) => localStorage.setItem(key, JSON.stringify(list)), { key: `starsock:always:${id}`, list: [...bad, ...full, ...full.slice(0, 3), { rule: `accept/tcp:127.0.0.1:20100@${other}`, peerId: other, at: 100 }] })
    await page.reload()
    await page.locator('#state[data-state="joined"]').waitFor({ timeout: 20_000 })
    await waitFor('the Node peer to see the page again', () => node.peer.peers().some((p) => p.peerId === id), 15_000)
    await page.waitForFunction(() => document.querySelectorAll('#always-list li').length === 100, undefined, { timeout: 10_000 })
    const asked = offer(id, 8090)
    await page.locator('.prompt').waitFor({ timeout: 15_000 })
    expect(await page.locator('.prompt .always input').isDisabled()).toBe(true)
    expect(await page.locator('.prompt .always').innerText()).toContain('forget one first')
    await page.click('.prompt button.refuse')
    expect(await within('the offer to be asked (no bad rule loaded), and denied', asked.outcome, 15_000)).toEqual({ code: 'E_DENIED' })
    expect(asked.asked()).toBe(true)
  }, 90_000)

  it('a plaintext connection gets no "always": the prompt says why', async () => {
    const plain = createSockAgent(await createPeer({ server: server.url(), secure: false }), { insecure: true })
    try {
      const { page, id } = await open('?insecure=1')
      await waitFor('the plaintext Node peer to see the page', () => plain.peer.peers().some((p) => p.peerId === id), 15_000)
      const outcome = plain.offerAccept(id, { host: '127.0.0.1', port: 8088, timeoutMs: 120_000 }).then(() => 'granted', (err: { code?: string }) => err.code)
      const prompt = page.locator('.prompt')
      await prompt.waitFor({ timeout: 15_000 })
      expect(await prompt.locator('.always').count()).toBe(0)
      expect(await prompt.innerText()).toContain('plaintext · unverified id')
      expect(await prompt.innerText()).toContain('"always" is not offered')
      await page.click('.prompt button.refuse')
      expect(await within('the plaintext offer to be denied', outcome, 15_000)).toBe('E_DENIED')
    } finally {
      await plain.close()
      await plain.peer.close()
    }
  }, 90_000)

  it('the mappings table shows the bytes a real tunnel moved, exactly; Kill (keyboard) resets the tunnel', async () => {
    const { page, id } = await open()
    const started = accept(node, { peer: id, listen: { ip: '127.0.0.1', port: 0 }, name: 'bytes test', timeoutMs: 120_000 })
    await page.locator('.prompt').waitFor({ timeout: 15_000 })
    await page.click('.prompt button.grant')
    const tunnel = await within('the accept tunnel to start', started, 15_000)
    tunnels.push(tunnel)
    const row = page.locator('#mappings tbody tr[data-direction="granted"]')
    await row.waitFor({ timeout: 10_000 })
    expect(await row.locator('.badge').innerText()).toBe('end-to-end encrypted · verified')
    // Focus on Kill stays there while the row's figures change under it.
    await page.focus('#mappings tbody tr[data-direction="granted"] button.kill')

    // One HTTP request of exactly 9,000 bytes; the page answers it and closes its side.
    const head = 'GET / HTTP/1.1\r\nHost: x\r\nX-Pad: '
    const request = head + 'a'.repeat(9000 - head.length - 4) + '\r\n\r\n'
    expect(request.length).toBe(9000)
    const client = net.connect({ host: '127.0.0.1', port: tunnel.address.port })
    const chunks: Buffer[] = []
    client.on('data', (c: Buffer) => chunks.push(c))
    const ended = new Promise<void>((resolve, reject) => { client.once('end', resolve); client.once('error', reject) })
    client.write(request)
    await within('the page\'s answer to end', ended, 20_000)
    client.destroy()
    const answer = Buffer.concat(chunks)
    expect(answer.toString()).toContain(`hello from the starsock page ${id}`)
    await page.waitForFunction(({ sent, got }) => {
      const tr = document.querySelector<HTMLElement>('#mappings tbody tr[data-direction="granted"]')
      return tr?.dataset.bytesIn === String(sent) && tr.dataset.bytesOut === String(got)
    }, { sent: 9000, got: answer.byteLength }, { timeout: 15_000 })
    expect(await row.locator('.bytes-in').innerText()).toBe('8.8 KiB')
    expect(await page.evaluate(() => document.activeElement?.classList.contains('kill'))).toBe(true)
    expect(await row.locator('.bytes-in').getAttribute('title')).toBe('9000 bytes')
    expect(await row.locator('.bytes-out').getAttribute('title')).toBe(`${answer.byteLength} bytes`)
    // Idle now: the rate over the last two seconds falls to nothing.
    await row.locator('.rate', { hasText: 'in 0 B/s, out 0 B/s' }).waitFor({ timeout: 15_000 })
    await page.locator('#consent').screenshot({ path: `${ARTIFACTS}page-consent-mappings.png` })

    // A connection the page still reads from (no end of head yet) is reset by Kill, not ended cleanly.
    const held = net.connect({ host: '127.0.0.1', port: tunnel.address.port, allowHalfOpen: true })
    held.on('error', () => {})
    const w = watch(held)
    held.write('GET / HTTP/1.1\r\n')
    await page.waitForFunction(() => document.querySelector('#mappings tbody tr[data-direction="granted"] .channels')?.textContent === '1', undefined, { timeout: 15_000 })
    await page.focus('#mappings tbody tr[data-direction="granted"] button.kill')
    await page.keyboard.press('Enter')
    const outcome = await within('the held connection to close', w.outcome, 15_000)
    expect(wasReset(outcome), `a reset, got ${JSON.stringify(outcome)}`).toBe(true)
    await row.waitFor({ state: 'detached', timeout: 10_000 })
    expect(await activeId(page)).toBe('mappings-title')
  }, 90_000)
})

describe('consent on the page in Debian\'s Firefox', () => {
  let server: StarsockServer & { port: number }
  let node: SockAgent
  let page: FirefoxPage | undefined

  beforeAll(async () => {
    server = await startServer()
    node = createSockAgent(await createPeer({ server: server.url() }))
  })
  afterAll(async () => {
    await page?.close()
    await node?.close()
    await node?.peer.close()
    await server?.close()
  })

  /** Poll `expression` in Firefox until it is truthy. */
  const until = async (what: string, expression: string, ms = 20_000): Promise<void> => {
    for (const deadline = Date.now() + ms; Date.now() < deadline;) {
      if (await page?.evaluate(expression) === true) return
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    throw new Error(`${what}: not within ${ms} ms`)
  }

  it('an offer opens a prompt without taking focus, and Deny denies', async () => {
    page = await openInFirefox(server.url() + '/')
    await until('the page to join', "document.getElementById('state').dataset.state === 'joined' && /^12D3KooW/.test(document.getElementById('my-id').textContent)")
    const id = String(await page.evaluate("document.getElementById('my-id').textContent"))
    await waitFor('the Node peer to see the page', () => node.peer.peers().some((p) => p.peerId === id), 15_000)
    await page.evaluate("document.getElementById('chat-text').focus()")
    const outcome = node.offerAccept(id, { host: '127.0.0.1', port: 8080, timeoutMs: 120_000 }).then(() => 'granted', (err: { code?: string }) => err.code)
    await until('the prompt to appear', "document.querySelector('.prompt[data-kind=\"accept\"]') !== null")
    expect(await page.evaluate("document.querySelector('.prompt .prompt-text').textContent")).toContain('wants to forward to this page')
    expect(await page.evaluate('document.activeElement.id')).toBe('chat-text')
    await page.evaluate("document.querySelector('.prompt button.refuse').click()")
    expect(await within('the offer to be denied in Firefox', outcome, 15_000)).toBe('E_DENIED')
    await until('the prompt to go', "document.querySelector('.prompt') === null")
  }, 90_000)
})
