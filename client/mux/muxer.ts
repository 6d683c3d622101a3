/**
 * Many channels over one dialed connection (see `shared/mux-frame.ts` for the frames).
 *
 * The reader never waits for the application: every frame is dispatched as it arrives, and each
 * channel holds at most its window, so a slow channel cannot stall the connection. The writer
 * batches queued frames into large writes; data waits while the queue is over its bound, control
 * frames (replies, credit) never wait, so credit always gets through.
 */
import { StarsockError } from '../../shared/errors.ts'
import { silentLogger, type Logger } from '../../shared/logger.ts'
import {
  decodeDatagram, decodeJson, decodeOpen, decodeWindow, encodeJsonFrame, encodeOpenFrame, FRAME, FrameDecoder, type Frame
} from '../../shared/mux-frame.ts'
import {
  errorToWire, FEATURES, hasFeature, MAX_ASKING_TIMEOUT_MS, MUX_PROTOCOL, MUX_VERSION, OFFER_KINDS, parseAsking, parseError, parseHello, parseOffer, parseOpenHeader, parseReply,
  understandsOffer, type Asking, type Feature, type Hello, type Offer, type OfferKind, type OpenHeader, type Reply
} from '../../shared/sock-protocol.ts'
import { STREAM_HEADROOM_BYTES, type Connection } from '../connection.ts'
import { Emitter } from '../emitter.ts'
import { Waiters } from '../waiters.ts'
import { Channel, type ChannelLink, type Datagram, type Pin } from './channel.ts'
import { OutputQueue } from './output-queue.ts'

/** Options of a multiplexer. */
export interface MuxOptions {
  /** Receive window each channel starts with. @default 256 KiB */
  windowBytes?: number
  /** Largest window a channel grows to while its reader keeps up. @default 8 MiB */
  maxWindowBytes?: number
  /** Bytes all grown windows of the connection may add up to. @default 32 MiB */
  growthBudgetBytes?: number
  /** Channels open at once on the connection (both directions). @default 1024 */
  maxChannels?: number
  /** Offers waiting for an answer from this side at once. @default 16 */
  maxPendingOffers?: number
  /** How long an OPEN waits for its reply. @default 15_000 */
  openTimeoutMs?: number
  /** How long an OFFER waits for its answer (a person may be asked). @default 120_000 */
  offerTimeoutMs?: number
  /**
   * Features this side announces in its HELLO. Tests only: fewer make it act as an older peer.
   * @default FEATURES (all this version has)
   */
  features?: readonly Feature[]
  /** Offer kinds this side announces in its HELLO. Tests only. @default OFFER_KINDS */
  offerKinds?: readonly OfferKind[]
  logger?: Logger
}

/**
 * What a granted offer turns into: `commit` once it holds (the requester acknowledged the grant,
 * or at once for a peer without the `ack` feature), `cancel` when it never will (the requester
 * killed it, or sent no ACK within the open timeout). Exactly one of them is called.
 */
export interface OfferGrant {
  /** What the grant's answer carries (a file's resume `offset`); `{}` by default. */
  reply?: Reply
  commit: () => void
  cancel: (err: StarsockError) => void
}

/** What the application does with what the other side asks. */
export interface MuxHandlers {
  /** A channel the other side opens; settle with the reply, or throw a `StarsockError` to refuse. */
  onOpen?: (channel: Channel, body: Uint8Array) => Promise<Reply | undefined>
  /**
   * An offer from the other side; settle to grant it (with what to do once the grant holds, or
   * not: see `OfferGrant`), throw a `StarsockError` to deny. `signal` aborts when the other side
   * gives up on it; call `asking` when a person is asked (the other side is told once, if it understands).
   */
  onOffer?: (mappingId: number, offer: Offer, signal: AbortSignal, asking: (info: Asking) => void) => Promise<OfferGrant | undefined>
  /** The other side killed a mapping. */
  onKill?: (mappingId: number, err: StarsockError) => void
  /** Whether a mapping `mappingId` is live on this connection (new mapping ids never take one). */
  mappingInUse?: (mappingId: number) => boolean
}

