/**
 * The clients of the announcement benchmark (`bench/announce.ts`): `count` socket.io-client 4
 * sockets on loopback that join (no challenge) and only count what discovery sends them.
 *
 * argv[2]: JSON `{ url, count, kind, tag }`; `kind` is `legacy` (no hello: `ws-peer`), `events`
 * (hello with `peerEvents`: one event per change, the older starsock clients) or `batch`
 * (`peerEvents` and `peerBatch`). All join as legacy clients (a crowd told of each other's joins
 * one by one would cost the square of its size); `arm` then makes the starsock ones say their
 * hello (prints `ARMED`). Prints `READY {"joined","failed","seconds"}`; then on stdin `arm`,
 * `reset`, `count` (prints `{"messages","entries"}`: events received, and the peer changes in
 * them) and `stop`.
 */
import { createInterface } from 'node:readline'
import { io, type Socket } from 'socket.io-client'
import { joinAll } from './join-pool.ts'

const { url, count, kind, tag } = JSON.parse(process.argv[2] ?? '{}') as { url: string, count: number, kind: 'legacy' | 'events' | 'batch', tag: string }
const IN_FLIGHT = 100
let messages = 0
let entries = 0
const sockets: Socket[] = []

/** Connect, say hello (but as a legacy client), join; rejects on any refusal. */
async function joinOne (i: number): Promise<void> {
  // `timeout`: a connection the loaded machine never completes fails instead of holding its slot.
  const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 20_000 })
  sockets.push(socket)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('connect_error', reject)
  })
  socket.on('ws-peer', () => { messages++; entries++ })
  socket.on('starsock:peer-join', () => { messages++; entries++ })
  socket.on('starsock:peer-batch', (batch: unknown[]) => { messages++; entries += batch.length })
  const addr = `/ip4/127.0.0.1/tcp/9090/ws/p2p-websocket-star/ipfs/QmBench${tag}x${i}`
  // The join's ack: an error string, or null and the peer list.
  const err: unknown = await socket.timeout(60_000).emitWithAck('ss-join', addr)
  if (err != null) throw new Error(`join refused: ${String(err)}`)
}

const t0 = performance.now()
const { joined, failed } = await joinAll(count, IN_FLIGHT, joinOne)
process.stdout.write(`READY ${JSON.stringify({ joined, failed, seconds: (performance.now() - t0) / 1000 })}\n`)
/** The starsock clients' hello, 100 at a time; settles with how many said it (a dropped socket cannot). */
async function arm (): Promise<{ armed: number, connected: number }> {
  let armed = 0
  const connected = sockets.filter((s) => s.connected).length
  if (kind === 'legacy') return { armed, connected }
  for (let i = 0; i < sockets.length; i += IN_FLIGHT) {
    await Promise.all(sockets.slice(i, i + IN_FLIGHT).map(async (socket) => {
      try {
        await socket.timeout(60_000).emitWithAck('starsock:hello', { peerEvents: true, peerBatch: kind === 'batch' })
        armed++
      } catch {}
    }))
  }
  return { armed, connected }
}

for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'arm') process.stdout.write(`ARMED ${JSON.stringify(await arm())}\n`)
  else if (line === 'reset') { messages = 0; entries = 0 }
  else if (line === 'count') process.stdout.write(JSON.stringify({ messages, entries }) + '\n')
  else if (line === 'stop') break
}
for (const s of sockets) s.close()
process.exit(0)
