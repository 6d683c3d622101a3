/**
 * Read a small file a person names (a key, a config, a certificate) without trusting it to be
 * one: it must be a regular file (a FIFO would never open or never end, a device such as
 * `/dev/zero` never end), and at most `maxBytes` are read, so a file that is too large costs no
 * more memory than that. Errors name the file and say why, in one line.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs'

/** A file that is not a regular file, is over its size, or changed while read; `reason` says which, without the name. */
export class SmallFileError extends Error {
  constructor (readonly file: string, readonly reason: string) {
    super(`${file}: ${reason}`)
  }
}

/**
 * The bytes of `file` (at most `maxBytes`). Throws a `SmallFileError` when it is not a regular
 * file, is larger, or grew while being read, and the system's error (`ENOENT`, `EACCES`, ...)
 * when it cannot be opened. Synchronous: these files are read once, at start-up or on a reload.
 */
export function readSmallFile (file: string, maxBytes: number): Buffer {
  // Non-blocking, so opening a FIFO with no writer returns at once (and fails the check below).
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK)
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) throw new SmallFileError(file, 'not a regular file')
    if (st.size > maxBytes) throw new SmallFileError(file, `${st.size} bytes; at most ${maxBytes}`)
    // One byte more than the size tells a file that grew since the stat.
    const buf = Buffer.alloc(st.size + 1)
    let at = 0
    while (at < buf.byteLength) {
      const n = readSync(fd, buf, at, buf.byteLength - at, at)
      if (n === 0) break
      at += n
    }
    if (at > st.size) throw new SmallFileError(file, 'changed while it was read')
    return buf.subarray(0, at)
  } finally {
    closeSync(fd)
  }
}
