/**
 * The two ends of a one-way stream over the socket.io-pull-stream framing, with credit flow
 * control between starsock peers.
 *
 * The receiver announces a window with `accept.S(windowBytes)` and grants more with
 * `credit.S(n)` as the application consumes; the sender never has more than the granted bytes in
 * flight, so neither the server nor the receiver buffers more than the window. A legacy receiver
 * sends `accept.S` with no window: the sender then relies on transport backpressure (the server
 * stops reading it). A legacy sender ignores the window, so the receiver caps what it buffers and
 * fails the stream past that cap instead of growing.
 *
 * Between peers whose links negotiated raw frames (`shared/raw-frame.ts`), the receiver's accept
 * carries its lane and the sender's carries the sender's: data then goes as raw frames on that
 * lane instead of `queue` events, with the same credit; ends and errors stay events on the same
 * ordered connection, so an end never overtakes data.
 */
import { errorFromWire, StarsockError, wireError } from '../shared/errors.ts'
import { streamEvent } from '../shared/events.ts'
import { FRAME_HEADER_BYTES, FRAME_KIND_DATA, isLane, writeFrameHeader } from '../shared/raw-frame.ts'
import { CreditWindow } from './credit-window.ts'
import { joinParts, partsArgumentError, partsLength } from './parts.ts'
import { Waiters } from './waiters.ts'

/** Room a `writeOwned` caller leaves at the front of its buffer (`reservedBytes`) for a raw frame's header. */
export const STREAM_HEADROOM_BYTES = FRAME_HEADER_BYTES

/** What a stream needs from the connection to the server. */
export interface StreamTransport {
  /** Send an event to the server. */
  emit: (event: string, ...args: unknown[]) => void
  /**
   * Send a raw frame after the events emitted so far: its bytes are `parts` in order, one message
   * (the transport may write them without joining them; it never keeps them past the write).
   * `false` when it could not (disconnected).
   */
  frame?: (parts: readonly Uint8Array[]) => boolean
  /** Settles when the transport has room for more bytes. */
  room: (signal?: AbortSignal) => Promise<void>
  /** Count bytes handed to the transport as events (`frame` counts its own). */
  sent: (bytes: number) => void
}

function toBytes (chunk: unknown): Uint8Array | undefined {
  if (chunk instanceof Uint8Array) return chunk
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk) // socket.io-client in the browser
  return undefined
}

/** The receiving end: a bounded queue of chunks that grants credit as they are read. */
export class ReceiveStream {
  private readonly chunks: Uint8Array[] = []
  private readonly waiters = new Waiters()
  private end: true | StarsockError | undefined
  private readonly window: CreditWindow
  /** Bytes received in all. */
  receivedBytes = 0

  constructor (
    private readonly transport: StreamTransport,
    /** Stream id on the wire. */
    readonly id: string,
    private readonly windowBytes: number,
    /** Buffered bytes past which the stream fails (a sender that ignores the window). */
    private readonly limitBytes: number,
    private readonly onDone: () => void,
    /** The lane raw frames of this stream arrive on; `undefined` when they come as events. */
    readonly lane?: number
  ) {
    this.window = new CreditWindow(windowBytes)
  }

  /** Bytes received and not yet read. */
  get bufferedBytes (): number {
    return this.window.bufferedBytes
  }

  /** Tell the sender we are ready, with our window (and our lane, for raw frames). */
  open (): void {
    if (this.lane !== undefined) this.transport.emit(streamEvent('accept', this.id), this.windowBytes, this.lane)
    else this.transport.emit(streamEvent('accept', this.id), this.windowBytes)
  }

  /** Whether the stream has ended (cleanly or not). */
  get done (): boolean {
    return this.end !== undefined
  }

  /** A chunk arrived. */
  push (chunk: unknown): void {
    if (this.end !== undefined) return
    const bytes = toBytes(chunk)
    if (bytes === undefined) return this.abort(wireError('E_BAD_REQUEST', 'non-binary chunk'), new StarsockError('E_BAD_REQUEST', 'The sender sent a non-binary chunk'))
    if (bytes.byteLength === 0) return
    this.chunks.push(bytes)
    this.window.hold(bytes.byteLength)
    this.receivedBytes += bytes.byteLength
    if (this.window.bufferedBytes > this.limitBytes) {
      return this.abort(wireError('E_LIMIT_BUFFER', 'Receiver buffer full'), new StarsockError('E_LIMIT_BUFFER', `The sender ignored the window: more than ${this.limitBytes} bytes unread`))
    }
    this.waiters.wake()
  }

