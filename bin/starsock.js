#!/usr/bin/env node
// The `starsock` program: applies starsock's node flags, then runs the CLI compiled into
// dist/node/ (`npm run build`; an installed package ships it built).
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { NODE_FLAGS, OPTIMIZER_FLAG_NAMES, OPTIMIZER_LOADED_FLAG, OPTIMIZER_LOADING_FLAG, YOUNG_LOADED_FLAG, YOUNG_LOADING_FLAG } from './node-flags.js'

// Set in this process, not by starting another node: signals, exit codes, stdio, `kill -9` and
// SIGSTOP reach the program itself. A flag given on node's command line (or in NODE_OPTIONS) wins.
// A flag's name: without its value, `_` as `-`, and `--no-x` as `--x` (either way it is given).
const nameOf = (flag) => flag.split('=')[0]?.replace(/_/g, '-').replace(/^--no-/, '--')
const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].map(nameOf)
const isGiven = (flag) => given.includes(nameOf(flag))
for (const flag of NODE_FLAGS) if (!isGiven(flag)) setFlagsFromString(flag)
// While the command's modules load: no young generation growth, no optimising compiler
// (node-flags.js says why); each is given back by `loaded` below.
const loading = [
  ...(isGiven(YOUNG_LOADING_FLAG) ? [] : [{ loading: YOUNG_LOADING_FLAG, loaded: YOUNG_LOADED_FLAG }]),
  ...(OPTIMIZER_FLAG_NAMES.some(isGiven) ? [] : [{ loading: OPTIMIZER_LOADING_FLAG, loaded: OPTIMIZER_LOADED_FLAG }])
]
for (const flag of loading) setFlagsFromString(flag.loading)

const compiled = new URL('../dist/node/cli/main.js', import.meta.url)
let cli
try {
  cli = await import(compiled.href)
} catch (err) {
  // Only the program itself missing means "build it"; a dependency it cannot find (an
  // interrupted `npm ci`) keeps node's own message, which names it.
  if (err?.code !== 'ERR_MODULE_NOT_FOUND' || existsSync(compiled)) throw err
  process.stderr.write(existsSync(new URL('../cli/main.ts', import.meta.url))
    ? 'starsock: the compiled program is missing (dist/node/cli/main.js): run `npm run build` in this clone (`npm start` builds too)\n'
    : 'starsock: the compiled program is missing (dist/node/cli/main.js): this copy of the package was not built; install the npm package, or `npm pack` a clone and install the tarball (installing from git is not supported)\n')
  process.exit(1)
}
// In a clone, say when the build is older than the sources (after a `git pull` or an edit), once,
// on stderr: running yesterday's program without a word is worse than a line.
// Not under the test runner (VITEST, inherited by the programs tests start): it built dist/ before
// the run, and an edit during the run must not add a line to every program's stderr.
if (process.env.VITEST === undefined && existsSync(new URL('../cli/main.ts', import.meta.url)) && existsSync(new URL('../scripts/build-stamp.js', import.meta.url))) {
  const { buildIsStale } = await import('../scripts/build-stamp.js')
  if (buildIsStale(fileURLToPath(new URL('..', import.meta.url)))) process.stderr.write('starsock: warning: dist/ is older than the sources in this clone: run `npm run build` (`npm start` and `npm test` build when needed)\n')
}
const { main } = cli
let isLoaded = false
const loaded = () => { if (!isLoaded) for (const flag of loading) setFlagsFromString(flag.loaded); isLoaded = true }
// A backstop: a command path that never calls `loaded` must not keep 1 MiB semi-spaces, or run
// without the optimiser, for life. `main` calls it once the command has started (`serve`: listens);
// 10 s leaves room for a slow start on a busy machine (firing mid-load would compile the loader).
setTimeout(loaded, 10_000).unref()
process.exitCode = await main(process.argv.slice(2), { loaded })
// The command is over: a handle still open (a socket closing behind a cut network, a timer) must
// not keep the process alive past this, or a supervisor's SIGTERM would look ignored.
setTimeout(() => process.exit(), 2000).unref()
