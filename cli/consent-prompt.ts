/**
 * Consent at the terminal: offers no rule allows are asked one at a time ("Allow? [y/N]"), and
 * the person can type `list` or `kill N` at any time. While an offer waits, only `y`/`yes`,
 * `n`/`no` (or an empty line: the default, no) and `a`/`always` answer it; a command is run and
 * the offer asked again, anything else asks again. `a` grants and, on an end-to-end encrypted
 * connection, has the agent add a rule for this offer from this peer (the agent's `rule` event
 * tells it). Without an answer in time, or at the end of input, an offer is denied.
 *
 * On a terminal the line being typed is kept apart from the status line and the events: the
 * status holds its redraws while a prompt waits or something is typed, and after each event the
 * prompt and the typed text are drawn again under it.
 *
 * An answer is tied to the offer shown: the requesting peer must not retarget a typed "y" by
 * withdrawing the offer on screen (or letting it time out) so that the next one is asked just as
 * the person presses Enter. So a line is no answer, and the offer shown is asked again with
 * "(the offer changed: asked again)", when on a terminal its first key was pressed before this
 * offer was drawn, or (on a terminal too, a key pressed just after the change is a reflex, not a
 * reading; piped, keys are not seen) its first key came (or, piped, the line arrived) within
 * `CHANGED_MS` of this offer being drawn less than `CHANGED_MS` after another left the screen
 * unanswered.
 */
import { createInterface, type Interface } from 'node:readline'
import type { OfferRequest, SockAgent } from '../client/sock/agent.ts'
import type { Mapping } from '../client/sock/mapping.ts'
import { securityText } from './status.ts'

/** A person's answer: grant, deny, or grant and remember for this peer; `'nobody'` once the input ended. */
export type ConsentAnswer = boolean | 'always' | 'nobody'

interface Question {
  request: OfferRequest
  answer: (allowed: ConsentAnswer) => void
  /** When this offer was first drawn (`performance.now()`), or undefined while it waits in the queue. */
  shownAt?: number
  /** Piped: lines before this time are no answer (the offer on screen just changed). */
  guardUntil: number
}

/** Piped: how long after the offer on screen changed a line is taken as meant for the one before. */
export const CHANGED_MS = 1000

/** What is printed when a line is no answer because the offer on screen changed under it. */
export const CHANGED_TEXT = '(the offer changed: asked again)\n'

/** Longest line read from the terminal; a longer one is not an answer (and is dropped). */
const MAX_LINE_CHARS = 1024

/** What a typed line is, while an offer waits: an answer, or not (then it may be a command). */
export function answerOf (text: string): ConsentAnswer | undefined {
  const t = text.trim().toLowerCase()
  if (t === 'y' || t === 'yes') return true
  if (t === 'n' || t === 'no' || t === '') return false
  if (t === 'a' || t === 'always') return 'always'
  return undefined
}

/** Asks about offers on `input` and takes `list` / `kill N` commands for the agent's mappings. */
export class TerminalConsent {
  private readonly rl: Interface
  private readonly queue: Question[] = []
  private readonly numbered = new Map<number, Mapping>()
  private next = 1
  private ended = false
  /** Whether a terminal: readline echoes and edits the line, and the prompt is redrawn after events. */
  private readonly tty: boolean
  private typing = false
  /** Terminal: when the first key of the line being typed was pressed (undefined: the line is empty). */
  private firstKeyAt: number | undefined
  /** When an offer last left the screen unanswered (withdrawn, timed out). */
  private leftAt = -Infinity

  /**
   * `onPrompt(hold)` is told whether the status line must hold its redraws: a prompt waits, or
   * (on a terminal) the person is typing.
   */
  /** Whether `close()` ended the input (else the input itself ended: nobody is left to ask). */
  private closing = false

  /**
   * `onEnded()` is called once if the input ends by itself (end of file, a closed pipe): offers
   * waiting and to come are then denied as nobody's decision (`'nobody'`), never as a person's.
   */
  constructor (agent: SockAgent, input: NodeJS.ReadableStream & { isTTY?: boolean }, private readonly output: NodeJS.WritableStream, private readonly onPrompt: (hold: boolean) => void = () => {}, onEnded: () => void = () => {}) {
    this.tty = input.isTTY === true
    this.rl = createInterface({ input, output: this.tty ? output : undefined, terminal: this.tty, prompt: '' })
    this.rl.on('line', (line) => {
      const firstKeyAt = this.firstKeyAt
      this.firstKeyAt = undefined
      this.typing = false
      this.line(line.length > MAX_LINE_CHARS ? '\u0000' : line.trim(), firstKeyAt ?? performance.now())
      this.hold()
    })
    this.rl.on('close', () => {
      this.ended = true
      if (!this.closing) onEnded()
      for (const q of this.queue.splice(0)) q.answer('nobody')
    })
    if (this.tty) {
      // In raw mode Ctrl-C reaches readline, not the process: pass it on (the command stops as on SIGINT).
      this.rl.on('SIGINT', () => process.kill(process.pid, 'SIGINT'))
      // Keys arrive one by one on a terminal: hold the status line from the first one.
      input.on('keypress', () => {
        const typing = this.rl.line.length > 0
        // The line is judged by when it was begun: text typed before an offer was drawn is not for it.
        if (!typing) this.firstKeyAt = undefined
        else this.firstKeyAt ??= performance.now()
        if (typing !== this.typing) {
          this.typing = typing
          this.hold()
        }
      })
    }
    agent.on('mapping', (m) => {
      if (m.local) return
      const n = this.next++
      this.numbered.set(n, m)
      m.on('close', () => this.numbered.delete(n))
    })
  }

