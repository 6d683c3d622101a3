/**
 * Worker tasks of the `tunnel` scenario (run by `bench/worker.ts`): the two peers of a `forward`,
 * each in its own process, and the TCP sources and sink that time bytes through any path.
 */
import { connect as tcpConnect, createServer as createTcpServer, type Socket } from 'node:net'
import { createInterface } from 'node:readline'
import WebSocket from 'ws'
import { createPeer } from '../client/peer.ts'
import { createSockAgent } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import { forward } from '../client/sock/tunnel.node.ts'
import { installCopyMeter, takeCopies, takeMessages } from './copy-meter.ts'
import { installSealMeter, takeSeals } from './seal-meter.ts'

const now = (): number => performance.now()
const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Settles once a line `stop` (or the end) comes on stdin; a line `copies` prints `COPIES {...}` (bytes copied since the last, by where, the cipher's output included, and binary engine.io messages sent: raw data frames and event attachments). */
async function untilStop (): Promise<void> {
  for await (const line of createInterface({ input: process.stdin })) {
    if (line === 'stop') return
    if (line === 'copies') process.stdout.write(`COPIES ${JSON.stringify({ copies: { ...takeCopies(), ...takeSeals() }, messages: takeMessages() })}\n`)
  }
}

/** Count copies (`bench/copy-meter.ts`), the cipher's output among them (`bench/seal-meter.ts`). */
function installMeters (): void {
  installCopyMeter()
  installSealMeter()
}

/**
 * The far end of a tunnel: a peer whose sock agent connects to `127.0.0.1:sinkPort` for whoever
 * asks; encrypted (the default) unless `insecure` (a plaintext peer whose agent takes plaintext
 * connections: the CLI's `--insecure`). Prints `READY {"peerId"}`; closes on `stop`.
 */
export async function tunnelTarget (a: { url: string, sinkPort: number, /** The mux's channel window, to try others. */ windowBytes?: number, /** Count copies (`bench/copy-meter.ts`). */ meter?: boolean, insecure?: boolean }): Promise<void> {
  if (a.meter === true) installMeters()
  const insecure = a.insecure === true
  const peer = await createPeer({ server: a.url, secure: !insecure })
  const agent = createSockAgent(peer, { host: createNodeHost(), allow: [`connect/tcp:127.0.0.1:${a.sinkPort}`], mux: { windowBytes: a.windowBytes }, insecure })
  process.stdout.write(`READY ${JSON.stringify({ peerId: peer.peerId })}\n`)
  await untilStop()
  await agent.close()
  await peer.close()
  process.exit(0)
}

/**
 * The near end: `forward` from a local port to `127.0.0.1:sinkPort` through `target`, encrypted
 * (the default) unless `insecure` (as in `tunnelTarget`; both sides opt in). Fails unless the
 * connection to the target is what was asked. Prints `READY {"port","secure"}`; closes on `stop`.
 */
export async function tunnelClient (a: { url: string, target: string, sinkPort: number, /** The mux's channel window, to try others. */ windowBytes?: number, /** Count copies (`bench/copy-meter.ts`). */ meter?: boolean, insecure?: boolean }): Promise<void> {
  if (a.meter === true) installMeters()
  const insecure = a.insecure === true
  const peer = await createPeer({ server: a.url, secure: !insecure })
  const agent = createSockAgent(peer, { mux: { windowBytes: a.windowBytes }, insecure })
  const tunnel = await forward(agent, { peer: a.target, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port: a.sinkPort }, timeoutMs: 10_000 })
  // The tunnel's own mapping's connection (not whichever session the agent has with the target).
  const { secure } = tunnel.stats()
  if (secure !== !insecure) throw new Error(`asked for ${insecure ? 'a plaintext' : 'an encrypted'} connection to the target, got secure: ${String(secure)}`)
  process.stdout.write(`READY ${JSON.stringify({ port: tunnel.address.port, secure })}\n`)
  await untilStop()
  const stats = tunnel.stats()
  await tunnel.close()
  await agent.close()
  await peer.close()
  process.stdout.write(JSON.stringify(stats) + '\n')
  process.exit(0)
}