/** Events of a multiplexer. */
export interface MuxEvents extends Record<string, unknown> {
  /** The connection is over; every channel failed with this error. */
  close: StarsockError
}

/** Byte and drop counters of a connection. */
export interface MuxCounters {
  bytesIn: number
  bytesOut: number
  droppedDatagrams: number
}

/** Frames queued past this make data writers wait (control frames never do): two batches, one being written while the next fills. */
const OUTPUT_HIGH_WATER_BYTES = 1024 * 1024
/** Output queued past this (replies to a peer that does not read) stops the reading, so it cannot grow. */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024
/**
 * Largest batch of frames written at once; the stream's chunk size caps it too, so a batch is one
 * stream message (at the default 512 KiB chunk, seven 64 KiB DATA frames: the far side writes them
 * to its socket as one writev).
 */
const FLUSH_BYTES = 512 * 1024
/**
 * Bytes left free at the start of each batch's first part (`OutputQueue.takeParts`): the connection
 * writes a raw frame's header there, so the batch goes out without another copy (`writeParts`'s `reservedBytes`).
 */
const BATCH_HEADROOM_BYTES = STREAM_HEADROOM_BYTES
/**
 * `fn` as a task of its own through a `MessageChannel`: a page has no `setImmediate`, and a timer
 * would do, but browsers run a hidden tab's timers once a second (a page sending a file from a
 * background tab would crawl, and the credit it owes its peers with it); messages are not held back.
 */
export function postTask (): (fn: () => void) => void {
  const queue: Array<() => void> = []
  const channel = new MessageChannel()
  channel.port1.onmessage = () => { queue.shift()?.() }
  // Node keeps a process alive while a port listens; a page never ends by itself anyway.
  ;(channel.port1 as { unref?: () => void }).unref?.()
  return (fn) => {
    queue.push(fn)
    channel.port2.postMessage(null)
  }
}
/**
 * Runs `fn` once the current turn of the event loop is over: after the I/O callbacks of this turn
 * (Node's `setImmediate`), or as a task of its own where there is none (a page: `postTask`).
 */
const scheduleFlush: (fn: () => void) => void = globalThis.setImmediate ?? postTask()
/** How long a graceful close waits for queued frames to go out. */
const CLOSE_FLUSH_MS = 1000
/**
 * Ids of offers this side gave up on, kept out of use (a late grant of one must not read as the
 * grant of a new offer): at most this many, each for the offer timeout.
 */
const MAX_RETIRED_OFFER_IDS = 4096

/**
 * Copy the payloads channels queued out of `chunk` when they are under half of the memory they
 * keep, else pin them to it (`Pin`: copied later, once those still queued are under half). A DATA
 * or DATAGRAM payload is a view into the chunk it came in (no copy on the way in), and a channel's
 * window counts only the view: without this, a peer that pads one-byte payloads with large frames
 * nobody counts (for no channel, or for a channel read at once) would have a slow reader's few
 * bytes of window keep whole chunks, hundreds of KiB each. Now what the queues keep is at most
 * twice what their windows count. A chunk of bulk payload read as it comes is never copied.
 */
function unpin (chunk: Uint8Array, queued: Datagram[]): void {
  const views = queued.filter((item) => item.data.buffer === chunk.buffer)
  let viewed = 0
  for (const item of views) viewed += item.data.byteLength
  if (viewed * 2 < chunk.buffer.byteLength) {
    for (const item of views) item.data = item.data.slice()
    return
  }
  const pin: Pin = { size: chunk.buffer.byteLength, live: viewed, items: new Set(views) }
  for (const item of views) item.pin = pin
}

interface Pending<T> {
  resolve: (value: T) => void
  reject: (err: StarsockError) => void
  timer: ReturnType<typeof setTimeout>
}

