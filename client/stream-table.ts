/**
 * The one-way streams a peer has open, by stream id: opening them sized to the server's
 * announced limits, dispatching the socket.io-pull-stream events and raw frames to them, failing
 * them all. With raw frames on, each receiving stream gets a lane of its own, never reused.
 */
import type { StarsockError } from '../shared/errors.ts'
import { parseStreamEvent } from '../shared/events.ts'
import { FRAME_HEADER_BYTES, FRAME_KIND_DATA, frameBytes, frameKind, frameLane, MAX_LANE } from '../shared/raw-frame.ts'
import { ReceiveStream, SendStream, type StreamTransport } from './stream.ts'

/** Message size assumed of a server that announces none (the original's and socket.io's default). */
const DEFAULT_MESSAGE_BYTES = 1_000_000
/** Room left in a message for the event name and framing around a chunk. */
const MESSAGE_OVERHEAD_BYTES = 4096
/** Smallest receive window announced, whatever the server's buffer. */
const MIN_WINDOW_BYTES = 64 * 1024

/** The peer's own sizes (its options). */
export interface StreamSizes {
  windowBytes: number
  chunkBytes: number
  receiveLimitBytes: number
}

/**
 * Largest chunk to send: the option, lowered to fit the server's message size once base64-encoded
 * (long-polling carries binary as base64, a third larger).
 */
export function sendChunkBytes (chunkBytes: number, limits: Readonly<Record<string, number>> | undefined): number {
  const room = (limits?.maxMessageBytes ?? DEFAULT_MESSAGE_BYTES) - MESSAGE_OVERHEAD_BYTES
  // At least 1: a sender must make progress even if a server announced nonsense (the hello check clamps it too).
  return Math.max(1, Math.min(chunkBytes, Math.floor(room * 3 / 4)))
}

/** Receive window to announce: the option, kept under half the server's per-stream buffer, where it would start pushing back. */
export function receiveWindowBytes (sizes: StreamSizes, limits: Readonly<Record<string, number>> | undefined): number {
  const serverBuffer = limits?.streamBufferBytes
  const underServer = serverBuffer !== undefined ? Math.floor(serverBuffer / 2) - sizes.chunkBytes : Infinity
  return Math.max(MIN_WINDOW_BYTES, Math.min(sizes.windowBytes, underServer))
}

/** The open streams of one peer. */
export class StreamTable {
  private readonly sending = new Map<string, SendStream>()
  private readonly receiving = new Map<string, ReceiveStream>()
  /** Receiving streams by the lane their raw frames come on. */
  private readonly lanes = new Map<number, ReceiveStream>()
  private lastLane = 0
  /** Raw frames dropped: on no open lane, of an unknown kind, or shorter than a header. */
  droppedFrames = 0

  constructor (
    private readonly transport: StreamTransport,
    private readonly sizes: StreamSizes,
    /** The limits the server announced at the last hello, if it did. */
    private readonly limits: () => Readonly<Record<string, number>> | undefined,
    /** Whether the server said, at the last hello, it carries our streams as raw frames. */
    private readonly rawFrames: () => boolean = () => false
  ) {}

  /** Streams open each way. */
  get counts (): { sendingStreams: number, receivingStreams: number } {
    return { sendingStreams: this.sending.size, receivingStreams: this.receiving.size }
  }

  /** Open the sending end of stream `id`; it leaves the table once done. */
  openSend (id: string): SendStream {
    const limits = this.limits()
    const tx = new SendStream(this.transport, id, sendChunkBytes(this.sizes.chunkBytes, limits), () => {
      if (this.sending.get(id) === tx) this.sending.delete(id)
    }, sendChunkBytes(Number.MAX_SAFE_INTEGER, limits))
    this.sending.set(id, tx)
    return tx
  }

  /** Open the receiving end of stream `id`, and accept it unless `open` is false; it leaves the table once done. */
  openReceive (id: string, open = true): ReceiveStream {
    const window = receiveWindowBytes(this.sizes, this.limits())
    const lane = this.rawFrames() && this.transport.frame !== undefined && this.lastLane < MAX_LANE ? ++this.lastLane : undefined
    const rx = new ReceiveStream(this.transport, id, window, Math.max(window, this.sizes.receiveLimitBytes), () => {
      if (this.receiving.get(id) === rx) this.receiving.delete(id)
      if (lane !== undefined) this.lanes.delete(lane)
    }, lane)
    this.receiving.set(id, rx)
    if (lane !== undefined) this.lanes.set(lane, rx)
    if (open) rx.open()
    return rx
  }

  /** Hand a stream event from the server to its stream; returns whether `event` was a stream event. */
  dispatch (event: string, value: unknown, lane?: unknown): boolean {
    const parsed = parseStreamEvent(event)
    if (parsed === undefined) return false
    const { type, streamId } = parsed
    if (type === 'queue') this.receiving.get(streamId)?.push(value)
    else if (type === 'error') this.receiving.get(streamId)?.finish(value)
    else if (type === 'accept') this.sending.get(streamId)?.onAccept(value, lane)
    else if (type === 'credit') this.sending.get(streamId)?.onCredit(value)
    else this.sending.get(streamId)?.onAbort(value)
    return true
  }

  /** Hand a raw frame from the server to the stream of its lane; one that fits none is dropped and counted. */
  dispatchFrame (data: unknown): void {
    const frame = frameBytes(data)
    const rx = frame !== undefined && frameKind(frame) === FRAME_KIND_DATA ? this.lanes.get(frameLane(frame)) : undefined
    if (frame === undefined || rx === undefined) {
      this.droppedFrames++
      return
    }
    rx.push(frame.subarray(FRAME_HEADER_BYTES))
  }

  /** Fail every open stream with `err` (the connection dropped, or the peer closed). */
  failAll (err: StarsockError): void {
    for (const rx of [...this.receiving.values()]) rx.fail(err)
    for (const tx of [...this.sending.values()]) tx.fail(err)
  }
}
