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

/** engine.io-client's Node WebSocket transport with a zero masking key. */
class ZeroMaskWebSocket extends NodeWebSocket {
  override createSocket (uri: string, protocols: string | string[] | undefined, opts: Record<string, unknown>): unknown {
    return super.createSocket(uri, protocols, { ...opts, generateMask: zeroMask })
  }
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
