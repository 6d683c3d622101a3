/**
 * Where the page writes the files it receives: the Origin Private File System (OPFS), through a
 * `FileSystemWritableFileStream` (Chromium and Firefox both have it), so a file never sits in
 * memory; or a file the person picked with "Save as…" (`showSaveFilePicker`, Chromium). A file
 * from a verified sender that names its sha256 is kept under (this page's own peer id, sender,
 * sha256, size): when the transfer breaks, the bytes written stay, and the same offer later
 * resumes after them; to this identity only (a New identity starts afresh: a resume offset
 * granted to the sender would tell it the new identity is the old one). Without
 * OPFS the page keeps files in memory, under a lower limit (`MEMORY_MAX_FILE_BYTES`).
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { StarsockError } from '../shared/errors.ts'

/** The OPFS folder of received files and partials. */
const FOLDER = 'starsock-files'
/** Partials older than this are deleted when the page starts. */
export const PARTIAL_MAX_AGE_MS = 24 * 3600 * 1000
/** Most bytes received files and partials may hold in OPFS together (and never more than the browser's quota allows). */
export const STORE_MAX_BYTES = 8 * 1024 ** 3
/** Largest file the page receives into memory, where it has no OPFS. */
export const MEMORY_MAX_FILE_BYTES = 256 * 1024 * 1024
/** Bytes gathered before one write to disk (fewer, larger writes). */
const WRITE_BATCH_BYTES = 1024 * 1024

/** Where one received file goes: bytes are written in order; `close` keeps them, `abort` drops them. */
export interface FileSink {
  /** Bytes already there before the first `write` (a resumed partial). */
  readonly offset: number
  write: (chunk: Uint8Array) => Promise<void>
  /** Flush and keep what was written; settles once it is on disk. */
  close: () => Promise<void>
  /** Drop the file (nothing of it stays). */
  abort: () => Promise<void>
  /** The file as written (after `close`), disk-backed where it lives in OPFS. */
  file: () => Promise<File>
  /** Delete it from OPFS (no-op for a picked file or memory). */
  remove: () => Promise<void>
}

/** What a partial is kept under: only a verified sender's file with its sha256 has one. */
export interface PartialKey {
  /** The receiving page's own peer id: another identity of this browser never resumes it. */
  self: string
  /** The sender's peer id. */
  peerId: string
  sha256: string
  size: number
}

/** The entries of an OPFS folder (its async iterator; TypeScript's DOM library leaves it out without `DOM.AsyncIterable`). */
function entriesOf (dir: FileSystemDirectoryHandle): AsyncIterable<[string, FileSystemHandle]> {
  return dir as unknown as AsyncIterable<[string, FileSystemHandle]>
}

/** The OPFS name of a resumable file: the receiving identity, the sender, and the file's digest and size (base58 and hex only). */
function partialName (key: PartialKey): string {
  return `${key.self}.${key.peerId}.${key.sha256}.${key.size}`
}

/** The size a resumable OPFS name announces, or undefined for another name (an older page's `sender.sha256.size` too: cleaned up). */
function sizeInName (name: string): number | undefined {
  const m = /^[1-9A-HJ-NP-Za-km-z]+\.[1-9A-HJ-NP-Za-km-z]+\.[0-9a-f]{64}\.(\d+)$/.exec(name)
  return m?.[1] === undefined ? undefined : Number(m[1])
}

/** SHA-256 state over the first `bytes` of `file`, read in slices (a resumed file's prefix). */
export async function hashPrefix (file: Blob, bytes: number): Promise<ReturnType<typeof sha256.create>> {
  const hash = sha256.create()
  for (let at = 0; at < bytes; at += WRITE_BATCH_BYTES) {
    hash.update(new Uint8Array(await file.slice(at, Math.min(bytes, at + WRITE_BATCH_BYTES)).arrayBuffer()))
  }
  return hash
}

