/**
 * An `Endpoint` over a socket.io socket: emits, acked requests with a timeout, and the transport
 * state the relay needs for backpressure (unflushed bytes, pausing reads).
 *
 * Unflushed bytes are counted from engine.io's own events: bytes emitted since the last `flush`
 * wait in engine.io's write buffer; a `flush` hands them to the transport; the transport's
 * `drain` says everything it was handed is written to the socket. Raw frames go the same way,
 * as engine.io messages (`sendFrame`), and are counted the same.
 */
import type { Socket } from 'socket.io'
import type { Endpoint } from './session.ts'

interface EngineTransport {
  name: string
  on: (event: 'drain', fn: () => void) => void
  off: (event: 'drain', fn: () => void) => void
  socket?: { pause?: () => void, resume?: () => void, bufferedAmount?: number }
}

interface EngineSocket {
  transport: EngineTransport
  writeBuffer: Array<{ data?: unknown }>
  on: (event: 'flush' | 'upgrade', fn: (arg: unknown) => void) => void
  /** One engine.io message, queued after the socket.io packets written before it (engine.io ~6.6). */
  send: (data: Uint8Array) => void
}

/** A rejected request: `code` says whether it timed out or the client went away. */
export class RequestError extends Error {
  constructor (readonly code: 'E_DIAL_TIMEOUT' | 'E_PEER_GONE') {
    super(code === 'E_PEER_GONE' ? 'client disconnected' : 'request timed out')
  }
}

/** Bytes emitted toward a client and not yet written, from engine.io's `flush` and `drain`; `onDrain` runs on each drain. */
function trackUnflushed (conn: EngineSocket, onDrain: () => void): { added: (bytes: number) => void, bytes: () => number, transport: () => EngineTransport } {
  let sinceFlush = 0
  let inTransport = 0
  const handleDrain = (): void => {
    inTransport = 0
    onDrain()
  }
  let transport = conn.transport
  transport.on('drain', handleDrain)
  conn.on('upgrade', (next) => {
    transport.off('drain', handleDrain)
    transport = next as EngineTransport
    transport.on('drain', handleDrain)
  })
  conn.on('flush', () => {
    inTransport += sinceFlush
    sinceFlush = 0
  })
  return { added: (bytes) => { sinceFlush += bytes }, bytes: () => sinceFlush + inTransport, transport: () => transport }
}

/** Acked requests to `socket` with a timeout; `failAll` rejects those still waiting (the client went). */
function requester (socket: Socket): { request: Endpoint['request'], failAll: () => void } {
  const pending = new Set<(err: RequestError) => void>()
  return {
    request: async (event, args, timeoutMs) => await new Promise((resolve, reject) => {
      const fail = (err: RequestError): void => {
        pending.delete(fail)
        reject(err)
      }
      pending.add(fail)
      socket.timeout(timeoutMs).emit(event, ...args, (err: Error | null, ...reply: unknown[]) => {
        if (!pending.delete(fail)) return
        if (err != null) reject(new RequestError('E_DIAL_TIMEOUT'))
        else resolve(reply)
      })
    }),
    failAll: () => { for (const fail of [...pending]) fail(new RequestError('E_PEER_GONE')) }
  }
}

/** Bytes of every kind queued toward the client: in the websocket and in engine.io's write buffer. */
function backlogBytes (conn: EngineSocket, transport: EngineTransport): number {
  let bytes = transport.name === 'websocket' ? transport.socket?.bufferedAmount ?? 0 : 0
  for (const packet of conn.writeBuffer) {
    const data = packet.data
    bytes += typeof data === 'string' ? data.length : data instanceof Uint8Array ? data.byteLength : 16
  }
  return bytes
}

/** An endpoint for `socket`; `onDrain` runs whenever its transport flushed. Call `dispose` on disconnect. */
export function createSocketEndpoint (socket: Socket, onDrain: () => void, maxQueuedPackets: number): Endpoint & { dispose: () => void } {
  const conn = socket.conn as unknown as EngineSocket
  const unflushed = trackUnflushed(conn, onDrain)
  const requests = requester(socket)
  return {
    emit (event, ...args) {
      socket.emit(event, ...args)
      const chunk = args[0]
      // Counted after the emit: the binary attachment waits in the write buffer for the next flush.
      if (chunk instanceof Uint8Array) unflushed.added(chunk.byteLength)
    },
    sendFrame (frame) {
      // The same write buffer as socket.io's packets: a frame stays in order with the events.
      conn.send(frame)
      unflushed.added(frame.byteLength)
    },
    request: requests.request,
    pendingWriteBytes: unflushed.bytes,
    pauseReading () {
      const transport = unflushed.transport()
      const ws = transport.name === 'websocket' ? transport.socket : undefined
      if (ws?.pause === undefined) return false
      ws.pause()
      return true
    },
    resumeReading () {
      unflushed.transport().socket?.resume?.()
    },
    backlogBytes: () => backlogBytes(conn, unflushed.transport()),
    congested: () => conn.writeBuffer.length > maxQueuedPackets,
    disconnect () {
      socket.disconnect(true)
    },
    dispose: requests.failAll
  }
}
