/**
 * One channel of a multiplexed connection, with its own credit window each way.
 *
 * A reliable channel is a byte stream: `write` waits for credit, `read` grants credit back as the
 * application consumes, `closeWrite` half-closes (FIN) and `abort` resets both ways. An unreliable
 * channel carries datagrams: `send` never waits; a datagram that does not fit the credit (or the
 * connection's output queue) is dropped and counted. Either way the receiver holds at most its
 * window of unread bytes, so one slow channel never holds up the others.
 */
import { StarsockError } from '../../shared/errors.ts'
import { encodeDatagramFrame, encodeFrame, encodeFrameHeader, encodeJsonFrame, encodeWindowFrame, FRAME, MAX_DATA_FRAME_BYTES, type SockAddress } from '../../shared/mux-frame.ts'
import { errorToWire, type OpenHeader } from '../../shared/sock-protocol.ts'
import { CreditWindow } from '../credit-window.ts'
import { Waiters } from '../waiters.ts'

/** What a channel needs from its multiplexer. */
export interface ChannelLink {
  /**
   * Queue a frame: `head` is its header (or a whole control frame), `payload` the bytes after it,
   * both handed over as they are (never copied here, never changed after). Data frames respect
   * the output bound, control frames never wait.
   */
  send: (head: Uint8Array, payload?: Uint8Array) => void
  /** Settles when the output queue has room for data. */
  room: (signal?: AbortSignal) => Promise<void>
  /** Whether the output queue is over its bound now. */
  full: () => boolean
  /** The channel is over both ways. */
  done: (channel: Channel) => void
  /** Count bytes and drops on the connection. */
  count: (what: 'in' | 'out' | 'dropped', n: number) => void
  /** Take `bytes` from the connection's budget for growing windows; `false` when it is spent. */
  reserve: (bytes: number) => boolean
  /** Give back what `reserve` took. */
  release: (bytes: number) => void
}

/** A datagram with the address it came from (bind channels) or goes to. */
export interface Datagram {
  data: Uint8Array
  addr?: SockAddress
  /** The incoming chunk `data` is a view into, while other views into it are queued too (see `Pin`). */
  pin?: Pin
}

/**
 * The views channels queued out of one incoming chunk (no copy on the way in) and the bytes they
 * hold: the chunk stays in memory while any of them is queued. Once those still queued are under
 * half of the chunk and stay queued `UNPIN_DELAY_MS`, they are copied (`unpinned`), so a slow
 * channel's few bytes never keep a chunk whose other payloads were read (or that was mostly frames
 * counted nowhere). The delay lets a reader that is taking the chunk's payloads in turn (every bulk
 * transfer) finish it without a copy.
 */
export interface Pin {
  /** Bytes of the chunk's memory. */
  size: number
  /** Bytes of the views still queued. */
  live: number
  items: Set<Datagram>
  /** The copy of the views left, once due. */
  timer?: ReturnType<typeof setTimeout>
}

/** How long views holding under half of their chunk may stay queued before they are copied. */
export const UNPIN_DELAY_MS = 50

/** `item` left its queue (read, or dropped): the views of its chunk still queued are copied if they hold under half of it `UNPIN_DELAY_MS` later. */
export function unpinned (item: Datagram): void {
  const pin = item.pin
  if (pin === undefined) return
  item.pin = undefined
  pin.items.delete(item)
  pin.live -= item.data.byteLength
  if (pin.live * 2 >= pin.size || pin.items.size === 0 || pin.timer !== undefined) return
  pin.timer = setTimeout(() => {
    for (const rest of pin.items) {
      rest.data = rest.data.slice()
      rest.pin = undefined
    }
    pin.items.clear()
  }, UNPIN_DELAY_MS)
  ;(pin.timer as { unref?: () => void }).unref?.()
}

/** Figures of one channel. */
export interface ChannelStats {
  sentBytes: number
  receivedBytes: number
  /** Unread bytes held here (never more than the window). */
  bufferedBytes: number
  /** Datagrams dropped here: no credit or no room to send, or over the window on arrival. */
  droppedDatagrams: number
  /** The same drops by cause. */
  droppedBy: DatagramDrops
}

/**
 * Datagrams a channel dropped, by cause: `credit` (sending: the other side's window was full, it
 * reads slower than we send), `queue` (sending: the connection's output queue was over its bound),
 * `window` (arriving: over this side's window, the other side sent past its credit).
 */
