import { PassThrough } from 'node:stream'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createPeer } from '../client/peer.ts'
import { createSockAgent, type OfferRequest, type SockAgent } from '../client/sock/agent.ts'
import type { StarsockServer } from '../server/server.ts'
import { answerOf, CHANGED_MS, CHANGED_TEXT, TerminalConsent } from '../cli/consent-prompt.ts'
import { startServer, waitFor, within } from './helpers/server.ts'

const request = (secure: boolean, port = 8080): OfferRequest => ({
  peerId: '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA',
  secure,
  offer: { kind: 'connect', proto: 'tcp', host: '127.0.0.1', port, name: '' },
  text: `connect/tcp 127.0.0.1:${port}`
})

/** Whether `p` has settled (after pending callbacks ran). */
async function settled (p: Promise<unknown>): Promise<boolean> {
  let done = false
  void p.then(() => { done = true }, () => { done = true })
  await new Promise((resolve) => setTimeout(resolve, 50))
  return done
}

/** An output that keeps what was written. */
function output (): PassThrough & { text: () => string } {
  const out = new PassThrough() as PassThrough & { text: () => string }
  let text = ''
  out.on('data', (d: Buffer) => { text += d.toString() })
  out.text = () => text
  return out
}

/** An input that says it is a terminal (raw mode does nothing). */
function terminalInput (): PassThrough & { isTTY: boolean, setRawMode: (raw: boolean) => void } {
  const input = new PassThrough() as PassThrough & { isTTY: boolean, setRawMode: (raw: boolean) => void }
  input.isTTY = true
  input.setRawMode = () => {}
  return input
}

