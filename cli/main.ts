/** The `starsock` program: one entry point, one subcommand per task. Only this folder prints. */
import { Command, CommanderError } from 'commander'
import { StarsockError } from '../shared/errors.ts'
import { VERSION } from '../server/server.ts'
import { idCommand } from './id.ts'
import { listenCommand } from './listen.ts'
import { peersCommand } from './peers.ts'
import { relayCommand } from './relay.ts'
import { serveCommand } from './serve.ts'
import { exposeCommand, forwardCommand } from './tunnels.ts'
import { upCommand } from './up/command.ts'

/** Run `starsock` with `argv` (without node and script); settles with the exit code. */
export async function main (argv: string[]): Promise<number> {
  const program = new Command('starsock')
    .description('websocket-star rendezvous and relay server, and peer tools for tunneled sockets')
    .version(VERSION)
    .exitOverride()
  let run: Promise<number> = Promise.resolve(0)
  const started = (p: Promise<number>): void => { run = p }
  program.addCommand(serveCommand(started))
  program.addCommand(idCommand(started))
  program.addCommand(peersCommand(started))
  program.addCommand(listenCommand(started))
  program.addCommand(forwardCommand(started))
  program.addCommand(exposeCommand(started))
  program.addCommand(relayCommand(started))
  program.addCommand(upCommand(started))
  try {
    await program.parseAsync(argv, { from: 'user' })
    return await run
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode
    process.stderr.write(`starsock: ${describe(err)}\n`)
    return 1
  }
}

/** One readable line for a failure: the message, and the code when it has one. */
function describe (err: unknown): string {
  if (err instanceof StarsockError) return `${err.message} (${err.code})`
  return err instanceof Error ? err.message : String(err)
}
