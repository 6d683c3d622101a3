/**
 * An `Endpoint` over a socket.io socket: emits, acked requests with a timeout, and the transport
 * state the relay needs for backpressure (unflushed bytes, pausing reads).
 *
 * Unflushed bytes are counted from engine.io's own events: bytes emitted since the last `flush`
 * wait in engine.io's write buffer; a `flush` hands them to the transport; the transport's
 * `drain` says everything it was handed is written to the socket. Raw frames go the same way,
 * as engine.io messages (`sendFrame`), and are counted the same. Each chunk counts
 * `PACKET_COST_BYTES` more than its payload: a packet on its way costs memory of its own however
 * small its payload, so one-byte chunks toward a receiver that does not read fill the relay's
 * high-water mark after a few thousand packets, not a million.
 */
import type { Socket } from 'socket.io'
import { ENCODED_NAMESPACE, SocketIoEncodedEvent } from './encoded-event.ts'
import type { EncodedEvent, Endpoint } from './session.ts'
import { PACKET_COST_BYTES } from './constants.ts'

interface EngineTransport {
  name: string
  on: (event: 'drain', fn: () => void) => void
  off: (event: 'drain', fn: () => void) => void
  perMessageDeflate?: unknown
  socket?: { pause?: () => void, resume?: () => void, bufferedAmount?: number, _sender?: { sendFrame?: unknown } }
}

/** The WebSocket frames of a run of encoded events back to back, and where each event's begins (and the last ends). */
interface RunFrames { frames: Buffer, offsets: number[] }

/** Each run's frames, made at its first send over a WebSocket (`null`: some event has no frame). */
const runFrames = new WeakMap<readonly EncodedEvent[], RunFrames | null>()

function framesOf (events: readonly EncodedEvent[]): RunFrames | null {
  let have = runFrames.get(events)
  if (have !== undefined) return have
  have = null
  const parts: Buffer[] = []
  const offsets = [0]
  for (const event of events) {
    if (!(event instanceof SocketIoEncodedEvent) || event.frame === undefined) break
    parts.push(...event.frame)
    offsets.push((offsets[offsets.length - 1] as number) + event.bytes)
  }
  if (offsets.length === events.length + 1) have = { frames: Buffer.concat(parts), offsets }
  runFrames.set(events, have)
  return have
}

interface EngineSocket {
  transport: EngineTransport
  writeBuffer: Array<{ data?: unknown, options?: { wsPreEncodedFrame?: Buffer[] } }>
  on: (event: 'flush' | 'upgrade', fn: (arg: unknown) => void) => void
  /** One engine.io message, queued after the socket.io packets written before it (engine.io ~6.6). */
  send: (data: Uint8Array | string, options?: { wsPreEncodedFrame?: Buffer[] }) => void
  readyState: string
}

/** A rejected request: `code` says whether it timed out or the client went away. */
export class RequestError extends Error {
  constructor (readonly code: 'E_DIAL_TIMEOUT' | 'E_PEER_GONE') {
    super(code === 'E_PEER_GONE' ? 'client disconnected' : 'request timed out')
  }
}

/**
 * An endpoint for `socket`; `onDrain` runs whenever its transport flushed. Call `dispose` on
 * disconnect. A class, not closures: every connected socket has one, and each closure costs an
 * idle peer about 300 bytes once tsx has named it.
 */
class SocketEndpoint implements Endpoint {
  private readonly conn: EngineSocket
  private transport: EngineTransport
  /** Bytes emitted since the last `flush` (in engine.io's write buffer). */
  private sinceFlush = 0
  /** Bytes handed to the transport and not yet drained. */
  private inTransport = 0
  /** Requests waiting for their ack, made at the first (most sockets are never asked anything). */
  private pending: Set<(err: RequestError) => void> | undefined
  private readonly handleDrain: () => void
  /** The relay paused reading (`pauseReading`): a hold that ends leaves it paused. */
  private relayPaused = false
  /** A hold of reading (`holdReading`) and its end. */
  private hold: ReturnType<typeof setTimeout> | undefined

  constructor (private readonly socket: Socket, private readonly onDrain: () => void, private readonly maxQueuedPackets: number) {
    this.conn = socket.conn as unknown as EngineSocket
    this.transport = this.conn.transport
    this.handleDrain = this.drained.bind(this)
    this.transport.on('drain', this.handleDrain)
    this.conn.on('upgrade', (next) => {
      this.transport.off('drain', this.handleDrain)
      this.transport = next as EngineTransport
      this.transport.on('drain', this.handleDrain)
    })
    this.conn.on('flush', () => {
      this.inTransport += this.sinceFlush
      this.sinceFlush = 0
    })
  }

  private drained (): void {
    this.inTransport = 0
    this.onDrain()
  }

  transportName (): string {
    return this.transport.name
  }

  emit (event: string, ...args: unknown[]): void {
    this.socket.emit(event, ...args)
    const chunk = args[0]
    // Counted after the emit: the binary attachment waits in the write buffer for the next flush.
    if (chunk instanceof Uint8Array) this.sinceFlush += chunk.byteLength + PACKET_COST_BYTES
  }

