/** What the peer commands that run sock channels share: flags, joining, output and signals. */
import { Command, InvalidArgumentError, Option } from 'commander'
import { loadOrCreateIdentity } from '../client/identity.node.ts'
import { createPeer, type StarsockPeer } from '../client/peer.ts'
import { StarsockError } from '../shared/errors.ts'
import { checkName } from '../shared/profile.ts'
import { createSockAgent, type SockAgent, type SockAgentOptions } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import type { SockAddress } from '../shared/mux-frame.ts'
import { isHost, isPort } from '../shared/sock-protocol.ts'
import { keyOption } from './id.ts'
import { resumeIdFor } from './resume-id.ts'
import { explainUnreachable } from './unreachable.ts'
import { milliseconds } from './options.ts'

/** Flags every sock command has. */
export interface SockFlags {
  server: string
  key: string
  token?: string
  timeoutMs: number
  json?: boolean
  takeover?: boolean
  insecure?: boolean
  /** Display name other peers see (`listen --name`). */
  displayName?: string
}

/** `--name`: a display name as the server takes it (NFC, trimmed, at most 40 characters, no control or bidi characters). */
export function displayName (value: string): string {
  const name = checkName(value)
  if (name instanceof StarsockError) throw new InvalidArgumentError(`${name.message.replace(/^name /, 'The name ')}.`)
  if (name === undefined) throw new InvalidArgumentError('The name is empty.')
  return name
}

/** Run `reset` at the start of every parse of `command` (state a parse builds, e.g. counts, starts afresh). */
export function onParse (command: Command, reset: () => void): void {
  const save = command.saveStateBeforeParse.bind(command)
  const restore = command.restoreStateBeforeParse.bind(command)
  command.saveStateBeforeParse = () => { reset(); save() }
  command.restoreStateBeforeParse = () => { reset(); restore() }
}

/**
 * Refuse a second value of each option in `why` (long name without dashes -> the reason, or '')
 * with one line, `--NAME given twice: WHY`, instead of keeping the last one silently. An
 * environment variable is no second value (the command line wins, as commander does).
 */
export function once (command: Command, why: Record<string, string>): Command {
  const seen = new Set<string>()
  onParse(command, () => seen.clear())
  for (const [name, reason] of Object.entries(why)) {
    command.on(`option:${name}`, () => {
      if (seen.has(name)) throw new Error(`--${name} given twice${reason === '' ? ': give it once' : `: ${reason}`}`)
      seen.add(name)
    })
  }
  return command
}

/** Add the flags every sock command has (each at most once). */
export function sockCommand (name: string, description: string): Command {
  const command = new Command(name)
    .description(description)
    .requiredOption('--server <url>', 'server URL (http(s)://, ws(s)://) or multiaddr')
    .addOption(keyOption())
    .addOption(new Option('--token <token>', 'shared token, for servers that require one').env('STARSOCK_TOKEN'))
    .option('--timeout-ms <ms>', 'give up joining (and waiting for an answer to an offer) after this long', milliseconds(1), 60_000)
    .option('--json', 'print one JSON object per event on stdout')
    .option('--takeover', 'when another process is joined with this key, take the identity over (it exits)')
    .option('--insecure', 'allow plaintext connections to other peers (both sides must pass it): no end-to-end encryption, peer ids unverified; for measurement')
  return once(command, { server: 'one process joins one server', key: 'one process has one identity', token: '', 'timeout-ms': '' })
}

/** The warning line `--insecure` prints on stderr (also with `--json`). */
export const INSECURE_WARNING = 'starsock: warning: --insecure: connections to other peers may be plaintext: the server (and anyone on its way) can read and change what they carry, and peer ids are unverified (only the server\'s word)'

/**
 * The one line for an identity held elsewhere (`E_ADDRESS_IN_USE`) or taken over (`E_DISPLACED`),
 * naming the key file; other errors as they are.
 */
export function identityError (err: unknown, keyFile: string): unknown {
  if (!(err instanceof StarsockError)) return err
  if (err.code === 'E_ADDRESS_IN_USE') return new StarsockError(err.code, `${keyFile}: ${err.message}; stop that process or pass --takeover`)
  if (err.code === 'E_DISPLACED') return new StarsockError(err.code, `${keyFile}: ${err.message}`)
  return err
}

/**
 * Settles with why `peer` closed by itself (e.g. displaced, or a wrong token after a reconnect),
 * naming `keyFile`; never after a `close()` (its listener goes once the peer is closed, either way).
 */
export async function lost (peer: StarsockPeer, keyFile: string): Promise<StarsockError> {
  return await new Promise((resolve) => {
    const check = (): void => {
      if (peer.state !== 'closed') return
      off()
      const why = peer.closedBy
      if (why !== undefined) resolve(identityError(why, keyFile) as StarsockError)
    }
    const off = peer.on('state', check)
    check()
  })
}

/** Parse `[HOST:]PORT` (IPv6 in brackets); `host` when there is none. */
export function hostPort (defaultHost: string | undefined): (value: string) => SockAddress {
  return (value) => {
    const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(value) ?? /^()()(\d+)$/.exec(value)
    const ip = m?.[1] !== undefined && m[1] !== '' ? m[1] : m?.[2] !== undefined && m[2] !== '' ? m[2] : defaultHost
    const port = Number(m?.[3])
    if (m === null || ip === undefined) throw new InvalidArgumentError(defaultHost === undefined ? 'Not HOST:PORT.' : 'Not [HOST:]PORT.')
    if (!isHost(ip)) throw new InvalidArgumentError(`${ip} is not a host name or address.`)
    if (!isPort(port)) throw new InvalidArgumentError('Port must be 0 to 65535.')
    return { ip, port }
  }
}

/** How long a command waits to reach the server at all: a wrong `--server` fails within 5 s, start-up and `whyUnreachable` included. */
export const CONNECT_TIMEOUT_MS = 2500

/** Join the server with the identity in `--key` and run a sock agent on it. */
export async function startAgent (flags: SockFlags, options: SockAgentOptions): Promise<SockAgent> {
  const insecure = flags.insecure === true
  if (insecure) process.stderr.write(INSECURE_WARNING + '\n')
  const { identity } = await loadOrCreateIdentity(flags.key)
  const peer = await createPeer({ server: flags.server, identity, token: flags.token, timeoutMs: flags.timeoutMs, connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, flags.timeoutMs), takeover: flags.takeover === true, resumeId: resumeIdFor(flags.key, flags.takeover === true), profile: { name: flags.displayName } })
    .catch(async (err: unknown) => { throw identityError(await explainUnreachable(err, flags.server), flags.key) })
  return createSockAgent(peer, { host: createNodeHost(), mux: { offerTimeoutMs: flags.timeoutMs }, insecure, ...options })
}

/** Settles with the signal name on the first SIGINT or SIGTERM (a second one exits at once). */
export async function interrupted (): Promise<string> {
  return await new Promise((resolve) => {
    const on = (signal: string): void => {
      process.once(signal, () => process.exit(130))
      resolve(signal)
    }
    process.once('SIGINT', () => on('SIGINT'))
    process.once('SIGTERM', () => on('SIGTERM'))
  })
}

/** Stop the agent and leave the server. */
export async function stopAgent (agent: SockAgent): Promise<void> {
  await agent.close()
  await agent.peer.close()
}
