/**
 * The page's shell in real Chromium: every control has a name a screen reader says (a DOM check
 * of every control, hidden ones too, and Chromium's own accessibility tree); every control the
 * keyboard reaches shows where the focus is, in light and dark mode; controls that cannot work yet
 * are disabled and say why; errors look and sound like errors.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { StarsockServer } from '../server/server.ts'
import { gotoJoined, launchChromium } from './helpers/browser.ts'
import { startServer } from './helpers/server.ts'

/** Controls with no accessible name, by a DOM check: `label`, `aria-label(ledby)`, or a button's text. */
async function unnamedControls (page: Page): Promise<string[]> {
  return await page.evaluate(() => Array.from(document.querySelectorAll('input, select, textarea, button')).filter((node) => {
    const control = node as HTMLInputElement
    if (control.type === 'hidden') return false
    const labelled = (control.labels?.length ?? 0) > 0 || (control.getAttribute('aria-label') ?? '').trim() !== '' ||
      (control.getAttribute('aria-labelledby') ?? '').split(/\s+/).some((id) => (document.getElementById(id)?.textContent ?? '').trim() !== '')
    const text = control instanceof HTMLButtonElement && (control.textContent ?? '').trim() !== ''
    return !labelled && !text
  }).map((node) => node.outerHTML.slice(0, 120)))
}

/** Nodes of Chromium's accessibility tree that are controls with an empty name. */
async function unnamedInTree (page: Page): Promise<string[]> {
  const cdp = await page.context().newCDPSession(page)
  const { nodes } = await cdp.send('Accessibility.getFullAXTree') as { nodes: Array<{ ignored: boolean, role?: { value?: string }, name?: { value?: string } }> }
  await cdp.detach()
  const CONTROLS = new Set(['button', 'textbox', 'spinbutton', 'combobox', 'checkbox', 'radio', 'listbox', 'option', 'slider', 'searchbox'])
  return nodes.filter((n) => !n.ignored && CONTROLS.has(n.role?.value ?? '') && (n.name?.value ?? '').trim() === '').map((n) => n.role?.value ?? '?')
}

/** What has the focus and how its focus ring looks against what is behind it (WCAG contrast ratio). */
interface FocusLook { what: string, outline: string, width: number, contrast: number }

/** Tab once, and describe the element that then has the focus. */
async function tabAndLook (page: Page): Promise<FocusLook | undefined> {
  await page.keyboard.press('Tab')
  return await page.evaluate(() => {
    const node = document.activeElement
    if (node === null || node === document.body) return undefined
    const rgb = (color: string): number[] => (color.match(/[\d.]+/g) ?? []).map(Number)
    const luminance = ([r = 0, g = 0, b = 0]: number[]): number => {
      const [lr = 0, lg = 0, lb = 0] = [r, g, b].map((c) => { const s = c / 255; return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4 })
      return 0.2126 * lr + 0.7152 * lg + 0.0722 * lb
    }
    const backgroundOf = (start: Element | null): string => {
      for (let at = start; at !== null; at = at.parentElement) {
        const bg = getComputedStyle(at).backgroundColor
        const alpha = rgb(bg)[3]
        if (bg !== 'transparent' && alpha !== 0) return bg
      }
      return getComputedStyle(document.documentElement).backgroundColor === 'rgba(0, 0, 0, 0)' ? 'rgb(255, 255, 255)' : getComputedStyle(document.documentElement).backgroundColor
    }
    const style = getComputedStyle(node)
    // An outline drawn inside the element (negative offset) is seen against its own background.
    const behind = backgroundOf(parseFloat(style.outlineOffset) < 0 ? node : node.parentElement)
    const [a, b] = [luminance(rgb(style.outlineColor)), luminance(rgb(behind))]
    const contrast = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)
    const what = `${node.tagName.toLowerCase()}${node.id === '' ? '' : '#' + node.id}${node.getAttribute('data-peer') === null ? '' : `[peer=${node.getAttribute('data-peer') ?? ''}]`}${(node.textContent ?? '').trim() === '' ? '' : ' "' + (node.textContent ?? '').trim().slice(0, 20) + '"'}`
    return { what, outline: style.outlineStyle, width: parseFloat(style.outlineWidth), contrast }
  })
}

