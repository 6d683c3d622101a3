/**
 * Real sockets for sock channels (Node only): connect and bind for other peers, and the pipe
 * between a TCP socket and a reliable channel (or a UDP socket and a datagram channel), with
 * backpressure both ways.
 */
import dgram from 'node:dgram'
import net from 'node:net'
import os from 'node:os'
import { StarsockError } from '../../shared/errors.ts'
import type { SockAddress } from '../../shared/mux-frame.ts'
import type { SockProto } from '../../shared/sock-protocol.ts'
import type { Channel, Datagram } from '../mux/channel.ts'
import type { BindTarget, HostListener, SockHost, UdpBindDrops } from './agent.ts'
import { parseAllowFrom } from './allow-from.node.ts'

/** Options of the Node host. */
export interface NodeHostOptions {
  /** How long a TCP connect may take. @default 10_000 */
  connectTimeoutMs?: number
  /** Sources all UDP binds of this host remember together (each at most `MAX_UDP_BIND_SOURCES`); datagrams from more are dropped and counted. @default 65_536 */
  maxUdpBindSourcesTotal?: number
}

/** Map a socket error to a sock error code. */
export function connectError (err: NodeJS.ErrnoException, dst: SockAddress): StarsockError {
  const where = `${dst.ip}:${dst.port}`
  switch (err.code) {
    case 'ECONNREFUSED': return new StarsockError('E_CONNECT_REFUSED', `${where} refused the connection`)
    case 'ETIMEDOUT': return new StarsockError('E_CONNECT_TIMEOUT', `${where} did not answer in time`)
    default: return new StarsockError('E_CONNECT_UNREACHABLE', `${where} unreachable: ${err.code ?? err.message}`)
  }
}

function bytes (chunk: Uint8Array): Buffer {
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
}

/**
 * End a TCP connection with a reset (RST), not a FIN: what the application at the other end must
 * see when its tunnel broke, so a cut transfer never looks complete.
 */
export function resetSocket (socket: net.Socket): void {
  if (socket.destroyed) return
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy() // no handle left to reset (never connected)
  }
}

/**
 * Largest write to a TCP socket from a channel: the chunks that arrived together (the frames of a
 * stream message, or what came while the socket drained) go out as one `writev` up to this size,
 * instead of one write per 64 KiB frame. It is also what a socket may hold past its high-water mark
 * before the channel stops being read (and granting credit).
 */
export const MAX_SOCKET_WRITE_BYTES = 256 * 1024

/**
 * Bytes read from a TCP socket and handed to its channel, not yet sent, past which the socket is
 * paused; never more than the channel's credit covers (a chunk read is at most 64 KiB, so a
 * socket holds at most the smaller of the two plus one chunk, and a far side that does not read
 * costs one chunk per connection, not this).
 */
export const MAX_SOCKET_READ_AHEAD_BYTES = 512 * 1024

/**
 * Write `chunks` to `socket` as one `writev` (corked); settles once the socket can take more: at
 * once while its buffer is under its high-water mark, else at `drain` (or `close`).
 */
async function writeChunks (socket: net.Socket, chunks: Uint8Array[]): Promise<void> {
  let more = true
  if (chunks.length === 1) more = socket.write(bytes(chunks[0] as Uint8Array))
  else {
    socket.cork()
    for (const chunk of chunks) more = socket.write(bytes(chunk))
    socket.uncork()
  }
  if (more || socket.destroyed) return
  await new Promise<void>((resolve) => {
    const done = (): void => { socket.off('drain', done); socket.off('close', done); resolve() }
    socket.on('drain', done)
    socket.on('close', done)
  })
}

/**
 * Pipe a TCP socket and a reliable channel both ways until both ends are over: half-closes pass
 * through as half-closes (a FIN only for the other side's FIN, never for a reset), an error on one side aborts the
 * other, and a channel that fails (reset, killed, connection to the peer or the server lost)
 * resets the socket. The socket is paused while the channel has no credit (past
 * `MAX_SOCKET_READ_AHEAD_BYTES`), and the channel is not read (so no credit goes back) while the
 * socket's buffer is over its high-water mark; what arrived meanwhile goes out in one write
 * (`MAX_SOCKET_WRITE_BYTES`).
 */
