/**
 * Sends a flushed peer-batch window to the clients that asked for batches (issue 18), at cluster
 * scale: when a node of a 10-node cluster dies its 10,000 leaves reach every survivor's window,
 * and one flush is then some 800 KB for each of thousands of clients.
 * - Encoded once: clients with none of their addresses in the window get the same encoded events
 *   (`EventEncoder`, `Endpoint.sendEncoded`: one packet, one WebSocket frame, one Buffer for all);
 *   a client holding an address in it gets the events naming one filtered, the others shared (it is never told of its own).
 * - Sliced: a turn of the event loop serves clients until `sliceBytes` written or `sliceClients`
 *   served, then yields (`setImmediate`); one flush at a time, so each client gets the batches in
 *   order (the announcer keeps collecting in its window meanwhile, which coalesces and is bounded).
 * - Bounded: a client whose backlog would pass `maxBacklogBytes` is not written to but handed to
 *   `backlogged` (the server disconnects it, as it does any socket over `socketBufferBytes`).
 */
import { EVENTS, type PeerBatchEntry } from '../shared/events.ts'
import type { EncodedEvent, EventEncoder, Session } from './session.ts'

/** Most entries in one `starsock:peer-batch` event: a larger batch goes as several, in order (messages stay small). */
export const MAX_PEER_BATCH_EVENT_ENTRIES = 1000
/**
 * Bytes written toward clients in one turn of the event loop before a flush yields. Writing to
 * loopback TCP costs about 0.5 ms per 75 KB event on the shared 2-core test machine (the kernel
 * hands it to the receiver in the same call): 1 MiB is a few ms a turn.
 */
export const FLUSH_SLICE_BYTES = 1024 * 1024
/** Clients served in one turn before a flush yields (many clients, a small batch: a write each). */
export const FLUSH_SLICE_CLIENTS = 256
/** Wire size assumed per entry when the batch is not encoded once (no encoder: a unit test, a stand-in). */
const ENTRY_BYTES_GUESS = 96

/** `entries` in pieces of at most `MAX_PEER_BATCH_EVENT_ENTRIES`, in order; none for none. */
export function parts<T> (entries: T[]): T[][] {
  if (entries.length <= MAX_PEER_BATCH_EVENT_ENTRIES) return entries.length === 0 ? [] : [entries]
  const out: T[][] = []
  for (let i = 0; i < entries.length; i += MAX_PEER_BATCH_EVENT_ENTRIES) out.push(entries.slice(i, i + MAX_PEER_BATCH_EVENT_ENTRIES))
  return out
}

/** Settings of the sender. */
export interface PeerBatchSenderOptions {
  /** A client whose backlog plus a batch would pass this is handed to `backlogged` instead. */
  maxBacklogBytes: number
  /** @default FLUSH_SLICE_BYTES */
  sliceBytes?: number
  /** @default FLUSH_SLICE_CLIENTS */
  sliceClients?: number
}

/** What the sender reports. */
export interface PeerBatchSenderHooks {
  /** `count` `starsock:peer-batch` events just went to one client. */
  sent: (count: number) => void
  /** `session`'s backlog (`backlog` bytes) is too large for the batch: it got nothing. */
  backlogged: (session: Session, backlog: number) => void
}

/** One flushed window on its way to the clients. */
interface Flush {
  entries: PeerBatchEntry[]
  /** The addresses the entries are about, each with the events (indexes in `shared`) naming it: a client holding one gets those filtered. */
  touched: Map<string, number[]>
  /** The entries cut in events, once for everyone. */
  shared: PeerBatchEntry[][]
  /** Those events encoded once, when the encoder could. */
  encoded: EncodedEvent[] | undefined
  /** Bytes of the whole batch, per client. */
  bytes: number
  /** Clients not served yet, in the order they asked for batches. */
  pending: Set<Session>
}

/** Sends flushed windows to their clients, one flush at a time, a slice per turn. */
export class PeerBatchSender {
  private flush: Flush | undefined
  private scheduled: ReturnType<typeof setImmediate> | undefined
  /** Set by the socket.io wiring: without it every client gets its own `emit`. */
  encoder: EventEncoder | undefined
  private readonly sliceBytes: number
  private readonly sliceClients: number

  constructor (private readonly hooks: PeerBatchSenderHooks, private readonly options: PeerBatchSenderOptions) {
    this.sliceBytes = options.sliceBytes ?? FLUSH_SLICE_BYTES
    this.sliceClients = options.sliceClients ?? FLUSH_SLICE_CLIENTS
    if (!(this.sliceBytes > 0) || !Number.isSafeInteger(this.sliceClients) || this.sliceClients < 1) throw new RangeError('sliceBytes and sliceClients must be positive')
  }

