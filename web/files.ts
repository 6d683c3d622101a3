/**
 * File transfer between peers. The sender hashes the file in a streaming pass and offers it
 * (name, size, sha256); the receiving person accepts or declines in a prompt (`prompt.ts`)
 * before any byte moves. On the `file` channel: a JSON header line `{ name, size, sha256, offset }`,
 * the bytes from `offset` (0, or where a partial copy the receiver kept ends), and the receiver's
 * answer line `{ sha256, ok }` over the whole file. The receiver writes to disk as bytes come
 * (`file-store.ts`); the sender reads the file in slices. Every transfer has a row with its state
 * (queued, hashing, waiting, sending/receiving, done, failed, declined, interrupted), progress,
 * rate (`RateMeter`), checksum and Cancel; a sender that reloads lists what was interrupted.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import type { Channel } from '../client/mux/channel.ts'
import { FILE_CHANNEL_TIMEOUT_MS, type OfferRequest, type SockAgent } from '../client/sock/agent.ts'
import type { Mapping } from '../client/sock/mapping.ts'
import { StarsockError } from '../shared/errors.ts'
import type { Offer } from '../shared/sock-protocol.ts'
import { byId, el, formatBytes, hex, secondsParam } from './dom.ts'
import { LineReader, writeLine } from '../client/mux/lines.ts'
import { checkFileHeader, parseFileHeader } from '../shared/file-transfer.ts'
import { badge, describeError, secureFailureOf, type Security } from './security.ts'
import type { AgentPart, PageContext } from './context.ts'
import { FileStore, hashPrefix, pickedSink, type FileSink, type PartialKey } from './file-store.ts'
import { prompt } from './prompt.ts'
import { displayName, loadOutgoing, rememberOutgoing, TransferView, type Outgoing, type TransferState } from './transfer-view.ts'

/** Largest file the page takes (on disk; a browser without OPFS takes less, see `MEMORY_MAX_FILE_BYTES`). */
export const MAX_FILE_BYTES = 4 * 1024 ** 3
/** Bytes the sender reads from the file at a time. */
const READ_BYTES = 1024 * 1024
/** Bytes of one channel write. */
const WRITE_BYTES = 64 * 1024
/** How long the person has to answer a file offer when no agent says (its `askTimeoutMs`); also the margin for a grant's ACK. */
const ASK_MS = 60_000
/** How long a receiving file channel waits for the sender's next byte before the transfer fails (the partial kept for a resume). */
export const FILE_IDLE_TIMEOUT_MS = 60_000
/** The URL parameter that sets `FILE_IDLE_TIMEOUT_MS` for this page, in seconds (`?file-idle-timeout=5`). */
export const FILE_IDLE_TIMEOUT_PARAM = 'file-idle-timeout'
/** Shortest and longest `?file-idle-timeout=` taken, in seconds; anything else leaves `FILE_IDLE_TIMEOUT_MS`. */
export const FILE_IDLE_TIMEOUT_RANGE_S = [2, 600] as const

/** The idle timeout from `?file-idle-timeout=SECONDS`; undefined (the default) without one or out of range. */
export function fileIdleTimeoutOf (search: string): number | undefined {
  return secondsParam(search, FILE_IDLE_TIMEOUT_PARAM, FILE_IDLE_TIMEOUT_RANGE_S)
}
/** SHA-256 of `file` in one streaming pass of `READ_BYTES` slices; `onProgress` after each. */
async function hashFile (file: Blob, onProgress: (done: number) => void, signal: AbortSignal): Promise<string> {
  const hash = sha256.create()
  for (let at = 0; at < file.size; at += READ_BYTES) {
    signal.throwIfAborted()
    hash.update(new Uint8Array(await file.slice(at, at + READ_BYTES).arrayBuffer()))
    onProgress(Math.min(file.size, at + READ_BYTES))
  }
  return hex(hash.digest())
}

