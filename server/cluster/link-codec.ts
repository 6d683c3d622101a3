/**
 * The messages of a node link (`links.ts`): stream bytes as binary messages
 * (`kind | dial key | stream | payload`), everything else as small JSON text messages, each
 * checked here before use (the other end is authenticated, but a bug or a stray process on the
 * internal port must not reach the relay with a wrong type).
 */
import { ERROR_CODES, type ErrorCode } from '../../shared/errors.ts'

/** First byte of a binary link message carrying stream bytes. */
export const LINK_KIND_DATA = 1
/** Bytes before the payload of a data message: kind (1), dial key (4), stream (1). */
export const LINK_DATA_HEADER_BYTES = 6
/** Largest text message a link takes (a dial carries two addresses and a dial id). */
export const LINK_TEXT_MAX_BYTES = 4096
/** The context string of the link's proofs; a new version of the handshake changes it. */
export const LINK_PROOF_CONTEXT = 'starsock-cluster-link-v1'

/** Which stream of a dial: its dialer's (`<dialId>.dialer`, 0) or its listener's (1). */
export type StreamSide = 0 | 1

/** The stream events a stand-in passes on (`queue` goes as a data message). */
export const LINK_EVENT_TYPES = ['accept', 'credit', 'abort', 'error'] as const
/** One of `LINK_EVENT_TYPES`. */
export type LinkEventType = typeof LINK_EVENT_TYPES[number]

/** Handshake, first step (initiator): its node id and nonce. */
export interface HelloMessage { t: 'hello', node: string, nonce: string, proof?: string }
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
/** A stream event the relay emitted to a stand-in, for the relay of the other node. */
export interface EventMessage { t: 'ev', k: number, s: StreamSide, e: LinkEventType, a: number | string | boolean | null }
/** `n` bytes of a stream left the receiving node's queue toward the receiver: credit between the nodes. */
export interface AckMessage { t: 'ack', k: number, s: StreamSide, n: number }

/** Every text message of a link. */
export type LinkMessage = HelloMessage | ProofMessage | OkMessage | DialMessage | ReplyMessage | FailMessage | EventMessage | AckMessage

/** A data message, parsed: a view into the received buffer (no copy). */
export interface DataMessage { k: number, s: StreamSide, payload: Uint8Array }

/** Encode a data message (one copy: header and payload into one buffer). */
export function encodeData (k: number, s: StreamSide, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(LINK_DATA_HEADER_BYTES + payload.byteLength)
  out[0] = LINK_KIND_DATA
  out.writeUInt32BE(k, 1)
  out[5] = s
  out.set(payload, LINK_DATA_HEADER_BYTES)
  return out
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
    case 'hello': return isText(r.node, 64) && typeof r.nonce === 'string' && HEX.test(r.nonce) && (r.proof === undefined || (typeof r.proof === 'string' && HEX.test(r.proof))) ? r as unknown as HelloMessage : undefined
    case 'proof': return typeof r.proof === 'string' && HEX.test(r.proof) ? { t: 'proof', proof: r.proof } : undefined
    case 'ok': return { t: 'ok' }
    case 'dial': return isKey(r.k) && isText(r.from, 1024) && isText(r.to, 1024) && isText(r.id, 256) && typeof r.secure === 'boolean' && typeof r.starsock === 'boolean' && isCount(r.win) && r.win > 0 ? r as unknown as DialMessage : undefined
    case 'reply': return isKey(r.k) && (r.refusal === null || isText(r.refusal, 256)) && typeof r.starsock === 'boolean' && isCount(r.win) && r.win > 0 ? r as unknown as ReplyMessage : undefined
    case 'fail': return isKey(r.k) && typeof r.code === 'string' && r.code in ERROR_CODES && typeof r.msg === 'string' && r.msg.length <= 256 ? r as unknown as FailMessage : undefined
    case 'ev': return isKey(r.k) && (r.s === 0 || r.s === 1) && (LINK_EVENT_TYPES as readonly unknown[]).includes(r.e) && isEventArg(r.a) ? r as unknown as EventMessage : undefined
    case 'ack': return isKey(r.k) && (r.s === 0 || r.s === 1) && isCount(r.n) ? r as unknown as AckMessage : undefined
    default: return undefined
  }
}

function isEventArg (a: unknown): boolean {
  return a === null || typeof a === 'boolean' || (typeof a === 'number' && Number.isFinite(a)) || (typeof a === 'string' && a.length <= 256)
}
