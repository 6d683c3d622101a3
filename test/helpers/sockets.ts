/** Real local services for tunnel tests: an HTTP server, a TCP echo, a UDP echo, and clients for them. */
import dgram from 'node:dgram'
import http from 'node:http'
import net from 'node:net'

/** Something to close after a test. */
export interface Closable { close: () => void | Promise<void> }

/** An HTTP server on 127.0.0.1 serving `body` at every path. */
export async function httpServer (body: Uint8Array): Promise<{ port: number, close: () => Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.byteLength })
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => { server.closeAllConnections(); await new Promise((resolve) => server.close(resolve)) }
  }
}

/** GET `url` with a fresh connection; settles with the status and the whole body. */
export async function httpGet (url: string): Promise<{ status: number, body: Buffer }> {
  return await new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }))
      res.on('error', reject)
    }).on('error', reject)
  })
}

/**
 * A TCP echo server on 127.0.0.1 (half-close aware), counting the connections it holds; with
 * `dualStack`, on `::` so that 127.0.0.1 and ::1 both reach it.
 */
export async function tcpEcho (options: { dualStack?: boolean } = {}): Promise<{ port: number, open: () => number, close: () => void }> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    s.pipe(s)
  })
  const at = options.dualStack === true ? { port: 0, host: '::', ipv6Only: false } : { port: 0, host: '127.0.0.1' }
  await new Promise<void>((resolve) => server.listen(at, resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    open: () => sockets.size,
    close: () => { server.close(); for (const s of sockets) s.destroy() }
  }
}

/** A port on 127.0.0.1 where nothing listens (bound, then closed). */
export async function closedPort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A UDP echo on 127.0.0.1: every datagram goes back to its sender unchanged. */
export async function udpEcho (): Promise<{ port: number, received: () => number, close: () => void }> {
  const socket = dgram.createSocket('udp4')
  let count = 0
  socket.on('message', (msg, rinfo) => { count++; socket.send(msg, rinfo.port, rinfo.address) })
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  return { port: socket.address().port, received: () => count, close: () => socket.close() }
}

/** A UDP client socket on 127.0.0.1 that records every datagram it gets. */
export async function udpClient (): Promise<{ socket: dgram.Socket, got: Buffer[], close: () => void }> {
  const socket = dgram.createSocket('udp4')
  const got: Buffer[] = []
  socket.on('message', (msg) => got.push(msg))
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve))
  return { socket, got, close: () => socket.close() }
}

/** Connect to 127.0.0.1:`port`, write `data`, half-close, and settle with everything read back. */
export async function tcpRoundTrip (port: number, data: Uint8Array, host = '127.0.0.1'): Promise<Buffer> {
  return await new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true })
    const parts: Buffer[] = []
    socket.on('data', (c: Buffer) => parts.push(c))
    socket.on('end', () => { socket.end(); resolve(Buffer.concat(parts)) })
    socket.on('error', reject)
    socket.end(data)
  })
}