/** The words for an error on a row: a declined offer says who declined. */
function endOf (err: unknown, who: string): { state: TransferState, text: string } {
  const words = describeError(err).replace(/^Error: /, '')
  if (err instanceof StarsockError && err.code === 'E_DENIED') return { state: 'declined', text: `Declined by ${who}: ${words}` }
  return { state: 'failed', text: `Failed: ${words}` }
}

/** The page's file transfers: sends (one after another per peer) and receives. */
class Transfers {
  /** Per peer, the end of its queue of sends. */
  private readonly queues = new Map<string, Promise<void>>()
  /** Offers a person accepted: where each goes (the grant's offset, or a picked file), and its row. */
  private readonly plans = new WeakMap<Offer, { offset: number, key?: PartialKey, picked?: FileSystemFileHandle, view: TransferView, disarm?: () => void, cancelled: boolean }>()

  constructor (private readonly ctx: PageContext, private readonly store: Promise<FileStore>, private readonly idleTimeoutMs: number) {}

  private get list (): HTMLElement {
    return byId('transfers')
  }

  /** Queue `file` for `peerId`: its row shows at once; it is offered once the sends before it to that peer ended. */
  send (peerId: string, file: File): void {
    const cancel = new AbortController()
    let channel: Channel | undefined
    const view = new TransferView(this.list, 'to', `Sending ${displayName(file.name)} (${formatBytes(file.size)}) to ${this.ctx.nameOf(peerId)}`, file.size, () => {
      cancel.abort(new StarsockError('E_ABORTED', 'Cancelled by the sender'))
      channel?.abort(new Error('Cancelled by the sender'))
    })
    view.item.dataset.peer = peerId
    view.state('queued', 'queued')
    const run = async (): Promise<void> => {
      if (cancel.signal.aborted) return view.finish('Cancelled', 'failed')
      await this.sendNow(this.ctx.needAgent(), peerId, file, view, cancel.signal, (c) => { channel = c })
    }
    const queue = (this.queues.get(peerId) ?? Promise.resolve()).then(run, run)
    this.queues.set(peerId, queue)
  }

  /** Hash, offer, and send `file` (from the offset the receiver grants); settles when it ended, the row saying how. */
  private async sendNow (agent: SockAgent, peerId: string, file: File, view: TransferView, signal: AbortSignal, onChannel: (c: Channel) => void): Promise<void> {
    const who = this.ctx.nameOf(peerId)
    let used: Security | undefined
    let entry: Outgoing | undefined
    try {
      view.state('hashing', 'computing the SHA-256…')
      const digest = await hashFile(file, (done) => view.state('hashing', `computing the SHA-256: ${formatBytes(done)} of ${formatBytes(file.size)}`), signal)
      view.item.dataset.sha256 = digest
      entry = { self: agent.peer.peerId, peerId, name: file.name, size: file.size, sha256: digest, at: Date.now() }
      rememberOutgoing(entry, true)
      // No byte goes before the receiver agreed (a rule, or a person there).
      view.state('waiting', `waiting for ${who} to accept…`)
      const { channel, offset } = await agent.offerFileAt(peerId, { name: file.name, size: file.size, sha256: digest, signal, onSession: (mux) => { used = { secure: mux.secure } } })
      onChannel(channel)
      view.secured(used)
      view.item.dataset.offset = String(offset)
      view.state('sending', offset > 0 ? `resuming after ${formatBytes(offset)}…` : 'sending…')
      await writeLine(channel, { name: file.name, size: file.size, sha256: digest, offset })
      let lastDraw = 0
      for (let at = offset; at < file.size; at += READ_BYTES) {
        const slice = new Uint8Array(await file.slice(at, Math.min(file.size, at + READ_BYTES)).arrayBuffer())
        for (let i = 0; i < slice.byteLength; i += WRITE_BYTES) await channel.write(slice.subarray(i, i + WRITE_BYTES))
        if (performance.now() - lastDraw > 100) {
          view.progress(at + slice.byteLength, at + slice.byteLength - offset)
          lastDraw = performance.now()
        }
      }
      view.progress(file.size, file.size - offset)
      await channel.closeWrite()
      const answer = await new LineReader(channel).next() as { ok?: boolean, sha256?: string } | null
      rememberOutgoing(entry, false)
      if (answer?.ok === true && answer.sha256 === digest) view.finish(`Delivered${offset > 0 ? ` (resumed after ${formatBytes(offset)})` : ''}, SHA-256 ${digest} confirmed by ${who}`, 'done')
      else view.finish(`${who} got other bytes (SHA-256 ${typeof answer?.sha256 === 'string' ? answer.sha256.slice(0, 64) : '?'})`, 'failed')
    } catch (err) {
      this.ctx.book.failed(peerId, err)
      view.item.dataset.code = err instanceof StarsockError ? err.code : ''
      const failed = secureFailureOf(err)
      view.secured(failed !== undefined ? { failed } : used)
      const end = endOf(err, who)
      // A declined file is not to be resumed; anything else stays listed after a reload.
      if (end.state === 'declined' && entry !== undefined) rememberOutgoing(entry, false)
      view.finish(end.text, end.state)
    }
  }

