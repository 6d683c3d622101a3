/**
 * Noise transport framing over our stream chunks: each Noise message is a 2-byte big-endian
 * length and that many bytes (at most 65,535, the Noise limit), as libp2p frames Noise. A
 * starsock sender never cuts a message across stream chunks (the server keeps chunk boundaries),
 * so the reader decodes views without copies; it still joins pieces if a relay re-chunked them
 * (once per message, when its length is complete: linear in the bytes, whatever the chunking).
 *
 * Bounds, enforced before any message is opened (all of this runs before authentication):
 * - a message shorter than `minMessageBytes` fails at once (a Noise transport message is at
 *   least its 16-byte tag; a zero-length frame is never one), so a chunk of n bytes holds at most
 *   n / (2 + minMessageBytes) messages;
 * - a chunk that completes more than `maxMessagesPerChunk(chunk)` messages fails: our writer
 *   puts ceil(chunk / 65,537) messages in a raw chunk (whole messages, the last one short), so
 *   more than that plus `COALESCE_ALLOWANCE` (a relay that joins a few small chunks) is not ours;
 * - what is held between chunks is at most one partial message: 2 + 65,535 bytes by the format.
 */

/** Largest Noise message, tag included (Noise spec 3). */
export const NOISE_MAX_MESSAGE_BYTES = 65_535
/** Length prefix bytes. */
export const FRAME_HEADER_BYTES = 2
/** Messages a chunk may complete beyond what our writer would put in it: room for a relay that coalesces small chunks. */
export const COALESCE_ALLOWANCE = 64

/** The most messages a chunk of `chunkBytes` may complete: our writer's count plus `COALESCE_ALLOWANCE`. */
export function maxMessagesPerChunk (chunkBytes: number): number {
  return Math.ceil(chunkBytes / (NOISE_MAX_MESSAGE_BYTES + FRAME_HEADER_BYTES)) + COALESCE_ALLOWANCE
}

/** Malformed framing (a message under the minimum, too many messages in a chunk); the caller fails the channel with its code. */
export class FramingError extends Error {}

/** Messages out of a stream of chunks; holds at most one partial message. */
export class FrameDecoder {
  /** Pieces of the partial message, joined once it is complete. */
  private pieces: Uint8Array[] = []
  private held = 0
  /** Whole length (header included) of the partial message, once its header is in; 0 before. */
  private need = 0

  /** @param minMessageBytes the shortest message accepted (length prefix excluded) */
  constructor (public minMessageBytes = 0) {}

  /** Bytes held that do not make a whole message yet (at most 2 + 65,535). */
  get bufferedBytes (): number {
    return this.held
  }

  /**
   * Add a chunk; appends the whole messages it completes to `out` (views into the chunk where
   * possible) and returns how many. Throws `FramingError` on a message under the minimum or too
   * many messages in one chunk; the decoder is then unusable.
   */
  push (chunk: Uint8Array, out: Uint8Array[]): number {
    const limit = maxMessagesPerChunk(chunk.byteLength)
    let count = 0
    let at = 0
    if (this.held > 0) {
      if (this.need === 0) {
        // One byte of the header so far (the only partial state without a length).
        if (chunk.byteLength === 0) return 0
        const len = (((this.pieces[0] as Uint8Array)[0] as number) << 8) | (chunk[0] as number)
        this.need = FRAME_HEADER_BYTES + this.check(len)
      }
      const missing = this.need - this.held
      if (chunk.byteLength < missing) {
        this.pieces.push(chunk)
        this.held += chunk.byteLength
        return 0
      }
      const whole = new Uint8Array(this.need)
      let w = 0
      for (const p of this.pieces) { whole.set(p, w); w += p.byteLength }
      whole.set(chunk.subarray(0, missing), w)
      out.push(whole.subarray(FRAME_HEADER_BYTES))
      count++
      at = missing
      this.pieces = []
      this.held = 0
      this.need = 0
    }
    while (chunk.byteLength - at >= FRAME_HEADER_BYTES) {
      const len = this.check(((chunk[at] as number) << 8) | (chunk[at + 1] as number))
      if (chunk.byteLength - at - FRAME_HEADER_BYTES < len) {
        this.need = FRAME_HEADER_BYTES + len
        break
      }
      if (++count > limit) throw new FramingError(`more than ${limit} messages in a chunk of ${chunk.byteLength} bytes`)
      out.push(chunk.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + len))
      at += FRAME_HEADER_BYTES + len
    }
    if (at < chunk.byteLength) {
      this.pieces.push(chunk.subarray(at))
      this.held = chunk.byteLength - at
    }
    return count
  }

  private check (len: number): number {
    if (len < this.minMessageBytes) throw new FramingError(`a message of ${len} bytes, under the minimum of ${this.minMessageBytes}`)
    return len
  }
}

/** Write the length prefix of a message of `messageBytes` into `out` at `at`. */
export function putLength (out: Uint8Array, at: number, messageBytes: number): void {
  if (messageBytes > NOISE_MAX_MESSAGE_BYTES) throw new RangeError(`Noise message of ${messageBytes} bytes is over ${NOISE_MAX_MESSAGE_BYTES}`)
  out[at] = messageBytes >>> 8
  out[at + 1] = messageBytes & 0xff
}

/** Write `message` with its length prefix into `out` at `at`; returns the offset after it. */
export function putFrame (out: Uint8Array, at: number, message: Uint8Array): number {
  putLength(out, at, message.byteLength)
  out.set(message, at + FRAME_HEADER_BYTES)
  return at + FRAME_HEADER_BYTES + message.byteLength
}
