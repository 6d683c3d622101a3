/** `starsock relay`: get a UDP relay allocation, keep it refreshed, release it on exit. */
import { Command, Option } from 'commander'
import { loadOrCreateIdentity } from '../client/identity.node.ts'
import { createPeer } from '../client/peer.ts'
import { keyOption } from './id.ts'
import { collect, integer } from './options.ts'
import { identityError, interrupted, lost as identityLost } from './sock-runtime.ts'

/** The `relay` command; `started` receives the promise of its exit code. */
export function relayCommand (started: (run: Promise<number>) => void): Command {
  return new Command('relay')
    .description('get a UDP relay allocation (two ports that swap datagrams), print it, keep it until SIGINT/SIGTERM, then release it')
    .requiredOption('--server <url>', 'server URL (http(s)://, ws(s)://) or multiaddr')
    .addOption(keyOption())
    .addOption(new Option('--token <token>', 'shared token, for servers that require one').env('STARSOCK_TOKEN'))
    .addOption(new Option('--mode <mode>', 'how endpoints register: token (first packet is the port\'s token), address (from --allow-ip), open (any first packet: unsafe)').choices(['token', 'address', 'open']).default('token'))
    .option('--allow-ip <ip>', 'address mode: a source IP that may register (repeatable)', collect)
    .option('--refresh-ms <ms>', 'refresh the allocation this often', integer(1000), 30_000)
    .option('--once', 'print the allocation and exit (it lives until it is idle)')
    .option('--json', 'print the allocation as JSON')
    .option('--takeover', 'when another process is joined with this key, take the identity over (it exits)')
    .action((flags: { server: string, key: string, token?: string, mode: 'token' | 'address' | 'open', allowIp?: string[], refreshMs: number, once?: boolean, json?: boolean, takeover?: boolean }) => {
      started((async () => {
        const { identity } = await loadOrCreateIdentity(flags.key)
        const peer = await createPeer({ server: flags.server, identity, token: flags.token, takeover: flags.takeover === true })
          .catch((err: unknown) => { throw identityError(err, flags.key) })
        try {
          const a = await peer.udpAllocate({ mode: flags.mode, addresses: flags.allowIp })
          if (flags.json === true) process.stdout.write(JSON.stringify(a) + '\n')
          else {
            process.stdout.write(`allocation ${a.id} (${a.mode}), expires ${new Date(a.expiresAt).toISOString()}\n`)
            process.stdout.write(`endpoint 1: ${a.ip}:${a.port1}${a.mode === 'token' ? ` token ${a.token1}` : ''}\n`)
            process.stdout.write(`endpoint 2: ${a.ip}:${a.port2}${a.mode === 'token' ? ` token ${a.token2}` : ''}\n`)
          }
          if (flags.once === true) return 0
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
          await peer.close()
        }
      })())
    })
}
