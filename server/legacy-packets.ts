/**
 * Less work per packet to and from legacy (engine.io 3) clients.
 *
 * socket.io 4 reads the namespace of every packet such a client sends through a URL parser
 * (`Client._parseNamespace`: `new URL(nsp, ...)` and its query turned into an object), because
 * socket.io 2 clients put the connect query there. For the default namespace without a query,
 * which is what every packet of a websocket-star client names, the answer is known. Measured on
 * a legacy stream, that parse was about two thirds of the server's time decoding a 64 KiB chunk.
 *
 * Each stream chunk to a legacy client is two WebSocket messages (the event with a placeholder,
 * then the bytes), and engine.io hands each message to the TCP socket on its own: two `writev`
 * calls per chunk, more for a batch. `batchLegacyWrites` holds the TCP socket corked while
 * engine.io hands over a batch of two packets or more, so the batch leaves in one `writev`.
 *
 * engine.io 3 puts a type byte (4) before the bytes of a binary message, and engine.io copies the
 * whole chunk to do it (`Buffer.concat`). `framedLegacyBinary` hands the WebSocket frame over
 * ready-made instead: the frame head with the type byte in one small buffer, the chunk as it
 * is in the other (engine.io's own `wsPreEncodedFrame` path, which socket.io uses for broadcasts).
 *
 * This reaches into socket.io internals (`socket.client._parseNamespace`, `socket.conn.protocol`,
 * engine.io's `flush`, `drain` and `packetCreate` events, its `wsPreEncodedFrame` packet option,
 * the `ws` socket's `_socket` and `_sender.sendFrame`; socket.io 4.8, engine.io 6.6, ws 8):
 * test/legacy-client.test.ts fails if they move.
 */
import type { Server, Socket } from 'socket.io'

/** What `Client._parseNamespace` answers: the namespace and the connect payload. */
interface ParsedNamespace { namespace: string, authPayload: Record<string, unknown> }

/** socket.io's `Client`, as much of it as this touches. */
interface LegacyClient {
  _parseNamespace?: (packet: { nsp: string }) => ParsedNamespace
}

/** `nsp` of a packet to the default namespace without a query. */
const DEFAULT_NAMESPACE = '/'

/**
 * Give `socket`'s client the quick answer for the default namespace when it speaks engine.io 3;
 * `false` when it does not, or socket.io's internals are not where this expects them.
 */
export function quickLegacyNamespace (socket: Socket): boolean {
  const client = socket.client as unknown as LegacyClient
  const slow = client._parseNamespace
  if ((socket.conn as unknown as { protocol?: number }).protocol !== 3 || typeof slow !== 'function') return false
  // The same answer `new URL('/', base)` gives: path '/', no query (an object without a prototype).
  client._parseNamespace = (packet) => packet.nsp === DEFAULT_NAMESPACE
    ? { namespace: DEFAULT_NAMESPACE, authPayload: Object.create(null) as Record<string, unknown> }
    : slow.call(client, packet)
  return true
}

/** engine.io's socket, as much of it as `batchLegacyWrites` touches. */
interface EngineConn {
  protocol?: number
  transport?: { name?: string, socket?: { _socket?: CorkableSocket } }
  on: (event: 'flush' | 'drain', fn: (writeBuffer?: unknown[]) => void) => void
}

/** The TCP socket under a WebSocket. */
interface CorkableSocket { cork: () => void, uncork: () => void }

/**
 * Cork the TCP socket of an engine.io 3 `socket` while engine.io hands a batch of packets to its
 * WebSocket (between its `flush` and `drain` events, one synchronous call), and uncork it right
 * after, or on the next tick at the latest; `false` when it does not speak engine.io 3 over a
 * WebSocket whose TCP socket can be reached.
 */
