/**
 * Debian's Firefox (`firefox-esr`) for tests, driven over WebDriver BiDi (playwright-core can
 * only drive its own patched Firefox): launch headless, open a URL, evaluate expressions.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'

export const FIREFOX = '/usr/bin/firefox-esr'

/** A headless Firefox with one page. */
export interface FirefoxPage {
  /** The value of a JavaScript expression in the page (promises awaited). */
  evaluate: (expression: string) => Promise<unknown>
  close: () => Promise<void>
}

/** Launch Firefox and open `url`; settles once the page has loaded. */
export async function openInFirefox (url: string): Promise<FirefoxPage> {
  if (!existsSync(FIREFOX)) throw new Error(`${FIREFOX} is missing: run scripts/ensure-system-deps.sh (apt-get install firefox-esr)`)
  const profile = mkdtempSync(join(tmpdir(), 'starsock-firefox-'))
  const proc: ChildProcess = spawn(FIREFOX, ['--headless', '--no-remote', '--profile', profile, '--remote-debugging-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const endpoint = await new Promise<string>((resolve, reject) => {
    let err = ''
    const timer = setTimeout(() => reject(new Error(`no WebDriver BiDi endpoint from Firefox within 30000 ms: ${err.slice(-500)}`)), 30_000)
    proc.stderr?.on('data', (d: Buffer) => {
      err += d.toString()
      const m = /WebDriver BiDi listening on (ws:\/\/[\d.:]+)/.exec(err)
      if (m?.[1] !== undefined) { clearTimeout(timer); resolve(m[1]) }
    })
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`Firefox exited with ${String(code)}: ${err.slice(-500)}`)) })
  })
  const ws = new WebSocket(`${endpoint}/session`)
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  let nextId = 1
  const pending = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>()
  ws.on('message', (data) => {
    const msg = JSON.parse(String(data)) as { id?: number, result?: unknown, error?: string, message?: string }
    if (msg.id === undefined) return
    const p = pending.get(msg.id)
    pending.delete(msg.id)
    if (msg.error !== undefined) p?.reject(new Error(`${msg.error}: ${msg.message ?? ''}`))
    else p?.resolve(msg.result)
  })
  const send = async (method: string, params: Record<string, unknown>): Promise<any> => await new Promise((resolve, reject) => {
    const id = nextId++
    pending.set(id, { resolve, reject })
    ws.send(JSON.stringify({ id, method, params }))
  })
  await send('session.new', { capabilities: {} })
  const tree = await send('browsingContext.getTree', {}) as { contexts: Array<{ context: string }> }
  const context = tree.contexts[0]?.context
  await send('browsingContext.navigate', { context, url, wait: 'complete' })
  return {
    evaluate: async (expression) => {
      const r = await send('script.evaluate', { expression, target: { context }, awaitPromise: true }) as { type: string, result?: { value?: unknown }, exceptionDetails?: { text?: string } }
      if (r.type === 'exception') throw new Error(`in Firefox: ${r.exceptionDetails?.text ?? 'exception'}`)
      return r.result?.value
    },
    close: async () => {
      try { await send('session.end', {}) } catch {}
      ws.close()
      proc.kill('SIGTERM')
      await new Promise((resolve) => { if (proc.exitCode !== null) resolve(undefined); else proc.once('exit', resolve) })
      rmSync(profile, { recursive: true, force: true })
    }
  }
}
