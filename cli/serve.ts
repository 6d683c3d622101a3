/** `starsock serve`: run the rendezvous server until SIGTERM or SIGINT. */
import { Command, Option } from 'commander'
import * as C from '../server/constants.ts'
import { SERVER_OPTIONS, type OptionSpec, type ServerOptions, type TlsOptions } from '../server/options.ts'
import { createServer } from '../server/server.ts'
import { join } from 'node:path'
import { homedir } from 'node:os'
import type { SockRule } from '../shared/sock-rules.ts'
import type { SockAgent } from '../client/sock/agent.ts'
import { collect, integer, port, portRange, ruleList } from './options.ts'
import { createCliLogger, LOG_FORMATS, LOG_LEVELS, type LogFormat } from './log-output.ts'

/** The warning line `--gateway-insecure` prints on stderr. */
const GATEWAY_INSECURE_WARNING = 'starsock serve: warning: --gateway-insecure: the gateway peer takes plaintext connections too: their traffic is readable on the way and their peer ids are unverified (rules naming a peer do not match them)'

/** Values an on/off environment variable may have (case-insensitive; empty is off). */
const ENV_ON = ['1', 'true', 'yes', 'on']
const ENV_OFF = ['', '0', 'false', 'no', 'off']

/**
 * A switch (`--flag`, no value) whose environment variable is read by `envSwitch`, not by
 * commander: commander turns a switch on when its variable merely exists, so `X=0` would mean on.
 * The help still names the variable, as commander would.
 */
function switchOption (flag: string, help: string, env: string | undefined): Option {
  return new Option(flag, env === undefined ? help : `${help} (env: ${env})`)
}

/** Whether a switch is on: given on the command line, or its environment variable says on. */
function envSwitch (given: unknown, env: string | undefined): boolean {
  if (given === true) return true
  const raw = env === undefined ? undefined : process.env[env]
  if (raw === undefined) return false
  const value = raw.trim().toLowerCase()
  if (ENV_ON.includes(value)) return true
  if (ENV_OFF.includes(value)) return false
  throw new Error(`${env ?? ''}=${JSON.stringify(raw)}: an on/off variable takes 1, true, yes, on or 0, false, no, off (or empty)`)
}

/** The commander option of a server option's flag; `undefined` for options the CLI builds itself. */
function flagOption (spec: OptionSpec): Option | undefined {
  if (spec.flag === null || spec.cli === 'custom') return undefined
  if (spec.cli === 'switch' || spec.cli === 'inverted-switch') return switchOption(spec.flag, spec.help, spec.env)
  const option = new Option(spec.flag, spec.help)
  if (spec.env !== undefined) option.env(spec.env)
  switch (spec.cli) {
    case 'integer': return option.default(spec.default).argParser(integer(spec.min ?? 0))
    case 'port-range': {
      const [low, high] = spec.default as [number, number]
      return option.default(spec.default, `${low}-${high}`).argParser(portRange)
    }
    case 'repeatable': return option.argParser(collect)
    // Only a default worth showing: an empty one reads as "none" in the help.
    case 'text': return spec.default === '' ? option : option.default(spec.default)
    default: return option
  }
}

/** The server option a parsed flag gives (`undefined`: the server's default). */
function fromFlag (spec: OptionSpec, value: unknown): unknown {
  switch (spec.cli) {
    case 'switch': return envSwitch(value, spec.env)
    case 'inverted-switch': return !envSwitch(value, spec.env)
    case 'text': return typeof value === 'string' ? value : undefined
    default: return value
  }
}

/** A server option's flag, as `serve` adds it. */
interface ServerFlag { name: keyof ServerOptions, spec: OptionSpec, option: Option }

/** The server options' flags, in table order (fresh commander options for each command). */
function serverFlags (): ServerFlag[] {
  return Object.entries(SERVER_OPTIONS).flatMap(([name, spec]) => {
    const option = flagOption(spec)
    return option === undefined ? [] : [{ name: name as keyof ServerOptions, spec, option }]
  })
}

