/**
 * The channel multiplexer's frames: what two peers write on one dialed connection to run many
 * channels over it (see docs/protocol.md, "Channel frames").
 *
 * Every frame is a 9-byte header, then `length` payload bytes:
 *
 *     type: u8 | id: u32 big-endian | length: u32 big-endian | payload
 *
 * `id` is a channel id for channel frames and a mapping id for offer frames (OFFER, OFFER_REPLY,
 * ACK, KILL); the dialing side picks odd ids, the other side even ones, so both can open at once
 * without clashing. Channel ids count up; mapping ids are random (never 0, never one in use). A frame
 * split across chunks, or several frames in one chunk, decode the same.
 */
import { StarsockError } from './errors.ts'

/** Frame types. */
export const FRAME = {
  /** First frame each way, id 0: JSON `{ protocol, version, window }`. */
  HELLO: 0,
  /** Open a channel: u16 header length, JSON header, then the optional first body. */
  OPEN: 1,
  /** Answer to OPEN: JSON `{}` or `{ bound }` (open), or `{ error: { code, message } }`. */
  REPLY: 2,
  /** Stream bytes of a reliable channel. */
  DATA: 3,
  /** One datagram of an unreliable channel: u8 ip length, ip, u16 port, then the payload. */
  DATAGRAM: 4,
  /** More send credit for a channel: u32 bytes. */
  WINDOW: 5,
  /** The sender will write no more on the channel (half-close). */
  FIN: 6,
  /** The channel is over, both ways: JSON `{ code, message }`. */
  RESET: 7,
  /** Ask for a mapping (consent): JSON `{ kind, proto, host, port, name }` (and `service`, `allowFrom`, `size` by kind). */
  OFFER: 8,
  /**
   * Answer to OFFER: JSON `{}` (granted) or `{ error: { code, message } }`. Before it, at most one
   * interim `{ asking: { timeoutMs } }` (a person is asked), only to a peer whose HELLO had
   * `interim: true`.
   */
  OFFER_REPLY: 9,
  /** A mapping is over with every channel in it: JSON `{ code, message }`. */
  KILL: 10,
  /**
   * The requester takes the grant (the Tox draft's Ack-Acc): JSON `{}`. Only to a peer whose HELLO
   * has the `ack` feature; that peer counts the mapping as granted only once it arrives, and a
   * requester that gave up answers a grant with KILL instead.
   */
  ACK: 11
} as const

/** A frame type number. */
export type FrameType = typeof FRAME[keyof typeof FRAME]

/** Bytes of a frame header. */
export const FRAME_HEADER_BYTES = 9
/** Largest payload of any frame; a bigger length is a protocol error. */
export const MAX_FRAME_PAYLOAD_BYTES = 256 * 1024
/** Largest payload a DATA frame is given by this implementation. */
export const MAX_DATA_FRAME_BYTES = 64 * 1024
/** Largest JSON payload of a control frame. */
export const MAX_CONTROL_JSON_BYTES = 16 * 1024
/** Largest datagram payload (UDP over IPv4). */
export const MAX_DATAGRAM_BYTES = 65_507

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A decoded frame. */
export interface Frame {
  type: FrameType
  id: number
  payload: Uint8Array
}

/** Address of a socket end: an IP (or host name) and a port. */
export interface SockAddress {
  ip: string
  port: number
}

/** Longest host name or address accepted. */
export const MAX_HOST_CHARS = 255
/** Letters, digits and `_.:%[]-`: names, IPv4, IPv6 (with a zone and brackets); ASCII only. */
const HOST = /^[\w.:%[\]-]+$/

/** Whether `value` is a host name or IP address without spaces or control characters. */
export function isHost (value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_HOST_CHARS && HOST.test(value)
}

function header (type: FrameType, id: number, length: number, into: Uint8Array): void {
  if (!Number.isInteger(id) || id < 0 || id > 0xffffffff) throw new RangeError(`frame id ${id} is not a u32`)
  const view = new DataView(into.buffer, into.byteOffset, FRAME_HEADER_BYTES)
  view.setUint8(0, type)
  view.setUint32(1, id)
  view.setUint32(5, length)
}

/**
 * The header of a frame whose payload is `length` bytes: sent before the payload, which stays
 * where it is (a view), so a frame costs no copy of its payload to build.
 */
export function encodeFrameHeader (type: FrameType, id: number, length: number): Uint8Array {
  if (length > MAX_FRAME_PAYLOAD_BYTES) throw new RangeError(`frame payload of ${length} bytes is over ${MAX_FRAME_PAYLOAD_BYTES}`)
  const out = new Uint8Array(FRAME_HEADER_BYTES)
  header(type, id, length, out)
  return out
}