  /** The sender ended the stream: `true` cleanly, a string with an error. */
  finish (value: unknown): void {
    if (this.end !== undefined) return
    this.settle(value === true ? true : errorFromWire(value))
  }

  /** The stream failed here (the connection to the server dropped). */
  fail (err: StarsockError): void {
    if (this.end === undefined) this.settle(err)
  }

  /** Give up on the stream: tell the sender with `reason` (a wire string); reads fail with `local`. */
  abort (reason: string, local: StarsockError): void {
    if (this.end !== undefined) return
    this.transport.emit(streamEvent('abort', this.id), reason)
    this.chunks.length = 0
    this.window.clear()
    this.settle(local)
  }

  /** The next chunk, or `null` at a clean end; rejects with the stream's error. */
  async read (signal?: AbortSignal): Promise<Uint8Array | null> {
    while (this.chunks.length === 0 && this.end === undefined) await this.waiters.wait(signal)
    const chunk = this.chunks.shift()
    if (chunk !== undefined) {
      this.window.read(chunk.byteLength)
      const credit = this.end === undefined ? this.window.grant() : 0
      if (credit > 0) this.transport.emit(streamEvent('credit', this.id), credit)
      return chunk
    }
    if (this.end === true) return null
    throw this.end as StarsockError
  }

  private settle (end: true | StarsockError): void {
    this.end = end
    this.waiters.wake()
    this.onDone()
  }
}

/** The sending end: writes wait for `accept`, for credit and for transport room. */
export class SendStream {
  private readonly waiters = new Waiters()
  private accepted = false
  /** Bytes the receiver still takes; `undefined` for a legacy receiver (no credit). */
  private credit: number | undefined
  /** The receiver's window, as it announced it (0 for a legacy receiver). */
  private windowBytes = 0
  /** The lane to send raw frames on, when the server gave one. */
  private lane: number | undefined
  private failure: StarsockError | undefined
  private ended = false
  private endSent = false
  private queue: Promise<void> = Promise.resolve()
  /** Bytes sent in all. */
  sentBytes = 0

  constructor (
    private readonly transport: StreamTransport,
    /** Stream id on the wire. */
    readonly id: string,
    /** Largest chunk sent as one message (`widenChunks` may raise it, up to `maxChunkBytes`). */
    public chunkBytes: number,
    private readonly onDone: () => void,
    /** Largest chunk the server takes as one message. @default chunkBytes */
    private readonly maxChunkBytes = chunkBytes
  ) {}

  /**
   * Let chunks be up to `extraBytes` larger, within what the server takes: the secure channel's
   * framing on a full chunk, so a full chunk of plaintext still goes as one message. Returns the
   * chunk size now.
   */
  widenChunks (extraBytes: number): number {
    this.chunkBytes = Math.max(this.chunkBytes, Math.min(this.chunkBytes + extraBytes, this.maxChunkBytes))
    return this.chunkBytes
  }

  /** Credit left, or `undefined` without flow control. */
  get creditBytes (): number | undefined {
    return this.credit
  }

  /** Whether the stream has ended or failed. */
  get done (): boolean {
    return this.ended || this.failure !== undefined
  }

  /** The receiver is ready; a number is its window (a starsock receiver), a `lane` the server's lane for raw frames. */
  onAccept (window: unknown, lane?: unknown): void {
    if (this.accepted) return
    this.accepted = true
    this.credit = typeof window === 'number' && window > 0 ? window : undefined
    this.windowBytes = this.credit ?? 0
    this.lane = isLane(lane) && this.transport.frame !== undefined ? lane : undefined
    this.waiters.wake()
  }

  /** The receiver granted more bytes. */
  onCredit (bytes: unknown): void {
    if (this.credit === undefined || typeof bytes !== 'number' || !(bytes > 0)) return
    this.credit += bytes
    this.waiters.wake()
  }

