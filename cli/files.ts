/**
 * Files sent by other peers (the page's "Send file"), saved into a folder by `starsock listen
 * --files DIR`. A file is an offer first (`file` kind with name and size, granted by a `file`
 * rule or a person); then, on its `file` channel, a JSON line `{ name, size, sha256, offset }`,
 * the bytes from `offset`, then our answer line `{ ok, sha256 }`. A verified sender's file that
 * names its sha256 is kept in a hidden partial while it comes, so the same offer later resumes
 * after the bytes written (`resumeOffsetIn`).
 */
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { readdir, rename, rm, stat, truncate } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { Channel } from '../client/mux/channel.ts'
import { LineReader, writeLine } from '../client/mux/lines.ts'
import { checkFileHeader, parseFileHeader, type FileHeader } from '../shared/file-transfer.ts'
import { StarsockError } from '../shared/errors.ts'
import type { Offer } from '../shared/sock-protocol.ts'

/** Largest file `listen --files` takes unless `--max-file-bytes` says otherwise. */
export const DEFAULT_MAX_FILE_BYTES = 1024 * 1024 * 1024
/** Bytes of files one peer may send within an hour unless `--file-quota-bytes` says otherwise. */
export const DEFAULT_FILE_QUOTA_BYTES = 4 * 1024 * 1024 * 1024

/** A name safe to create in the folder: no path, no leading dot, a few characters only. */
export function safeFileName (name: string): string {
  const base = basename(name.replace(/\\/g, '/')).replace(/[^\w.\- ]/g, '_').replace(/^\.+/, '').slice(0, 120)
  return base === '' ? 'file' : base
}

/** What became of a received file. */
export interface ReceivedFile {
  peerId: string
  name: string
  path: string
  size: number
  sha256: string
  ok: boolean
}

/** Partials being written now (one writer each), by path. */
const writing = new Set<string>()

/** The start of a partial's file name. */
const PARTIAL_PREFIX = '.starsock-partial-'
/** A partial not written for this long is deleted (its sender did not come back to resume it). */
export const PARTIAL_MAX_AGE_MS = 24 * 3600 * 1000

/** Where a verified sender's file that named its sha256 is kept while it comes (hidden; kept when the transfer breaks, for a resume). */
export function partialPath (dir: string, peerId: string, sha256: string, size: number): string {
  return join(dir, `${PARTIAL_PREFIX}${safeFileName(peerId)}-${sha256}-${size}`)
}

/**
 * Delete the partials in `dir` not written for `PARTIAL_MAX_AGE_MS` (none being written now):
 * senders that never came back would otherwise fill the folder a quota at a time. Run when
 * `listen --files` starts and before each resumable file.
 */
export async function removeStalePartials (dir: string, now = Date.now()): Promise<void> {
  for (const name of await readdir(dir)) {
    const path = join(dir, name)
    if (!name.startsWith(PARTIAL_PREFIX) || writing.has(path)) continue
    try {
      if (now - (await stat(path)).mtimeMs > PARTIAL_MAX_AGE_MS) await rm(path, { force: true })
    } catch {} // gone meanwhile
  }
}

/**
 * The agent's `files.resumeOffset` for `dir`: the bytes of this file the partial holds (0 with
 * none, or while another transfer writes it). The agent asks only for a verified sender that
 * named the sha256.
 */
export async function resumeOffsetIn (dir: string, request: { peerId: string, offer: Offer }): Promise<number> {
  const { sha256, size = 0 } = request.offer
  if (sha256 === undefined) return 0
  const path = partialPath(dir, request.peerId, sha256, size)
  if (writing.has(path)) return 0
  try {
    return Math.min((await stat(path)).size, size)
  } catch {
    return 0
  }
}

/** How a file was granted: where its bytes start, and whether it may be kept for a resume (a verified sender, a sha256). */
export interface FileGrant {
  offset: number
  resumable: boolean
}

/**
 * Receive the file granted by `offer` from `channel` into `dir` (written as `.part`, renamed once
 * the checksum matches). The header must announce the size offered and the offset granted; the
 * name saved is the one offered (what the person or rule agreed to), made safe. A resumable file
 * is written to its `partialPath` (after the `grant.offset` bytes there, re-hashed from disk) and
 * kept there when the transfer breaks.
 */
