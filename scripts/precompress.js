// The last step of `npm run build` (scripts/build.js): `.br` and `.gz` beside each text asset of
// dist/web/ and dist/browser/, so `starsock serve` sends them compressed without compressing on
// each request (server/static-files.ts picks one by Accept-Encoding). Node's zlib only.
// A file under PRECOMPRESS_MIN_BYTES is sent as it is (a compressed copy saves less than the
// headers cost); an output that is not smaller than its source is not written (nor kept).
// `node scripts/precompress.js [folder ...]` compresses the folders given (default: both).
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, extname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

/**
 * Extensions of the files worth compressing (text). Not source maps: only developer tools fetch
 * them, and their compressed copies would be half of the npm package (1.7 of 3.7 MB); the server
 * sends them uncompressed.
 */
export const PRECOMPRESS_EXTENSIONS = new Set(['.html', '.js', '.mjs', '.css', '.svg', '.json', '.txt'])

/** Files smaller than this are left alone. */
export const PRECOMPRESS_MIN_BYTES = 1024

/** The encodings written, by file suffix. */
const ENCODERS = {
  '.br': (data) => brotliCompressSync(data, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
      [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
      [constants.BROTLI_PARAM_SIZE_HINT]: data.byteLength
    }
  }),
  '.gz': (data) => gzipSync(data, { level: constants.Z_BEST_COMPRESSION })
}

/** Every file under `dir`, recursively (no symlinks followed). */
function filesUnder (dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return filesUnder(path)
    return entry.isFile() ? [path] : []
  })
}

/**
 * Write `.br` and `.gz` beside each text asset under `dir` (a missing folder is skipped); returns
 * the bytes before and after, for the build's line.
 */
export function precompress (dir) {
  const totals = { files: 0, bytes: 0, br: 0, gz: 0 }
  let files
  try {
    files = filesUnder(dir)
  } catch (err) {
    if (err.code === 'ENOENT') return totals
    throw err
  }
  for (const file of files) {
    if (!PRECOMPRESS_EXTENSIONS.has(extname(file))) continue
    const size = statSync(file).size
    if (size < PRECOMPRESS_MIN_BYTES) continue
    const data = readFileSync(file)
    totals.files++
    totals.bytes += size
    for (const [suffix, encode] of Object.entries(ENCODERS)) {
      const out = encode(data, file)
      if (out.byteLength < size) {
        writeFileSync(file + suffix, out)
        totals[suffix.slice(1)] += out.byteLength
      } else {
        rmSync(file + suffix, { force: true })
        totals[suffix.slice(1)] += size
      }
    }
  }
  return totals
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dirs = process.argv.length > 2 ? process.argv.slice(2) : [join(ROOT, 'dist', 'web'), join(ROOT, 'dist', 'browser')]
  for (const dir of dirs) {
    const t = precompress(dir)
    const kib = (n) => `${(n / 1024).toFixed(0)} KiB`
    process.stderr.write(`precompress: ${dir}: ${t.files} files, ${kib(t.bytes)} -> br ${kib(t.br)}, gz ${kib(t.gz)}\n`)
  }
}