  /**
   * What socket.io's adapter does for each client of a broadcast (`Client.writeToEngine`): the
   * encoded packet to engine.io, with the WebSocket frame made once for all (engine.io sends that
   * Buffer as is). Another encoding, or a socket on another namespace, is emitted.
   */
  sendEncoded (encoded: EncodedEvent): void {
    if (!(encoded instanceof SocketIoEncodedEvent) || this.socket.nsp.name !== ENCODED_NAMESPACE) {
      this.emit(encoded.event, ...encoded.args)
      return
    }
    if (this.conn.readyState !== 'open') return // as socket.io drops a packet to a closing connection
    this.conn.send(encoded.data, encoded.frame === undefined ? undefined : { wsPreEncodedFrame: encoded.frame })
  }

  /**
   * A run of encoded events in one engine.io packet: its `wsPreEncodedFrame` holds every event's
   * WebSocket frame back to back, which engine.io writes as it is, so the client reads as many
   * messages as if each had been sent apart. Only where engine.io writes the frame (a WebSocket
   * without compression, and a transport never changes once it is a WebSocket); elsewhere it
   * would send the first event's data alone, so each event goes on its own.
   */
  sendEncodedRun (events: readonly EncodedEvent[], from: number, to: number): void {
    const run = to - from > 1 && this.takesFrames() && this.socket.nsp.name === ENCODED_NAMESPACE ? framesOf(events) : null
    if (run === null) {
      for (let i = from; i < to; i++) this.sendEncoded(events[i] as EncodedEvent)
      return
    }
    if (this.conn.readyState !== 'open') return
    const first = events[from] as SocketIoEncodedEvent
    this.conn.send(first.data, { wsPreEncodedFrame: [run.frames.subarray(run.offsets[from], run.offsets[to])] })
  }

  /** Whether engine.io hands a packet's `wsPreEncodedFrame` to the WebSocket as it is (its `_canSendPreEncodedFrame`). */
  private takesFrames (): boolean {
    const transport = this.transport
    return transport.name === 'websocket' && transport.perMessageDeflate == null && typeof transport.socket?._sender?.sendFrame === 'function'
  }

  sendFrame (frame: Uint8Array): void {
    // The same write buffer as socket.io's packets: a frame stays in order with the events.
    this.conn.send(frame)
    this.sinceFlush += frame.byteLength + PACKET_COST_BYTES
  }

  async request (event: string, args: unknown[], timeoutMs: number): Promise<unknown[]> {
    const pending = this.pending ??= new Set()
    return await new Promise((resolve, reject) => {
      const fail = (err: RequestError): void => {
        pending.delete(fail)
        reject(err)
      }
      pending.add(fail)
      this.socket.timeout(timeoutMs).emit(event, ...args, (err: Error | null, ...reply: unknown[]) => {
        if (!pending.delete(fail)) return
        if (err != null) reject(new RequestError('E_DIAL_TIMEOUT'))
        else resolve(reply)
      })
    })
  }

  pendingWriteBytes (): number {
    return this.sinceFlush + this.inTransport
  }

  pauseReading (): boolean {
    const ws = this.pausable()
    if (ws === undefined) return false
    this.relayPaused = true
    ws.pause()
    return true
  }

  resumeReading (): void {
    this.relayPaused = false
    this.readIfFree()
  }

  holdReading (ms: number): 'started' | 'held' | 'unable' {
    const ws = this.pausable()
    if (ws === undefined) return 'unable'
    if (this.hold !== undefined) return 'held'
    ws.pause()
    this.hold = setTimeout(() => {
      this.hold = undefined
      this.readIfFree()
    }, ms)
    return 'started'
  }

  /** Read again unless the relay pauses or a hold is on (each ends only its own). */
  private readIfFree (): void {
    if (!this.relayPaused && this.hold === undefined) this.transport.socket?.resume?.()
  }

  /** The transport's socket when it can stop reading (a WebSocket; long-polling cannot). */
  private pausable (): { pause: () => void } | undefined {
    const ws = this.transport.name === 'websocket' ? this.transport.socket : undefined
    return ws?.pause === undefined ? undefined : ws as { pause: () => void }
  }

  /** Bytes of every kind queued toward the client: in the websocket and in engine.io's write buffer. */
  backlogBytes (): number {
    let bytes = this.transport.name === 'websocket' ? this.transport.socket?.bufferedAmount ?? 0 : 0
    for (const packet of this.conn.writeBuffer) {
      // A ready-made frame is what goes out (a run of events holds many messages in one packet).
      const frame = packet.options?.wsPreEncodedFrame
      if (frame !== undefined) {
        for (const part of frame) bytes += part.byteLength
        continue
      }
      const data = packet.data
      bytes += typeof data === 'string' ? data.length : data instanceof Uint8Array ? data.byteLength : 16
    }
    return bytes
  }

  congested (): boolean {
    return this.conn.writeBuffer.length > this.maxQueuedPackets
  }

  disconnect (): void {
    this.socket.disconnect(true)
  }

  /** Reject the requests still waiting: the client went. */
  dispose (): void {
    if (this.hold !== undefined) {
      // Read again, or the WebSocket's closing handshake (the client's close frame) is never read.
      clearTimeout(this.hold)
      this.hold = undefined
      this.readIfFree()
    }
    if (this.pending === undefined) return
    for (const fail of [...this.pending]) fail(new RequestError('E_PEER_GONE'))
  }
}

/** An endpoint for `socket`; `onDrain` runs whenever its transport flushed. Call `dispose` on disconnect. */
export function createSocketEndpoint (socket: Socket, onDrain: () => void, maxQueuedPackets: number): Endpoint & { dispose: () => void } {
  return new SocketEndpoint(socket, onDrain, maxQueuedPackets)
}