  /** Ask the person about a file offer; settles `true` to accept (its row then waits for the bytes). */
  async ask (request: OfferRequest, signal: AbortSignal): Promise<boolean> {
    const { offer, peerId } = request
    const size = offer.size ?? 0
    const name = displayName(offer.name)
    const who = this.ctx.nameOf(peerId)
    const store = await this.store
    const room = await store.room()
    if (size > room) {
      // One row per peer says it, with a count: a flood of offers too big does not bury the list.
      const line = `Refused ${name} (${formatBytes(size)}) from ${who}: this browser has room for ${formatBytes(room)}`
      const row = this.list.querySelector<HTMLElement>(`li[data-refused-from="${CSS.escape(peerId)}"]`)
      if (row === null) {
        this.list.prepend(el('li', { class: 'transfer', 'data-direction': 'from', 'data-state': 'failed', 'data-refused-from': peerId, 'data-count': '1' }, line))
      } else {
        const count = Number(row.dataset.count ?? '1') + 1
        row.dataset.count = String(count)
        row.textContent = `${line} (${count} offers too big from this peer)`
      }
      return false
    }
    // Only a verified sender's file with its sha256 resumes (the agent grants no offset otherwise),
    // and only into the identity that received its bytes: an offset granted to a New identity
    // would tell the sender it is the old one.
    const self = this.ctx.peer?.peerId
    const wanted = request.secure && offer.sha256 !== undefined && self !== undefined ? { self, peerId, sha256: offer.sha256, size } : undefined
    // One transfer per partial: a second offer of the same file meanwhile starts afresh.
    const key = wanted !== undefined && store.claim(wanted) ? wanted : undefined
    const have = key === undefined ? 0 : await store.partialBytes(key)
    const text = el('span')
    // The name is the peer's words, set apart (quoted, in italics), so none of it passes for the page's own.
    text.append(`${who} `, badge({ secure: request.secure }), ' wants to send you ', el('q', { class: 'their-words' }, name), ` (${formatBytes(size)})${have > 0 ? `; ${formatBytes(have)} of it are here already and it resumes after them` : ''}.`)
    if (!store.onDisk) text.append(' This browser keeps it in memory until you save it.')
    const canPick = typeof window.showSaveFilePicker === 'function'
    const { answer } = await prompt({
      title: 'File offered',
      text,
      actions: [
        { answer: 'decline', label: 'Decline' },
        { answer: 'accept', label: 'Accept', grants: true },
        ...(canPick ? [{ answer: 'saveas' as const, label: 'Save as…', grants: true }] : [])
      ],
      deny: 'decline',
      // The agent's figure (`?ask-timeout=`): the countdown shows when the agent stops waiting.
      timeoutMs: this.ctx.agent?.askTimeoutMs ?? ASK_MS,
      signal,
      data: { kind: 'file', peer: peerId }
    })
    // Declined, or going to a picked file (no resume): the partial is free again.
    if (answer !== 'accept' && key !== undefined) store.release(key)
    if (answer === 'decline') return false
    let picked: FileSystemFileHandle | undefined
    if (answer === 'saveas') {
      try {
        picked = await (window.showSaveFilePicker as SaveFilePicker)({ suggestedName: name })
      } catch {
        return false // the person closed the picker: no file
      }
    }
    const cancelled = { cancelled: false }
    const view = new TransferView(this.list, 'from', `Receiving ${name} (${formatBytes(size)}) from ${who}`, size, () => {
      // Before the channel came: it is refused when it comes (the sender learns it then).
      cancelled.cancelled = true
      view.state('failed', 'cancelled')
    })
    view.item.dataset.peer = peerId
    view.secured({ secure: request.secure })
    view.state('waiting', `accepted; waiting for ${who} to send…`)
    const disarm = this.awaitBytes(offer, view, who, () => { if (key !== undefined && picked === undefined) store.release(key) })
    const plan = { offset: picked === undefined ? have : 0, key: picked === undefined ? key : undefined, picked, view, disarm, get cancelled () { return cancelled.cancelled } }
    this.plans.set(offer, plan)
    return true
  }

