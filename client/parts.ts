/**
 * Bytes given as their parts, in order: a multiplexer's batch (`OutputQueue.takeParts`) on its way
 * to a transport that writes a list of buffers, or to a cipher that reads one, without joining them.
 */

/** Bytes whole, or as their parts in order (the same bytes as if joined). */
export type Parts = Uint8Array | readonly Uint8Array[]

/** How many bytes `parts` hold. */
export function partsLength (parts: Parts): number {
  if (parts instanceof Uint8Array) return parts.byteLength
  let total = 0
  for (const part of parts) total += part.byteLength
  return total
}

/** `parts` joined into one new buffer (one copy); bytes given whole come back as they are. */
export function joinParts (parts: Parts, total = partsLength(parts)): Uint8Array {
  if (parts instanceof Uint8Array) return parts
  const out = new Uint8Array(total)
  let at = 0
  for (const part of parts) {
    out.set(part, at)
    at += part.byteLength
  }
  return out
}

/**
 * What is wrong with the arguments of a `writeParts(parts, signal, reservedBytes)`: `parts` must
 * be a non-empty array of `Uint8Array`, `reservedBytes` an integer from 0 to the first part's
 * length; `undefined` when nothing is.
 */
export function partsArgumentError (parts: unknown, reservedBytes: unknown): TypeError | RangeError | undefined {
  if (!Array.isArray(parts) || parts.length === 0 || !parts.every((part) => part instanceof Uint8Array)) return new TypeError('parts must be a non-empty array of Uint8Array')
  const first = parts[0] as Uint8Array
  if (!Number.isSafeInteger(reservedBytes) || (reservedBytes as number) < 0 || (reservedBytes as number) > first.byteLength) {
    return new RangeError(`reservedBytes must be an integer from 0 to the first part's byteLength, got ${String(reservedBytes)}`)
  }
  return undefined
}

/** Reads a list of parts from the front, `n` bytes at a time, as views of them (no copy). */
export class PartsCursor {
  private index = 0
  private offset: number
  /** Bytes not taken yet. */
  remaining: number

  /** Over `parts`, after their first `skipBytes` (at most the first part's). */
  constructor (private readonly parts: readonly Uint8Array[], skipBytes = 0) {
    this.offset = skipBytes
    this.remaining = partsLength(parts) - skipBytes
  }

  /** The next `n` bytes (at most `remaining`): a view where they lie in one part, else a view of each part they span. */
  take (n: number): Parts {
    if (!(n >= 0 && n <= this.remaining)) throw new RangeError(`take ${n} of ${this.remaining} bytes`)
    const views: Uint8Array[] = []
    let need = n
    while (need > 0) {
      const part = this.parts[this.index] as Uint8Array
      const k = Math.min(part.byteLength - this.offset, need)
      if (k > 0) views.push(part.subarray(this.offset, this.offset + k))
      this.offset += k
      need -= k
      if (this.offset === part.byteLength) {
        this.index++
        this.offset = 0
      }
    }
    this.remaining -= n
    return views.length === 1 ? views[0] as Uint8Array : views
  }
}