/** Channels over one connection. Make one with `createMux`. */
export class Muxer extends Emitter<MuxEvents> {
  /** Byte and drop counters, both directions. */
  readonly counters: MuxCounters = { bytesIn: 0, bytesOut: 0, droppedDatagrams: 0 }
  /** Settles with the other side's HELLO. */
  readonly ready: Promise<Hello>
  private readonly channels = new Map<number, Channel>()
  private readonly opening = new Map<number, Pending<Reply>>()
  private readonly offering = new Map<number, Pending<Reply>>()
  private readonly decoder = new FrameDecoder({ splitData: true })
  private readonly output = new OutputQueue()
  private readonly roomWaiters = new Waiters()
  private readonly options: Required<Omit<MuxOptions, 'logger'>>
  private readonly logger: Logger
  private queued = 0
  private flushing = false
  private graceful = false
  private grownBytes = 0
  private nextId: number
  private hello: Hello | undefined
  private helloSettle!: { resolve: (h: Hello) => void, reject: (e: StarsockError) => void }
  private closedWith: StarsockError | undefined
  private readonly incomingOffers = new Map<number, AbortController>()
  /** Grants sent to a peer with `ack`, waiting for its ACK (or KILL) before they hold. */
  private readonly awaitingAck = new Map<number, { grant: OfferGrant | undefined, timer: ReturnType<typeof setTimeout> }>()
  /** Ids of our offers given up on, with when they may be used again (insertion order = age). */
  private readonly retired = new Map<number, number>()
  /** Callbacks of our offers for an interim answer (each called at most once). */
  private readonly askingHandlers = new Map<number, (info: Asking) => void>()
  private helloTimer: ReturnType<typeof setTimeout> | undefined
  private readonly link: ChannelLink

  constructor (readonly conn: Connection, private readonly handlers: MuxHandlers, options: MuxOptions = {}) {
    super()
    this.options = {
      windowBytes: options.windowBytes ?? 256 * 1024,
      maxWindowBytes: options.maxWindowBytes ?? Math.max(8 * 1024 * 1024, options.windowBytes ?? 0),
      growthBudgetBytes: options.growthBudgetBytes ?? 32 * 1024 * 1024,
      maxChannels: options.maxChannels ?? 1024,
      maxPendingOffers: options.maxPendingOffers ?? 16,
      openTimeoutMs: options.openTimeoutMs ?? 15_000,
      offerTimeoutMs: options.offerTimeoutMs ?? 120_000,
      features: options.features ?? FEATURES,
      offerKinds: options.offerKinds ?? OFFER_KINDS
    }
    if (!Number.isInteger(this.options.windowBytes) || this.options.windowBytes < 1024 || this.options.windowBytes > 2 ** 31) throw new RangeError('windowBytes must be an integer from 1024 to 2^31')
    this.logger = (options.logger ?? silentLogger).child({ ns: 'starsock:client:mux' })
    this.nextId = conn.initiator ? 1 : 2
    this.ready = new Promise((resolve, reject) => { this.helloSettle = { resolve, reject } })
    this.ready.catch(() => {})
    this.link = {
      send: (head, payload) => this.enqueue(head, payload),
      room: async (signal) => { while (this.queued > OUTPUT_HIGH_WATER_BYTES && this.closedWith === undefined) await this.roomWaiters.wait(signal) },
      full: () => this.queued > OUTPUT_HIGH_WATER_BYTES,
      done: (channel) => { this.channels.delete(channel.id) },
      reserve: (bytes) => {
        if (this.grownBytes + bytes > this.options.growthBudgetBytes) return false
        this.grownBytes += bytes
        return true
      },
      release: (bytes) => { this.grownBytes -= bytes },
      count: (what, n) => {
        if (what === 'in') this.counters.bytesIn += n
        else if (what === 'out') this.counters.bytesOut += n
        else this.counters.droppedDatagrams += n
      }
    }
    this.enqueue(encodeJsonFrame(FRAME.HELLO, 0, {
      protocol: MUX_PROTOCOL, version: MUX_VERSION, window: this.options.windowBytes, interim: true, offers: options.offerKinds ?? OFFER_KINDS, features: options.features ?? FEATURES
    }))
    this.helloTimer = setTimeout(() => { void this.close(new StarsockError('E_TIMEOUT', `No HELLO from ${conn.remotePeer} within ${this.options.openTimeoutMs} ms: not a starsock-mux peer?`)) }, this.options.openTimeoutMs)
    void this.readLoop()
  }

