/**
 * Writes from channels to the target's TCP sockets (`pipeSocket`): the frames that arrive
 * together go out as one `writev`, in order on every connection, and a target that does not read
 * stops the channel's credit, so the socket's buffer holds at most one write.
 */
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import type { SockAgent } from '../client/sock/agent.ts'
import { MAX_SOCKET_WRITE_BYTES } from '../client/sock/host.node.ts'
import { forward } from '../client/sock/tunnel.node.ts'
import { expectBytes } from './helpers/bytes.ts'
import { useAgents } from './helpers/agents.ts'
import { testBytes, waitFor, within } from './helpers/server.ts'

/** Write calls (`_write`: one buffer, `_writev`: several) that reach sockets connected to `port`, watched on the real sockets. */
function watchWrites (port: number): { writes: () => number, writevs: () => number, maxBuffered: () => number, restore: () => void } {
  const proto = net.Socket.prototype as unknown as Record<'_write' | '_writev', (this: net.Socket, ...args: unknown[]) => void>
  const write = proto._write
  const writev = proto._writev
  let writes = 0
  let writevs = 0
  let maxBuffered = 0
  const seen = (socket: net.Socket): boolean => {
    if (socket.remotePort !== port) return false
    maxBuffered = Math.max(maxBuffered, socket.writableLength)
    return true
  }
  proto._write = function (...args) { if (seen(this)) writes++; write.apply(this, args) }
  proto._writev = function (...args) { if (seen(this)) writevs++; writev.apply(this, args) }
  return { writes: () => writes, writevs: () => writevs, maxBuffered: () => maxBuffered, restore: () => { proto._write = write; proto._writev = writev } }
}

