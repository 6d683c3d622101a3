// Local ESLint rule: no import circle that goes through an `import type` (or `export type ... from`).
// import-x's no-cycle skips type-only imports by design (they vanish at run time), but a type-only
// circle is still a circle in the design: the session.ts / relay-stream.ts one was type-only.
// From each type-only import of the file linted, this follows every relative import, type or
// value, of the files on disk (read with TypeScript's import pre-scan, cached by mtime) and reports
// the shortest way back. Circles made only of value imports are left to import-x/no-cycle.
import fs from 'node:fs'
import path from 'node:path'
import ts from 'typescript'

const SOURCE = /\.[cm]?[jt]sx?$/
/** file -> its relative imports, resolved, as of mtimeMs. */
const cache = new Map()

/** The file a relative specifier names, or undefined for packages and files that do not exist. */
function resolveRelative (fromFile, specifier) {
  if (!specifier.startsWith('.')) return undefined
  const base = path.resolve(path.dirname(fromFile), specifier)
  for (const candidate of [base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (SOURCE.test(candidate) && fs.statSync(candidate, { throwIfNoEntry: false })?.isFile()) return candidate
  }
  return undefined
}

/** Every relative import of `file`, type or value, static or dynamic. */
function importsOf (file) {
  const stat = fs.statSync(file, { throwIfNoEntry: false })
  if (stat === undefined) return []
  const hit = cache.get(file)
  if (hit !== undefined && hit.mtimeMs === stat.mtimeMs) return hit.imports
  const scan = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true)
  const imports = [...new Set(scan.importedFiles.map(ref => resolveRelative(file, ref.fileName)).filter(f => f !== undefined))]
  cache.set(file, { mtimeMs: stat.mtimeMs, imports })
  return imports
}

/** Shortest chain of imports from `start` back to `goal` (both included), or undefined. */
function pathBack (start, goal) {
  const cameFrom = new Map([[start, undefined]])
  const queue = [start]
  while (queue.length > 0) {
    const file = queue.shift()
    for (const next of importsOf(file)) {
      if (next === goal) {
        const chain = [goal]
        for (let at = file; at !== undefined; at = cameFrom.get(at)) chain.unshift(at)
        return chain
      }
      if (!cameFrom.has(next)) {
        cameFrom.set(next, file)
        queue.push(next)
      }
    }
  }
  return undefined
}

const typeOnly = node =>
  node.importKind === 'type' || node.exportKind === 'type' ||
  (node.specifiers !== undefined && node.specifiers.length > 0 &&
    node.specifiers.every(s => s.importKind === 'type' || s.exportKind === 'type'))

/** @type {import('eslint').Rule.RuleModule} */
export default {
  meta: {
    type: 'problem',
    docs: { description: 'Forbid import circles that include a type-only import (import-x/no-cycle skips those).' },
    schema: [],
    messages: { cycle: 'Import circle through a type-only import: {{chain}}.' }
  },
  create (context) {
    const self = context.filename
    const root = context.cwd
    const check = node => {
      if (node.source == null || !typeOnly(node)) return
      const target = resolveRelative(self, node.source.value)
      if (target === undefined) return
      const back = target === self ? [self] : pathBack(target, self)
      if (back === undefined) return
      const chain = [self, ...back].map(f => path.relative(root, f)).join(' -> ')
      context.report({ node, messageId: 'cycle', data: { chain } })
    }
    return { ImportDeclaration: check, ExportNamedDeclaration: check, ExportAllDeclaration: check }
  }
}
