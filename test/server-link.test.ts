import { createServer as createHttpServer, type Server as HttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Server, type ServerOptions, type Socket as ServerSocket } from 'socket.io'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { wireError, type StarsockError } from '../shared/errors.ts'
import { EVENTS } from '../shared/events.ts'
import { silentLogger } from '../shared/logger.ts'
import { FRAME_EVENT } from '../shared/raw-frame.ts'
import { serverFrameParser } from '../shared/raw-parser.ts'
import { engineHolds, ServerLink, TRANSPORT_HIGH_WATER_BYTES, type ServerLinkOptions } from '../client/server-link.ts'
import { ZeroMaskWebSocket } from '../client/ws-mask.ts'
import { within } from './helpers/server.ts'

const stops: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop()
})

/** A bare socket.io server on 127.0.0.1 port 0 whose sockets `onSocket` scripts. */
async function bareServer (onSocket: (socket: ServerSocket) => void = () => {}, options: Partial<ServerOptions> = {}): Promise<{ io: Server, url: string, sockets: ServerSocket[] }> {
  const http: HttpServer = createHttpServer()
  const io = new Server(http, options)
  const sockets: ServerSocket[] = []
  io.on('connection', (socket) => { sockets.push(socket); onSocket(socket) })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  stops.push(async () => { await new Promise((resolve) => { void io.close(resolve) }) })
  return { io, sockets, url: `http://127.0.0.1:${(http.address() as AddressInfo).port}` }
}

function link (url: string, options: Partial<ServerLinkOptions> = {}): ServerLink {
  const l = new ServerLink({
    url,
    transports: ['websocket'],
    token: undefined,
    socketOptions: undefined,
    requestTimeoutMs: 2000,
    heartbeatIntervalMs: 5000,
    heartbeatTimeoutMs: 5000,
    reconnectDelayMs: 50,
    reconnectDelayMaxMs: 100,
    logger: silentLogger,
    ...options
  })
  stops.push(() => l.close())
  return l
}

async function connected (l: ServerLink): Promise<void> {
  const up = new Promise<void>((resolve) => { const off = l.on('connect', () => { off(); resolve() }) })
  l.connect()
  await within('the link to connect', up)
}