  /** Whether a flush is still on its way (a new one must wait: batches reach each client in order). */
  get busy (): boolean {
    return this.flush !== undefined
  }

  /**
   * Send `entries` to `sessions` (copied now; a session that joins later gets the next batch):
   * the first slice at once (a small flush is done when this returns), the rest in later turns.
   * Throws a `TypeError` while `busy`.
   */
  send (entries: PeerBatchEntry[], sessions: Iterable<Session>): void {
    if (this.flush !== undefined) throw new TypeError('a peer-batch flush is already on its way')
    const shared = parts(entries)
    const encoded = this.encode(shared)
    const bytes = encoded?.reduce((sum, e) => sum + e.bytes, 0) ?? entries.length * ENTRY_BYTES_GUESS
    this.flush = { entries, touched: touchedParts(shared), shared, encoded, bytes, pending: new Set(sessions) }
    this.slice()
  }

  /** The entries of the flush on its way that `session` was not sent yet, and it is not sent them (it stops asking for batches). */
  takeUnsent (session: Session): PeerBatchEntry[] {
    if (this.flush?.pending.delete(session) !== true) return []
    return this.flush.entries
  }

  /** Forget `session` (it disconnected or no longer asks for batches). */
  drop (session: Session): void {
    this.flush?.pending.delete(session)
  }

  /** Drop the flush on its way (the server is closing). */
  stop (): void {
    if (this.scheduled !== undefined) clearImmediate(this.scheduled)
    this.scheduled = undefined
    this.flush = undefined
  }

  /** The shared events encoded once each; `undefined` without an encoder or when one cannot be. */
  private encode (shared: PeerBatchEntry[][]): EncodedEvent[] | undefined {
    if (this.encoder === undefined) return undefined
    const out: EncodedEvent[] = []
    for (const part of shared) {
      const encoded = this.encoder(EVENTS.PEER_BATCH, [part])
      if (encoded === undefined) return undefined
      out.push(encoded)
    }
    return out
  }

  /** Serve clients until the slice's bytes or clients are spent, then yield until the next turn. */
  private slice (): void {
    this.scheduled = undefined
    const flush = this.flush
    if (flush === undefined) return
    let bytes = 0
    let clients = 0
    // Deleting from a Set while iterating it is defined: a client dropped meanwhile is not visited.
    for (const session of flush.pending) {
      if (this.flush !== flush) return // stopped meanwhile (the server is closing)
      if (bytes >= this.sliceBytes || clients >= this.sliceClients) {
        this.scheduled = setImmediate(() => this.slice())
        return
      }
      flush.pending.delete(session)
      bytes += this.sendTo(flush, session)
      clients++
    }
    if (this.flush === flush) this.flush = undefined
  }

  /** The batch to one client (nothing before it joined); returns the bytes written. */
  private sendTo (flush: Flush, session: Session): number {
    if (session.addrs.size === 0) return 0
    const endpoint = session.endpoint
    const backlog = endpoint.backlogBytes?.() ?? 0
    // A client with nothing queued always gets the batch (the window is bounded); one already
    // behind is not queued past the bound.
    if (backlog > 0 && backlog + flush.bytes > this.options.maxBacklogBytes) {
      this.hooks.backlogged(session, backlog)
      return 0
    }
    // A client is never told of its own addresses (as the joiner and the changer are not): the
    // events naming one are filtered for it (encoded apart), the others stay shared.
    const own = new Set<number>()
    for (const addr of session.addrs) for (const i of flush.touched.get(addr) ?? []) own.add(i)
    let sent = 0
    for (const [i, part] of flush.shared.entries()) {
      const encoded = flush.encoded?.[i]
      if (own.has(i)) {
        const mine = part.filter((entry) => !session.addrs.has(entry[1]))
        if (mine.length === 0) continue
        endpoint.emit(EVENTS.PEER_BATCH, mine)
      } else if (encoded !== undefined && endpoint.sendEncoded !== undefined) {
        endpoint.sendEncoded(encoded)
      } else {
        endpoint.emit(EVENTS.PEER_BATCH, part)
      }
      sent++
    }
    this.hooks.sent(sent)
    return flush.bytes
  }
}

/**
 * The events (indexes in `shared`) that name each address: a client holding an address re-encodes
 * only those (a flush of 10 events re-encoded whole for every such client would let clients that
 * join and leave make the server encode the window once each).
 */
function touchedParts (shared: PeerBatchEntry[][]): Map<string, number[]> {
  const touched = new Map<string, number[]>()
  for (const [i, part] of shared.entries()) {
    for (const entry of part) {
      const parts = touched.get(entry[1])
      if (parts === undefined) touched.set(entry[1], [i])
      else if (parts[parts.length - 1] !== i) parts.push(i)
    }
  }
  return touched
}
