/**
 * Bench only: counts the bytes the Node cipher writes, by the code that asks, beside the copies
 * `bench/copy-meter.ts` counts. Sealing a message writes its every byte once more (the
 * ciphertext is a new buffer), and so does opening one: by nature, not by our choice, but a write
 * of every byte all the same, so the copies rows of an encrypted tunnel show it as its own figure
 * rather than leave it out (`node:crypto` writes it in C++, where the copy meter cannot see it).
 *
 * It wraps `update` and `final` of `node:crypto`'s `Cipheriv` and `Decipheriv` (what
 * `createCipheriv` and `createDecipheriv` return) and charges their output to the first stack
 * frame outside this file. A JavaScript cipher (`@noble/ciphers`, the browser's) is not seen.
 */
import * as nodeCrypto from 'node:crypto'

/** A cipher class's methods that return output. */
interface CipherProto { update: (...args: any[]) => unknown, final: (...args: any[]) => unknown }
// The classes are exported at run time but not declared in @types/node (only their instances' types).
const { Cipheriv, Decipheriv } = nodeCrypto as unknown as { Cipheriv: { prototype: CipherProto }, Decipheriv: { prototype: CipherProto } }

/** The repository's root (stack frames name files by URL or path): a checkout in a folder named `bench` must not look like `bench/`. */
const ROOT = new URL('..', import.meta.url)

const byWhere = new Map<string, number>()
let installed = false

/** `client/noise/aead.node.ts seal`: the first frame outside this file. */
function caller (): string {
  const holder: { stack?: string } = {}
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 8
  Error.captureStackTrace(holder, caller)
  Error.stackTraceLimit = limit
  for (const line of (holder.stack ?? '').split('\n').slice(1)) {
    if (line.includes('seal-meter.ts')) continue
    const m = /at (?:(\S+) \()?(.*?):\d+:\d+\)?$/.exec(line.trim())
    if (m === null) continue
    const fn = (m[1] ?? '').replace(/^.*\./, '')
    const file = m[2] ?? ''
    const ours = /\/((?:client|shared|server|bench)\/[^/]+(?:\/[^/]+)?\.ts)/.exec(file.replace(ROOT.href, '/').replace(ROOT.pathname, '/'))
    return `${ours !== null ? ours[1] as string : file.replace(/^.*node_modules\//, '')} ${fn}`.trim()
  }
  return 'unknown'
}

/** The methods as they were, to put back (`uninstallSealMeter`). */
const originals: Array<{ proto: CipherProto, update: CipherProto['update'], final: CipherProto['final'] }> = []

function wrap (proto: CipherProto, what: string): void {
  originals.push({ proto, update: proto.update, final: proto.final })
  const count = (out: unknown): void => {
    const n = out instanceof Uint8Array ? out.byteLength : typeof out === 'string' ? Buffer.byteLength(out) : 0
    if (n <= 0) return
    const key = `cipher output, ${what}: ${caller()}`
    byWhere.set(key, (byWhere.get(key) ?? 0) + n)
  }
  const update = proto.update
  proto.update = function (this: unknown, ...args: unknown[]) {
    const out = update.apply(this, args)
    count(out)
    return out
  }
  const final = proto.final
  proto.final = function (this: unknown, ...args: unknown[]) {
    const out = final.apply(this, args)
    count(out)
    return out
  }
}

/** Start counting in this process (once). */
export function installSealMeter (): void {
  if (installed) return
  installed = true
  wrap(Cipheriv.prototype, 'sealing')
  wrap(Decipheriv.prototype, 'opening')
}

/** Stop counting: the cipher methods as they were (for a test that shares its process). */
export function uninstallSealMeter (): void {
  for (const { proto, update, final } of originals.splice(0)) {
    proto.update = update
    proto.final = final
  }
  byWhere.clear()
  installed = false
}

/** Bytes the cipher wrote since the last call, by `cipher output, sealing|opening: <caller>`; starts counting afresh. */
export function takeSeals (): Record<string, number> {
  const out = Object.fromEntries(byWhere)
  byWhere.clear()
  return out
}
