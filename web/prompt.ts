/**
 * A question to the person at the page that cannot be answered by accident: an offer from another
 * peer (a tunnel, a file). It appears in `#prompts` without taking focus (a person typing a chat
 * message keeps typing), Enter never activates the granting buttons (a click or Space does), the
 * granting buttons only work after a short delay (no click-through of a prompt that appeared
 * under the pointer), a countdown shows the time left, and Deny is the default: on Escape
 * inside the prompt, when the time runs out, or when the other side gives up.
 */
import { el } from './dom.ts'

/** One button of a prompt. `grants` buttons ignore Enter and the first `ARM_MS`. */
export interface PromptAction<A extends string> {
  answer: A
  label: string
  grants?: boolean
}

export interface PromptOptions<A extends string> {
  /** A short title (`Tunnel request`, `File offered`). */
  title: string
  /** The question in plain words; the peer's name first. */
  text: string | Node
  /** The buttons, Deny first (the default answer is `deny`). */
  actions: Array<PromptAction<A>>
  /** What a timeout, an Escape or an abort answers. */
  deny: A
  /** Milliseconds the person has; a countdown shows them. */
  timeoutMs: number
  /** The other side gave up: the prompt goes, answering `deny`. */
  signal?: AbortSignal
  /** A checkbox under the text (`always for this peer`); its state is returned with the answer. */
  checkbox?: string
  /** `data-*` attributes of the prompt (tests and styles find it by them). */
  data?: Record<string, string>
}

/** How long granting buttons ignore clicks after the prompt appears. */
export const ARM_MS = 700

let counter = 0

/** Show a prompt in `#prompts`; settles with the answer (and the checkbox), never taking focus. */
export async function prompt<A extends string> (options: PromptOptions<A>): Promise<{ answer: A, checked: boolean }> {
  const list = document.getElementById('prompts')
  if (list === null) throw new TypeError('the page has no #prompts')
  const id = `prompt-${++counter}`
  const card = el('div', { class: 'prompt', role: 'alertdialog', 'aria-labelledby': `${id}-title`, 'aria-describedby': `${id}-text`, id })
  for (const [k, v] of Object.entries(options.data ?? {})) card.dataset[k] = v
  const title = el('h3', { id: `${id}-title` }, options.title)
  const text = el('p', { id: `${id}-text`, class: 'prompt-text' })
  text.append(options.text)
  const countdown = el('p', { class: 'countdown', 'aria-live': 'off' })
  card.append(title, text)
  let box: HTMLInputElement | undefined
  if (options.checkbox !== undefined) {
    const label = el('label', { class: 'always' })
    box = el('input', { type: 'checkbox' })
    label.append(box, ` ${options.checkbox}`)
    card.append(label)
  }
  const buttons = el('div', { class: 'prompt-actions' })
  card.append(buttons, countdown)
  const shownAt = performance.now()
  return await new Promise((resolve) => {
    let settled = false
    const done = (answer: A): void => {
      if (settled) return
      settled = true
      clearInterval(timer)
      // Focus inside the prompt goes back to the page's start rather than nowhere.
      if (card.contains(document.activeElement)) (document.activeElement as HTMLElement).blur()
      card.remove()
      resolve({ answer, checked: box?.checked === true })
    }
    for (const action of options.actions) {
      const button = el('button', { type: 'button', class: action.grants === true ? 'grant' : 'refuse', 'data-answer': action.answer }, action.label)
      if (action.grants === true) {
        // Enter never grants: a person typing elsewhere whose focus lands here must not say yes.
        button.addEventListener('keydown', (e) => { if (e.key === 'Enter') e.preventDefault() })
        button.addEventListener('click', (e) => {
          // A click synthesized from Enter has detail 0 and no pointer; Space also has detail 0,
          // so only the delay and Enter's keydown tell them apart.
          if (performance.now() - shownAt < ARM_MS) return e.preventDefault()
          done(action.answer)
        })
      } else {
        button.addEventListener('click', () => done(action.answer))
      }
      buttons.append(button)
    }
    card.addEventListener('keydown', (e) => { if (e.key === 'Escape') done(options.deny) })
    const deadline = performance.now() + options.timeoutMs
    const tick = (): void => {
      const left = Math.max(0, Math.ceil((deadline - performance.now()) / 1000))
      countdown.textContent = `Denied in ${left} s unless you answer`
      if (left === 0) done(options.deny)
    }
    const timer = setInterval(tick, 250)
    tick()
    options.signal?.addEventListener('abort', () => done(options.deny), { once: true })
    if (options.signal?.aborted === true) done(options.deny)
    list.append(card)
  })
}
