/**
 * How a Node peer masks the WebSocket frames it sends to the server (`PeerOptions.wsMask`).
 *
 * A WebSocket client must mask every frame it sends with a 4-byte key (RFC 6455 §5.3); the `ws`
 * package, which engine.io-client runs on in Node, draws a random key per frame and masks into a
 * new buffer: one more pass and copy of every byte a peer sends. `ws`'s documented `generateMask`
 * option chooses the key, and with a key of zeros `ws` sends the payload as it is (the frame still
 * says it is masked, the server's `ws` skips the unmasking). Masking exists for intermediaries that
 * misread WebSocket bytes as HTTP, against bytes chosen by an untrusted script in a browser
 * (RFC 6455 §10.3); a Node peer runs no such script (see docs/client.md, "WebSocket masking", for what is left).
 *
 * engine.io-client takes transport classes in `transports`: 'websocket' becomes a subclass of its
 * Node WebSocket transport that adds `generateMask`, 'polling' stays its own. In a browser build
 * engine.io-client's Node transport is its browser transport (the package's `browser` map), which
 * cannot choose a mask: there the names are passed as they are.
 */
import { NodeWebSocket, WebSocket as BrowserWebSocket, transports as engineTransports } from 'engine.io-client'

/**
 * `'zero'`: frames carry the key 0 and no masking pass (Node only); `'random'`: `ws`'s default;
 * `'auto'`: zero where no intermediary can read the frames (a `https:`/`wss:` server, or one on
 * loopback), random otherwise (plain `ws://` across a network).
 */
export type WsMask = 'auto' | 'zero' | 'random'

/** The values `wsMask` takes. */
export const WS_MASKS: readonly WsMask[] = ['auto', 'zero', 'random']

/** The key `'auto'` comes to for a server at `url`: `'zero'` over TLS or on loopback, else `'random'`. */
export function maskFor (mask: WsMask, url: string): 'zero' | 'random' {
  if (mask !== 'auto') return mask
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return 'random'
  }
  if (parsed.protocol === 'https:' || parsed.protocol === 'wss:') return 'zero'
  const host = parsed.hostname.replace(/^\[|\]$/g, '').toLowerCase()
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) ? 'zero' : 'random'
}

/** Whether this engine.io-client build runs on `ws` (Node), where the key can be chosen. */
export const canChooseMask = NodeWebSocket !== BrowserWebSocket

/** `ws` calls this for the key of every frame: four zero bytes (its buffer, filled in place). */
function zeroMask (mask: Uint8Array): void {
  mask[0] = 0
  mask[1] = 0
  mask[2] = 0
  mask[3] = 0
}

/** What `writeParts` reads of a `ws` WebSocket (its internals, pinned with `ws`: test/server-link.test.ts and test/ws-mask.test.ts fail if they move). */
interface WsInternals {
  readyState: number
  extensions: string
  _sender?: { _state?: number, _queue?: unknown[] } | null
  _socket?: { cork: () => void, uncork: () => void, write: (chunk: Uint8Array) => boolean } | null
}

/** `ws`'s `WebSocket.OPEN`, and its `Sender`'s state when it writes straight through (`DEFAULT`: nothing deflating or waiting). */
const WS_OPEN = 1
const SENDER_DEFAULT = 0

/**
 * The header of a final, masked binary WebSocket frame of `length` bytes with the key 0 (RFC 6455
 * §5.2): what `ws` writes before a payload it sends with `zeroMask`.
 */
export function zeroMaskedBinaryHeader (length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0 || length > 0xffff_ffff) throw new RangeError(`a frame of ${length} bytes: lengths from 0 to 2^32 - 1 only`)
  const lengthBytes = length < 126 ? 0 : length < 0x10000 ? 2 : 8
  const header = new Uint8Array(2 + lengthBytes + 4) // the key's four bytes stay 0
  header[0] = 0x82 // FIN, binary
  if (lengthBytes === 0) {
    header[1] = 0x80 | length
  } else if (lengthBytes === 2) {
    header[1] = 0x80 | 126
    header[2] = length >>> 8
    header[3] = length & 0xff
  } else {
    header[1] = 0x80 | 127
    // Lengths stay far under 2^32 (one stream message); the high word is 0.
    header[6] = length >>> 24
    header[7] = (length >>> 16) & 0xff
    header[8] = (length >>> 8) & 0xff
    header[9] = length & 0xff
  }
  return header
}

/** engine.io-client's Node WebSocket transport with a zero masking key. */
export class ZeroMaskWebSocket extends NodeWebSocket {
  override createSocket (uri: string, protocols: string | string[] | undefined, opts: Record<string, unknown>): unknown {
    return super.createSocket(uri, protocols, { ...opts, generateMask: zeroMask })
  }

  /**
   * Write one binary message whose bytes are `parts`, in order, straight to the TCP (or TLS)
   * socket under `ws`: its frame header, then the parts as they are, corked into one `writev`; no
   * join and, with the key 0, no masking pass. Only while `ws` itself would write at once (open,
   * nothing deflating or queued in its sender, no extension), so the message keeps its place
   * after every frame `ws` wrote; `false` otherwise, with nothing written. The caller makes sure
   * nothing waits in engine.io-client's own buffer.
   */
  writeParts (parts: readonly Uint8Array[], length: number): boolean {
    const ws = this.ws as WsInternals | null | undefined
    const sender = ws?._sender
    const socket = ws?._socket
    if (ws === null || ws === undefined || ws.readyState !== WS_OPEN || ws.extensions !== '' || sender === null || sender === undefined || socket === null || socket === undefined) return false
    if (sender._state !== SENDER_DEFAULT || sender._queue === undefined || sender._queue.length > 0) return false
    socket.cork()
    socket.write(zeroMaskedBinaryHeader(length))
    for (const part of parts) socket.write(part)
    socket.uncork()
    return true
  }
}

/** A transport that can write a message of several parts without joining them (`writeParts`). */
export interface GatherTransport {
  writeParts: (parts: readonly Uint8Array[], length: number) => boolean
}

/** Whether `transport` (an engine.io-client transport) is one with `writeParts`. */
export function gathers (transport: unknown): transport is GatherTransport {
  return transport instanceof ZeroMaskWebSocket
}

type TransportName = 'websocket' | 'polling'

/**
 * The `transports` option for socket.io-client: the names as given, or, for a `'zero'` mask in
 * Node, the transport classes in the same order (engine.io-client reads a class's name from it).
 */
export function transportsFor (names: TransportName[], mask: 'zero' | 'random'): TransportName[] | Array<typeof engineTransports.polling | typeof ZeroMaskWebSocket> {
  if (mask === 'random' || !canChooseMask) return names
  return names.map((name) => name === 'websocket' ? ZeroMaskWebSocket : engineTransports[name])
}
