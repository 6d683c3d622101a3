/**
 * What an idle connected peer keeps on the server: not the HTTP request its connection began
 * with (engine.io holds it as `conn.request` and, for a WebSocket upgrade, through the upgrade's
 * response object), while its session still knows where it connects from.
 */
import type { IncomingMessage } from 'node:http'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { io } from 'socket.io-client'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { StarsockServer } from '../server/server.ts'
import { startLegacyPeer, type LegacyPeer } from './helpers/legacy.ts'
import { connectSocket } from './helpers/raw-peer.ts'
import { startServer, waitFor } from './helpers/server.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** Whether every request in `refs` was garbage-collected, after a few full collections. */
async function collected (refs: Array<WeakRef<IncomingMessage>>): Promise<boolean> {
  for (let i = 0; i < 5 && refs.some((r) => r.deref() !== undefined); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    gc()
  }
  return refs.every((r) => r.deref() === undefined)
}

describe('an idle peer does not keep its HTTP request on the server', () => {
  let server: StarsockServer & { port: number }
  /** Every request that opened or upgraded an engine.io connection. */
  let requests: Array<WeakRef<IncomingMessage>>
  const closers: Array<() => void> = []

  beforeEach(async () => {
    server = await startServer()
    requests = []
    server.http.on('upgrade', (req: IncomingMessage) => { requests.push(new WeakRef(req)) })
    server.io.engine.on('connection', (raw: { request: IncomingMessage }) => { requests.push(new WeakRef(raw.request)) })
  })
  afterEach(async () => {
    for (const close of closers.splice(0)) close()
    await server.close()
  })

  /** The server's only socket.io socket and its session, once connected on `transport`. */
  async function onlySocket (transport: string): Promise<{ conn: { request: unknown }, headers: object, ip: string, port: number | undefined }> {
    await waitFor(`one session on ${transport}`, () => {
      const [socket] = server.io.sockets.sockets.values()
      return server.rendezvous.sessions.size === 1 && socket?.conn.transport.name === transport
    })
    const [socket] = server.io.sockets.sockets.values()
    const [session] = server.rendezvous.sessions.values()
    if (socket === undefined || session === undefined) throw new Error('no socket')
    return { conn: socket.conn as unknown as { request: unknown }, headers: socket.handshake.headers, ip: session.ip, port: session.port }
  }

  it('socket.io-client 4 over websocket: the request is collected, the session has its IP and port', async () => {
    const client = await connectSocket(server.url(), { transports: ['websocket'] })
    closers.push(() => client.close())
    const seen = await onlySocket('websocket')
    expect(seen.conn.request).toBeNull()
    expect(seen.headers).toEqual({})
    const localPort = (client.io.engine.transport as unknown as { ws: { _socket: { localPort: number } } }).ws._socket.localPort
    expect(seen.ip).toBe('127.0.0.1')
    expect(seen.port).toBe(localPort)
    expect(requests.length).toBeGreaterThan(0)
    expect(await collected(requests)).toBe(true)
  })

  it('socket.io-client 4 polling, then upgraded: neither request is kept', async () => {
    const client = await connectSocket(server.url(), { transports: ['polling', 'websocket'] })
    closers.push(() => client.close())
    const seen = await onlySocket('websocket')
    expect(seen.conn.request).toBeNull()
    expect(seen.ip).toBe('127.0.0.1')
    expect(typeof seen.port).toBe('number')
    expect(requests.length).toBe(2) // the handshake's polling request and the upgrade
    expect(await collected(requests)).toBe(true)
  })

  it('the legacy client (engine.io 3): the request is collected once it joined', async () => {
    const peer: LegacyPeer = await startLegacyPeer(server.port, () => {})
    closers.push(() => peer.stop())
    const seen = await onlySocket('websocket')
    expect(seen.conn.request).toBeNull()
    expect(seen.ip).toBe('127.0.0.1')
    expect(typeof seen.port).toBe('number')
    expect(server.stats().peers).toBe(1)
    expect(await collected(requests)).toBe(true)
  })

  it('behind a trusted proxy, the session keeps the forwarded address, read before the request went', async () => {
    await server.close()
    server = await startServer({ trustProxy: true })
    const client = io(server.url(), { transports: ['websocket'], reconnection: false, forceNew: true, extraHeaders: { 'X-Forwarded-For': '203.0.113.9, 198.51.100.7' } })
    closers.push(() => client.close())
    const seen = await onlySocket('websocket')
    expect(seen.conn.request).toBeNull()
    expect(seen.ip).toBe('198.51.100.7')
    expect(seen.port).toBeUndefined()
  })
})
