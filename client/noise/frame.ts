/**
 * Noise transport framing over our stream chunks: each Noise message is a 2-byte big-endian
 * length and that many bytes (at most 65,535, the Noise limit), as libp2p frames Noise. A
 * starsock sender never cuts a message across stream chunks (the server keeps chunk boundaries),
 * so the reader decodes views without copies; it still joins pieces if a relay re-chunked them.
 */

/** Largest Noise message, tag included (Noise spec 3). */
export const NOISE_MAX_MESSAGE_BYTES = 65_535
/** Length prefix bytes. */
export const FRAME_HEADER_BYTES = 2

/** Messages out of a stream of chunks; holds at most one partial message plus one chunk. */
export class FrameDecoder {
  private rest: Uint8Array = new Uint8Array(0)

  /** Bytes held that do not make a whole message yet. */
  get bufferedBytes (): number {
    return this.rest.byteLength
  }

  /** Add a chunk; returns the whole messages it completes (views into the chunk where possible). */
  push (chunk: Uint8Array): Uint8Array[] {
    let buf = chunk
    if (this.rest.byteLength > 0) {
      buf = new Uint8Array(this.rest.byteLength + chunk.byteLength)
      buf.set(this.rest, 0)
      buf.set(chunk, this.rest.byteLength)
    }
    const out: Uint8Array[] = []
    let at = 0
    while (buf.byteLength - at >= FRAME_HEADER_BYTES) {
      const len = ((buf[at] as number) << 8) | (buf[at + 1] as number)
      if (buf.byteLength - at - FRAME_HEADER_BYTES < len) break
      out.push(buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + len))
      at += FRAME_HEADER_BYTES + len
    }
    this.rest = buf.subarray(at)
    return out
  }
}

/** Write `message` with its length prefix into `out` at `at`; returns the offset after it. */
export function putFrame (out: Uint8Array, at: number, message: Uint8Array): number {
  if (message.byteLength > NOISE_MAX_MESSAGE_BYTES) throw new RangeError(`Noise message of ${message.byteLength} bytes is over ${NOISE_MAX_MESSAGE_BYTES}`)
  out[at] = message.byteLength >>> 8
  out[at + 1] = message.byteLength & 0xff
  out.set(message, at + FRAME_HEADER_BYTES)
  return at + FRAME_HEADER_BYTES + message.byteLength
}