  /** Whether a person can still be asked (the input has not ended). */
  get open (): boolean {
    return !this.ended
  }

  /** The mapping number `list` shows for `mapping`. */
  numberOf (mapping: Mapping): number | undefined {
    for (const [n, m] of this.numbered) if (m === mapping) return n
    return undefined
  }

  /** Ask about one offer; settles with the person's answer (`false` on abort, `'nobody'` at the end of input). */
  async ask (request: OfferRequest, signal: AbortSignal): Promise<ConsentAnswer> {
    if (this.ended) return 'nobody'
    return await new Promise<ConsentAnswer>((resolve) => {
      const question: Question = {
        request,
        guardUntil: 0,
        answer: (allowed) => {
          signal.removeEventListener('abort', onAbort)
          const at = this.queue.indexOf(question)
          if (at >= 0) this.queue.splice(at, 1)
          resolve(allowed)
          if (at === 0) this.prompt()
        }
      }
      const onAbort = (): void => {
        if (this.queue[0] === question) {
          this.leftAt = performance.now()
          this.write(signal.reason === 'withdrawn' ? '(the offer was withdrawn)\n' : '(no answer in time: denied)\n')
        }
        question.answer(false)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.queue.push(question)
      if (this.queue.length === 1) this.prompt()
    })
  }

  /** After an event was printed (terminal): draw the prompt and the typed text again under it. */
  redraw (): void {
    if (this.tty && !this.ended && (this.queue.length > 0 || this.typing)) this.rl.prompt(true)
  }

  /** Stop reading the terminal. */
  close (): void {
    this.closing = true
    this.rl.close()
  }

  /** Whether the status line holds now. */
  private hold (): void {
    this.onPrompt(this.queue.length > 0 || this.typing)
  }

  private write (text: string): void {
    if (this.tty) {
      // Above the line being edited; then the prompt and the typed text again.
      this.output.write('\r\x1b[K' + text)
      this.redraw()
    } else {
      this.output.write(text)
    }
  }

  private prompt (): void {
    const q = this.queue[0]
    this.hold()
    if (q === undefined) {
      this.rl.setPrompt('')
      return
    }
    if (q.shownAt === undefined) {
      const now = performance.now()
      q.shownAt = now
      if (now - this.leftAt < CHANGED_MS) q.guardUntil = now + CHANGED_MS
    }
    // On a plaintext connection (both sides --insecure) the id is only what the server said, and
    // nothing is remembered for it.
    const choices = q.request.secure ? ' (y yes, n no, a always for this peer)' : ' (y yes, n no)'
    const text = `peer ${q.request.peerId}${q.request.secure ? '' : ' (unverified: plaintext connection)'} asks: ${q.request.text}. Allow? [y/N]${choices} `
    if (this.tty) {
      this.rl.setPrompt(text)
      this.output.write('\r\x1b[K')
      this.rl.prompt(true)
    } else {
      this.output.write(text)
    }
  }

  /** A line typed; `begunAt`: when its first key was pressed (terminal), or when it arrived (piped). */
  private line (text: string, begunAt: number): void {
    const q = this.queue[0]
    if (q !== undefined) {
      const answer = answerOf(text)
      if (answer !== undefined) {
        const shownAt = q.shownAt ?? 0
        if ((this.tty && begunAt < shownAt) || begunAt < q.guardUntil) {
          // Meant for what was on screen before (maybe an offer withdrawn just now): not this one.
          this.write(CHANGED_TEXT)
          this.prompt()
          return
        }
        if (answer === 'always' && !q.request.secure) this.write('(plaintext connection: allowed this once, not remembered)\n')
        q.answer(answer === 'always' && !q.request.secure ? true : answer)
        return
      }
      // Not an answer: a command runs, anything else is said; then the offer is asked again.
      if (!this.command(text)) this.write(`not an answer: type y (yes), n (no)${q.request.secure ? ' or a (always for this peer)' : ''}; commands: list, kill N\n`)
      this.prompt()
      return
    }
    if (!this.command(text) && text !== '') this.write('commands: list, kill N\n')
  }

  /** Run `list` or `kill N`; `false` when `text` is neither. */
  private command (text: string): boolean {
    const [command, arg] = text.split(/\s+/)
    if (command === 'list' || command === 'ls') {
      if (this.numbered.size === 0) this.write('no mappings\n')
      for (const [n, m] of this.numbered) {
        const s = m.stats()
        this.write(`${n}  ${m.peerId}  ${m.label}  channels ${s.channelsOpen}  in ${s.bytesIn} B  out ${s.bytesOut} B  ${securityText(m.secure)}\n`)
      }
      return true
    }
    if (command === 'kill') {
      const m = this.numbered.get(Number(arg))
      if (m === undefined) this.write(`no mapping ${arg ?? ''} (see: list)\n`)
      else m.kill('killed at the terminal')
      return true
    }
    return false
  }
}
