/**
 * File transfer between peers: a `file` offer (name and size) the receiver grants by a rule or a
 * person, then on its `file` channel a JSON header line `{ name, size, sha256 }`, the bytes, and
 * the receiver's answer line `{ sha256, ok }`. Both sides show progress, speed, time left and the
 * checksum; either side can cancel (the channel is reset, or the offer withdrawn).
 */
import { sha256 } from '@noble/hashes/sha2.js'
import type { Channel } from '../client/mux/channel.ts'
import type { SockAgent } from '../client/sock/agent.ts'
import { StarsockError } from '../shared/errors.ts'
import type { Offer } from '../shared/sock-protocol.ts'
import { byId, el, formatBytes, formatSeconds, hex } from './dom.ts'
import { LineReader, writeLine } from '../client/mux/lines.ts'
import { parseFileHeader } from '../shared/file-transfer.ts'
import { badge, describeError, secureFailureOf, type Security, type SecurityBook } from './security.ts'
import type { AgentPart, PageContext } from './context.ts'

/** Largest file the page receives (it is held in memory to be saved). */
export const MAX_FILE_BYTES = 1024 * 1024 * 1024
const CHUNK_BYTES = 64 * 1024

/** One transfer's row in the page: progress bar, figures, checksum, cancel and (received) save. */
class TransferView {
  readonly item: HTMLLIElement
  private readonly bar: HTMLProgressElement
  private readonly figures: HTMLSpanElement
  private readonly result: HTMLSpanElement
  private readonly cancel: HTMLButtonElement
  private readonly started = performance.now()

  constructor (list: HTMLElement, direction: 'to' | 'from', peerId: string, name: string, private readonly size: number, onCancel: () => void) {
    this.item = el('li', { class: 'transfer', 'data-direction': direction })
    this.item.append(el('span', { class: 'name' }, `${direction === 'to' ? 'Sending' : 'Receiving'} ${name} (${formatBytes(size)}) ${direction} ${peerId}`))
    this.bar = el('progress', { max: String(Math.max(1, size)), value: '0', 'aria-label': `progress of ${name}` })
    this.figures = el('span', { class: 'figures' })
    this.result = el('span', { class: 'result', 'aria-live': 'polite' })
    this.cancel = el('button', { type: 'button' }, 'Cancel')
    this.cancel.addEventListener('click', onCancel)
    this.item.append(this.bar, this.figures, this.cancel, this.result)
    list.prepend(this.item)
  }

  /** Show the badge of the session the transfer runs on. */
  secured (security: Security | undefined): void {
    if (security === undefined) return
    this.item.querySelector('.name .badge')?.remove()
    this.item.querySelector('.name')?.append(badge(security))
  }

  /** Say what the transfer waits for. */
  waiting (text: string): void {
    this.figures.textContent = text
  }

  progress (done: number): void {
    this.bar.value = done
    const seconds = (performance.now() - this.started) / 1000
    const rate = done / Math.max(seconds, 0.001)
    this.figures.textContent = `${formatBytes(done)} · ${formatBytes(rate)}/s · ${formatSeconds((this.size - done) / rate)} left`
  }

  finish (text: string, state: 'done' | 'failed', save?: { name: string, data: Uint8Array }): void {
    this.cancel.disabled = true
    // From the row's start (the receiver's: the first bytes) to here, for the page benchmark (bench/page.ts).
    this.item.dataset.seconds = String((performance.now() - this.started) / 1000)
    this.item.dataset.state = state
    this.result.textContent = text
    if (save !== undefined) {
      const link = el('a', { download: save.name, href: URL.createObjectURL(new Blob([save.data as BlobPart])) }, 'Save')
      this.item.append(link)
    }
  }
}