  /** Peer id of the other side. */
  get remotePeer (): string {
    return this.conn.remotePeer
  }

  /**
   * Whether the connection is end-to-end encrypted (Noise): then `remotePeer` is the id the other
   * side proved. `false`: plaintext (a legacy peer, or `secure: false` on purpose), and
   * `remotePeer` is only what the server said.
   */
  get secure (): boolean {
    return this.conn.secure === true
  }

  /** Whether the connection is over. */
  get closed (): boolean {
    return this.closedWith !== undefined
  }

  /** The other side's HELLO, once it arrived. */
  get remoteHello (): Hello | undefined {
    return this.hello
  }

  /** Channels open now. */
  list (): Channel[] {
    return [...this.channels.values()]
  }

  /** Open a channel; settles with it once the other side replied without an error. */
  async open (header: OpenHeader, options: { body?: Uint8Array, signal?: AbortSignal } = {}): Promise<Channel> {
    const hello = await this.ready
    this.checkOpen()
    if (this.channels.size >= this.options.maxChannels) throw new StarsockError('E_LIMIT_CHANNELS', `More than ${this.options.maxChannels} channels on one connection`)
    const id = this.allocateId()
    const channel = new Channel({ id, header, initiator: true, remotePeer: this.remotePeer, link: this.link, windowBytes: this.options.windowBytes, sendWindowBytes: hello.window, maxWindowBytes: this.options.maxWindowBytes })
    this.channels.set(id, channel)
    this.enqueue(encodeOpenFrame(id, header, options.body))
    let reply: Reply
    try {
      reply = await this.request(this.opening, id, this.options.openTimeoutMs, `opening a ${header.type} channel`, options.signal)
    } catch (err) {
      channel.abort(err)
      throw err
    }
    if (reply.error !== undefined) {
      const err = new StarsockError(reply.error.code, reply.error.message)
      channel.fail(err)
      throw err
    }
    channel.bound = reply.bound
    channel.addresses = reply.addresses
    return channel
  }

  /**
   * Ask for a mapping; settles with its id once the other side granted it (and, to a peer with the
   * `ack` feature, the ACK that makes the grant hold is queued), rejects with `E_DENIED` (or another
   * code). `onAsking` is called (at most once) when the other side asks a person. A grant that
   * arrives after this side gave up (timeout, abort) is answered with KILL: nothing opens.
   */
  async offer (offer: Offer, options: { signal?: AbortSignal, timeoutMs?: number, onAsking?: (info: Asking) => void, onGranted?: (reply: Reply) => void } = {}): Promise<number> {
    const hello = await this.ready
    this.checkOpen()
    // An offer the other side cannot read is refused here: an older peer would close the connection.
    if (!understandsOffer(hello, offer.kind)) throw new StarsockError('E_UNSUPPORTED', `${this.remotePeer} does not take ${offer.kind} offers (an older starsock?)`)
    const id = this.allocateMappingId()
    const onAsking = options.onAsking
    if (onAsking !== undefined) this.askingHandlers.set(id, onAsking)
    this.enqueue(encodeJsonFrame(FRAME.OFFER, id, offer))
    try {
      const reply = await this.request(this.offering, id, options.timeoutMs ?? this.options.offerTimeoutMs, 'waiting for the offer to be answered', options.signal)
      options.onGranted?.(reply)
    } catch (err) {
      // Given up here: the other side may still grant it, so tell it the mapping is off, and keep
      // the id out of use while a late grant of it may still come.
      if (err instanceof StarsockError && (err.code === 'E_TIMEOUT' || err.code === 'E_ABORTED')) {
        this.kill(id, new StarsockError('E_KILLED', 'The requester gave up on the offer'))
        this.retire(id)
      }
      throw err
    } finally {
      this.askingHandlers.delete(id)
    }
    // Ack-Acc: the grant holds on the other side once this arrives, before any channel of the mapping.
    if (this.acks(hello)) this.enqueue(encodeJsonFrame(FRAME.ACK, id, {}))
    return id
  }

