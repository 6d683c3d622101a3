/** `starsock listen`: join and run what other peers offer, as the rules (or a person) allow. */
import { InvalidArgumentError } from 'commander'
import { describeOffer } from '../shared/sock-protocol.ts'
import type { SockRule } from '../shared/sock-rules.ts'
import { SECURE_REQUIRED_REASON, type ServiceTarget, type SockAgent, type SockHost } from '../client/sock/agent.ts'
import { createNodeHost } from '../client/sock/host.node.ts'
import { SERVICE_NAME } from '../shared/sock-rules.ts'
import { mkdir } from 'node:fs/promises'
import { isIP } from 'node:net'
import { StarsockError } from '../shared/errors.ts'
import { TerminalConsent } from './consent-prompt.ts'
import { DEFAULT_FILE_QUOTA_BYTES, DEFAULT_MAX_FILE_BYTES, receiveFileInto, removeStalePartials, resumeOffsetIn } from './files.ts'
import { integer, milliseconds, ruleList } from './options.ts'
import { displayName, hostPort, interrupted, lost, sockCommand, startAgent, stopAgent, type SockFlags } from './sock-runtime.ts'
import { localProgram, type LocalAddress } from './relay.ts'
import { takeUdpRelay, type UdpRelayEvent } from './udp-relay-take.ts'
import { addressList, securityText, StatusReporter } from './status.ts'

/** Services one listen offers at most. */
export const MAX_SERVICES = 256

/** Parse a repeatable `--service NAME=[udp:]HOST:PORT` into services. */
export function serviceList (value: string, previous: Record<string, ServiceTarget> = {}): Record<string, ServiceTarget> {
  const m = /^([^=]+)=(udp:|tcp:)?(.+)$/.exec(value)
  if (m === null) throw new InvalidArgumentError('Not NAME=[udp:]HOST:PORT (e.g. web=127.0.0.1:3000, dns=udp:127.0.0.1:53).')
  const [, name, proto, target] = m as unknown as [string, string, string | undefined, string]
  if (!SERVICE_NAME.test(name)) throw new InvalidArgumentError(`${name} is not a service name (a letter or digit, then up to 63 letters, digits, _ . -).`)
  if (Object.hasOwn(previous, name)) throw new InvalidArgumentError(`Service ${name} is given twice.`)
  if (Object.keys(previous).length >= MAX_SERVICES) throw new InvalidArgumentError(`At most ${MAX_SERVICES} services.`)
  const to = hostPort(undefined)(target)
  if (to.port === 0) throw new InvalidArgumentError('A service needs a port (not 0).')
  return { ...previous, [name]: { to, proto: proto === 'udp:' ? 'udp' : 'tcp' } }
}

/**
 * The command another peer runs to use `rule` of this peer: `starsock forward` for a connect rule
 * (`--service NAME` for a service rule), `starsock expose` for a bind rule, `starsock relay
 * --share` for a udp-relay rule, with this server's URL and this peer's id. What a rule leaves
 * open (`*`) is left as a word in capitals to fill in; a port range gives its first port.
 */
export function commandFor (rule: SockRule, serverUrl: string, peerId: string, serviceProto?: 'tcp' | 'udp'): string {
  if (rule.kind === 'udp-relay') return `starsock relay --server ${serverUrl} --share ${peerId}`
  if (rule.kind === 'service') {
    return `starsock forward --server ${serverUrl} --peer ${peerId} --listen LOCAL_PORT --service ${rule.host === '*' ? 'NAME' : rule.host}${serviceProto === 'udp' ? ' --udp' : ''}`
  }
  const host = rule.host === '*' ? 'HOST' : rule.host.includes(':') ? `[${rule.host}]` : rule.host
  const wide = rule.ports[0] === 0 && rule.ports[1] === 65535
  const udp = rule.proto === 'udp' ? ' --udp' : ''
  const start = `starsock ${rule.kind === 'connect' ? 'forward' : 'expose'} --server ${serverUrl} --peer ${peerId}`
  if (rule.kind === 'connect') {
    const port = wide ? 'PORT' : String(rule.ports[0])
    return `${start} --listen ${wide ? 'LOCAL_PORT' : port} --to ${host}:${port}${udp}`
  }
  const bindHost = rule.host === '*' ? '' : ` --bind-host ${rule.host}`
  return `${start}${bindHost} --port ${wide ? 0 : rule.ports[0]} --to 127.0.0.1:LOCAL_PORT${udp}`
}

