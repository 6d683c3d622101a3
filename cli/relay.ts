/** `starsock relay`: get a UDP relay allocation, keep it refreshed, release it on exit. */
import { isIP } from 'node:net'
import { Command, InvalidArgumentError, Option } from 'commander'
import { loadOrCreateIdentity } from '../client/identity.node.ts'
import { createPeer } from '../client/peer.ts'
import { resumeIdFor } from './resume-id.ts'
import { keyOption } from './id.ts'
import { integer, peerId } from './options.ts'
import { MAX_UDP_ALLOWED_ADDRESSES } from '../shared/validate.ts'
import { bridgeUdpEndpoint, type UdpBridge } from '../client/sock/udp-register.node.ts'
import { sendUdpHalf, type UdpHalf, type UdpShare } from '../client/sock/udp-share.ts'
import { createSockAgent, type SockAgent } from '../client/sock/agent.ts'
import { StarsockError } from '../shared/errors.ts'
import { CONNECT_TIMEOUT_MS, hostPort, identityError, interrupted, lost as identityLost } from './sock-runtime.ts'
import { explainUnreachable } from './unreachable.ts'

/** Address of a local UDP program. */
export interface LocalAddress { ip: string, port: number }

/** `IP:PORT` of a local UDP program (an address, so replies can be matched to it). */
export function localProgram (value: string): LocalAddress {
  const address = hostPort(undefined)(value)
  if (isIP(address.ip) === 0 || address.port === 0) throw new InvalidArgumentError('Not IP:PORT (an address and a port, not 0).')
  return address
}

/** An allocation id as the server gives it (hex). */
function allocationId (value: string): string {
  if (!/^[0-9a-f]{1,64}$/i.test(value)) throw new InvalidArgumentError('Not an allocation id (hex, as printed by starsock relay).')
  return value
}


interface RelayFlags {
  server: string
  key: string
  token?: string
  mode: 'token' | 'address' | 'open'
  allowIp?: string[]
  refreshMs: number
  once?: boolean
  json?: boolean
  takeover?: boolean
  local1?: LocalAddress
  local2?: LocalAddress
  share?: string
  release?: string
  timeoutMs: number
}

/**
 * Hand `half` to `peer`, waiting (up to `timeoutMs` in all) for a peer that is not online yet;
 * `waiting` is called once when it is not.
 */
async function shareWhenOnline (agent: SockAgent, peer: string, half: UdpHalf, timeoutMs: number, waiting: () => void): Promise<UdpShare> {
  const signal = AbortSignal.timeout(timeoutMs)
  let told = false
  for (;;) {
    try {
      return await sendUdpHalf(agent, peer, half, { signal })
    } catch (err) {
      if ((err as StarsockError).code !== 'E_PEER_NOT_FOUND' || signal.aborted) throw err
      if (!told) waiting()
      told = true
      await new Promise((resolve) => setTimeout(resolve, 1000))
      if (signal.aborted) throw new StarsockError('E_TIMEOUT', `${peer} did not come online within ${timeoutMs} ms`)
    }
  }
}

/** One line on stderr and exit code 1. */
function fail (text: string): number {
  process.stderr.write(`starsock relay: ${text}\n`)
  return 1
}

/** Collect a repeatable `--allow-ip`: each an IPv4 or IPv6 address. */
function ipList (value: string, previous: string[] = []): string[] {
  if (isIP(value) === 0) throw new InvalidArgumentError(`${value} is not an IP address`)
  return [...previous, value]
}

