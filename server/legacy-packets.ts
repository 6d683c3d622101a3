/**
 * Less work per packet from legacy (engine.io 3) clients.
 *
 * socket.io 4 reads the namespace of every packet such a client sends through a URL parser
 * (`Client._parseNamespace`: `new URL(nsp, ...)` and its query turned into an object), because
 * socket.io 2 clients put the connect query there. For the default namespace without a query,
 * which is what every packet of a websocket-star client names, the answer is known. Measured on
 * a legacy stream, that parse was about two thirds of the server's time decoding a 64 KiB chunk.
 *
 * This reaches into socket.io internals (`socket.client._parseNamespace`, `socket.conn.protocol`,
 * socket.io 4.8): test/unit/legacy-packets.test.ts fails if they move.
 */
import type { Server, Socket } from 'socket.io'

/** What `Client._parseNamespace` answers: the namespace and the connect payload. */
interface ParsedNamespace { namespace: string, authPayload: Record<string, unknown> }

/** socket.io's `Client`, as much of it as this touches. */
interface LegacyClient {
  _parseNamespace?: (packet: { nsp: string }) => ParsedNamespace
}

/** `nsp` of a packet to the default namespace without a query. */
const DEFAULT_NAMESPACE = '/'

/**
 * Give `socket`'s client the quick answer for the default namespace when it speaks engine.io 3;
 * `false` when it does not, or socket.io's internals are not where this expects them.
 */
export function quickLegacyNamespace (socket: Socket): boolean {
  const client = socket.client as unknown as LegacyClient
  const slow = client._parseNamespace
  if ((socket.conn as unknown as { protocol?: number }).protocol !== 3 || typeof slow !== 'function') return false
  // The same answer `new URL('/', base)` gives: path '/', no query (an object without a prototype).
  client._parseNamespace = (packet) => packet.nsp === DEFAULT_NAMESPACE
    ? { namespace: DEFAULT_NAMESPACE, authPayload: Object.create(null) as Record<string, unknown> }
    : slow.call(client, packet)
  return true
}

/** Apply `quickLegacyNamespace` to every socket `io` accepts (after its connect packet). */
export function quickLegacyNamespaces (io: Server): void {
  io.on('connection', quickLegacyNamespace)
}
