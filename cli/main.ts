/**
 * The `starsock` program: one entry point, one subcommand per task. Only this folder prints.
 *
 * Start-up: a command's module (and with it the server, the client, noise, libp2p crypto,
 * socket.io, zod...) loads only when that command runs or shows its help. `starsock --help`, the
 * version and a mistyped command load none of them: the program lists each command from a light
 * entry in `COMMANDS` (name and description, the same as the real command's: a test compares the
 * two helps).
 */
import { Command, CommanderError, Help } from 'commander'
import { StarsockError } from '../shared/errors.ts'
import { VERSION } from '../server/package-root.ts'

/**
 * What a command module's factory takes: it receives the promise of the command's exit code and,
 * from a command with a start-up of its own after its modules load (`serve`: the server built and
 * listening), the promise that settles when that is done (the bin's loading flags wait for it).
 */
export type Started = (run: Promise<number>, startedUp?: Promise<unknown>) => void

/** A subcommand as the program lists it, and how to load the real one. */
export interface CommandEntry {
  /** The subcommand's name, as typed. */
  name: string
  /** Its one-line description (what its module's command says). */
  description: string
  /** Loads the command's module and builds the command. */
  load: () => Promise<(started: Started) => Command>
  /** Its `--json` prints one object per event on stdout: a failure that ends it is one too (`fatal`). */
  jsonEvents?: true
}

/** Every subcommand, in the order `--help` lists them. */
export const COMMANDS: readonly CommandEntry[] = [
  { name: 'serve', description: 'run the rendezvous and relay server (and its page)', load: async () => (await import('./serve.ts')).serveCommand },
  { name: 'id', description: 'make or show the identity (prints the peer id)', load: async () => (await import('./id.ts')).idCommand },
  { name: 'peers', description: 'join a server and print the peers online, one per line (peer id, then address)', load: async () => (await import('./peers.ts')).peersCommand },
  { name: 'listen', description: 'join and run what other peers offer (connect, bind) as --allow rules or a person allow', load: async () => (await import('./listen.ts')).listenCommand, jsonEvents: true },
  { name: 'forward', description: 'listen here; each connection (or UDP source) reaches --to (or the peer\'s --service) through --peer (repeat --listen/--to for more tunnels on one connection)', load: async () => (await import('./tunnels.ts')).forwardCommand, jsonEvents: true },
  { name: 'expose', description: '--peer listens on --port; each connection (or datagram) reaches the local --to (repeat --port/--to for more tunnels on one connection)', load: async () => (await import('./tunnels.ts')).exposeCommand, jsonEvents: true },
  { name: 'relay', description: 'get a UDP relay allocation (two ports that swap datagrams), print it, keep it until SIGINT/SIGTERM, then release it; or hand endpoint 2 to a peer (--share), or release one made earlier (--release)', load: async () => (await import('./relay.ts')).relayCommand },
  { name: 'up', description: 'run one agent from a TOML config: any number of forwards, exposes, SOCKS5 proxies and accepts, rules and services (SIGHUP reloads it)', load: async () => (await import('./up/command.ts')).upCommand, jsonEvents: true }
]

/**
 * The command `argv` runs or asks help for (`serve --port 1`, `help serve`), if it is one of
 * `COMMANDS`. The program itself has no option that takes a value, so the first word that is not
 * an option names the command.
 */
export function commandOf (argv: readonly string[]): CommandEntry | undefined {
  const words = argv.filter((a) => !a.startsWith('-'))
  const name = words[0] === 'help' ? words[1] : words[0]
  return COMMANDS.find((c) => c.name === name)
}

/**
 * The `starsock` program with the command `argv` names built for real and the others as light
 * entries; with `all`, every command built for real (what a test compares the help with).
 */
export async function createProgram (argv: readonly string[], started: Started, all = false): Promise<Command> {
  const program = new Command('starsock')
    .description('websocket-star rendezvous and relay server, and peer tools for tunneled sockets')
    .version(VERSION)
    .exitOverride()
  const light = new WeakSet<Command>()
  // A light entry has no options of its own; every real command has some.
  program.configureHelp({
    subcommandTerm (cmd: Command): string { return light.has(cmd) ? `${cmd.name()} [options]` : Help.prototype.subcommandTerm.call(this, cmd) }
  })
  const wanted = commandOf(argv)
  for (const entry of COMMANDS) {
    if (all || entry === wanted) {
      // A usage error throws to `main` (which says it in JSON too) rather than exiting the process.
      program.addCommand((await entry.load())(started).exitOverride())
    } else {
      const cmd = new Command(entry.name).description(entry.description)
      light.add(cmd)
      program.addCommand(cmd)
    }
  }
  return program
}

/** What the program's starter may ask of `main`. */
export interface MainHooks {
  /**
   * Called once the command's modules are loaded and it has started (`serve`: once it listens),
   * while it runs: the bin's loading flags (young generation, optimising compiler) end then.
   */
  loaded?: () => void
}

/** Run `starsock` with `argv` (without node and script); settles with the exit code. */
export async function main (argv: string[], hooks: MainHooks = {}): Promise<number> {
  let run: Promise<number> = Promise.resolve(0)
  let startedUp: Promise<unknown> = Promise.resolve()
  const started: Started = (p, up) => {
    run = p
    if (up !== undefined) startedUp = up
  }
  try {
    const program = await createProgram(argv, started)
    try {
      await program.parseAsync(argv, { from: 'user' })
    } finally {
      // Also after help or a usage error (no command runs), and after a start-up that failed
      // (the command says so): the loading flags end either way.
      startedUp.finally(() => hooks.loaded?.()).catch(() => {})
    }
    return await run
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander printed its line; help and --version end with 0.
      if (err.exitCode !== 0) printFatal(argv, null, err.message, err.exitCode)
      return err.exitCode
    }
    process.stderr.write(`starsock: ${describe(err)}\n`)
    printFatal(argv, err instanceof StarsockError ? err.code : null, err instanceof Error ? err.message : String(err), 1)
    return 1
  }
}

/**
 * With `--json`, a command whose stdout is one object per event ends with one more when it fails:
 * `{"event":"fatal","code":...,"message":...,"exitCode":N}` (`code` null for a usage error), so a
 * program reading stdout learns why, not only that it ended. stderr has the line as always.
 */
function printFatal (argv: readonly string[], code: string | null, message: string, exitCode: number): void {
  const end = argv.indexOf('--')
  if (commandOf(argv)?.jsonEvents !== true || !(end === -1 ? argv : argv.slice(0, end)).includes('--json')) return
  process.stdout.write(JSON.stringify({ event: 'fatal', time: new Date().toISOString(), code, message, exitCode }) + '\n')
}

/** One readable line for a failure: the message, and the code when it has one. */
function describe (err: unknown): string {
  if (err instanceof StarsockError) return `${err.message} (${err.code})`
  return err instanceof Error ? err.message : String(err)
}
