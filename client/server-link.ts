/**
 * The peer's connection to the server, and the only module that speaks socket.io-client:
 * requests with a timeout and a signal, the heartbeat, connect and reconnect, the fast failure on
 * a server that was never reached, and `whenWritable()` for the streams' backpressure.
 */
import { io, type Socket } from 'socket.io-client'
import { errorFromWire, StarsockError } from '../shared/errors.ts'
import { EVENTS } from '../shared/events.ts'
import type { Logger } from '../shared/logger.ts'
import { rawFrameParser } from '../shared/raw-parser.ts'
import { Emitter } from './emitter.ts'
import { joinParts, partsLength } from './parts.ts'
import type { StreamTransport } from './stream.ts'
import { bounded, throwIfAborted, Waiters } from './waiters.ts'
import { gathers, maskFor, transportsFor, type WsMask } from './ws-mask.ts'

/** Bytes handed to the transport and not flushed past which writers wait. */
export const TRANSPORT_HIGH_WATER_BYTES = 1024 * 1024
/** Delay before reconnecting after the server itself disconnected us (socket.io does not then). */
const SERVER_DISCONNECT_RECONNECT_MS = 500
/** How soon a writer held by a browser WebSocket's own buffer looks again: that buffer drains with no event. */
const BUFFERED_RECHECK_MS = 1
/** How long a wait for `ws`'s TCP drain lasts before the buffer is checked anyway. */
const DRAIN_FALLBACK_MS = 50

/** The events of `ws`'s TCP socket (Node) that tell its buffer fell; absent in a browser. */
interface NodeSocketEvents {
  once?: (event: 'drain' | 'close', fn: () => void) => unknown
  off?: (event: 'drain' | 'close', fn: () => void) => unknown
}

/** What the rest of the client needs of a link: requests (the join and the peer list take a fake one in tests). */
export interface Requester {
  /** Whether the link is connected now. */
  readonly connected: boolean
  /** Send `event` with `args`; settles with the reply's arguments, or rejects (`E_DISCONNECTED`, `E_TIMEOUT`, `E_ABORTED`). */
  request: (event: string, args: unknown[], options?: { signal?: AbortSignal, timeoutMs?: number }) => Promise<unknown[]>
}

/** Options of a `ServerLink`, resolved. */
export interface ServerLinkOptions {
  url: string
  /** socket.io path on the server. @default '/socket.io' */
  path?: string
  transports: Array<'websocket' | 'polling'>
  token: string | undefined
  socketOptions: Record<string, unknown> | undefined
  requestTimeoutMs: number
  heartbeatIntervalMs: number
  heartbeatTimeoutMs: number
  reconnectDelayMs: number
  reconnectDelayMaxMs: number
  /** How a Node peer masks its WebSocket frames (client/ws-mask.ts). @default 'auto' */
  wsMask?: WsMask
  logger: Logger
}

/** Events of a link: its connection's comings and goings and failures to connect. */
export interface ServerLinkEvents extends Record<string, unknown> {
  connect: undefined
  /** The socket.io reason. */
  disconnect: string
  /** `E_FORBIDDEN`, `E_SHUTDOWN` or `E_SERVER_UNREACHABLE`. */
  error: StarsockError
}

/**
 * Whether an engine.io-client socket holds packets not yet handed to its transport, or is
 * switching transports: a frame written past it would overtake them. The engine keeps the packets
 * it flushed in its buffer until its transport's next drain (`_prevBufferLen` of them); any past
 * those wait. Its internals, pinned with engine.io-client: where they are not as expected, it holds.
 */
export function engineHolds (engine: object): boolean {
  const internals = engine as { writeBuffer?: unknown, _prevBufferLen?: unknown, upgrading?: unknown }
  if (!Array.isArray(internals.writeBuffer) || typeof internals._prevBufferLen !== 'number') return true
  return internals.upgrading === true || internals.writeBuffer.length > internals._prevBufferLen
}

/** One socket.io connection to the server that reconnects by itself until `close()`. */
export class ServerLink extends Emitter<ServerLinkEvents> implements Requester {
  private readonly socket: Socket
  private heartbeat: ReturnType<typeof setInterval> | undefined
  /** Bytes handed to the engine since it last drained. */
  private sinceDrain = 0
  private readonly drained = new Waiters()
  private closed = false
  /** The streams' view of this link. */
  readonly streams: StreamTransport = {
    emit: (event, ...args) => { this.socket.emit(event, ...args) },
    frame: (parts) => this.sendFrame(parts),
    room: async (signal) => await this.whenWritable(signal),
    sent: (n) => { this.sinceDrain += n }
  }