describe('the page\'s shell (Chromium)', () => {
  let server: StarsockServer & { port: number }
  let browser: Browser
  const contexts: BrowserContext[] = []
  beforeAll(async () => { server = await startServer(); browser = await launchChromium() }, 60_000)
  afterAll(async () => {
    for (const c of contexts) await c.close()
    await browser?.close()
    await server?.close()
  })

  /** A joined page in `colorScheme`, failing the test on any page error. */
  const open = async (colorScheme: 'light' | 'dark'): Promise<{ page: Page, id: string }> => {
    const context = await browser.newContext({ colorScheme, viewport: { width: 1100, height: 800 } })
    contexts.push(context)
    const page = await context.newPage()
    page.on('pageerror', (err) => { throw err })
    return { page, id: await gotoJoined(page, server.url() + '/') }
  }

  it('names every control, hidden ones too (DOM and the accessibility tree)', async () => {
    const { page } = await open('light')
    expect(await unnamedControls(page)).toEqual([])
    expect(await unnamedInTree(page)).toEqual([])
    // The forms shown later (token, identity conflict) are named too, once shown.
    await page.evaluate(() => { for (const id of ['token-form', 'identity-conflict']) (document.getElementById(id) as HTMLElement).hidden = false })
    expect(await unnamedInTree(page)).toEqual([])
  }, 60_000)

  for (const scheme of ['light', 'dark'] as const) {
    it(`shows the focus on every control the keyboard reaches, picks a peer and chats with the keyboard alone (${scheme})`, async () => {
      const { page } = await open(scheme)
      const other = await open(scheme)
      await page.locator(`#peer-list li[data-peer="${other.id}"]`).waitFor({ timeout: 30_000 })
      // Pick the peer with the keyboard: Tab to its row, Enter.
      let picked = false
      for (let i = 0; i < 40 && !picked; i++) {
        const look = await tabAndLook(page)
        if (look?.what.includes('[peer=') !== true) continue
        // The list takes Tab once (a roving tabindex): arrows move to the peer, Enter picks it.
        for (let j = 0; j < 20 && await page.evaluate(() => document.activeElement?.getAttribute('data-peer')) !== other.id; j++) await page.keyboard.press('ArrowDown')
        await page.keyboard.press('Enter')
        picked = true
      }
      expect(picked, 'Tab reaches the peer row').toBe(true)
      await page.locator('#chat-form button[type=submit]:enabled').waitFor({ timeout: 10_000 })
      // Now everything is enabled: Tab through the whole page from the top.
      // (A click on the heading moves where Tab starts from to the top.)
      await page.click('header h1')
      const seen: FocusLook[] = []
      for (let i = 0; i < 60; i++) {
        const look = await tabAndLook(page)
        if (look === undefined || seen.some((s) => s.what === look.what)) break
        seen.push(look)
      }
      const reached = seen.map((s) => s.what)
      for (const id of ['new-identity', 'chat-text', 'file-input', 'fetch-host', 'fetch-port', 'serve-file', 'serve-port']) {
        expect(reached.some((w) => w.includes(`#${id}`)), `Tab reaches #${id} (reached: ${reached.join(', ')})`).toBe(true)
      }
      expect(reached.filter((w) => w.startsWith('button')).length, 'Tab reaches the buttons').toBeGreaterThanOrEqual(5)
      const faint = seen.filter((s) => s.outline === 'none' || s.width < 2 || s.contrast < 3)
      expect(faint, `focus rings that cannot be seen: ${JSON.stringify(faint)}`).toEqual([])
      // The picked row, focused, still shows its ring on the accent.
      const row = page.locator(`#peer-list li[data-peer="${other.id}"]`)
      await row.focus()
      const ring = await page.evaluate(() => { const s = getComputedStyle(document.activeElement as Element); return { style: s.outlineStyle, color: s.outlineColor, bg: s.backgroundColor } })
      expect(ring.style).not.toBe('none')
      expect(ring.color).not.toBe(ring.bg)

      // Chat with the keyboard: type, Enter.
      await page.focus('#chat-text')
      await page.keyboard.type(`hi by keyboard (${scheme})`)
      await page.keyboard.press('Enter')
      await other.page.locator('#messages', { hasText: `hi by keyboard (${scheme})` }).waitFor({ timeout: 30_000 })
    }, 120_000)
  }

  it('an error looks like one (data-state failed, the error colour, a rule) and is a live region', async () => {
    const { page } = await open('light')
    const other = await open('light')
    await page.locator(`#peer-list li[data-peer="${other.id}"]`).click({ timeout: 30_000 })
    // A page cannot open sockets: a connect through it is refused, in words.
    await page.fill('#fetch-port', '9')
    await page.click('#fetch-form button[type=submit]')
    const out = page.locator('#fetch-result[data-state="failed"]')
    await out.waitFor({ timeout: 30_000 })
    expect(await out.innerText()).toMatch(/\(E_[A-Z_]+\)$/)
    const look = await out.evaluate((node) => {
      const probe = document.createElement('span')
      probe.style.color = 'var(--bad)'
      document.body.append(probe)
      const bad = getComputedStyle(probe).color
      probe.remove()
      const s = getComputedStyle(node)
      return { red: s.color === bad, rule: s.borderLeftStyle === 'solid' && s.borderLeftColor === bad, live: node.getAttribute('aria-live') ?? node.getAttribute('role') }
    })
    expect(look).toEqual({ red: true, rule: true, live: 'polite' })
  }, 60_000)

  it('a [data-needs] control another part adds later follows too: off with a reason, on once a peer online is picked', async () => {
    const { page } = await open('light')
    const other = await open('light')
    await page.evaluate(() => {
      const form = document.createElement('form')
      form.id = 'later-form'
      form.innerHTML = '<label>Later <input id="later-input" data-needs="joined"></label><button id="later-button" type="submit" data-needs="peer">Go</button>'
      document.querySelector('main')?.append(form)
    })
    await page.locator('#later-button:disabled').waitFor({ timeout: 10_000 })
    expect(await page.locator('#later-button').getAttribute('title')).toBe('Pick a peer first')
    expect(await page.locator('#later-form-needs').innerText()).toBe('Pick a peer first')
    expect(await page.locator('#later-button').getAttribute('aria-describedby')).toBe('later-form-needs')
    expect(await page.locator('#later-input').isEnabled()).toBe(true) // joined is enough for it
    await page.locator(`#peer-list li[data-peer="${other.id}"]`).click({ timeout: 30_000 })
    await page.locator('#later-button:enabled').waitFor({ timeout: 10_000 })
    expect(await page.locator('#later-form-needs').isHidden()).toBe(true)
  }, 60_000)

  it('two forms without an id each get their own line saying why', async () => {
    const { page } = await open('light')
    await page.evaluate(() => {
      for (const name of ['one', 'two']) {
        const form = document.createElement('form')
        form.className = `unnamed-${name}`
        form.innerHTML = `<label>${name} <input></label><button type="submit" data-needs="peer">Go ${name}</button>`
        document.querySelector('main')?.append(form)
      }
    })
    await page.locator('.unnamed-two button:disabled').waitFor({ timeout: 10_000 })
    const lines = await page.evaluate(() => ['one', 'two'].map((name) => {
      const button = document.querySelector(`.unnamed-${name} button`) as HTMLButtonElement
      const line = document.getElementById(button.getAttribute('aria-describedby') ?? '')
      return { follows: line !== null && line.previousElementSibling === button.form, text: line?.textContent, id: line?.id }
    }))
    expect(lines.map((l) => [l.follows, l.text])).toEqual([[true, 'Pick a peer first'], [true, 'Pick a peer first']])
    expect(lines[0]?.id).not.toBe(lines[1]?.id)
  }, 60_000)
})