export function pipeSocket (socket: net.Socket, channel: Channel): void {
  // Reads go on while what is handed to the channel and not yet sent stays within its credit and
  // under MAX_SOCKET_READ_AHEAD_BYTES: several reads of one turn of the event loop then leave as
  // one batch of frames (one stream message), and a channel out of credit pauses the socket.
  let ahead = 0
  const room = (): number => Math.min(MAX_SOCKET_READ_AHEAD_BYTES, channel.creditBytes)
  socket.on('data', (chunk: Buffer) => {
    ahead += chunk.byteLength
    if (ahead > room()) socket.pause()
    // Handed over without a copy: Node gives each chunk read from a socket memory of its own.
    channel.writeOwned(chunk).then(() => {
      ahead -= chunk.byteLength
      if (ahead <= room() && socket.isPaused()) socket.resume()
    }, () => resetSocket(socket))
  })
  // libuv reports a reset that arrives behind unread bytes (the socket was paused for want of
  // credit) as a plain end: a zero-length write tells them apart (it fails with ECONNRESET or EPIPE
  // on a reset connection, and goes through after a FIN), so a reset is never passed on as a FIN.
  socket.on('end', () => {
    if (socket.destroyed || socket.writableEnded) return void channel.closeWrite().catch(() => {})
    socket.write(new Uint8Array(0), (err) => {
      if (err !== undefined && err !== null) channel.abort(new StarsockError('E_STREAM_ABORTED', `socket reset: ${(err as NodeJS.ErrnoException).code ?? err.message}`))
      else void channel.closeWrite().catch(() => {})
    })
  })
  socket.on('error', (err) => channel.abort(new StarsockError('E_STREAM_ABORTED', `socket error: ${(err as NodeJS.ErrnoException).code ?? err.message}`)))
  // A reset or a kill ends the socket at once, even one whose reader is stuck.
  void channel.whenClosed.then(() => { if (channel.error !== undefined) resetSocket(socket) })
  socket.resume()
  void (async () => {
    try {
      for (;;) {
        const chunks = await channel.readBatch(MAX_SOCKET_WRITE_BYTES)
        if (chunks === null) {
          socket.end() // the other side's application ended cleanly: pass its FIN on
          return
        }
        if (socket.destroyed) return
        await writeChunks(socket, chunks)
      }
    } catch {
      resetSocket(socket) // the channel failed: so does the connection
    }
  })()
  // A socket that closes before both directions ended cleanly takes the channel with it.
  socket.on('close', (hadError) => {
    if (hadError || !socket.readableEnded) channel.abort(new StarsockError('E_STREAM_ABORTED', 'socket closed'))
  })
}

/**
 * Call `send` with every datagram of `channel` until it ends or is reset; settles then. A send that
 * throws (a bad address) loses that datagram only, as UDP would.
 */
export async function forEachDatagram (channel: Channel, send: (item: Datagram) => void): Promise<void> {
  try {
    for (;;) {
      const item = await channel.receive()
      if (item === null) return
      try { send(item) } catch {}
    }
  } catch {} // reset: the channel is over
}

/** Carry datagrams between a connected UDP socket and a channel; the socket closes with the channel. */
export function pipeDatagrams (socket: dgram.Socket, channel: Channel): void {
  socket.on('message', (msg) => { channel.send(msg) })
  void forEachDatagram(channel, (item) => socket.send(item.data)).then(() => { try { socket.close() } catch {} })
}

/** The dgram socket type for an address. */
export function udpType (ip: string): 'udp4' | 'udp6' {
  return net.isIPv6(ip) ? 'udp6' : 'udp4'
}

/**
 * Kernel receive and send buffer asked for on the UDP sockets that carry a tunnel's traffic. The
 * usual default (208 KiB on Linux) holds about 150 ms of 1,000 datagrams a second: a busy event
 * loop loses the rest in the kernel, where nobody counts it. Linux caps the request at
 * `net.core.rmem_max` / `wmem_max` (212992 on a stock kernel; raise them, e.g.
 * `sysctl -w net.core.rmem_max=4194304`, for the full size); other systems may refuse it, and then
 * the socket keeps its default. What was got is in the tunnel's `stats().udpBufferBytes`.
 */
export const UDP_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
/** The same for a socket of one source (a connect, one of an expose's): up to 256 of them per tunnel. */
export const UDP_SOURCE_SOCKET_BUFFER_BYTES = 1024 * 1024

/** Kernel buffer sizes of a UDP socket as the system reports them (Linux reports twice what it grants for bookkeeping). */
export interface UdpBufferBytes { recv: number, send: number }

/**
 * A UDP socket for `ip` whose kernel buffers are asked to be `bufferBytes` once it is bound (a
 * size the system refuses leaves its default: Node throws `ERR_SOCKET_BUFFER_SIZE` where the
 * createSocket options would have failed the bind).
 */