/** A sink writing through a `FileSystemWritableFileStream`, gathering small chunks into larger writes. */
async function writableSink (handle: FileSystemFileHandle, offset: number, onRemove: () => Promise<void>): Promise<FileSink> {
  const stream = await handle.createWritable({ keepExistingData: offset > 0 })
  if (offset > 0) {
    // Anything past the offset granted is not trusted: the rest comes again.
    await stream.truncate(offset)
    await stream.seek(offset)
  }
  // One batch buffer for the whole file: each write is awaited before the buffer fills again, so
  // the browser has taken its bytes by then (no 1 MiB garbage per MiB received).
  const batch = new Uint8Array(WRITE_BATCH_BYTES)
  let filled = 0
  let open = true
  const flush = async (): Promise<void> => {
    if (filled === 0) return
    const bytes = batch.subarray(0, filled)
    filled = 0
    await stream.write(bytes)
  }
  return {
    offset,
    write: async (chunk) => {
      let at = 0
      while (at < chunk.byteLength) {
        const n = Math.min(chunk.byteLength - at, WRITE_BATCH_BYTES - filled)
        batch.set(chunk.subarray(at, at + n), filled)
        filled += n
        at += n
        if (filled === WRITE_BATCH_BYTES) await flush()
      }
    },
    close: async () => {
      if (!open) return
      open = false
      await flush()
      await stream.close()
    },
    abort: async () => {
      if (open) {
        open = false
        await stream.abort().catch(() => {})
      }
      await onRemove()
    },
    file: async () => await handle.getFile(),
    remove: onRemove
  }
}

/** A sink in memory, for a browser without OPFS (bounded by `MEMORY_MAX_FILE_BYTES` where it is made). */
function memorySink (name: string): FileSink {
  let chunks: Uint8Array[] = []
  return {
    offset: 0,
    write: async (chunk) => { chunks.push(chunk.slice()) },
    close: async () => {},
    abort: async () => { chunks = [] },
    file: async () => new File(chunks as BlobPart[], name),
    remove: async () => { chunks = [] }
  }
}

/** The page's received files: OPFS when the browser has it, else memory. One per page. */
export class FileStore {
  /** Partials being written now (one writer each). */
  private readonly busy = new Set<string>()
  /** Per stored name, the sink that wrote it last: only that one may delete it (an older row's Discard or Remove of a partial a later transfer resumed must not). */
  private readonly writer = new Map<string, number>()
  private counter = 0

  private constructor (private readonly dir: FileSystemDirectoryHandle | undefined) {}

  /** Open the store (OPFS when usable, memory otherwise) and clean up what an earlier page left. */
  static async open (): Promise<FileStore> {
    let dir: FileSystemDirectoryHandle | undefined
    try {
      const root = await navigator.storage.getDirectory()
      dir = await root.getDirectoryHandle(FOLDER, { create: true })
      // A browser with OPFS but no writable streams (older Safari) falls back to memory.
      if (typeof FileSystemFileHandle.prototype.createWritable !== 'function') dir = undefined
    } catch {
      dir = undefined
    }
    const store = new FileStore(dir)
    if (dir !== undefined) await store.cleanupWhenAlone()
    return store
  }

  /**
   * Clean up (`cleanup`) only when no other page of this origin uses the folder (another tab, or
   * another identity's slot: its received files wait for their Save there), then hold a shared
   * Web Lock on it for this page's life, so a page opened later leaves this one's files alone.
   * OPFS is secure-context only, and so are Web Locks: where one is, the other is too.
   */
  private async cleanupWhenAlone (): Promise<void> {
    const locks = navigator.locks as LockManager | undefined
    if (locks === undefined) return
    await locks.request(FOLDER, { mode: 'exclusive', ifAvailable: true }, async (lock) => {
      if (lock !== null) await this.cleanup().catch(() => {})
    })
    await new Promise<void>((resolve) => {
      void locks.request(FOLDER, { mode: 'shared' }, async () => {
        resolve()
        await new Promise<never>(() => {}) // held until the page goes
      })
    })
  }

  /** Whether files go to disk (OPFS); `false`: to memory, up to `MEMORY_MAX_FILE_BYTES`. */
  get onDisk (): boolean {
    return this.dir !== undefined
  }