  /**
   * An accepted offer whose bytes may never come (the sender gave up after the accept, its page
   * went, it opened no channel in time, this page left the session): the row then says so instead
   * of waiting for ever, and `free` gives the partial back. Returns what `receive` calls once the
   * channel came (the listeners and the timer go).
   */
  private awaitBytes (offer: Offer, view: TransferView, who: string, free: () => void): () => void {
    const agent = this.ctx.agent
    let timer: ReturnType<typeof setTimeout> | undefined
    const stops: Array<() => void> = []
    const disarm = (): void => {
      clearTimeout(timer)
      for (const stop of stops.splice(0)) stop()
    }
    const noBytes = (why: string): void => {
      disarm()
      free()
      view.finish(`No bytes came from ${who}: ${why}`, 'failed')
    }
    // The agent kills a granted file whose channel does not come within FILE_CHANNEL_TIMEOUT_MS; the ACK of the grant comes first.
    timer = setTimeout(() => noBytes('none came in time'), FILE_CHANNEL_TIMEOUT_MS + ASK_MS)
    if (agent !== undefined) {
      stops.push(agent.on('offer', (d) => { if (d.offer === offer && d.withdrawn === true) noBytes(d.reason ?? 'the grant was withdrawn') }))
      stops.push(agent.on('mapping:close', ({ mapping, error }) => { if (mapping.offer === offer) noBytes(describeError(error).replace(/^Error: /, '')) }))
    }
    stops.push(this.ctx.on('session:close', () => noBytes('this page left the session')))
    return disarm
  }

  /** The offset the person's accept grants (a partial already here). */
  resumeOffset (request: OfferRequest): number {
    return this.plans.get(request.offer)?.offset ?? 0
  }