export function udpSocket (ip: string, bufferBytes = UDP_SOCKET_BUFFER_BYTES): dgram.Socket {
  const socket = dgram.createSocket({ type: udpType(ip) })
  socket.once('listening', () => { sizeUdpBuffers(socket, bufferBytes) })
  return socket
}

/** Ask for `bytes` of receive and send buffer on a bound socket, each on its own; settles nothing, returns what the system reports now. */
export function sizeUdpBuffers (socket: dgram.Socket, bytes: number): UdpBufferBytes {
  try { socket.setRecvBufferSize(bytes) } catch {}
  try { socket.setSendBufferSize(bytes) } catch {}
  return udpBufferBytes(socket)
}

/** The receive and send buffer sizes of a bound socket now (0 if they cannot be read). */
export function udpBufferBytes (socket: dgram.Socket): UdpBufferBytes {
  let recv = 0
  let send = 0
  try { recv = socket.getRecvBufferSize() } catch {}
  try { send = socket.getSendBufferSize() } catch {}
  return { recv, send }
}

async function tcpConnect (dst: SockAddress, timeoutMs: number): Promise<net.Socket> {
  const socket = net.connect({ host: dst.ip, port: dst.port, allowHalfOpen: true })
  socket.pause()
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new StarsockError('E_CONNECT_TIMEOUT', `${dst.ip}:${dst.port} did not answer within ${timeoutMs} ms`)), timeoutMs)
      socket.once('connect', () => { clearTimeout(timer); resolve() })
      socket.once('error', (err) => { clearTimeout(timer); reject(connectError(err, dst)) })
    })
  } catch (err) {
    socket.destroy()
    throw err
  }
  return socket
}

async function udpConnect (dst: SockAddress): Promise<dgram.Socket> {
  const socket = udpSocket(dst.ip, UDP_SOURCE_SOCKET_BUFFER_BYTES)
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err) => reject(connectError(err, dst)))
      socket.connect(dst.port, dst.ip, () => resolve())
    })
  } catch (err) {
    socket.close()
    throw err
  }
  socket.on('error', () => {}) // ICMP port unreachable on a later send: the datagram is lost, as UDP's are
  return socket
}

/** Open a socket to `dst` (TCP or UDP) and pipe it to `channel`; settles once connected. */
export async function connectChannel (channel: Channel, dst: SockAddress, proto: SockProto, timeoutMs = 10_000): Promise<void> {
  if (proto === 'tcp') pipeSocket(await tcpConnect(dst, timeoutMs), channel)
  else pipeDatagrams(await udpConnect(dst), channel)
}

async function tcpListen (host: string, port: number, target: BindTarget): Promise<HostListener> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    const src = { ip: socket.remoteAddress ?? '0.0.0.0', port: socket.remotePort ?? 0 }
    // A source the binder's allowFrom leaves out is reset before a byte or a channel.
    if (target.admit?.(src, 'tcp') === false) return resetSocket(socket)
    target.openAccept(src)
      .then((channel) => pipeSocket(socket, channel), () => resetSocket(socket))
  })
  const address = await listenTcp(server, host, port)
  return {
    address,
    addresses: reachableAddresses(address),
    attach: () => {},
    close: () => {
      server.close()
      for (const s of sockets) resetSocket(s)
    }
  }
}

/**
 * For a wildcard address (`0.0.0.0`: the IPv4 ones; `::`: all), the addresses of this host's
 * interfaces with its port: not internal first, then loopback (`os.networkInterfaces`); for
 * another address, `undefined` (it is its own).
 */
export function reachableAddresses (bound: SockAddress): SockAddress[] | undefined {
  if (bound.ip !== '0.0.0.0' && bound.ip !== '::') return undefined
  const external: SockAddress[] = []
  const internal: SockAddress[] = []
  for (const list of Object.values(os.networkInterfaces())) {
    for (const info of list ?? []) {
      if (bound.ip === '0.0.0.0' && info.family !== 'IPv4') continue
      // A link-local IPv6 address needs its zone to be reached: left out.
      if (info.family === 'IPv6' && info.address.toLowerCase().startsWith('fe80:')) continue
      ;(info.internal ? internal : external).push({ ip: info.address, port: bound.port })
    }
  }
  return [...external, ...internal].slice(0, 64)
}