describe('the terminal prompt (TerminalConsent)', () => {
  let server: StarsockServer & { port: number }
  let agent: SockAgent
  const consents: TerminalConsent[] = []

  beforeEach(async () => {
    server = await startServer()
    agent = createSockAgent(await createPeer({ server: server.url() }))
  })
  afterEach(async () => {
    for (const c of consents.splice(0)) c.close()
    await agent.close()
    await agent.peer.close()
    await server.close()
  })
  /** A prompt on `input` and `out` for this test's agent, closed after the test. */
  const prompt = (input: PassThrough, out: PassThrough, onPrompt?: (hold: boolean) => void): TerminalConsent => {
    const consent = new TerminalConsent(agent, input, out, onPrompt)
    consents.push(consent)
    return consent
  }

  it('only y/yes, n/no, an empty line and a/always answer (any case); anything else is no answer', () => {
    expect(['y', 'YES', ' yes ', 'n', 'No', '', 'a', 'Always'].map(answerOf)).toEqual([true, true, true, false, false, false, 'always', 'always'])
    expect(['list', 'kill 1', 'ye', 'yess', 'allow', 'y n', 'nope'].map(answerOf)).toEqual([undefined, undefined, undefined, undefined, undefined, undefined, undefined])
  })

  it('piped: a command or a non-answer asks again; "a" settles always on a secure connection, and allows once on a plaintext one', async () => {
    const input = new PassThrough()
    const out = output()
    const holds: boolean[] = []
    const consent = prompt(input, out, (hold) => holds.push(hold))
    const prompts = (): number => out.text().split('Allow? [y/N]').length - 1
    const first = consent.ask(request(true), new AbortController().signal)
    expect(prompts()).toBe(1)
    expect(holds.at(-1)).toBe(true)
    input.write('list\n')
    await waitFor('the prompt again after list', () => prompts() === 2)
    expect(out.text()).toContain('no mappings\n')
    input.write('kill 7\n')
    await waitFor('the prompt again after kill', () => prompts() === 3)
    expect(out.text()).toContain('no mapping 7 (see: list)\n')
    input.write('maybe\n')
    await waitFor('the prompt again after a non-answer', () => prompts() === 4)
    input.write('A\n')
    expect(await within('the answer', first)).toBe('always')
    expect(holds.at(-1)).toBe(false)
    const plain = consent.ask(request(false), new AbortController().signal)
    await waitFor('the plaintext prompt', () => prompts() === 5)
    expect(out.text()).toMatch(/\(unverified: plaintext connection\) asks: connect\/tcp 127\.0\.0\.1:8080\. Allow\? \[y\/N\] \(y yes, n no\) $/)
    input.write('always\n')
    expect(await within('the plaintext answer', plain)).toBe(true)
    expect(out.text()).toContain('(plaintext connection: allowed this once, not remembered)\n')
    // A line far too long is no answer either.
    const long = consent.ask(request(true), new AbortController().signal)
    input.write('y'.repeat(5000) + '\n')
    await waitFor('the prompt again after a very long line', () => prompts() === 7)
    input.write('n\n')
    expect(await within('the answer after the long line', long)).toBe(false)
  })

  it('the input ending answers the waiting offer and later ones "nobody" (not a person\'s no), says so once; close() is not an end of input', async () => {
    const input = new PassThrough()
    const out = output()
    let ended = 0
    const consent = new TerminalConsent(agent, input, out, () => {}, () => { ended++ })
    consents.push(consent)
    const waiting = consent.ask(request(true), new AbortController().signal)
    expect(consent.open).toBe(true)
    input.end()
    expect(await within('the waiting answer', waiting)).toBe('nobody')
    expect(await consent.ask(request(true), new AbortController().signal)).toBe('nobody')
    expect(consent.open).toBe(false)
    expect(ended).toBe(1)
    let closedEnded = 0
    const other = new TerminalConsent(agent, new PassThrough(), output(), () => {}, () => { closedEnded++ })
    other.close()
    expect(closedEnded).toBe(0)
  })

  it('on a terminal the status line holds while something is typed, and goes on after the line', async () => {
    const input = terminalInput()
    const out = output()
    const holds: boolean[] = []
    const consent = prompt(input, out, (hold) => holds.push(hold))
    input.write('li')
    await waitFor('a hold while typing', () => holds.at(-1) === true)
    const before = out.text().length
    consent.redraw() // an event was printed: the typed text is drawn again
    expect(out.text().slice(before)).toContain('li')
    input.write('st\r')
    await waitFor('the hold released after the line', () => holds.at(-1) === false)
    expect(out.text()).toContain('no mappings\n')
    // A prompt holds too, until it is answered.
    const answer = consent.ask(request(true), new AbortController().signal)
    expect(holds.at(-1)).toBe(true)
    input.write('y\r')
    expect(await within('the answer at the terminal', answer)).toBe(true)
    expect(holds.at(-1)).toBe(false)
  })

  it('piped: a "y" that arrives just after the offer on screen was withdrawn does not answer the next one; a later one does', async () => {
    const input = new PassThrough()
    const out = output()
    const consent = prompt(input, out)
    const first = new AbortController()
    const a = consent.ask(request(true, 1111), first.signal)
    const b = consent.ask(request(true, 2222), new AbortController().signal)
    expect(out.text()).toContain('connect/tcp 127.0.0.1:1111. Allow?')
    first.abort('withdrawn')
    expect(await within('the withdrawn offer', a)).toBe(false)
    expect(out.text()).toContain('connect/tcp 127.0.0.1:2222. Allow?')
    input.write('y\n') // typed for the offer that was on screen
    await waitFor('the offer asked again', () => out.text().includes(CHANGED_TEXT))
    expect(await settled(b)).toBe(false)
    expect(out.text().split('connect/tcp 127.0.0.1:2222. Allow?').length - 1).toBe(2)
    await new Promise((resolve) => setTimeout(resolve, CHANGED_MS + 100))
    input.write('y\n')
    expect(await within('the answer to the offer now shown', b)).toBe(true)
  })

  it('on a terminal a line begun before the offer on screen was drawn, or within CHANGED_MS of it replacing a withdrawn one, does not answer it; one begun later does', async () => {
    const input = terminalInput()
    const out = output()
    const consent = prompt(input, out)
    const first = new AbortController()
    const a = consent.ask(request(true, 1111), first.signal)
    const b = consent.ask(request(true, 2222), new AbortController().signal)
    input.write('y') // the person starts to answer the first offer...
    await waitFor('the key read', () => out.text().endsWith('y'))
    first.abort('withdrawn') // ...which the requester withdraws: the second is drawn
    expect(await within('the withdrawn offer', a)).toBe(false)
    input.write('\r')
    await waitFor('the offer asked again', () => out.text().includes(CHANGED_TEXT))
    expect(await settled(b)).toBe(false)
    // A key pressed just after the second offer replaced the withdrawn one is no answer either.
    input.write('y\r')
    await waitFor('the offer asked again', () => out.text().split(CHANGED_TEXT).length - 1 === 2)
    expect(await settled(b)).toBe(false)
    await new Promise((resolve) => setTimeout(resolve, CHANGED_MS + 100))
    input.write('n\r') // typed with the second offer on screen, after the guard
    expect(await within('the answer to the offer now shown', b)).toBe(false)
    // Text typed while nothing was asked is no answer to an offer that comes in meanwhile.
    input.write('y')
    await waitFor('the key read', () => out.text().endsWith('y'))
    const c = consent.ask(request(true, 3333), new AbortController().signal)
    input.write('\r')
    await waitFor('the new offer asked again', () => out.text().split(CHANGED_TEXT).length - 1 === 3)
    expect(await settled(c)).toBe(false)
    input.write('y\r')
    expect(await within('the answer to the new offer', c)).toBe(true)
  })
})
