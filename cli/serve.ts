/** `starsock serve`: run the rendezvous server until SIGTERM or SIGINT. */
import { readFileSync } from 'node:fs'
import { Command, Option } from 'commander'
import { pino } from 'pino'
import { MAX_MESSAGE_BYTES } from '../shared/constants.ts'
import * as C from '../server/constants.ts'
import type { Logger } from '../shared/logger.ts'
import type { ServerOptions, TlsOptions } from '../server/options.ts'
import { createServer } from '../server/server.ts'
import { join } from 'node:path'
import { homedir } from 'node:os'
import type { SockRule } from '../shared/sock-rules.ts'
import type { SockAgent } from '../client/sock/agent.ts'
import { loadOrCreateIdentity } from '../client/identity.node.ts'
import { startGateway } from './gateway.ts'
import { ruleList } from './listen.ts'
import { collect, integer, port, portRange } from './options.ts'

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** Numeric limits: flag (env `STARSOCK_<FLAG>`), option name, default, minimum, help. */
const LIMITS: Array<[string, keyof ServerOptions, number, number, string]> = [
  ['max-message-bytes', 'maxMessageBytes', MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES, 'largest websocket message in bytes'],
  ['nonce-ttl-ms', 'nonceTtlMs', C.NONCE_TTL_MS, 1, 'lifetime of a join challenge nonce'],
  ['dial-timeout-ms', 'dialTimeoutMs', C.DIAL_TIMEOUT_MS, 1, 'time a listener has to answer a dial'],
  ['announce-interval-ms', 'announceIntervalMs', C.ANNOUNCE_INTERVAL_MS, 0, 'periodic ws-peer re-announcement interval (0: off)'],
  ['announce-batch-peers', 'announceBatchPeers', C.ANNOUNCE_BATCH_PEERS, 1, 'addresses per client per interval, and in a join reply'],
  ['stream-buffer-bytes', 'streamBufferBytes', C.STREAM_BUFFER_BYTES, 2 * MAX_MESSAGE_BYTES, 'bytes one stream may hold on the server'],
  ['socket-buffer-bytes', 'socketBufferBytes', C.SOCKET_BUFFER_BYTES, 2 * MAX_MESSAGE_BYTES, 'bytes all streams of one sender may hold'],
  ['sender-stall-timeout-ms', 'senderStallTimeoutMs', C.SENDER_STALL_TIMEOUT_MS, 1, 'a sender paused this long for a stalled receiver has its fullest streams failed'],
  ['max-addresses-per-socket', 'maxAddressesPerSocket', C.MAX_ADDRESSES_PER_SOCKET, 1, 'addresses one socket may join'],
  ['max-streams-per-socket', 'maxStreamsPerSocket', C.MAX_STREAMS_PER_SOCKET, 2, 'concurrent one-way streams per socket'],
  ['max-dials-per-second', 'maxDialsPerSecond', C.MAX_DIALS_PER_SECOND, 1, 'dials per second per socket'],
  ['max-peers', 'maxPeers', C.MAX_PEERS, 1, 'joined addresses per server'],
  ['max-joins-per-ip-per-minute', 'maxJoinsPerIpPerMinute', C.MAX_JOINS_PER_IP_PER_MINUTE, 1, 'join attempts per IP address per minute'],
  ['max-peers-per-ip', 'maxPeersPerIp', C.MAX_PEERS_PER_IP, 1, 'addresses joined at once from one client IP address'],
  ['stream-byte-budget', 'streamByteBudget', 0, 0, 'bytes one stream may carry (0: no budget)'],
  ['stream-idle-timeout-ms', 'streamIdleTimeoutMs', 0, 0, 'a stream idle this long fails (0: never)'],
  ['shutdown-grace-ms', 'shutdownGraceMs', C.SHUTDOWN_GRACE_MS, 0, 'time open streams get to finish on shutdown'],
  ['udp-max-allocations-per-peer', 'udpMaxAllocationsPerPeer', 4, 1, 'UDP relay allocations one peer may hold'],
  ['udp-max-allocations-per-ip', 'udpMaxAllocationsPerIp', C.UDP_MAX_ALLOCATIONS_PER_IP, 1, 'UDP relay allocations the peers of one client IP address may hold together'],
  ['udp-owner-grace-ms', 'udpOwnerGraceMs', C.UDP_OWNER_GRACE_MS, 0, 'UDP allocations of a peer that left end this long after, unless it joins again'],
  ['udp-idle-ms', 'udpIdleMs', 60_000, 1, 'a UDP allocation without packets this long expires'],
  ['udp-lifetime-ms', 'udpLifetimeMs', 600_000, 1, 'a UDP allocation expires this long after it was made or refreshed'],
  ['udp-max-bytes', 'udpMaxBytes', 1024 * 1024 * 1024, 1, 'bytes one UDP allocation may forward'],
  ['udp-max-packets-per-second', 'udpMaxPacketsPerSecond', 5000, 1, 'packets per second one UDP allocation may forward']
]

const envName = (flag: string): string => `STARSOCK_${flag.toUpperCase().replace(/-/g, '_')}`

