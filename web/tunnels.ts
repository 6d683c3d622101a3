/**
 * Tunnels from the page: fetch an HTTP page through a peer's `connect`, and serve a file over
 * HTTP from the page through a peer's `bind` (or an accept mapping the page granted).
 */
import type { Channel } from '../client/mux/channel.ts'
import type { SockAgent } from '../client/sock/agent.ts'
import type { Mapping } from '../client/sock/mapping.ts'

const encoder = new TextEncoder()
const decoder = new TextDecoder()
/** Most of a response the page shows. */
const MAX_SHOWN_BYTES = 256 * 1024
/** Longest request head the page's server reads. */
const MAX_REQUEST_HEAD_BYTES = 16 * 1024

/**
 * GET `path` from `host:port` through `peerId`; settles with the raw response (head and body,
 * cut at 256 KiB, and then says so) once the other side ended it cleanly. A tunnel that breaks
 * on the way resets the channel, and the read rejects with its code (`E_PEER_GONE`, ...): a cut
 * response is never shown as a whole one.
 */
export async function fetchThrough (agent: SockAgent, peerId: string, host: string, port: number, path: string): Promise<string> {
  const mapping = await agent.connect(peerId, { host, port, name: `HTTP GET ${path} from the page` })
  try {
    const channel = await mapping.connect()
    await channel.write(encoder.encode(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`))
    const parts: Uint8Array[] = []
    let size = 0
    for await (const chunk of channel) {
      if (size < MAX_SHOWN_BYTES) parts.push(chunk)
      size += chunk.byteLength
    }
    await channel.closeWrite()
    const all = new Uint8Array(Math.min(size, MAX_SHOWN_BYTES))
    let at = 0
    for (const p of parts) {
      const part = p.subarray(0, all.byteLength - at)
      all.set(part, at)
      at += part.byteLength
    }
    const text = decoder.decode(all)
    return size > MAX_SHOWN_BYTES ? `${text}\n\n[the first ${MAX_SHOWN_BYTES} of ${size} bytes are shown]` : text
  } finally {
    mapping.kill('fetch done')
  }
}

/** What the page serves over HTTP: a file, or a small text page. */
export interface Served {
  name: string
  type: string
  data: Uint8Array
}

/** Answer one HTTP request on `channel` with `served`; any request gets the file. */
export async function answerHttp (channel: Channel, served: Served): Promise<void> {
  try {
    let head = ''
    while (!head.includes('\r\n\r\n')) {
      const chunk = await channel.read()
      if (chunk === null) break
      head += decoder.decode(chunk, { stream: true })
      if (head.length > MAX_REQUEST_HEAD_BYTES) throw new Error('request head too long')
    }
    const isHead = head.startsWith('HEAD ')
    const safeName = served.name.replace(/[^\w.-]/g, '_')
    await channel.write(encoder.encode([
      'HTTP/1.1 200 OK',
      `Content-Type: ${served.type}`,
      `Content-Length: ${served.data.byteLength}`,
      `Content-Disposition: inline; filename="${safeName}"`,
      'Connection: close',
      '', ''
    ].join('\r\n')))
    if (!isHead) {
      for (let at = 0; at < served.data.byteLength; at += 64 * 1024) await channel.write(served.data.subarray(at, at + 64 * 1024))
    }
    await channel.closeWrite()
  } catch (err) {
    channel.abort(err)
  }
}

/** Ask `peerId` to listen on `host:port` and answer every connection there with `served`; settles with the mapping once bound. */
export async function serveThrough (agent: SockAgent, peerId: string, host: string, port: number, served: Served): Promise<Mapping> {
  const mapping = await agent.bind(peerId, { host, port, name: `serve ${served.name} from the page` })
  mapping.acceptHandler = (channel) => { void answerHttp(channel, served) }
  return mapping
}
