/**
 * Tunnels from the page: fetch an HTTP page through a peer's `connect`, and serve a file over
 * HTTP from the page through a peer's `bind` (or an accept mapping the page granted).
 */
import type { Channel } from '../client/mux/channel.ts'
import type { SockAgent } from '../client/sock/agent.ts'
import type { Mapping } from '../client/sock/mapping.ts'
import { badge, describeError } from './security.ts'
import { byId, formatBytes } from './dom.ts'
import type { AgentPart, PageContext } from './context.ts'

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

function problem (ctx: PageContext, where: HTMLElement, err: unknown, peerId?: string): void {
  where.textContent = describeError(err)
  where.dataset.state = 'failed'
  if (peerId !== undefined) ctx.book.failed(peerId, err)
}

/** The fetch and serve forms, and the answer to accept channels of mappings granted here. */
export function setupTunnels (ctx: PageContext): AgentPart {
  let served: Served | undefined

  byId<HTMLFormElement>('fetch-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const out = byId('fetch-result')
    out.textContent = 'fetching…'
    delete out.dataset.state
    void (async () => {
      let peerId: string | undefined
      try {
        peerId = ctx.needPeer()
        const text = await fetchThrough(ctx.needAgent(), peerId, byId<HTMLInputElement>('fetch-host').value, Number(byId<HTMLInputElement>('fetch-port').value), byId<HTMLInputElement>('fetch-path').value || '/')
        out.textContent = text
        out.dataset.state = 'done'
      } catch (err) {
        problem(ctx, out, err, peerId)
      }
    })()
  })

  byId<HTMLFormElement>('serve-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const out = byId('serve-result')
    const file = byId<HTMLInputElement>('serve-file').files?.[0]
    if (file === undefined) return
    out.textContent = 'asking the peer to listen…'
    delete out.dataset.state
    void (async () => {
      let peerId: string | undefined
      try {
        peerId = ctx.needPeer()
        served = { name: file.name, type: file.type === '' ? 'application/octet-stream' : file.type, data: new Uint8Array(await file.arrayBuffer()) }
        const mapping = await serveThrough(ctx.needAgent(), peerId, byId<HTMLInputElement>('serve-host').value, Number(byId<HTMLInputElement>('serve-port').value), served)
        out.replaceChildren(`Serving ${file.name} (${formatBytes(served.data.byteLength)}) on port ${mapping.bound?.port ?? '?'} of ${mapping.peerId} `, badge({ secure: mapping.secure }))
        out.dataset.port = String(mapping.bound?.port ?? '')
        out.dataset.state = 'done'
      } catch (err) {
        problem(ctx, out, err, peerId)
      }
    })()
  })

  /** What the page answers on accept channels of a mapping it granted: the served file, or a greeting. */
  const greeting = (): Served => served ?? { name: 'hello.txt', type: 'text/plain; charset=utf-8', data: new TextEncoder().encode(`hello from the starsock page ${ctx.peer?.peerId ?? ''}\n`) }

  // Accept channels of an accept offer granted here: the page answers each with its greeting.
  return { onAccept: (channel) => { void answerHttp(channel, greeting()) } }
}
