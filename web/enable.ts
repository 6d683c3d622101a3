/**
 * Controls that work only when they can: every `[data-needs]` control on the page is disabled
 * until what it needs is there, and a disabled submit button says why (its `title`, and a line
 * next to its form that screen readers hear).
 *
 * - `data-needs="joined"`: the session on show is joined (`ctx.peer.state === 'joined'`).
 * - `data-needs="peer"`: joined, and a peer is picked that is online.
 *
 * Controls added later (by any part of the page) are found as they appear. A control enable.ts
 * disabled carries `data-needs-off`; one disabled by its own part for its own reasons (no mark)
 * is never enabled here.
 */
import type { PageContext } from './context.ts'
import { el } from './dom.ts'

/** What a control may need. */
export type Need = 'joined' | 'peer'

/** The form controls that can be disabled. */
type Control = HTMLButtonElement | HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement | HTMLFieldSetElement

function isControl (node: Element): node is Control {
  return node instanceof HTMLButtonElement || node instanceof HTMLInputElement || node instanceof HTMLSelectElement ||
    node instanceof HTMLTextAreaElement || node instanceof HTMLFieldSetElement
}

/**
 * Why a control that needs `need` cannot work now, in words; `undefined` when it can. `joined`:
 * whether the session is joined; `picked`: the picked peer, if any; `online`: whether it is online;
 * `nameOf`: how to name it.
 */
export function whyNot (need: string, state: { joined: boolean, picked: string | undefined, online: boolean, nameOf: (peerId: string) => string }): string | undefined {
  if (!state.joined) return 'Not joined to the server yet'
  if (need !== 'peer') return undefined
  if (state.picked === undefined) return 'Pick a peer first'
  if (!state.online) return `${state.nameOf(state.picked)} is offline: pick a peer online`
  return undefined
}

/** The lines made so far, per form (two forms without an id must not share one). */
const reasonLines = new WeakMap<HTMLFormElement, HTMLElement>()
let unnamedForms = 0

/** The line next to `form` saying why its submit button is disabled (made on first use). */
function reasonOf (form: HTMLFormElement): HTMLElement {
  let line = reasonLines.get(form)
  if (line === undefined) {
    const id = `${form.id === '' ? `form-${++unnamedForms}` : form.id}-needs`
    line = el('p', { id, class: 'needs-why', role: 'status', 'aria-live': 'polite' })
    form.after(line)
    reasonLines.set(form, line)
  }
  return line
}

/** Disable or enable `control` for `reason` (`undefined`: it can work), and say why on a submit button. */
function apply (control: Control, reason: string | undefined): void {
  if (reason !== undefined) {
    if (!control.disabled) control.dataset.needsOff = ''
    control.disabled = true
  } else if (control.dataset.needsOff !== undefined) {
    delete control.dataset.needsOff
    control.disabled = false
  }
  // The title says why; one the control had of its own is left alone.
  if (reason !== undefined) {
    control.title = reason
    control.dataset.needsTitle = reason
  } else if (control.dataset.needsTitle !== undefined) {
    if (control.title === control.dataset.needsTitle) control.removeAttribute('title')
    delete control.dataset.needsTitle
  }
  const submit = control instanceof HTMLButtonElement && control.type === 'submit'
  if (!submit || control.form === null) return
  const line = reasonOf(control.form)
  line.textContent = reason ?? ''
  line.hidden = reason === undefined
  if (reason === undefined) control.removeAttribute('aria-describedby')
  else control.setAttribute('aria-describedby', line.id)
}

/**
 * Keep every `[data-needs]` control of the page in step with the session and the picked peer.
 * Returns `refresh`, to run after a change it cannot see (it sees the session's state, peers
 * joining and leaving, the pick, and controls added to the page).
 */
export function setupEnable (ctx: PageContext): { refresh: () => void } {
  const refresh = (): void => {
    const peer = ctx.peer
    const joined = peer?.state === 'joined'
    const picked = ctx.picked
    const online = joined && picked !== undefined && peer.peers().some((p) => p.peerId === picked)
    const state = { joined, picked, online, nameOf: ctx.nameOf }
    for (const node of document.querySelectorAll('[data-needs]')) {
      if (isControl(node)) apply(node, whyNot(node.dataset.needs ?? '', state))
    }
  }

  ctx.on('session', ({ peer }) => {
    peer.on('state', refresh)
    peer.on('peer:join', refresh)
    peer.on('peer:leave', refresh)
    refresh()
  })
  ctx.on('session:close', refresh)
  ctx.on('picked', refresh)
  // Controls other parts add later (a mapping's Kill, a transfer's Cancel) follow as they appear.
  let queued = false
  new MutationObserver((records) => {
    const added = records.some((r) => Array.from(r.addedNodes).some((n) => n instanceof Element && (n.matches('[data-needs]') || n.querySelector('[data-needs]') !== null)))
    if (!added || queued) return
    queued = true
    queueMicrotask(() => { queued = false; refresh() })
  }).observe(document.body, { childList: true, subtree: true })
  refresh()
  return { refresh }
}
