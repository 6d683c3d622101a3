/**
 * Raw data frames: stream data between starsock peers as single engine.io binary messages, beside
 * the socket.io events on the same connection.
 *
 * A frame is `u8 kind | u32 lane (big-endian) | payload`. A lane names one one-way stream on one
 * connection, in the direction of the frame; whoever reads a lane chose its number: the server
 * gives a sender its lane in the forwarded `accept.S(window, lane)`, a receiver gives the server
 * its own in `accept.S(window, lane)`. Lanes are never reused on a connection. Both sides said so
 * in `starsock:hello` (`rawFrames`); legacy peers never see a frame (the server converts).
 */

/** Bytes before the payload: kind and lane. */
export const FRAME_HEADER_BYTES = 5
/** The only kind so far: a chunk of stream data. */
export const FRAME_KIND_DATA = 0
/** Largest lane number (a u32); 0 is never a lane. */
export const MAX_LANE = 0xffff_ffff

/**
 * Name of the event a raw frame arrives as: the socket.io decoder of `raw-parser.ts` turns a
 * binary message that is not an event's attachment into `[FRAME_EVENT, bytes]`.
 */
export const FRAME_EVENT = 'starsock:frame'

/** Whether `n` is a lane number. */
export function isLane (n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n > 0 && n <= MAX_LANE
}

/** Bytes of a frame as it arrived: Node gives a `Uint8Array` (Buffer), a browser an `ArrayBuffer`. */
export function frameBytes (data: unknown): Uint8Array | undefined {
  if (data instanceof Uint8Array) return data
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  return undefined
}

/** Write the header of a `kind` frame on `lane` into the first `FRAME_HEADER_BYTES` of `frame`. */
export function writeFrameHeader (frame: Uint8Array, kind: number, lane: number): void {
  frame[0] = kind
  frame[1] = lane >>> 24
  frame[2] = (lane >>> 16) & 0xff
  frame[3] = (lane >>> 8) & 0xff
  frame[4] = lane & 0xff
}

/** The kind of a frame; `undefined` when it is shorter than a header. */
export function frameKind (frame: Uint8Array): number | undefined {
  return frame.byteLength >= FRAME_HEADER_BYTES ? frame[0] : undefined
}

/** The lane of a frame at least `FRAME_HEADER_BYTES` long. */
export function frameLane (frame: Uint8Array): number {
  return ((frame[1] as number) * 0x100_0000) + (((frame[2] as number) << 16) | ((frame[3] as number) << 8) | (frame[4] as number))
}

/** A data frame carrying a copy of `payload` on `lane`. */
export function encodeDataFrame (lane: number, payload: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength)
  writeFrameHeader(frame, FRAME_KIND_DATA, lane)
  frame.set(payload, FRAME_HEADER_BYTES)
  return frame
}