/** The `serve` command; `started` receives the promise of its exit code, and of its start-up (listening). */
export function serveCommand (started: (run: Promise<number>, startedUp?: Promise<unknown>) => void): Command {
  const flagsOfOptions = serverFlags()
  const cmd = new Command('serve')
    .description('run the rendezvous and relay server (and its page)')
    .addOption(new Option('--port <port>', 'TCP port to listen on').env('PORT').default(C.DEFAULT_PORT).argParser(port))
    .addOption(new Option('--host <host>', 'address to bind').env('HOST').default(C.DEFAULT_HOST))
    .addOption(new Option(SERVER_OPTIONS.tls.flag ?? '', SERVER_OPTIONS.tls.help).env(SERVER_OPTIONS.tls.env ?? ''))
    .addOption(new Option('--cert <file>', 'TLS certificate chain (PEM)').env('CERT'))
    .addOption(new Option('--pfx <file>', 'TLS key and certificate as PKCS#12').env('PFX'))
    .addOption(new Option('--passphrase <text>', 'passphrase of --pfx or --key').env('PFX_PASSPHRASE'))
  // Switches and text first, the gateway's flags, then the numeric limits (as --help always read).
  for (const { spec, option } of flagsOfOptions) if (spec.cli !== 'integer') cmd.addOption(option)
  cmd
    .addOption(switchOption('--gateway', 'run a built-in peer on this host that takes offers the --allow rules allow', 'STARSOCK_GATEWAY'))
    .addOption(new Option('--allow <rule>', 'gateway rule KIND[/PROTO]:HOST:PORT[@PEERID] (repeatable)').argParser(ruleList))
    .addOption(new Option('--gateway-key <file>', 'identity of the gateway peer').env('STARSOCK_GATEWAY_KEY').default(join(homedir(), '.starsock', 'gateway-key'), '~/.starsock/gateway-key'))
    .addOption(new Option('--gateway-insecure', 'the gateway peer also takes plaintext connections from peers run with --insecure (no end-to-end encryption, peer ids unverified)'))
    .addOption(new Option(SERVER_OPTIONS.logger.flag ?? '', SERVER_OPTIONS.logger.help).env(SERVER_OPTIONS.logger.env ?? '').choices(LOG_LEVELS).default('info'))
    .addOption(new Option('--log-format <format>', 'log lines: readable on a terminal and JSON otherwise (auto), or always one of them').env('STARSOCK_LOG_FORMAT').choices(LOG_FORMATS).default('auto'))
  for (const { spec, option } of flagsOfOptions) if (spec.cli === 'integer') cmd.addOption(option)
  return cmd.action((flags: Record<string, unknown>) => {
    // Its start-up (the server built, listening) is part of loading: see `Started`.
    let listening = (): void => {}
    const startedUp = new Promise<void>((resolve) => { listening = resolve })
    started(serve(flags, flagsOfOptions, listening).finally(listening), startedUp)
  })
}

/** Largest TLS key, certificate (chain) or PFX file read. */
const MAX_TLS_FILE_BYTES = 1024 * 1024

/** The TLS files the flags name, read (the reader loads only then: an idle plain server loads no client code). */
async function readTls (flags: Record<string, unknown>): Promise<TlsOptions | undefined> {
  if (flags.pfx === undefined && flags.key === undefined && flags.cert === undefined) return undefined
  const { readSmallFile, SmallFileError } = await import('../client/read-small-file.node.ts')
  const file = (name: string): Buffer | undefined => {
    const path = flags[name]
    if (typeof path !== 'string') return undefined
    try {
      return readSmallFile(path, MAX_TLS_FILE_BYTES)
    } catch (err) {
      const why = err instanceof SmallFileError ? err.reason : (err as NodeJS.ErrnoException).code ?? String(err)
      throw new Error(`cannot read --${name} ${path}: ${why}`, { cause: err })
    }
  }
  const passphrase = typeof flags.passphrase === 'string' ? flags.passphrase : undefined
  const pfx = file('pfx')
  if (pfx !== undefined) return { pfx, passphrase }
  if (flags.key === undefined && flags.cert === undefined) return undefined
  if (flags.key === undefined || flags.cert === undefined) throw new Error('--key and --cert go together')
  return { key: file('key') as Buffer, cert: file('cert') as Buffer, passphrase }
}