  constructor (private readonly options: ServerLinkOptions) {
    super()
    this.socket = io(options.url, {
      ...options.socketOptions,
      parser: rawFrameParser, // socket.io-parser, with raw data frames (shared/raw-parser.ts)
      path: options.path ?? (typeof options.socketOptions?.path === 'string' ? options.socketOptions.path : '/socket.io'),
      autoConnect: false,
      forceNew: true,
      transports: transportsFor(options.transports, maskFor(options.wsMask ?? 'auto', options.url)), // Node, over TLS or loopback: no masking pass
      tryAllTransports: true,
      reconnection: true,
      reconnectionDelay: options.reconnectDelayMs,
      reconnectionDelayMax: options.reconnectDelayMaxMs,
      auth: options.token !== undefined ? { token: options.token } : undefined
    })
    this.wire()
  }

  /** Whether the link is connected now. */
  get connected (): boolean {
    return this.socket.connected
  }

  /** Start connecting (and reconnecting after drops). */
  connect (): void {
    this.socket.connect()
  }

  /**
   * Send a raw frame (its bytes: `parts`, in order) as one engine.io message, after the events
   * emitted so far (socket.io-client writes a connected socket's packets straight to the same
   * engine); `false` when not connected (the streams fail with the disconnect). A frame of
   * several parts goes straight to the WebSocket's socket as they are where the transport can
   * (Node, key 0, nothing waiting in the engine), else joined.
   */
  private sendFrame (parts: readonly Uint8Array[]): boolean {
    const engine = this.socket.io.engine as (typeof this.socket.io.engine & { _hasPingExpired?: () => boolean }) | undefined
    // socket.io-client's own test before it writes an event to the engine: past it, events wait
    // in its buffer for the next connection, and a frame sent now would overtake them.
    if (!this.socket.connected || engine === undefined || engine._hasPingExpired?.() === true) return false
    const length = partsLength(parts)
    if (parts.length > 1 && !engineHolds(engine) && gathers(engine.transport) && engine.transport.writeParts(parts, length)) return true
    engine.write(parts.length === 1 ? parts[0] as Uint8Array : joinParts(parts, length))
    this.sinceDrain += length
    return true
  }

  /** Call `fn` with the arguments of every `event` from the server. */
  onServer (event: string, fn: (...args: unknown[]) => void): void {
    this.socket.on(event, fn)
  }

  /** Call `fn` with every event from the server (its name first). */
  onAnyServer (fn: (event: string, ...args: unknown[]) => void): void {
    this.socket.onAny(fn)
  }

  /** Call `fn` unless the link connects within `ms`; returns a function that cancels. */
  unlessConnectedWithin (ms: number, fn: () => void): () => void {
    let reached = false
    const onConnect = (): void => { reached = true }
    this.socket.once('connect', onConnect)
    const timer = setTimeout(() => { if (!reached) fn() }, ms)
    return () => { clearTimeout(timer); this.socket.off('connect', onConnect) }
  }

