/**
 * Consent at the terminal: offers no rule allows are asked one at a time ("allow? [y/N]"), and
 * between prompts the person can type `list` or `kill N`. Without an answer in time, or at the
 * end of input, an offer is denied.
 */
import { createInterface, type Interface } from 'node:readline'
import type { OfferRequest, SockAgent } from '../client/sock/agent.ts'
import type { Mapping } from '../client/sock/mapping.ts'
import { securityText } from './status.ts'

interface Question {
  request: OfferRequest
  answer: (allowed: boolean) => void
}

/** Asks about offers on `input` and takes `list` / `kill N` commands for the agent's mappings. */
export class TerminalConsent {
  private readonly rl: Interface
  private readonly queue: Question[] = []
  private readonly numbered = new Map<number, Mapping>()
  private next = 1
  private ended = false

  constructor (agent: SockAgent, input: NodeJS.ReadableStream, private readonly output: NodeJS.WritableStream, private readonly onPrompt: (waiting: boolean) => void = () => {}) {
    this.rl = createInterface({ input, terminal: false })
    this.rl.on('line', (line) => this.line(line.trim()))
    this.rl.on('close', () => {
      this.ended = true
      for (const q of this.queue.splice(0)) q.answer(false)
    })
    agent.on('mapping', (m) => {
      if (m.local) return
      const n = this.next++
      this.numbered.set(n, m)
      m.on('close', () => this.numbered.delete(n))
    })
  }

  /** The mapping number `list` shows for `mapping`. */
  numberOf (mapping: Mapping): number | undefined {
    for (const [n, m] of this.numbered) if (m === mapping) return n
    return undefined
  }

  /** Ask about one offer; settles with the person's answer (`false` on abort or end of input). */
  async ask (request: OfferRequest, signal: AbortSignal): Promise<boolean> {
    if (this.ended) return false
    return await new Promise<boolean>((resolve) => {
      const question: Question = {
        request,
        answer: (allowed) => {
          signal.removeEventListener('abort', onAbort)
          const at = this.queue.indexOf(question)
          if (at >= 0) this.queue.splice(at, 1)
          resolve(allowed)
          if (at === 0) this.prompt()
        }
      }
      const onAbort = (): void => {
        if (this.queue[0] === question) this.output.write(signal.reason === 'withdrawn' ? '(the offer was withdrawn)\n' : '(no answer in time: denied)\n')
        question.answer(false)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.queue.push(question)
      if (this.queue.length === 1) this.prompt()
    })
  }

  /** Stop reading the terminal. */
  close (): void {
    this.rl.close()
  }

  private prompt (): void {
    const q = this.queue[0]
    this.onPrompt(q !== undefined)
    // On a plaintext connection (both sides --insecure) the id is only what the server said.
    if (q !== undefined) this.output.write(`peer ${q.request.peerId}${q.request.secure ? '' : ' (unverified: plaintext connection)'} asks: ${q.request.text}. Allow? [y/N] `)
  }

  private line (text: string): void {
    const q = this.queue[0]
    if (q !== undefined) return q.answer(/^y(es)?$/i.test(text))
    const [command, arg] = text.split(/\s+/)
    if (command === 'list' || command === 'ls') {
      if (this.numbered.size === 0) this.output.write('no mappings\n')
      for (const [n, m] of this.numbered) {
        const s = m.stats()
        this.output.write(`${n}  ${m.peerId}  ${m.label}  channels ${s.channelsOpen}  in ${s.bytesIn} B  out ${s.bytesOut} B  ${securityText(m.secure)}\n`)
      }
    } else if (command === 'kill') {
      const m = this.numbered.get(Number(arg))
      if (m === undefined) this.output.write(`no mapping ${arg ?? ''} (see: list)\n`)
      else m.kill('killed at the terminal')
    } else if (command !== '' && command !== undefined) {
      this.output.write('commands: list, kill N\n')
    }
  }
}
