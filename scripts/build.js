#!/usr/bin/env node
// `npm run build`: everything the package runs and serves, from the sources, into dist/:
// - dist/node/: shared/, server/, client/ and cli/ compiled to JavaScript with declarations (tsc,
//   tsconfig.build.json; relative `.ts` specifiers in the declarations rewritten to `.js` by
//   scripts/declarations.js); `bin/starsock.js` runs dist/node/cli/main.js;
// - dist/web/: the page (Vite), served at `/` by `starsock serve`;
// - dist/browser/: the browser peer library as one ES module (Vite, `--mode client`);
// - `.br` and `.gz` beside the text assets of dist/web/ (scripts/precompress.js), which the server serves;
// - dist/.build-stamp: written last, so a build that stopped half way is never taken as done
//   (test/global-setup.ts rebuilds when a source is newer than the stamp).
// `--if-stale`: build only when a source is newer than the stamp (or there is none).
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildIsStale, STAMP } from './build-stamp.js'
import { rewriteDeclarations } from './declarations.js'
import { precompress } from './precompress.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

/** Run a package binary from node_modules/.bin; exit with its status if it fails. */
function run (bin, args) {
  if (!existsSync(join(ROOT, 'node_modules', '.bin', bin))) {
    process.stderr.write(`build: ${bin} is not installed: run \`npm ci\` first (\`npm start\` and \`npm test\` do it)\n`)
    process.exit(1)
  }
  const r = spawnSync(join(ROOT, 'node_modules', '.bin', bin), args, { cwd: ROOT, stdio: 'inherit' })
  if (r.status !== 0) {
    process.stderr.write(`build: ${bin} ${args.join(' ')} failed (${r.error?.message ?? `exit ${String(r.status ?? r.signal)}`})\n`)
    process.exit(1)
  }
}

if (process.argv.includes('--if-stale') && !buildIsStale(ROOT)) process.exit(0)
const started = Date.now()
rmSync(join(ROOT, STAMP), { force: true })
rmSync(join(ROOT, 'dist', 'node'), { recursive: true, force: true })
rmSync(join(ROOT, 'dist', 'client'), { recursive: true, force: true }) // the browser bundle's folder before dist/browser/
run('tsc', ['-p', 'tsconfig.build.json'])
rewriteDeclarations(join(ROOT, 'dist', 'node')) // `.ts` specifiers in the declarations -> `.js`
run('vite', ['build', '--logLevel', 'warn'])
run('vite', ['build', '--mode', 'client', '--logLevel', 'warn'])
precompress(join(ROOT, 'dist', 'web')) // what the server serves (dist/browser/ is for bundlers)
mkdirSync(join(ROOT, 'dist'), { recursive: true })
writeFileSync(join(ROOT, STAMP), new Date(started).toISOString() + '\n')
// Dated when the build began: a source saved while it ran is newer, so the next --if-stale builds.
utimesSync(join(ROOT, STAMP), new Date(started), new Date(started))
process.stderr.write(`build: dist/ built in ${((Date.now() - started) / 1000).toFixed(1)} s\n`)