  /** The `file` channel of a granted offer: header, bytes to disk, check, answer. */
  async receive (channel: Channel, mapping: Mapping): Promise<void> {
    const offer = mapping.offer
    const size = offer.size ?? 0
    const who = this.ctx.nameOf(channel.remotePeer)
    let plan = this.plans.get(offer)
    if (plan === undefined) {
      // Granted by a rule: nobody was asked, so the row starts here.
      const view = new TransferView(this.list, 'from', `Receiving ${displayName(offer.name)} (${formatBytes(size)}) from ${who}`, size, () => { channel.abort(new Error('Cancelled by the receiver')) })
      plan = { offset: 0, view, cancelled: false }
    }
    const { view } = plan
    plan.disarm?.() // the channel came: the sink below takes over the claim
    view.secured({ secure: mapping.secure })
    view.item.querySelector('button.cancel')?.addEventListener('click', () => channel.abort(new Error('Cancelled by the receiver')))
    if (plan.cancelled) channel.abort(new Error('Cancelled by the receiver'))
    const offset = mapping.fileOffset
    view.item.dataset.offset = String(offset)
    const reader = new LineReader(channel)
    let sink: FileSink | undefined
    let done = offset
    /**
     * `read` (of the sender's next bytes), failing the channel when nothing comes within the idle
     * timeout: a sender that stops would otherwise hold the partial and the row for ever. The
     * clock runs only while waiting for the sender, not while this page writes to disk.
     */
    const fromSender = async <T>(read: Promise<T>): Promise<T> => {
      const timer = setTimeout(() => channel.abort(new StarsockError('E_STREAM_IDLE', `no byte came from ${who} for ${this.idleTimeoutMs / 1000} s`)), this.idleTimeoutMs)
      try {
        return await read
      } finally {
        clearTimeout(timer)
      }
    }
    try {
      const header = parseFileHeader(await fromSender(reader.next()), size)
      checkFileHeader(header, { size, sha256: offer.sha256, offset })
      sink = plan.picked !== undefined ? await pickedSink(plan.picked) : await (await this.store).sink(offer.name, size, plan.key, offset)
      const hash = offset > 0 ? await hashPrefix(await sink.file(), offset) : sha256.create()
      view.state('receiving', offset > 0 ? `resuming after ${formatBytes(offset)}…` : 'receiving…')
      const take = async (chunk: Uint8Array): Promise<void> => {
        if (chunk.byteLength === 0) return
        if (done + chunk.byteLength > size) throw new StarsockError('E_BAD_REQUEST', 'more bytes than announced')
        hash.update(chunk)
        await (sink as FileSink).write(chunk)
        done += chunk.byteLength
      }
      await take(reader.rest())
      let lastDraw = 0
      for (;;) {
        const chunk = await fromSender(channel.read())
        if (chunk === null) break
        await take(chunk)
        if (performance.now() - lastDraw > 100) {
          view.progress(done, done - offset)
          lastDraw = performance.now()
        }
      }
      view.progress(done, done - offset)
      const digest = hex(hash.digest())
      const ok = done === size && digest === header.sha256
      view.item.dataset.sha256 = digest
      await sink.close()
      await writeLine(channel, { ok, sha256: digest })
      await channel.closeWrite()
      if (!ok) {
        await sink.remove()
        return view.finish(done === size ? `Checksum mismatch: got ${digest}, ${who} announced ${header.sha256.slice(0, 64)}` : `Ended after ${formatBytes(done)} of ${formatBytes(size)}`, 'failed')
      }
      const resumed = offset > 0 ? ` (resumed after ${formatBytes(offset)})` : ''
      if (plan.picked !== undefined) return view.finish(`Saved to ${plan.picked.name}${resumed}, SHA-256 ${digest}, the same as ${who}'s`, 'done')
      view.finish(`Received byte-exact${resumed}, SHA-256 ${digest}, the same as ${who}'s`, 'done', { name: offer.name, file: await sink.file(), remove: sink.remove })
    } catch (err) {
      channel.abort(err)
      this.ctx.book.failed(channel.remotePeer, err)
      // Bytes of a resumable file stay for the next offer of it; anything else goes.
      // A connection found tampered with keeps nothing (what came before the tamper was genuine, but nothing of it is trusted to resume).
      const keep = sink !== undefined && plan.key !== undefined && done > offset && done < size && !plan.cancelled && secureFailureOf(err) === undefined
      if (keep) await sink?.close().catch(() => {})
      else await sink?.abort().catch(() => {})
      if (sink === undefined && plan.key !== undefined) void this.store.then((s) => s.release(plan.key as PartialKey))
      const words = describeError(err).replace(/^Error: /, '')
      view.progress(done, done - offset) // the figures as they ended (drawn at most every 100 ms until then)
      if (keep) {
        view.finish(`Interrupted after ${formatBytes(done)} of ${formatBytes(size)} (${words}); it resumes there if ${who} offers it again`, 'interrupted')
        view.offerDiscard(sink as FileSink)
      }
      else view.finish(`Failed: ${words}`, 'failed')
    }
  }

