/**
 * `starsock up --config FILE`: one agent from a TOML file, with any number of mappings in both
 * directions over one server connection and one connection per remote peer. SIGHUP reloads the
 * file (unchanged mappings are not touched; a bad file is one line and the running config stays);
 * SIGINT/SIGTERM stop it cleanly (exit 0).
 */
import { randomBytes } from 'node:crypto'
import { Command } from 'commander'
import { StarsockError } from '../../shared/errors.ts'
import type { SockRule } from '../../shared/sock-rules.ts'
import type { ServiceTarget, SockAgent, SockAgentOptions } from '../../client/sock/agent.ts'
import { TerminalConsent } from '../consent-prompt.ts'
import { reportAgent, reportUdpRelay, sessionsText } from '../listen.ts'
import { takeUdpRelay } from '../udp-relay-take.ts'
import { interrupted, lost, startAgent, stopAgent } from '../sock-runtime.ts'
import { UnreachableError } from '../unreachable.ts'
import { StatusReporter } from '../status.ts'
import { ConfigError, loadConfig, type AgentConfig, type ServiceConfig } from './config.ts'
import { AgentRunner, describeEntry } from './runner.ts'
import { controlTokenFile, removeControlToken, startControlApi, writeControlToken, type ControlApi } from './control-api.ts'

/** First and largest pause before the server is tried again at start. */
const SERVER_RETRY_MS = 1000
const SERVER_RETRY_MAX_MS = 30_000

interface UpFlags {
  config: string
  ask?: boolean
  prompt: boolean
  json?: boolean
  takeover?: boolean
  insecure?: boolean
}

/** The `up` command; `started` receives the promise of its exit code. */
export function upCommand (started: (run: Promise<number>) => void): Command {
  return new Command('up')
    .description('run one agent from a TOML config: any number of forwards, exposes, SOCKS5 proxies and accepts, rules and services (SIGHUP reloads it)')
    .requiredOption('--config <file>', 'the config file (see docs/agent.example.toml)')
    .option('--json', 'print one JSON object per event on stdout')
    .option('--takeover', 'when another process is joined with this key, take the identity over (it exits)')
    .option('--insecure', 'allow plaintext connections to other peers (as insecure = true in the file)')
    .option('--ask', 'ask about offers no rule allows on stdin even when it is not a terminal')
    .option('--no-prompt', 'never ask: deny every offer no rule allows (services with ask = true included)')
    .action((flags: UpFlags) => {
      started(up(flags))
    })
}

/** What the agent's `services` option wants: the target and protocol of each name. */
function serviceTargets (services: Record<string, ServiceConfig>): Record<string, ServiceTarget> {
  return Object.fromEntries(Object.entries(services).map(([name, s]) => [name, { to: s.to, proto: s.proto }]))
}

/** What changed in the file that a reload cannot apply (the agent would have to start anew). */
function unreloadable (a: AgentConfig, b: AgentConfig): string[] {
  const out: string[] = []
  if (a.server !== b.server) out.push('server')
  if (a.key !== b.key) out.push('key')
  if (a.token !== b.token) out.push('token')
  if (a.insecure !== b.insecure) out.push('insecure')
  if (a.timeoutMs !== b.timeoutMs) out.push('timeout_ms')
  if (a.leaseMs !== b.leaseMs) out.push('lease_ms')
  if (a.askTimeoutMs !== b.askTimeoutMs) out.push('ask_timeout_ms')
  if (JSON.stringify(a.control) !== JSON.stringify(b.control)) out.push('control')
  if (JSON.stringify(a.udpRelay) !== JSON.stringify(b.udpRelay)) out.push('udp_relay')
  return out
}

async function up (flags: UpFlags): Promise<number> {
  // A SIGHUP while starting is kept for after the start (by default it would end the process).
  let onHup = (): void => { hupWaiting = true }
  let hupWaiting = false
  const hup = (): void => onHup()
  process.on('SIGHUP', hup)
  try {
    return await run(flags, (handler) => {
      onHup = handler
      if (hupWaiting) handler()
    })
  } finally {
    process.off('SIGHUP', hup)
  }
}

