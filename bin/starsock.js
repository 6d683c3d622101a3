#!/usr/bin/env node
// The `starsock` program: applies starsock's node flags, loads the TypeScript sources through
// tsx, then runs the CLI.
import { setFlagsFromString } from 'node:v8'
import { NODE_FLAGS } from './node-flags.js'

// Set in this process, not by starting another node: signals, exit codes, stdio, `kill -9` and
// SIGSTOP reach the program itself. A flag given on node's command line (or in NODE_OPTIONS) wins.
const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].map((f) => f.split('=')[0]?.replace(/_/g, '-'))
for (const flag of NODE_FLAGS) if (!given.includes(flag.split('=')[0])) setFlagsFromString(flag)

const { register } = await import('tsx/esm/api')
register()
const { main } = await import('../cli/main.ts')
process.exitCode = await main(process.argv.slice(2))
// The command is over: a handle still open (a socket closing behind a cut network, a timer) must
// not keep the process alive past this, or a supervisor's SIGTERM would look ignored.
setTimeout(() => process.exit(), 2000).unref()