/** The `serve` command; `started` receives the promise of its exit code. */
export function serveCommand (started: (run: Promise<number>) => void): Command {
  const cmd = new Command('serve')
    .description('run the rendezvous and relay server (and its page)')
    .addOption(new Option('--port <port>', 'TCP port to listen on').env('PORT').default(C.DEFAULT_PORT).argParser(port))
    .addOption(new Option('--host <host>', 'address to bind').env('HOST').default(C.DEFAULT_HOST))
    .addOption(new Option('--key <file>', 'TLS private key (PEM); with --cert serves https/wss').env('KEY'))
    .addOption(new Option('--cert <file>', 'TLS certificate chain (PEM)').env('CERT'))
    .addOption(new Option('--pfx <file>', 'TLS key and certificate as PKCS#12').env('PFX'))
    .addOption(new Option('--passphrase <text>', 'passphrase of --pfx or --key').env('PFX_PASSPHRASE'))
    .addOption(new Option('--disableCryptoChallenge', 'let peers join without proving their key (unsafe)').env('DISABLE_CRYPTO_CHALLENGE'))
    .addOption(new Option('--disableStrictMultiaddr', 'accept any multiaddr, not only websocket-star shapes').env('DISABLE_STRICT_MULTIADDR'))
    .addOption(new Option('--disableMetrics', 'do not serve /metrics').env('DISABLE_METRICS'))
    .addOption(new Option('--allow-peer <peerId>', 'only this peer id may join (repeatable)').argParser(collect))
    .addOption(new Option('--token <token>', 'shared token new clients must present; /metrics, /status and /status.json then need it too (Authorization: Bearer or ?token=)').env('STARSOCK_TOKEN'))
    .addOption(new Option('--cors-origin <origins>', 'allowed browser origins, comma-separated').env('STARSOCK_CORS_ORIGIN').default('*'))
    .addOption(new Option('--trust-proxy', 'take client IPs from X-Forwarded-For').env('STARSOCK_TRUST_PROXY'))
    .addOption(new Option('--udp-relay', 'run the UDP relay: peers get pairs of UDP ports that swap datagrams').env('STARSOCK_UDP_RELAY'))
    .addOption(new Option('--udp-ports <low-high>', 'port range of the UDP relay').env('STARSOCK_UDP_PORTS').default([40000, 40999], '40000-40999').argParser(portRange))
    .addOption(new Option('--udp-public-ip <ip>', 'address given to peers in allocations (default: the bound host)').env('STARSOCK_UDP_PUBLIC_IP'))
    .addOption(new Option('--gateway', 'run a built-in peer on this host that takes offers the --allow rules allow').env('STARSOCK_GATEWAY'))
    .addOption(new Option('--allow <rule>', 'gateway rule KIND[/PROTO]:HOST:PORT[@PEERID] (repeatable)').argParser(ruleList))
    .addOption(new Option('--gateway-key <file>', 'identity of the gateway peer').env('STARSOCK_GATEWAY_KEY').default(join(homedir(), '.starsock', 'gateway-key'), '~/.starsock/gateway-key'))
    .addOption(new Option('--log-level <level>', 'log level').env('LOG_LEVEL').choices(LOG_LEVELS).default('info'))
  for (const [flag, , fallback, min, help] of LIMITS) {
    cmd.addOption(new Option(`--${flag} <n>`, help).env(envName(flag)).default(fallback).argParser(integer(min)))
  }
  return cmd.action((flags: Record<string, unknown>) => { started(serve(flags)) })
}

function readTls (flags: Record<string, unknown>): TlsOptions | undefined {
  const file = (name: string): Buffer | undefined => {
    const path = flags[name]
    if (typeof path !== 'string') return undefined
    try {
      return readFileSync(path)
    } catch (err) {
      throw new Error(`cannot read --${name} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
    }
  }
  const key = file('key')
  const cert = file('cert')
  const pfx = file('pfx')
  const passphrase = typeof flags.passphrase === 'string' ? flags.passphrase : undefined
  if (pfx !== undefined) return { pfx, passphrase }
  if (key === undefined && cert === undefined) return undefined
  if (key === undefined || cert === undefined) throw new Error('--key and --cert go together')
  return { key, cert, passphrase }
}

async function serve (flags: Record<string, unknown>): Promise<number> {
  const logger = pino({ level: String(flags.logLevel), base: undefined }) as unknown as Logger
  let server
  try {
    // The gateway peer joins this server: with an allowlist, its id must be on it.
    const allowPeers = (flags.allowPeer as string[] | undefined) ?? []
    if (flags.gateway === true && allowPeers.length > 0) allowPeers.push((await loadOrCreateIdentity(String(flags.gatewayKey))).identity.peerId)
    const options: ServerOptions = {
      cryptoChallenge: flags.disableCryptoChallenge !== true,
      strictMultiaddr: flags.disableStrictMultiaddr !== true,
      metrics: flags.disableMetrics !== true,
      tls: readTls(flags),
      allowPeers,
      token: typeof flags.token === 'string' ? flags.token : '',
      corsOrigin: String(flags.corsOrigin),
      trustProxy: flags.trustProxy === true,
      udpRelay: flags.udpRelay === true,
      udpPorts: flags.udpPorts as [number, number],
      udpPublicIp: typeof flags.udpPublicIp === 'string' ? flags.udpPublicIp : undefined,
      logger
    }
    for (const [flag, name] of LIMITS) {
      const camel = flag.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())
      ;(options as Record<string, unknown>)[name] = flags[camel]
    }
    server = createServer(options)
    await server.listen(flags.port as number, String(flags.host))
  } catch (err) {
    process.stderr.write(`starsock serve: ${err instanceof Error ? err.message : String(err)}\n`)
    await server?.close()
    return 1
  }
  const running = server
  process.stdout.write(`starsock ${running.url()} (page, socket.io, /metrics, /healthz, /readyz)\n`)
  let gateway: SockAgent | undefined
  if (flags.gateway === true) {
    try {
      gateway = await startGateway({ serverUrl: running.url(), allow: (flags.allow as SockRule[] | undefined) ?? [], keyFile: String(flags.gatewayKey), token: typeof flags.token === 'string' ? flags.token : undefined, logger })
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