/** `starsock serve`: settles with its exit code; calls `listening` once it printed its URL. */
async function serve (flags: Record<string, unknown>, flagsOfOptions: ServerFlag[], listening: () => void): Promise<number> {
  const logger = await createCliLogger(String(flags.logLevel), flags.logFormat as LogFormat)
  let server
  try {
    flags.gateway = envSwitch(flags.gateway, 'STARSOCK_GATEWAY')
    // The gateway's flags without the gateway would do nothing: refused, not ignored.
    if (flags.gateway !== true) {
      const given = [((flags.allow as SockRule[] | undefined)?.length ?? 0) > 0 ? '--allow' : '', flags.gatewayInsecure === true ? '--gateway-insecure' : ''].filter((f) => f !== '')
      if (given.length > 0) throw new Error(`${given.join(' and ')} ${given.length === 1 ? 'is' : 'are'} for the gateway peer: add --gateway`)
    }
    // The gateway peer joins this server: with an allowlist, its id must be on it.
    const allowPeers = (flags.allowPeer as string[] | undefined) ?? []
    // The gateway's code (the whole client) loads only with --gateway: an idle server is smaller.
    if (flags.gateway === true && allowPeers.length > 0) allowPeers.push((await (await import('../client/identity.node.ts')).loadOrCreateIdentity(String(flags.gatewayKey))).identity.peerId)
    const options: Record<string, unknown> = {}
    for (const { name, spec, option } of flagsOfOptions) options[name] = fromFlag(spec, flags[option.attributeName()])
    Object.assign(options, { tls: await readTls(flags), allowPeers, logger })
    server = createServer(options)
    await server.listen(flags.port as number, String(flags.host))
  } catch (err) {
    process.stderr.write(`starsock serve: ${err instanceof Error ? err.message : String(err)}\n`)
    await server?.close()
    return 1
  }
  const running = server
  const prefix = running.options.path.slice(0, -'/socket.io'.length)
  process.stdout.write(`starsock ${running.url()} (page, socket.io, ${['metrics', 'healthz', 'readyz'].map((r) => `${prefix}/${r}`).join(', ')})\n`)
  listening()
  let gateway: SockAgent | undefined
  if (flags.gateway === true) {
    try {
      if (flags.gatewayInsecure === true) process.stderr.write(GATEWAY_INSECURE_WARNING + '\n')
      const { startGateway } = await import('./gateway.ts')
      gateway = await startGateway({ serverUrl: running.url(), allow: (flags.allow as SockRule[] | undefined) ?? [], keyFile: String(flags.gatewayKey), trust: (peerId) => running.rendezvous.gatewayPeers.add(peerId), token: typeof flags.token === 'string' ? flags.token : undefined, insecure: flags.gatewayInsecure === true, logger })
    } catch (err) {
      process.stderr.write(`starsock serve: the gateway peer could not join: ${err instanceof Error ? err.message : String(err)}\n`)
      await running.close()
      return 1
    }
    const rules = ((flags.allow as SockRule[] | undefined) ?? []).map((r) => r.text)
    process.stdout.write(`gateway peer ${gateway.peer.peerId} (rules: ${rules.length === 0 ? 'none, every offer is denied' : rules.join(', ')})\n`)
  }
  return await new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      logger.info({ signal }, 'signal received')
      process.once(signal, () => process.exit(130)) // a second signal does not wait
      const gatewayDone = gateway === undefined ? Promise.resolve() : gateway.close().then(async () => await gateway?.peer.close())
      gatewayDone.then(async () => await running.close()).then(() => resolve(0), () => resolve(1))
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
}