/** Offer `file` to `peerId` and send it once granted; settles when the receiver confirmed (or refused, or failed). */
export async function sendFile (agent: SockAgent, peerId: string, file: File, list: HTMLElement, book: SecurityBook): Promise<void> {
  const data = new Uint8Array(await file.arrayBuffer())
  const digest = hex(sha256(data))
  const cancel = new AbortController()
  let channel: Channel | undefined
  const view = new TransferView(list, 'to', peerId, file.name, data.byteLength, () => {
    cancel.abort()
    channel?.abort(new Error('Cancelled by the sender'))
  })
  view.item.dataset.sha256 = digest
  let used: Security | undefined
  try {
    // No byte goes before the receiver agreed (a rule, or a person there).
    view.waiting('waiting for the receiver to accept…')
    // The badge of the connection the file goes on, not the peer's summary.
    channel = await agent.offerFile(peerId, { name: file.name, size: data.byteLength, signal: cancel.signal, onSession: (mux) => { used = { secure: mux.secure } } })
    view.secured(used)
    await writeLine(channel, { name: file.name, size: data.byteLength, sha256: digest })
    for (let at = 0; at < data.byteLength; at += CHUNK_BYTES) {
      await channel.write(data.subarray(at, at + CHUNK_BYTES))
      view.progress(Math.min(at + CHUNK_BYTES, data.byteLength))
    }
    view.progress(data.byteLength)
    await channel.closeWrite()
    const answer = await new LineReader(channel).next() as { ok?: boolean, sha256?: string } | null
    if (answer?.ok === true) view.finish(`Delivered, SHA-256 ${digest} confirmed by the receiver`, 'done')
    else view.finish(`The receiver got other bytes (SHA-256 ${answer?.sha256 ?? '?'})`, 'failed')
  } catch (err) {
    book.failed(peerId, err)
    view.item.dataset.code = err instanceof StarsockError ? err.code : ''
    const failed = secureFailureOf(err)
    view.secured(failed !== undefined ? { failed } : used)
    view.finish(`${err instanceof StarsockError && err.code === 'E_DENIED' ? 'Refused' : 'Failed'}: ${describeError(err).replace(/^Error: /, '')}`, 'failed')
  }
}

/** Take the `file` channel of a granted `offer`: read the header, the bytes, check and answer. */
export async function receiveFile (channel: Channel, list: HTMLElement, offer: Offer, security: Security, book: SecurityBook): Promise<void> {
  const reader = new LineReader(channel)
  let view: TransferView | undefined
  try {
    const header = parseFileHeader(await reader.next(), Math.min(MAX_FILE_BYTES, offer.size ?? 0))
    if (header.size !== offer.size) throw new Error(`the file header announces ${header.size} bytes, the offer ${offer.size ?? 0}`)
    const { size } = header
    const name = offer.name
    view = new TransferView(list, 'from', channel.remotePeer, name, size, () => channel.abort(new Error('Cancelled by the receiver')))
    view.secured(security)
    const data = new Uint8Array(size)
    const hash = sha256.create()
    let done = 0
    const take = (chunk: Uint8Array): void => {
      if (done + chunk.byteLength > size) throw new Error('more bytes than announced')
      data.set(chunk, done)
      hash.update(chunk)
      done += chunk.byteLength
    }
    take(reader.rest())
    let lastDraw = 0
    for (;;) {
      const chunk = await channel.read()
      if (chunk === null) break
      take(chunk)
      if (performance.now() - lastDraw > 100) {
        view.progress(done)
        lastDraw = performance.now()
      }
    }
    view.progress(done)
    const digest = hex(hash.digest())
    const ok = done === size && digest === header.sha256
    view.item.dataset.sha256 = digest
    await writeLine(channel, { ok, sha256: digest })
    await channel.closeWrite()
    view.finish(ok ? `Received byte-exact, SHA-256 ${digest}` : `Checksum mismatch: got ${digest}`, ok ? 'done' : 'failed', ok ? { name, data } : undefined)
  } catch (err) {
    channel.abort(err)
    book.failed(channel.remotePeer, err)
    view?.finish(`Failed: ${describeError(err).replace(/^Error: /, '')}`, 'failed')
  }
}

/** The file form, and the agent's side of files offered to this page. */
export function setupFiles (ctx: PageContext): AgentPart {
  byId<HTMLFormElement>('file-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const file = byId<HTMLInputElement>('file-input').files?.[0]
    if (file === undefined) return
    void (async () => {
      try {
        await sendFile(ctx.needAgent(), ctx.needPeer(), file, byId('transfers'), ctx.book)
      } catch (err) {
        byId('transfers').prepend(el('li', { 'data-state': 'failed' }, `Not sent: ${(err as Error).message}`))
      }
    })()
  })
  return {
    // TODO(issue 17): a page takes every file offered (within MAX_FILE_BYTES and the quota), as it did before files were offers.
    allow: () => ['file:*'],
    files: { maxFileBytes: MAX_FILE_BYTES, onFile: (channel, mapping) => { void receiveFile(channel, byId('transfers'), mapping.offer, { secure: mapping.secure }, ctx.book) } }
  }
}