  /** The receiver gave up (closed or aborted): writes fail with its reason. */
  onAbort (reason: unknown): void {
    this.fail(errorFromWire(reason))
  }

  /** Fail pending and later writes with `err`. */
  fail (err: StarsockError): void {
    if (this.failure !== undefined) return
    this.failure = err
    this.waiters.wake()
    this.onDone()
  }

  /**
   * Send `data` (split into chunks under the message size); settles once the last chunk is
   * handed to the transport within the receiver's window. Writes run in call order. Each chunk is
   * a copy: the caller may reuse `data` once this settles, before the transport flushes it.
   */
  write (data: Uint8Array, signal?: AbortSignal): Promise<void> {
    return this.queueWrite(data, false, signal)
  }

  /**
   * `write` for a caller that gives `data` up (a joined batch, a sealed chunk): no copy, the chunks are
   * views handed to the transport, so `data` must never be changed afterwards. Data of at most
   * `chunkBytes` and half the receiver's window goes whole, as one message (it waits for credit
   * for all of it), so a batch of frames is never cut in two. The first `reservedBytes` of `data`
   * are not sent: with at least `STREAM_HEADROOM_BYTES` there, a whole message goes as a raw
   * frame with its header written into that room; without, as an event (two WebSocket frames).
   */
  writeOwned (data: Uint8Array, signal?: AbortSignal, reservedBytes = 0): Promise<void> {
    if (data instanceof Uint8Array && (!Number.isSafeInteger(reservedBytes) || reservedBytes < 0 || reservedBytes > data.byteLength)) {
      return Promise.reject(new RangeError(`reservedBytes must be an integer from 0 to data.byteLength, got ${String(reservedBytes)}`))
    }
    return this.queueWrite(data, true, signal, reservedBytes)
  }

  /**
   * `writeOwned` of a message given as its parts, in order (`OutputQueue.takeParts`), none ever
   * changed afterwards; the first `reservedBytes` of the first part are free room. On a lane, a
   * message of at most `chunkBytes` and half the receiver's window goes to the transport as those
   * parts, one raw frame written without joining them; otherwise the parts are joined (one copy)
   * and go as `writeOwned`.
   */
  writeParts (parts: readonly Uint8Array[], signal?: AbortSignal, reservedBytes = 0): Promise<void> {
    const bad = partsArgumentError(parts, reservedBytes)
    if (bad !== undefined) return Promise.reject(bad)
    return this.queueSend(async () => await this.sendParts(parts, signal, reservedBytes))
  }

  private queueWrite (data: Uint8Array, owned: boolean, signal?: AbortSignal, reservedBytes = 0): Promise<void> {
    if (!(data instanceof Uint8Array)) return Promise.reject(new TypeError('data must be a Uint8Array'))
    return this.queueSend(async () => await this.send(data, owned, signal, reservedBytes))
  }

  /** Run `send` after the writes before it; writes after close fail. */
  private queueSend (send: () => Promise<void>): Promise<void> {
    if (this.ended) return Promise.reject(new StarsockError('E_STREAM_CLOSED', 'Write after close'))
    const run = this.queue.then(send)
    this.queue = run.catch(() => {})
    return run
  }

  /** End the stream cleanly after the pending writes; settles when the end is sent. */
  async end (): Promise<void> {
    if (this.ended) return await this.queue
    this.ended = true
    await this.queue
    if (this.failure === undefined && !this.endSent) {
      this.endSent = true
      this.transport.emit(streamEvent('error', this.id), true)
      this.onDone()
    }
  }

  /** End the stream with an error (a wire string) at once; pending writes fail. */
  error (wire: string): void {
    if (this.failure !== undefined) return
    this.ended = true
    if (!this.endSent) {
      this.endSent = true
      this.transport.emit(streamEvent('error', this.id), wire)
    }
    this.fail(new StarsockError('E_STREAM_ABORTED', 'Aborted here'))
  }

