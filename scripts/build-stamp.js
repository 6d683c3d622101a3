// Whether dist/ is older than the sources it is built from (scripts/build.js, test/global-setup.ts).
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

/** The file `scripts/build.js` writes last, from the repository's root. */
export const STAMP = join('dist', '.build-stamp')

/**
 * What the build reads: a change to any of them makes dist/ stale. The lock too: Vite bundles
 * dependencies (socket.io-client, noble) into the page and the browser bundle.
 */
const INPUTS = ['shared', 'server', 'client', 'cli', 'web', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'vite.config.ts',
  'scripts/build.js', 'scripts/build-stamp.js', 'scripts/declarations.js', 'scripts/precompress.js']

/** What the build makes: one missing (a folder emptied by hand) makes dist/ stale too. */
const OUTPUTS = [join('dist', 'node', 'cli', 'main.js'), join('dist', 'web', 'index.html'), join('dist', 'browser', 'starsock-client.js')]

/** The newest modification time under `path` (a file or a folder), in ms. */
function newest (path) {
  const st = statSync(path, { throwIfNoEntry: false })
  if (st === undefined) return 0
  if (!st.isDirectory()) return st.mtimeMs
  let latest = st.mtimeMs
  for (const name of readdirSync(path)) latest = Math.max(latest, newest(join(path, name)))
  return latest
}

/** True when there is no finished build, or a source changed after it. */
export function buildIsStale (root) {
  const stamp = statSync(join(root, STAMP), { throwIfNoEntry: false })
  if (stamp === undefined) return true
  if (OUTPUTS.some((output) => statSync(join(root, output), { throwIfNoEntry: false }) === undefined)) return true
  return INPUTS.some((input) => newest(join(root, input)) > stamp.mtimeMs)
}
