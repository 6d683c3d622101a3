/**
 * A secure channel over a connection between two starsock peers: the Noise XX handshake
 * (`handshake.ts`), then every byte sealed in Noise transport messages (`frame.ts`). It sits
 * between the `Connection` and the multiplexer: the multiplexer, its channels and their credit
 * windows run inside unchanged, and `remotePeer` is the id the other side proved.
 *
 * The dialer opens with a preamble (`PREAMBLE`, in multistream-select's message shape) so a
 * listener can tell a secure starsock dialer from a legacy one; both mix it in as the Noise
 * prologue, so a relay that rewrites it fails the handshake.
 *
 * A clean end is authenticated: `closeWrite` sends an empty sealed message before the stream's
 * end, and an end that comes without it (a relay cutting the stream short) fails the reader with
 * `E_SECURE_AUTH`, never a clean end. Any message that fails authentication aborts the connection
 * on both sides; nothing after it is delivered.
 */
import type { PrivateKey } from '@libp2p/interface'
import type { Connection } from '../connection.ts'
import { AEAD_TAG_BYTES, type Aead } from './aead.ts'
import { SecureChannelError } from './errors.ts'
import { FRAME_HEADER_BYTES, FrameDecoder, NOISE_MAX_MESSAGE_BYTES, putFrame } from './frame.ts'
import { initiateHandshake, respondHandshake, type CipherState, type HandshakeTransport } from './handshake.ts'

/** The secure channel's protocol id. */
export const SECURE_PROTOCOL = '/starsock/noise/1.0.0'
/** What a secure dialer sends first: `SECURE_PROTOCOL` as one multistream-select message (varint length, text, newline). */
export const PREAMBLE = ((): Uint8Array => {
  const text = new TextEncoder().encode(`${SECURE_PROTOCOL}\n`)
  return Uint8Array.from([text.byteLength, ...text]) // < 128 bytes: a one-byte varint
})()
/** Plaintext bytes in one full Noise message. */
export const MAX_PLAINTEXT_BYTES = NOISE_MAX_MESSAGE_BYTES - AEAD_TAG_BYTES
/** How long a handshake may take before it fails with `E_SECURE_HANDSHAKE`. @default 10_000 */
export const HANDSHAKE_TIMEOUT_MS = 10_000

/** What the secure channel needs of the connection under it. */
export type RawConnection = Pick<Connection, 'read' | 'writeOwned' | 'closeWrite' | 'close' | 'abort' | 'chunkBytes' | 'initiator' | 'remoteAddr' | 'remotePeer'>

/** Options of `secureConnection`. */
export interface SecureOptions {
  /** This side's identity key. */
  privateKey: PrivateKey
  aead: Aead
  /** The peer id the other side must prove (the dialer: the peer dialed). @default the id in the address, for the dialer; none for the listener */
  expectedPeer?: string
  /** @default HANDSHAKE_TIMEOUT_MS */
  timeoutMs?: number
  signal?: AbortSignal
}

/** Whether a listener's first chunk starts a secure channel (else: a legacy or `--insecure` dialer, plaintext). */
export function startsSecure (firstChunk: Uint8Array): boolean {
  if (firstChunk.byteLength < PREAMBLE.byteLength) return false
  for (let i = 0; i < PREAMBLE.byteLength; i++) if (firstChunk[i] !== PREAMBLE[i]) return false
  return true
}

/**
 * Run the handshake over `raw` (as the dialer when `raw.initiator`); settles with the secure
 * connection once both sides proved their identity, rejects with `E_SECURE_HANDSHAKE`,
 * `E_PEER_ID_MISMATCH` or `E_SECURE_REQUIRED` (and aborts `raw`).
 * @example
 * const conn = await secureConnection(await peer.dial(id), { privateKey: peer.identity.privateKey, aead: nodeAead })
 * conn.remotePeer // the id the other side proved
 */
