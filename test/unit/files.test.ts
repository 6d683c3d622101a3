import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { Channel } from '../../client/mux/channel.ts'
import { PARTIAL_MAX_AGE_MS, partialPath, receiveFileInto, removeStalePartials, resumeOffsetIn, safeFileName } from '../../cli/files.ts'
import type { Offer } from '../../shared/sock-protocol.ts'
import { expectBytes } from '../helpers/bytes.ts'

/** A channel stand-in that delivers `chunks` and records what is written back. */
function fakeChannel (chunks: Uint8Array[]): Channel & { written: string } {
  const queue = [...chunks]
  const fake = {
    remotePeer: '12D3KooWfake',
    written: '',
    read: async () => queue.shift() ?? null,
    write: async (data: Uint8Array) => { fake.written += new TextDecoder().decode(data) },
    closeWrite: async () => {},
    abort: () => {}
  }
  return fake as unknown as Channel & { written: string }
}

/** The offer a file was granted under. */
function offerOf (name: string, size: number): Offer {
  return { kind: 'file', proto: 'tcp', host: '', port: 0, name, size }
}

function upload (name: string, data: Buffer, sha = createHash('sha256').update(data).digest('hex')): Uint8Array[] {
  return [Buffer.from(JSON.stringify({ name, size: data.byteLength, sha256: sha }) + '\n'), data]
}