/** Say when the connection to the server drops (the peer reconnects by itself) and when it is joined again. */
export function reportServer (agent: SockAgent, status: StatusReporter): void {
  const url = agent.peer.server.href
  agent.peer.on('state', (state) => {
    if (state === 'reconnecting') status.event('server', { state, server: url }, `lost the server ${url}; reconnecting until it is back`)
    else if (state === 'joined') status.event('server', { state, server: url }, `joined ${url} again`)
  })
}

/** Log what an agent decides and runs. */
export function reportAgent (agent: SockAgent, status: StatusReporter): void {
  reportServer(agent, status)
  agent.on('limit', (l) => status.event('limit', { ...l }, `refused for ${l.peerId} by a limit: ${l.message} (${l.code})`))
  // Each connection to a peer, once it runs: end-to-end encrypted, or plaintext (both sides --insecure).
  agent.on('session', (mux) => status.event('session', { peerId: mux.remotePeer, secure: mux.secure, initiator: mux.conn.initiator },
    `connection ${mux.conn.initiator ? 'to' : 'from'} ${mux.remotePeer}: ${securityText(mux.secure)}`))
  agent.on('refused', ({ peerId, initiator, error }) => status.event('refused', { peerId, initiator, code: error.code, message: error.message },
    `refused a plaintext connection ${initiator ? 'to' : 'from'} ${peerId}: ${SECURE_REQUIRED_REASON} (${error.code})`))
  agent.on('refused-source', ({ peerId, mapping, src }) => status.event('refused-source', { peerId, mapping: mapping.id, src },
    `refused a client from ${addressList([src])} on ${mapping.label} for ${peerId}: not in its allow-from`))
  agent.on('offer', (d) => status.event('offer', { peerId: d.peerId, secure: d.secure, offer: d.text, allowed: d.allowed, by: d.by, rule: d.rule, reason: d.reason, code: d.code },
    `${d.allowed ? 'allowed' : 'denied'} ${d.text} for ${d.peerId}${d.secure ? '' : ' (unverified: plaintext)'} (${d.by === 'rule' ? `rule ${d.rule ?? ''}` : d.reason ?? d.by})`))
  agent.on('mapping', (m) => {
    if (m.local) return
    status.event('mapping', { peerId: m.peerId, mapping: m.id, offer: describeOffer(m.offer), secure: m.secure }, `mapping ${m.label} open for ${m.peerId}; ${securityText(m.secure)}`)
    m.on('channel', (c) => status.event('channel', { peerId: m.peerId, mapping: m.id, channel: c.id, src: c.header.src, dst: c.header.dst },
      `channel ${c.id} of ${m.label}${c.header.src !== undefined ? ` from ${c.header.src.ip}:${c.header.src.port}` : ''}`))
  })
  agent.on('mapping:close', ({ mapping, error }) => {
    if (!mapping.local) status.event('mapping:close', { peerId: mapping.peerId, mapping: mapping.id, code: error.code, message: error.message }, `mapping ${mapping.label} closed: ${error.message} (${error.code})`)
  })
}

/** How the live connections are protected, for the status line: `connections: 2 end-to-end encrypted (peer verified)`, the plaintext ones apart (a peer may have more than one). */
export function sessionsText (agent: SockAgent): string | undefined {
  const sessions = agent.sessions()
  if (sessions.length === 0) return undefined
  const secure = sessions.filter((s) => s.secure).length
  const parts = [[secure, securityText(true)], [sessions.length - secure, securityText(false)]] as const
  return 'connections: ' + parts.filter(([n]) => n > 0).map(([n, text]) => `${n} ${text}`).join(', ')
}

/** Addresses of the server's UDP relay at most (`--udp-relay-ip`). */
const MAX_RELAY_IPS = 16