export async function secureConnection (raw: RawConnection, options: SecureOptions): Promise<SecureConnection> {
  const decoder = new FrameDecoder()
  const ready: Uint8Array[] = []
  const signals = [AbortSignal.timeout(options.timeoutMs ?? HANDSHAKE_TIMEOUT_MS), ...(options.signal !== undefined ? [options.signal] : [])]
  const signal = AbortSignal.any(signals)
  let preambleDue = raw.initiator
  let preambleSeen = raw.initiator
  const io: HandshakeTransport = {
    send: async (message) => {
      const head = preambleDue ? PREAMBLE : new Uint8Array(0)
      preambleDue = false
      const out = new Uint8Array(head.byteLength + FRAME_HEADER_BYTES + message.byteLength)
      out.set(head, 0)
      putFrame(out, head.byteLength, message)
      await raw.writeOwned(out, { signal })
    },
    receive: async () => {
      while (ready.length === 0) {
        let chunk: Uint8Array | null
        try {
          chunk = await raw.read({ signal })
        } catch (err) {
          if (signal.aborted) throw new SecureChannelError('E_SECURE_HANDSHAKE', `no handshake message within ${options.timeoutMs ?? HANDSHAKE_TIMEOUT_MS} ms (or aborted)`, { cause: err })
          throw err
        }
        if (chunk === null) throw new SecureChannelError('E_SECURE_HANDSHAKE', 'the connection ended in the middle of the handshake')
        if (!preambleSeen) {
          if (!startsSecure(chunk)) throw new SecureChannelError('E_SECURE_REQUIRED', `${raw.remotePeer} did not start a secure channel (a legacy or --insecure peer)`)
          preambleSeen = true
          chunk = chunk.subarray(PREAMBLE.byteLength)
        }
        ready.push(...decoder.push(chunk))
      }
      return ready.shift() as Uint8Array
    }
  }
  const expectedPeer = options.expectedPeer ?? (raw.initiator ? raw.remotePeer : undefined)
  try {
    const run = raw.initiator ? initiateHandshake : respondHandshake
    const result = await run(io, { privateKey: options.privateKey, aead: options.aead, prologue: PREAMBLE, expectedPeer })
    // Transport messages may have come behind the last handshake message: they are the channel's.
    return new SecureConnection(raw, result.remotePeer, result.send, result.receive, result.handshakeHash, decoder, ready)
  } catch (err) {
    raw.abort(err instanceof Error ? `secure channel: ${err.message}` : 'secure channel failed')
    throw err
  }
}

/** A connection whose bytes are sealed end to end; the shape of `Connection` the multiplexer uses. */
export class SecureConnection implements AsyncIterable<Uint8Array> {
  /** Always true: a `Connection` from a legacy or `--insecure` peer says `false`. */
  readonly secure = true
  /** Largest plaintext written as one stream chunk (whole Noise messages fill the chunk). */
  readonly chunkBytes: number
  private readonly plain: Uint8Array[] = []
  private failure: Error | undefined
  private ended = false
  private writeEnded = false
  private queue: Promise<void> = Promise.resolve()

  constructor (
    private readonly raw: RawConnection,
    /** The other side's verified peer id. */
    readonly remotePeer: string,
    private readonly sendState: CipherState,
    private readonly receiveState: CipherState,
    /** The Noise handshake hash (the same on both sides; channel binding). */
    readonly handshakeHash: Uint8Array,
    private readonly decoder: FrameDecoder,
    private readonly early: Uint8Array[]
  ) {
    const full = NOISE_MAX_MESSAGE_BYTES + FRAME_HEADER_BYTES
    const messages = Math.max(1, Math.ceil(raw.chunkBytes / full))
    this.chunkBytes = Math.max(1, raw.chunkBytes - messages * (FRAME_HEADER_BYTES + AEAD_TAG_BYTES))
  }

  /** Whether this side dialed. */
  get initiator (): boolean { return this.raw.initiator }
  /** The other peer's websocket-star address (as the server reported it; `remotePeer` is what counts). */
  get remoteAddr (): string { return this.raw.remoteAddr }