describe('files received by `starsock listen --files`', () => {
  const dirs: string[] = []
  const dir = (): string => { const d = mkdtempSync(join(tmpdir(), 'starsock-files-unit-')); dirs.push(d); return d }
  afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }) })

  it.each([
    ['../../etc/passwd', 'passwd'],
    ['..\\\\..\\\\win.ini', 'win.ini'],
    ['.hidden', 'hidden'],
    ['', 'file'],
    ['a/b/c d.txt', 'c d.txt'],
    ['naïve<script>.bin', 'na_ve_script_.bin']
  ])('names %j safely as %j', (name, safe) => {
    expect(safeFileName(name)).toBe(safe)
  })

  it('saves 20 files of one name at once, each whole, none lost, nothing left half-written', async () => {
    const d = dir()
    const files = Array.from({ length: 20 }, (_, i) => Buffer.alloc(1000 + i, i))
    const results = await Promise.all(files.map(async (f) => await receiveFileInto(d, fakeChannel(upload('a.txt', f)), offerOf('a.txt', f.byteLength))))
    expect(results.every((r) => r.ok)).toBe(true)
    const saved = readdirSync(d)
    expect(saved).toHaveLength(20)
    expect(saved.some((n) => n.endsWith('.part'))).toBe(false)
    // Each upload's own bytes at its own path (a file saved twice and another lost would not do).
    expect(new Set(results.map((r) => r.path)).size).toBe(20)
    results.forEach((r, i) => expectBytes(readFileSync(r.path), files[i] as Buffer, `upload ${i} at ${r.path}`))
  })

  it('drops a file whose checksum does not match and says so to the sender', async () => {
    const d = dir()
    const ch = fakeChannel(upload('x.bin', Buffer.from('abc'), '00'.repeat(32)))
    const r = await receiveFileInto(d, ch, offerOf('x.bin', 3))
    expect(r.ok).toBe(false)
    expect(JSON.parse(ch.written)).toEqual({ ok: false, sha256: createHash('sha256').update('abc').digest('hex') })
    expect(readdirSync(d)).toEqual([])
  })

  it('refuses more bytes than announced and leaves nothing behind', async () => {
    const d = dir()
    const header = Buffer.from(JSON.stringify({ name: 'y', size: 2, sha256: '' }) + '\n')
    await expect(receiveFileInto(d, fakeChannel([header, Buffer.from('too many')]), offerOf('y', 2))).rejects.toThrow('more bytes than announced')
    expect(readdirSync(d)).toEqual([])
  })

  it('refuses a header that announces another size than the offer, before writing anything', async () => {
    const d = dir()
    for (const size of [1, 3]) {
      const header = Buffer.from(JSON.stringify({ name: 'y', size, sha256: '' }) + '\n')
      await expect(receiveFileInto(d, fakeChannel([header, Buffer.from('ab')]), offerOf('y', 2))).rejects.toMatchObject({ code: 'E_BAD_REQUEST' })
    }
    expect(readdirSync(d)).toEqual([])
  })

  it('saves under the name offered (what was agreed to), not the header\'s', async () => {
    const d = dir()
    const r = await receiveFileInto(d, fakeChannel(upload('other.exe', Buffer.from('abc'))), offerOf('agreed.txt', 3))
    expect(r.ok).toBe(true)
    expect(r.name).toBe('agreed.txt')
    expect(readdirSync(d)[0]).toMatch(/-agreed\.txt$/)
  })

  it('a verified sender\'s file that breaks keeps its bytes in a hidden partial; the same offer resumes after them and ends byte-exact', async () => {
    const d = dir()
    const data = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 251))
    const sha = createHash('sha256').update(data).digest('hex')
    const offer: Offer = { ...offerOf('r.bin', data.byteLength), sha256: sha }
    // First leg: the header and 100 000 bytes, then the connection breaks.
    const first = fakeChannel([Buffer.from(JSON.stringify({ name: 'r.bin', size: data.byteLength, sha256: sha, offset: 0 }) + '\n'), data.subarray(0, 100_000)])
    const read = first.read.bind(first)
    let reads = 0
    first.read = async () => { if (++reads > 2) throw new Error('connection lost'); return await read() }
    await expect(receiveFileInto(d, first, offer, { offset: 0, resumable: true })).rejects.toThrow('connection lost')
    expect(readFileSync(partialPath(d, first.remotePeer, sha, data.byteLength)).byteLength).toBe(100_000)
    const offset = await resumeOffsetIn(d, { peerId: first.remotePeer, offer })
    expect(offset).toBe(100_000)
    // Second leg: from the offset granted; the checksum covers the whole file.
    const second = fakeChannel([Buffer.from(JSON.stringify({ name: 'r.bin', size: data.byteLength, sha256: sha, offset }) + '\n'), data.subarray(offset)])
    const result = await receiveFileInto(d, second, offer, { offset, resumable: true })
    expect(result).toMatchObject({ ok: true, sha256: sha, size: data.byteLength })
    expectBytes(readFileSync(result.path), data, 'the resumed file')
    expect(readdirSync(d)).toEqual([result.path.split('/').at(-1)])
  })

  it('a resumed file whose channel breaks right after the header keeps the bytes kept before (no new byte came)', async () => {
    const d = dir()
    const data = Buffer.from(Array.from({ length: 2000 }, (_, i) => i % 256))
    const sha = createHash('sha256').update(data).digest('hex')
    const offer: Offer = { ...offerOf('k.bin', data.byteLength), sha256: sha }
    const peer = fakeChannel([]).remotePeer
    writeFileSync(partialPath(d, peer, sha, data.byteLength), data.subarray(0, 600))
    const offset = await resumeOffsetIn(d, { peerId: peer, offer })
    expect(offset).toBe(600)
    const leg = fakeChannel([Buffer.from(JSON.stringify({ name: 'k.bin', size: data.byteLength, sha256: sha, offset }) + '\n')])
    const read = leg.read.bind(leg)
    let reads = 0
    leg.read = async () => { if (++reads > 1) throw new Error('connection lost'); return await read() }
    await expect(receiveFileInto(d, leg, offer, { offset, resumable: true })).rejects.toThrow('connection lost')
    expect(readFileSync(partialPath(d, peer, sha, data.byteLength)).byteLength).toBe(600)
  })

  it('a header whose offset is not the one granted is refused, and a file without a resumable grant never starts past 0', async () => {
    const d = dir()
    const data = Buffer.alloc(1000, 3)
    const sha = createHash('sha256').update(data).digest('hex')
    const offer: Offer = { ...offerOf('o.bin', data.byteLength), sha256: sha }
    const header = (offset: number): Buffer => Buffer.from(JSON.stringify({ name: 'o.bin', size: 1000, sha256: sha, offset }) + '\n')
    await expect(receiveFileInto(d, fakeChannel([header(500), data.subarray(500)]), offer)).rejects.toThrow('the file header starts at byte 500, the grant at 0')
    await expect(receiveFileInto(d, fakeChannel([header(500), data.subarray(500)]), offer, { offset: 500, resumable: false })).rejects.toThrow('with no partial to resume')
    expect(readdirSync(d)).toEqual([])
  })
  it('partials not written for a day are deleted (senders that never came back); fresh ones and other files stay', async () => {
    const d = dir()
    const old = partialPath(d, '12D3KooWold', 'ab'.repeat(32), 10)
    const fresh = partialPath(d, '12D3KooWnew', 'cd'.repeat(32), 10)
    const saved = join(d, '1-x.bin')
    for (const path of [old, fresh, saved]) writeFileSync(path, 'abc')
    const dayAgo = (Date.now() - PARTIAL_MAX_AGE_MS - 60_000) / 1000
    utimesSync(old, dayAgo, dayAgo)
    utimesSync(saved, dayAgo, dayAgo)
    await removeStalePartials(d)
    expect(readdirSync(d).sort()).toEqual(['1-x.bin', fresh.split('/').at(-1)].sort())
  })
})