describe('ServerLink', () => {
  it('requests: a reply, a refusal before connecting, a timeout and an abort', async () => {
    const s = await bareServer((socket) => {
      socket.on('echo', (a: unknown, ack: (...r: unknown[]) => void) => ack(null, a))
      socket.on('silent', () => {})
    })
    const l = link(s.url, { requestTimeoutMs: 100 })
    await expect(l.request('echo', [1])).rejects.toMatchObject({ code: 'E_DISCONNECTED', message: `Not connected to ${s.url}` })
    await connected(l)
    expect(await l.request('echo', [{ a: 1 }])).toEqual([null, { a: 1 }])
    await expect(l.request('silent', [])).rejects.toMatchObject({ code: 'E_TIMEOUT', message: 'silent: no answer within 100 ms' })
    const abort = new AbortController()
    const pending = l.request('silent', [], { signal: abort.signal, timeoutMs: 5000 })
    abort.abort()
    await expect(pending).rejects.toMatchObject({ code: 'E_ABORTED' })
  })

  it('tells an unreachable server within the connect timeout, and not a reached one', async () => {
    const s = await bareServer()
    const reached = link(s.url)
    let calledReached = false
    reached.unlessConnectedWithin(300, () => { calledReached = true })
    await connected(reached)

    const gone = await bareServer()
    await new Promise((resolve) => { void gone.io.close(resolve) }) // nothing listens there any more
    const unreachable = link(gone.url)
    const errors: StarsockError[] = []
    unreachable.on('error', (err) => errors.push(err))
    const told = new Promise<void>((resolve) => unreachable.unlessConnectedWithin(300, resolve))
    unreachable.connect()
    await within('the unreachable callback', told, 2000)
    expect(errors[0]?.code).toBe('E_SERVER_UNREACHABLE')
    await new Promise((resolve) => setTimeout(resolve, 350))
    expect(calledReached).toBe(false)
  })

  it('a refusal by the server\'s middleware is E_FORBIDDEN', async () => {
    const s = await bareServer()
    s.io.use((_socket, next) => next(new Error(wireError('E_FORBIDDEN', 'Wrong token'))))
    const l = link(s.url)
    const forbidden = new Promise<StarsockError>((resolve) => l.on('error', resolve))
    l.connect()
    expect(await within('the connect error', forbidden)).toMatchObject({ code: 'E_FORBIDDEN' })
  })

  it('the heartbeat drops a server that does not answer, and the link reconnects', async () => {
    const s = await bareServer((socket) => {
      if (s.sockets.length === 1) socket.on(EVENTS.PING, () => {}) // the first connection goes silent
      else socket.on(EVENTS.PING, (ack: () => void) => ack())
    })
    const l = link(s.url, { heartbeatIntervalMs: 50, heartbeatTimeoutMs: 50 })
    const reasons: string[] = []
    l.on('disconnect', (reason) => reasons.push(reason))
    await connected(l)
    const again = new Promise<void>((resolve) => { const off = l.on('connect', () => { off(); resolve() }) })
    l.startHeartbeat()
    await within('the link to reconnect after a missed heartbeat', again, 3000)
    expect(reasons).toHaveLength(1)
    await new Promise((resolve) => setTimeout(resolve, 300)) // heartbeats answered: no more drops
    expect(reasons).toHaveLength(1)
  })

  it('reconnects after the server disconnected it, unless closed', async () => {
    const s = await bareServer()
    const l = link(s.url)
    await connected(l)
    const again = new Promise<void>((resolve) => { const off = l.on('connect', () => { off(); resolve() }) })
    s.sockets[0]?.disconnect(true)
    await within('the link to reconnect after a server disconnect', again, 3000)
    expect(s.sockets).toHaveLength(2)
    l.close()
    await new Promise((resolve) => setTimeout(resolve, 700))
    expect(s.sockets).toHaveLength(2)
  })

  it('whenWritable waits past the high-water mark until the transport drains, and fails on a drop or an abort', async () => {
    const s = await bareServer()
    const l = link(s.url)
    await connected(l)
    await within('room at once', l.whenWritable())
    l.streams.sent(TRANSPORT_HIGH_WATER_BYTES)
    let woke = false
    const waiting = l.whenWritable().then(() => { woke = true })
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(woke).toBe(false)
    l.streams.emit('anything', new Uint8Array(10)) // a flush ends with the engine's drain
    await within('the drain to wake the writer', waiting)

    l.streams.sent(TRANSPORT_HIGH_WATER_BYTES)
    const abort = new AbortController()
    const aborted = l.whenWritable(abort.signal)
    abort.abort()
    await expect(aborted).rejects.toMatchObject({ code: 'E_ABORTED' })
    const dropped = l.whenWritable()
    l.dropTransport()
    await expect(dropped).rejects.toMatchObject({ code: 'E_DISCONNECTED' })
  })
  it('writers held by the WebSocket\'s own buffer share one wait on its socket, and go on once the server reads again', async () => {
    // The server stops reading its TCP socket, so the client's `ws` buffer fills past the mark.
    const s = await bareServer((socket) => { (socket.request.socket as unknown as { pause: () => void }).pause() })
    const l = link(s.url)
    await connected(l)
    const chunk = new Uint8Array(256 * 1024)
    for (let i = 0; i < 64; i++) { l.streams.emit('bulk', chunk); l.streams.sent(chunk.byteLength) }
    await new Promise((resolve) => setTimeout(resolve, 300))
    const ws = (l as unknown as { socket: { io: { engine: { transport: { ws: { bufferedAmount: number, _socket: { listenerCount: (e: string) => number } } } } } } }).socket.io.engine.transport.ws
    expect(ws.bufferedAmount).toBeGreaterThan(TRANSPORT_HIGH_WATER_BYTES)
    const drainBefore = ws._socket.listenerCount('drain')
    let woke = 0
    const writers = Array.from({ length: 12 }, async () => { await l.whenWritable(); woke++ })
    await new Promise((resolve) => setTimeout(resolve, 120))
    expect(woke).toBe(0)
    // One listener for all twelve writers (one each would pass Node's limit of 10 and warn).
    expect(ws._socket.listenerCount('drain') - drainBefore).toBeLessThanOrEqual(1)
    for (const socket of s.sockets) (socket.request.socket as unknown as { resume: () => void }).resume()
    await within('the twelve writers to go on once the server reads', Promise.all(writers), 5000)
    expect(woke).toBe(12)
  })
})