  private async send (data: Uint8Array, owned: boolean, signal?: AbortSignal, reservedBytes = 0): Promise<void> {
    let offset = reservedBytes
    while (offset < data.byteLength) {
      const rest = data.byteLength - offset
      // Credit for all of a whole message, unless it may never be free at once: the receiver holds
      // back up to half its window of credit until it has that much to grant.
      const whole = owned && rest <= this.chunkBytes && rest <= this.windowBytes / 2 ? rest : 0
      while (this.failure === undefined && (!this.accepted || this.credit === 0 || (this.credit !== undefined && this.credit < whole))) await this.waiters.wait(signal)
      if (this.failure !== undefined) throw this.failure
      await this.transport.room(signal)
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- set during the await; TS keeps the narrowing to undefined from above
      if (this.failure !== undefined) throw this.failure
      const n = Math.min(data.byteLength - offset, this.chunkBytes, this.credit ?? Infinity)
      // An owned chunk goes as a frame only with room for the header before it (no copy); without
      // it, as an event (a view, no copy either). Frames and events of a stream stay in order.
      const inPlace = owned && offset === reservedBytes && reservedBytes >= FRAME_HEADER_BYTES
      if (this.lane !== undefined && (inPlace || !owned)) {
        this.sendFrame(data, offset, n, inPlace)
      } else {
        // Unless handed over, a copy: the caller may reuse its buffer once the write settles, before the flush.
        const chunk = owned ? data.subarray(offset, offset + n) : Uint8Array.prototype.slice.call(data, offset, offset + n)
        this.transport.emit(streamEvent('queue', this.id), chunk)
        this.transport.sent(n)
      }
      this.counted(n)
      offset += n
    }
  }

  /** `writeParts`: the parts as one frame when they may go whole on a lane, else joined, as `send`. */
  private async sendParts (parts: readonly Uint8Array[], signal: AbortSignal | undefined, reservedBytes: number): Promise<void> {
    const total = partsLength(parts)
    const bytes = total - reservedBytes
    while (this.failure === undefined && !this.accepted) await this.waiters.wait(signal)
    if (this.failure !== undefined) throw this.failure
    const first = parts[0] as Uint8Array
    if (this.lane === undefined || reservedBytes < FRAME_HEADER_BYTES || bytes > this.chunkBytes || bytes > this.windowBytes / 2 || parts.length === 1) {
      const joined = parts.length === 1 ? first : joinParts(parts, total)
      return await this.send(joined, true, signal, reservedBytes)
    }
    while (this.failure === undefined && this.credit !== undefined && this.credit < bytes) await this.waiters.wait(signal)
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- set during the awaits; TS keeps the narrowing to undefined from above
    if (this.failure !== undefined) throw this.failure
    await this.transport.room(signal)
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- set during the await; TS keeps the narrowing to undefined from above
    if (this.failure !== undefined) throw this.failure
    const head = first.subarray(reservedBytes - FRAME_HEADER_BYTES)
    writeFrameHeader(head, FRAME_KIND_DATA, this.lane)
    this.handOver([head, ...parts.slice(1)])
    this.counted(bytes)
  }

  /** Count `n` bytes sent against the credit and the total. */
  private counted (n: number): void {
    if (this.credit !== undefined) this.credit -= n
    this.sentBytes += n
  }

  /**
   * Send `n` bytes of `data` from `offset` as a raw frame: in place, in the free bytes before
   * `offset` when `inPlace` (an owned buffer's reserved room), else as a copy with its header.
   */
  private sendFrame (data: Uint8Array, offset: number, n: number, inPlace: boolean): void {
    let frame: Uint8Array
    if (inPlace) {
      frame = data.subarray(offset - FRAME_HEADER_BYTES, offset + n)
    } else {
      frame = new Uint8Array(FRAME_HEADER_BYTES + n)
      frame.set(data.subarray(offset, offset + n), FRAME_HEADER_BYTES)
    }
    writeFrameHeader(frame, FRAME_KIND_DATA, this.lane as number)
    this.handOver([frame])
  }

  /** Hand a frame to the transport; when it cannot take it (the connection is dropping), the stream fails here rather than lose the bytes. */
  private handOver (parts: readonly Uint8Array[]): void {
    if (this.transport.frame?.(parts) === true) return
    const err = new StarsockError('E_DISCONNECTED', 'Connection to the server dropped')
    this.fail(err)
    throw err
  }
}
