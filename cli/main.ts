/** The `starsock` program: one entry point, one subcommand per task. Only this folder prints. */
import { Command, CommanderError } from 'commander'
import { VERSION } from '../server/server.ts'
import { serveCommand } from './serve.ts'

/** Run `starsock` with `argv` (without node and script); settles with the exit code. */
export async function main (argv: string[]): Promise<number> {
  const program = new Command('starsock')
    .description('websocket-star rendezvous and relay server, and peer tools for tunneled sockets')
    .version(VERSION)
    .exitOverride()
  let run: Promise<number> = Promise.resolve(0)
  program.addCommand(serveCommand((p) => { run = p }))
  try {
    await program.parseAsync(argv, { from: 'user' })
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode
    process.stderr.write(`starsock: ${err instanceof Error ? err.message : String(err)}\n`)
    return 1
  }
  return run
}