/** One `--udp-relay-ip` (an IPv4 or IPv6 address, never a name), collected. */
function relayIpList (value: string, previous: string[] = []): string[] {
  if (isIP(value) === 0) throw new InvalidArgumentError('Not an IP address.')
  if (previous.length >= MAX_RELAY_IPS) throw new InvalidArgumentError(`At most ${MAX_RELAY_IPS} addresses.`)
  return [...previous, value]
}

/** The `listen` command; `started` receives the promise of its exit code. */
export function listenCommand (started: (run: Promise<number>) => void) {
  return sockCommand('listen', 'join and run what other peers offer (connect, bind) as --allow rules or a person allow')
    .option('--allow <rule>', 'KIND[/PROTO]:HOST:PORT[@PEERID], e.g. connect/tcp:127.0.0.1:8080, or file[:*][@PEERID] for --files (repeatable)', ruleList)
    .option('--name <name>', 'display name other peers see beside this peer\'s id (the page\'s peer list; at most 40 characters)', displayName)
    .option('--ask', 'ask about other offers on stdin even when it is not a terminal')
    .option('--no-prompt', 'never ask: deny every offer no rule allows')
    .option('--ask-timeout-ms <ms>', 'how long the person has to answer an offer (then it is denied)', milliseconds(1000), 60_000)
    .option('--lease-ms <ms>', 'keep a bound port this long for a binder whose connection dropped', milliseconds(0), 30_000)
    .option('--files <dir>', 'save files other peers offer (the page\'s "Send file") into this folder, when a file rule or a person agrees')
    .option('--max-file-bytes <n>', 'largest file taken (larger offers are refused before anyone is asked)', integer(0), DEFAULT_MAX_FILE_BYTES)
    .option('--file-quota-bytes <n>', 'bytes of files one peer may send per hour (all peers together: 4 times this)', integer(0), DEFAULT_FILE_QUOTA_BYTES)
    .option('--service <name=[udp:]host:port>', 'offer a service by name: a peer asks for NAME (starsock forward --service NAME) and reaches this target, chosen here; granted by an --allow service:NAME[@PEERID] rule or a person (repeatable)', serviceList)
    .option('--udp-relay-local <ip:port>', 'bridge a UDP relay half a peer hands over (starsock relay --share; needs an --allow udp-relay[@PEERID] rule) to the UDP program at ip:port; without it the half is printed', localProgram)
    .option('--udp-relay-ip <ip>', 'an address of this server\'s UDP relay, when its URL\'s host does not resolve to it (repeatable): a half naming another address is refused (E_BAD_REQUEST)', relayIpList)
    .option('--max-mappings-total <n>', 'mappings all other peers together may hold here', integer(0), 1024)
    .option('--max-bound-ports-total <n>', 'ports listened on for all other peers together (leases count)', integer(0), 256)
    .action((flags: ListenFlags) => {
      started(listen(flags))
    })
}

type ListenFlags = SockFlags & {
  name?: string
  allow?: SockRule[]
  ask?: boolean
  prompt: boolean
  askTimeoutMs: number
  leaseMs: number
  files?: string
  maxFileBytes: number
  fileQuotaBytes: number
  maxMappingsTotal: number
  maxBoundPortsTotal: number
  udpRelayLocal?: LocalAddress
  udpRelayIp?: string[]
  service?: Record<string, ServiceTarget>
}