/** Length prefix of a sink connection: the bytes that follow, as a 64-bit big-endian count. */
function lengthPrefix (n: number): Buffer {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

/**
 * A TCP sink on `127.0.0.1:port`: each connection starts with its length prefix; once that many
 * bytes came, the sink answers with the same 8 bytes and ends the connection.
 */
async function tcpSink (port: number): Promise<{ close: () => void }> {
  const sockets = new Set<Socket>()
  const server = createTcpServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let head = Buffer.alloc(0)
    let expected = -1
    let got = 0
    socket.on('data', (d: Buffer) => {
      if (expected < 0) {
        head = Buffer.concat([head, d])
        if (head.length < 8) return
        expected = Number(head.readBigUInt64BE(0))
        got = head.length - 8
      } else {
        got += d.length
      }
      if (got >= expected) {
        socket.end(lengthPrefix(got))
        expected = Infinity // answered; anything more is ignored
      }
    })
    socket.on('end', () => socket.end())
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
  return { close: () => { server.close(); for (const s of sockets) s.destroy() } }
}

/** Wait for the sink's 8-byte answer on a TCP socket; settles with the count it received. */
async function sinkAnswer (socket: Socket): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    let buf = Buffer.alloc(0)
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (buf.length >= 8) resolve(Number(buf.readBigUInt64BE(0)))
    })
    socket.once('end', () => reject(new Error(`connection ended after ${buf.length} answer bytes`)))
    socket.once('error', reject)
  })
}

/**
 * Tunnel throughput: a TCP sink on `sinkPort`, and `streams` sources sending `bytes` in all (64
 * KiB writes) to it through `port` (a forward) or, with `websockify`, as binary `ws` messages to
 * `ws://127.0.0.1:port/`. Timed from the first connect to the sink's last answer.
 */
export async function tunnelBytes (a: { port: number, sinkPort: number, bytes: number, streams: number, websockify?: boolean }): Promise<unknown> {
  const sink = await tcpSink(a.sinkPort)
  const per = Math.floor(a.bytes / a.streams)
  const chunk = Buffer.alloc(64 * 1024, 7)
  const sendTcp = async (): Promise<number> => {
    const socket = tcpConnect(a.port, '127.0.0.1')
    socket.on('error', () => {})
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
    const answer = sinkAnswer(socket)
    answer.catch(() => {})
    socket.write(lengthPrefix(per))
    for (let sent = 0; sent < per; sent += chunk.length) {
      if (!socket.write(sent + chunk.length <= per ? chunk : chunk.subarray(0, per - sent))) {
        await new Promise<void>((resolve, reject) => {
          const drained = (): void => { socket.off('close', closed); resolve() }
          const closed = (): void => { socket.off('drain', drained); reject(new Error('closed while sending')) }
          socket.once('drain', drained)
          socket.once('close', closed)
        })
      }
    }
    const got = await answer
    socket.end()
    return got
  }
  const sendWs = async (): Promise<number> => {
    const ws = new WebSocket(`ws://127.0.0.1:${a.port}/`)
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
    const answer = new Promise<number>((resolve, reject) => {
      ws.once('message', (d: Buffer) => resolve(d.length >= 8 ? Number(d.readBigUInt64BE(0)) : -1))
      ws.once('close', () => reject(new Error('websockify closed before the sink answered')))
    })
    answer.catch(() => {})
    ws.send(lengthPrefix(per))
    for (let sent = 0; sent < per; sent += chunk.length) {
      ws.send(sent + chunk.length <= per ? chunk : chunk.subarray(0, per - sent))
      while (ws.bufferedAmount > 4 * 1024 * 1024) await sleep(1)
    }
    const got = await answer
    ws.close()
    return got
  }
  try {
    const t0 = now()
    const cpu0 = process.cpuUsage()
    const got = await Promise.all(Array.from({ length: a.streams }, async () => await (a.websockify === true ? sendWs() : sendTcp())))
    const seconds = (now() - t0) / 1000
    const cpu = process.cpuUsage(cpu0)
    const bytes = got.reduce((sum, n) => sum + n, 0)
    if (bytes !== per * a.streams) throw new Error(`the sink got ${bytes} of ${per * a.streams} bytes`)
    return { bytes, seconds, mibPerSecond: bytes / 1048576 / seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6 }
  } finally {
    sink.close()
  }
}