  /**
   * Rows for the sends identity `self` remembers (a reloaded page), each with a file input: the
   * same file picked again resumes. Rows listed for another identity go: a New identity does not
   * offer the old one's sends (nor would the receiver resume them for it).
   */
  listInterrupted (self: string): void {
    for (const old of this.list.querySelectorAll('li.transfer.interrupted')) old.remove()
    for (const entry of loadOutgoing(self)) {
      const row = el('li', { class: 'transfer interrupted', 'data-direction': 'to', 'data-state': 'interrupted', 'data-sha256': entry.sha256 })
      const input = el('input', { type: 'file', class: 'resume-input' })
      const label = el('label')
      label.append(`Resume: pick the same file again (${displayName(entry.name)}, ${formatBytes(entry.size)}, to ${this.ctx.nameOf(entry.peerId)}) `, input)
      const status = el('span', { class: 'result', 'aria-live': 'polite' })
      const forget = el('button', { type: 'button', class: 'forget' }, 'Forget')
      forget.addEventListener('click', () => {
        rememberOutgoing(entry, false)
        row.remove()
      })
      input.addEventListener('change', () => {
        const file = input.files?.[0]
        if (file === undefined) return
        if (file.size !== entry.size || file.name !== entry.name) {
          status.textContent = `That is another file (${formatBytes(file.size)}): pick ${displayName(entry.name)}`
          return
        }
        // The sha256 is checked by the receiver against its partial's key: another file of the same name and size starts at 0.
        row.remove()
        this.send(entry.peerId, file)
      })
      row.append(label, forget, status)
      this.list.append(row)
    }
  }
}

/** `showSaveFilePicker` (File System Access API, Chromium), as far as the page uses it. */
type SaveFilePicker = (options: { suggestedName?: string }) => Promise<FileSystemFileHandle>
declare global {
  interface Window {
    showSaveFilePicker?: SaveFilePicker
  }
}

/**
 * The file form (several files), drag and drop onto the files section, and the agent's side of
 * files offered to this page. `search`: the page's query string (`?file-idle-timeout=`).
 */
export function setupFiles (ctx: PageContext, search = location.search): AgentPart {
  const store = FileStore.open()
  const transfers = new Transfers(ctx, store, fileIdleTimeoutOf(search) ?? FILE_IDLE_TIMEOUT_MS)
  void store.then((s) => {
    // Where received files go, once the store is open (and cleaned up): tests wait for it too.
    byId('files').dataset.store = s.onDisk ? 'disk' : 'memory'
    if (!s.onDisk) byId('files-note').textContent = 'This browser has no private file system: received files are kept in memory (256 MiB at most).'
  })
  /** Send each of `files` to the picked peer; a failure to start says so in a row. */
  const sendAll = (files: Iterable<File>): void => {
    try {
      ctx.needAgent()
      const peerId = ctx.needPeer()
      for (const file of files) transfers.send(peerId, file)
    } catch (err) {
      byId('transfers').prepend(el('li', { 'data-state': 'failed' }, `Not sent: ${(err as Error).message}`))
    }
  }
  byId<HTMLFormElement>('file-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const input = byId<HTMLInputElement>('file-input')
    sendAll([...input.files ?? []])
    input.value = ''
  })
  const zone = byId('files')
  zone.addEventListener('dragover', (e) => {
    if (e.dataTransfer?.types.includes('Files') !== true) return
    e.preventDefault()
    e.dataTransfer.dropEffect = 'copy'
    zone.dataset.drop = 'over'
  })
  zone.addEventListener('dragleave', () => { delete zone.dataset.drop })
  zone.addEventListener('drop', (e) => {
    delete zone.dataset.drop
    const files = [...e.dataTransfer?.files ?? []]
    if (files.length === 0) return
    e.preventDefault()
    sendAll(files)
  })
  // The sends remembered are per identity: listed once the session (and so the page's peer id) is known.
  ctx.on('session', ({ peer }) => transfers.listInterrupted(peer.peerId))
  return {
    ask: async (request, signal) => await transfers.ask(request, signal),
    files: {
      maxFileBytes: MAX_FILE_BYTES,
      resumeOffset: (request) => transfers.resumeOffset(request),
      onFile: (channel, mapping) => { void transfers.receive(channel, mapping) }
    }
  }
}