/** A UDP relay half's event as a status line. */
export function reportUdpRelay (status: StatusReporter | undefined, e: UdpRelayEvent): void {
  switch (e.type) {
    case 'refused': return status?.event('udp-relay:refused', { peerId: e.peerId, secure: e.secure, code: e.code, message: e.message }, `refused a UDP relay half from ${e.peerId}: ${e.message} (${e.code})`)
    case 'failed': return status?.event('udp-relay:failed', { peerId: e.peerId, code: e.code, message: e.message }, `a UDP relay half from ${e.peerId} failed: ${e.message} (${e.code})`)
    case 'taken':
      if (e.local === undefined) {
        return status?.event('udp-relay', { peerId: e.peerId, rule: e.rule, half: e.half },
          `${e.peerId} handed over a UDP relay half (rule ${e.rule}): ${e.half.ip}:${e.half.port} token ${e.half.token === '' ? '(none)' : e.half.token}; register a UDP program there (see "starsock relay --help"), or pass --udp-relay-local IP:PORT to have it bridged`)
      }
      return status?.event('udp-relay', { peerId: e.peerId, rule: e.rule, relay: { ip: e.half.ip, port: e.half.port }, local: e.local, via: e.via },
        `${e.peerId} handed over a UDP relay half (rule ${e.rule}): ${e.half.ip}:${e.half.port} bridged to the program at ${e.local.ip}:${e.local.port} (it sends to and gets from local port ${e.via ?? '?'})`)
    case 'ended': return status?.event('udp-relay:end', { peerId: e.peerId, relay: { ip: e.half.ip, port: e.half.port }, counts: e.counts, code: e.code ?? null },
      `the UDP relay half from ${e.peerId} (${e.half.ip}:${e.half.port}) ended${e.code === undefined ? '' : ` (${e.code})`}; ${e.counts.toLocal} datagrams to the program, ${e.counts.toRelay} from it`)
  }
}

