/**
 * A connection between two peers: the two one-way streams of a dial, usable as an async iterable
 * with an awaited write, and as a pull-stream duplex (`source`/`sink`).
 *
 * Three ways to stop, each reaching the other side as itself:
 * - `closeWrite()`: half-close; the other side's reads end cleanly, it may still write to us;
 * - `close()`: half-close and stop reading; the other side's reads end cleanly, its writes fail
 *   with `E_STREAM_CLOSED`;
 * - `abort(err)`: the other side's reads and writes fail with `E_STREAM_ABORTED` and our message
 *   (with a `StarsockError`, its own code: e.g. `E_SECURE_AUTH`).
 *
 * The bytes come from a `ByteReader` and go to a `ByteWriter`: the plain one-way streams
 * (`stream.ts`) for a plaintext connection, the Noise secure channel over them (`noise/`) for a
 * secure one; the surface is the same, so the multiplexer and every caller take either.
 */
import type pull from 'pull-stream'
import { StarsockError, wireError } from '../shared/errors.ts'
import { joinParts } from './parts.ts'

/** Where a connection's bytes come from (a `ReceiveStream`, or the secure channel over one). */
export interface ByteReader {
  /** The next chunk, or `null` at a clean end; rejects with the stream's error. */
  read: (signal?: AbortSignal) => Promise<Uint8Array | null>
  /**
   * A chunk already here, at once, or `undefined` when a read would have to wait (or would end or
   * fail): the secure channel opens one raw chunk into a chunk per Noise message, and a reader
   * takes them all in one turn. Optional (a plaintext `ReceiveStream` has none: its chunks are
   * whole batches already).
   */
  readReady?: () => Uint8Array | undefined
  /** Give up: tell the sender with `reason` (a wire string); reads fail with `local`. */
  abort: (reason: string, local: StarsockError) => void
  /** Whether the stream has ended (cleanly or not). */
  readonly done: boolean
  /** Bytes received in all. */
  readonly receivedBytes: number
  /** Bytes received and not read yet. */
  readonly bufferedBytes: number
}

/** Where a connection's bytes go (a `SendStream`, or the secure channel over one). */
export interface ByteWriter {
  /** Send a copy of `data`; settles once within the other side's window. */
  write: (data: Uint8Array, signal?: AbortSignal) => Promise<void>
  /** Send `data` itself (never changed afterwards); its first `reservedBytes` are free room, not sent. */
  writeOwned: (data: Uint8Array, signal?: AbortSignal, reservedBytes?: number) => Promise<void>
  /** `writeOwned` of one message given as its parts in order, not joined where the transport writes a list (the first part's first `reservedBytes` are free room). */
  writeParts?: (parts: readonly Uint8Array[], signal?: AbortSignal, reservedBytes?: number) => Promise<void>
  /** End cleanly after the pending writes. */
  end: () => Promise<void>
  /** End at once with an error (a wire string); pending writes fail. */
  error: (wire: string) => void
  /** Largest chunk sent as one message. */
  readonly chunkBytes: number
  /** Raise `chunkBytes` by up to `extraBytes` within the server's limit (for framing around a full chunk); returns it. */
  widenChunks?: (extraBytes: number) => number
  /** Whether the stream has ended or failed. */
  readonly done: boolean
  /** Bytes sent in all. */
  readonly sentBytes: number
  /** Send credit left, or `undefined` without flow control. */
  readonly creditBytes: number | undefined
}

export { STREAM_HEADROOM_BYTES } from './stream.ts'

/** Figures of one connection. */
export interface ConnectionStats {
  /** Bytes written and sent. */
  sentBytes: number
  /** Bytes received. */
  receivedBytes: number
  /** Bytes received and not read yet (at most the window with a starsock sender). */
  bufferedBytes: number
  /** Send credit left, or `undefined` when the other side is a legacy peer. */
  creditBytes: number | undefined
}

/** A connection to another peer. */
export class Connection implements AsyncIterable<Uint8Array> {
  /** pull-stream source of the bytes from the other side. */
  readonly source: pull.Source<Uint8Array>
  /** pull-stream sink of bytes to the other side; ends (or aborts) our write side when its source does. */
  readonly sink: pull.Sink<Uint8Array>

