/**
 * The socket.io parser of starsock's server and client: socket.io-parser as is, except that a
 * binary message that is not the attachment of an event (which socket.io-parser rejects with "got
 * binary data when not reconstructing a packet" and the connection drops) becomes the event
 * `FRAME_EVENT` with the bytes, so raw frames reach the same ordered dispatch as every event.
 *
 * It relies on socket.io-parser's `Decoder.add` and on its `reconstructor` field being set while
 * an event waits for its attachments (socket.io-parser ~4.2; `test/raw-parser-internals.test.ts`
 * fails if that moves). Pass it as `parser` to socket.io's `Server` and to socket.io-client's `io`.
 */
import { Decoder, Encoder, PacketType, protocol, type Packet } from 'socket.io-parser'
import { FRAME_EVENT } from './raw-frame.ts'

/** The namespace frames are delivered on: starsock uses only the main one. */
const FRAME_NAMESPACE = '/'

/** What socket.io-parser's decoder keeps while it waits for an event's binary attachments. */
interface DecoderState {
  reconstructor?: unknown
}

/** socket.io-parser's decoder, with raw binary messages delivered as `FRAME_EVENT`. */
export class FrameDecoder extends Decoder {
  override add (obj: unknown): void {
    if ((this as unknown as DecoderState).reconstructor == null && (obj instanceof ArrayBuffer || ArrayBuffer.isView(obj))) {
      const packet: Packet = { type: PacketType.EVENT, nsp: FRAME_NAMESPACE, data: [FRAME_EVENT, obj] }
      this.emitReserved('decoded', packet)
      return
    }
    super.add(obj)
  }
}

/** The parser to pass as socket.io-client's `parser` option. */
export const rawFrameParser = { protocol, Encoder, Decoder: FrameDecoder }

/**
 * Binary attachments an event sent to the server may have: every event of starsock's and of the
 * legacy clients carries one at most. socket.io-parser holds an event's attachments until the last
 * one comes, 10 by default, so a socket that never sent its tenth held nine messages (9 MB each
 * socket, joined or not); with one, only the event's text waits for it (`SERVER_MAX_BINARY_HEADER_CHARS`).
 */
export const SERVER_MAX_ATTACHMENTS = 1

/**
 * Longest text of a binary event or ack (its JSON, with placeholders for the attachments): the
 * decoder holds it, parsed, until the attachment comes, however long that takes. Starsock's and the
 * legacy clients' are about 100 characters (a stream event's name and one placeholder).
 */
export const SERVER_MAX_BINARY_HEADER_CHARS = 4096

/** socket.io-parser's packet types of a binary event and a binary ack (as the first character of the text). */
const BINARY_TYPES = new Set([String(PacketType.BINARY_EVENT), String(PacketType.BINARY_ACK)])

/**
 * `FrameDecoder` refusing an event with more than `SERVER_MAX_ATTACHMENTS` attachments, or a binary
 * event's text over `SERVER_MAX_BINARY_HEADER_CHARS` (the connection closes).
 */
class ServerFrameDecoder extends FrameDecoder {
  constructor () {
    super({ maxAttachments: SERVER_MAX_ATTACHMENTS })
  }

  override add (obj: unknown): void {
    if (typeof obj === 'string' && obj.length > SERVER_MAX_BINARY_HEADER_CHARS && BINARY_TYPES.has(obj.charAt(0))) {
      throw new Error(`binary event of ${obj.length} characters: at most ${SERVER_MAX_BINARY_HEADER_CHARS}`)
    }
    super.add(obj)
  }
}

/** The parser to pass as socket.io's `parser` option on the server. */
export const serverFrameParser = { protocol, Encoder, Decoder: ServerFrameDecoder }
