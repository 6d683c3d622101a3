/**
 * Where the starsock package is on disk, and its version: the same from the sources (`server/`)
 * and from the compiled build (`dist/node/server/`), in a checkout and in an installed package.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The first folder at or above this module's with starsock's `package.json`. */
function findPackageRoot (): { root: string, version: string } {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string, version?: string }
      if (pkg.name === 'starsock') return { root: dir, version: pkg.version ?? '0.0.0' }
    }
    const parent = dirname(dir)
    if (parent === dir) throw new Error('starsock: cannot find the package.json of starsock above ' + fileURLToPath(import.meta.url))
    dir = parent
  }
}

const found = findPackageRoot()

/** The package's folder (the checkout, or `node_modules/starsock`). */
export const PACKAGE_ROOT: string = found.root

/** Package version, reported by `starsock:hello`, `--version` and the status page. */
export const VERSION: string = found.version

/** A file or folder of the package, by its path from the package's root. */
export function packagePath (...parts: string[]): string {
  return join(PACKAGE_ROOT, ...parts)
}
