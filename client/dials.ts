/**
 * Dials out and in: the two one-way streams of a dial (`<dialId>.dialer`, `<dialId>.listener`)
 * opened in the order the server needs, and the connection made of them.
 */
import { errorFromWire, type StarsockError, wireError } from '../shared/errors.ts'
import { EVENTS } from '../shared/events.ts'
import { parseAddress } from '../shared/wsstar-address.ts'
import { Connection } from './connection.ts'
import { randomHex } from './identity.ts'
import type { Requester } from './server-link.ts'
import type { StreamTable } from './stream-table.ts'

/** Dial timeout assumed of a server that announces none (the original's has none; starsock's default). */
const DEFAULT_DIAL_TIMEOUT_MS = 10_000
/** How much longer than the server's own dial timeout a dial waits, so the server's answer always comes first. */
const DIAL_TIMEOUT_MARGIN_MS = 2000

/** Dials of one peer, joined under `addr`. */
export class Dials {
  constructor (
    private readonly link: Requester,
    private readonly streams: StreamTable,
    private readonly addr: string,
    private readonly requestTimeoutMs: number,
    /** The dial timeout the server announced, if it did. */
    private readonly serverDialTimeoutMs: () => number | undefined
  ) {}

  /** Dial `to` (an address); settles with the connection once the other side accepted. */
  async dial (to: string, options: { signal?: AbortSignal, timeoutMs?: number } = {}): Promise<Connection> {
    const dialId = randomHex(16)
    const tx = this.streams.openSend(`${dialId}.dialer`)
    // Registered before the dial, opened (accept) after it: an error the server sends right
    // behind the reply must find its stream.
    const rx = this.streams.openReceive(`${dialId}.listener`, false)
    const timeoutMs = options.timeoutMs ?? Math.max(this.requestTimeoutMs, (this.serverDialTimeoutMs() ?? DEFAULT_DIAL_TIMEOUT_MS) + DIAL_TIMEOUT_MARGIN_MS)
    let reply: unknown[]
    try {
      reply = await this.link.request(EVENTS.DIAL, [this.addr, to, dialId], { signal: options.signal, timeoutMs })
    } catch (err) {
      // The server may still complete the dial: tell it this side gave up on both streams.
      const wire = wireError('E_STREAM_ABORTED', 'Dial abandoned')
      tx.error(wire)
      rx.abort(wire, err as StarsockError)
      throw err
    }
    if (reply[0] !== undefined && reply[0] !== null) {
      const err = errorFromWire(reply[0])
      tx.fail(err)
      rx.fail(err)
      throw err
    }
    rx.open()
    return new Connection(to, parseAddress(to)?.peerId ?? '', true, rx, tx)
  }

  /**
   * `ss-incomming(dialId, from, ack)`: accept and hand the connection to `handler`, then to
   * `accepted`; without a handler, refuse. Returns the connection, or `undefined` when refused or malformed.
   */
  incoming (dialId: unknown, from: unknown, ack: unknown, handler: ((conn: Connection) => void) | undefined, accepted: (conn: Connection) => void): Connection | undefined {
    if (typeof ack !== 'function') return undefined
    const reply = ack as (err?: string) => void
    if (typeof dialId !== 'string' || typeof from !== 'string') {
      reply(wireError('E_BAD_REQUEST', 'Bad incoming dial'))
      return undefined
    }
    if (handler === undefined) {
      reply(wireError('E_DIAL_REFUSED', 'This peer takes no connections'))
      return undefined
    }
    const rx = this.streams.openReceive(`${dialId}.dialer`)
    const tx = this.streams.openSend(`${dialId}.listener`)
    reply()
    const conn = new Connection(from, parseAddress(from)?.peerId ?? '', false, rx, tx)
    handler(conn)
    accepted(conn)
    return conn
  }
}
