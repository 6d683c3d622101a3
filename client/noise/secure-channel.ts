/**
 * The secure channel between two starsock peers: the Noise XX handshake (`handshake.ts`) over the
 * two one-way streams of a dial, then every byte sealed in Noise transport messages (`frame.ts`).
 * It gives a `ByteReader` and a `ByteWriter` for `Connection`: the multiplexer, its channels and
 * their credit windows run above it unchanged, and `remotePeer` is the id the other side proved.
 *
 * The dialer opens with a preamble (`PREAMBLE`, in multistream-select's message shape) so a
 * listener can tell a secure starsock dialer from a legacy or plaintext one; both mix it in as the
 * Noise prologue, so a relay that rewrites it fails the handshake.
 *
 * A clean end is authenticated: `end()` sends an empty sealed message before the stream's end,
 * and an end that comes without it (a relay cutting the stream short) fails the reader with
 * `E_SECURE_AUTH`, never a clean end. Any message that fails authentication aborts the connection
 * on both sides; nothing after it is delivered.
 */
import { StarsockError, wireError } from '../../shared/errors.ts'
import type { PrivateKey } from '@libp2p/interface'
import { STREAM_HEADROOM_BYTES, type ByteReader, type ByteWriter } from '../connection.ts'
import { joinParts, partsArgumentError, PartsCursor } from '../parts.ts'
import { AEAD_TAG_BYTES, type Aead } from './aead.ts'
import { FRAME_HEADER_BYTES, FrameDecoder, FramingError, NOISE_MAX_MESSAGE_BYTES, putFrame, putLength } from './frame.ts'
import type { Dh } from './dh.ts'
import { initiateHandshake, respondHandshake, type CipherState, type HandshakeTransport, type StaticKey } from './handshake.ts'

