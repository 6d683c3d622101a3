/**
 * Files sent by other peers (the page's "Send file"), saved into a folder by `starsock listen
 * --files DIR`. A file is an offer first (`file` kind with name and size, granted by a `file`
 * rule or a person); then, on its `file` channel, a JSON line `{ name, size, sha256, offset }`
 * (offset 0: this receiver grants no resume), the bytes, then our answer line `{ ok, sha256 }`.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { Channel } from '../client/mux/channel.ts'
import { LineReader, writeLine } from '../client/mux/lines.ts'
import { checkFileHeader, parseFileHeader } from '../shared/file-transfer.ts'
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

/**
 * Receive the file granted by `offer` from `channel` into `dir` (written as `.part`, renamed once
 * the checksum matches). The header must announce the size offered; the name saved is the one
 * offered (what the person or rule agreed to), made safe.
 */
export async function receiveFileInto (dir: string, channel: Channel, offer: Offer): Promise<ReceivedFile> {
  const reader = new LineReader(channel)
  const line = await reader.next()
  if (line === null) throw new StarsockError('E_BAD_REQUEST', 'file channel ended before its header')
  const offered = offer.size ?? 0
  const header = parseFileHeader(line, offered)
  const { size } = header
  // No resume here (no `resumeOffset`): the grant's offset is 0, and so must the header's be.
  checkFileHeader(header, { size: offered, sha256: offer.sha256, offset: 0 })
  const name = safeFileName(offer.name)
  // Unique even for two files of one name in one millisecond; `wx` never overwrites anything.
  const final = join(dir, `${Date.now()}-${randomBytes(4).toString('hex')}-${name}`)
  const part = `${final}.part`
  const out = createWriteStream(part, { flags: 'wx', mode: 0o600 })
  let failure: Error | undefined
  out.on('error', (err) => { failure = err })
  await new Promise<void>((resolve, reject) => { out.once('open', () => resolve()); out.once('error', reject) })
  const hash = createHash('sha256')
  let done = 0
  const take = async (chunk: Uint8Array): Promise<void> => {
    done += chunk.byteLength
    if (done > size) throw new StarsockError('E_BAD_REQUEST', 'more bytes than announced')
    if (failure !== undefined) throw failure
    hash.update(chunk)
    if (!out.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        out.once('drain', () => resolve())
        out.once('error', reject)
      })
    }
  }
  try {
    await take(reader.rest())
    for (;;) {
      const chunk = await channel.read()
      if (chunk === null) break
      await take(chunk)
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => err == null ? resolve() : reject(err)))
    const sha256 = hash.digest('hex')
    const ok = done === size && sha256 === header.sha256
    await writeLine(channel, { ok, sha256 })
    await channel.closeWrite()
    if (ok) await rename(part, final)
    else await rm(part, { force: true })
    return { peerId: channel.remotePeer, name, path: ok ? final : part, size: done, sha256, ok }
  } catch (err) {
    out.destroy()
    await rm(part, { force: true })
    throw err
  }
}
