/**
 * The `file` channel's header, as the page and `starsock listen --files` read it: a JSON line
 * `{ name, size, sha256 }` before the bytes (the receiver answers `{ ok, sha256 }` after them).
 */
import { StarsockError } from './errors.ts'

/** What a `file` channel announces. */
export interface FileHeader {
  /** The sender's name for the file (at most 200 characters; the receiver makes it safe to use). */
  name: string
  size: number
  /** Lower-case hex SHA-256 of the bytes, as the sender computed it. */
  sha256: string
}

/** A checked header; throws `E_BAD_REQUEST` when it is not one, or the size is over `maxBytes`. */
export function parseFileHeader (value: unknown, maxBytes: number): FileHeader {
  const v = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>
  const size = v.size
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || size > maxBytes) throw new StarsockError('E_BAD_REQUEST', `file size ${String(size)} refused (at most ${maxBytes} bytes)`)
  const name = typeof v.name === 'string' && v.name !== '' ? v.name.slice(0, 200) : 'file'
  return { name, size, sha256: typeof v.sha256 === 'string' ? v.sha256 : '' }
}