export async function receiveFileInto (dir: string, channel: Channel, offer: Offer, grant: FileGrant = { offset: 0, resumable: false }): Promise<ReceivedFile> {
  const reader = new LineReader(channel)
  const line = await reader.next()
  if (line === null) throw new StarsockError('E_BAD_REQUEST', 'file channel ended before its header')
  const offered = offer.size ?? 0
  const header = parseFileHeader(line, offered)
  const { size } = header
  checkFileHeader(header, { size: offered, sha256: offer.sha256, offset: grant.offset })
  const name = safeFileName(offer.name)
  // Unique even for two files of one name in one millisecond; `wx` never overwrites anything.
  const final = join(dir, `${Date.now()}-${randomBytes(4).toString('hex')}-${name}`)
  const keyed = grant.resumable && offer.sha256 !== undefined ? partialPath(dir, channel.remotePeer, offer.sha256, offered) : undefined
  if (keyed !== undefined) await removeStalePartials(dir).catch(() => {})
  const resumable = keyed !== undefined && !writing.has(keyed)
  if (grant.offset > 0 && !resumable) throw new StarsockError('E_BAD_REQUEST', `offset ${grant.offset} granted for a file with no partial to resume (not resumable, or being written by another transfer)`)
  const part = resumable ? keyed : `${final}.part`
  if (resumable) writing.add(part)
  let done = grant.offset
  let out: ReturnType<typeof createWriteStream> | undefined
  try {
    const hash = createHash('sha256')
    if (grant.offset > 0) {
      // Anything past the offset granted is not trusted: cut, then hash what stays.
      await truncate(part, grant.offset)
      for await (const chunk of createReadStream(part)) hash.update(chunk as Buffer)
    }
    out = createWriteStream(part, grant.offset > 0 ? { flags: 'r+', start: grant.offset } : { flags: resumable ? 'w' : 'wx', mode: 0o600 })
    return await receiveBytes(channel, reader, out, hash, { header, size, name, part, final, start: grant.offset, onProgress: (n) => { done = n } })
  } catch (err) {
    out?.destroy()
    // A resumable file keeps what arrived (a later offer of it resumes); anything else goes.
    // (What was kept before a resume stays too, even when the channel broke before a new byte.)
    if (!(resumable && done > 0 && done < size)) await rm(part, { force: true })
    throw err
  } finally {
    if (resumable) writing.delete(part)
  }
}

/** Write the bytes after the header to `out`, check the whole file's sha256, answer, and rename `part` to `final` when it matches. */
async function receiveBytes (channel: Channel, reader: LineReader, out: ReturnType<typeof createWriteStream>, hash: ReturnType<typeof createHash>,
  f: { header: FileHeader, size: number, name: string, part: string, final: string, start: number, onProgress: (done: number) => void }): Promise<ReceivedFile> {
  const { header, size, name, part, final } = f
  let failure: Error | undefined
  out.on('error', (err) => { failure = err })
  await new Promise<void>((resolve, reject) => { out.once('open', () => resolve()); out.once('error', reject) })
  let done = f.start
  const take = async (chunk: Uint8Array): Promise<void> => {
    if (done + chunk.byteLength > size) throw new StarsockError('E_BAD_REQUEST', 'more bytes than announced')
    if (failure !== undefined) throw failure
    done += chunk.byteLength
    hash.update(chunk)
    if (!out.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        out.once('drain', () => resolve())
        out.once('error', reject)
      })
    }
    f.onProgress(done)
  }
  await take(reader.rest())
  for (;;) {
    const chunk = await channel.read()
    if (chunk === null) break
    await take(chunk)
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => err == null ? resolve() : reject(err)))
  const sha256 = hash.digest('hex')
  const ok = done === size && sha256 === header.sha256
  // A file that ended short or with other bytes is not kept for a resume (not even its prefix).
  f.onProgress(ok ? done : 0)
  await writeLine(channel, { ok, sha256 })
  await channel.closeWrite()
  if (ok) await rename(part, final)
  else await rm(part, { force: true })
  return { peerId: channel.remotePeer, name, path: ok ? final : part, size: done, sha256, ok }
}
