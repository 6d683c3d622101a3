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
 * `encode-each on|off` makes peer batches go as before issue 18's sender (each client's copy
 * encoded apart, all in one turn: the reference of `bench/announce-death.ts`) and prints `SET`;
 * `death COUNT` hands over COUNT leaves at once (a dead node's peers) after resetting the
 * event-loop delay histogram and the peak RSS, and prints `DIED {"t0","handoverMs"}` (`Date.now()` before; how long the handover took);
 * `stats` prints `STATS {"maxBlockMs","hwmMiB","rssMiB"}` (longest event-loop delay and peak RSS
 * since the death, RSS now); `stop` closes.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
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
let deaths = 0
const loopDelay = monitorEventLoopDelay({ resolution: 10 })
loopDelay.enable()

/** A field of /proc/self/status, in MiB (the kernel says kB). */
function statusMiB (field: 'VmHWM' | 'VmRSS'): number {
  const kb = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'))?.[1]
  return kb === undefined ? NaN : Number(kb) / 1024
}

/** `count` leaves from another node at once, as the plane hands over a dead node's peers; the peak RSS and delay histogram start again first. */
function death (count: number): { t0: number, handoverMs: number } {
  deaths++
  loopDelay.reset()
  writeFileSync('/proc/self/clear_refs', '5') // VmHWM back to the RSS of now (Linux 4.0+)
  const t0 = Date.now()
  const p0 = performance.now()
  for (let i = 0; i < count; i++) server.rendezvous.remoteLeft(`/ip4/10.9.0.2/tcp/9090/ws/p2p-websocket-star/ipfs/QmDead${deaths}x${i}`)
  return { t0, handoverMs: performance.now() - p0 }
}

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
  else if (command === 'encode-each') {
    server.rendezvous.announcer.setEncodeEach(a === 'on')
    process.stdout.write('SET\n')
  } else if (command === 'death') process.stdout.write(`DIED ${JSON.stringify(death(Number(a)))}\n`)
  else if (command === 'stats') {
    process.stdout.write(`STATS ${JSON.stringify({ maxBlockMs: loopDelay.max / 1e6, hwmMiB: statusMiB('VmHWM'), rssMiB: statusMiB('VmRSS') })}\n`)
  } else if (command === 'stop') break
}
await server.close()
process.exit(0)