async function listen (flags: ListenFlags): Promise<number> {
  // Flags that would do nothing are refused, not ignored.
  const given = flags.allow ?? []
  if (flags.files === undefined && given.some((r) => r.kind === 'file')) throw new Error('a file rule (--allow file...) needs --files DIR, the folder files are saved into')
  if (flags.udpRelayLocal !== undefined && !given.some((r) => r.kind === 'udp-relay')) throw new Error('--udp-relay-local needs an --allow udp-relay[@PEERID] rule: without one no UDP relay half is taken')
  const asking = flags.prompt && (flags.ask === true || process.stdin.isTTY === true)
  let consent: TerminalConsent | undefined
  let status: StatusReporter | undefined
  const files = flags.files
  if (files !== undefined) {
    await mkdir(files, { recursive: true, mode: 0o700 })
    await removeStalePartials(files)
  }
  // A port bound for a peer says where it can be reached (a wildcard: this host's addresses).
  const nodeHost = createNodeHost()
  const host: SockHost = {
    ...nodeHost,
    bind: async (proto, ip, port, target) => {
      const listener = await nodeHost.bind(proto, ip, port, target)
      const a = listener.address
      const reach = listener.addresses === undefined || listener.addresses.length === 0 ? '' : `; reach it at ${addressList(listener.addresses)}`
      status?.event('bound', { proto, address: a, addresses: listener.addresses ?? [a] }, `listening on ${proto} ${addressList([a])} for a peer${reach}`)
      return listener
    }
  }
  const services = flags.service ?? {}
  const agent = await startAgent({ ...flags, displayName: flags.name }, {
    host,
    services,
    allow: flags.allow ?? [],
    leaseMs: flags.leaseMs,
    askTimeoutMs: flags.askTimeoutMs,
    maxMappingsTotal: flags.maxMappingsTotal,
    maxBoundPortsTotal: flags.maxBoundPortsTotal,
    onChannel: async (channel, _body, mux) => {
      // The rules now: an "always" answer may have added one.
      if (channel.header.type === 'udp-relay') return await takeUdpRelay(channel, mux, { rules: () => agent.rules(), local: flags.udpRelayLocal, server: agent.peer.server.href, relayIps: flags.udpRelayIp, onEvent: (e) => reportUdpRelay(status, e) })
      throw new StarsockError('E_UNSUPPORTED', `This peer takes no ${channel.header.type} channels${channel.header.type === 'file' ? ' (start it with --files DIR)' : ''}`)
    },
    files: files === undefined
      ? undefined
      : {
          maxFileBytes: flags.maxFileBytes,
          quotaBytesPerPeer: flags.fileQuotaBytes,
          quotaBytesTotal: 4 * flags.fileQuotaBytes,
          quotaWindowMs: 3_600_000,
          resumeOffset: async (request) => await resumeOffsetIn(files, request),
          onFile: (channel, mapping) => {
            receiveFileInto(files, channel, mapping.offer, { offset: mapping.fileOffset, resumable: mapping.secure }).then(
              (f) => status?.event('file', { ...f }, `${f.ok ? 'saved' : 'checksum mismatch, dropped'} ${f.name} (${f.size} bytes, SHA-256 ${f.sha256}) from ${f.peerId}${f.ok ? ` as ${f.path}` : ''}`),
              (err: unknown) => {
                channel.abort(err)
                status?.event('error', { code: (err as StarsockError).code, message: (err as Error).message }, `file from ${channel.remotePeer} failed: ${(err as Error).message}`)
              })
          }
        },
    // 'always': the agent grants and adds the rule for this peer; its `rule` event says which.
    ask: asking ? async (request, signal) => await (consent as TerminalConsent).ask(request, signal) : undefined,
    askable: () => consent?.open !== false
  })
  status = new StatusReporter(flags.json === true, () => ({ ...agent.stats(), security: sessionsText(agent) }))
  if (asking) {
    consent = new TerminalConsent(agent, process.stdin, process.stderr, (hold) => status.hold(hold), () => status?.event('nobody-to-ask', {}, 'standard input ended: nobody is left to ask, so offers no rule allows are denied from now on'))
    status.afterEvent = () => consent?.redraw()
  }
  reportAgent(agent, status)
  agent.on('rule', ({ rule, peerId }) => status?.event('rule', { rule: rule.text, peerId },
    `added the rule ${rule.text} (answered "always" for ${peerId}); it lasts until this process ends: to keep it, pass --allow ${rule.text} (or add it to allow in the config file)`))
  const rules = (flags.allow ?? []).map((r) => r.text)
  // File rules have no command: files come from the page's "Send file" (or `agent.offerFile`);
  // service rules have one per service offered here.
  const tunnelRules = (flags.allow ?? []).filter((r) => r.kind !== 'file' && !(r.kind === 'service' && (r.host === '*' || Object.hasOwn(services, r.host))))
  const insecure = flags.insecure === true
  const serviceCommands = Object.entries(services).map(([name, target]) => ({
    text: `service ${name} (${target.proto} ${addressList([target.to])})`,
    command: commandFor({ kind: 'service', proto: 'tcp', host: name, ports: [0, 65535], text: `service:${name}` }, agent.peer.server.href, agent.peer.peerId, target.proto) + (insecure ? ' --insecure' : '')
  }))
  const commands = [...tunnelRules.map((r) => commandFor(r, agent.peer.server.href, agent.peer.peerId) + (insecure ? ' --insecure' : '')), ...serviceCommands.map((c) => c.command)]
  const usable = [...tunnelRules.map((r) => r.text), ...serviceCommands.map((c) => c.text)]
  const fileRule = (flags.allow ?? []).some((r) => r.kind === 'file')
  const filesText = files === undefined ? '' : `; files into ${files} (${fileRule ? 'as the file rules allow, ' : ''}${asking ? 'others asked here' : fileRule ? 'others denied' : 'all denied: no file rule and nobody to ask'}; at most ${flags.maxFileBytes} bytes each, ${flags.fileQuotaBytes} per peer per hour)`
  const peerRules = rules.length - (flags.allow ?? []).filter((r) => r.peerId === undefined).length
  const securityNote = insecure
    ? `; plaintext connections allowed (--insecure: peer ids unverified${peerRules > 0 ? ', rules naming a peer match only end-to-end encrypted connections' : ''})`
    : '; end-to-end encryption required'
  status.event('ready', { peerId: agent.peer.peerId, server: agent.peer.server.href, rules, commands, services: Object.fromEntries(Object.entries(services).map(([n, t]) => [n, `${t.proto === 'udp' ? 'udp:' : ''}${addressList([t.to])}`])), asking, files: files ?? null, insecure },
    `listening as ${agent.peer.peerId}; rules: ${rules.length === 0 ? 'none' : rules.join(', ')}${asking ? '; others are asked here (commands: list, kill N)' : '; others are denied'}${filesText}${securityNote}` +
    commands.map((c, i) => `\n  to use ${usable[i] ?? ''}, a peer runs: ${c}`).join(''))
  status.start()
  const gone = await Promise.race([interrupted().then(() => undefined), lost(agent.peer, flags.key)])
  status.stop()
  consent?.close()
  await stopAgent(agent)
  if (gone !== undefined) throw gone
  return 0
}
