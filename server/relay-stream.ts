/** One relayed one-way stream, and one session as the relay sees it: queues, lanes and backpressure state. */
import { ipAndSiteKeys } from './rate-limit.ts'
import { streamEvent } from '../shared/events.ts'
import { FRAME_HEADER_BYTES, FRAME_KIND_DATA, MAX_LANE, writeFrameHeader } from '../shared/raw-frame.ts'
import type { Endpoint } from './session.ts'

/** How a stream ends: `true` for a clean end, a string for an error. */
export type StreamEnd = true | string

/**
 * One session as the relay sees it: the streams it sends and receives and its backpressure
 * state. Owned by the relay, which keeps one per session that takes part in a stream.
 */
export class RelayParty {
  /** Streams this client sends on, by stream id. */
  readonly outbound = new Map<string, RelayStream>()
  /** Streams this client receives, by stream id. */
  readonly inbound = new Map<string, RelayStream>()
  /** Inbound streams with a chunk or an end ready to forward, in round-robin order. */
  readonly ready = new Set<RelayStream>()
  /** Outbound streams by the lane this client sends their raw frames on. */
  readonly lanes = new Map<number, RelayStream>()
  /** The next lane to give out: lanes are never reused on a connection. */
  private nextLane = 1
  /** Bytes from this client's outbound streams held on the server. */
  queuedBytes = 0
  /** Chunks from this client's outbound streams held on the server (each costs memory of its own, however small). */
  queuedChunks = 0
  /** Outbound streams above their pause threshold. */
  highStreams = 0
  /** Whether reading from this client is paused for backpressure. */
  paused = false
  /** When the current pause began. */
  pausedSinceMs = 0

  constructor (
    /** How to reach the client. */
    readonly endpoint: Endpoint,
    /** Whether the client negotiated raw frames (it may turn them on after the party exists). */
    private readonly rawFrames: () => boolean = () => false,
    /** The client's IP address (for per-IP shares); empty when unknown. */
    readonly ip: string = ''
  ) {
    this.shareKeys = ip === '' ? [] : ipAndSiteKeys(ip)
    this.ipKey = this.shareKeys[0] ?? ''
  }

  /** `ipLimitKey` of `ip`, the key of its IP's share of the relay; empty when unknown. */
  readonly ipKey: string
  /** The shares of the relay it counts in: its IP's (`ipKey`), and for IPv6 its /48's too (none when unknown). */
  readonly shareKeys: readonly string[]

  /** Whether the client reads and sends raw frames. */
  get raw (): boolean {
    return this.rawFrames() && this.endpoint.sendFrame !== undefined
  }

  /** A new lane for `stream`, which this client sends; `undefined` once they ran out (it stays on events). */
  /** Whether `lane` was ever handed out to this client (a frame on one that closed since is a race, not an abuse). */
  gaveLane (lane: number): boolean {
    return lane >= 1 && lane < this.nextLane
  }

  laneFor (stream: RelayStream): number | undefined {
    if (this.nextLane > MAX_LANE) return undefined
    const lane = this.nextLane++
    this.lanes.set(lane, stream)
    return lane
  }

  /** Streams this client takes part in, both ways. */
  get streamCount (): number {
    return this.outbound.size + this.inbound.size
  }
}

/**
 * A chunk held on the server: its bytes, or a raw frame from the wire whose payload starts after
 * the header (`raw`), forwarded as it is with the receiver's lane written over the sender's.
 */
export interface QueuedChunk {
  bytes: Uint8Array
  raw: boolean
}

/**
 * Chunks held for one stream, oldest first: `shift` is O(1) (an array's `shift` moves every entry:
 * a queue of many tiny chunks drained that way took seconds of one turn of the event loop).
 */
export class ChunkQueue {
  private items: Array<QueuedChunk | undefined> = []
  private head = 0

  get length (): number {
    return this.items.length - this.head
  }

