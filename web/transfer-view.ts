/**
 * A file transfer's row on the page (`TransferView`: state, progress, bytes moved and rate from
 * `RateMeter`, checksum, Cancel, and Save/Remove/Discard for a received file, whose object URL is
 * revoked once used) and the sends a reloaded page remembers (`Outgoing`, in localStorage) so
 * the person can resume them by picking the same file again.
 */
import { el, formatBytes, formatSeconds, inert } from './dom.ts'
import { RateMeter } from './rate.ts'
import { badge, type Security } from './security.ts'

/** Interrupted sends remembered for "pick the same file again" (localStorage). */
const OUTGOING_KEY = 'starsock:interrupted-files'
const MAX_OUTGOING = 20
/** How long a saved file's object URL (and its OPFS copy) stays, so the download can read it. */
const SAVED_KEEP_MS = 60_000

/** States a transfer row shows (`data-state`). */
export type TransferState = 'queued' | 'hashing' | 'waiting' | 'sending' | 'receiving' | 'done' | 'failed' | 'declined' | 'interrupted'

/** A file name fit to show: control and direction characters replaced (they could reorder the prompt's words), at most 200 characters. */
export function displayName (name: string): string {
  // What `inert` replaces, and in a name a tab and the directional marks too (a name is one short run).
  return inert(name).replace(/[\t\u061c\u200e\u200f]/g, '\uFFFD').slice(0, 200)
}

/** One transfer's row: state, progress bar, figures (bytes moved, rate, time left), checksum, Cancel, and Save/Remove for a received file. */
export class TransferView {
  readonly item: HTMLLIElement
  private readonly bar: HTMLProgressElement
  private readonly figures: HTMLSpanElement
  private readonly result: HTMLSpanElement
  private readonly cancelButton: HTMLButtonElement
  private readonly meter = new RateMeter()
  private readonly started = performance.now()
  private url: string | undefined

  constructor (list: HTMLElement, direction: 'to' | 'from', words: string, private readonly size: number, onCancel: () => void) {
    this.item = el('li', { class: 'transfer', 'data-direction': direction, 'data-state': 'queued' })
    this.item.append(el('span', { class: 'name' }, words))
    this.bar = el('progress', { max: String(Math.max(1, size)), value: '0', 'aria-label': `progress of ${words}` })
    this.figures = el('span', { class: 'figures' })
    this.result = el('span', { class: 'result', 'aria-live': 'polite' })
    this.cancelButton = el('button', { type: 'button', class: 'cancel' }, 'Cancel')
    this.cancelButton.addEventListener('click', onCancel)
    this.item.append(this.bar, this.figures, this.cancelButton, this.result)
    list.prepend(this.item)
  }

  /** Show the badge of the session the transfer runs on. */
  secured (security: Security | undefined): void {
    if (security === undefined) return
    this.item.querySelector('.name .badge')?.remove()
    this.item.querySelector('.name')?.append(' ', badge(security))
  }

  /** Set the state and say what the transfer waits for or does. */
  state (state: TransferState, text?: string): void {
    this.item.dataset.state = state
    if (text !== undefined) this.figures.textContent = text
  }

  /** `done` of `size` bytes are there; `moved` of them moved on this channel (a resumed transfer moves fewer). */
  progress (done: number, moved: number): void {
    this.bar.value = done
    this.item.dataset.moved = String(moved)
    const rate = this.meter.sample(moved)
    // The figure shown, in bytes per second (the words round it): tests hold it to the bytes moved.
    this.item.dataset.rate = String(Math.round(rate))
    const left = rate > 0 ? formatSeconds((this.size - done) / rate) : '…'
    this.figures.textContent = `${formatBytes(done)} of ${formatBytes(this.size)} · ${formatBytes(moved)} moved · ${formatBytes(rate)}/s · ${left} left`
  }

  /** The end: words, a final state, and (received) a disk-backed file to save. */
  finish (text: string, state: TransferState, saved?: { name: string, file: File, remove: () => Promise<void> }): void {
    this.cancelButton.disabled = true
    // From the row's start to here, for the page benchmark (bench/page.ts).
    this.item.dataset.seconds = String((performance.now() - this.started) / 1000)
    this.state(state)
    this.result.textContent = text
    if (saved !== undefined) this.offerSave(saved)
  }

  /** A Discard button for the bytes an interrupted transfer kept (they would wait a day for a resume). */
  offerDiscard (sink: { remove: () => Promise<void> }): void {
    const discard = el('button', { type: 'button', class: 'discard' }, 'Discard')
    discard.addEventListener('click', () => {
      void sink.remove()
      this.item.remove()
    })
    this.item.append(discard)
  }

  /** A Save link to the file (revoked, and the OPFS copy deleted, once used) and a Remove button. */
  private offerSave (saved: { name: string, file: File, remove: () => Promise<void> }): void {
    this.url = URL.createObjectURL(saved.file)
    const link = el('a', { download: saved.name, href: this.url, class: 'save' }, 'Save')
    const remove = el('button', { type: 'button', class: 'remove' }, 'Remove')
    const drop = (): void => {
      if (this.url !== undefined) URL.revokeObjectURL(this.url)
      this.url = undefined
      link.remove()
      void saved.remove()
    }
    link.addEventListener('click', () => {
      // The download reads the file after the click: revoke and delete a little later.
      setTimeout(drop, SAVED_KEEP_MS)
      link.replaceWith(el('span', { class: 'saved' }, 'Saved'))
    })
    remove.addEventListener('click', () => {
      drop()
      this.item.remove()
    })
    this.item.append(link, remove)
  }
}

/** A send remembered until it ends, so a reloaded page can resume it when the person picks the file again. */
export interface Outgoing {
  /** The sending page's own peer id: only that identity lists it. */
  self: string
  /** The receiver's peer id. */
  peerId: string
  name: string
  size: number
  sha256: string
  at: number
}

/** Whether `value` (from localStorage, which anything on this origin may write) is an `Outgoing`. */
function isOutgoing (value: unknown): value is Outgoing {
  if (typeof value !== 'object' || value === null) return false
  const o = value as Record<string, unknown>
  return typeof o.self === 'string' && typeof o.peerId === 'string' && typeof o.name === 'string' && Number.isSafeInteger(o.size) && typeof o.sha256 === 'string' && typeof o.at === 'number'
}

/** The interrupted sends remembered, all or (with `self`) those of that identity of the page (a broken entry is dropped). */
export function loadOutgoing (self?: string): Outgoing[] {
  try {
    const list = JSON.parse(localStorage.getItem(OUTGOING_KEY) ?? '[]') as unknown
    return Array.isArray(list) ? list.filter(isOutgoing).filter((o) => self === undefined || o.self === self) : []
  } catch {
    return []
  }
}

/** Remember (`add`) or forget a send. */
export function rememberOutgoing (entry: Outgoing, add: boolean): void {
  const same = (o: Outgoing): boolean => o.self === entry.self && o.peerId === entry.peerId && o.sha256 === entry.sha256 && o.size === entry.size
  const list = loadOutgoing().filter((o) => !same(o))
  if (add) list.push(entry)
  try {
    localStorage.setItem(OUTGOING_KEY, JSON.stringify(list.slice(-MAX_OUTGOING)))
  } catch {}
}