export interface DatagramDrops {
  credit: number
  queue: number
  window: number
}

/** Credit a datagram's bookkeeping takes on top of its bytes, so many tiny datagrams are bounded too. */
export const DATAGRAM_OVERHEAD_BYTES = 64

/**
 * Largest window a datagram channel grows to while its reader keeps up. A datagram channel's
 * window is what lets its sender go on while the other side is busy (a stalled event loop, a
 * stopped process): at 1,000 datagrams of 600 bytes a second, 256 KiB lasts about 190 ms once
 * half of it waits to be granted back, 1 MiB about 780 ms. Past it, datagrams are dropped and
 * counted (`credit`) rather than queued for longer: old datagrams are worth little.
 */
export const MAX_DATAGRAM_WINDOW_BYTES = 1024 * 1024

/** Credit a datagram takes: its length plus a fixed overhead. */
export function datagramCost (bytes: number): number {
  return bytes + DATAGRAM_OVERHEAD_BYTES
}

/** What a channel is made with. */
export interface ChannelInit {
  /** Channel id on the wire. */
  id: number
  /** What the channel is. */
  header: OpenHeader
  /** Whether this side opened it. */
  initiator: boolean
  /** Peer id of the other side. */
  remotePeer: string
  /** How the channel reaches its multiplexer. */
  link: ChannelLink
  /** Receive window to start with. */
  windowBytes: number
  /** Credit to send with at first: the other side's window. */
  sendWindowBytes: number
  /** The window never grows past this. @default windowBytes (no growth) */
  maxWindowBytes?: number
}

/** A channel. Made by `Muxer.open` or handed to the mux's `onOpen`. */
export class Channel {
  /** Channel id on the wire. */
  readonly id: number
  /** What the channel is. */
  readonly header: OpenHeader
  /** Whether this side opened it. */
  readonly initiator: boolean
  /** Peer id of the other side. */
  readonly remotePeer: string
  /** Set once the channel is open (for a bind: the address bound). */
  bound: SockAddress | undefined
  /** Set once open, for a bind to a wildcard: the addresses it can be reached at (see `Reply.addresses`). */
  addresses: SockAddress[] | undefined
  private readonly queue: Datagram[] = []
  private readonly readable = new Waiters()
  private readonly writable = new Waiters()
  private credit: number
  private remoteEnd: true | StarsockError | undefined
  private localEnd: true | StarsockError | undefined
  private writing: Promise<void> = Promise.resolve()
  private sent = 0
  private received = 0
  private dropped = 0
  private readonly droppedBy: DatagramDrops = { credit: 0, queue: 0, window: 0 }
  private finished = false
  private failure: StarsockError | undefined
  /** The receive window: it starts at the configured one and grows while the reader keeps up. */
  private readonly window: CreditWindow
  private resolveClosed!: () => void
  /** Settles once both directions are over (cleanly or not). */
  readonly whenClosed = new Promise<void>((resolve) => { this.resolveClosed = resolve })

  private readonly link: ChannelLink

  constructor (init: ChannelInit) {
    this.id = init.id
    this.header = init.header
    this.initiator = init.initiator
    this.remotePeer = init.remotePeer
    this.link = init.link
    // The window never grows past `maxWindowBytes`, nor a datagram channel's past MAX_DATAGRAM_WINDOW_BYTES.
    const max = init.maxWindowBytes ?? init.windowBytes
    this.window = new CreditWindow(init.windowBytes, this.datagrams ? Math.min(max, MAX_DATAGRAM_WINDOW_BYTES) : max)
    this.credit = init.sendWindowBytes
  }

  /** Whether the channel carries datagrams. */
  get datagrams (): boolean {
    return !this.header.reliable
  }

  /** Whether both directions are over. */
  get closed (): boolean {
    return this.finished
  }

  /** The error the channel failed with (reset, abort, or the connection going down), if it did. */
  get error (): StarsockError | undefined {
    return this.failure
  }

