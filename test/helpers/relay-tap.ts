/**
 * The relay's side of a client, for tests: every chunk the server delivers to a client's stream
 * goes through `ReceiveStream.push`, so a spy there sees (and may change, drop or split) exactly
 * what a relay would deliver.
 */
import { vi } from 'vitest'
import { ReceiveStream } from '../../client/stream.ts'

/**
 * Record every chunk the relay delivers to any client stream in this process, and let `tamper`
 * decide what is delivered instead (none: dropped; several: split). `streamId` ends with `.dialer`
 * on the way to the listener, `.listener` on the way to the dialer; `index` counts per stream.
 * Undone by `vi.restoreAllMocks()`.
 */
export function tapRelay (tamper?: (chunk: Uint8Array, index: number, streamId: string) => Uint8Array[]): Map<string, Uint8Array[]> {
  const seen = new Map<string, Uint8Array[]>()
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with `.call(this)` below
  const push = ReceiveStream.prototype.push
  vi.spyOn(ReceiveStream.prototype, 'push').mockImplementation(function (this: ReceiveStream, chunk: unknown) {
    if (!(chunk instanceof Uint8Array)) return push.call(this, chunk)
    const list = seen.get(this.id) ?? []
    seen.set(this.id, list)
    list.push(chunk.slice())
    if (tamper === undefined) return push.call(this, chunk)
    for (const out of tamper(chunk, list.length - 1, this.id)) push.call(this, out)
  })
  return seen
}