/** One frame as bytes, in one buffer (control frames; data goes as `encodeFrameHeader` plus the payload). */
export function encodeFrame (type: FrameType, id: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (payload.byteLength > MAX_FRAME_PAYLOAD_BYTES) throw new RangeError(`frame payload of ${payload.byteLength} bytes is over ${MAX_FRAME_PAYLOAD_BYTES}`)
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength)
  header(type, id, payload.byteLength, out)
  out.set(payload, FRAME_HEADER_BYTES)
  return out
}

/** A frame whose payload is `value` as JSON. */
export function encodeJsonFrame (type: FrameType, id: number, value: unknown): Uint8Array {
  return encodeFrame(type, id, encoder.encode(JSON.stringify(value)))
}

/** An OPEN frame: the header as JSON, then the first body. */
export function encodeOpenFrame (id: number, openHeader: unknown, body?: Uint8Array): Uint8Array {
  const json = encoder.encode(JSON.stringify(openHeader))
  if (json.byteLength > MAX_CONTROL_JSON_BYTES) throw new RangeError(`open header of ${json.byteLength} bytes is over ${MAX_CONTROL_JSON_BYTES}`)
  const payload = new Uint8Array(2 + json.byteLength + (body?.byteLength ?? 0))
  new DataView(payload.buffer).setUint16(0, json.byteLength)
  payload.set(json, 2)
  if (body !== undefined) payload.set(body, 2 + json.byteLength)
  return encodeFrame(FRAME.OPEN, id, payload)
}

/** A WINDOW frame granting `bytes`. */
export function encodeWindowFrame (id: number, bytes: number): Uint8Array {
  if (!Number.isInteger(bytes) || bytes < 0 || bytes > 0xffffffff) throw new RangeError(`window credit ${bytes} is not a u32`)
  const payload = new Uint8Array(4)
  new DataView(payload.buffer).setUint32(0, bytes)
  return encodeFrame(FRAME.WINDOW, id, payload)
}

/** A DATAGRAM frame, with the address it came from or goes to when the channel has no fixed one. */
export function encodeDatagramFrame (id: number, data: Uint8Array, addr?: SockAddress): Uint8Array {
  const ip = encoder.encode(addr?.ip ?? '')
  if (ip.byteLength > 255) throw new RangeError('datagram address is longer than 255 bytes')
  const payload = new Uint8Array(3 + ip.byteLength + data.byteLength)
  payload[0] = ip.byteLength
  payload.set(ip, 1)
  new DataView(payload.buffer).setUint16(1 + ip.byteLength, addr?.port ?? 0)
  payload.set(data, 3 + ip.byteLength)
  return encodeFrame(FRAME.DATAGRAM, id, payload)
}

function protocolError (message: string): StarsockError {
  return new StarsockError('E_CHANNEL_PROTOCOL', message)
}

/** The JSON value of a control frame's payload, or a protocol error. */
export function decodeJson (frame: Frame): unknown {
  if (frame.payload.byteLength > MAX_CONTROL_JSON_BYTES) throw protocolError(`control frame of ${frame.payload.byteLength} bytes`)
  try {
    return JSON.parse(decoder.decode(frame.payload))
  } catch {
    throw protocolError(`frame type ${frame.type} does not carry JSON`)
  }
}

/** The header (unchecked JSON) and first body of an OPEN frame. */
export function decodeOpen (frame: Frame): { header: unknown, body: Uint8Array } {
  const p = frame.payload
  if (p.byteLength < 2) throw protocolError('OPEN frame without a header')
  const length = new DataView(p.buffer, p.byteOffset, p.byteLength).getUint16(0)
  if (2 + length > p.byteLength) throw protocolError('OPEN header runs past the frame')
  return { header: decodeJson({ ...frame, payload: p.subarray(2, 2 + length) }), body: p.subarray(2 + length) }
}

/** The credit of a WINDOW frame. */
export function decodeWindow (frame: Frame): number {
  if (frame.payload.byteLength !== 4) throw protocolError('WINDOW frame is not 4 bytes')
  return new DataView(frame.payload.buffer, frame.payload.byteOffset, 4).getUint32(0)
}