async function run (flags: UpFlags, onReload: (handler: () => void) => void): Promise<number> {
  let config = await loadConfig(flags.config, process.env)
  // From here on SIGINT/SIGTERM stop cleanly (exit 0), also while starting (by default they would kill it).
  let signalled = false
  const stopping = interrupted().then(() => { signalled = true })
  const asking = flags.prompt && (flags.ask === true || process.stdin.isTTY === true)
  let consent: TerminalConsent | undefined
  // Set once the agent runs (a UDP relay half could come before: its events then go unsaid).
  let status: StatusReporter | undefined
  const agentOptions: SockAgentOptions = {
    allow: config.rules,
    leaseMs: config.leaseMs,
    services: serviceTargets(config.services),
    askTimeoutMs: config.askTimeoutMs,
    // A UDP relay half another peer hands over (starsock relay --share), as the udp-relay rules allow.
    onChannel: async (channel, _body, mux) => {
      if (channel.header.type === 'udp-relay') return await takeUdpRelay(channel, mux, { rules: () => agent.rules(), server: agent.peer.server.url, local: config.udpRelay?.local, relayIps: config.udpRelay?.relayIps, onEvent: (e) => reportUdpRelay(status, e) })
      throw new StarsockError('E_UNSUPPORTED', `This peer takes no ${channel.header.type} channels`)
    },
    // An offer before the prompt exists (the first moments) is denied as nobody's, not a crash.
    ask: asking ? async (request, signal) => consent === undefined ? 'nobody' : await consent.ask(request, signal) : undefined,
    askable: () => consent?.open !== false
  }
  const flagsOf = {
    server: config.server,
    key: config.key,
    token: config.token,
    timeoutMs: config.timeoutMs,
    json: flags.json,
    takeover: flags.takeover,
    insecure: flags.insecure === true || config.insecure,
    displayName: config.name
  }
  // A long-running agent (under a supervisor): a server not reachable yet is waited for, with backoff.
  const starting = (async (): Promise<SockAgent> => {
    const early = new StatusReporter(flags.json === true, () => ({ channelsOpen: 0, bytesIn: 0, bytesOut: 0, droppedDatagrams: 0 }))
    for (let delay = SERVER_RETRY_MS; ; delay = Math.min(delay * 2, SERVER_RETRY_MAX_MS)) {
      try {
        return await startAgent(flagsOf, agentOptions)
      } catch (err) {
        if (signalled || !(err instanceof StarsockError) || err.code !== 'E_SERVER_UNREACHABLE') throw err
        // startAgent said why (`explainUnreachable`), the name that does not resolve included.
        const unresolved = err instanceof UnreachableError ? err.unresolved : undefined
        const message = err.message
        early.event('waiting', { code: err.code, message, retryMs: delay, ...(unresolved === undefined ? {} : { unresolved }) }, `waiting for the server: ${message} (${err.code}); trying again in ${delay / 1000} s`)
        let timer: ReturnType<typeof setTimeout> | undefined
        await Promise.race([new Promise((resolve) => { timer = setTimeout(resolve, delay) }), stopping])
        clearTimeout(timer)
        if (signalled) throw err
      }
    }
  })()
  await Promise.race([starting, stopping])
  if (signalled) {
    // Not joined yet: leave once it is (or gave up), without waiting for it here.
    void starting.then(async (a) => await stopAgent(a), () => {})
    return 0
  }
  const agent: SockAgent = await starting
  let runner: AgentRunner | undefined
  status = new StatusReporter(flags.json === true, () => {
    const t = runner?.totals()
    const state = t === undefined || t.up === t.mappings ? undefined : `${t.up}/${t.mappings} mappings up`
    return { channelsOpen: t?.channelsOpen ?? 0, bytesIn: t?.bytesIn ?? 0, bytesOut: t?.bytesOut ?? 0, droppedDatagrams: t?.droppedDatagrams ?? 0, state, security: sessionsText(agent) }
  })
  if (asking) {
    consent = new TerminalConsent(agent, process.stdin, process.stderr, (hold) => status.hold(hold), () => status?.event('nobody-to-ask', {}, 'standard input ended: nobody is left to ask, so offers no rule allows are denied from now on'))
    status.afterEvent = () => consent?.redraw()
  }
  reportAgent(agent, status)
  // Rules a person added ("always") stay across reloads, with the file's own.
  const learned: SockRule[] = []
  agent.on('rule', ({ rule, peerId }) => {
    learned.push(rule)
    status?.event('rule', { rule: rule.text, peerId }, `added the rule ${rule.text} (answered "always" for ${peerId}); it lasts until this process ends (reloads keep it): to keep it, add it to allow in ${config.file}`)
  })
  runner = new AgentRunner(agent, { timeoutMs: config.timeoutMs, onEvent: (name, fields, text) => status.event(name, fields, text) })
  const rules = config.rules.map((r) => r.text)
  const unasked = asking ? [] : Object.entries(config.services).filter(([, sv]) => sv.ask).map(([n]) => n)
  status.event('up', { peerId: agent.peer.peerId, server: agent.peer.server.href, config: config.file, mappings: config.mappings.map((m) => m.id), rules, services: Object.keys(config.services), asking },
    `up as ${agent.peer.peerId} on ${agent.peer.server.href}; ${config.mappings.length} mapping${config.mappings.length === 1 ? '' : 's'}; rules: ${rules.length === 0 ? 'none' : rules.join(', ')}${Object.keys(config.services).length === 0 ? '' : `; services: ${Object.entries(config.services).map(([n, s]) => `${n} (${s.proto} ${s.to.ip}:${s.to.port})`).join(', ')}`}${asking ? '; other offers are asked here' : '; other offers are denied'}${unasked.length > 0 ? ` (services asked of a person are denied without a terminal: ${unasked.join(', ')})` : ''}` +
    config.mappings.map((m) => `\n  ${m.id}: ${describeEntry(m)}`).join(''))
  let control: ControlApi | undefined
  // A token made here is kept next to the key (0600) for the tools that call the API, written once the API listens, removed when it stops if it still holds this process's token; never printed.
  const tokenFile = config.control !== undefined && config.control.token === undefined ? controlTokenFile(config.key) : undefined
  if (config.control !== undefined) {
    try {
      const token = config.control.token ?? randomBytes(32).toString('base64url')
      control = await startControlApi({ runner, agent, listen: config.control.listen, token })
      // Only once this process listens: a second one whose listen fails must not replace the running one's token.
      if (tokenFile !== undefined) await writeControlToken(tokenFile, token)
      status.event('control', { url: control.url, tokenFile }, `control API on ${control.url} (token ${tokenFile === undefined ? 'from the config' : `in ${tokenFile}`})`)
    } catch (err) {
      if (control !== undefined && tokenFile !== undefined) await removeControlToken(tokenFile, control.token)
      await control?.close()
      await stopAgent(agent)
      throw new ConfigError(`${config.file}: [control]: ${(err as Error).message}`, 'control', (err as Error).message)
    }
  }
  await Promise.race([runner.apply(config.mappings), stopping])
  if (!signalled) status.start()

  // SIGHUP: read the file again; one line for a bad one, and what runs stays.
  let reloading: Promise<void> = Promise.resolve()
  onReload(() => {
    reloading = reloading.then(async () => {
      let next: AgentConfig
      try {
        next = await loadConfig(flags.config, process.env)
      } catch (err) {
        status.event('reload', { ok: false, message: (err as Error).message }, `reload failed, the running config stays: ${(err as Error).message}`)
        return
      }
      const stale = unreloadable(config, next)
      let r: { added: string[], changed: string[], removed: string[], kept: string[] }
      try {
        agent.setServices(serviceTargets(next.services))
        agent.setRules([...next.rules, ...learned])
        r = await (runner).apply(next.mappings)
      } catch (err) {
        status.event('reload', { ok: false, message: (err as Error).message }, `reload failed: ${(err as Error).message}`)
        return
      }
      // A new display name applies live (the server tells the other peers).
      if (next.name !== config.name) {
        agent.peer.setProfile({ name: next.name }).catch((err: unknown) => {
          status.event('name', { ok: false, message: (err as Error).message }, `display name not changed: ${(err as Error).message}`)
        })
      }
      config = { ...next, server: config.server, key: config.key, token: config.token, insecure: config.insecure, timeoutMs: config.timeoutMs, leaseMs: config.leaseMs, askTimeoutMs: config.askTimeoutMs, control: config.control, udpRelay: config.udpRelay }
      status.event('reload', { ok: true, ...r, restartNeeded: stale },
        `reloaded ${flags.config}: ${([['added', r.added], ['changed', r.changed], ['removed', r.removed]] as const).map(([what, ids]) => `${ids.length} ${what}${ids.length > 0 ? ` (${ids.join(', ')})` : ''}`).join(', ')}, ${r.kept.length} unchanged` +
        (stale.length > 0 ? `; ${stale.join(', ')} changed: restart to apply` : ''))
    })
  })
  const gone = await Promise.race([stopping.then(() => undefined), lost(agent.peer, config.key)])
  onReload(() => {})
  await reloading
  status.stop()
  consent?.close()
  await control?.close()
  if (control !== undefined && tokenFile !== undefined) await removeControlToken(tokenFile, control.token)
  await runner.close()
  await stopAgent(agent)
  if (gone !== undefined) throw gone
  return 0
}
