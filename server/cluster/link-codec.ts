/**
 * The messages of a node link (`links.ts`): stream bytes as binary messages, everything else as
 * small JSON text messages, each checked here before use (the other end is authenticated, but a
 * bug or a stray process on the internal port must not reach the relay with a wrong type).
 *
 * A chunk goes one of two ways. Between nodes that both said `heads` in their hello: a 6-byte
 * head message (`2 | dial key | stream`) followed by the chunk as the next binary message, as the
 * relay holds it (no copy on the sending node: a copy per chunk was a Buffer allocation per chunk,
 * and allocations drive V8's full collections). Otherwise (a node of an earlier version): one
 * message `1 | dial key | stream | payload` (one copy on the sending node).
 */
import { MAX_ADDRESS_CHARS, MAX_DIAL_ID_CHARS } from '../../shared/constants.ts'
import { ERROR_CODES, type ErrorCode } from '../../shared/errors.ts'

/** First byte of a binary link message carrying stream bytes after its header. */
export const LINK_KIND_DATA = 1
/** First byte of a head message: the next binary message is the chunk it announces. */
export const LINK_KIND_HEAD = 2
/** Bytes before the payload of a data message, and of a whole head message: kind (1), dial key (4), stream (1). */
export const LINK_DATA_HEADER_BYTES = 6
/** Largest text message a link takes: a dial carries two addresses and a dial id, each escaped at worst. */
export const LINK_TEXT_MAX_BYTES = 16 * 1024
/** The context string of the link's proofs; a new version of the handshake changes it. */
export const LINK_PROOF_CONTEXT = 'starsock-cluster-link-v1'

/** Which stream of a dial: its dialer's (`<dialId>.dialer`, 0) or its listener's (1). */
export type StreamSide = 0 | 1

/** The stream events a stand-in passes on (`queue` goes as a data message). */
export const LINK_EVENT_TYPES = ['accept', 'credit', 'abort', 'error'] as const
/** One of `LINK_EVENT_TYPES`. */
export type LinkEventType = typeof LINK_EVENT_TYPES[number]

/** Handshake, first step of each side: its node id and nonce (the acceptor's with its proof); `heads`: it takes chunks as a head message and the chunk (see the module comment). */
export interface HelloMessage { t: 'hello', node: string, nonce: string, proof?: string, heads?: true }
/** Handshake, second step of each side: the proof of the secret. */
export interface ProofMessage { t: 'proof', proof: string }
/** Handshake, last step (acceptor): the link is open. */
export interface OkMessage { t: 'ok' }
/** A dial to a peer of the receiving node; `k` is the dial key both nodes use for it on this link. */
export interface DialMessage { t: 'dial', k: number, from: string, to: string, id: string, secure: boolean, starsock: boolean, win: number }
/** The listener accepted (`refusal` null) or refused with a string; `win` is the receiving node's window for the dialer's stream. */
export interface ReplyMessage { t: 'reply', k: number, refusal: string | null, starsock: boolean, win: number }
/** The dial failed with an error code. */
export interface FailMessage { t: 'fail', k: number, code: ErrorCode, msg: string }
/** A stream event the relay emitted to a stand-in, for the relay of the other node; `f`: an `error` that failed the stream (not an end after its data). */
export interface EventMessage { t: 'ev', k: number, s: StreamSide, e: LinkEventType, a: number | string | boolean | null, f?: true }
/** `n` bytes of a stream left the receiving node's queue toward the receiver: credit between the nodes. */
export interface AckMessage { t: 'ack', k: number, s: StreamSide, n: number }

/** Every text message of a link. */
export type LinkMessage = HelloMessage | ProofMessage | OkMessage | DialMessage | ReplyMessage | FailMessage | EventMessage | AckMessage

/** A data message, parsed: a view into the received buffer (no copy). */
export interface DataMessage { k: number, s: StreamSide, payload: Uint8Array }
/** A head message, parsed: the chunk it announces is the next binary message. */
export interface DataHead { k: number, s: StreamSide }

/** Encode a data message (one copy: header and payload into one buffer). */
export function encodeData (k: number, s: StreamSide, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(LINK_DATA_HEADER_BYTES + payload.byteLength)
  out[0] = LINK_KIND_DATA
  out.writeUInt32BE(k, 1)
  out[5] = s
  out.set(payload, LINK_DATA_HEADER_BYTES)
  return out
}

