/**
 * A mux peer written by hand over a real connection: a test crafts the frames it sends (a hostile
 * or an older peer) and reads every frame it gets, and the send credit the other side granted.
 */
import type { Connection } from '../../client/connection.ts'
import { createPeer, type StarsockPeer } from '../../client/peer.ts'
import type { SockAgent } from '../../client/sock/agent.ts'
import { decodeJson, decodeWindow, encodeJsonFrame, FRAME, FrameDecoder, type Frame } from '../../shared/mux-frame.ts'
import { MUX_PROTOCOL, MUX_VERSION, OFFER_KINDS } from '../../shared/sock-protocol.ts'
import { waitFor } from './server.ts'
import type { Closable } from './sockets.ts'

/** A mux peer written by hand over a real connection: it sends the frames a test crafts and records every frame it gets. */
export interface RawMux {
  send: (type: number, id: number, value: unknown) => Promise<void>
  frames: Frame[]
  /** Settles with the first frame (received so far or later) that `match` accepts. */
  next: (what: string, match: (f: Frame) => boolean, ms?: number) => Promise<Frame>
  /** Settles once the connection ended: with its error, or `undefined` for a clean end. */
  ended: Promise<unknown>
  conn: Connection
  /** Credit to send on channel `id`: the other side's HELLO window and every WINDOW frame for it. */
  credit: (id: number) => number
}

export function rawMux (conn: Connection, hello: Record<string, unknown>): RawMux {
  const frames: Frame[] = []
  const decoder = new FrameDecoder()
  const granted = new Map<number, number>()
  const ended = (async () => {
    try {
      for await (const chunk of conn) {
        for (const f of decoder.push(chunk)) {
          frames.push(f)
          if (f.type === FRAME.WINDOW) granted.set(f.id, (granted.get(f.id) ?? 0) + decodeWindow(f))
        }
      }
    } catch (err) {
      return err
    }
  })()
  void conn.write(encodeJsonFrame(FRAME.HELLO, 0, { protocol: MUX_PROTOCOL, version: MUX_VERSION, window: 256 * 1024, interim: true, offers: OFFER_KINDS, ...hello }))
  return {
    conn,
    frames,
    ended,
    credit: (id) => {
      const hello = frames.find((f) => f.type === FRAME.HELLO)
      return (hello === undefined ? 0 : (decodeJson(hello) as { window: number }).window) + (granted.get(id) ?? 0)
    },
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

