/**
 * Dials out and in: the two one-way streams of a dial (`<dialId>.dialer`, `<dialId>.listener`)
 * opened in the order the server needs, and the connection made of them: secure (the Noise
 * channel of `noise/secure-channel.ts` over the two streams) or plaintext.
 *
 * A secure dial runs the initiator's handshake after the server's ack and settles only once the
 * listener proved the peer id dialed; it never falls back to plaintext. The listener classifies
 * the dialer by its first chunk: the secure preamble starts the responder's handshake; anything
 * else is a plaintext dialer (legacy, or a starsock dialer with `secure: false`), and the chunk is
 * given back to the connection's reader. So that a dialer that waits for the listener to speak
 * first never hangs, a starsock server tells a starsock listener in `ss-incomming` whether the
 * dialer said it opens a secure channel (`IncomingHint`): the listener then waits for the first
 * chunk up to the handshake timeout, else only a short grace (`PLAINTEXT_GRACE_MS`), and
 * `CLASSIFY_TIMEOUT_MS` with no hint (another server). The hint only sets that wait: the bytes
 * decide, so a lying server costs a wait or a failed dial, never a plaintext connection the
 * dialer made secure.
 */
import { errorFromWire, StarsockError, wireError } from '../shared/errors.ts'
import { EVENTS } from '../shared/events.ts'
import type { Logger } from '../shared/logger.ts'
import { parseAddress } from '../shared/wsstar-address.ts'
import type { PrivateKey } from '@libp2p/interface'
import { Connection, type ByteReader } from './connection.ts'
import { randomHex } from './identity.ts'
import type { Aead } from './noise/aead.ts'
import type { Dh } from './noise/dh.ts'
import { makeStaticKey, type StaticKey } from './noise/handshake.ts'
import { HANDSHAKE_TIMEOUT_MS, secureInbound, secureOutbound, startsSecure, type SecureChannel } from './noise/secure-channel.ts'
import type { Requester } from './server-link.ts'
import type { ReceiveStream } from './stream.ts'
import type { StreamTable } from './stream-table.ts'

/** Dial timeout assumed of a server that announces none (the original's has none; starsock's default). */
const DEFAULT_DIAL_TIMEOUT_MS = 10_000
/** How much longer than the server's own dial timeout a dial waits, so the server's answer always comes first. */
const DIAL_TIMEOUT_MARGIN_MS = 2000
/** How long a listener waits for the first chunk of a dialer the server says is plaintext, before it hands the connection over. */
export const PLAINTEXT_GRACE_MS = 250
/** How long a listener waits for the first chunk of a dialer the server said nothing about (a server without hints). */
export const CLASSIFY_TIMEOUT_MS = 2000

/** What a starsock server tells a starsock listener about the dialer in `ss-incomming` (third argument); only a hint. */
export interface IncomingHint {
  /** The dialer is a starsock client (it said `starsock:hello`). */
  starsock: boolean
  /** The dialer said, in its `ss-dial`, it opens a secure channel. */
  secure: boolean
}

/** What a starsock server tells a starsock dialer about the listener in the dial's ack (second argument); only a hint. */
export interface DialHint {
  /** The listener is a starsock client: a legacy one cannot answer a secure channel. */
  starsock: boolean
}

/** What a handshake needs of this peer. */
interface Keys { privateKey: PrivateKey, aead: Aead, dh: Dh, staticKey: StaticKey }

/** Options of `dial`. */
export interface DialOptions {
  signal?: AbortSignal
  timeoutMs?: number
  /** Open the Noise secure channel (the default of the peer: `createPeer({ secure })`, itself `true`). */
  secure?: boolean
}

/** What secure connections need: this peer's identity key and the AEAD, and whether dials are secure unless told. */
export interface DialSecurity {
  privateKey: PrivateKey
  aead: Aead
  dh: Dh
  /** Default of `DialOptions.secure`. */
  secure: boolean
  /** Whether the server is a starsock server (it takes `ss-dial`'s fourth argument); a legacy server gets the original three. */
  starsockServer: () => boolean
  logger?: Logger
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A plaintext dialer's first chunk, given back before the rest of its stream. */
class GivenBack implements ByteReader {
  constructor (private readonly rx: ReceiveStream, private first: Uint8Array | undefined) {}
  get done (): boolean { return this.first === undefined && this.rx.done }
  get receivedBytes (): number { return this.rx.receivedBytes }
  get bufferedBytes (): number { return this.rx.bufferedBytes + (this.first?.byteLength ?? 0) }
  read (signal?: AbortSignal): Promise<Uint8Array | null> {
    const first = this.first
    if (first === undefined) return this.rx.read(signal)
    this.first = undefined
    return Promise.resolve(first)
  }

