/**
 * Bench only: counts the bytes a process copies, by the code that copies them, so the `copies`
 * scenario can report copies per byte of tunnel payload. Never imported by `client/`, `server/`
 * or `shared/`: the bench worker installs it before it loads the peer.
 *
 * It wraps the copying operations JavaScript code reaches: `%TypedArray%.prototype.set` and
 * `.slice`, `Buffer.concat`, `Buffer.prototype.copy`, `Buffer.from` of a view or an array, and
 * the masking copy of the `ws` client (through `bufferutil`, when it masks into a new buffer
 * rather than in place). Messages are counted where they leave: the engine's `write`, and the
 * gathered writes of `client/ws-mask.ts` that go past it. Copies made inside Node or V8 without these (a `new Uint8Array(view)`)
 * are not seen. A copy of at least `ATTRIBUTE_MIN_BYTES` is charged to the first stack frame
 * outside this file: our module (`client/mux/muxer.ts flush`) or a dependency (`ws`).
 */
import { Socket as EngineSocket } from 'engine.io-client'
import { createRequire } from 'node:module'
import { ZeroMaskWebSocket } from '../client/ws-mask.ts'

/** The repository's root (stack frames name files by URL or path): a checkout in a folder named `bench` must not look like `bench/`. */
const ROOT = new URL('..', import.meta.url)

/** Copies smaller than this are summed under `small` (a stack trace each would cost too much). */
const ATTRIBUTE_MIN_BYTES = 512

const byWhere = new Map<string, number>()
/**
 * Binary engine.io messages this process sent to the server (stream data: raw frames, and the
 * attachments of `queue` events): how many, and their bytes.
 */
const emitted = { messages: 0, bytes: 0 }
let installed = false

function where (): string {
  const holder: { stack?: string } = {}
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 12
  Error.captureStackTrace(holder, where)
  Error.stackTraceLimit = limit
  for (const line of (holder.stack ?? '').split('\n').slice(1)) {
    if (line.includes('copy-meter.ts')) continue
    const m = /at (?:(\S+) \()?(.*?):\d+:\d+\)?$/.exec(line.trim())
    if (m === null) continue
    const fn = m[1] ?? ''
    const file = m[2] ?? ''
    const nm = /.*node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(file) // the innermost package
    if (nm !== null) return nm[1] as string
    if (file.startsWith('node:')) return file
    const ours = /\/((?:client|shared|server|bench)\/[^/]+(?:\/[^/]+)?\.ts)/.exec(file.replace(ROOT.href, '/').replace(ROOT.pathname, '/'))
    return ours !== null ? `${ours[1] as string} ${fn.replace(/^.*\./, '')}`.trim() : file
  }
  return 'unknown'
}

function count (bytes: number): void {
  if (bytes <= 0) return
  const key = bytes >= ATTRIBUTE_MIN_BYTES ? where() : 'small'
  byWhere.set(key, (byWhere.get(key) ?? 0) + bytes)
}

/** Start counting in this process (once). */
export function installCopyMeter (): void {
  if (installed) return
  installed = true
  const typed = Object.getPrototypeOf(Uint8Array.prototype) as Uint8Array
  const set = typed.set
  typed.set = function (this: Uint8Array, source: ArrayLike<number>, offset?: number) {
    count(ArrayBuffer.isView(source) ? (source as Uint8Array).byteLength : (source.length ?? 0) * this.BYTES_PER_ELEMENT)
    return set.call(this, source, offset)
  }
  const slice = typed.slice
  typed.slice = function (this: Uint8Array, start?: number, end?: number) {
    const out = slice.call(this, start, end)
    count(out.byteLength)
    return out
  }
  const concat = Buffer.concat
  Buffer.concat = function (list: readonly Uint8Array[], totalLength?: number) {
    const out = concat.call(Buffer, list, totalLength)
    count(out.byteLength)
    return out
  }
  const copy = Buffer.prototype.copy
  Buffer.prototype.copy = function (this: Buffer, target: Uint8Array, targetStart?: number, sourceStart?: number, sourceEnd?: number) {
    const n = copy.call(this, target, targetStart, sourceStart, sourceEnd)
    count(n)
    return n
  }
  const from = Buffer.from as (...args: unknown[]) => Buffer
  Buffer.from = function (...args: unknown[]) {
    const out = from.apply(Buffer, args)
    if (ArrayBuffer.isView(args[0]) || Array.isArray(args[0])) count(out.byteLength)
    return out
  } as typeof Buffer.from
  try {
    // The same `bufferutil` instance the `ws` client (under socket.io-client) calls at send time.
    const requireEio = createRequire(createRequire(createRequire(import.meta.url).resolve('socket.io-client')).resolve('engine.io-client'))
    const requireWs = createRequire(requireEio.resolve('ws'))
    const bufferUtil = requireWs('bufferutil') as { mask: (source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number) => void }
    const mask = bufferUtil.mask
    bufferUtil.mask = (source, m, output, offset, length) => {
      if (output !== source) byWhere.set('ws (masking)', (byWhere.get('ws (masking)') ?? 0) + length)
      mask(source, m, output, offset, length)
    }
  } catch {} // no bufferutil: ws masks in JavaScript, not seen here
  // The engine.io-client module socket.io-client runs on: every message goes through its `write`,
  // the raw data frames a peer sends itself (client/server-link.ts) and each socket.io packet,
  // where a binary event's attachment is a message of its own. Binary messages are stream data.
  let proto = EngineSocket.prototype as object | null
  while (proto !== null && !Object.prototype.hasOwnProperty.call(proto, 'write')) proto = Object.getPrototypeOf(proto) as object | null
  if (proto !== null) {
    const owner = proto as { write: (msg: unknown, ...rest: unknown[]) => unknown }
    const write = owner.write
    owner.write = function (this: unknown, msg: unknown, ...rest: unknown[]) {
      const bytes = msg instanceof Uint8Array || msg instanceof ArrayBuffer ? msg.byteLength : -1
      if (bytes >= 0) {
        emitted.messages++
        emitted.bytes += bytes
      }
      return write.call(this, msg, ...rest)
    }
  }
  // A message of several parts (a multiplexer's batch) goes past the engine, straight to the
  // WebSocket's socket, where the transport can (client/ws-mask.ts): a message too.
  const gather = ZeroMaskWebSocket.prototype
  const writeParts = gather.writeParts
  gather.writeParts = function (this: ZeroMaskWebSocket, parts: readonly Uint8Array[], length: number) {
    const written = writeParts.call(this, parts, length)
    if (written) {
      emitted.messages++
      emitted.bytes += length
    }
    return written
  }
}

/** Binary messages sent since the last call (how many, and their bytes); starts counting afresh. */
export function takeMessages (): { messages: number, bytes: number } {
  const out = { ...emitted }
  emitted.messages = 0
  emitted.bytes = 0
  return out
}

/** Bytes copied since the last call, by where; starts counting afresh. */
export function takeCopies (): Record<string, number> {
  const out = Object.fromEntries([...byWhere.entries()].sort((a, b) => b[1] - a[1]))
  byWhere.clear()
  return out
}
