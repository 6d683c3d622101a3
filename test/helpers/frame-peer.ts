/**
 * A socket.io-client 4 peer that speaks raw frames by hand (no starsock client library): it
 * negotiates them in hello (or not), and sends and receives frames exactly as the test crafts
 * them, so tests can send what a well-behaved client never would.
 */
import { io, type Socket } from 'socket.io-client'
import { streamEvent } from '../../shared/events.ts'
import { FRAME_EVENT, FRAME_HEADER_BYTES, FRAME_KIND_DATA, frameLane, writeFrameHeader } from '../../shared/raw-frame.ts'
import { rawFrameParser } from '../../shared/raw-parser.ts'
import { joinWithChallenge, makeIdentity, request, type RawPeer } from './raw-peer.ts'

/** Connect with starsock's parser, say hello (asking for raw frames unless `rawFrames` is false) and join. */
export async function startFramePeer (url: string, port: number, opts: { rawFrames?: boolean, transports?: string[] } = {}): Promise<RawPeer & { hello: Record<string, unknown> }> {
  const socket = io(url, { transports: opts.transports ?? ['websocket'], reconnection: false, forceNew: true, parser: rawFrameParser })
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', (err) => { socket.close(); reject(err) })
  })
  const [, hello] = await request(socket, 'starsock:hello', [{ rawFrames: opts.rawFrames ?? true }])
  const { key, id, addr } = await makeIdentity(port)
  await joinWithChallenge(socket, key, addr)
  return { socket, key, id, addr, announced: [], close: () => socket.close(), hello: hello as Record<string, unknown> }
}

/** A frame of `kind` on `lane` with `payload` (copied). */
export function craftFrame (lane: number, payload: Uint8Array, kind = FRAME_KIND_DATA): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength)
  writeFrameHeader(frame, kind, lane)
  frame.set(payload, FRAME_HEADER_BYTES)
  return frame
}

/** Send `bytes` as one engine.io binary message, as a raw frame goes. */
export function sendRaw (socket: Socket, bytes: Uint8Array): void {
  socket.io.engine.write(bytes)
}

/**
 * The sending end of a stream that sends raw frames, ignoring credit: `lane` settles with the lane
 * the server gives in its `accept` (`undefined` when it gives none).
 */
export class FrameSink {
  readonly lane: Promise<number | undefined>

  constructor (private readonly socket: Socket, streamId: string) {
    this.lane = new Promise((resolve) => socket.once(streamEvent('accept', streamId), (_window: unknown, lane: unknown) => resolve(typeof lane === 'number' ? lane : undefined)))
  }

  /** Send each chunk as a frame on the lane, then a clean end unless `end` is false; settles once written. */
  async send (streamId: string, chunks: Iterable<Uint8Array>, end = true): Promise<void> {
    const lane = await this.lane
    if (lane === undefined) throw new Error(`no lane in the accept of ${streamId}`)
    for (const chunk of chunks) sendRaw(this.socket, craftFrame(lane, chunk))
    if (end) this.socket.emit(streamEvent('error', streamId), true)
  }
}

/**
 * Receive one stream on `lane` (accepting with it): frames on that lane and `queue` events both
 * count, in order; settles at a clean end, rejects with the error string. `frames` counts frames.
 */
export function receiveFrames (socket: Socket, streamId: string, lane: number): { done: Promise<Buffer>, frames: () => number } {
  const chunks: Buffer[] = []
  let frames = 0
  const done = new Promise<Buffer>((resolve, reject) => {
    const onAny = (event: string, value: unknown): void => {
      if (event === FRAME_EVENT && value instanceof Uint8Array && frameLane(value) === lane) {
        frames++
        chunks.push(Buffer.from(value.subarray(FRAME_HEADER_BYTES)))
      } else if (event === streamEvent('queue', streamId)) {
        chunks.push(value as Buffer)
      } else if (event === streamEvent('error', streamId)) {
        socket.offAny(onAny)
        if (value === true) resolve(Buffer.concat(chunks))
        else reject(new Error(String(value)))
      }
    }
    socket.onAny(onAny)
    socket.emit(streamEvent('accept', streamId), 1024 * 1024, lane)
  })
  return { done, frames: () => frames }
}