  abort (reason: string, local: StarsockError): void {
    this.first = undefined
    this.rx.abort(reason, local)
  }
}

/** Dials of one peer, joined under `addr`. */
export class Dials {
  /** This peer's Noise static key and its signed payload: made at the first secure connection, then kept (one signature per peer). */
  private staticKey: Promise<StaticKey> | undefined

  constructor (
    private readonly link: Requester,
    private readonly streams: StreamTable,
    private readonly addr: string,
    private readonly requestTimeoutMs: number,
    /** The dial timeout the server announced, if it did. */
    private readonly serverDialTimeoutMs: () => number | undefined,
    /** Without it (tests of the plain streams), every connection is plaintext. */
    private readonly security?: DialSecurity
  ) {}

  /**
   * Dial `to` (an address); settles with the connection once the other side accepted, and for a
   * secure dial once it proved it is the peer in `to`.
   */
  async dial (to: string, options: DialOptions = {}): Promise<Connection> {
    const security = this.security
    const secure = security !== undefined && (options.secure ?? security.secure)
    if (options.secure === true && security === undefined) throw new StarsockError('E_SECURE_REQUIRED', 'This peer has no keys for a secure channel')
    const started = Date.now()
    // The keys first: a failure here leaves no stream behind.
    const keys = secure ? await this.keys(security) : undefined
    const dialId = randomHex(16)
    const tx = this.streams.openSend(`${dialId}.dialer`)
    // Registered before the dial, opened (accept) after it: an error the server sends right
    // behind the reply must find its stream.
    const rx = this.streams.openReceive(`${dialId}.listener`, false)
    const timeoutMs = options.timeoutMs ?? Math.max(this.requestTimeoutMs, (this.serverDialTimeoutMs() ?? DEFAULT_DIAL_TIMEOUT_MS) + DIAL_TIMEOUT_MARGIN_MS)
    // A starsock server learns the dialer's intent (for the listener's hint); a legacy one gets its three arguments.
    const args = security?.starsockServer() === true ? [this.addr, to, dialId, { secure }] : [this.addr, to, dialId]
    let reply: unknown[]
    try {
      reply = await this.link.request(EVENTS.DIAL, args, { signal: options.signal, timeoutMs })
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
    const remotePeer = parseAddress(to)?.peerId ?? ''
    if (!secure) {
      rx.open()
      return new Connection(to, remotePeer, true, rx, tx)
    }
    const hint = isObject(reply[1]) ? reply[1] as Partial<DialHint> : undefined
    if (hint?.starsock === false) {
      // Only a hint, trusted only to fail: a secure dial never goes plaintext.
      const err = new StarsockError('E_SECURE_REQUIRED', `${to} is a legacy websocket-star peer, the server says (unverified: only the server claims it): it cannot open a secure channel. In plaintext (dial with { secure: false }, CLI --insecure, on both sides) the server could read and change everything`)
      const wire = wireError(err.code, err.message)
      tx.error(wire)
      rx.abort(wire, err)
      throw err
    }
    rx.open()
    // A dial's own timeout bounds its handshake too (what is left of it); else the handshake's default.
    const timeout = options.timeoutMs !== undefined ? { timeoutMs: Math.max(1, options.timeoutMs - (Date.now() - started)) } : {}
    const channel = await secureOutbound(rx, tx, { ...keys as Keys, ...timeout, expectedPeer: remotePeer, signal: options.signal, remote: to, peerIsStarsock: hint?.starsock === true })
    return new Connection(to, channel.remotePeer, true, channel.reader, channel.writer, true)
  }

  /**
   * `ss-incomming(dialId, from, [hint], ack)`: accept, classify the dialer (secure or plaintext)
   * and hand the connection to `handler`, then to `accepted`; without a handler, refuse. A
   * secure dialer must prove the peer id in `from` (else `E_PEER_ID_MISMATCH`, and the handler
   * never sees it). Settles with the connection, or `undefined` when refused, malformed or failed.
   */
  async incoming (dialId: unknown, from: unknown, hintOrAck: unknown, ackOrNothing: unknown, handlerNow: () => ((conn: Connection) => void) | undefined, accepted: (conn: Connection) => void): Promise<Connection | undefined> {
    const ack = typeof hintOrAck === 'function' ? hintOrAck : ackOrNothing
    const hint = typeof hintOrAck === 'function' || !isObject(hintOrAck) ? undefined : hintOrAck as Partial<IncomingHint>
    if (typeof ack !== 'function') return undefined
    const reply = ack as (err?: string) => void
    if (typeof dialId !== 'string' || typeof from !== 'string') {
      reply(wireError('E_BAD_REQUEST', 'Bad incoming dial'))
      return undefined
    }
    if (handlerNow() === undefined) {
      reply(wireError('E_DIAL_REFUSED', 'This peer takes no connections'))
      return undefined
    }
    const rx = this.streams.openReceive(`${dialId}.dialer`)
    const tx = this.streams.openSend(`${dialId}.listener`)
    reply()
    const fromPeer = parseAddress(from)?.peerId ?? ''
    let conn: Connection | undefined
    if (this.security === undefined) {
      conn = new Connection(from, fromPeer, false, rx, tx)
    } else {
      conn = await this.classify(rx, tx, from, fromPeer, hint, this.security)
      if (conn === undefined) return undefined
    }
    // The handler of now: classification may take seconds, and `handle(undefined)` meanwhile refuses.
    const handler = handlerNow()
    if (handler === undefined) {
      conn.abort(new StarsockError('E_DIAL_REFUSED', 'This peer takes no connections'))
      return undefined
    }
    try {
      handler(conn)
    } catch (err) {
      // The application's fault: the dialer gets a coded error rather than a connection nobody reads.
      conn.abort(new StarsockError('E_INTERNAL', 'The listener\'s connection handler failed'))
      throw err
    }
    accepted(conn)
    return conn
  }

  /** What a handshake needs of this peer: its keys and primitives. */
  private async keys (security: DialSecurity): Promise<Keys> {
    // A failed key is not kept: the next connection tries again.
    const made = this.staticKey ??= makeStaticKey(security.privateKey, security.dh)
    let staticKey: StaticKey
    try {
      staticKey = await made
    } catch (err) {
      if (this.staticKey === made) this.staticKey = undefined
      throw new StarsockError('E_SECURE_HANDSHAKE', `could not make this peer's Noise static key: ${(err as Error).message}`, { cause: err })
    }
    return { privateKey: security.privateKey, aead: security.aead, dh: security.dh, staticKey }
  }

  /** The dialer's first chunk decides: secure (after the responder's handshake) or plaintext; `undefined` when it failed. */
  private async classify (rx: ReceiveStream, tx: ReturnType<StreamTable['openSend']>, from: string, fromPeer: string, hint: Partial<IncomingHint> | undefined, security: DialSecurity): Promise<Connection | undefined> {
    const announcedSecure = hint?.secure === true
    const waitMs = hint === undefined ? CLASSIFY_TIMEOUT_MS : announcedSecure ? HANDSHAKE_TIMEOUT_MS : PLAINTEXT_GRACE_MS
    let first: Uint8Array | null
    try {
      first = await rx.read(AbortSignal.timeout(waitMs))
    } catch (err) {
      if (rx.done) {
        // The dialer's stream failed: close ours too, or it stays open here and at the server.
        const wire = wireError('E_STREAM_ABORTED', 'The dialer failed before it sent anything')
        tx.error(wire)
        rx.abort(wire, err as StarsockError)
        security.logger?.debug({ from, err: (err as Error).message }, 'incoming dial failed before its first chunk')
        return undefined
      }
      if (announcedSecure) {
        const failure = new StarsockError('E_SECURE_HANDSHAKE', `${from} announced a secure channel and sent nothing within ${waitMs} ms`)
        const wire = wireError(failure.code, failure.message)
        tx.error(wire)
        rx.abort(wire, failure)
        security.logger?.debug({ from }, failure.message)
        return undefined
      }
      // Silent so far: a dialer that waits for the listener to speak first; plaintext.
      return new Connection(from, fromPeer, false, rx, tx)
    }
    if (first === null || !startsSecure(first)) return new Connection(from, fromPeer, false, first === null ? rx : new GivenBack(rx, first), tx)
    let keys: Keys
    try {
      keys = await this.keys(security)
    } catch (err) {
      const failure = err as StarsockError
      const wire = wireError(failure.code, failure.message)
      tx.error(wire)
      rx.abort(wire, failure)
      security.logger?.debug({ from, err: failure.message }, 'incoming secure dial failed: no static key')
      return undefined
    }
    let channel: SecureChannel
    try {
      // The dialer must prove the id the server reported: `remoteAddr` and `remotePeer` never disagree.
      // (secureInbound aborts both streams when it fails.)
      channel = await secureInbound(rx, tx, first, { ...keys, expectedPeer: fromPeer, remote: from })
    } catch (err) {
      security.logger?.debug({ from, err: (err as Error).message }, 'incoming secure handshake failed')
      return undefined
    }
    return new Connection(from, channel.remotePeer, false, channel.reader, channel.writer, true)
  }
}
