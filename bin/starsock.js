#!/usr/bin/env node
// The `starsock` program: loads the TypeScript sources through tsx, then runs the CLI.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../cli/main.ts')
process.exitCode = await main(process.argv.slice(2))
// The command is over: a handle still open (a socket closing behind a cut network, a timer) must
// not keep the process alive past this, or a supervisor's SIGTERM would look ignored.
setTimeout(() => process.exit(), 2000).unref()