describe('writes to the target socket', () => {
  const { agent: agentWith, cleanup } = useAgents()
  const agent = async (allow: string[] = []): Promise<SockAgent> => await agentWith({ allow })

  it('frames that arrive together go out as one writev, every connection byte-exact and in order', async () => {
    const received = new Map<number, Buffer[]>()
    const sink = net.createServer((s) => {
      const parts: Buffer[] = []
      let sinceBreak = 0
      s.on('data', (d: Buffer) => {
        parts.push(d)
        // A reader that takes a short break now and then (as a disk or a busy service does):
        // frames arrive meanwhile, and go out together once the socket drains.
        sinceBreak += d.byteLength
        if (sinceBreak < 256 * 1024) return
        sinceBreak = 0
        s.pause()
        setTimeout(() => s.resume(), 20)
      })
      // The client's first 4 bytes name its connection.
      s.on('end', () => { const all = Buffer.concat(parts); received.set(all.readUInt32BE(0), parts); s.end() })
    })
    await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve))
    const port = (sink.address() as net.AddressInfo).port
    cleanup.push({ close: () => { sink.close() } })
    const watch = watchWrites(port)
    cleanup.push({ close: watch.restore })
    const target = await agent([`connect/tcp:127.0.0.1:${port}`])
    const client = await agent()
    const tunnel = await forward(client, { peer: target.peer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port } })
    cleanup.push(tunnel)
    const CONNECTIONS = 4
    const BYTES = 4 * 1024 * 1024
    const sent = Array.from({ length: CONNECTIONS }, (_, i) => {
      const data = Buffer.from(testBytes(BYTES, i + 1))
      data.writeUInt32BE(i, 0)
      return data
    })
    await within(`${CONNECTIONS} connections of ${BYTES} bytes through the forward`, Promise.all(sent.map(async (data) => await new Promise<void>((resolve, reject) => {
      const s = net.connect(tunnel.address.port, '127.0.0.1', () => { s.end(data) })
      s.on('error', reject)
      s.on('close', () => resolve())
      s.resume()
    }))), 30_000)
    await waitFor('every connection at the sink', () => received.size === CONNECTIONS, 10_000)
    for (const [i, data] of sent.entries()) expectBytes(Buffer.concat(received.get(i) ?? []), data, `connection ${i} at the sink`)
    // 64 KiB DATA frames, several of a connection in a stream message (or waiting while its socket
    // drained): written together, in fewer writes than frames (one each before; about 0.6 here).
    const frames = CONNECTIONS * BYTES / (64 * 1024)
    expect(watch.writevs()).toBeGreaterThan(0)
    expect(watch.writes() + watch.writevs()).toBeLessThan(frames * 0.8)
  })

  it('a forward whose far service does not read stops reading its local socket: what the client could write stays bounded', async () => {
    const accepted: net.Socket[] = []
    const slow = net.createServer((s) => { s.pause(); accepted.push(s) })
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve))
    const port = (slow.address() as net.AddressInfo).port
    cleanup.push({ close: () => { for (const s of accepted) s.destroy(); slow.close() } })
    const target = await agent([`connect/tcp:127.0.0.1:${port}`])
    const client = await agent()
    const tunnel = await forward(client, { peer: target.peer.peerId, listen: { ip: '127.0.0.1', port: 0 }, to: { ip: '127.0.0.1', port } })
    cleanup.push(tunnel)
    const source = net.connect(tunnel.address.port, '127.0.0.1')
    cleanup.push({ close: () => { source.destroy() } })
    source.on('error', () => {})
    await new Promise<void>((resolve) => source.once('connect', resolve))
    const block = testBytes(64 * 1024, 5)
    let accepted64k = 0
    let stop = false
    // Writes one block at a time, each once the kernel took the one before.
    const pump = (): void => { if (!stop && source.write(block, () => { accepted64k++ })) setImmediate(pump); else if (!stop) source.once('drain', pump) }
    pump()
    let last = -1
    let since = Date.now()
    await waitFor('the client\'s writes to stall (nothing taken for 1 s)', () => {
      if (accepted64k !== last) { last = accepted64k; since = Date.now() }
      return Date.now() - since >= 1000 && accepted64k > 0
    }, 30_000)
    stop = true
    // The forward holds at most its read-ahead and the channel's window; the rest is in kernel
    // buffers (a few MiB on loopback). A forward that read on regardless would take everything.
    expect(accepted64k * block.byteLength, 'bytes the client could write while nothing was read').toBeLessThan(64 * 1024 * 1024)
    expect(tunnel.stats().channelsOpen).toBe(1)
  })

  it('a target that does not read stops the credit: the socket holds at most one write, and all of it arrives once it reads', async () => {
    const accepted: net.Socket[] = []
    const slow = net.createServer((s) => { s.pause(); accepted.push(s) }) // reads nothing until resumed
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve))
    const port = (slow.address() as net.AddressInfo).port
    cleanup.push({ close: () => { for (const s of accepted) s.destroy(); slow.close() } })
    const watch = watchWrites(port)
    cleanup.push({ close: watch.restore })
    const target = await agent([`connect/tcp:127.0.0.1:${port}`])
    const client = await agent()
    const mapping = await client.connect(target.peer.peerId, { host: '127.0.0.1', port })
    const channel = await mapping.connect()
    let written = 0
    let stop = false
    const chunk = testBytes(64 * 1024, 3)
    const writing = (async () => { while (!stop) { await channel.write(chunk); written += chunk.byteLength } })()
    writing.catch(() => {})
    await waitFor('the service to have a connection', () => accepted.length === 1)
    // Stalled: nothing more gets credit once the kernel's buffers, the socket and the window are
    // full (without the stop the socket's buffer would take everything: the writer never stalls).
    let stalledAt = -1
    let since = Date.now()
    await waitFor('the writer to stall (no byte written for 1 s)', () => {
      if (written !== stalledAt) { stalledAt = written; since = Date.now() }
      return Date.now() - since >= 1000
    }, 30_000)
    expect(written, 'bytes written while the service read nothing').toBeLessThan(64 * 1024 * 1024)
    expect(watch.maxBuffered(), 'bytes the target socket held unwritten').toBeLessThanOrEqual(MAX_SOCKET_WRITE_BYTES)
    // Once the service reads, every byte arrives, in order.
    stop = true
    const service = accepted[0] as net.Socket
    const parts: Buffer[] = []
    service.on('data', (d: Buffer) => parts.push(d))
    service.resume()
    await within('the writer to finish', writing, 20_000)
    await channel.closeWrite()
    await within('the end at the service', new Promise((resolve) => service.once('end', resolve)), 20_000)
    const all = Buffer.concat(parts)
    expect(all.byteLength).toBe(written)
    for (let at = 0; at < all.byteLength; at += chunk.byteLength) expectBytes(all.subarray(at, at + chunk.byteLength), chunk, `chunk at ${at}`)
  })
})