  /** Whether grants on this connection hold only once ACKed: both HELLOs have `ack`. */
  private acks (remote: Hello): boolean {
    return hasFeature(remote, 'ack') && this.options.features.includes('ack')
  }

  /** Keep `id` (an offer given up on) out of use for the offer timeout. */
  private retire (id: number): void {
    if (this.retired.size >= MAX_RETIRED_OFFER_IDS) this.retired.delete(this.retired.keys().next().value as number)
    this.retired.set(id, Date.now() + this.options.offerTimeoutMs)
  }

  /** Tell the other side a mapping is over (the caller closes its channels). */
  kill (mappingId: number, err: StarsockError): void {
    if (this.closedWith === undefined) this.enqueue(encodeJsonFrame(FRAME.KILL, mappingId, errorToWire(err)))
  }

  /**
   * End the connection: every channel fails with `err` (default `E_STREAM_CLOSED`). Without an
   * error, frames already queued (a KILL, say) are sent first; settles once the connection is closed.
   */
  async close (err?: StarsockError): Promise<void> {
    const error = err ?? new StarsockError('E_STREAM_CLOSED', 'Connection closed')
    if (this.closedWith !== undefined) return
    this.closedWith = error
    this.graceful = err === undefined
    clearTimeout(this.helloTimer)
    for (const ac of this.incomingOffers.values()) ac.abort(error)
    for (const { grant, timer } of this.awaitingAck.values()) {
      clearTimeout(timer)
      grant?.cancel(error)
    }
    this.awaitingAck.clear()
    this.helloSettle.reject(error)
    for (const pending of [...this.opening.values(), ...this.offering.values()]) {
      clearTimeout(pending.timer)
      pending.reject(error)
    }
    this.opening.clear()
    this.offering.clear()
    this.askingHandlers.clear()
    for (const channel of [...this.channels.values()]) channel.fail(error)
    this.channels.clear()
    this.roomWaiters.wake()
    this.emit('close', error)
    if (err !== undefined) return this.conn.abort(err.message)
    const deadline = Date.now() + CLOSE_FLUSH_MS
    while ((this.output.length > 0 || this.flushing) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    await this.conn.close()
  }

  private checkOpen (): void {
    if (this.closedWith !== undefined) throw this.closedWith
  }

  /**
   * A fresh mapping id (the Tox draft's msg_id): random, of this side's parity, never 0, never one
   * in use on this connection (an offer waiting, a grant waiting for its ACK, a live mapping, an
   * offer given up on recently).
   */
  private allocateMappingId (): number {
    const random = new Uint32Array(1)
    const now = Date.now()
    for (const [id, until] of this.retired) {
      if (until > now) break
      this.retired.delete(id)
    }
    for (;;) {
      crypto.getRandomValues(random)
      const n = random[0] as number
      const id = (this.conn.initiator ? n | 1 : n & 0xfffffffe) >>> 0
      if (id === 0 || this.offering.has(id) || this.retired.has(id) || this.incomingOffers.has(id) || this.awaitingAck.has(id)) continue
      if (this.handlers.mappingInUse?.(id) === true) continue
      return id
    }
  }

  private allocateId (): number {
    const id = this.nextId
    this.nextId += 2
    if (this.nextId > 0xffffffff) this.nextId = this.conn.initiator ? 1 : 2 // ids of long-closed channels come round again
    return id
  }

  private async request<T> (table: Map<number, Pending<T>>, id: number, timeoutMs: number, what: string, signal?: AbortSignal): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      const onAbort = (): void => settle(() => reject(new StarsockError('E_ABORTED', `${what}: aborted`, { cause: signal?.reason })))
      const settle = (fn: () => void): void => {
        clearTimeout(pending.timer)
        table.delete(id)
        signal?.removeEventListener('abort', onAbort)
        fn()
      }
      const pending: Pending<T> = {
        resolve: (v) => settle(() => resolve(v)),
        reject: (e) => settle(() => reject(e)),
        timer: setTimeout(() => pending.reject(new StarsockError('E_TIMEOUT', `${what}: no answer within ${timeoutMs} ms`)), timeoutMs)
      }
      table.set(id, pending)
      if (signal?.aborted === true) onAbort()
      else signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  private enqueue (head: Uint8Array, payload?: Uint8Array): void {
    if (this.closedWith !== undefined) return
    this.output.push(head, payload)
    this.queued += head.byteLength + (payload?.byteLength ?? 0)
    if (this.flushing) return
    // The first frame after a quiet spell waits for the end of this turn of the event loop, not
    // for a timer: the frames of every socket read in it go out together, as one batch.
    this.flushing = true
    scheduleFlush(() => { void this.flush() })
  }

  private async flush (): Promise<void> {
    this.flushing = true
    try {
      while (this.output.length > 0 && (this.closedWith === undefined || this.graceful)) {
        // Whole frames, one stream message each batch: the other side never joins a frame's pieces.
        const before = this.output.byteLength
        const parts = this.output.takeParts(Math.min(FLUSH_BYTES, this.conn.chunkBytes), BATCH_HEADROOM_BYTES)
        const taken = before - this.output.byteLength
        await this.conn.writeParts(parts, { reservedBytes: BATCH_HEADROOM_BYTES })
        this.queued -= taken
        if (this.queued <= OUTPUT_HIGH_WATER_BYTES) this.roomWaiters.wake()
      }
    } catch (err) {
      void this.close(err instanceof StarsockError ? err : new StarsockError('E_DISCONNECTED', String(err)))
    } finally {
      this.flushing = false
    }
  }

  private async readLoop (): Promise<void> {
    try {
      for await (const first of this.conn) {
        // The chunks already here go through together (a secure connection opens a raw chunk
        // into a chunk per Noise message): every frame of them reaches its channel in this turn,
        // and a channel's reader takes them as one batch (one writev), not one per message.
        for (let chunk: Uint8Array | undefined = first; chunk !== undefined; chunk = this.closedWith === undefined ? this.conn.readReady() : undefined) {
          const queued: Datagram[] = []
          for (const frame of this.decoder.push(chunk)) this.dispatch(frame, queued)
          unpin(chunk, queued)
        }
        if (this.closedWith !== undefined) return
        while (this.queued > MAX_QUEUED_BYTES && this.closedWith === undefined) await this.roomWaiters.wait()
      }
      void this.close(new StarsockError('E_STREAM_CLOSED', 'The other side closed the connection'))
    } catch (err) {
      const error = err instanceof StarsockError ? err : new StarsockError('E_CHANNEL_PROTOCOL', String(err))
      if (error.code === 'E_CHANNEL_PROTOCOL') this.logger.warn({ peer: this.remotePeer, err: error.message }, 'protocol error')
      void this.close(error)
    }
  }

  /** Act on one frame; the DATA and DATAGRAM items a channel queued go in `queued`. */
  private dispatch (frame: Frame, queued: Datagram[]): void {
    if (this.hello === undefined) {
      if (frame.type !== FRAME.HELLO) throw new StarsockError('E_CHANNEL_PROTOCOL', 'first frame is not HELLO: not a starsock-mux connection')
      this.hello = parseHello(decodeJson(frame))
      clearTimeout(this.helloTimer)
      this.helloSettle.resolve(this.hello)
      return
    }
    const channel = this.channels.get(frame.id)
    switch (frame.type) {
      case FRAME.DATA:
      case FRAME.DATAGRAM: {
        const item = frame.type === FRAME.DATA ? { data: frame.payload } : decodeDatagram(frame)
        if (channel?.push(item) === true) queued.push(item)
        return
      }
      case FRAME.WINDOW: return channel?.addCredit(decodeWindow(frame))
      case FRAME.FIN: return channel?.remoteFin()
      case FRAME.RESET: {
        const e = parseError(decodeJson(frame))
        const err = new StarsockError(e.code, e.message)
        this.opening.get(frame.id)?.reject(err) // reset before the reply: the open failed
        return channel?.fail(err)
      }
      case FRAME.OPEN: return this.incomingOpen(frame)
      case FRAME.REPLY: return this.opening.get(frame.id)?.resolve(parseReply(decodeJson(frame)))
      case FRAME.OFFER: return this.incomingOffer(frame)
      case FRAME.OFFER_REPLY: {
        const json = decodeJson(frame)
        const asking = parseAsking(json)
        if (asking !== undefined) {
          // Interim: the answer is still to come. Told once; more are ignored.
          const handler = this.askingHandlers.get(frame.id)
          this.askingHandlers.delete(frame.id)
          return handler?.(asking)
        }
        const reply = parseReply(json)
        const pending = this.offering.get(frame.id)
        if (reply.error !== undefined) return pending?.reject(new StarsockError(reply.error.code, reply.error.message))
        if (pending === undefined && this.retired.delete(frame.id)) {
          // A grant for an offer this side gave up on: it never opens (the KILL sent on giving up
          // may have crossed the grant; this one answers it).
          return this.kill(frame.id, new StarsockError('E_KILLED', 'The requester gave up on the offer'))
        }
        return pending?.resolve(reply)
      }
      case FRAME.ACK: {
        const waiting = this.awaitingAck.get(frame.id)
        if (waiting === undefined) return // late (after the open timeout, which killed it) or stray
        this.awaitingAck.delete(frame.id)
        clearTimeout(waiting.timer)
        return waiting.grant?.commit()
      }
      case FRAME.KILL: {
        const e = parseError(decodeJson(frame))
        const err = new StarsockError(e.code, e.message)
        const pending = this.incomingOffers.get(frame.id)
        if (pending !== undefined) return pending.abort(err)
        const waiting = this.awaitingAck.get(frame.id)
        if (waiting !== undefined) {
          // The requester gave up before the grant reached it: the mapping never existed.
          this.awaitingAck.delete(frame.id)
          clearTimeout(waiting.timer)
          return waiting.grant?.cancel(err)
        }
        return this.handlers.onKill?.(frame.id, err)
      }
      case FRAME.HELLO: throw new StarsockError('E_CHANNEL_PROTOCOL', 'second HELLO')
    }
  }

  private incomingOpen (frame: Frame): void {
    const { header: raw, body } = decodeOpen(frame)
    const header = parseOpenHeader(raw)
    const id = frame.id
    if (id % 2 === (this.conn.initiator ? 1 : 0) || this.channels.has(id)) throw new StarsockError('E_CHANNEL_PROTOCOL', `channel id ${id} is not the other side's to open`)
    const refuse = (err: StarsockError): void => this.enqueue(encodeJsonFrame(FRAME.REPLY, id, { error: errorToWire(err) }))
    if (this.channels.size >= this.options.maxChannels) return refuse(new StarsockError('E_LIMIT_CHANNELS', `More than ${this.options.maxChannels} channels on one connection`))
    if (this.handlers.onOpen === undefined) return refuse(new StarsockError('E_UNSUPPORTED', 'This peer opens no channels'))
    const channel = new Channel({ id, header, initiator: false, remotePeer: this.remotePeer, link: this.link, windowBytes: this.options.windowBytes, sendWindowBytes: (this.hello as Hello).window, maxWindowBytes: this.options.maxWindowBytes })
    this.channels.set(id, channel)
    if (body.byteLength > 0) channel.push({ data: body.slice() })
    this.handlers.onOpen(channel, body).then((reply) => {
      if (channel.closed) return
      channel.bound = reply?.bound
      channel.addresses = reply?.addresses
      this.enqueue(encodeJsonFrame(FRAME.REPLY, id, reply ?? {}))
    }, (err: unknown) => {
      this.channels.delete(id)
      channel.fail(err instanceof StarsockError ? err : new StarsockError('E_CHANNEL_PROTOCOL', String(err)))
      refuse(err instanceof StarsockError ? err : new StarsockError('E_CHANNEL_PROTOCOL', 'Refused'))
    })
  }

  private incomingOffer (frame: Frame): void {
    const id = frame.id
    if (id === 0 || id % 2 === (this.conn.initiator ? 1 : 0) || this.incomingOffers.has(id) || this.awaitingAck.has(id) || this.handlers.mappingInUse?.(id) === true) {
      throw new StarsockError('E_CHANNEL_PROTOCOL', `mapping id ${id} is not the other side's to offer, or is in use`)
    }
    const answer = (value: unknown): void => this.enqueue(encodeJsonFrame(FRAME.OFFER_REPLY, id, value))
    // An offer this side cannot read (a newer kind, say) is refused alone; the connection and
    // every other mapping on it go on.
    let offer: Offer
    try {
      offer = parseOffer(decodeJson(frame))
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err)
      return answer({ error: errorToWire(new StarsockError('E_UNSUPPORTED', `offer not understood: ${why}`)) })
    }
    if (this.handlers.onOffer === undefined) return answer({ error: errorToWire(new StarsockError('E_DENIED', 'This peer takes no offers')) })
    if (this.incomingOffers.size + this.awaitingAck.size >= this.options.maxPendingOffers) return answer({ error: errorToWire(new StarsockError('E_LIMIT_MAPPINGS', 'Too many offers waiting for an answer')) })
    const ac = new AbortController()
    this.incomingOffers.set(id, ac)
    let told = false
    const asking = (info: Asking): void => {
      if (told || this.hello?.interim !== true || ac.signal.aborted) return // an older peer would read it as a grant
      told = true
      answer({ asking: { timeoutMs: Math.min(Math.max(0, Math.floor(info.timeoutMs)), MAX_ASKING_TIMEOUT_MS) } })
    }
    this.handlers.onOffer(id, offer, ac.signal, asking).then((grant) => {
      this.incomingOffers.delete(id)
      if (this.closedWith !== undefined) return grant?.cancel(this.closedWith)
      if (ac.signal.aborted) {
        // The requester's KILL came while the grant was on its way out of the handler: no grant.
        const err = ac.signal.reason instanceof StarsockError ? ac.signal.reason : new StarsockError('E_KILLED', 'The requester gave up on the offer')
        answer({ error: errorToWire(err) })
        return grant?.cancel(err)
      }
      answer(grant?.reply ?? {})
      if (!this.acks(this.hello as Hello)) return grant?.commit() // an older peer: the grant holds at once, as before
      // Offer -> Accept -> Ack-Acc: the mapping exists once the requester's ACK arrives.
      const timer = setTimeout(() => {
        if (this.awaitingAck.get(id)?.timer !== timer) return
        this.awaitingAck.delete(id)
        const err = new StarsockError('E_TIMEOUT', `No ACK of the grant within ${this.options.openTimeoutMs} ms`)
        this.kill(id, err)
        grant?.cancel(err)
      }, this.options.openTimeoutMs)
      this.awaitingAck.set(id, { grant, timer })
    }, (err: unknown) => {
      this.incomingOffers.delete(id)
      answer({ error: errorToWire(err) })
    })
  }
}