  /** Largest file this store can take now. */
  async room (): Promise<number> {
    if (this.dir === undefined) return MEMORY_MAX_FILE_BYTES
    const { usage = 0, quota = 0 } = await navigator.storage.estimate()
    let mine = 0
    for await (const [, handle] of entriesOf(this.dir)) if (handle.kind === 'file') mine += (await (handle as FileSystemFileHandle).getFile()).size
    return Math.max(0, Math.min(quota - usage, STORE_MAX_BYTES - mine))
  }

  /**
   * Reserve `key` for one transfer (from the person's accept to the end of its bytes); `false`
   * when another transfer has it (that one then starts afresh, under another name).
   */
  claim (key: PartialKey): boolean {
    if (this.dir === undefined || this.busy.has(partialName(key))) return false
    this.busy.add(partialName(key))
    return true
  }

  /** Give back a `claim` that no sink took (a declined offer, a channel that never came). */
  release (key: PartialKey): void {
    this.busy.delete(partialName(key))
  }

  /** Bytes of `key`'s partial on disk (0 with none). */
  async partialBytes (key: PartialKey): Promise<number> {
    if (this.dir === undefined) return 0
    try {
      const file = await (await this.dir.getFileHandle(partialName(key))).getFile()
      return Math.min(file.size, key.size)
    } catch {
      return 0
    }
  }

  /**
   * A sink for a file of `size` bytes named `name`: under `claimed` (a key this transfer
   * `claim`ed: resumable, from `offset`) or a fresh name (from 0). Throws `E_LIMIT_FILE_SIZE`
   * when it cannot hold it. The claim ends with the sink (`close`, `abort`, `remove`).
   */
  async sink (name: string, size: number, claimed: PartialKey | undefined, offset: number): Promise<FileSink> {
    if (claimed === undefined && offset !== 0) throw new RangeError('only a claimed partial starts past 0')
    if (this.dir === undefined) {
      if (size > MEMORY_MAX_FILE_BYTES) throw new StarsockError('E_LIMIT_FILE_SIZE', `this browser keeps received files in memory, at most ${MEMORY_MAX_FILE_BYTES} bytes`)
      return memorySink(name)
    }
    const dir = this.dir
    const stored = claimed !== undefined ? partialName(claimed) : `x.${Date.now()}.${++this.counter}`
    this.busy.add(stored)
    const mine = ++this.counter
    this.writer.set(stored, mine)
    let removed = false
    let closed = false
    const remove = async (): Promise<void> => {
      // A later transfer took this file over (it claimed the partial, or wrote it since): it is that one's now.
      if (this.writer.get(stored) !== mine || (closed && this.busy.has(stored))) return
      this.busy.delete(stored)
      this.writer.delete(stored)
      if (removed) return
      removed = true
      await dir.removeEntry(stored).catch(() => {})
    }
    try {
      const handle = await dir.getFileHandle(stored, { create: true })
      const sink = await writableSink(handle, offset, remove)
      return {
        ...sink,
        close: async () => {
          await sink.close()
          closed = true
          if (this.writer.get(stored) === mine) this.busy.delete(stored)
        }
      }
    } catch (err) {
      this.busy.delete(stored)
      this.writer.delete(stored)
      throw err
    }
  }

  /**
   * Delete what an earlier page left: every file but partials younger than `PARTIAL_MAX_AGE_MS`
   * (a complete file's row went with that page; a fresh partial may still be resumed).
   */
  async cleanup (now = Date.now()): Promise<void> {
    if (this.dir === undefined) return
    const names: string[] = []
    for await (const [name, handle] of entriesOf(this.dir)) {
      if (handle.kind !== 'file' || this.busy.has(name)) continue
      const file = await (handle as FileSystemFileHandle).getFile()
      const size = sizeInName(name)
      const partial = size !== undefined && file.size < size
      if (!partial || now - file.lastModified > PARTIAL_MAX_AGE_MS) names.push(name)
    }
    for (const name of names) await this.dir.removeEntry(name).catch(() => {})
  }
}

/** A sink into a file the person picked with "Save as…" (no resume: it starts at 0). */
export async function pickedSink (handle: FileSystemFileHandle): Promise<FileSink> {
  return await writableSink(handle, 0, async () => {})
}
