/** `starsock relay`: get a UDP relay allocation, keep it refreshed, release it on exit. */
import { isIP } from 'node:net'
import { Command, InvalidArgumentError, Option } from 'commander'
import { loadOrCreateIdentity } from '../client/identity.node.ts'
import { createPeer } from '../client/peer.ts'
import { resumeIdFor } from './resume-id.ts'
import { keyOption } from './id.ts'
import { collect, integer } from './options.ts'
import { bridgeUdpEndpoint, type UdpBridge } from '../client/sock/udp-register.node.ts'
import { hostPort, identityError, interrupted, lost as identityLost } from './sock-runtime.ts'

/** Address of a local UDP program. */
interface LocalAddress { ip: string, port: number }

/** `IP:PORT` of a local UDP program (an address, so replies can be matched to it). */
function localProgram (value: string): LocalAddress {
  const address = hostPort(undefined)(value)
  if (isIP(address.ip) === 0 || address.port === 0) throw new InvalidArgumentError('Not IP:PORT (an address and a port, not 0).')
  return address
}

/** The `relay` command; `started` receives the promise of its exit code. */
export function relayCommand (started: (run: Promise<number>) => void): Command {
  return new Command('relay')
    .description('get a UDP relay allocation (two ports that swap datagrams), print it, keep it until SIGINT/SIGTERM, then release it')
    .requiredOption('--server <url>', 'server URL (http(s)://, ws(s)://) or multiaddr')
    .addOption(keyOption())
    .addOption(new Option('--token <token>', 'shared token, for servers that require one').env('STARSOCK_TOKEN'))
    .addOption(new Option('--mode <mode>', 'how endpoints register: token (the token handshake only), address (also a first packet from --allow-ip), open (also any first packet: unsafe); a first-packet endpoint gets 8 datagrams until it does the handshake').choices(['token', 'address', 'open']).default('token'))
    .option('--allow-ip <ip>', 'address mode: a source IP that may register (repeatable)', collect)
    .option('--refresh-ms <ms>', 'refresh the allocation this often', integer(1000), 30_000)
    .option('--local1 <ip:port>', 'make the UDP program at ip:port endpoint 1: starsock registers for it and carries its datagrams both ways', localProgram)
    .option('--local2 <ip:port>', 'the same for endpoint 2', localProgram)
    .option('--once', 'print the allocation and exit (it lives until it is idle)')
    .option('--json', 'print the allocation as JSON')
    .option('--takeover', 'when another process is joined with this key, take the identity over (it exits)')
    .action((flags: { server: string, key: string, token?: string, mode: 'token' | 'address' | 'open', allowIp?: string[], refreshMs: number, once?: boolean, json?: boolean, takeover?: boolean, local1?: LocalAddress, local2?: LocalAddress }) => {
      started((async () => {
        if (flags.once === true && (flags.local1 !== undefined || flags.local2 !== undefined)) {
          process.stderr.write('starsock relay: --once cannot carry datagrams for --local1/--local2\n')
          return 1
        }
        const { identity } = await loadOrCreateIdentity(flags.key)
        const peer = await createPeer({ server: flags.server, identity, token: flags.token, takeover: flags.takeover === true, resumeId: resumeIdFor(flags.key, flags.takeover === true) })
          .catch((err: unknown) => { throw identityError(err, flags.key) })
        const bridges: UdpBridge[] = []
        try {
          const a = await peer.udpAllocate({ mode: flags.mode, addresses: flags.allowIp })
          if (flags.json === true) process.stdout.write(JSON.stringify(a) + '\n')
          else {
            process.stdout.write(`allocation ${a.id} (${a.mode}), expires ${new Date(a.expiresAt).toISOString()}\n`)
            process.stdout.write(`endpoint 1: ${a.ip}:${a.port1} token ${a.token1}\n`)
            process.stdout.write(`endpoint 2: ${a.ip}:${a.port2} token ${a.token2}\n`)
            process.stdout.write(`register each endpoint: send its token (hex-decoded, 16 bytes) to its port; the relay answers 16 bytes (the cookie); send the cookie XOR the token (byte by byte) to the port; the relay confirms with those 16 bytes each XOR 0xff; then send data from the same socket (no answer within a second: start again with the token)${a.mode === 'token' ? '' : ` (${a.mode} mode: a first packet registers too, but the relay sends such an endpoint only 8 datagrams until it has done this)`}\n`)
          }
          if (flags.once === true) return 0
          for (const [n, local, port, token] of [[1, flags.local1, a.port1, a.token1], [2, flags.local2, a.port2, a.token2]] as const) {
            if (local === undefined) continue
            const bridge = await bridgeUdpEndpoint({ ip: a.ip, port, token }, local)
            bridges.push(bridge)
            const via = bridge.socket.address().port
            process.stdout.write(flags.json === true ? JSON.stringify({ endpoint: n, local: `${local.ip}:${local.port}`, via }) + '\n' : `endpoint ${n} registered for the program at ${local.ip}:${local.port} (it sends to and gets from local port ${via})\n`)
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
          for (const bridge of bridges) bridge.close()
          await peer.close()
        }
      })())
    })
}