export function batchLegacyWrites (socket: Socket): boolean {
  const conn = socket.conn as unknown as EngineConn
  if (conn.protocol !== 3) return false
  let corked: CorkableSocket | undefined
  const release = (): void => {
    const held = corked
    corked = undefined
    held?.uncork()
  }
  const tcpOf = (): CorkableSocket | undefined => {
    const tcp = conn.transport?.name === 'websocket' ? conn.transport.socket?._socket : undefined
    return typeof tcp?.cork === 'function' && typeof tcp.uncork === 'function' ? tcp : undefined
  }
  if (tcpOf() === undefined) return false
  conn.on('flush', (writeBuffer) => {
    // One packet is one write already (a binary one's two buffers ws corks itself); corking it
    // would only make the socket copy its buffered write list on the way out.
    if (corked !== undefined || (writeBuffer?.length ?? 0) < 2) return
    corked = tcpOf()
    if (corked === undefined) return
    corked.cork()
    process.nextTick(release) // should the batch throw before engine.io's drain
  })
  conn.on('drain', release)
  return true
}

/** The engine.io 3 type byte of a message packet. */
const EIO3_MESSAGE = 4
/** WebSocket opcode of a binary frame, with FIN set (RFC 6455 section 5.2). */
const BINARY_FIN = 0x82

/** The head of an unmasked binary WebSocket frame of `payloadBytes`, followed by the engine.io 3 type byte. */
export function legacyBinaryHead (payloadBytes: number): Buffer {
  const size = payloadBytes + 1 // the type byte is part of the payload
  const ext = size >= 65536 ? 8 : size > 125 ? 2 : 0
  const head = Buffer.allocUnsafe(2 + ext + 1)
  head[0] = BINARY_FIN
  if (ext === 8) {
    head[1] = 127
    head.writeUInt32BE(Math.floor(size / 2 ** 32), 2)
    head.writeUInt32BE(size >>> 0, 6)
  } else if (ext === 2) {
    head[1] = 126
    head.writeUInt16BE(size, 2)
  } else {
    head[1] = size
  }
  head[2 + ext] = EIO3_MESSAGE
  return head
}

/** A packet as engine.io creates it. */
interface EnginePacket { type: string, data?: unknown, options?: Record<string, unknown> }

/**
 * Have engine.io send the binary messages of an engine.io 3 `socket` as ready-made frames (see the
 * module comment); `false` when it does not speak engine.io 3 over a WebSocket engine.io can hand
 * frames to.
 */
export function framedLegacyBinary (socket: Socket): boolean {
  const conn = socket.conn as unknown as EngineConn & { on: (event: 'packetCreate', fn: (packet: EnginePacket) => void) => void }
  const transport = conn.transport as { name?: string, perMessageDeflate?: unknown, supportsBinary?: boolean, socket?: { _sender?: { sendFrame?: unknown } } } | undefined
  // Compressed messages leave ws later than they are sent: a ready-made frame could overtake one.
  // A client that asked for base64 (`b64=1`) gets engine.io's text encoding, not binary frames.
  if (conn.protocol !== 3 || transport?.name !== 'websocket' || Boolean(transport.perMessageDeflate) || transport.supportsBinary === false || typeof transport.socket?._sender?.sendFrame !== 'function') return false
  conn.on('packetCreate', (packet) => {
    const data = packet.data
    if (packet.type !== 'message' || !(data instanceof Uint8Array) || data.byteLength === 0) return
    // A new options object: socket.io hands the same one to every packet of an event.
    packet.options = { ...packet.options, wsPreEncodedFrame: [legacyBinaryHead(data.byteLength), data] }
  })
  return true
}

/** Apply `quickLegacyNamespace`, `batchLegacyWrites` and `framedLegacyBinary` to every engine.io 3 socket `io` accepts (after its connect packet). */
export function tuneLegacySockets (io: Server): void {
  io.on('connection', (socket) => {
    if (!quickLegacyNamespace(socket)) return
    batchLegacyWrites(socket)
    framedLegacyBinary(socket)
  })
}
