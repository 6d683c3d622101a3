/**
 * A TCP proxy on 127.0.0.1 that records every byte it carries, both ways: what a relay (or anyone
 * on its wire) could read. For privacy tests: put the server behind it, move known bytes between
 * peers, then search the recording for them.
 *
 * Client → server WebSocket frames are masked with a random key per frame (RFC 6455 §5.3), so the
 * raw recording of that direction never shows a payload verbatim even in plaintext. The server
 * unmasks them, so `toServer` is what the server reads: HTTP requests as they are and, after a
 * WebSocket upgrade, every frame's payload unmasked (the frame headers left out). `toServerRaw`
 * is the masked bytes as they crossed the wire. `toClient` is the server's bytes as they are
 * (server frames are not masked; frame headers stay in).
 *
 * `tamperOnce()` makes it a relay that changes what it carries: it flips one bit in the payload of
 * a large binary WebSocket frame it sends a client (a quarter of the way in, so inside the relayed
 * bytes and clear of every header), and forwards everything else as it is.
 */
import net from 'node:net'

/** A recording TCP proxy. */
export interface RecordingProxy {
  url: string
  port: number
  /** Everything recorded server → client since the start (or the last `reset`). */
  toClient: () => Buffer
  /** Client → server as the server reads it: WebSocket payloads unmasked. */
  toServer: () => Buffer
  /** Client → server as it crossed the wire (masked). */
  toServerRaw: () => Buffer
  /** Forget what was recorded so far (connections stay up). */
  reset: () => void
  /**
   * Flip one bit in a binary WebSocket frame of at least `minBytes` (32 KiB) to a client: the
   * first such frame after `skip` (0) others; settles once done.
   */
  tamperOnce: (options?: { minBytes?: number, skip?: number }) => Promise<void>
  close: () => void
}

/**
 * Reads one direction of a client's HTTP/1.1 connection and gives back what the server reads of
 * it: request heads and bodies as they are; after a WebSocket upgrade, frame payloads unmasked.
 * Bytes it cannot make sense of are passed on as they are (raw) from there on. One per client
 * connection; usable on its own too (e.g. behind `tcpProxy`'s tap, for its `up` direction).
 */
export class ClientToServerReader {
  private pending: Buffer = Buffer.alloc(0)
  private mode: 'http' | 'ws' | 'raw' = 'http'
  private bodyLeft = 0

  /** Feed `chunk`; returns the bytes the server reads of what is complete so far. */
  push (chunk: Buffer): Buffer[] {
    this.pending = this.pending.byteLength === 0 ? chunk : Buffer.concat([this.pending, chunk])
    const out: Buffer[] = []
    for (;;) {
      if (this.mode === 'raw') {
        out.push(this.pending)
        this.pending = Buffer.alloc(0)
        return out
      }
      if (this.bodyLeft > 0) {
        const body = this.pending.subarray(0, this.bodyLeft)
        out.push(body)
        this.bodyLeft -= body.byteLength
        this.pending = this.pending.subarray(body.byteLength)
        if (this.pending.byteLength === 0) return out
        continue
      }
      if (this.mode === 'http') {
        const end = this.pending.indexOf('\r\n\r\n')
        if (end < 0) return out
        const head = this.pending.subarray(0, end + 4)
        out.push(head)
        this.pending = this.pending.subarray(end + 4)
        const text = head.toString('latin1')
        if (/^upgrade:\s*websocket\s*$/im.test(text)) this.mode = 'ws'
        else if (/^transfer-encoding:/im.test(text)) this.mode = 'raw' // chunked bodies are not parsed: kept as they are from here on
        else this.bodyLeft = Number(/^content-length:\s*(\d+)\s*$/im.exec(text)?.[1] ?? 0)
        continue
      }
      const frame = this.frame()
      if (frame === undefined) return out
      out.push(frame)
    }
  }

  /** One whole WebSocket frame's payload, unmasked, taken off `pending`; undefined until complete. */
  private frame (): Buffer | undefined {
    const b = this.pending
    if (b.byteLength < 2) return undefined
    const masked = ((b[1] as number) & 0x80) !== 0
    let length = (b[1] as number) & 0x7f
    let at = 2
    if (length === 126) {
      if (b.byteLength < 4) return undefined
      length = b.readUInt16BE(2)
      at = 4
    } else if (length === 127) {
      if (b.byteLength < 10) return undefined
      length = Number(b.readBigUInt64BE(2))
      at = 10
    }
    const key = masked ? b.subarray(at, at + 4) : undefined
    if (masked) at += 4
    if (b.byteLength < at + length) return undefined
    const payload = Buffer.from(b.subarray(at, at + length))
    if (key !== undefined) for (let i = 0; i < payload.byteLength; i++) payload[i] = (payload[i] as number) ^ (key[i & 3] as number)
    this.pending = b.subarray(at + length)
    return payload
  }
}