  /** Seal and send `data`; settles once handed to the stream within the other side's window. */
  async write (data: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!(data instanceof Uint8Array)) throw new TypeError('data must be a Uint8Array')
    if (this.writeEnded) throw new SecureChannelError('E_SECURE_REQUIRED', 'write after closeWrite') // TODO(#14): E_STREAM_CLOSED once in shared/errors.ts
    if (data.byteLength === 0) return // an empty sealed message is the end marker
    const run = this.queue.then(async () => await this.sendSealed(data, options.signal))
    this.queue = run.catch(() => {})
    await run
  }

  /** `write`: sealing copies anyway, so the caller's buffer is never kept. */
  async writeOwned (data: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.write(data, options)
  }

  /** The next plaintext chunk, `null` after an authenticated end; rejects on a forged, cut or failed stream. */
  async read (options: { signal?: AbortSignal } = {}): Promise<Uint8Array | null> {
    for (;;) {
      if (this.failure !== undefined) throw this.failure
      const next = this.plain.shift()
      if (next !== undefined) return next
      if (this.ended) return null
      const sealed = this.early.shift()
      if (sealed !== undefined) { this.openOne(sealed); continue }
      const chunk = await this.raw.read(options).catch((err: unknown) => { throw this.failure ?? err })
      if (chunk === null) {
        if (!this.ended) this.fail(new SecureChannelError('E_SECURE_AUTH', `the stream from ${this.remotePeer} ended without its sealed end: cut short in transit`))
        continue
      }
      this.early.push(...this.decoder.push(chunk))
      if (this.decoder.bufferedBytes > NOISE_MAX_MESSAGE_BYTES + FRAME_HEADER_BYTES) this.fail(new SecureChannelError('E_SECURE_AUTH', 'malformed framing'))
    }
  }

  /** Every plaintext chunk until the authenticated end. */
  async * [Symbol.asyncIterator] (): AsyncIterator<Uint8Array> {
    for (;;) {
      const chunk = await this.read()
      if (chunk === null) return
      yield chunk
    }
  }

  /** Half-close: a sealed end, then the stream's end; settles once both are sent. */
  async closeWrite (): Promise<void> {
    if (this.writeEnded) return await this.queue
    this.writeEnded = true
    const run = this.queue.then(async () => await this.sendSealed(new Uint8Array(0)))
    this.queue = run.catch(() => {})
    await run
    await this.raw.closeWrite()
  }

  /** Close both ways. */
  async close (): Promise<void> {
    await this.closeWrite().catch(() => {})
    await this.raw.close()
  }

  /** Abort both ways; the other side's reads and writes fail with the message. */
  abort (err?: unknown): void {
    this.fail(err instanceof Error ? err : new SecureChannelError('E_SECURE_AUTH', typeof err === 'string' ? err : 'Aborted'))
  }

  private fail (err: Error): void {
    if (this.failure !== undefined) return
    this.failure = err
    this.plain.length = 0
    this.early.length = 0
    this.raw.abort(err.message)
  }

  private openOne (sealed: Uint8Array): void {
    let plain: Uint8Array
    try {
      plain = this.receiveState.decryptWithAd(new Uint8Array(0), sealed)
    } catch (err) {
      return this.fail(new SecureChannelError('E_SECURE_AUTH', `a message from ${this.remotePeer} failed authentication: the connection is closed`, { cause: err }))
    }
    if (plain.byteLength === 0) {
      this.ended = true // the sealed end: what follows it is ignored
      this.early.length = 0
      return
    }
    this.plain.push(plain)
  }

  /** Seal `data` into batches of whole messages, one stream chunk each, and write them in order. */
  private async sendSealed (data: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.failure !== undefined) throw this.failure
    let offset = 0
    do {
      const take = Math.min(data.byteLength - offset, this.chunkBytes)
      const pieces = Math.max(1, Math.ceil(take / MAX_PLAINTEXT_BYTES))
      const out = new Uint8Array(take + pieces * (FRAME_HEADER_BYTES + AEAD_TAG_BYTES))
      let at = 0
      for (let p = 0; p < pieces; p++) {
        const start = offset + p * MAX_PLAINTEXT_BYTES
        const piece = data.subarray(start, Math.min(start + MAX_PLAINTEXT_BYTES, offset + take))
        at = putFrame(out, at, this.sendState.encryptWithAd(new Uint8Array(0), piece))
      }
      offset += take
      await this.raw.writeOwned(out, { signal })
    } while (offset < data.byteLength)
  }
}
