/**
 * The `file` channel's header, as the page and `starsock listen --files` read it: a JSON line
 * `{ name, size, sha256, offset }` before the bytes from `offset` to `size` (the receiver answers
 * `{ ok, sha256 }` after them, the sha256 of the whole file). `offset` is the one the receiver
 * granted (`Reply.offset`, a resumed transfer); absent from older senders, it is 0.
 */
import { StarsockError } from './errors.ts'

/** What a `file` channel announces. */
export interface FileHeader {
  /** The sender's name for the file (at most 200 characters; the receiver makes it safe to use). */
  name: string
  size: number
  /** Lower-case hex SHA-256 of the whole file, as the sender computed it. */
  sha256: string
  /** Where the bytes on the channel start (0 unless the receiver granted a resume). */
  offset: number
}

/** A checked header; throws `E_BAD_REQUEST` when it is not one, the size is over `maxBytes`, or the offset is not within it. */
export function parseFileHeader (value: unknown, maxBytes: number): FileHeader {
  const v = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>
  const size = v.size
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || size > maxBytes) throw new StarsockError('E_BAD_REQUEST', `file size ${String(size)} refused (at most ${maxBytes} bytes)`)
  const offset = v.offset ?? 0
  if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0 || offset > size) throw new StarsockError('E_BAD_REQUEST', `file offset ${String(offset)} refused (from 0 to ${size})`)
  const name = typeof v.name === 'string' && v.name !== '' ? v.name.slice(0, 200) : 'file'
  return { name, size, sha256: typeof v.sha256 === 'string' ? v.sha256 : '', offset }
}

/**
 * Check a parsed header against what was granted: the size offered, the sha256 offered (when the
 * offer named one), and the offset granted. Throws `E_BAD_REQUEST` naming the difference.
 */
export function checkFileHeader (header: FileHeader, granted: { size: number, sha256?: string, offset: number }): void {
  if (header.size !== granted.size) throw new StarsockError('E_BAD_REQUEST', `the file header announces ${header.size} bytes, the offer ${granted.size}`)
  if (granted.sha256 !== undefined && header.sha256 !== granted.sha256) throw new StarsockError('E_BAD_REQUEST', 'the file header announces another sha256 than the offer')
  if (header.offset !== granted.offset) throw new StarsockError('E_BAD_REQUEST', `the file header starts at byte ${header.offset}, the grant at ${granted.offset}`)
}