describe('ServerLink: frames of several parts', () => {
  /** A bare server with starsock's frame parser that records the events and frames (as `frame <bytes>`) each socket sends, in order. */
  const recordingServer = async (): Promise<{ url: string, got: string[] }> => {
    const got: string[] = []
    const s = await bareServer((socket) => {
      socket.onAny((event: string, ...args: unknown[]) => { got.push(event === FRAME_EVENT ? `frame ${Buffer.from(args[0] as Uint8Array).toString('hex')}` : event) })
    }, { parser: serverFrameParser })
    return { url: s.url, got }
  }

  it('keep their place after the events emitted before them: straight to the socket when nothing waits in the engine, through it behind what does', async () => {
    const s = await recordingServer()
    const l = link(s.url) // WebSocket only, on loopback: the zero key, so parts can go straight to the socket
    await connected(l)
    const writeParts = vi.spyOn(ZeroMaskWebSocket.prototype, 'writeParts')
    stops.push(() => { writeParts.mockRestore() })
    const frame = (...parts: number[][]): Uint8Array[] => parts.map((p) => Uint8Array.from(p))

    expect(l.streams.frame?.(frame([0, 0, 0, 0, 1], [0xaa], [0xbb, 0xcc]))).toBe(true) // alone in its turn
    expect(writeParts.mock.results.map((r) => r.value)).toEqual([true])
    await new Promise((resolve) => setTimeout(resolve, 20))

    l.streams.emit('one') // handed to the WebSocket at once; the transport is busy until its next tick
    l.streams.emit('two') // waits in the engine's buffer
    expect(engineHolds(l['socket'].io.engine)).toBe(true)
    expect(l.streams.frame?.(frame([0, 0, 0, 0, 2], [0xdd], [0xee]))).toBe(true) // must not overtake 'two'
    l.streams.emit('three')
    expect(writeParts).toHaveBeenCalledTimes(1) // the second went through the engine, joined
    await within('the server receiving all five', (async () => { while (s.got.length < 5) await new Promise((resolve) => setTimeout(resolve, 5)) })())
    expect(s.got).toEqual(['frame 0000000001aabbcc', 'one', 'two', 'frame 0000000002ddee', 'three'])
    expect(engineHolds(l['socket'].io.engine)).toBe(false) // engine.io-client's internals as pinned: it holds nothing once drained
  })

  it('are joined and sent through the engine with a random key (ws masks them), and arrive the same', async () => {
    const s = await recordingServer()
    const l = link(s.url, { wsMask: 'random' })
    await connected(l)
    const writeParts = vi.spyOn(ZeroMaskWebSocket.prototype, 'writeParts')
    stops.push(() => { writeParts.mockRestore() })
    expect(l.streams.frame?.([Uint8Array.of(0, 0, 0, 0, 3), Uint8Array.of(1, 2), Uint8Array.of(3)])).toBe(true)
    await within('the frame arriving', (async () => { while (s.got.length < 1) await new Promise((resolve) => setTimeout(resolve, 5)) })())
    expect(s.got).toEqual(['frame 0000000003010203'])
    expect(writeParts).not.toHaveBeenCalled()
  })
})