  constructor (
    /** The other peer's websocket-star address. */
    readonly remoteAddr: string,
    /**
     * The other peer's id: on a secure connection the id it proved in the handshake; on a
     * plaintext one only the server's word.
     */
    readonly remotePeer: string,
    /** Whether this side dialed. */
    readonly initiator: boolean,
    private readonly rx: ByteReader,
    private readonly tx: ByteWriter,
    /**
     * Whether the bytes go end to end encrypted and authenticated (Noise), with `remotePeer`
     * proved; `false` with a legacy peer or a peer that chose plaintext (`secure: false`, `--insecure`).
     */
    readonly secure = false
  ) {
    this.source = (end, cb) => {
      if (end !== null && end !== undefined) {
        if (end === true) void this.close()
        else this.abort(end)
        return cb(end)
      }
      this.rx.read().then((chunk) => chunk === null ? cb(true) : cb(null, chunk), (err: unknown) => cb(err as Error))
    }
    this.sink = (read) => {
      const next = (end: pull.EndOrError, data?: Uint8Array): void => {
        if (end === true) return void this.closeWrite()
        if (end !== null && end !== undefined) return this.abort(end)
        this.write(data as Uint8Array).then(() => read(null, next), (err: unknown) => read(err as Error, () => {}))
      }
      read(null, next)
    }
  }

  /**
   * Send bytes; settles once they are within the other side's window (rejects after close or
   * abort). `data` is copied, so the caller may reuse it once this settles.
   */
  async write (data: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.tx.write(data, options.signal)
  }

  /**
   * `write` without the copy, for a caller that gives its buffer up: `data` is handed to the
   * transport as it is, so it must never be changed afterwards. Up to `chunkBytes` (and half the
   * other side's window) it goes as one stream message, never cut in two. `reservedBytes` leading
   * bytes of `data` are free room, not sent: leave `STREAM_HEADROOM_BYTES` there and a raw frame
   * needs no copy. @default reservedBytes 0
   */
  async writeOwned (data: Uint8Array, options: { signal?: AbortSignal, reservedBytes?: number } = {}): Promise<void> {
    await this.tx.writeOwned(data, options.signal, options.reservedBytes ?? 0)
  }

  /**
   * `writeOwned` of one message given as its parts, in order (none ever changed afterwards; the
   * first `reservedBytes` of the first part are free room): a plaintext connection hands them to
   * the transport as they are, to be written as one message without joining them (one `writev`
   * where the transport allows); otherwise they are joined first, one copy.
   */
  async writeParts (parts: readonly Uint8Array[], options: { signal?: AbortSignal, reservedBytes?: number } = {}): Promise<void> {
    const reservedBytes = options.reservedBytes ?? 0
    if (this.tx.writeParts !== undefined) return await this.tx.writeParts(parts, options.signal, reservedBytes)
    await this.tx.writeOwned(joinParts(parts), options.signal, reservedBytes)
  }

  /** Largest stream message: writes are sent in chunks of at most this many bytes. */
  get chunkBytes (): number {
    return this.tx.chunkBytes
  }

  /** The next chunk, or `null` once the other side ended cleanly; rejects with its error. */
  async read (options: { signal?: AbortSignal } = {}): Promise<Uint8Array | null> {
    return await this.rx.read(options.signal)
  }

  /** A chunk already received, without waiting, if one is (see `ByteReader.readReady`); else `undefined`, and `read` says what comes. */
  readReady (): Uint8Array | undefined {
    return this.rx.readReady?.()
  }

  /** Every chunk until the other side ends; throws its error. */
  async * [Symbol.asyncIterator] (): AsyncIterator<Uint8Array> {
    for (;;) {
      const chunk = await this.rx.read()
      if (chunk === null) return
      yield chunk
    }
  }

  /** Half-close: no more writes; settles once the end is sent after pending writes. */
  async closeWrite (): Promise<void> {
    await this.tx.end()
  }

  /** Close both ways; settles once our end is sent. */
  async close (): Promise<void> {
    if (!this.rx.done) this.rx.abort(wireError('E_STREAM_CLOSED', 'Closed by the other side'), new StarsockError('E_STREAM_CLOSED', 'Closed here'))
    await this.tx.end().catch(() => {})
  }

  /**
   * Abort both ways with an error the other side sees: `E_STREAM_ABORTED` and the message, or a
   * `StarsockError`'s own code (the code travels in the wire string, `<message> [<CODE>]`).
   */
  abort (err?: unknown): void {
    const message = err instanceof Error ? err.message : typeof err === 'string' ? err : 'Aborted'
    const code = err instanceof StarsockError ? err.code : 'E_STREAM_ABORTED'
    const wire = wireError(code, message.slice(0, 200))
    this.tx.error(wire)
    this.rx.abort(wire, new StarsockError(code, `Aborted here: ${message}`))
  }

  /** Whether both directions are over. */
  get closed (): boolean {
    return this.rx.done && this.tx.done
  }

  /** Figures now. */
  stats (): ConnectionStats {
    return { sentBytes: this.tx.sentBytes, receivedBytes: this.rx.receivedBytes, bufferedBytes: this.rx.bufferedBytes, creditBytes: this.tx.creditBytes }
  }
}
