/** `starsock peers`: join a server and list who is online. */
import { Command, Option } from 'commander'
import { createIdentity } from '../client/identity.ts'
import { loadIdentity } from '../client/identity.node.ts'
import { createPeer } from '../client/peer.ts'
import { integer } from './options.ts'
import { CONNECT_TIMEOUT_MS } from './sock-runtime.ts'
import { explainUnreachable } from './unreachable.ts'

/** The `peers` command; `started` receives the promise of its exit code. */
export function peersCommand (started: (run: Promise<number>) => void): Command {
  return new Command('peers')
    .description('join a server and print the peers online, one per line (peer id, then address)')
    .requiredOption('--server <url>', 'server URL (http(s)://, ws(s)://) or multiaddr')
    .option('--key <file>', 'join with this identity (default: a throwaway one)')
    .addOption(new Option('--token <token>', 'shared token, for servers that require one').env('STARSOCK_TOKEN'))
    .option('--timeout-ms <ms>', 'give up after this long', integer(1), 10_000)
    .option('--json', 'print a JSON array of {peerId, addr}')
    .action((flags: { server: string, key?: string, token?: string, timeoutMs: number, json?: boolean }) => {
      started((async () => {
        const identity = flags.key !== undefined ? await loadIdentity(flags.key) : await createIdentity()
        if (identity === undefined) throw new Error(`no identity in ${flags.key ?? ''} (make one with: starsock id --key FILE)`)
        const peer = await createPeer({ server: flags.server, identity, token: flags.token, timeoutMs: flags.timeoutMs, requestTimeoutMs: flags.timeoutMs, connectTimeoutMs: Math.min(CONNECT_TIMEOUT_MS, flags.timeoutMs) })
          .catch(async (err: unknown) => { throw await explainUnreachable(err, flags.server) })
        try {
          const peers = peer.peers()
          if (flags.json === true) process.stdout.write(JSON.stringify(peers) + '\n')
          else for (const p of peers) process.stdout.write(`${p.peerId} ${p.addr}\n`)
        } finally {
          await peer.close()
        }
        return 0
      })())
    })
}
