/**
 * The `starsock` program from its TypeScript sources through tsx, as `bin/starsock.js` runs the
 * compiled one (the same node flags, the same `main`): the startup scenario's reference.
 * `node --conditions=starsock-source --import tsx bench/tsx-cli.ts --help`
 */
import { setFlagsFromString } from 'node:v8'
import { NODE_FLAGS, OPTIMIZER_LOADED_FLAG, OPTIMIZER_LOADING_FLAG, YOUNG_LOADED_FLAG, YOUNG_LOADING_FLAG } from '../bin/node-flags.js'

for (const flag of NODE_FLAGS) setFlagsFromString(flag)
setFlagsFromString(YOUNG_LOADING_FLAG)
setFlagsFromString(OPTIMIZER_LOADING_FLAG)
// Imported after the flags are set, as the bin does.
const { main } = await import('../cli/main.ts')
process.exitCode = await main(process.argv.slice(2), { loaded: () => { setFlagsFromString(YOUNG_LOADED_FLAG); setFlagsFromString(OPTIMIZER_LOADED_FLAG) } })
setTimeout(() => process.exit(), 2000).unref()