  /** See `Requester.request`; without `timeoutMs`, the link's request timeout. */
  async request (event: string, args: unknown[], options: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<unknown[]> {
    if (!this.socket.connected) throw new StarsockError('E_DISCONNECTED', `Not connected to ${this.options.url}`)
    const reply = new Promise<unknown[]>((resolve) => {
      this.socket.emit(event, ...args, (...r: unknown[]) => resolve(r))
    })
    return await bounded(event, reply, options.timeoutMs ?? this.options.requestTimeoutMs, options.signal)
  }

  /**
   * Settles at once while the transport holds under `TRANSPORT_HIGH_WATER_BYTES` unflushed, else
   * when it has drained below; rejects with `E_DISCONNECTED` once the connection drops, or with
   * `E_ABORTED` when `signal` aborts.
   */
  async whenWritable (signal?: AbortSignal): Promise<void> {
    for (;;) {
      const buffered = this.bufferedAmount()
      if (this.sinceDrain + buffered < TRANSPORT_HIGH_WATER_BYTES) return
      if (!this.socket.connected) throw new StarsockError('E_DISCONNECTED', 'Connection to the server dropped')
      if (buffered < TRANSPORT_HIGH_WATER_BYTES) {
        await this.drained.wait(signal) // the engine's drain (or a disconnect) wakes it
      } else {
        throwIfAborted(signal)
        await this.webSocketDrained(signal)
      }
    }
  }

  /**
   * Settles when the WebSocket's own buffer may have fallen, or `signal` aborts. The engine's
   * drain fires as soon as it handed the bytes to the WebSocket, so it cannot say that: in Node,
   * `ws`'s TCP socket emits `drain` (with a timer in case it never does); a browser's WebSocket has
   * no event for its `bufferedAmount`, so a 1 ms timer checks again.
   */
  private async webSocketDrained (signal?: AbortSignal): Promise<void> {
    // One wait per link, shared by every writer (one listener on the socket, not one per stream).
    const drain = this.webSocketDrain ??= this.nextWebSocketDrain().finally(() => { this.webSocketDrain = undefined })
    if (signal === undefined) return await drain
    await new Promise<void>((resolve) => {
      const done = (): void => { signal.removeEventListener('abort', done); resolve() }
      signal.addEventListener('abort', done, { once: true })
      void drain.then(done)
    })
  }

  private async nextWebSocketDrain (): Promise<void> {
    const tcp = this.webSocket()?._socket
    const events = typeof tcp?.once === 'function' && typeof tcp.off === 'function' ? tcp as Required<NodeSocketEvents> : undefined
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        events?.off('drain', done)
        events?.off('close', done)
        resolve()
      }
      const timer = setTimeout(done, events !== undefined ? DRAIN_FALLBACK_MS : BUFFERED_RECHECK_MS)
      events?.once('drain', done)
      events?.once('close', done)
    })
  }

  /** Send a heartbeat every interval from now on; a server that misses one is dropped and reconnected. */
  startHeartbeat (): void {
    this.stopHeartbeat()
    if (this.closed) return
    this.heartbeat = setInterval(() => {
      this.request(EVENTS.PING, [], { timeoutMs: this.options.heartbeatTimeoutMs }).catch(() => {
        this.options.logger.warn('heartbeat missed, reconnecting')
        this.dropTransport()
      })
    }, this.options.heartbeatIntervalMs)
  }

  /** Stop the heartbeat (the link stops it by itself on a disconnect). */
  stopHeartbeat (): void {
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat)
    this.heartbeat = undefined
  }

  /** Drop the transport as if the network had: the link reconnects. */
  dropTransport (): void {
    this.socket.io.engine?.close()
  }

  /** Disconnect for good (no more reconnects); `disconnect` is emitted. */
  close (): void {
    this.closed = true
    this.stopHeartbeat()
    this.socket.disconnect()
  }

  /** The shared wait of `webSocketDrained`, while one is under way. */
  private webSocketDrain: Promise<void> | undefined

  private webSocket (): { bufferedAmount?: number, _socket?: NodeSocketEvents } | undefined {
    return (this.socket.io.engine?.transport as unknown as { ws?: { bufferedAmount?: number, _socket?: NodeSocketEvents } } | undefined)?.ws
  }

  private bufferedAmount (): number {
    return this.webSocket()?.bufferedAmount ?? 0
  }

  private wire (): void {
    const socket = this.socket
    socket.io.on('open', () => {
      this.sinceDrain = 0
      socket.io.engine.on('drain', () => { this.sinceDrain = 0; this.drained.wake() })
    })
    socket.on('connect', () => this.emit('connect', undefined))
    socket.on('disconnect', (reason) => {
      this.stopHeartbeat()
      this.drained.wake() // waiting writers learn the connection dropped
      this.emit('disconnect', reason)
      // The client does not reconnect by itself after the server disconnected it.
      if (reason === 'io server disconnect' && !this.closed) {
        setTimeout(() => { if (!this.closed) socket.connect() }, SERVER_DISCONNECT_RECONNECT_MS)
      }
    })
    socket.on('connect_error', (err) => {
      const wire = errorFromWire(err.message)
      this.emit('error', wire.code === 'E_FORBIDDEN' || wire.code === 'E_SHUTDOWN' ? wire : new StarsockError('E_SERVER_UNREACHABLE', err.message))
    })
  }
}