/** The `relay` command; `started` receives the promise of its exit code. */
export function relayCommand (started: (run: Promise<number>) => void): Command {
  return new Command('relay')
    .description('get a UDP relay allocation (two ports that swap datagrams), print it, keep it until SIGINT/SIGTERM, then release it; or hand endpoint 2 to a peer (--share), or release one made earlier (--release)')
    .requiredOption('--server <url>', 'server URL (http(s)://, ws(s)://) or multiaddr')
    .addOption(keyOption())
    .addOption(new Option('--token <token>', 'shared token, for servers that require one').env('STARSOCK_TOKEN'))
    .addOption(new Option('--mode <mode>', 'how endpoints register: token (the token handshake only), address (also a first packet from --allow-ip), open (also any first packet: unsafe); a first-packet endpoint gets 8 datagrams until it does the handshake').choices(['token', 'address', 'open']).default('token'))
    .option('--allow-ip <ip>', `address mode: a source IP that may register (repeatable, at most ${MAX_UDP_ALLOWED_ADDRESSES})`, ipList)
    .option('--refresh-ms <ms>', 'refresh the allocation this often', integer(1000), 30_000)
    .option('--local1 <ip:port>', 'make the UDP program at ip:port endpoint 1: starsock registers for it and carries its datagrams both ways', localProgram)
    .option('--local2 <ip:port>', 'the same for endpoint 2', localProgram)
    .option('--share <peerId>', 'hand endpoint 2 to this peer over an end-to-end encrypted connection (it needs an --allow udp-relay rule for this peer); endpoint 1 stays here (--local1, or printed)', peerId)
    .option('--release <id>', 'release an allocation this key made earlier (e.g. with --once; the server keeps it a grace period after its owner left), then exit', allocationId)
    .option('--timeout-ms <ms>', 'give up joining, and waiting for the --share peer to take the half, after this long', integer(1), 60_000)
    .option('--once', 'print the allocation and exit (it ends when idle, or a grace period after this peer left unless it joins again; --release ends it sooner)')
    .option('--json', 'print the allocation as JSON')
    .option('--takeover', 'when another process is joined with this key, take the identity over (it exits)')
    .action((flags: RelayFlags) => {
      started((async () => {
        if (flags.mode === 'address' && flags.allowIp === undefined) return fail('--mode address needs --allow-ip: the source IPs whose first packet may register')
        if (flags.mode !== 'address' && flags.allowIp !== undefined) return fail(`--allow-ip is for --mode address (${flags.mode} mode ${flags.mode === 'token' ? 'registers by the token handshake only' : 'takes a first packet from anywhere'})`)
        if ((flags.allowIp?.length ?? 0) > MAX_UDP_ALLOWED_ADDRESSES) return fail(`--allow-ip: at most ${MAX_UDP_ALLOWED_ADDRESSES} addresses`)
        if (flags.once === true && (flags.local1 !== undefined || flags.local2 !== undefined)) return fail('--once cannot carry datagrams for --local1/--local2')
        if (flags.once === true && flags.share !== undefined) return fail('--once cannot keep a half shared with --share (the peer\'s bridge ends with this process)')
        if (flags.share !== undefined && flags.local2 !== undefined) return fail('--share hands endpoint 2 to the peer: it cannot also be --local2')
        if (flags.release !== undefined && (flags.share !== undefined || flags.once === true || flags.local1 !== undefined || flags.local2 !== undefined)) return fail('--release takes no --share, --once, --local1 or --local2')
        const { identity } = await loadOrCreateIdentity(flags.key)
        const peer = await createPeer({ server: flags.server, identity, token: flags.token, timeoutMs: flags.timeoutMs, connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, flags.timeoutMs), takeover: flags.takeover === true, resumeId: resumeIdFor(flags.key, flags.takeover === true) })
          .catch(async (err: unknown) => { throw identityError(await explainUnreachable(err, flags.server), flags.key) })
        if (flags.release !== undefined) {
          try {
            await peer.udpRelease(flags.release)
          } catch (err) {
            if ((err as StarsockError).code !== 'E_UDP_NOT_FOUND') throw err
            return fail(`allocation ${flags.release} is gone: it expired, was released, or ended a grace period after its owner left (or another key made it) (E_UDP_NOT_FOUND)`)
          } finally {
            await peer.close()
          }
          process.stdout.write(flags.json === true ? JSON.stringify({ released: flags.release }) + '\n' : `released allocation ${flags.release}\n`)
          return 0
        }
        const agent = flags.share === undefined ? undefined : createSockAgent(peer, {})
        const bridges: UdpBridge[] = []
        let share: UdpShare | undefined
        try {
          const a = await peer.udpAllocate({ mode: flags.mode, addresses: flags.allowIp })
          if (flags.json === true) process.stdout.write(JSON.stringify(a) + '\n')
          else {
            process.stdout.write(`allocation ${a.id} (${a.mode}), expires ${new Date(a.expiresAt).toISOString()}\n`)
            process.stdout.write(`endpoint 1: ${a.ip}:${a.port1} token ${a.token1}\n`)
            process.stdout.write(`endpoint 2: ${a.ip}:${a.port2} token ${a.token2}${flags.share === undefined ? '' : ` (for ${flags.share})`}\n`)
            process.stdout.write(`register each endpoint: send its token (hex-decoded, 16 bytes) to its port; the relay answers 16 bytes (the cookie); send the cookie XOR the token (byte by byte) to the port; the relay confirms with those 16 bytes each XOR 0xff; then send data from the same socket (no answer within a second: start again with the token)${a.mode === 'token' ? '' : ` (${a.mode} mode: a first packet registers too, but the relay sends such an endpoint only 8 datagrams until it has done this)`}\n`)
            if (flags.once === true) process.stdout.write(`release it sooner with: starsock relay --server ${flags.server} --key ${flags.key} --release ${a.id}\n`)
          }
          if (flags.once === true) return 0
          for (const [n, local, port, token] of [[1, flags.local1, a.port1, a.token1], [2, flags.local2, a.port2, a.token2]] as const) {
            if (local === undefined) continue
            const bridge = await bridgeUdpEndpoint({ ip: a.ip, port, token }, local)
            bridges.push(bridge)
            const via = bridge.socket.address().port
            process.stdout.write(flags.json === true ? JSON.stringify({ endpoint: n, local: `${local.ip}:${local.port}`, via }) + '\n' : `endpoint ${n} registered for the program at ${local.ip}:${local.port} (it sends to and gets from local port ${via})\n`)
          }
          if (agent !== undefined && flags.share !== undefined) {
            try {
              share = await shareWhenOnline(agent, flags.share, { ip: a.ip, port: a.port2, token: a.token2, expiresAt: a.expiresAt }, flags.timeoutMs, () => {
                process.stderr.write(`starsock relay: waiting for ${flags.share ?? ''} to come online (up to ${Math.round(flags.timeoutMs / 1000)} s)\n`)
              })
            } catch (err) {
              await peer.udpRelease(a.id).catch(() => {})
              const e = err as StarsockError
              const code = e.code ?? (e.name === 'TimeoutError' ? 'E_TIMEOUT' : undefined)
              return fail(`${flags.share} did not take endpoint 2: ${code === 'E_DENIED' ? `${e.message} (it needs --allow udp-relay@${peer.peerId})` : e.message}${code === undefined ? '' : ` (${code})`}; allocation ${a.id} released`)
            }
            const how = share.taken === 'bridged' ? `bridged to its UDP program${share.via === undefined ? '' : ` (from its port ${share.via})`}` : share.taken === 'printed' ? 'printed for its person' : 'taken'
            process.stdout.write(flags.json === true ? JSON.stringify({ shared: flags.share, endpoint: 2, taken: share.taken ?? null, via: share.via ?? null }) + '\n' : `endpoint 2 handed to ${flags.share}: ${how}\n`)
            void share.ended.then((err) => {
              if (flags.json === true) process.stdout.write(JSON.stringify({ shareEnded: flags.share, code: err?.code ?? null }) + '\n')
              else process.stdout.write(`${flags.share} stopped using endpoint 2${err === undefined ? '' : `: ${err.message} (${err.code})`}; the allocation stays until SIGINT/SIGTERM\n`)
            })
          }
          let lost: Error | undefined
          let onLost: () => void = () => {}
          const timer = setInterval(() => {
            peer.udpRefresh(a.id).catch((err: Error & { code?: string }) => {
              if (err.code === 'E_UDP_NOT_FOUND') { lost = err; onLost() } else process.stderr.write(`starsock relay: refresh failed: ${err.message}\n`)
            })
          }, flags.refreshMs)
          const gone = await Promise.race([interrupted().then(() => undefined), identityLost(peer, flags.key), new Promise<undefined>((resolve) => { onLost = () => resolve(undefined) })])
          clearInterval(timer)
          if (gone !== undefined) throw gone
          if (lost !== undefined) throw lost // the allocation expired or the server restarted
          await peer.udpRelease(a.id).catch(() => {})
          return 0
        } finally {
          share?.close()
          for (const bridge of bridges) bridge.close()
          await agent?.close()
          await peer.close()
        }
      })())
    })
}
