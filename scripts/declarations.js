// Part of `npm run build` (scripts/build.js, after tsc): the declarations tsc emits into dist/node/
// keep the sources' relative `.ts` specifiers (`export * from './errors.ts'`): tsc rewrites them
// in the JavaScript only (rewriteRelativeImportExtensions; microsoft/TypeScript#61037). TypeScript
// itself reads them, but editors and tools that follow a declaration's imports look for a `.ts`
// file the package does not ship; point them at the `.js` module, as a hand-written `.d.ts` would.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/** A relative specifier ending in `.ts` in `from '...'`, `import('...')` or `import '...'`. */
const RELATIVE_TS = /((?:\bfrom|\bimport\(|\bimport)\s*)(['"])(\.{1,2}\/[^'"\n]*?)\.ts\2/g

/** Rewrite the `.d.ts` files under `dir` in place; returns how many files changed. */
export function rewriteDeclarations (dir) {
  let changed = 0
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || !entry.name.endsWith('.d.ts')) continue
    const file = join(entry.parentPath, entry.name)
    const text = readFileSync(file, 'utf8')
    const out = text.replace(RELATIVE_TS, (_m, lead, q, path) => `${lead}${q}${path}.js${q}`)
    if (out !== text) { writeFileSync(file, out); changed++ }
  }
  return changed
}
