/**
 * Where the starsock package is on disk, and its version: the same from the sources (`server/`)
 * and from the compiled build (`dist/node/server/`), in a checkout and in an installed package.
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The first folder at or above this module's with starsock's `package.json`; `undefined` when
 * there is none (the server bundled into someone's single file: then the version is unknown, no
 * page is served by default and the status page is built in: nothing is taken from the folder of
 * the bundle, which is the app's).
 */
function findPackageRoot (): { root: string, version: string } | undefined {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string, version?: string }
        if (pkg.name === 'starsock') return { root: dir, version: pkg.version ?? '0.0.0' }
      } catch {}
    }
    const parent = dirname(dir)
    if (parent === dir) return undefined
    dir = parent
  }
}

const found = findPackageRoot()

/** Whether starsock's package.json was found (false: the server bundled into someone's file). */
export const PACKAGE_FOUND: boolean = found !== undefined

/** The package's folder (the checkout, or `node_modules/starsock`; this module's folder when bundled). */
export const PACKAGE_ROOT: string = found?.root ?? dirname(fileURLToPath(import.meta.url))

/** Package version, reported by `starsock:hello`, `--version` and the status page. */
export const VERSION: string = found?.version ?? 'unknown'

/** A file or folder of the package, by its path from the package's root. */
export function packagePath (...parts: string[]): string {
  return join(PACKAGE_ROOT, ...parts)
}