  push (chunk: QueuedChunk): void {
    this.items.push(chunk)
  }

  shift (): QueuedChunk | undefined {
    if (this.head === this.items.length) return undefined
    const chunk = this.items[this.head]
    this.items[this.head++] = undefined
    // Drop the taken slots once they are most of the array: amortised O(1).
    if (this.head === this.items.length) {
      this.items = []
      this.head = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return chunk
  }

  clear (): void {
    this.items = []
    this.head = 0
  }
}

/** A one-way stream from `sender` to `receiver`, named `id` on both sockets. */
export class RelayStream {
  /** Chunks held on the server, oldest first. */
  readonly queue = new ChunkQueue()
  /** Bytes in `queue`. */
  queuedBytes = 0
  /** Bytes carried in all (for the byte budget). */
  totalBytes = 0
  /** Chunks carried in all (empty ones aside). */
  totalChunks = 0
  /** Credit the receiver gave back in all: at most the bytes delivered to it (`totalBytes - queuedBytes`). */
  creditedBytes = 0
  /** Credit events passed on: at most one per chunk delivered (`totalChunks - queue.length`). */
  credits = 0
  /** The receiver said it is ready (`accept`); only then does data flow. */
  accepted = false
  /** The sender ended the stream; delivered after the queued chunks. */
  ending: StreamEnd | undefined
  /** Above the sender's pause threshold. */
  high = false
  /** Removed from both parties; late events are ignored. */
  closed = false
  /** Last time a byte or an event went through (for the idle timeout). */
  lastActiveMs: number
  /** When it opened (for the log line of its end). */
  readonly openedMs: number
  /** Since when its queue has held bytes without one going out (the IP share fails the longest quiet first). */
  quietSinceMs = 0
  /** The other direction of the same dial, closed with this one on failure. */
  sibling: RelayStream | undefined
  /** The lane the sender sends raw frames on, once told (with `accept`). */
  senderLane: number | undefined
  /** The lane the receiver chose for raw frames (with its `accept`); events without one. */
  receiverLane: number | undefined
  /** Told once, when the receiver accepts (a dial waiting for a legacy listener's word). */
  onAccept: (() => void) | undefined

  constructor (
    /** Stream id as on the wire (`<dialId>.dialer` or `<dialId>.listener`). */
    readonly id: string,
    /** Who sends the bytes. */
    readonly sender: RelayParty,
    /** Who receives them. */
    readonly receiver: RelayParty,
    nowMs: number
  ) {
    this.lastActiveMs = nowMs
    this.openedMs = nowMs
  }

  /** Whether the receiver can be sent something now. */
  get sendable (): boolean {
    return !this.closed && this.accepted && (this.queue.length > 0 || this.ending !== undefined)
  }
}

/** Payload bytes of a queued chunk. */
export function payloadBytes (chunk: QueuedChunk): number {
  return chunk.raw ? chunk.bytes.byteLength - FRAME_HEADER_BYTES : chunk.bytes.byteLength
}

/**
 * Send `chunk` of `stream` to its receiver: as a raw frame on the receiver's lane (the sender's
 * frame itself, its header rewritten in place: the buffer came from the wire and is the relay's),
 * else as a `queue` event (a raw frame's payload as a view, without a copy). Returns whether it went as a frame.
 */
export function deliver (stream: RelayStream, chunk: QueuedChunk): boolean {
  const { endpoint } = stream.receiver
  const lane = stream.receiverLane
  if (chunk.raw && lane !== undefined && endpoint.sendFrame !== undefined) {
    writeFrameHeader(chunk.bytes, FRAME_KIND_DATA, lane)
    endpoint.sendFrame(chunk.bytes)
    return true
  }
  endpoint.emit(streamEvent('queue', stream.id), chunk.raw ? chunk.bytes.subarray(FRAME_HEADER_BYTES) : chunk.bytes)
  return false
}
