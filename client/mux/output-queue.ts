/**
 * The frames a multiplexer has yet to write, each kept as its header and its payload (a view,
 * not a copy), taken out as messages of whole frames.
 *
 * A message is what the connection carries as one stream message, so it never ends inside a
 * frame (the other side decodes every frame from one message, as views, without joining pieces)
 * and never exceeds the limit it is taken with (the stream's chunk size). The multiplexer takes a
 * message as its parts (`takeParts`): large payloads are never copied on their way out, only the
 * headers and small frames between them are joined. `take` joins a whole message into one buffer.
 */

import { joinParts } from '../parts.ts'

/** Payloads under this many bytes are joined with the headers around them in `takeParts`, rather than be parts of their own. */
export const SMALL_PART_BYTES = 4096

interface QueuedFrame {
  head: Uint8Array
  payload: Uint8Array | undefined
  bytes: number
}

/** Frames waiting to be written, in order. */
export class OutputQueue {
  private readonly frames: QueuedFrame[] = []
  private bytes = 0

  /** Frames waiting. */
  get length (): number {
    return this.frames.length
  }

  /** Bytes waiting. */
  get byteLength (): number {
    return this.bytes
  }

  /**
   * Queue a frame: `head` is its header (or a whole small frame), `payload` the bytes that follow
   * it. Both are kept as they are, so the caller must not change them afterwards.
   */
  push (head: Uint8Array, payload?: Uint8Array): void {
    const bytes = head.byteLength + (payload?.byteLength ?? 0)
    this.frames.push({ head, payload: payload !== undefined && payload.byteLength > 0 ? payload : undefined, bytes })
    this.bytes += bytes
  }

  /**
   * The next message: as many whole frames as fit in `limitBytes`, joined into a new buffer the
   * caller owns; a first frame over the limit goes alone (the stream then splits it). Empty when
   * nothing waits.
   *
   * With `headroomBytes`, the buffer starts with that many bytes left free (zero) for the caller to
   * put a header of its own in front of the frames without another copy: the frames are
   * `buffer.subarray(headroomBytes)`, and `limitBytes` counts the frames only. A lone control
   * frame then goes into a new buffer too.
   */
  take (limitBytes: number, headroomBytes = 0): Uint8Array {
    const taken = this.splice(limitBytes)
    const only = taken[0]
    if (taken.length === 1 && only !== undefined && only.payload === undefined && headroomBytes === 0) return only.head
    // One allocation per message, Buffer-free (client/ bundles for the browser): the frames'
    // headers and payloads are written straight into it.
    const out = new Uint8Array(headroomBytes + sizeOf(taken))
    let at = headroomBytes
    for (const frame of taken) {
      out.set(frame.head, at)
      at += frame.head.byteLength
      if (frame.payload !== undefined) {
        out.set(frame.payload, at)
        at += frame.payload.byteLength
      }
    }
    return out
  }

  /**
   * `take` without the copy of large payloads: the same message as its parts, in order, for a
   * transport that writes a list of buffers as one message (`writev`). A payload of at least
   * `SMALL_PART_BYTES` is a part of its own, the very buffer queued; the bytes between two such
   * payloads (headers, small frames) are joined into one new part, so a batch of many small frames
   * (datagrams, short writes) is a few parts, not thousands. The first part is always new:
   * `headroomBytes` free (zero) bytes, then the first frame's header. Empty when nothing waits.
   */
  takeParts (limitBytes: number, headroomBytes = 0): Uint8Array[] {
    const taken = this.splice(limitBytes)
    if (taken.length === 0) return []
    const parts: Uint8Array[] = []
    let run: Uint8Array[] = [new Uint8Array(headroomBytes)]
    let runBytes = headroomBytes
    const endRun = (): void => {
      parts.push(run.length === 1 && parts.length > 0 ? run[0] as Uint8Array : joinParts(run, runBytes))
      run = []
      runBytes = 0
    }
    for (const frame of taken) {
      run.push(frame.head)
      runBytes += frame.head.byteLength
      const payload = frame.payload
      if (payload === undefined) continue
      if (payload.byteLength < SMALL_PART_BYTES) {
        run.push(payload)
        runBytes += payload.byteLength
        continue
      }
      endRun()
      parts.push(payload)
    }
    if (run.length > 0) endRun()
    return parts
  }

  /** Take out the frames of the next message (see `take`). */
  private splice (limitBytes: number): QueuedFrame[] {
    let size = 0
    let count = 0
    for (const frame of this.frames) {
      if (count > 0 && size + frame.bytes > limitBytes) break
      size += frame.bytes
      count++
    }
    this.bytes -= size
    return this.frames.splice(0, count)
  }
}

function sizeOf (frames: QueuedFrame[]): number {
  let size = 0
  for (const frame of frames) size += frame.bytes
  return size
}

