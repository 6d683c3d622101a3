/**
 * Events encoded once for many socket.io clients (issue 18): what socket.io's in-memory adapter
 * does for a broadcast (socket.io-adapter ~2.5, `InMemoryAdapter.broadcast` and `_encode`), taken
 * apart so the writes can be spread over turns of the event loop. The packet is encoded once with
 * the server's encoder, and for WebSocket clients the WebSocket frame is made once too (ws's
 * `Sender.frame`, engine.io's `wsPreEncodedFrame` option, honoured by engine.io ~6.6 when the
 * connection has no per-message deflate): every client's socket is handed the same Buffer.
 * `test/peer-batch-shared.test.ts` fails if either stops holding.
 */
import { PacketType } from 'socket.io-parser'
import * as ws from 'ws'
import type { EncodedEvent, EventEncoder } from './session.ts'

/** The namespace of encoded events: starsock serves only the main one. */
export const ENCODED_NAMESPACE = '/'

/** ws's frame maker, which its type declarations do not list (socket.io-adapter uses it the same way). */
interface FrameMaker {
  frame: (data: Buffer, options: { readOnly: boolean, mask: boolean, rsv1: boolean, opcode: number, fin: boolean }) => Buffer[]
}

/** socket.io-parser's encoder, as socket.io's server holds it (`io.encoder`). */
export interface PacketEncoder {
  encode: (packet: { type: PacketType, nsp: string, data: unknown[] }) => unknown[]
}

/** WebSocket text frame opcode (RFC 6455 section 5.2). */
const TEXT_OPCODE = 1

/** A socket.io event encoded once: engine.io's message data, and the WebSocket frame holding it. */
export class SocketIoEncodedEvent implements EncodedEvent {
  readonly bytes: number
  constructor (
    readonly event: string,
    readonly args: readonly unknown[],
    /** The socket.io packet, as engine.io's message data. */
    readonly data: string,
    /** The whole WebSocket frame ("4" for an engine.io message, then `data`), header and payload. */
    readonly frame: Buffer[] | undefined
  ) {
    this.bytes = frame === undefined ? Buffer.byteLength(data) : frame.reduce((sum, b) => sum + b.byteLength, 0)
  }
}

/** The WebSocket frame of engine.io message `data`, made once (`undefined` when ws cannot make one). */
function frameOf (data: string): Buffer[] | undefined {
  // ws's ESM entry exports `Sender` by name (its default export, the WebSocket class, lacks it).
  const maker = (ws as unknown as { Sender?: Partial<FrameMaker> }).Sender
  if (typeof maker?.frame !== 'function') return undefined
  return maker.frame(Buffer.from('4' + data), { readOnly: false, mask: false, rsv1: false, opcode: TEXT_OPCODE, fin: true })
}

/**
 * An `EventEncoder` over socket.io's `encoder` (the server's own, `io.encoder`); `undefined` for an
 * event that encodes to more than one packet (binary arguments), which each client then emits.
 */
export function createEventEncoder (encoder: PacketEncoder): EventEncoder {
  return (event, args) => {
    const packets = encoder.encode({ type: PacketType.EVENT, nsp: ENCODED_NAMESPACE, data: [event, ...args] })
    const data = packets[0]
    if (packets.length !== 1 || typeof data !== 'string') return undefined
    return new SocketIoEncodedEvent(event, args, data, frameOf(data))
  }
}
