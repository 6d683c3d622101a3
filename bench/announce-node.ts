/**
 * The server of the announcement benchmark (`bench/announce.ts`): one starsock node in its own
 * process (so its CPU time is its own), told on stdin to take a burst of joins from another node
 * as the cluster plane hands them over (`rendezvous.remoteJoined`).
 *
 * argv[2]: JSON server options (on top of the bench's: no challenge, no periodic announcement,
 * room for the crowd from one IP address). Prints `READY {"port":N}`; then on stdin
 * `arm RATE` sets the immediate announcement budget (the reference lifts it once its crowd joined:
 * a crowd joining under no budget costs the square of its size) and prints `ARMED`;
 * `burst COUNT PER_SECOND` announces COUNT joins at that pace and prints `BURST {"ms":N}`;
 * `stop` closes.
 */
import { createInterface } from 'node:readline'
import { createServer } from '../server/server.ts'
import type { ServerOptions } from '../server/options.ts'

const options = JSON.parse(process.argv[2] ?? '{}') as ServerOptions
const server = createServer({
  cryptoChallenge: false,
  announceIntervalMs: 0,
  maxPeers: 100_000,
  maxPeersPerIp: 100_000,
  maxJoinsPerIpPerMinute: 1_000_000,
  shutdownGraceMs: 0,
  ...options
})
const { port } = await server.listen(0, '127.0.0.1')
process.stdout.write(`READY ${JSON.stringify({ port })}\n`)

let bursts = 0

/** Announce `count` joins from another node, `perSecond` of them a second (in 10 ms steps). */
async function burst (count: number, perSecond: number): Promise<number> {
  const t0 = performance.now()
  const perStep = Math.max(1, Math.round(perSecond / 100))
  bursts++
  for (let i = 0; i < count; i += perStep) {
    for (let j = i; j < Math.min(count, i + perStep); j++) {
      server.rendezvous.remoteJoined(`/ip4/10.9.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/QmRemote${bursts}x${j}`, { kind: 'node' })
    }
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  return performance.now() - t0
}

for await (const line of createInterface({ input: process.stdin })) {
  const [command, a, b] = line.split(' ')
  if (command === 'arm') {
    server.rendezvous.announcer.setJoinsPerSecond(Number(a))
    process.stdout.write('ARMED\n')
  } else if (command === 'burst') process.stdout.write(`BURST ${JSON.stringify({ ms: await burst(Number(a), Number(b)) })}\n`)
  else if (command === 'stop') break
}
await server.close()
process.exit(0)
