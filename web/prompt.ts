/**
 * A question to the person at the page that cannot be answered by accident: an offer from another
 * peer (a tunnel, a file). It appears in `#prompts` without taking focus (a person typing a chat
 * message keeps typing, and their Enter still sends it), Enter never activates a granting button
 * (a click or Space does), a prompt's granting buttons only work `ARM_MS` after it appeared or last
 * moved on screen, whatever moved it (no click-through of a prompt that appeared, or moved, under the
 * pointer: another prompt leaving shifts the ones below it, a peer's chat line scrolls the page;
 * prompts that stay put stay armed, so one peer offering
 * and withdrawing in a loop cannot keep everyone else's Allow off), a countdown shows the time left, and Deny is the default: on Escape
 * inside the prompt, when the time runs out, or when the other side gives up. At most
 * `MAX_PROMPTS` are on show, and at most `MAX_PROMPTS_PER_PEER` from one peer (`data.peer`); past
 * that a new one is denied at once (other peers ask as fast as they like, and one peer's flood
 * must not crowd out everyone else's requests).
 */
import { el, formatSeconds } from './dom.ts'

/** One button of a prompt. `grants` buttons ignore Enter and work only once armed (`ARM_MS`). */
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
  /** What a timeout, an Escape, an abort or a full `#prompts` answers. */
  deny: A
  /** Milliseconds the person has (the agent's `askTimeoutMs`: the real figure); a countdown shows them. */
  timeoutMs: number
  /** The other side gave up: the prompt goes, answering `deny`. */
  signal?: AbortSignal
  /** A checkbox under the text (`always for this peer`); its state is returned with the answer. */
  checkbox?: string
  /** Why the checkbox cannot be ticked now: it is shown disabled, with this reason. */
  checkboxDisabled?: string
  /** `data-*` attributes of the prompt (tests and styles find it by them); `peer`, the asking peer's id, counts against `MAX_PROMPTS_PER_PEER`. */
  data?: Record<string, string>
}

/** How long a prompt's granting buttons ignore clicks after it appeared or a change of the prompts moved them. */
export const ARM_MS = 700

/** Prompts on show at once at most; a new one past it is denied at once. */
export const MAX_PROMPTS = 12

/** Prompts of one peer (`data.peer`) on show at once at most: a flood from one peer leaves room for the others. */
export const MAX_PROMPTS_PER_PEER = 4

let counter = 0

/** Per prompt: when its granting buttons work again (`performance.now()`), and the timer that shows it. */
const arming = new WeakMap<Element, { at: number, timer: ReturnType<typeof setTimeout> }>()

/** Whether the granting buttons of `card` work now. */
function armed (card: Element): boolean {
  return performance.now() >= (arming.get(card)?.at ?? Infinity)
}

/** Disarm the granting buttons of `card` for `ARM_MS` (shown as `aria-disabled`), then arm them again. */
function disarm (card: Element): void {
  const show = (on: boolean): void => {
    for (const b of card.querySelectorAll('button.grant')) b.setAttribute('aria-disabled', String(!on))
  }
  show(false)
  clearTimeout(arming.get(card)?.timer)
  arming.set(card, { at: performance.now() + ARM_MS, timer: setTimeout(() => show(true), ARM_MS) })
}

/** Where the granting buttons of each prompt in `list` are on screen. */
function grantPlaces (list: HTMLElement): Map<Element, string> {
  const places = new Map<Element, string>()
  for (const card of list.children) {
    places.set(card, [...card.querySelectorAll('button.grant')].map((b) => {
      const r = b.getBoundingClientRect()
      return `${Math.round(r.left)},${Math.round(r.top)},${Math.round(r.width)},${Math.round(r.height)}`
    }).join(' '))
  }
  return places
}

/** Where each prompt's granting buttons were last seen on screen. */
const seen = new WeakMap<Element, string>()

/**
 * Disarm the prompts in `list` whose granting buttons are not where they were last seen, and note
 * where they are now; `true` when `only` (when given) moved. Whatever moved them counts: a prompt
 * that appeared or left, the page scrolled (a chat line a peer sent scrolls it into view), the
 * window resized, text above them grew. Each may have put Allow under a pointer aimed elsewhere.
 */
function disarmMoved (list: HTMLElement, only?: Element): boolean {
  let moved = false
  for (const [card, place] of grantPlaces(list)) {
    if (only !== undefined && card !== only) continue
    const was = seen.get(card)
    seen.set(card, place)
    if (was === place) continue
    disarm(card)
    moved = true
  }
  return moved
}

/** The lists whose prompts are watched every frame for moves (while they hold any). */
const watched = new WeakSet<HTMLElement>()

/**
 * Look for moves of the prompts in `list` on every animation frame while it holds any (a few
 * rectangles: at most `MAX_PROMPTS` prompts): a move from any cause disarms a prompt within a
 * frame, and a click checks once more (`disarmMoved` for its prompt) before it counts.
 */
