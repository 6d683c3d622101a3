/**
 * The built page's files (`webRoot`): the `.br` or `.gz` the build wrote beside a file
 * (scripts/precompress.js), picked by `Accept-Encoding`; a content-hash `ETag` answered with 304;
 * cache headers (Vite's hashed assets are immutable, the rest revalidate); and nothing outside the
 * root (no `..`, no dot files, no symlink that leads out, no `.br`/`.gz` asked for by name).
 */
import { createHash } from 'node:crypto'
import { createReadStream, readFileSync, realpathSync, statSync, type Stats } from 'node:fs'
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { basename, extname, join, sep } from 'node:path'

/** Content codings the build writes, with their file suffixes, in order of preference on a tie. */
const CODINGS = [
  { name: 'br', suffix: '.br' },
  { name: 'gzip', suffix: '.gz' }
] as const

/** A content coding the build writes. */
export type Coding = typeof CODINGS[number]['name']

/** What `Content-Type` each extension gets; anything else is `application/octet-stream`. */
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2'
}

/** The `Content-Type` of a file by its name. */
export function contentTypeOf (file: string): string {
  return TYPES[extname(file)] ?? 'application/octet-stream'
}

/** Cache lifetime of files whose names carry their content hash (Vite's `assets/`). */
const IMMUTABLE = 'public, max-age=31536000, immutable'

/**
 * The coding to send, from an `Accept-Encoding` header and the codings at hand (RFC 9110 §12.5.3):
 * the acceptable one with the highest q-value, brotli before gzip before none on a tie; `q=0` (or
 * a q that is not a qvalue) is "not acceptable"; a coding not named takes the q of `*`. None
 * (identity) is acceptable unless `identity;q=0` or `*;q=0` says otherwise, at the lowest q named
 * when not named itself (as `negotiator`, Express's, does). No header gets identity.
 */
export function pickCoding (header: string | string[] | undefined, available: ReadonlySet<Coding>): Coding | 'identity' {
  if (header === undefined || available.size === 0) return 'identity'
  const q = new Map<string, number>()
  for (const part of (Array.isArray(header) ? header.join(',') : header).split(',')) {
    const [rawName, ...params] = part.split(';')
    const name = (rawName ?? '').trim().toLowerCase()
    if (name === '') continue
    let value = 1
    for (const param of params) {
      const m = /^\s*q\s*=\s*(.*?)\s*$/i.exec(param)
      if (m !== null) value = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(m[1] ?? '') ? Number(m[1]) : 0
    }
    // `x-gzip` is gzip (RFC 9110 §8.4.1.3); a name given twice keeps its first q.
    const key = name === 'x-gzip' ? 'gzip' : name
    if (!q.has(key)) q.set(key, value)
  }
  const star = q.get('*')
  const named = [...q.values()].filter((v) => v > 0)
  let best: Coding | 'identity' = 'identity'
  let bestQ = q.get('identity') ?? (star === 0 ? 0 : Math.min(1, ...named))
  for (const { name } of CODINGS) {
    const value = q.get(name) ?? star ?? 0
    // A coding beats identity at the same q (fewer bytes); the earlier coding wins a tie.
    if (available.has(name) && value > 0 && (value > bestQ || (best === 'identity' && value === bestQ))) {
      best = name
      bestQ = value
    }
  }
  return best
}

/** A file of the page, found under the root. */
export interface StaticFile {
  /** Its path on disk. */
  path: string
  /** Its size in bytes. */
  size: number
  /** Whether its name carries its content hash (under Vite's `assets/`): cached for a year. */
  immutable: boolean
  /** The quoted content hash of its bytes (the ETag of its identity representation). */
  tag: string
  /** Its precompressed siblings, by coding. */
  codings: Map<Coding, { path: string, size: number }>
}

/** Hashes already computed, by file identity (path, inode, size, times): files change only on a build. */
const hashes = new Map<string, string>()
/** Hashes kept at most (a page has a handful of files). */
const MAX_HASHES = 1000

/** Files larger than this are not hashed (read whole on the event loop): their tag is their identity. */
const MAX_HASHED_BYTES = 8 * 1024 * 1024

/**
 * The quoted SHA-256 (base64url, 128 bits) of `file`'s bytes. Not size and mtime: npm packs
 * every file with the same mtime, and a new `index.html` often has the old one's size. A file
 * above `MAX_HASHED_BYTES` (never one of the page's: someone's download put in the folder) gets
 * a tag of its inode, size and times instead. Throws when the file cannot be read.
 */