/**
 * Follows one server → client direction (an HTTP response head, then WebSocket frames if it was
 * `101 Switching Protocols`) and knows where each frame's payload lies, by absolute offset, to
 * flip a bit in one. Only header bytes are buffered.
 */
class ServerToClientTamper {
  private offset = 0
  private head = ''
  private mode: 'head' | 'ws' | 'other' = 'head'
  private header: number[] = []
  private payloadLeft = 0
  private target = -1

  constructor (private readonly armed: () => { minBytes: number, take: () => boolean } | undefined) {}

  /** Pass `chunk` on (changed in place when it holds the target byte). */
  pass (chunk: Buffer): void {
    const start = this.offset
    let i = 0
    while (i < chunk.byteLength && this.mode !== 'other') {
      if (this.mode === 'head') {
        this.head += String.fromCharCode(chunk[i++] as number)
        if (this.head.endsWith('\r\n\r\n')) this.mode = /^HTTP\/1\.1 101/.test(this.head) ? 'ws' : 'other'
        continue
      }
      if (this.payloadLeft > 0) {
        const n = Math.min(this.payloadLeft, chunk.byteLength - i)
        this.payloadLeft -= n
        i += n
        continue
      }
      this.header.push(chunk[i++] as number)
      const h = this.header
      if (h.length < 2) continue
      const short = (h[1] as number) & 0x7f
      const size = 2 + (short === 126 ? 2 : short === 127 ? 8 : 0) + (((h[1] as number) & 0x80) !== 0 ? 4 : 0)
      if (h.length < size) continue
      const length = short === 126 ? ((h[2] as number) << 8) | (h[3] as number) : short === 127 ? Number(Buffer.from(h.slice(2, 10)).readBigUInt64BE()) : short
      const opcode = (h[0] as number) & 0x0f
      const arm = this.armed()
      if (arm !== undefined && opcode === 2 && length >= arm.minBytes && arm.take()) this.target = start + i + Math.floor(length / 4)
      this.header = []
      this.payloadLeft = length
    }
    if (this.target >= start && this.target < start + chunk.byteLength) {
      chunk[this.target - start] = (chunk[this.target - start] as number) ^ 0x01
      this.target = -1
    }
    this.offset += chunk.byteLength
  }
}

/** Start a recording proxy in front of `127.0.0.1:port`. */
export async function recordingProxy (port: number): Promise<RecordingProxy> {
  let toClient: Buffer[] = []
  let toServer: Buffer[] = []
  let toServerRaw: Buffer[] = []
  const sockets = new Set<net.Socket>()
  let tamper: { minBytes: number, take: () => boolean } | undefined
  const proxy = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1')
    const reader = new ClientToServerReader()
    const tamperer = new ServerToClientTamper(() => tamper)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
    }
    client.on('data', (chunk: Buffer) => {
      toServerRaw.push(chunk)
      toServer.push(...reader.push(chunk))
      if (!upstream.write(chunk)) client.pause()
    })
    upstream.on('drain', () => client.resume())
    upstream.on('data', (chunk: Buffer) => {
      tamperer.pass(chunk)
      toClient.push(chunk)
      if (!client.write(chunk)) upstream.pause()
    })
    client.on('drain', () => upstream.resume())
    client.on('end', () => upstream.end())
    upstream.on('end', () => client.end())
    const both = (): void => { client.destroy(); upstream.destroy() }
    client.on('error', both)
    upstream.on('error', both)
    client.on('close', both)
    upstream.on('close', both)
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const { port: proxyPort } = proxy.address() as net.AddressInfo
  return {
    url: `http://127.0.0.1:${proxyPort}`,
    port: proxyPort,
    toClient: () => Buffer.concat(toClient),
    toServer: () => Buffer.concat(toServer),
    toServerRaw: () => Buffer.concat(toServerRaw),
    reset: () => { toClient = []; toServer = []; toServerRaw = [] },
    tamperOnce: async ({ minBytes = 32 * 1024, skip = 0 } = {}) => {
      let left = skip
      await new Promise<void>((resolve) => {
        // The tamperer calls `take` for every large frame: it flips the one taken with `true`.
        tamper = { minBytes, take: () => { if (left-- > 0) return false; tamper = undefined; resolve(); return true } }
      })
    },
    close: () => {
      proxy.close()
      for (const s of sockets) s.destroy()
    }
  }
}

/** How many of `samples` occur somewhere in `recorded`. */
export function samplesFound (recorded: Buffer, samples: Uint8Array[]): number {
  return samples.filter((s) => recorded.indexOf(s) >= 0).length
}