/** Encode a head message (`2 | k | s`): the chunk follows as the next binary message. */
export function encodeHead (k: number, s: StreamSide): Buffer {
  const out = Buffer.allocUnsafe(LINK_DATA_HEADER_BYTES)
  out[0] = LINK_KIND_HEAD
  out.writeUInt32BE(k, 1)
  out[5] = s
  return out
}

/** Parse a head message; `undefined` when `data` is not exactly one. */
export function decodeHead (data: Buffer): DataHead | undefined {
  if (data.byteLength !== LINK_DATA_HEADER_BYTES || data[0] !== LINK_KIND_HEAD) return undefined
  const s = data[5]
  if (s !== 0 && s !== 1) return undefined
  return { k: data.readUInt32BE(1), s }
}

/** Parse a binary link message; `undefined` when it is not a well-formed data message. */
export function decodeData (data: Buffer): DataMessage | undefined {
  if (data.byteLength < LINK_DATA_HEADER_BYTES || data[0] !== LINK_KIND_DATA) return undefined
  const s = data[5]
  if (s !== 0 && s !== 1) return undefined
  return { k: data.readUInt32BE(1), s, payload: data.subarray(LINK_DATA_HEADER_BYTES) }
}

/** Encode a text message. */
export function encodeMessage (message: LinkMessage): string {
  return JSON.stringify(message)
}

const isKey = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= 0xffffffff
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isText = (v: unknown, max: number): v is string => typeof v === 'string' && v.length > 0 && v.length <= max
const HEX = /^[0-9a-f]{64}$/

/** Parse and check a text message; `undefined` when it is malformed or of an unknown kind. */
export function decodeMessage (text: string): LinkMessage | undefined {
  if (text.length > LINK_TEXT_MAX_BYTES) return undefined
  let m: unknown
  try { m = JSON.parse(text) } catch { return undefined }
  if (typeof m !== 'object' || m === null) return undefined
  const r = m as Record<string, unknown>
  switch (r.t) {
    // `heads` is an offer: anything but `true` (a later version's `false`, ...) is no offer.
    case 'hello': return isText(r.node, 64) && typeof r.nonce === 'string' && HEX.test(r.nonce) && (r.proof === undefined || (typeof r.proof === 'string' && HEX.test(r.proof)))
      ? { t: 'hello', node: r.node, nonce: r.nonce, ...(r.proof === undefined ? {} : { proof: r.proof }), ...(r.heads === true ? { heads: true } : {}) }
      : undefined
    case 'proof': return typeof r.proof === 'string' && HEX.test(r.proof) ? { t: 'proof', proof: r.proof } : undefined
    case 'ok': return { t: 'ok' }
    case 'dial': return isKey(r.k) && isText(r.from, MAX_ADDRESS_CHARS) && isText(r.to, MAX_ADDRESS_CHARS) && isText(r.id, MAX_DIAL_ID_CHARS) && typeof r.secure === 'boolean' && typeof r.starsock === 'boolean' && isCount(r.win) && r.win > 0 ? r as unknown as DialMessage : undefined
    case 'reply': return isKey(r.k) && (r.refusal === null || isText(r.refusal, 256)) && typeof r.starsock === 'boolean' && isCount(r.win) && r.win > 0 ? r as unknown as ReplyMessage : undefined
    case 'fail': return isKey(r.k) && typeof r.code === 'string' && Object.hasOwn(ERROR_CODES, r.code) && typeof r.msg === 'string' && r.msg.length <= 256 ? r as unknown as FailMessage : undefined
    case 'ev': return isKey(r.k) && (r.s === 0 || r.s === 1) && (LINK_EVENT_TYPES as readonly unknown[]).includes(r.e) && isEventArg(r.a) && (r.f === undefined || r.f === true) ? r as unknown as EventMessage : undefined
    case 'ack': return isKey(r.k) && (r.s === 0 || r.s === 1) && isCount(r.n) ? r as unknown as AckMessage : undefined
    default: return undefined
  }
}

function isEventArg (a: unknown): boolean {
  return a === null || typeof a === 'boolean' || (typeof a === 'number' && Number.isFinite(a)) || (typeof a === 'string' && a.length <= 256)
}
