/**
 * A mux peer written by hand over a real connection: a test crafts the frames it sends (a hostile
 * or an older peer) and reads every frame it gets.
 */
import type { Connection } from '../../client/connection.ts'
import { createPeer, type StarsockPeer } from '../../client/peer.ts'
import type { SockAgent } from '../../client/sock/agent.ts'
import { encodeJsonFrame, FRAME, FrameDecoder, type Frame } from '../../shared/mux-frame.ts'
import { MUX_PROTOCOL, MUX_VERSION, OFFER_KINDS } from '../../shared/sock-protocol.ts'
import { waitFor } from './server.ts'
import type { Closable } from './sockets.ts'

/** A mux peer written by hand over a real connection: it sends the frames a test crafts and records every frame it gets. */
export interface RawMux {
  send: (type: number, id: number, value: unknown) => Promise<void>
  frames: Frame[]
  /** Settles with the first frame (received so far or later) that `match` accepts. */
  next: (what: string, match: (f: Frame) => boolean, ms?: number) => Promise<Frame>
  /** Settles once the other side ended the connection. */
  ended: Promise<void>
  conn: Connection
}

export function rawMux (conn: Connection, hello: Record<string, unknown>): RawMux {
  const frames: Frame[] = []
  const decoder = new FrameDecoder()
  const ended = (async () => {
    try {
      for await (const chunk of conn) frames.push(...decoder.push(chunk))
    } catch {}
  })()
  void conn.write(encodeJsonFrame(FRAME.HELLO, 0, { protocol: MUX_PROTOCOL, version: MUX_VERSION, window: 256 * 1024, interim: true, offers: OFFER_KINDS, ...hello }))
  return {
    conn,
    frames,
    ended,
    send: async (type, id, value) => { await conn.write(encodeJsonFrame(type as 1, id, value)) },
    next: async (what, match, ms = 5000) => {
      await waitFor(what, () => frames.some(match), ms)
      return frames.find(match) as Frame
    }
  }
}

/** Dial `target` from a fresh peer and speak raw mux frames with `hello` (its `features` and more). */
export async function dialRaw (server: string, target: SockAgent, hello: Record<string, unknown>, cleanup: Closable[]): Promise<RawMux & { peer: StarsockPeer }> {
  const peer = await createPeer({ server })
  cleanup.push({ close: async () => await peer.close() })
  await waitFor('the raw peer to know the target', () => peer.peers().some((p) => p.peerId === target.peer.peerId))
  const raw = rawMux(await peer.dial(target.peer.peerId), hello)
  await raw.next('the target\'s HELLO', (f) => f.type === FRAME.HELLO)
  return { ...raw, peer }
}

