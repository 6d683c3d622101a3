/**
 * Before the suite: make sure dist/ is the build of these sources (tests run `bin/starsock.js`,
 * which runs the compiled dist/node/, and serve the built page), rebuilding when a source changed.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export default function setup (): void {
  const build = fileURLToPath(new URL('../scripts/build.js', import.meta.url))
  const r = spawnSync(process.execPath, [build, '--if-stale'], { stdio: 'inherit' })
  if (r.status !== 0) throw new Error('test setup: `npm run build` failed; the tests run the built package')
}