/** Whether `signal` is aborted now (a function, so a check made earlier does not narrow it). */
function abortedNow (signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

/** The secure channel's protocol id. */
export const SECURE_PROTOCOL = '/starsock/noise/1.0.0'
/** What a secure dialer sends first: `SECURE_PROTOCOL` as one multistream-select message (varint length, text, newline). */
export const PREAMBLE = ((): Uint8Array => {
  const text = new TextEncoder().encode(`${SECURE_PROTOCOL}\n`)
  return Uint8Array.from([text.byteLength, ...text]) // < 128 bytes: a one-byte varint
})()
/** Plaintext bytes in one full Noise message. */
export const MAX_PLAINTEXT_BYTES = NOISE_MAX_MESSAGE_BYTES - AEAD_TAG_BYTES
/** What each Noise message adds to its plaintext: the length prefix and the tag. */
const MESSAGE_OVERHEAD_BYTES = FRAME_HEADER_BYTES + AEAD_TAG_BYTES
/** Noise messages `plaintextBytes` take (at least one: the sealed end is an empty one). */
const messagesIn = (plaintextBytes: number): number => Math.max(1, Math.ceil(plaintextBytes / MAX_PLAINTEXT_BYTES))
/** How long a handshake may take before it fails with `E_SECURE_HANDSHAKE`. @default 10_000 */
export const HANDSHAKE_TIMEOUT_MS = 10_000
/** Largest plausible handshake message 2 (e, sealed s, a payload with an RSA identity key): a first answer past it is not one. */
const MAX_MSG2_BYTES = 4096
/** Smallest message 2: e (32), sealed s (48), an empty sealed payload (16). */
const MIN_MSG2_BYTES = 32 + 48 + AEAD_TAG_BYTES
const EMPTY = new Uint8Array(0)

/** Whether a listener's first chunk starts a secure channel (else: a legacy or plaintext dialer). */
export function startsSecure (firstChunk: Uint8Array): boolean {
  if (firstChunk.byteLength < PREAMBLE.byteLength) return false
  for (let i = 0; i < PREAMBLE.byteLength; i++) if (firstChunk[i] !== PREAMBLE[i]) return false
  return true
}

/** Options of a handshake. */
export interface SecureOptions {
  /** This side's identity key. */
  privateKey: PrivateKey
  aead: Aead
  /** X25519. @default `@noble/curves` */
  dh?: Dh
  /** This peer's static key and its signed payload, made once per peer. @default a fresh one per handshake */
  staticKey?: StaticKey
  /** The peer id the other side must prove (the dialer: the peer it dialed; the listener: the one the server reported). */
  expectedPeer?: string
  /** @default HANDSHAKE_TIMEOUT_MS */
  timeoutMs?: number
  signal?: AbortSignal
  /**
   * The dialer: the server said the listener is a starsock client (the dial's ack hint). Then an
   * answer that is not a handshake message is an anomaly (`E_SECURE_HANDSHAKE`), not a legacy peer.
   */
  peerIsStarsock?: boolean
}

/** A completed handshake: the proved id and the sealed byte streams. */
export interface SecureChannel {
  /** The other side's verified peer id. */
  remotePeer: string
  /** The Noise handshake hash (the same on both sides; unique to this session). */
  handshakeHash: Uint8Array
  reader: ByteReader
  writer: ByteWriter
}

/** Code and message of `err` as a `StarsockError`. */
function asStarsock (err: unknown): StarsockError {
  if (err instanceof StarsockError) return err
  return new StarsockError('E_SECURE_HANDSHAKE', err instanceof Error ? err.message : String(err), { cause: err })
}

/** Abort both raw streams with `err`, which the other side sees with its code. */
function abortRaw (rx: ByteReader, tx: ByteWriter, err: StarsockError): void {
  const wire = wireError(err.code, err.message.slice(0, 200))
  tx.error(wire)
  rx.abort(wire, err)
}

/**
 * The dialer's side: send the preamble and run XX as the initiator over `rx`/`tx` (after the
 * server's dial ack); settles once both sides proved their identity. Rejects (and aborts both
 * streams) with `E_SECURE_HANDSHAKE`, `E_PEER_ID_MISMATCH`, `E_SECURE_REQUIRED` (the other side
 * did not answer with a handshake message: a legacy peer) or `E_ABORTED`.
 */
export async function secureOutbound (rx: ByteReader, tx: ByteWriter, options: SecureOptions & { remote: string }): Promise<SecureChannel> {
  return await runHandshake(rx, tx, undefined, options)
}

/**
 * The listener's side, once the dialer's `first` chunk started with `PREAMBLE`: run XX as the
 * responder; settles once both sides proved their identity (rejects as `secureOutbound`).
 */
export async function secureInbound (rx: ByteReader, tx: ByteWriter, first: Uint8Array, options: SecureOptions & { remote: string }): Promise<SecureChannel> {
  return await runHandshake(rx, tx, first.subarray(PREAMBLE.byteLength), options)
}

async function runHandshake (rx: ByteReader, tx: ByteWriter, first: Uint8Array | undefined, options: SecureOptions & { remote: string }): Promise<SecureChannel> {
  const initiator = first === undefined
  const timeoutMs = options.timeoutMs ?? HANDSHAKE_TIMEOUT_MS
  const deadline = AbortSignal.timeout(timeoutMs)
  const signal = options.signal !== undefined ? AbortSignal.any([deadline, options.signal]) : deadline
  // Every message, handshake or transport, is at least a tag long (message 1, the shortest handshake one, is 32).
  const decoder = new FrameDecoder(AEAD_TAG_BYTES)
  const ready: Uint8Array[] = []
  const decode = (chunk: Uint8Array): void => {
    try {
      decoder.push(chunk, ready)
    } catch (err) {
      throw new StarsockError('E_SECURE_HANDSHAKE', `malformed handshake framing from ${options.remote}: ${(err as Error).message}`, { cause: err })
    }
  }
  let preambleDue = initiator
  let answered = !initiator
  /** A wait cut by the caller's signal or the deadline says which; other failures pass. */
  const stopped = (err: unknown): unknown => {
    if (options.signal?.aborted === true) return new StarsockError('E_ABORTED', 'Secure handshake aborted by the caller', { cause: options.signal.reason })
    if (deadline.aborted) return new StarsockError('E_SECURE_HANDSHAKE', `${options.remote} did not complete the secure handshake within ${timeoutMs} ms`, { cause: err })
    return err
  }
  const io: HandshakeTransport = {
    send: async (message) => {
      const head = preambleDue ? PREAMBLE : EMPTY
      preambleDue = false
      const out = new Uint8Array(STREAM_HEADROOM_BYTES + head.byteLength + FRAME_HEADER_BYTES + message.byteLength)
      out.set(head, STREAM_HEADROOM_BYTES)
      putFrame(out, STREAM_HEADROOM_BYTES + head.byteLength, message)
      await tx.writeOwned(out, signal, STREAM_HEADROOM_BYTES).catch((err: unknown) => { throw stopped(err) })
    },
    receive: async () => {
      while (ready.length === 0) {
        let chunk: Uint8Array | null
        try {
          chunk = await rx.read(signal)
        } catch (err) {
          throw stopped(err)
        }
        if (chunk === null) throw new StarsockError('E_SECURE_HANDSHAKE', `${options.remote} ended the connection in the middle of the secure handshake`)
        if (!answered) {
          // A legacy listener answers with multistream-select or its own bytes, never a message 2.
          answered = true
          const length = chunk.byteLength >= 2 ? ((chunk[0] as number) << 8) | (chunk[1] as number) : 0
          if (length < MIN_MSG2_BYTES || length > MAX_MSG2_BYTES) {
            // Anyone on the path (the server too) can produce this answer: never a reason by itself to go plaintext.
            if (options.peerIsStarsock === true) throw new StarsockError('E_SECURE_HANDSHAKE', `${options.remote} answered the secure channel with something that is not a handshake message, though the server says it is a starsock client: the bytes were changed on the way, or that peer is broken`)
            throw new StarsockError('E_SECURE_REQUIRED', `${options.remote} did not answer the secure channel: perhaps a legacy websocket-star peer, but that is unverified (anyone on the path, the server included, can cause this). In plaintext (dial with { secure: false }, CLI --insecure, on both sides) the server could read and change everything`)
          }
        }
        decode(chunk)
      }
      return ready.shift() as Uint8Array
    }
  }
  try {
    if (first !== undefined) decode(first)
    const run = initiator ? initiateHandshake : respondHandshake
    const result = await run(io, { privateKey: options.privateKey, aead: options.aead, dh: options.dh, staticKey: options.staticKey, prologue: PREAMBLE, expectedPeer: options.expectedPeer })
    const channel = new Channel(rx, tx, result.remotePeer, result.send, result.receive, decoder, ready)
    return { remotePeer: result.remotePeer, handshakeHash: result.handshakeHash, reader: channel.reader, writer: channel.writer }
  } catch (err) {
    const failure = asStarsock(err)
    abortRaw(rx, tx, failure)
    throw failure
  }
}

/** The two sealed directions of one connection, failing together. */
class Channel {
  readonly reader: SecureReader
  readonly writer: SecureWriter
  failure: StarsockError | undefined

  constructor (
    readonly rx: ByteReader,
    readonly tx: ByteWriter,
    readonly remotePeer: string,
    send: CipherState,
    receive: CipherState,
    decoder: FrameDecoder,
    early: Uint8Array[]
  ) {
    this.reader = new SecureReader(this, receive, decoder, early)
    this.writer = new SecureWriter(this, send)
  }

  /** Fail both directions here and on the other side with `err`. */
  fail (err: StarsockError): void {
    if (this.failure !== undefined) return
    this.failure = err
    this.reader.drop()
    abortRaw(this.rx, this.tx, err)
  }
}

/** Plaintext out of sealed messages: pulls a raw chunk only when its reader asks (flow control unchanged). */
class SecureReader implements ByteReader {
  private readonly plain: Uint8Array[] = []
  private ended = false
  private held = 0
  receivedBytes = 0

  constructor (
    private readonly channel: Channel,
    private readonly state: CipherState,
    private readonly decoder: FrameDecoder,
    /** Sealed messages received and not opened yet (some may have come behind the handshake). */
    private readonly sealed: Uint8Array[]
  ) {}

  get done (): boolean {
    // The sealed end counts once what came before it was read (it is opened with them).
    return (this.ended && this.plain.length === 0) || this.channel.failure !== undefined || this.channel.rx.done
  }

  get bufferedBytes (): number {
    return this.held + this.channel.rx.bufferedBytes
  }

  async read (signal?: AbortSignal): Promise<Uint8Array | null> {
    const channel = this.channel
    for (;;) {
      if (channel.failure !== undefined) throw channel.failure
      const next = this.readReady()
      if (next !== undefined) return next
      if (this.ended) return null
      if (this.sealed.length > 0) {
        this.openAll()
        continue
      }
      let chunk: Uint8Array | null
      try {
        chunk = await channel.rx.read(signal)
      } catch (err) {
        throw channel.failure ?? err
      }
      if (chunk === null) {
        channel.fail(new StarsockError('E_SECURE_AUTH', `the stream from ${channel.remotePeer} ended without its sealed end: cut short in transit`))
        continue
      }
      try {
        this.decoder.push(chunk, this.sealed)
      } catch (err) {
        // Before any message is opened: the relay or a broken peer; both sides get a coded error.
        channel.fail(new StarsockError('E_SECURE_AUTH', `malformed framing from ${channel.remotePeer}: ${err instanceof FramingError ? err.message : String(err)}`, { cause: err }))
      }
    }
  }

  readReady (): Uint8Array | undefined {
    if (this.channel.failure !== undefined) return undefined
    const next = this.plain.shift()
    if (next !== undefined) this.held -= next.byteLength
    return next
  }

  abort (reason: string, local: StarsockError): void {
    this.drop()
    this.channel.rx.abort(reason, local)
  }

  /** Forget what was received and not read. */
  drop (): void {
    this.plain.length = 0
    this.sealed.length = 0
    this.held = 0
  }

  /**
   * Open the sealed messages received, each into a plaintext chunk of its own as the AEAD returned
   * it (no copy: the multiplexer takes a DATA frame that spans two messages in pieces). Stops at
   * the sealed end.
   */
  private openAll (): void {
    const sealed = this.sealed
    const opened: Uint8Array[] = []
    let bytes = 0
    try {
      for (const message of sealed) {
        const plain = this.state.decryptWithAd(EMPTY, message)
        if (plain.byteLength === 0) {
          this.ended = true // the sealed end: anything behind it is ignored
          break
        }
        opened.push(plain)
        bytes += plain.byteLength
      }
    } catch (err) {
      // Nothing of the batch is delivered (a failed channel drops what it held anyway).
      const failure = err instanceof StarsockError ? err : new StarsockError('E_SECURE_AUTH', `a message from ${this.channel.remotePeer} failed authentication: the connection is closed`, { cause: err })
      return this.channel.fail(failure)
    }
    sealed.length = 0
    this.plain.push(...opened)
    this.held += bytes
    this.receivedBytes += bytes
  }
}

/** Sealed messages out of plaintext: whole messages fill each raw chunk, in the order written. */
class SecureWriter implements ByteWriter {
  /** Largest plaintext sent as one raw chunk (its sealed messages fill at most the raw `chunkBytes`). */
  readonly chunkBytes: number
  private queue: Promise<void> = Promise.resolve()
  private ended = false
  private failed: StarsockError | undefined
  sentBytes = 0

  constructor (private readonly channel: Channel, private readonly state: CipherState) {
    // Widen the raw chunks by the framing of a full chunk where the server takes it, so a full
    // chunk of plaintext (the multiplexer's batch, a 512 KiB write) still goes as one message.
    const tx = channel.tx
    const raw = tx.widenChunks?.(messagesIn(tx.chunkBytes) * MESSAGE_OVERHEAD_BYTES) ?? tx.chunkBytes
    // The most plaintext whose sealed messages fit `raw`: with m = ceil(raw / full message), raw - m * overhead.
    this.chunkBytes = Math.max(1, raw - Math.ceil(raw / (NOISE_MAX_MESSAGE_BYTES + FRAME_HEADER_BYTES)) * MESSAGE_OVERHEAD_BYTES)
  }

  get done (): boolean {
    return this.channel.tx.done || this.channel.failure !== undefined
  }

  get creditBytes (): number | undefined {
    return this.channel.tx.creditBytes
  }

  async write (data: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.writeOwned(data, signal, 0)
  }

  /** Sealing copies anyway: `data` is never kept past the settle, owned or not. */
  writeOwned (data: Uint8Array, signal?: AbortSignal, reservedBytes = 0): Promise<void> {
    if (!(data instanceof Uint8Array)) return Promise.reject(new TypeError('data must be a Uint8Array'))
    if (!Number.isSafeInteger(reservedBytes) || reservedBytes < 0 || reservedBytes > data.byteLength) {
      return Promise.reject(new RangeError(`reservedBytes must be an integer from 0 to data.byteLength, got ${String(reservedBytes)}`))
    }
    return this.sealAndSend(new PartsCursor([data], reservedBytes), signal)
  }

  /**
   * `writeOwned` of bytes given as their parts, in order (the multiplexer's batch): each sealed
   * message reads its plaintext across the parts it spans, so they are never joined first.
   */
  writeParts (parts: readonly Uint8Array[], signal?: AbortSignal, reservedBytes = 0): Promise<void> {
    const bad = partsArgumentError(parts, reservedBytes)
    if (bad !== undefined) return Promise.reject(bad)
    return this.sealAndSend(new PartsCursor(parts, reservedBytes), signal)
  }

  private sealAndSend (plaintext: PartsCursor, signal?: AbortSignal): Promise<void> {
    if (this.ended) return Promise.reject(new StarsockError('E_STREAM_CLOSED', 'Write after close'))
    if (plaintext.remaining === 0) return Promise.resolve() // an empty sealed message is the end marker
    return this.enqueue(async () => await this.sendSealed(plaintext, signal))
  }

  async end (): Promise<void> {
    if (this.ended) return await this.queue
    this.ended = true
    await this.enqueue(async () => {
      await this.sendSealed(new PartsCursor([EMPTY]))
      await this.channel.tx.end()
    }).catch(() => {})
  }

  /** End at once with an error (a wire string; `Connection.abort`): pending and later writes fail. */
  error (wire: string): void {
    this.ended = true
    this.failed ??= new StarsockError('E_STREAM_ABORTED', 'Aborted here')
    this.channel.tx.error(wire)
  }

  private enqueue (job: () => Promise<void>): Promise<void> {
    const run = this.queue.then(job)
    this.queue = run.catch(() => {})
    return run
  }

  /** Seal the bytes `data` has left (none: the end marker) into raw chunks of whole messages and write them in order. */
  private async sendSealed (data: PartsCursor, signal?: AbortSignal): Promise<void> {
    const channel = this.channel
    do {
      if (channel.failure !== undefined) throw channel.failure
      if (this.failed !== undefined) throw this.failed
      // Cut before sealing: no nonce used, the connection goes on.
      if (signal?.aborted === true) throw new StarsockError('E_ABORTED', 'Aborted by the caller', { cause: signal.reason })
      const take = Math.min(data.remaining, this.chunkBytes)
      const pieces = messagesIn(take)
      // One raw chunk of whole messages, as its parts: each message's length prefix, then the
      // cipher's output (ciphertext and tag) as the cipher made it, never copied into one buffer
      // here (the stream writes the parts as one message; `writeParts`). The first prefix comes
      // after the stream's room for its header.
      const parts: Uint8Array[] = []
      try {
        for (let p = 0; p < pieces; p++) {
          const pieceBytes = Math.min(MAX_PLAINTEXT_BYTES, take - p * MAX_PLAINTEXT_BYTES)
          const prefix = new Uint8Array((p === 0 ? STREAM_HEADROOM_BYTES : 0) + FRAME_HEADER_BYTES)
          putLength(prefix, prefix.byteLength - FRAME_HEADER_BYTES, pieceBytes + AEAD_TAG_BYTES)
          parts.push(prefix)
          this.state.encryptParts(EMPTY, data.take(pieceBytes), parts)
        }
      } catch (err) {
        const failure = err instanceof StarsockError ? err : new StarsockError('E_SECURE_AUTH', `sealing failed: ${(err as Error).message}`, { cause: err })
        channel.fail(failure)
        throw failure
      }
      try {
        if (channel.tx.writeParts !== undefined) await channel.tx.writeParts(parts, signal, STREAM_HEADROOM_BYTES)
        else await channel.tx.writeOwned(joinParts(parts), signal, STREAM_HEADROOM_BYTES)
      } catch (err) {
        // The caller's signal cut a message that was sealed (its nonce taken) and not sent: the
        // next message could only fail at the other side as tampering, so close the connection
        // on both sides with the true cause.
        if (abortedNow(signal)) {
          const failure = new StarsockError('E_ABORTED', 'a write was aborted by the caller after it was sealed: the secure connection is closed', { cause: err })
          channel.fail(failure)
          throw failure
        }
        // The send stream failed (closed or aborted by the other side or the server): nothing more
        // can be sent, so no gap can ever be read; what already arrived stays readable.
        if (channel.tx.done) throw err
        const failure = err instanceof StarsockError ? err : new StarsockError('E_STREAM_ABORTED', (err as Error).message, { cause: err })
        channel.fail(failure)
        throw failure
      }
      this.sentBytes += take
    } while (data.remaining > 0)
  }
}