function contentTag (path: string, st: Stats): string {
  const key = `${path}\0${st.ino}\0${st.size}\0${st.mtimeMs}\0${st.ctimeMs}`
  let tag = hashes.get(key)
  if (tag === undefined) {
    const bytes = st.size > MAX_HASHED_BYTES ? key : readFileSync(path)
    tag = `"${st.size > MAX_HASHED_BYTES ? 'i-' : ''}${createHash('sha256').update(bytes).digest('base64url').slice(0, 22)}"`
    if (hashes.size >= MAX_HASHES) hashes.clear()
    hashes.set(key, tag)
  }
  return tag
}

/** `path` if it is a regular file whose real path is inside `realRoot`, with its stats. */
function fileInside (realRoot: string, path: string): { path: string, st: Stats } | undefined {
  try {
    const st = statSync(path)
    if (!st.isFile()) return undefined
    // A symlink is followed only when it stays inside the root.
    if (!realpathSync(path).startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep)) return undefined
    return { path, st }
  } catch {
    return undefined
  }
}

/**
 * The file under `root` for a URL path (`/` is `index.html`), or `undefined`: outside the root, a
 * dot file or folder, a `.br`/`.gz` asked for by name (its bytes are an encoding of its sibling,
 * never a file of their own), not a regular file, or not there.
 */
export function findStaticFile (root: string, urlPath: string): StaticFile | undefined {
  if (root === '') return undefined
  let decoded: string
  try {
    decoded = decodeURIComponent(urlPath)
  } catch {
    return undefined
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return undefined
  const segments = decoded.split('/').filter((s) => s !== '')
  // `.` and `..` start with a dot too: no segment may climb, and no dot file is served.
  if (segments.some((s) => s.startsWith('.'))) return undefined
  if (decoded.endsWith('/') && segments.length > 0) return undefined
  const name = segments.length === 0 ? 'index.html' : segments.join('/')
  if (CODINGS.some(({ suffix }) => basename(name).endsWith(suffix))) return undefined
  let realRoot: string
  try {
    realRoot = realpathSync(root)
  } catch {
    return undefined
  }
  const found = fileInside(realRoot, join(realRoot, name))
  if (found === undefined) return undefined
  const codings = new Map<Coding, { path: string, size: number }>()
  for (const { name: coding, suffix } of CODINGS) {
    const sibling = fileInside(realRoot, found.path + suffix)
    // One older than its source is left from an earlier build: not the same content.
    if (sibling !== undefined && sibling.st.mtimeMs >= found.st.mtimeMs) codings.set(coding, { path: sibling.path, size: sibling.st.size })
  }
  let tag: string
  try {
    tag = contentTag(found.path, found.st)
  } catch {
    return undefined // unreadable, or gone meanwhile (a rebuild): not served
  }
  return { path: found.path, size: found.st.size, immutable: segments.length > 1 && segments[0] === 'assets', tag, codings }
}

/** Whether `If-None-Match` names `tag` (weak comparison, RFC 9110 §13.1.2) or is `*`. */
export function noneMatch (header: string | undefined, tag: string): boolean {
  if (header === undefined) return false
  const bare = tag.replace(/^W\//, '')
  return header.split(',').some((t) => {
    const one = t.trim()
    return one === '*' || one.replace(/^W\//, '') === bare
  })
}

/**
 * Send `file`: the representation `Accept-Encoding` picks, or 304 when `If-None-Match` names it;
 * `headers` are added to every answer (the security headers). A HEAD gets the headers only.
 */
export function sendStaticFile (req: IncomingMessage, res: ServerResponse, file: StaticFile, headers: OutgoingHttpHeaders): void {
  const coding = pickCoding(req.headers['accept-encoding'], new Set(file.codings.keys()))
  const encoded = coding === 'identity' ? undefined : file.codings.get(coding)
  // Each representation has its own tag: a cache must not answer a gzip request with brotli bytes.
  const tag = encoded === undefined ? file.tag : `${file.tag.slice(0, -1)}-${coding}"`
  const common: OutgoingHttpHeaders = {
    ...headers,
    etag: tag,
    // Vite names assets by content hash: they never change; the page itself may.
    'cache-control': file.immutable ? IMMUTABLE : 'no-cache',
    ...(file.codings.size > 0 ? { vary: 'Accept-Encoding' } : {})
  }
  if (noneMatch(req.headers['if-none-match'], tag)) {
    res.writeHead(304, common)
    return void res.end()
  }
  res.writeHead(200, {
    ...common,
    'content-type': contentTypeOf(file.path),
    'content-length': encoded?.size ?? file.size,
    ...(encoded === undefined ? {} : { 'content-encoding': coding })
  })
  if (req.method === 'HEAD') return void res.end()
  createReadStream(encoded?.path ?? file.path).on('error', () => res.destroy()).pipe(res)
}