/** The payload and address of a DATAGRAM frame. */
export function decodeDatagram (frame: Frame): { data: Uint8Array, addr: SockAddress | undefined } {
  const p = frame.payload
  const ipLength = p[0]
  if (ipLength === undefined || p.byteLength < 3 + ipLength) throw protocolError('DATAGRAM frame too short')
  const port = new DataView(p.buffer, p.byteOffset, p.byteLength).getUint16(1 + ipLength)
  let addr: SockAddress | undefined
  if (ipLength > 0) {
    // A host is ASCII (`isHost`), so it encodes back to the same bytes: a reply to it always fits.
    const ip = decoder.decode(p.subarray(1, 1 + ipLength))
    if (!isHost(ip)) throw protocolError('DATAGRAM address is not a host name or address')
    addr = { ip, port }
  }
  return { data: p.subarray(3 + ipLength), addr }
}

const TYPES = new Set<number>(Object.values(FRAME))

/** Options of a `FrameDecoder`. */
export interface FrameDecoderOptions {
  /**
   * Hand a DATA frame's payload on in pieces, each a view into the chunk it came in, as soon as
   * its header is in: a frame split across chunks is never joined (a DATA frame carries stream
   * bytes, whose chunking means nothing). Every piece is a DATA frame of the same id, none empty
   * (but an empty frame, whole). Other frames always come whole. @default false
   */
  splitData?: boolean
}

/** Turns chunks of a byte stream back into frames. */
export class FrameDecoder {
  private chunks: Uint8Array[] = []
  private buffered = 0
  private readonly splitData: boolean
  /** Payload bytes of the DATA frame being handed on in pieces still to come (`splitData`), and its id. */
  private dataLeft = 0
  private dataId = 0

  constructor (options: FrameDecoderOptions = {}) {
    this.splitData = options.splitData === true
  }

  /**
   * Add a chunk; returns every frame now complete, and with `splitData` the pieces of DATA frames
   * it holds (throws a protocol error on a bad header).
   */
  push (chunk: Uint8Array): Frame[] {
    const frames: Frame[] = []
    if (this.dataLeft > 0) {
      // The rest of a DATA frame, or as much of it as this chunk holds: a view, nothing held.
      const n = Math.min(this.dataLeft, chunk.byteLength)
      if (n > 0) frames.push({ type: FRAME.DATA, id: this.dataId, payload: chunk.subarray(0, n) })
      this.dataLeft -= n
      chunk = chunk.subarray(n)
    }
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk)
      this.buffered += chunk.byteLength
    }
    while (this.buffered >= FRAME_HEADER_BYTES) {
      const head = this.peek(FRAME_HEADER_BYTES)
      const view = new DataView(head.buffer, head.byteOffset, FRAME_HEADER_BYTES)
      const type = view.getUint8(0)
      const length = view.getUint32(5)
      if (!TYPES.has(type)) throw protocolError(`unknown frame type ${type}`)
      if (length > MAX_FRAME_PAYLOAD_BYTES) throw protocolError(`frame of ${length} bytes is over ${MAX_FRAME_PAYLOAD_BYTES}`)
      const id = view.getUint32(1)
      if (this.buffered < FRAME_HEADER_BYTES + length) {
        if (!this.splitData || type !== FRAME.DATA) break
        // Only this chunk can hold bytes after a DATA header (an earlier one ended before the
        // header was whole, or the frame would have been split then): the payload is a view.
        this.take(FRAME_HEADER_BYTES)
        const have = this.buffered
        if (have > 0) frames.push({ type: FRAME.DATA, id, payload: this.take(have) })
        this.dataLeft = length - have
        this.dataId = id
        break
      }
      this.take(FRAME_HEADER_BYTES)
      frames.push({ type: type as FrameType, id, payload: this.take(length) })
    }
    return frames
  }

  /** Bytes held for an incomplete frame. */
  get bufferedBytes (): number {
    return this.buffered
  }

  /** The first `n` buffered bytes, without consuming them (copies only across chunks). */
  private peek (n: number): Uint8Array {
    const first = this.chunks[0] as Uint8Array
    if (first.byteLength >= n) return first.subarray(0, n)
    const out = new Uint8Array(n)
    let at = 0
    for (const c of this.chunks) {
      const part = c.subarray(0, n - at)
      out.set(part, at)
      at += part.byteLength
      if (at === n) break
    }
    return out
  }

  /** Consume `n` bytes (a view when they sit in one chunk). */
  private take (n: number): Uint8Array {
    this.buffered -= n
    const first = this.chunks[0]
    if (first !== undefined && first.byteLength >= n) {
      if (first.byteLength === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
      return first.subarray(0, n)
    }
    const out = new Uint8Array(n)
    let at = 0
    while (at < n) {
      const c = this.chunks[0] as Uint8Array
      const part = c.subarray(0, n - at)
      out.set(part, at)
      at += part.byteLength
      if (part.byteLength === c.byteLength) this.chunks.shift()
      else this.chunks[0] = c.subarray(part.byteLength)
    }
    return out
  }
}