function watchMoves (list: HTMLElement): void {
  if (watched.has(list)) return
  watched.add(list)
  const frame = (): void => {
    if (list.childElementCount === 0) {
      watched.delete(list)
      return
    }
    disarmMoved(list)
    requestAnimationFrame(frame)
  }
  requestAnimationFrame(frame)
}

/**
 * Make a change to the prompts (one appears or leaves), then disarm the prompts it brought or whose
 * granting buttons it moved on screen: those may now be under a pointer aimed at something else.
 */
function changePrompts (list: HTMLElement, change: () => void): void {
  disarmMoved(list)
  change()
  disarmMoved(list)
  watchMoves(list)
}

/** Whether `list` has no room for another prompt of `peer` (`MAX_PROMPTS` in all, `MAX_PROMPTS_PER_PEER` of one peer). */
function full (list: HTMLElement, peer: string | undefined): boolean {
  if (list.childElementCount >= MAX_PROMPTS) return true
  if (peer === undefined) return false
  let mine = 0
  for (const card of list.children) if (card instanceof HTMLElement && card.dataset.peer === peer) mine++
  return mine >= MAX_PROMPTS_PER_PEER
}

/** Show a prompt in `#prompts`; settles with the answer (and the checkbox), never taking focus. */
export async function prompt<A extends string> (options: PromptOptions<A>): Promise<{ answer: A, checked: boolean }> {
  const list = document.getElementById('prompts')
  if (list === null) throw new TypeError('the page has no #prompts')
  if (!options.actions.some((a) => a.answer === options.deny)) throw new TypeError('a prompt needs a button that answers its deny')
  if (options.signal?.aborted === true || full(list, options.data?.peer)) return { answer: options.deny, checked: false }
  const id = `prompt-${++counter}`
  const card = el('div', { class: 'prompt', role: 'group', 'aria-labelledby': `${id}-title`, 'aria-describedby': `${id}-text`, id })
  for (const [k, v] of Object.entries(options.data ?? {})) card.dataset[k] = v
  const text = el('p', { id: `${id}-text`, class: 'prompt-text' })
  text.append(options.text)
  card.append(el('h3', { id: `${id}-title` }, options.title), text)
  let box: HTMLInputElement | undefined
  if (options.checkbox !== undefined) {
    const label = el('label', { class: 'always' })
    box = el('input', { type: 'checkbox' })
    label.append(box, ` ${options.checkbox}`)
    if (options.checkboxDisabled !== undefined) {
      box.disabled = true
      label.append(el('span', { class: 'why' }, ` (${options.checkboxDisabled})`))
    }
    card.append(label)
  }
  const buttons = el('div', { class: 'prompt-actions' })
  // Not announced every second: the prompt itself is, once, by the live region it appears in.
  const countdown = el('p', { class: 'countdown', 'aria-live': 'off' })
  card.append(buttons, countdown)
  return await new Promise((resolve) => {
    let settled = false
    /** Where focus was before the person moved into this prompt: it goes back there when the prompt goes. */
    let returnTo: HTMLElement | undefined
    /** Enter is down inside the prompt: no click counts as a grant until it is up again. */
    let enterDown = false
    const done = (answer: A): void => {
      if (settled) return
      settled = true
      clearTimeout(deadline)
      clearInterval(ticker)
      const hadFocus = card.contains(document.activeElement)
      changePrompts(list, () => card.remove())
      if (hadFocus) {
        if (returnTo?.isConnected === true) returnTo.focus()
        else (document.activeElement as HTMLElement | null)?.blur()
      }
      resolve({ answer, checked: box?.checked === true })
    }
    card.addEventListener('focusin', (e) => {
      const from = e.relatedTarget
      if (from instanceof HTMLElement && !card.contains(from)) returnTo = from
    })
    card.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') return done(options.deny)
      if (e.key !== 'Enter') return
      enterDown = true
      // Enter never grants: a person typing whose focus lands on a granting button must not say yes.
      if (e.target instanceof HTMLElement && e.target.classList.contains('grant')) e.preventDefault()
    })
    card.addEventListener('keyup', (e) => { if (e.key === 'Enter') enterDown = false })
    for (const action of options.actions) {
      const grants = action.grants === true
      const button = el('button', { type: 'button', class: grants ? 'grant' : 'refuse', 'data-answer': action.answer }, action.label)
      button.addEventListener('click', (e) => {
        // A click synthesized from Enter (held, or its keydown not caught), on a prompt that moved
        // since the last frame, or within the arm delay is no answer.
        if (grants && (enterDown || disarmMoved(list, card) || !armed(card))) return e.preventDefault()
        done(action.answer)
      })
      buttons.append(button)
    }
    const started = performance.now()
    const tick = (): void => {
      const words = `Denied in ${formatSeconds(Math.ceil((options.timeoutMs - (performance.now() - started)) / 1000))} unless you answer`
      if (countdown.textContent !== words) countdown.textContent = words
    }
    const deadline = setTimeout(() => done(options.deny), options.timeoutMs)
    const ticker = setInterval(tick, 250)
    tick()
    options.signal?.addEventListener('abort', () => done(options.deny), { once: true })
    changePrompts(list, () => list.append(card))
  })
}