/** Listen on `host:port`; settles with the address bound, rejects with `E_BIND_FAILED`. */
export async function listenTcp (server: net.Server, host: string, port: number): Promise<SockAddress> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(new StarsockError('E_BIND_FAILED', `Cannot listen on ${host}:${port}: ${err.code ?? err.message}`)))
    server.listen(port, host, () => resolve())
  })
  // Later errors (an accept failing with EMFILE, ...) lose that one connection: without a
  // listener, the second would throw and end the process.
  server.on('error', () => {})
  const a = server.address() as net.AddressInfo
  return { ip: a.address, port: a.port }
}

/** A UDP socket bound to `host:port`; rejects with `E_BIND_FAILED`. Later socket errors are ignored (lost datagrams). */
export async function bindUdp (host: string, port: number): Promise<dgram.Socket> {
  const socket = udpSocket(host)
  await new Promise<void>((resolve, reject) => {
    socket.once('error', (err: NodeJS.ErrnoException) => reject(new StarsockError('E_BIND_FAILED', `Cannot bind UDP ${host}:${port}: ${err.code ?? err.message}`)))
    socket.bind(port, host, () => resolve())
  })
  socket.on('error', () => {})
  return socket
}

/** Remote sources a UDP bind remembers (and may answer); past this, new sources are dropped. */
export const MAX_UDP_BIND_SOURCES = 4096
/** How long a UDP bind may answer a source after it last sent. */
export const UDP_SOURCE_TTL_MS = 120_000

/** Sources remembered by all UDP binds of one host, against its total. */
interface SourceCount { now: number, max: number }

async function udpListen (host: string, port: number, total: SourceCount, target: BindTarget): Promise<HostListener> {
  const socket = await bindUdp(host, port)
  let current: Channel | undefined
  const drops: UdpBindDrops = { sources: 0, away: 0, unknown: 0 }
  // The binder may only answer sources that sent to the bound port (a bind is not a connect
  // to anywhere): a table of recent sources, bounded in size and age.
  const sources = new Map<string, number>()
  socket.on('message', (msg, rinfo) => {
    // A source the binder's allowFrom leaves out: dropped before it takes a place in the table.
    if (target.admit?.({ ip: rinfo.address, port: rinfo.port }, 'udp') === false) return
    const key = `${rinfo.address}|${rinfo.port}`
    if (sources.has(key)) {
      sources.delete(key)
      sources.set(key, Date.now())
    } else if (sources.size < MAX_UDP_BIND_SOURCES && total.now < total.max) {
      sources.set(key, Date.now())
      total.now++
    } else {
      drops.sources++ // too many sources at once: dropped
      return
    }
    // With no binder attached (a lease running) the datagram has nowhere to go: dropped.
    if (current !== undefined && !current.closed) current.send(msg, { ip: rinfo.address, port: rinfo.port })
    else drops.away++
  })
  const sweep = setInterval(() => {
    const old = Date.now() - UDP_SOURCE_TTL_MS
    for (const [key, at] of sources) {
      if (at < old) {
        sources.delete(key)
        total.now--
      }
    }
  }, 10_000)
  sweep.unref()
  const a = socket.address()
  return {
    address: { ip: a.address, port: a.port },
    addresses: reachableAddresses({ ip: a.address, port: a.port }),
    attach: (channel) => {
      current = channel
      void forEachDatagram(channel, ({ data, addr }) => {
        // Not a source of this bind: dropped.
        if (addr !== undefined && sources.has(`${addr.ip}|${addr.port}`)) socket.send(data, addr.port, addr.ip)
        else drops.unknown++
      })
    },
    drops: () => ({ ...drops }),
    close: () => {
      clearInterval(sweep)
      total.now -= sources.size
      sources.clear()
      try { socket.close() } catch {}
    }
  }
}

/** The Node `SockHost`: real TCP and UDP sockets. */
export function createNodeHost (options: NodeHostOptions = {}): SockHost {
  const timeoutMs = options.connectTimeoutMs ?? 10_000
  const sources: SourceCount = { now: 0, max: options.maxUdpBindSourcesTotal ?? 65_536 }
  if (!Number.isSafeInteger(sources.max) || sources.max < 0) throw new RangeError('maxUdpBindSourcesTotal must be a non-negative integer')
  return {
    connect: async (channel, dst, proto) => await connectChannel(channel, dst, proto, timeoutMs),
    bind: async (proto, host, port, target) => proto === 'tcp' ? await tcpListen(host, port, target) : await udpListen(host, port, sources, target),
    allowFrom: (list) => parseAllowFrom(list)
  }
}