  /**
   * Send bytes (reliable channels); settles once they are within the other side's window. `data`
   * is copied (the caller may reuse it once this settles, before the bytes are written); a caller
   * that gives its buffer up uses `writeOwned`.
   */
  async write (data: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.datagrams) throw new TypeError('write() is for reliable channels; use send() for datagrams')
    await this.queueWrite(data, true, signal)
  }

  /**
   * `write` without the copy: `data` is handed over, its frames' payloads are views into it until
   * they are written, so the caller must never change it afterwards (a buffer read from a socket).
   */
  async writeOwned (data: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.datagrams) throw new TypeError('write() is for reliable channels; use send() for datagrams')
    await this.queueWrite(data, false, signal)
  }

  private async queueWrite (data: Uint8Array, copy: boolean, signal?: AbortSignal): Promise<void> {
    const previous = this.writing
    const mine = previous.then(async () => await this.writeNow(data, copy, signal))
    this.writing = mine.catch(() => {})
    await mine
  }

  private async writeNow (data: Uint8Array, copy: boolean, signal?: AbortSignal): Promise<void> {
    let at = 0
    while (at < data.byteLength) {
      this.checkWritable()
      if (this.credit <= 0) {
        await this.writable.wait(signal)
        continue
      }
      if (this.link.full()) {
        // A reset of this channel must end the wait too, not only room on the connection.
        await Promise.race([this.link.room(signal), this.writable.wait(signal)])
        continue
      }
      const n = Math.min(this.credit, data.byteLength - at, MAX_DATA_FRAME_BYTES)
      this.credit -= n
      this.sent += n
      this.link.count('out', n)
      // Copied frame by frame, as credit allows, so a large write never holds a second copy of itself.
      const payload = copy ? Uint8Array.prototype.slice.call(data, at, at + n) : data.subarray(at, at + n)
      this.link.send(encodeFrameHeader(FRAME.DATA, this.id, n), payload)
      at += n
    }
  }

  private checkWritable (): void {
    if (this.localEnd === true) throw new StarsockError('E_STREAM_CLOSED', 'Channel already closed for writing')
    if (this.localEnd !== undefined) throw this.localEnd
  }

  /** Send one datagram (unreliable channels); `false` when it was dropped (no credit or no room). */
  send (data: Uint8Array, addr?: SockAddress): boolean {
    if (!this.datagrams) throw new TypeError('send() is for unreliable channels; use write() for bytes')
    if (this.localEnd !== undefined) return false
    const cost = datagramCost(data.byteLength)
    if (cost > this.credit || this.link.full()) {
      this.droppedBy[cost > this.credit ? 'credit' : 'queue']++
      this.dropped++
      this.link.count('dropped', 1)
      return false
    }
    this.credit -= cost
    this.sent += data.byteLength
    this.link.count('out', data.byteLength)
    this.link.send(encodeDatagramFrame(this.id, data, addr))
    return true
  }

  /** The next chunk of a reliable channel, or `null` at the other side's FIN; rejects on reset. */
  async read (signal?: AbortSignal): Promise<Uint8Array | null> {
    const item = await this.receive(signal)
    return item === null ? null : item.data
  }

  /**
   * Every chunk of a reliable channel that arrived and is unread, in order, as long as they add up
   * to at most `maxBytes` (the first goes whatever its size): what a writer to a socket sends as
   * one `writev`. Waits for one chunk like `read`, and grants credit once for all of them; `null`
   * at the other side's FIN, rejects on reset.
   */
  async readBatch (maxBytes: number, signal?: AbortSignal): Promise<Uint8Array[] | null> {
    if (this.datagrams) throw new TypeError('readBatch() is for reliable channels; use receive() for datagrams')
    while (this.queue.length === 0 && this.remoteEnd === undefined) await this.readable.wait(signal)
    if (this.queue.length === 0) {
      if (this.remoteEnd === true) return null
      throw this.remoteEnd as StarsockError
    }
    const chunks: Uint8Array[] = []
    let bytes = 0
    for (const item of this.queue) {
      if (chunks.length > 0 && bytes + item.data.byteLength > maxBytes) break
      chunks.push(item.data)
      bytes += item.data.byteLength
    }
    for (const item of this.queue.splice(0, chunks.length)) unpinned(item)
    this.window.read(bytes)
    this.grant()
    return chunks
  }

  /** The next datagram (or chunk, with no address), or `null` at the end; rejects on reset. */
  async receive (signal?: AbortSignal): Promise<Datagram | null> {
    while (this.queue.length === 0 && this.remoteEnd === undefined) await this.readable.wait(signal)
    const item = this.queue.shift()
    if (item !== undefined) {
      unpinned(item)
      const cost = this.datagrams ? datagramCost(item.data.byteLength) : item.data.byteLength
      this.window.read(cost)
      this.grant()
      return item
    }
    if (this.remoteEnd === true) return null
    throw this.remoteEnd as StarsockError
  }

  /** Every chunk until the other side's FIN. */
  async * [Symbol.asyncIterator] (): AsyncIterator<Uint8Array> {
    for (;;) {
      const chunk = await this.read()
      if (chunk === null) return
      yield chunk
    }
  }

  /** Half-close: FIN after pending writes. */
  async closeWrite (): Promise<void> {
    await this.writing
    if (this.localEnd !== undefined) return
    this.localEnd = true
    this.link.send(encodeFrame(FRAME.FIN, this.id))
    this.settleIfDone()
  }

  /** End both ways at once: the other side's reads and writes fail with `err` (or E_STREAM_CLOSED). */
  abort (err?: unknown): void {
    if (this.finished) return
    const error = err instanceof StarsockError ? err : new StarsockError(err === undefined ? 'E_STREAM_CLOSED' : 'E_STREAM_ABORTED', err instanceof Error ? err.message : err === undefined ? 'Channel closed' : String(err))
    this.link.send(encodeJsonFrame(FRAME.RESET, this.id, errorToWire(error)))
    this.fail(error, true)
  }

  /** Bytes the other side's window takes now (reliable channels), before writes still queued here take theirs. */
  get creditBytes (): number {
    return Math.max(0, this.credit)
  }

  /** Figures now. */
  stats (): ChannelStats {
    return { sentBytes: this.sent, receivedBytes: this.received, bufferedBytes: this.window.bufferedBytes, droppedDatagrams: this.dropped, droppedBy: { ...this.droppedBy } }
  }

  // ---- called by the multiplexer ----

  /** Bytes or a datagram arrived; `true` when it was queued for the reader (counted in the window), `false` when dropped. */
  push (item: Datagram): boolean {
    if (this.remoteEnd !== undefined) return false
    const cost = this.datagrams ? datagramCost(item.data.byteLength) : item.data.byteLength
    this.received += item.data.byteLength
    this.link.count('in', item.data.byteLength)
    if (!this.window.fits(cost)) {
      if (this.datagrams) {
        this.droppedBy.window++
        this.dropped++
        this.link.count('dropped', 1)
        return false
      }
      this.abort(new StarsockError('E_LIMIT_BUFFER', `The other side wrote past the channel window of ${this.window.windowBytes} bytes`))
      return false
    }
    if (item.data.byteLength === 0 && !this.datagrams) return false
    this.window.hold(cost)
    this.queue.push(item)
    this.readable.wake()
    return true
  }

  /** The other side granted credit. */
  addCredit (bytes: number): void {
    this.credit += bytes
    this.writable.wake()
  }

  /** The other side sent FIN. */
  remoteFin (): void {
    if (this.remoteEnd !== undefined) return
    this.remoteEnd = true
    this.readable.wake()
    this.settleIfDone()
  }

  /**
   * The channel is over both ways with `err` (a RESET arrived, or the connection went down). Bytes
   * that arrived before the other side's FIN are complete and stay readable, unless `discard`
   * (this side aborted); without a FIN, unread bytes are dropped and reads fail with `err`.
   */
  fail (err: StarsockError, discard = false): void {
    if (this.finished) return
    this.failure = err
    if (this.remoteEnd !== true || discard) {
      this.remoteEnd = err
      for (const item of this.queue) unpinned(item)
      this.queue.length = 0
      this.window.clear()
    }
    if (this.localEnd === undefined) this.localEnd = err
    this.readable.wake()
    this.writable.wake()
    this.finish()
  }

  private grant (): void {
    if (this.remoteEnd !== undefined) return
    // Half a window at a time, growing within the connection's budget while the reader keeps up
    // (a slow reader always has bytes unread, and its window never grows).
    const credit = this.window.grant((bytes) => this.link.reserve(bytes))
    if (credit > 0) this.link.send(encodeWindowFrame(this.id, credit))
  }

  private settleIfDone (): void {
    if (this.localEnd !== undefined && this.remoteEnd !== undefined) this.finish()
  }

  private finish (): void {
    if (this.finished) return
    this.finished = true
    this.link.release(this.window.takeGrown())
    this.link.done(this)
    this.resolveClosed()
  }
}
